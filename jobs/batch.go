package jobs

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// ExpandPayload is the payload of a batch:expand task: turn the URL list the
// API stored for a batch into job records and fetch tasks.
type ExpandPayload struct {
	BatchID string `json:"batch_id"`
	Tenant  string `json:"tenant"`
}

// Validate checks the payload.
func (p *ExpandPayload) Validate() error {
	if p.BatchID == "" || p.Tenant == "" {
		return fmt.Errorf("%w: batch_id and tenant are required", ErrBadPayload)
	}
	return nil
}

// ExpandMaxRetry is how often a failed expansion is tried again; every run
// resumes where the last one stopped.
const ExpandMaxRetry = 10

// NewExpandTask builds the batch:expand task of a batch: queue bulk, task id
// derived from the batch id (one expansion per batch), ten minutes per run.
func NewExpandTask(p *ExpandPayload) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(KindBatchExpand, b,
		asynq.TaskID("expand:"+p.BatchID),
		asynq.Queue(QueueBulk),
		asynq.MaxRetry(ExpandMaxRetry),
		asynq.Timeout(10*time.Minute),
	), nil
}

// DecodeExpand decodes and validates a batch:expand payload.
func DecodeExpand(b []byte) (*ExpandPayload, error) {
	var p ExpandPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

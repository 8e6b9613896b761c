// Package jobs holds the job contracts between the API and the workers: the
// task kind names, payload structs with Validate, and task constructors with
// their queue, retry and timeout defaults. Kind names are deployed contracts:
// never rename one.
package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Task kinds.
const (
	KindFetch          = "fetch"
	KindInteract       = "interact"
	KindWebhookDeliver = "webhook:deliver"
	KindBatchExpand    = "batch:expand"
)

// Queues. Interactive jobs, bulk (batch) jobs and webhook deliveries each
// have their own queue so that none can starve another.
const (
	QueueInteractive = "interactive"
	QueueBulk        = "bulk"
	QueueWebhooks    = "webhooks"
)

// QueueWeights are the asynq queue priorities used by workers.
var QueueWeights = map[string]int{QueueInteractive: 6, QueueWebhooks: 3, QueueBulk: 2}

// MaxRetry is the number of retries of a fetch or interact job after a
// transient failure (browser crash, timeout, connection reset).
const MaxRetry = 2

// RunPayload is the payload of fetch and interact tasks.
type RunPayload struct {
	JobID   string `json:"job_id"`
	Tenant  string `json:"tenant"`
	Kind    string `json:"kind"`
	BatchID string `json:"batch_id,omitempty"`
	Depth   int    `json:"depth,omitempty"`
	// Crawl marks a page of a crawl (its robots.txt Crawl-delay applies).
	Crawl      bool         `json:"crawl,omitempty"`
	AcceptedAt time.Time    `json:"accepted_at"`
	Request    spec.Request `json:"request"`
}

// ErrBadPayload marks a payload that can never run.
var ErrBadPayload = errors.New("bad payload")

// Validate checks the payload.
func (p *RunPayload) Validate() error {
	if p.JobID == "" || p.Tenant == "" {
		return fmt.Errorf("%w: job_id and tenant are required", ErrBadPayload)
	}
	if p.Kind != KindFetch && p.Kind != KindInteract {
		return fmt.Errorf("%w: unknown kind %q", ErrBadPayload, p.Kind)
	}
	if errs := p.Request.Validate(p.Kind, ""); len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrBadPayload, errs[0].Error())
	}
	return nil
}

// Queue returns the queue for the payload.
func (p *RunPayload) Queue() string {
	if p.BatchID != "" {
		return QueueBulk
	}
	return QueueInteractive
}

// Timeout is the asynq deadline for one attempt: the job's own budget plus
// room to save state and convert outputs.
func (p *RunPayload) Timeout() time.Duration {
	ms := p.Request.TimeoutMs
	if ms <= 0 {
		ms = spec.DefaultTimeoutMs
	}
	return time.Duration(ms)*time.Millisecond + 20*time.Second
}

// NewRunTask builds the task for a fetch or interact job. The task id is the
// job id, so a task can be found, run early or deleted by job id.
func NewRunTask(p *RunPayload) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(p.Kind, b,
		asynq.TaskID(p.JobID),
		asynq.Queue(p.Queue()),
		asynq.MaxRetry(MaxRetry),
		asynq.Timeout(p.Timeout()),
	), nil
}

// DecodeRun decodes and validates a run payload.
func DecodeRun(b []byte) (*RunPayload, error) {
	var p RunPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

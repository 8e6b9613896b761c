package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// Claim is a task a worker is running, written where every worker can see
// it (rdb.Workers) for as long as it runs. When the worker dies, the worker
// that finds it dead enqueues Replacement at once instead of waiting for
// asynq to notice the lost task (a lease of 30 s and a recoverer that runs
// once a minute). The original task comes back later, when asynq recovers
// it; whatever it would do twice is fenced (a job's owner, a session's
// fence, a delivery's done mark).
type Claim struct {
	Type     string        `json:"type"`
	Queue    string        `json:"queue"`
	TaskID   string        `json:"task_id"`
	Payload  []byte        `json:"payload"`
	MaxRetry int           `json:"max_retry"`
	Timeout  time.Duration `json:"timeout"`
	// Job is the job the task runs (fetch and interact tasks).
	Job string `json:"job,omitempty"`
}

// ClaimOf describes the task t that ctx (asynq's handler context) runs.
// The timeout is what was left of the task's deadline when it started,
// at least a minute.
func ClaimOf(ctx context.Context, t *asynq.Task) *Claim {
	c := &Claim{Type: t.Type(), Payload: t.Payload(), Timeout: time.Minute}
	c.TaskID, _ = asynq.GetTaskID(ctx)
	c.Queue, _ = asynq.GetQueueName(ctx)
	c.MaxRetry, _ = asynq.GetMaxRetry(ctx)
	if d, ok := ctx.Deadline(); ok {
		c.Timeout = max(time.Until(d).Round(time.Second), time.Minute)
	}
	return c
}

// Encode is the claim as stored.
func (c *Claim) Encode() []byte {
	b, _ := json.Marshal(c)
	return b
}

// DecodeClaim reads a stored claim.
func DecodeClaim(b []byte) (*Claim, error) {
	var c Claim
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: claim: %v", ErrBadPayload, err)
	}
	if c.Type == "" || c.Queue == "" || c.TaskID == "" {
		return nil, fmt.Errorf("%w: claim without type, queue or task id", ErrBadPayload)
	}
	return &c, nil
}

// Replacement is the task that runs the claim again, with a task id of its
// own (id): the same type, payload, queue, retries and timeout.
func (c *Claim) Replacement(id string) *asynq.Task {
	return asynq.NewTask(c.Type, c.Payload,
		asynq.TaskID(id),
		asynq.Queue(c.Queue),
		asynq.MaxRetry(c.MaxRetry),
		asynq.Timeout(c.Timeout),
	)
}

package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// TaskTimeout is the asynq deadline of one delivery attempt; the HTTP
// request itself is bounded by [Config].Timeout (10 s by default).
const TaskTimeout = 30 * time.Second

// MaxRetryDelay bounds the wait before one retry, whatever the schedule or
// the receiver's Retry-After ask for.
const MaxRetryDelay = 24 * time.Hour

// DefaultSchedule is ≈ 24 h of growing delays between delivery attempts,
// used when a schedule is empty.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 8 * time.Hour,
}

// DeliverPayload is the payload of a webhook:deliver task, one task per
// event. The webhook-id is fixed when the event is created and kept across
// retries.
type DeliverPayload struct {
	WebhookID string `json:"webhook_id"`
	Tenant    string `json:"tenant"`
	URL       string `json:"url"`
	// Owner is the job or batch id whose delivery log records the attempts.
	Owner string `json:"owner"`
	// Body is the event, the exact bytes signed and sent.
	Body json.RawMessage `json:"body"`
	Type string          `json:"type"`
}

// Validate checks the payload.
func (p *DeliverPayload) Validate() error {
	switch {
	case p.WebhookID == "" || p.Tenant == "" || p.Owner == "" || p.Type == "":
		return fmt.Errorf("%w: webhook_id, tenant, owner and type are required", jobs.ErrBadPayload)
	case !json.Valid(p.Body):
		return fmt.Errorf("%w: body is not JSON", jobs.ErrBadPayload)
	}
	if m := spec.CheckURL(p.URL); m != "" {
		return fmt.Errorf("%w: url %s", jobs.ErrBadPayload, m)
	}
	return nil
}

// DecodeDeliver decodes and validates a webhook:deliver payload.
func DecodeDeliver(b []byte) (*DeliverPayload, error) {
	var p DeliverPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", jobs.ErrBadPayload, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// NewDeliverTask builds the webhook:deliver task of one event: queue
// webhooks, one retry per entry of schedule ([DefaultSchedule] when empty),
// [TaskTimeout], and the webhook-id as task id so that an event is enqueued
// once.
func NewDeliverTask(p *DeliverPayload, schedule []time.Duration) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(schedule) == 0 {
		schedule = DefaultSchedule
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(jobs.KindWebhookDeliver, b,
		asynq.TaskID(p.WebhookID),
		asynq.Queue(jobs.QueueWebhooks),
		asynq.MaxRetry(len(schedule)),
		asynq.Timeout(TaskTimeout),
	), nil
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewWebhookID returns a new random webhook-id, "msg_" and 26 characters.
func NewWebhookID() string {
	return "msg_" + strings.ToLower(idEncoding.EncodeToString(randomBytes(16)))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return b
}

// NewEvent builds the body of an event: data is marshalled (a
// json.RawMessage is taken as is), metadata defaults to {}.
func NewEvent(eventType string, ts time.Time, data any, metadata json.RawMessage) ([]byte, error) {
	d, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("event %s data: %w", eventType, err)
	}
	if len(metadata) == 0 {
		metadata = json.RawMessage("{}")
	}
	return json.Marshal(spec.Event{Type: eventType, Timestamp: ts.UTC(), Data: d, Metadata: metadata})
}

// Enqueue delivers event eventType about owner (a job or batch id of
// tenant) to the webhook w: it builds the body once (timestamp now, w's
// metadata), assigns a new webhook-id and enqueues its webhook:deliver task
// with schedule ([DefaultSchedule] when empty). It does nothing when w is
// nil, has no URL or did not ask for eventType.
func Enqueue(ctx context.Context, c *asynq.Client, w *spec.Webhook, tenant, owner, eventType string, data any, schedule []time.Duration) error {
	if w == nil || w.URL == "" || !w.WantsEvent(eventType) {
		return nil
	}
	body, err := NewEvent(eventType, time.Now(), data, w.Metadata)
	if err != nil {
		return err
	}
	p := &DeliverPayload{WebhookID: NewWebhookID(), Tenant: tenant, URL: w.URL, Owner: owner, Body: body, Type: eventType}
	t, err := NewDeliverTask(p, schedule)
	if err != nil {
		return fmt.Errorf("webhook %s for %s: %w", eventType, owner, err)
	}
	if _, err := c.EnqueueContext(ctx, t); err != nil {
		return fmt.Errorf("enqueue webhook %s for %s: %w", eventType, owner, err)
	}
	return nil
}

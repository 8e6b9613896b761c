package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Webhook event types.
const (
	EventJobSucceeded   = spec.EventJobSucceeded
	EventJobFailed      = spec.EventJobFailed
	EventBatchPage      = spec.EventBatchPage
	EventBatchCompleted = spec.EventBatchCompleted
)

// MaxWebhookBytes bounds the body VerifyWebhook reads (a job event carries
// the whole result, screenshots included).
const MaxWebhookBytes = 64 << 20

// Event is a verified webhook delivery.
type Event struct {
	// ID is the webhook-id header: the same for every retry of one event,
	// so a receiver can drop repeats.
	ID string `json:"-"`
	// Type is job.succeeded, job.failed, batch.page or batch.completed.
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	// Data is the job (job.* and batch.page) or the batch (batch.completed).
	Data json.RawMessage `json:"data"`
	// Metadata is the webhook's metadata as submitted ({} when none).
	Metadata json.RawMessage `json:"metadata"`
}

// Job decodes the job of a job.succeeded, job.failed or batch.page event.
func (e *Event) Job() (*Job, error) {
	var j Job
	if err := json.Unmarshal(e.Data, &j); err != nil {
		return nil, fmt.Errorf("event %s data: %w", e.Type, err)
	}
	return &j, nil
}

// Batch decodes the batch of a batch.completed event.
func (e *Event) Batch() (*Batch, error) {
	var b Batch
	if err := json.Unmarshal(e.Data, &b); err != nil {
		return nil, fmt.Errorf("event %s data: %w", e.Type, err)
	}
	return &b, nil
}

// VerifyWebhook checks the Standard Webhooks signature of a delivery that r
// received with the tenant's webhook secret ("whsec_…"): the signature must
// match the body and the timestamp be within [webhook.Tolerance] of now. It
// reads r.Body (at most [MaxWebhookBytes]) and leaves a copy in its place.
// The error wraps one of webhook's Err… values when the check fails; only
// then must the receiver answer non-2xx (400), so that a forged or stale
// request is not acted on.
func VerifyWebhook(secret string, r *http.Request) (Event, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxWebhookBytes+1))
	if err != nil {
		return Event{}, fmt.Errorf("read webhook body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) > MaxWebhookBytes {
		return Event{}, fmt.Errorf("webhook body larger than %d bytes", MaxWebhookBytes)
	}
	if err := webhook.Verify(secret, r.Header, body); err != nil {
		return Event{}, err
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return Event{}, fmt.Errorf("webhook body: %w", err)
	}
	ev.ID = r.Header.Get(webhook.HeaderID)
	return ev, nil
}

package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

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

// Event is a verified webhook delivery; its ID is the webhook-id header.
type Event = spec.Event

// VerifyWebhook checks the Standard Webhooks signature of a delivery that r
// received with the tenant's webhook secret ("whsec_…"): the signature must
// match the body and the timestamp be within [spec.WebhookTolerance] of now. It
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
	if err := spec.VerifyWebhook(secret, r.Header, body); err != nil {
		return Event{}, err
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return Event{}, fmt.Errorf("webhook body: %w", err)
	}
	ev.ID = r.Header.Get(spec.WebhookIDHeader)
	return ev, nil
}

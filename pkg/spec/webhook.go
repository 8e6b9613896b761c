package spec

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names.
const (
	WebhookIDHeader        = "webhook-id"
	WebhookTimestampHeader = "webhook-timestamp"
	WebhookSignatureHeader = "webhook-signature"
)

// WebhookTolerance is how far a webhook-timestamp may be from the receiver's clock,
// in either direction, for [VerifyWebhook] to accept it.
const WebhookTolerance = 5 * time.Minute

// WebhookSecretPrefix starts every webhook secret.
const WebhookSecretPrefix = "whsec_"

// Errors of [SignWebhook] and [VerifyWebhook].
var (
	ErrWebhookSecret    = errors.New("webhook secret is not whsec_<base64 key>")
	ErrWebhookHeaders   = errors.New("missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrWebhookTimestamp = errors.New("webhook-timestamp is not unix seconds")
	ErrWebhookTooOld    = errors.New("webhook-timestamp is too old")
	ErrWebhookTooNew    = errors.New("webhook-timestamp is too far in the future")
	ErrWebhookSignature = errors.New("no webhook-signature matches")
)

// secretKey decodes "whsec_<base64 key>" (the prefix is optional, as in the
// reference libraries) into the HMAC key.
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, WebhookSecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, ErrWebhookSecret
	}
	return key, nil
}

// signature is the base64 HMAC-SHA256 of "id.timestamp.body".
func signature(key []byte, id string, unix int64, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, unix, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// SignWebhook returns the Standard Webhooks signature header value
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>", where timestamp is ts in
// unix seconds and the key is the base64-decoded part of secret after
// "whsec_".
func SignWebhook(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + signature(key, id, ts.Unix(), body), nil
}

// VerifyWebhook checks a delivery received with headers h and body: webhook-id,
// webhook-timestamp (within [WebhookTolerance] of now) and webhook-signature, a
// space-separated list of which any one "v1,<signature>" must match. It
// returns nil or an error wrapping one of the Err… values above.
func VerifyWebhook(secret string, h http.Header, body []byte) error {
	key, err := secretKey(secret)
	if err != nil {
		return err
	}
	id, tsHeader, sigs := h.Get(WebhookIDHeader), h.Get(WebhookTimestampHeader), h.Get(WebhookSignatureHeader)
	if id == "" || tsHeader == "" || sigs == "" {
		return ErrWebhookHeaders
	}
	unix, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrWebhookTimestamp, tsHeader)
	}
	now := time.Now()
	ts := time.Unix(unix, 0)
	switch {
	case now.Sub(ts) > WebhookTolerance:
		return fmt.Errorf("%w: %s", ErrWebhookTooOld, ts.UTC().Format(time.RFC3339))
	case ts.Sub(now) > WebhookTolerance:
		return fmt.Errorf("%w: %s", ErrWebhookTooNew, ts.UTC().Format(time.RFC3339))
	}
	want := []byte(signature(key, id, unix, body))
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return ErrWebhookSignature
}

// Event is what a webhook delivery carries, the body of every attempt:
// {"type","timestamp","data":{…job or batch object…},"metadata":{…}}.
type Event struct {
	// ID is the webhook-id header of a received delivery: the same for
	// every retry of one event, so a receiver can drop repeats. It is not
	// part of the body.
	ID string `json:"-"`
	// Type is job.succeeded, job.failed, batch.page, batch.completed or
	// schedule.run.
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

// Delivery is one delivery attempt of a webhook event, an entry of
// GET /v1/jobs/{id}/deliveries and /v1/batches/{id}/deliveries.
type Delivery struct {
	Event      string    `json:"event"`
	WebhookID  string    `json:"webhook_id"`
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code"`
	Error      string    `json:"error,omitempty"`
	DurationMs int64     `json:"duration_ms"`
}

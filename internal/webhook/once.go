package webhook

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// EventID is the webhook-id of the event eventType of owner (a job or batch
// id): derived, not random, so that an event enqueued twice — a worker that
// died after writing the outcome and before enqueueing, and its task's
// redelivery — is one event.
func EventID(owner, eventType string) string {
	h := sha256.Sum256([]byte(owner + "\x00" + eventType))
	return "msg_" + strings.ToLower(idEncoding.EncodeToString(h[:16]))
}

// EnqueueOnce is Enqueue with the derived EventID: the task id is kept for
// 25 h after delivery, so a second enqueue of the same event is a no-op.
func EnqueueOnce(ctx context.Context, c *asynq.Client, w *spec.Webhook, tenant, owner, eventType string, data any, schedule []time.Duration) error {
	if w == nil || w.URL == "" || !w.WantsEvent(eventType) {
		return nil
	}
	body, err := NewEvent(eventType, time.Now(), data, w.Metadata)
	if err != nil {
		return err
	}
	p := &DeliverPayload{WebhookID: EventID(owner, eventType), Tenant: tenant, URL: w.URL, Owner: owner, Body: body, Type: eventType}
	t, err := NewDeliverTask(p, schedule)
	if err != nil {
		return fmt.Errorf("webhook %s for %s: %w", eventType, owner, err)
	}
	_, err = c.EnqueueContext(ctx, t, asynq.Retention(25*time.Hour))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue webhook %s for %s: %w", eventType, owner, err)
	}
	return nil
}

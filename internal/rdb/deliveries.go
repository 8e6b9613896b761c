package rdb

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// MaxDeliveryLog bounds one owner's delivery log; older attempts are
// dropped first.
const MaxDeliveryLog = 10000

func deliveriesKey(owner string) string { return "{pf}:deliveries:" + owner }

func deliveryDoneKey(webhookID string) string { return "{pf}:delivered:" + webhookID }

// DeliveryDoneFor is how long an event stays marked done: longer than any
// task of it can still come (asynq keeps a delivered task's id 25 h).
const DeliveryDoneFor = 26 * time.Hour

// Deliveries keeps the webhook delivery log of each job and batch: one list
// per owner, oldest attempt first, kept as long as job records.
type Deliveries struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// NewDeliveries returns the delivery log store; entries live for ttl after
// the owner's last attempt.
func NewDeliveries(c redis.UniversalClient, ttl time.Duration) *Deliveries {
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	return &Deliveries{rdb: c, ttl: ttl}
}

// Record appends a to owner's log and restarts its expiry; final marks the
// event done (delivered, or given up): nothing sends it again.
func (d *Deliveries) Record(ctx context.Context, owner string, a *spec.Delivery, final bool) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	key := deliveriesKey(owner)
	_, err = d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, key, b)
		p.LTrim(ctx, key, -MaxDeliveryLog, -1)
		p.PExpire(ctx, key, d.ttl)
		if final {
			p.Set(ctx, deliveryDoneKey(a.WebhookID), 1, DeliveryDoneFor)
		}
		return nil
	})
	return err
}

// Done reports whether the event webhookID was delivered or given up.
func (d *Deliveries) Done(ctx context.Context, webhookID string) (bool, error) {
	n, err := d.rdb.Exists(ctx, deliveryDoneKey(webhookID)).Result()
	return n == 1, err
}

// List returns the delivery attempts of a job or batch id, oldest first
// (an empty list when there were none or the log expired).
func (d *Deliveries) List(ctx context.Context, owner string) ([]spec.Delivery, error) {
	raw, err := d.rdb.LRange(ctx, deliveriesKey(owner), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("deliveries of %s: %w", owner, err)
	}
	out := make([]spec.Delivery, 0, len(raw))
	for _, s := range raw {
		var a spec.Delivery
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			return nil, fmt.Errorf("deliveries of %s: %w", owner, err)
		}
		out = append(out, a)
	}
	return out, nil
}

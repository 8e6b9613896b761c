package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
	"github.com/redis/go-redis/v9"
)

// MaxLogEntries bounds one owner's delivery log; older attempts are dropped
// first.
const MaxLogEntries = 10000

// Errors recorded in [spec.Delivery].Error. Connection failures record the egress
// codes (dns_failure, connection_refused, connection_failed, tls_failure).
const (
	ErrorBlockedAddress = "blocked_address"
	ErrorTimeout        = "timeout"
	ErrorRedirect       = "redirect_not_followed"
	ErrorInvalidSecret  = "invalid_webhook_secret"
)

func logKey(owner string) string { return "{pf}:deliveries:" + owner }

// record appends a to owner's log and restarts its expiry.
func record(ctx context.Context, rdb redis.UniversalClient, owner string, a *spec.Delivery, ttl time.Duration) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	key := logKey(owner)
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, key, b)
		p.LTrim(ctx, key, -MaxLogEntries, -1)
		p.PExpire(ctx, key, ttl)
		return nil
	})
	return err
}

// Deliveries returns the delivery attempts of a job or batch id, oldest
// first (an empty list when there were none or the log expired).
func Deliveries(ctx context.Context, rdb redis.UniversalClient, owner string) ([]spec.Delivery, error) {
	raw, err := rdb.LRange(ctx, logKey(owner), 0, -1).Result()
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

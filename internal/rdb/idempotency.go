package rdb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Idempotency remembers which object an Idempotency-Key created: one
// string per tenant and key (hashed), holding the object's id.
type Idempotency struct {
	rdb redis.UniversalClient
}

// NewIdempotency returns the Idempotency-Key store on c.
func NewIdempotency(c redis.UniversalClient) *Idempotency { return &Idempotency{rdb: c} }

func idemKey(tenant, scope, key string) string {
	h := sha256.Sum256([]byte(scope + key))
	return "{pf}:t:" + tenant + ":idem:" + hex.EncodeToString(h[:16])
}

// Claim records that key (within scope: "" for jobs, "batch\x00" for
// batches, as earlier versions stored them) creates id, for ttl. When the
// key was claimed before it changes nothing and returns the earlier id.
func (s *Idempotency) Claim(ctx context.Context, tenant, scope, key, id string, ttl time.Duration) (prev string, err error) {
	k := idemKey(tenant, scope, key)
	ok, err := s.rdb.SetNX(ctx, k, id, ttl).Result()
	if err != nil || ok {
		return "", err
	}
	prev, err = s.rdb.Get(ctx, k).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return prev, err
}

// Release forgets key, for a request that created nothing.
func (s *Idempotency) Release(ctx context.Context, tenant, scope, key string) error {
	return s.rdb.Del(ctx, idemKey(tenant, scope, key)).Err()
}

// Remaining is how long key stays claimed (0 when it is not).
func (s *Idempotency) Remaining(ctx context.Context, tenant, scope, key string) (time.Duration, error) {
	d, err := s.rdb.PTTL(ctx, idemKey(tenant, scope, key)).Result()
	if err != nil || d < 0 {
		return 0, err
	}
	return d, nil
}

package rdb

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// Stores are pagefleet's stores on one Redis, for a binary to build once
// and hand to the parts that need them.
type Stores struct {
	Jobs        *Jobs
	Batches     *Batches
	Sessions    *Sessions
	Identities  *Identities
	Deliveries  *Deliveries
	Idempotency *Idempotency
}

// Open returns the stores on c; job records, batches and delivery logs
// live for ttl (PAGEFLEET_RESULT_TTL).
func Open(c redis.UniversalClient, ttl time.Duration) *Stores {
	jobs := NewJobs(c, ttl)
	return &Stores{
		Jobs:        jobs,
		Batches:     NewBatches(c, jobs),
		Sessions:    NewSessions(c),
		Identities:  NewIdentities(c, IdentitiesConfig{}),
		Deliveries:  NewDeliveries(c, ttl),
		Idempotency: NewIdempotency(c),
	}
}

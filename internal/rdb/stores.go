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
	// Cache, Tracker and Schedules are the freshness stores: the result
	// cache (its TTL: WithCacheTTL), tracked results, schedules.
	Cache     *Cache
	Tracker   *Tracker
	Schedules *Schedules
	// Artifacts indexes the jobs that stored artifacts.
	Artifacts *Artifacts
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
		Cache:       NewCache(c, CacheConfig{}),
		Tracker:     NewTracker(c, TrackerConfig{}),
		Schedules:   NewSchedules(c, 0),
		Artifacts:   NewArtifacts(c),
	}
}

// WithCacheTTL replaces the cache by one whose entries live for ttl
// (PAGEFLEET_CACHE_TTL) and returns s.
func (s *Stores) WithCacheTTL(c redis.UniversalClient, ttl time.Duration) *Stores {
	s.Cache = NewCache(c, CacheConfig{TTL: ttl})
	return s
}

package rdb

import (
	"context"
	"crypto/rand"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	artifactsKey      = "{pf}:artifacts"
	artifactSecretKey = "{pf}:artifacts:secret"
)

// Artifacts is the index of jobs that stored artifacts (artifact.Index):
// when each job's artifacts are due for deletion, so that they go with
// the job whatever store holds them.
type Artifacts struct {
	rdb redis.UniversalClient
}

// NewArtifacts returns the index on c.
func NewArtifacts(c redis.UniversalClient) *Artifacts { return &Artifacts{rdb: c} }

// Track records that jobID's artifacts are to be deleted at until (a later
// time of a later artifact of the job wins).
func (a *Artifacts) Track(ctx context.Context, jobID string, until time.Time) error {
	return a.rdb.ZAddArgs(ctx, artifactsKey, redis.ZAddArgs{GT: true, Members: []redis.Z{{Score: float64(until.UnixMilli()), Member: jobID}}}).Err()
}

// Due returns up to n jobs whose artifacts were due for deletion at now.
func (a *Artifacts) Due(ctx context.Context, now time.Time, n int) ([]string, error) {
	return a.rdb.ZRangeByScore(ctx, artifactsKey, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(n)}).Result()
}

// Forget removes jobID from the index (its artifacts are deleted).
func (a *Artifacts) Forget(ctx context.Context, jobID string) error {
	return a.rdb.ZRem(ctx, artifactsKey, jobID).Err()
}

// Secret returns the fleet's artifact-signing secret, made once at random
// by the first process that asks, for fleets whose operator set none
// (PAGEFLEET_ARTIFACTS_SECRET).
func (a *Artifacts) Secret(ctx context.Context) ([]byte, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	if err := a.rdb.SetNX(ctx, artifactSecretKey, b, 0).Err(); err != nil {
		return nil, err
	}
	return a.rdb.Get(ctx, artifactSecretKey).Bytes()
}

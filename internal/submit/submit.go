// Package submit accepts jobs and batches: it admits them under their
// tenant's limits, claims their Idempotency-Key, writes their records (and
// a session job's place in its session's line) and enqueues their first
// task, undoing what it wrote when a later step fails, so that nothing a
// client was told is accepted is lost and nothing it was refused lingers.
//
// The HTTP handlers call it after they decoded and validated a request;
// anything else that creates jobs (schedules) calls it the same way.
package submit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/fresh"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
)

// Errors of the service. A *LimitError wraps ErrRateLimited or
// ErrQueueFull.
var (
	// ErrRateLimited: over the tenant's requests per second.
	ErrRateLimited = rdb.ErrRateLimited
	// ErrQueueFull: over the tenant's jobs that have not ended.
	ErrQueueFull = rdb.ErrQueueFull
	// ErrIdempotencyPending: the Idempotency-Key was used by a request
	// that has not written its object yet.
	ErrIdempotencyPending = errors.New("a request with this Idempotency-Key is still being processed")
	// ErrIdempotencyExpired: the object the Idempotency-Key created has
	// expired; the key stays used.
	ErrIdempotencyExpired = errors.New("the object this Idempotency-Key created has expired")
)

// LimitError is a submission refused by one of the tenant's limits.
type LimitError struct {
	Err        error // ErrRateLimited or ErrQueueFull
	Detail     string
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.Detail }
func (e *LimitError) Unwrap() error { return e.Err }

// IdemTTL is how long an Idempotency-Key is remembered.
const IdemTTL = 24 * time.Hour

// idempotency scopes: jobs and batches keep their keys apart.
const (
	scopeJob   = ""
	scopeBatch = "batch\x00"
)

// Deps are the parts the service uses; all are required but Logger.
type Deps struct {
	Jobs     *rdb.Jobs
	Batches  *rdb.Batches
	Sessions *rdb.Sessions
	Idem     *rdb.Idempotency
	Queue    *asynq.Client
	// LineTTL is how long a session's line lives after its last append
	// (session.Config.LineTTL).
	LineTTL time.Duration
	Logger  *slog.Logger

	// Freshness: Cache serves fetches with max_age_ms at submit time (nil:
	// never), Tracker compares their results (change_tracking), Fresh
	// counts lookups, WebhookSchedule is the retry schedule of a hit's
	// job.succeeded event.
	Cache           *rdb.Cache
	Tracker         *rdb.Tracker
	Fresh           *fresh.Metrics
	WebhookSchedule []time.Duration
}

// Service accepts jobs and batches.
type Service struct {
	Deps
}

// New returns the service.
func New(d Deps) *Service {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.LineTTL <= 0 {
		d.LineTTL = 24 * time.Hour
	}
	return &Service{Deps: d}
}

// limitError turns an over-limit error of the store into a *LimitError.
func limitError(t *tenant.Tenant, err error) error {
	switch {
	case errors.Is(err, rdb.ErrRateLimited):
		return &LimitError{Err: ErrRateLimited, RetryAfter: time.Second,
			Detail: fmt.Sprintf("over %g requests per second for this tenant", t.Limits.RequestsPerSecond)}
	case errors.Is(err, rdb.ErrQueueFull):
		return &LimitError{Err: ErrQueueFull, RetryAfter: 5 * time.Second,
			Detail: fmt.Sprintf("the tenant has %d jobs that have not ended, its limit", t.Limits.QueuedJobs)}
	}
	return err
}

// claim claims an Idempotency-Key for id; prev is the id an earlier
// request created ("" when this request is the first, or key is "").
func (s *Service) claim(ctx context.Context, tenantID, scope, key, id string) (prev string, err error) {
	if key == "" {
		return "", nil
	}
	return s.Idem.Claim(ctx, tenantID, scope, key, id, IdemTTL)
}

// replay reads the object an earlier request with the same key created,
// waiting up to a second for a request that may still be writing it. It
// returns ErrIdempotencyPending or ErrIdempotencyExpired when it cannot.
func replay[T any](ctx context.Context, s *Service, tenantID, scope, key string, read func() (T, error), notFound error) (T, error) {
	var v T
	var err error
	for range 50 {
		v, err = read()
		if !errors.Is(err, notFound) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	left, lerr := s.Idem.Remaining(ctx, tenantID, scope, key)
	if lerr == nil && left > 0 && left < IdemTTL-30*time.Second {
		return v, ErrIdempotencyExpired
	}
	return v, ErrIdempotencyPending
}

// untilDoneFor bounds the retries of untilDone.
const untilDoneFor = 5 * time.Minute

// untilDone runs undo, an idempotent clean-up after a failed request, and
// when it fails keeps retrying it in the background for a while: the
// failure was most often Redis going away, which it usually does briefly.
func (s *Service) untilDone(what, id string, undo func(context.Context) error) {
	try := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return undo(ctx)
	}
	if try() == nil {
		return
	}
	go func() {
		deadline := time.Now().Add(untilDoneFor)
		for delay := 250 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
			time.Sleep(delay)
			err := try()
			if err == nil {
				s.Logger.Info("clean-up after a failed request done", "what", what, "id", id)
				return
			}
			if time.Now().After(deadline) {
				s.Logger.Error("clean-up after a failed request given up", "what", what, "id", id, "err", err)
				return
			}
		}
	}()
}

// enqueue enqueues the task build makes.
func (s *Service) enqueue(ctx context.Context, build func() (*asynq.Task, error)) error {
	task, err := build()
	if err != nil {
		return err
	}
	_, err = s.Queue.EnqueueContext(ctx, task)
	return err
}

// Admit counts a request that creates no job (a map) against the tenant's
// requests per second.
func (s *Service) Admit(ctx context.Context, t *tenant.Tenant) error {
	if err := s.Jobs.Gate(ctx, t.ID, int(t.Limits.RequestsPerSecond), 0, 0); err != nil {
		return limitError(t, err)
	}
	return nil
}

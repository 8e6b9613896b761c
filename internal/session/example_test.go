package session_test

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/pkg/spec"
	"github.com/redis/go-redis/v9"
)

// The API appends a session job to its line when it accepts it, in the same
// pipeline that writes the job record, before it enqueues the task.
func ExampleStore_Append() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	store, _ := session.New(rdb, session.Config{})

	pipe := rdb.TxPipeline()
	pipe.HSet(ctx, "job:job_1", "status", "queued") // the job record
	_ = store.Append(ctx, pipe, "acme", "user-session", "job_1")
	if _, err := pipe.Exec(ctx); err != nil {
		slog.Error("accept job", "err", err)
	}
	// ...then enqueue the task.
}

// A worker runs a session job only in its turn and under a lease; a busy
// session hands the task back to the queue at once.
func ExampleStore_Acquire() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	store, _ := session.New(rdb, session.Config{Key: make([]byte, 32)})
	isTerminal := func(ctx context.Context, jobID string) (bool, error) {
		return false, nil // look the job record up: finished or gone → true
	}
	run := func(ctx context.Context, st *spec.State) (*spec.State, error) { return st, nil }

	firstBusy := time.Now() // kept with the task since its first busy attempt
	lease, err := store.Acquire(ctx, "acme", "user-session", "job_1", isTerminal)
	if errors.Is(err, session.ErrBusy) {
		return // return SessionBusy: asynq retries soon without counting a failure
	}
	if err != nil {
		return // ErrNotInLine: the job already ran; drop the task
	}
	store.ObserveWait(time.Since(firstBusy))
	jobCtx, stop := store.Hold(ctx, lease)
	st, _, err := store.Load(jobCtx, "acme", "user-session")
	if errors.Is(err, session.ErrNotFound) {
		st = &spec.State{} // the first job of a session creates it
	}
	out, err := run(jobCtx, st)
	if err == nil && jobCtx.Err() == nil {
		updated, err := store.Save(jobCtx, lease, out)
		_ = updated // session.updated in the job's answer
		_ = err     // ErrStaleFence: this job lost the session; ErrTooLarge: state kept
	} else if jobCtx.Err() == nil {
		_ = store.Touch(jobCtx, lease)
	}
	stop()
	// On a failure that will be retried: store.Unlock(ctx, lease) keeps the
	// job at the head of the line. Otherwise:
	next, _ := store.Release(ctx, lease)
	// Not empty: inspector.RunTask(queue, next), the next job starts now.
	_ = next
}

package artifact

import (
	"context"
	"log/slog"
	"time"
)

// DueIndex lists the jobs whose artifacts are due for deletion
// (internal/rdb's Artifacts).
type DueIndex interface {
	Due(ctx context.Context, now time.Time, n int) ([]string, error)
	Forget(ctx context.Context, jobID string) error
}

// Reaper deletes the artifacts of jobs whose retention has passed. Any
// number of processes may reap at once: deleting twice is harmless.
type Reaper struct {
	Store  *Store
	Index  DueIndex
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

const reapBatch = 100

func (r *Reaper) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}

// Run reaps every interval until ctx ends.
func (r *Reaper) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := r.ReapOnce(ctx)
			if err != nil && ctx.Err() == nil {
				r.logger().Warn("reap artifacts", "err", err)
			}
			if n > 0 {
				r.logger().Debug("artifacts of expired jobs deleted", "jobs", n)
			}
		}
	}
}

// ReapOnce deletes the artifacts of the jobs due now and returns how many
// jobs it handled.
func (r *Reaper) ReapOnce(ctx context.Context) (int, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	n := 0
	for {
		ids, err := r.Index.Due(ctx, now(), reapBatch)
		if err != nil {
			return n, err
		}
		for _, id := range ids {
			if err := r.Store.DeleteJob(ctx, id); err != nil && err != ErrBadID {
				return n, err
			}
			if err := r.Index.Forget(ctx, id); err != nil {
				return n, err
			}
			n++
		}
		if len(ids) < reapBatch {
			return n, nil
		}
	}
}

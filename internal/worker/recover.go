package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/jobs"
)

// A worker that dies (SIGKILL, out of memory, a lost machine) leaves tasks
// that asynq gives back only when their lease lapses (30 s) and its
// recoverer, once a minute, finds them: a minute or two. Recovery makes it
// seconds, for every kind of task, with one mechanism:
//
//   - every worker beats in Redis every BeatEvery (rdb.Workers), and keeps
//     a claim for each task it runs: a job's claim is written and removed
//     with the job's start and end (its owner token in the record), other
//     tasks' (webhook deliveries, batch expansions) by Middleware;
//   - every worker looks, every BeatEvery, for workers whose heartbeat is
//     gone (DeadAfter without a beat), takes their claims — exactly one
//     worker gets them — and enqueues each claimed task again under a task
//     id of its own;
//   - whatever the replacement and the original (when asynq recovers it)
//     could do twice is fenced: a job's start takes over only from a dead
//     owner, its outcome is refused to an attempt that lost it, a
//     session's lease of a dead holder is taken over and its fence moves
//     on, a delivered event is marked done, and a batch expansion resumes
//     where it stopped.

// Recovery timings.
const (
	// BeatEvery is how often a worker beats and looks for dead ones.
	BeatEvery = time.Second
	// DeadAfter is how long a heartbeat lives: a worker that has not
	// beaten for this long is dead.
	DeadAfter = 5 * time.Second
)

// Recovery keeps a worker's heartbeat and runs again the tasks of dead
// workers. Start it before the asynq server, stop it after.
type Recovery struct {
	id      string
	workers *rdb.Workers
	jobs    *rdb.Jobs
	queue   *asynq.Client
	log     *slog.Logger

	recovered *prometheus.CounterVec

	stop func()
}

// NewRecovery returns the recovery of worker id.
func NewRecovery(id string, workers *rdb.Workers, jobStore *rdb.Jobs, queue *asynq.Client, log *slog.Logger, reg prometheus.Registerer) *Recovery {
	if log == nil {
		log = slog.Default()
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Recovery{id: id, workers: workers, jobs: jobStore, queue: queue, log: log,
		recovered: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_tasks_recovered_total",
			Help: "Tasks of dead workers enqueued again by this worker, by task kind."}, []string{"kind"}),
	}
}

// Start beats once (so that no claim is ever written before the worker's
// heartbeat exists), then beats and reaps every BeatEvery until Stop.
func (r *Recovery) Start(ctx context.Context) error {
	if err := r.workers.Beat(ctx, r.id, DeadAfter); err != nil {
		return fmt.Errorf("worker heartbeat: %w", err)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(BeatEvery)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			bctx, bcancel := context.WithTimeout(lctx, BeatEvery)
			if err := r.workers.Beat(bctx, r.id, DeadAfter); err != nil && lctx.Err() == nil {
				r.log.Warn("worker heartbeat", "err", err)
			}
			bcancel()
			r.reapDead(lctx)
		}
	})
	r.stop = func() { cancel(); wg.Wait() }
	return nil
}

// Stop stops beating and forgets the worker in Redis (call it after the
// asynq server stopped: a claim left then is a task asynq requeued, which
// the fences keep from running twice).
func (r *Recovery) Stop(ctx context.Context) error {
	if r.stop != nil {
		r.stop()
	}
	return r.workers.Leave(ctx, r.id)
}

// reapDead runs again the claimed tasks of every dead worker.
func (r *Recovery) reapDead(ctx context.Context) {
	quiet, err := r.workers.Quiet(ctx, time.Now().Add(-DeadAfter))
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("list quiet workers", "err", err)
		}
		return
	}
	for _, w := range quiet {
		if w == r.id {
			continue
		}
		claims, dead, err := r.workers.Reap(ctx, w)
		if err != nil {
			r.log.Warn("reap a dead worker", "dead_worker", w, "err", err)
			continue
		}
		if !dead {
			continue
		}
		r.log.Warn("worker dead; its tasks run again", "dead_worker", w, "tasks", len(claims))
		for key, raw := range claims {
			if err := r.rerun(ctx, raw); err != nil {
				// asynq's own recovery of the original task is what is left.
				r.log.Error("run a dead worker's task again", "dead_worker", w, "claim", key, "err", err)
			}
		}
	}
}

// rerun enqueues a claimed task again under a task id of its own.
func (r *Recovery) rerun(ctx context.Context, raw string) error {
	c, err := jobs.DecodeClaim([]byte(raw))
	if err != nil {
		return err
	}
	id := ReplacementID(c.TaskID)
	if _, err := r.queue.EnqueueContext(ctx, c.Replacement(id)); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	if c.Job != "" {
		// The sweep leaves the job to this task should the original reach
		// asynq's archive.
		if err := r.jobs.SetTask(ctx, c.Job, id); err != nil {
			return err
		}
	}
	r.recovered.WithLabelValues(c.Type).Inc()
	r.log.Info("task of a dead worker enqueued again", "kind", c.Type, "task", c.TaskID, "replacement", id, "job", c.Job)
	return nil
}

// ReplacementID is the task id of a task run again: the original's, with
// a suffix that tells the runs apart.
func ReplacementID(original string) string {
	base, _, _ := strings.Cut(original, "~r")
	return base + "~r" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// Middleware keeps a claim for every task other than fetch and interact
// (whose jobs keep theirs in the job scripts) while it runs.
func (r *Recovery) Middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if t.Type() == jobs.KindFetch || t.Type() == jobs.KindInteract {
			return next.ProcessTask(ctx, t)
		}
		c := jobs.ClaimOf(ctx, t)
		key := t.Type() + ":" + c.TaskID
		if err := r.workers.Claim(ctx, r.id, key, c.Encode()); err != nil {
			return fmt.Errorf("claim task %s: %w", c.TaskID, err)
		}
		defer func() {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := r.workers.Unclaim(uctx, r.id, key); err != nil {
				r.log.Warn("unclaim task", "task", c.TaskID, "err", err)
			}
		}()
		return next.ProcessTask(ctx, t)
	})
}

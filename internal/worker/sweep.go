package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// A task can reach asynq's archive without its handler writing the job's
// outcome: its worker died (SIGKILL, OOM, machine lost) during the last
// attempt and the recoverer found the lease lapsed; the handler panicked or
// could not write to Redis on the last attempt; or an operator archived it
// in /admin/queues. Its job would stay queued or running until its record
// expired, keep its place in the tenant's queued_jobs count and block its
// session's line. The sweep ends such jobs as failed (retries_exhausted,
// with asynq's last error), releases their session turn, sends their events
// and deletes the archived task: the job record is what users read.
//
// An archived batch:expand task is run again (an expansion resumes where it
// stopped), at most expandReruns times per batch.

const (
	sweepPage     = 200
	sweepMaxPages = 10
	expandReruns  = 5
)

// Sweep runs SweepOnce every interval until ctx ends. Every worker sweeps;
// the job's outcome is written by compare-and-set, so two sweeps of one task
// end its job once.
func (w *Worker) Sweep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := w.SweepOnce(ctx); err != nil && ctx.Err() == nil {
				w.Logger.Warn("sweep archived tasks", "err", err)
			}
		}
	}
}

// SweepOnce handles the archived tasks of the job queues and returns how
// many jobs it ended.
func (w *Worker) SweepOnce(ctx context.Context) (int, error) {
	ended := 0
	for _, q := range []string{jobs.QueueInteractive, jobs.QueueBulk} {
		var done []string
		for page := 1; page <= sweepMaxPages; page++ {
			tasks, err := w.insp.ListArchivedTasks(q, asynq.PageSize(sweepPage), asynq.Page(page))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				break
			}
			if err != nil {
				return ended, fmt.Errorf("list archived %s tasks: %w", q, err)
			}
			for _, t := range tasks {
				switch t.Type {
				case jobs.KindFetch, jobs.KindInteract:
					n, err := w.endArchived(ctx, t)
					if err != nil {
						return ended, err
					}
					ended += n
					done = append(done, t.ID)
				case jobs.KindBatchExpand:
					w.rerunExpand(ctx, t)
				}
			}
			if len(tasks) < sweepPage {
				break
			}
		}
		for _, id := range done {
			if err := w.insp.DeleteTask(q, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				w.Logger.Warn("delete swept task", "queue", q, "task", id, "err", err)
			}
		}
	}
	return ended, nil
}

// endArchived ends the job of an archived fetch or interact task: 1 when
// this call wrote its outcome, 0 when it had ended already.
func (w *Worker) endArchived(ctx context.Context, t *asynq.TaskInfo) (int, error) {
	p, err := jobs.DecodeRun(t.Payload)
	if err != nil || p.JobID == "" {
		return 0, nil // nothing to end; the task is deleted
	}
	if cur, err := w.Jobs.TaskOf(ctx, p.JobID); err != nil {
		return 0, fmt.Errorf("task of job %s: %w", p.JobID, err)
	} else if cur != t.ID {
		return 0, nil // a replacement task runs the job now
	}
	why := t.LastErr
	if why == "" {
		why = "archived by an operator"
	}
	jerr := spec.Errorf(spec.CodeRetriesExhausted, true,
		"the job's task was given up without an outcome (%s); submit it again", why)
	n := 0
	switch err := w.Jobs.Finish(ctx, p.JobID, rdb.Outcome{Status: spec.StatusFailed, Error: jerr}); {
	case err == nil:
		n = 1
		w.jobsDone.WithLabelValues(p.Kind, spec.StatusFailed).Inc()
		w.swept.Inc()
		w.Logger.Warn("job ended by the sweep: its task was archived", "job", p.JobID, "tenant", p.Tenant, "last_error", why)
	case errors.Is(err, rdb.ErrJobEnded):
	default:
		return 0, fmt.Errorf("end job %s: %w", p.JobID, err)
	}
	if p.Request.Session != nil {
		// Its turn (a lapsed lease) and its place in line go; the next job
		// of the session runs now.
		w.removeFromLine(ctx, p.Tenant, p.Request.Session.ID, p.JobID)
	}
	if n == 1 {
		w.ended(ctx, p)
		for _, h := range w.Swept {
			h(context.WithoutCancel(ctx), p)
		}
	}
	return n, nil
}

// rerunExpand puts an archived batch expansion back in its queue.
func (w *Worker) rerunExpand(ctx context.Context, t *asynq.TaskInfo) {
	n, err := w.Jobs.CountRerun(ctx, t.ID, 48*time.Hour)
	if err != nil {
		return
	}
	if n > expandReruns {
		if n == expandReruns+1 {
			w.Logger.Error("batch expansion keeps failing; left archived", "task", t.ID, "last_error", t.LastErr)
		}
		return
	}
	if err := w.insp.RunTask(t.Queue, t.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		w.Logger.Warn("rerun archived batch expansion", "task", t.ID, "err", err)
		return
	}
	w.Logger.Warn("archived batch expansion run again", "task", t.ID, "last_error", t.LastErr)
}

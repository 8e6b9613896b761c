package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// turn is one attempt at a fetch or interact task. It takes, in order, the
// job's session turn (a lease), its place in w.running (so that a cancel
// reaches it), and, with the start of the attempt, a place among its
// tenant's running jobs; end gives back whatever it took, in one place,
// whichever way the turn went.
type turn struct {
	w       *Worker
	ctx     context.Context // the task's context
	p       *jobs.RunPayload
	log     *slog.Logger
	attempt int  // 1 for the first
	final   bool // no retry after this one
	// owner is the attempt's owner token: the job's record takes it when
	// the attempt starts, and refuses the outcome of an attempt that is no
	// longer its owner (its worker was presumed dead; see recover.go).
	owner string
	claim []byte // what the worker's claims hold while the attempt runs
	task  string // the asynq task's id

	lease    *session.Lease
	host     *hostTurn // the job's place on its host (politeness)
	slot     *heldSlot
	jobCtx   context.Context // ends on a cancel, a drain, or a lost lease
	cancel   context.CancelCauseFunc
	stopHold func()
	running  bool // counted in pagefleet_jobs_running

	// ended: the job ended for good, so it leaves its session's line (and
	// the next job of the session is woken); otherwise it keeps its place.
	ended bool
	// report: tell the finish hooks (webhook events, batch pages).
	report bool

	fresh freshTurn // the job's cache entry and change (fresh.go)
}

// ProcessRun handles fetch and interact tasks.
func (w *Worker) ProcessRun(ctx context.Context, t *asynq.Task) error {
	p, err := jobs.DecodeRun(t.Payload())
	if err != nil {
		w.Logger.Error("bad payload", "kind", t.Type(), "err", err)
		if p != nil && p.JobID != "" {
			_ = w.Jobs.Finish(ctx, p.JobID, rdb.Outcome{Status: spec.StatusFailed, Error: spec.Errorf(spec.CodeInternal, false, "%v", err)})
		}
		return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	tn := &turn{w: w, ctx: ctx, p: p, attempt: retried + 1, final: retried >= maxRetry,
		log: w.Logger.With("job", p.JobID, "tenant", p.Tenant, "kind", p.Kind)}
	tn.task, _ = asynq.GetTaskID(ctx)
	if w.ID != "" {
		tn.owner = rdb.OwnerToken(w.ID)
		c := jobs.ClaimOf(ctx, t)
		c.Job = p.JobID
		tn.claim = c.Encode()
	}
	defer tn.end()
	tn.lookupCache()
	if ok, err := tn.take(); !ok {
		return err
	}
	return tn.runAndDecide()
}

// take takes what the attempt needs: the session turn, then the start of
// the attempt. It reports false, with the task's answer, when the job does
// not run now.
func (tn *turn) take() (bool, error) {
	w, p := tn.w, tn.p
	if p.Request.Session != nil {
		sid := p.Request.Session.ID
		lease, err := w.Sessions.Acquire(tn.ctx, p.Tenant, sid, p.JobID, w.isTerminal)
		switch {
		case errors.Is(err, session.ErrBusy):
			w.busy.Inc()
			// A job that ended while it waited (cancelled) leaves the line.
			if st, _ := w.Jobs.Status(tn.ctx, p.JobID); st == "" || spec.Terminal(st) {
				w.removeFromLine(tn.ctx, p.Tenant, sid, p.JobID)
				return false, nil
			}
			return false, ErrSessionBusy
		case errors.Is(err, session.ErrNotInLine):
			tn.log.Info("duplicate delivery of an ended session job dropped")
			return false, nil
		case err != nil:
			return false, fmt.Errorf("session %q turn: %w", sid, err)
		}
		tn.lease = lease
		w.Sessions.ObserveWait(time.Since(p.AcceptedAt))
	}

	if ok, err := tn.takeHost(); !ok {
		return false, err
	}

	// The job can be cancelled from here on: a cancel that reaches the
	// record before Start makes Start refuse the job, and one that comes
	// later finds the job in w.running, so no status read is needed after
	// Start.
	tn.jobCtx, tn.cancel = context.WithCancelCause(tn.ctx)
	w.mu.Lock()
	w.running[p.JobID] = tn.cancel
	if w.draining {
		tn.cancel(errStopping)
	}
	w.mu.Unlock()

	// Start takes the job's place among its tenant's running jobs in the
	// same script (the running_jobs limit).
	att := rdb.Attempt{N: tn.attempt, Owner: tn.owner, TaskID: tn.task, Claim: tn.claim, MaxAttempts: jobs.MaxRetry + 1}
	stopped, slot, err := w.start(tn.ctx, p, &att)
	switch {
	case errors.Is(err, ErrTenantBusy):
		return false, err
	case err != nil:
		return false, fmt.Errorf("start job: %w", err)
	}
	tn.slot = slot
	if stopped == rdb.Held {
		// Another attempt runs the job on a live worker: this task (asynq's
		// recovery of a task whose job a replacement took over, or a
		// replacement whose presumed-dead worker came back) has nothing
		// to do.
		tn.log.Info("job runs in another attempt; task dropped", "task", tn.task)
		return false, nil
	}
	if stopped != "" {
		tn.log.Info("job not run", "status", stopped)
		tn.ended = true
		// A redelivery after the outcome was written: make sure its events
		// went out (they are deduplicated).
		tn.report = stopped == spec.StatusSucceeded || stopped == spec.StatusFailed
		return false, nil
	}
	if att.N != tn.attempt {
		// A replacement task took over a dead worker's attempt: it counts
		// after it, and may be the job's last.
		tn.attempt = att.N
		tn.final = tn.final || att.N >= att.MaxAttempts
	}
	if tn.attempt == 1 {
		w.queueWait.Observe(time.Since(p.AcceptedAt).Seconds())
	}
	if tn.lease != nil {
		tn.jobCtx, tn.stopHold = w.Sessions.Hold(tn.jobCtx, tn.lease)
	}
	w.inflight.Inc()
	tn.running = true
	return true, nil
}

// runAndDecide runs the job, decides what its attempt comes to and acts on
// the verdict.
func (tn *turn) runAndDecide() error {
	w, p, ctx := tn.w, tn.p, tn.ctx
	tn.log.Info("job started", "attempt", tn.attempt, "url", p.Request.URL)
	start := time.Now()
	out := tn.runFresh()
	mode := "plain"
	if p.Request.Rendered(p.Kind) {
		mode = "rendered"
	}
	w.runTime.WithLabelValues(p.Kind, mode).Observe(time.Since(start).Seconds())
	tn.hostAnswered(out.result)
	tn.track(&out)

	cause := context.Cause(tn.jobCtx)
	v := decide(facts{
		err:       out.err,
		cancelled: errors.Is(cause, errCancelled),
		stopping:  errors.Is(cause, errStopping),
		shutdown:  errors.Is(ctx.Err(), context.Canceled),
		leaseLost: tn.lease != nil && ctx.Err() == nil && errors.Is(cause, session.ErrLeaseLost),
		saved:     out.saved,
		final:     tn.final,
	})
	bg := context.WithoutCancel(ctx)
	switch v {
	case cancelled:
		tn.log.Info("job cancelled while running")
		w.jobsDone.WithLabelValues(p.Kind, spec.StatusCancelled).Inc()
		tn.ended, tn.report = true, true
		return nil
	case handBack:
		// Hand the job back, then wait for asynq to requeue the task (it
		// cancels ctx after that): nothing of this attempt runs any more
		// when another worker takes the task, and the hand-back counts as
		// no failed attempt.
		_ = w.Jobs.Requeue(bg, p.JobID, tn.owner)
		tn.endSession()
		tn.log.Info("job handed back: the worker is stopping")
		<-ctx.Done()
		return fmt.Errorf("%w: %w", errStopping, ctx.Err())
	case abandon:
		// Write nothing of the attempt: a newer holder may run the session.
		// A later attempt runs the job.
		tn.log.Warn("session lease lost; attempt abandoned")
		_ = w.Jobs.Requeue(bg, p.JobID, tn.owner)
		return fmt.Errorf("session %q: %w", tn.lease.SID, session.ErrLeaseLost)
	case retry:
		tn.log.Warn("job attempt failed; will retry", "code", out.err.Code, "err", out.err.Message)
		_ = w.Jobs.Requeue(bg, p.JobID, tn.owner)
		return out.err
	}

	o := rdb.Outcome{Status: spec.StatusSucceeded, Result: out.result, SessionUpdated: out.updated, LeaveRunning: tn.slot.tenant(),
		Owner: tn.owner}
	if out.err != nil {
		o.Status, o.Error = spec.StatusFailed, out.err
	}
	tn.trackOutcome(&o)
	if out.result != nil {
		out.result.Timings = spec.Timings{QueuedMs: max(0, start.Sub(p.AcceptedAt).Milliseconds()), RunMs: time.Since(start).Milliseconds()}
		if tn.host != nil {
			out.result.Timings.HostWaitMs = tn.host.waited.Milliseconds()
		}
	}
	tn.encodeResult(&o, &out)
	tn.storeResult(&o) // before the job ends: a client told it succeeded finds it cached
	switch err := w.finish(ctx, p.JobID, o); {
	case errors.Is(err, rdb.ErrStaleAttempt):
		// The job was taken over while this attempt ran (this worker was
		// presumed dead): its owner writes the outcome and sends the events.
		tn.log.Warn("job taken over by another attempt; this outcome is discarded", "status", o.Status)
		if tn.slot != nil {
			tn.slot.left = true // the owner holds the job's running_jobs place now
		}
		return nil
	case errors.Is(err, rdb.ErrJobEnded):
		// Cancelled (or ended by the sweep) while the attempt ended: the
		// stored outcome stays; its events go out (they are deduplicated).
		tn.log.Info("job ended meanwhile; this outcome is not written", "status", o.Status)
		if tn.slot != nil {
			tn.slot.left = true
		}
		tn.ended, tn.report = true, true
		return nil
	case err != nil:
		return fmt.Errorf("write outcome: %w", err)
	}
	if tn.slot != nil {
		tn.slot.left = true // Finish gave the place back
	}
	tn.fresh.written = out.result
	w.jobsDone.WithLabelValues(p.Kind, o.Status).Inc()
	if out.err != nil {
		tn.log.Info("job failed", "code", out.err.Code, "err", out.err.Message, "duration_ms", time.Since(start).Milliseconds())
	} else {
		tn.log.Info("job succeeded", "status_code", out.result.StatusCode, "duration_ms", time.Since(start).Milliseconds(), "session_updated", out.updated)
	}
	tn.ended, tn.report = true, true
	return nil
}

// end gives back what the turn took: the lease renewals, the place in
// w.running, the running_jobs place, the session turn (leaving the line
// when the job ended), and tells the finish hooks when there is something
// to report.
func (tn *turn) end() {
	w := tn.w
	if tn.running {
		w.inflight.Dec()
	}
	if tn.stopHold != nil {
		tn.stopHold()
	}
	if tn.cancel != nil {
		w.mu.Lock()
		delete(w.running, tn.p.JobID)
		w.mu.Unlock()
		tn.cancel(nil)
	}
	tn.slot.release()
	tn.releaseHost()
	tn.endSession()
	if tn.report {
		w.endedWith(tn.ctx, tn.p, tn.written())
	}
}

// endSession ends the session turn, once: a job that ended leaves the line
// and wakes the next job; any other keeps its place (it runs again) and
// only frees the lock.
func (tn *turn) endSession() {
	if tn.lease == nil {
		return
	}
	tn.w.unlock(tn.lease, tn.ended)
	tn.lease = nil
}

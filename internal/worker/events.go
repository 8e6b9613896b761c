package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// FinishHook is told about every job with a webhook or of a batch that
// ended (succeeded, failed or cancelled while running); other jobs have
// nothing to report, and the worker saves reading their record back. It may
// be called more than once for one job (a redelivered task after a crash),
// so it must be idempotent.
type FinishHook func(ctx context.Context, p *jobs.RunPayload, job *spec.Job)

// Events sends the job's webhook events.
type Events struct {
	Client   *asynq.Client
	Schedule []time.Duration
	Logger   *slog.Logger
}

// JobEnded enqueues job.succeeded or job.failed once.
func (e *Events) JobEnded(ctx context.Context, p *jobs.RunPayload, job *spec.Job) {
	if p.Request.Webhook == nil || p.BatchID != "" { // batch jobs report as batch.page
		return
	}
	ev := spec.EventJobSucceeded
	switch job.Status {
	case spec.StatusFailed:
		ev = spec.EventJobFailed
	case spec.StatusSucceeded:
	default:
		return
	}
	if err := webhook.EnqueueOnce(ctx, e.Client, p.Request.Webhook, p.Tenant, p.JobID, ev, job, e.Schedule); err != nil {
		e.Logger.Error("enqueue webhook", "job", p.JobID, "tenant", p.Tenant, "event", ev, "err", err)
	}
}

// ended reads the job record and tells the hooks.
func (w *Worker) ended(ctx context.Context, p *jobs.RunPayload) { w.endedWith(ctx, p, nil) }

// endedWith is ended when res is the result the turn wrote (nil: read it
// from the record): the record is read without it.
func (w *Worker) endedWith(ctx context.Context, p *jobs.RunPayload, res *spec.Result) {
	if len(w.Hooks) == 0 || (p.Request.Webhook == nil && p.BatchID == "") {
		return
	}
	ctx = context.WithoutCancel(ctx)
	in, err := w.Jobs.Get(ctx, p.Tenant, p.JobID, res == nil)
	if err == nil && res != nil {
		in.Job.Result = res
	}
	if err != nil {
		if err != rdb.ErrJobNotFound {
			w.Logger.Error("read ended job", "job", p.JobID, "tenant", p.Tenant, "err", err)
		}
		return
	}
	if r := in.Job.Result; r != nil && len(r.Embed) > 0 {
		// Events carry artifacts as links: their bytes stay out of the
		// event's task (Redis) and its delivery.
		cp := *r
		cp.Embed = nil
		in.Job.Result = &cp
	}
	for _, h := range w.Hooks {
		h(ctx, p, &in.Job)
	}
}

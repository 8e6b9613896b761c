package submit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Run is one run of a schedule: the batch or the fetch job its due time
// creates.
type Run struct {
	ScheduleID string
	Due        time.Time
	// Batch holds the batch's settings (Kind, Template, Webhook, Crawl;
	// the rest is set here) and Seeds its first URLs; or Fetch is the job's
	// request, validated and normalised.
	Batch *rdb.Batch
	Seeds []string
	Fetch *spec.Request
}

// Scheduled creates the batch or job of run for tenant t under its limits
// and returns its id, derived from the schedule and the due time
// (rdb.RunID): whatever number of times and processes call it for one run
// (its first caller died after writing, or Redis lost the claim in a
// failover), the run's batch or job is written and counted once, and its
// first task is enqueued again only when it exists no more. The error is
// a *LimitError when a limit refused the run.
func (s *Service) Scheduled(ctx context.Context, t *tenant.Tenant, run Run) (string, error) {
	if run.Batch != nil {
		return s.scheduledBatch(ctx, t, run)
	}
	id := rdb.RunID("job", run.ScheduleID, run.Due)
	now := time.Now().UTC()
	req := *run.Fetch
	p := &jobs.RunPayload{JobID: id, Tenant: t.ID, Kind: spec.KindFetch, AcceptedAt: now, Request: req}
	rec := rdb.JobRecord{ID: id, Tenant: t.ID, Kind: spec.KindFetch, URL: req.URL, CreatedAt: now, Webhook: req.Webhook,
		ScheduleID: run.ScheduleID, ScheduledAt: run.Due}
	if req.Session != nil {
		rec.SessionID = req.Session.ID
	}
	err := s.Jobs.CreateNew(ctx, rec, int(t.Limits.RequestsPerSecond), t.Limits.QueuedJobs, s.LineTTL)
	if err != nil && !errors.Is(err, rdb.ErrJobExists) {
		return "", limitError(t, err)
	}
	if errors.Is(err, rdb.ErrJobExists) {
		st, err := s.Jobs.Status(ctx, id)
		if err != nil {
			return "", err
		}
		if st != spec.StatusQueued {
			return id, nil // it ran (or runs): its task did its work
		}
	}
	task, err := jobs.NewRunTask(p)
	if err != nil {
		return "", err
	}
	if _, err := s.Queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		// The record stays: the run is created again (its claim lapses),
		// and that enqueues the task.
		return "", fmt.Errorf("enqueue job %s: %w", id, err)
	}
	return id, nil
}

func (s *Service) scheduledBatch(ctx context.Context, t *tenant.Tenant, run Run) (string, error) {
	b := run.Batch
	b.ID, b.Tenant, b.CreatedAt = rdb.RunID("bat", run.ScheduleID, run.Due), t.ID, time.Now().UTC()
	b.ScheduleID, b.ScheduledAt = run.ScheduleID, run.Due
	if b.Template.ChangeTracking != nil {
		b.TrackScope = rdb.TrackScope(run.ScheduleID, b.Template.ChangeTracking.Tag)
	}
	exists, err := s.Batches.Exists(ctx, b.ID)
	if err != nil {
		return "", err
	}
	if !exists {
		n := len(run.Seeds)
		if err := s.Jobs.Gate(ctx, t.ID, int(t.Limits.RequestsPerSecond), t.Limits.QueuedJobs, n); err != nil {
			return "", limitError(t, err)
		}
		if err := s.Batches.CreateURLsNew(ctx, b, run.Seeds); err != nil {
			s.Jobs.Release(context.WithoutCancel(ctx), t.ID, n)
			if !errors.Is(err, rdb.ErrBatchExists) {
				return "", err
			}
		}
	}
	// The expansion task has a derived id too: enqueued twice, it is
	// one task; enqueued after it ran, it finds the expansion done.
	if err := s.enqueue(ctx, func() (*asynq.Task, error) {
		return jobs.NewExpandTask(&jobs.ExpandPayload{BatchID: b.ID, Tenant: b.Tenant})
	}); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return "", fmt.Errorf("start batch %s: %w", b.ID, err)
	}
	return b.ID, nil
}

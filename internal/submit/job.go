package submit

import (
	"context"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Job is the answer to a job submission.
type Job struct {
	ID        string
	CreatedAt time.Time
	// Replayed: the Idempotency-Key was used before and Stored is the job
	// that request created; nothing was created now.
	Replayed bool
	Stored   *rdb.JobInfo
	// Done is the job when it ended at submission: served from the result
	// cache (freshness).
	Done *spec.Job
}

// Job accepts a job of kind for tenant t: req must be validated and
// normalised. idemKey is the request's Idempotency-Key ("" for none).
//
// A job without a session costs two round trips (its admission and record
// are one script, then the task); a session job's place in its line is
// written by the same script. When the task cannot be enqueued, the record,
// the line entry, the admission and the key are taken back. A fetch with
// max_age_ms that the tenant's result cache answers ends here: Done is the
// succeeded job, and no task is enqueued.
func (s *Service) Job(ctx context.Context, t *tenant.Tenant, kind string, req spec.Request, idemKey string) (Job, error) {
	id := rdb.NewID("job")
	prev, err := s.claim(ctx, t.ID, scopeJob, idemKey, id)
	if err != nil {
		return Job{}, err
	}
	if prev != "" {
		in, err := replay(ctx, s, t.ID, scopeJob, idemKey, func() (*rdb.JobInfo, error) {
			return s.Jobs.Get(ctx, t.ID, prev, false)
		}, rdb.ErrJobNotFound)
		if err != nil {
			return Job{}, err
		}
		return Job{ID: prev, CreatedAt: in.Job.CreatedAt, Replayed: true, Stored: in}, nil
	}
	now := time.Now().UTC()
	done, err := s.fromCache(ctx, t, kind, &req, id, now)
	if done != nil {
		return Job{ID: id, CreatedAt: now, Done: done}, nil
	}
	p := &jobs.RunPayload{JobID: id, Tenant: t.ID, Kind: kind, AcceptedAt: now, Request: req}
	if err == nil {
		err = s.enqueueJob(ctx, t, p)
	}
	if err != nil {
		if idemKey != "" {
			// Kept, the key would answer 409 to the client's retry for 24 h.
			s.untilDone("release an Idempotency-Key", id, func(ctx context.Context) error {
				return s.Idem.Release(ctx, t.ID, scopeJob, idemKey)
			})
		}
		return Job{}, err
	}
	return Job{ID: id, CreatedAt: now}, nil
}

// enqueueJob admits the job, writes its record (and line entry) and
// enqueues its task.
func (s *Service) enqueueJob(ctx context.Context, t *tenant.Tenant, p *jobs.RunPayload) error {
	task, err := jobs.NewRunTask(p)
	if err != nil {
		return err
	}
	rec := rdb.JobRecord{ID: p.JobID, Tenant: p.Tenant, Kind: p.Kind, URL: p.Request.URL, CreatedAt: p.AcceptedAt, Webhook: p.Request.Webhook}
	if p.Request.Session != nil {
		rec.SessionID = p.Request.Session.ID
	}
	if err := s.Jobs.CreateGated(ctx, rec, int(t.Limits.RequestsPerSecond), t.Limits.QueuedJobs, s.LineTTL); err != nil {
		return limitError(t, err)
	}
	if _, err := s.Queue.EnqueueContext(ctx, task); err != nil {
		// Take the job back. Left behind, its record would be a queued job
		// that never runs, holding a place in the tenant's active count and,
		// for a session job, the session's later jobs back.
		s.untilDone("take back a job that was not enqueued", p.JobID, func(ctx context.Context) error {
			if rec.SessionID != "" {
				if _, err := s.Sessions.Remove(ctx, p.Tenant, rec.SessionID, p.JobID); err != nil {
					return err
				}
			}
			return s.Jobs.Discard(ctx, p.Tenant, p.JobID)
		})
		return err
	}
	return nil
}

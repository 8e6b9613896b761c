package submit

import (
	"context"
	"time"

	"github.com/pagefleet/pagefleet/internal/fresh"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// fromCache serves a fetch with max_age_ms from the tenant's result cache
// when it holds a result of the same request young enough: the job is
// written as succeeded with that result and its job.succeeded event is
// enqueued, and no task is. It returns nil when the job is to run (no
// usable entry, or the cache could not be read: the job then runs as if
// there were none); its error is a *LimitError or a store's.
func (s *Service) fromCache(ctx context.Context, t *tenant.Tenant, kind string, req *spec.Request, id string, now time.Time) (*spec.Job, error) {
	if s.Cache == nil || req.MaxAgeMs == nil || !req.Cacheable(kind) || (req.ChangeTracking != nil && s.Tracker == nil) {
		return nil, nil
	}
	key, err := fresh.Key(req, false)
	if err != nil {
		return nil, nil
	}
	e, err := s.Cache.Get(ctx, t.ID, key)
	if err != nil {
		s.Logger.Warn("read the result cache; the job runs", "job", id, "tenant", t.ID, "err", err)
		return nil, nil
	}
	var fe *fresh.Entry
	if e != nil {
		fe = &fresh.Entry{At: e.At, ETag: e.ETag, LastModified: e.LastModified, Markdown: e.Markdown}
	}
	use := fresh.Decide(req.MaxAgeMs, fe, now, !req.Rendered(kind), req.ChangeTracking != nil)
	s.Fresh.Lookup(fresh.LookupOutcome(use, e != nil))
	if use != fresh.Hit {
		return nil, nil
	}
	res, err := e.Result()
	if err != nil {
		s.Logger.Warn("decode a cached result; the job runs", "job", id, "tenant", t.ID, "err", err)
		return nil, nil
	}
	res.URL, res.Timings = req.URL, spec.Timings{}
	res.Cache = &spec.CacheInfo{Hit: true, AgeMs: fresh.Age(fe, now).Milliseconds(), SourceJob: e.Job}
	// Admitted first: a job over the rate is not tracked.
	if err := s.Admit(ctx, t); err != nil {
		return nil, err
	}
	if req.ChangeTracking != nil {
		md := ""
		if res.Markdown != nil {
			md = *res.Markdown
		}
		if res.Change, err = fresh.Track(ctx, s.Tracker, t.ID, req.URL, req.ChangeTracking.Tag, id, now, md); err != nil {
			return nil, err
		}
		s.Fresh.Change(res.Change.Status)
	}
	rec := rdb.JobRecord{ID: id, Tenant: t.ID, Kind: kind, URL: req.URL, CreatedAt: now, Webhook: req.Webhook}
	if err := s.Jobs.CreateSucceeded(ctx, rec, res, 0); err != nil {
		return nil, err
	}
	job := &spec.Job{ID: id, Kind: kind, Status: spec.StatusSucceeded, CreatedAt: now, StartedAt: &now, FinishedAt: &now,
		URL: req.URL, Result: res}
	if req.Webhook != nil {
		if err := webhook.EnqueueOnce(ctx, s.Queue, req.Webhook, t.ID, id, spec.EventJobSucceeded, job, s.WebhookSchedule); err != nil {
			// The job is written: its event is retried in the background.
			s.untilDone("enqueue job.succeeded of a cache hit", id, func(ctx context.Context) error {
				return webhook.EnqueueOnce(ctx, s.Queue, req.Webhook, t.ID, id, spec.EventJobSucceeded, job, s.WebhookSchedule)
			})
		}
	}
	return job, nil
}

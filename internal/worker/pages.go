package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// settle completes the batch when nothing of it is left (see ended).
func (b *Bulk) settle(ctx context.Context, id string, redelivery bool) {
	st, now, err := b.store.Settle(ctx, id)
	if err != nil {
		if !errors.Is(err, rdb.ErrBatchNotFound) {
			b.cfg.Logger.Error("settle batch", "batch", id, "err", err)
		}
		return
	}
	b.ended(ctx, id, st, now, redelivery)
}

// ended sends batch.completed when a settle completed the batch (now), or
// saw it ended during a redelivery, whose first run may have died before
// sending it (the event is deduplicated).
func (b *Bulk) ended(ctx context.Context, id, st string, now, redelivery bool) {
	if st == spec.BatchRunning || (!now && !redelivery) {
		return
	}
	if now {
		b.cfg.Logger.Info("batch ended", "batch", id, "status", st)
	}
	if err := b.completed(ctx, id); err != nil {
		b.cfg.Logger.Error("enqueue batch.completed", "batch", id, "err", err)
	}
}

func (b *Bulk) completed(ctx context.Context, id string) error {
	c, err := b.conf(ctx, id)
	if err != nil {
		return err
	}
	if !c.meta.Webhook.WantsEvent(spec.EventBatchCompleted) {
		return nil
	}
	v, err := b.store.Get(ctx, "", id)
	if err != nil {
		return err
	}
	return webhook.EnqueueOnce(ctx, b.cfg.Queue, c.meta.Webhook, c.meta.Tenant, id, spec.EventBatchCompleted, v, b.cfg.Schedule)
}

// JobEnded is the FinishHook of batch jobs: batch.page for a job that
// succeeded or failed, and for a crawl page that succeeded, its links
// followed. It may run twice for one job; both steps are idempotent.
func (b *Bulk) JobEnded(ctx context.Context, p *jobs.RunPayload, job *spec.Job) {
	if p.BatchID == "" {
		return
	}
	c, err := b.conf(ctx, p.BatchID)
	if err != nil {
		if !errors.Is(err, rdb.ErrBatchNotFound) {
			b.cfg.Logger.Error("read batch", "batch", p.BatchID, "job", p.JobID, "tenant", p.Tenant, "err", err)
		}
		return
	}
	if (job.Status == spec.StatusSucceeded || job.Status == spec.StatusFailed) && c.meta.Webhook.WantsPage(job) {
		if err := b.pageEvent(ctx, c.meta, job); err != nil {
			b.cfg.Logger.Error("enqueue batch.page", "batch", p.BatchID, "job", p.JobID, "tenant", p.Tenant, "err", err)
		}
	}
	if c.meta.Crawl != nil && job.Status == spec.StatusSucceeded {
		if err := b.follow(ctx, c.meta, p, job); err != nil {
			b.cfg.Logger.Error("follow crawl links", "batch", p.BatchID, "job", p.JobID, "tenant", p.Tenant, "err", err)
		}
	}
}

// Swept settles the batch of a job that the sweep ended (see
// Worker.Sweep): it may have been the batch's last job.
func (b *Bulk) Swept(ctx context.Context, p *jobs.RunPayload) {
	if p.BatchID != "" {
		b.settle(ctx, p.BatchID, false)
	}
}

// pageEvent enqueues batch.page for job once: its webhook-id is derived
// from the job, its attempts are logged under the batch.
func (b *Bulk) pageEvent(ctx context.Context, m *rdb.Batch, job *spec.Job) error {
	body, err := webhook.NewEvent(spec.EventBatchPage, time.Now(), job, m.Webhook.Metadata)
	if err != nil {
		return err
	}
	dp := &webhook.DeliverPayload{WebhookID: webhook.EventID(job.ID, spec.EventBatchPage), Tenant: m.Tenant, URL: m.Webhook.URL,
		Owner: m.ID, Body: body, Type: spec.EventBatchPage}
	task, err := webhook.NewDeliverTask(dp, b.cfg.Schedule)
	if err != nil {
		return err
	}
	_, err = b.cfg.Queue.EnqueueContext(ctx, task, asynq.Retention(25*time.Hour))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	return nil
}

// follow adds the links of a crawl page that the crawl follows (see
// crawl.Follower) as jobs of its batch, each URL once per batch, enqueues
// their tasks, then closes the page's discovery.
func (b *Bulk) follow(ctx context.Context, m *rdb.Batch, p *jobs.RunPayload, job *spec.Job) error {
	pending, err := b.store.DiscoveryPending(ctx, p.JobID)
	if err != nil || !pending {
		return err
	}
	depth := p.Depth + 1
	var pages []rdb.Found
	if job.Result != nil {
		if canon, ok := b.follower.Canonical(m, job.URL, job.Result.Canonical); ok {
			// The page is its canonical URL: a link to that adds no job.
			if _, err := b.store.ClaimURL(ctx, m.ID, canon, p.JobID); err != nil {
				return err
			}
		}
		if pages, err = b.follower.Pages(ctx, m, depth, job.Result.Links); err != nil {
			return err
		}
	}
	children, err := b.store.Discover(ctx, m, p.JobID, depth, pages)
	if err != nil {
		return err
	}
	payloads := make([]*jobs.RunPayload, len(children))
	now := time.Now().UTC()
	for i, ch := range children {
		payloads[i] = b.payload(m, ch.JobID, ch.URL, depth)
		payloads[i].AcceptedAt = now // queued from now, not from the batch's start
	}
	if err := b.enqueueAll(ctx, payloads); err != nil {
		return err
	}
	return b.store.DiscoveryDone(ctx, m.ID, p.JobID)
}

// PageEvents reports whether the batch of p sends batch.page events
// (true when the batch cannot be read: the caller then reads what the
// event needs).
func (b *Bulk) PageEvents(ctx context.Context, p *jobs.RunPayload) bool {
	if p.BatchID == "" {
		return false
	}
	c, err := b.conf(ctx, p.BatchID)
	return err != nil || c.meta.Webhook.WantsEvent(spec.EventBatchPage)
}

package worker

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Run reaps lapsed bulk slots until ctx ends: the jobs of a worker that
// died go back to the queue within the slot lease, instead of waiting for
// asynq to notice the lost task.
func (b *Bulk) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.reap(ctx)
		}
	}
}

// reap puts the jobs whose bulk slot lapsed back in the queue.
func (b *Bulk) reap(ctx context.Context) {
	tenants, err := b.store.SlotTenants(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.cfg.Logger.Warn("list bulk slots", "err", err)
		}
		return
	}
	for _, tn := range tenants {
		ids, err := b.store.ReapSlots(ctx, tn)
		if err != nil {
			b.cfg.Logger.Warn("reap bulk slots", "tenant", tn, "err", err)
			continue
		}
		for _, id := range ids {
			if err := b.requeueLapsed(ctx, tn, id); err != nil {
				b.cfg.Logger.Error("requeue job of a lapsed bulk slot", "job", id, "tenant", tn, "err", err)
			}
		}
	}
}

// requeueLapsed puts a job whose worker died back in the queue, as a new
// task (the old one stays with asynq until it notices, and then finds the
// job ended or running and drops it).
func (b *Bulk) requeueLapsed(ctx context.Context, tenantID, id string) error {
	if err := b.cfg.Jobs.Requeue(ctx, id); err != nil {
		return err
	}
	in, err := b.cfg.Jobs.Get(ctx, tenantID, id, false)
	if errors.Is(err, rdb.ErrJobNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if in.Job.Status != spec.StatusQueued || in.Job.BatchID == "" {
		return nil
	}
	c, err := b.conf(ctx, in.Job.BatchID)
	if err != nil {
		return err
	}
	p := b.payload(c.meta, id, in.Job.URL, in.Depth)
	p.Kind = in.Job.Kind
	task, err := jobs.NewRunTask(p)
	if err != nil {
		return err
	}
	taskID := id + "-r" + strconv.FormatInt(time.Now().UnixMilli(), 36)
	if _, err := b.cfg.Queue.EnqueueContext(ctx, task, asynq.TaskID(taskID)); err != nil {
		return err
	}
	// The old task may still reach asynq's archive; the sweep leaves the
	// job to this one.
	if err := b.cfg.Jobs.SetTask(ctx, id, taskID); err != nil {
		return err
	}
	b.reaped.Inc()
	b.cfg.Logger.Warn("bulk slot lapsed (its worker died?); job queued again", "job", id, "tenant", tenantID, "batch", in.Job.BatchID)
	return nil
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// payload is the fetch task of a batch job.
func (b *Bulk) payload(m *rdb.Batch, jobID, url string, depth int) *jobs.RunPayload {
	req := m.Template
	req.URL = url
	return &jobs.RunPayload{JobID: jobID, Tenant: m.Tenant, Kind: spec.KindFetch, BatchID: m.ID, Depth: depth,
		Crawl: m.Crawl != nil, AcceptedAt: m.CreatedAt, Request: req}
}

// enqueueAll enqueues the tasks with a few goroutines; a task that exists
// already (a re-run) is no error.
func (b *Bulk) enqueueAll(ctx context.Context, ps []*jobs.RunPayload) error {
	if len(ps) == 0 {
		return nil
	}
	work := make(chan *jobs.RunPayload)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(b.cfg.EnqueueConcurrency, len(ps)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				task, err := jobs.NewRunTask(p)
				if err == nil {
					_, err = b.cfg.Queue.EnqueueContext(ctx, task)
				}
				if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("enqueue job %s: %w", p.JobID, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, p := range ps {
		work <- p
	}
	close(work)
	wg.Wait()
	return first
}

// expandChunk is how many URLs one expansion step turns into jobs.
const expandChunk = 500

// ProcessExpand handles batch:expand: it turns the batch's URL list into
// job records (a chunk per transaction, resumable from the expansion mark)
// and enqueues their fetch tasks, then closes the expansion. A re-run after
// a crash resumes where the last run stopped and enqueues again the tasks
// of jobs still queued (task id = job id: no duplicates).
func (b *Bulk) ProcessExpand(ctx context.Context, t *asynq.Task) error {
	p, err := jobs.DecodeExpand(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
	}
	log := b.cfg.Logger.With("batch", p.BatchID, "tenant", p.Tenant)
	c, err := b.conf(ctx, p.BatchID)
	if errors.Is(err, rdb.ErrBatchNotFound) {
		log.Warn("batch to expand is gone")
		return nil
	}
	if err != nil {
		return err
	}
	m := c.meta
	st, err := b.store.ExpandState(ctx, m.ID)
	if err != nil {
		return err
	}
	if st.Done {
		b.settle(ctx, m.ID, true)
		return nil
	}
	start := time.Now()
	if st.Expanded > 0 {
		if err := b.reenqueue(ctx, m, st.Expanded); err != nil {
			return err
		}
	}
	for i := st.Expanded; i < st.Total; {
		urls, err := b.store.URLs(ctx, m.ID, i, expandChunk)
		if err != nil {
			return err
		}
		if len(urls) == 0 {
			return fmt.Errorf("%w: batch %s has no URL at index %d", asynq.SkipRetry, m.ID, i)
		}
		ids, cancelled, err := b.store.CreateChunk(ctx, m, i, urls)
		if err != nil {
			return err
		}
		if cancelled {
			if _, err := b.cfg.Jobs.CancelQueued(ctx, m.Tenant, ids); err != nil {
				return err
			}
		} else {
			ps := make([]*jobs.RunPayload, len(ids))
			for k, id := range ids {
				ps[k] = b.payload(m, id, urls[k], 0)
			}
			if err := b.enqueueAll(ctx, ps); err != nil {
				return err
			}
		}
		b.expanded.Add(float64(len(ids)))
		i += len(urls)
	}
	if err := b.store.FinishExpand(ctx, m.ID); err != nil {
		return err
	}
	log.Info("batch expanded", "jobs", st.Total, "duration_ms", time.Since(start).Milliseconds())
	b.settle(context.WithoutCancel(ctx), m.ID, false)
	return nil
}

// reenqueue enqueues again the tasks of the first n jobs that are still
// queued (their enqueue may have been cut short by a crash).
func (b *Bulk) reenqueue(ctx context.Context, m *rdb.Batch, n int) error {
	for i := 0; i < n; i += expandChunk {
		ids, err := b.store.JobIDs(ctx, m.ID, int64(i), int64(min(expandChunk, n-i)))
		if err != nil {
			return err
		}
		infos, err := b.cfg.Jobs.GetMany(ctx, m.Tenant, ids, false)
		if err != nil {
			return err
		}
		var ps []*jobs.RunPayload
		for _, in := range infos {
			if in.Job.Status == spec.StatusQueued {
				ps = append(ps, b.payload(m, in.Job.ID, in.Job.URL, 0))
			}
		}
		if err := b.enqueueAll(ctx, ps); err != nil {
			return err
		}
	}
	return nil
}

package submit

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Batch is the answer to a batch submission.
type Batch struct {
	spec.BatchAccepted
	// Replayed: the Idempotency-Key was used before and the batch is the
	// one that request created; nothing was created now.
	Replayed bool
}

// Batch accepts a batch for tenant t: b holds its validated settings (its
// ID and CreatedAt are set here), urls the URLs of a list batch. idemKey
// is the request's Idempotency-Key ("" for none).
//
// Every URL of a list (or a crawl's start page) takes a place in the
// tenant's active count at once; the batch's hash and URL list are one
// transaction, then one task turns the list into jobs (a crawl's first
// task is its start page). A failure removes what was written.
func (s *Service) Batch(ctx context.Context, t *tenant.Tenant, b *rdb.Batch, urls []string, idemKey string) (Batch, error) {
	b.ID, b.Tenant, b.CreatedAt = rdb.NewBatchID(), t.ID, time.Now().UTC()
	n := len(urls)
	if b.Kind == spec.BatchKindCrawl {
		n = 1
	}
	prev, err := s.claim(ctx, t.ID, scopeBatch, idemKey, b.ID)
	if err != nil {
		return Batch{}, err
	}
	if prev != "" {
		v, err := replay(ctx, s, t.ID, scopeBatch, idemKey, func() (*rdb.BatchView, error) {
			return s.Batches.Get(ctx, t.ID, prev)
		}, rdb.ErrBatchNotFound)
		if err != nil {
			return Batch{}, err
		}
		return Batch{BatchAccepted: spec.BatchAccepted{ID: v.ID, Kind: v.Kind, Status: v.Status, Total: int(v.Total), CreatedAt: v.CreatedAt},
			Replayed: true}, nil
	}
	bg := context.WithoutCancel(ctx)
	undoIdem := func() {
		if idemKey != "" {
			_ = s.Idem.Release(bg, t.ID, scopeBatch, idemKey)
		}
	}
	if err := s.Jobs.Gate(ctx, t.ID, int(t.Limits.RequestsPerSecond), t.Limits.QueuedJobs, n); err != nil {
		undoIdem()
		return Batch{}, limitError(t, err)
	}
	if err := s.startBatch(ctx, b, urls); err != nil {
		s.Jobs.Release(bg, t.ID, n)
		undoIdem()
		return Batch{}, err
	}
	return Batch{BatchAccepted: spec.BatchAccepted{ID: b.ID, Kind: b.Kind, Status: spec.BatchRunning, Total: n, CreatedAt: b.CreatedAt}}, nil
}

// startBatch writes the batch and enqueues its first task: the expansion of
// a URL list (one task, whatever the size), or a crawl's start page. A
// failure to enqueue removes what was written.
func (s *Service) startBatch(ctx context.Context, b *rdb.Batch, urls []string) error {
	var err error
	if b.Kind == spec.BatchKindCrawl {
		var id string
		if id, err = s.Batches.CreateCrawl(ctx, b); err != nil {
			return err
		}
		req := b.Template
		req.URL = b.Crawl.StartURL
		err = s.enqueue(ctx, func() (*asynq.Task, error) {
			return jobs.NewRunTask(&jobs.RunPayload{JobID: id, Tenant: b.Tenant, Kind: spec.KindFetch, BatchID: b.ID,
				AcceptedAt: b.CreatedAt, Request: req})
		})
	} else {
		if err = s.Batches.CreateURLs(ctx, b, urls); err != nil {
			return err
		}
		err = s.enqueue(ctx, func() (*asynq.Task, error) {
			return jobs.NewExpandTask(&jobs.ExpandPayload{BatchID: b.ID, Tenant: b.Tenant})
		})
	}
	if err != nil {
		_ = s.Batches.Remove(context.WithoutCancel(ctx), b)
		return fmt.Errorf("start batch %s: %w", b.ID, err)
	}
	return nil
}

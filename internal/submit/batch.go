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
// ID and CreatedAt are set here), urls its first URLs (its kind's seeds).
// idemKey is the request's Idempotency-Key ("" for none).
//
// Every seed takes a place in the tenant's active count at once; the
// batch's hash and URL list are one transaction, then one task, the same
// for every kind, turns the list into jobs. A failure removes what was
// written.
func (s *Service) Batch(ctx context.Context, t *tenant.Tenant, b *rdb.Batch, urls []string, idemKey string) (Batch, error) {
	b.ID, b.Tenant, b.CreatedAt = rdb.NewBatchID(), t.ID, time.Now().UTC()
	n := len(urls)
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

// startBatch writes the batch and enqueues the expansion of its URL list
// (one task, whatever the size). A failure to enqueue removes what was
// written.
func (s *Service) startBatch(ctx context.Context, b *rdb.Batch, urls []string) error {
	if err := s.Batches.CreateURLs(ctx, b, urls); err != nil {
		return err
	}
	err := s.enqueue(ctx, func() (*asynq.Task, error) {
		return jobs.NewExpandTask(&jobs.ExpandPayload{BatchID: b.ID, Tenant: b.Tenant})
	})
	if err != nil {
		_ = s.Batches.Remove(context.WithoutCancel(ctx), b)
		return fmt.Errorf("start batch %s: %w", b.ID, err)
	}
	return nil
}

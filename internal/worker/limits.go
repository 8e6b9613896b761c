package worker

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
)

// ErrTenantBusy is returned to asynq when the job's tenant already runs as
// many jobs as its running_jobs limit allows, on all workers together. Like
// ErrSessionBusy it is no failure: no retry is counted and the task comes
// back after a short delay.
var ErrTenantBusy = errors.New("tenant at its running_jobs limit")

// handedBack reports the errors that hand a task back to the queue without
// counting a failure.
func handedBack(err error) bool {
	return errors.Is(err, ErrSessionBusy) || errors.Is(err, ErrTenantBusy) || errors.Is(err, ErrHostBusy)
}

// Running slots are leases: a worker renews its jobs' slots while they run,
// so the slots of a worker that died free themselves within runLease.
const (
	runLease = 30 * time.Second
	runRenew = 10 * time.Second
)

// TenantRunningLimit adapts a tenant registry to Deps.RunningLimit: the
// tenant's running_jobs limit, 0 (no limit) for a tenant it does not know.
func TenantRunningLimit(r *tenant.Registry) func(tenantID string) int {
	return func(id string) int {
		if t := r.Get(id); t != nil {
			return t.Limits.RunningJobs
		}
		return 0
	}
}

// slotOf is the place p takes among its tenant's running jobs (Limit 0: the
// tenant has no running_jobs limit).
func (w *Worker) slotOf(p *jobs.RunPayload) rdb.RunSlot {
	limit := 0
	if w.RunningLimit != nil {
		limit = w.RunningLimit(p.Tenant)
	}
	if limit <= 0 {
		return rdb.RunSlot{}
	}
	return rdb.RunSlot{Tenant: p.Tenant, Limit: limit, Lease: runLease}
}

// heldSlot is a running job's place among its tenant's running jobs, its
// lease renewed until release.
type heldSlot struct {
	w    *Worker
	p    *jobs.RunPayload
	stop func() // stops renewing the lease
	left bool   // Finish gave the place back
}

// start starts attempt a of p and, in the same script, takes its place
// among its tenant's running jobs: one round trip. Over the tenant's
// running_jobs limit it changes nothing and returns ErrTenantBusy — unless
// the job already ended (cancelled while it waited): then it returns that
// status, so that ProcessRun drops the task as usual. The slot is nil when
// the tenant has no limit or the job does not run.
func (w *Worker) start(ctx context.Context, p *jobs.RunPayload, a *rdb.Attempt) (stopped string, slot *heldSlot, err error) {
	s := w.slotOf(p)
	var n int
	stopped, n, err = w.Jobs.StartCounted(ctx, p.JobID, *a, s)
	if err != nil {
		return "", nil, err
	}
	if n > 0 {
		a.N = n // a takeover counts after the dead worker's attempt
	}
	if stopped == rdb.Busy {
		w.Logger.Debug("tenant at its running_jobs limit; task handed back", "job", p.JobID, "tenant", p.Tenant, "limit", s.Limit)
		return "", nil, ErrTenantBusy
	}
	if stopped != "" || s.Limit == 0 {
		return stopped, nil, nil
	}
	h := &heldSlot{w: w, p: p}
	h.stop = renewEvery(ctx, runRenew, func(rctx context.Context) {
		err := w.Jobs.RenewRunning(rctx, p.Tenant, p.JobID, runLease)
		if err != nil && !errors.Is(err, context.Canceled) {
			w.Logger.Warn("renew running_jobs slot", "job", p.JobID, "tenant", p.Tenant, "err", err)
		}
	})
	return "", h, nil
}

// tenant is the tenant whose running set Finish leaves ("" without a
// slot).
func (h *heldSlot) tenant() string {
	if h == nil {
		return ""
	}
	return h.p.Tenant
}

// release stops renewing the lease and gives the place back, unless Finish
// did (a nil slot is a no-op).
func (h *heldSlot) release() {
	if h == nil {
		return
	}
	h.stop()
	if h.left {
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.w.Jobs.LeaveRunning(rctx, h.p.Tenant, h.p.JobID); err != nil {
		h.w.Logger.Warn("release running_jobs slot", "job", h.p.JobID, "tenant", h.p.Tenant, "err", err)
	}
}

// tenantBusyDelay is when a task handed back for its tenant's limit comes
// back: soon, with jitter so that waiting tasks do not arrive together.
func tenantBusyDelay() time.Duration {
	return time.Second + time.Duration(rand.Int64N(int64(time.Second)))
}

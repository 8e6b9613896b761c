package worker

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/jobstore"
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
	return errors.Is(err, ErrSessionBusy) || errors.Is(err, ErrTenantBusy)
}

// Running slots are leases: a worker renews its jobs' slots while they run,
// so the slots of a worker that died free themselves within runLease.
const (
	runLease = 30 * time.Second
	runRenew = 10 * time.Second
)

// RunningKey is the sorted set of a tenant's running job ids, each scored by
// the expiry of its lease (Unix milliseconds, Redis clock).
func RunningKey(tenantID string) string { return "{pf}:t:" + tenantID + ":running" }

// renewSlotScript extends a lease that is still held (a lapsed one is taken
// again: the job runs either way).
var renewSlotScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
`)

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
func (w *Worker) slotOf(p *jobs.RunPayload) jobstore.Slot {
	limit := 0
	if w.RunningLimit != nil {
		limit = w.RunningLimit(p.Tenant)
	}
	if limit <= 0 {
		return jobstore.Slot{}
	}
	return jobstore.Slot{Key: RunningKey(p.Tenant), Limit: limit, Lease: runLease}
}

// heldSlot is a running job's place among its tenant's running jobs, its
// lease renewed until release.
type heldSlot struct {
	w    *Worker
	p    *jobs.RunPayload
	key  string
	stop func() // stops renewing the lease
	left bool   // Finish gave the place back
}

// start starts attempt n of p and, in the same script, takes its place
// among its tenant's running jobs: one round trip. Over the tenant's
// running_jobs limit it changes nothing and returns ErrTenantBusy — unless
// the job already ended (cancelled while it waited): then it returns that
// status, so that ProcessRun drops the task as usual. The slot is nil when
// the tenant has no limit or the job does not run.
func (w *Worker) start(ctx context.Context, p *jobs.RunPayload, n int) (stopped string, slot *heldSlot, err error) {
	s := w.slotOf(p)
	stopped, err = w.Jobs.StartIn(ctx, p.JobID, n, s)
	if err != nil {
		return "", nil, err
	}
	if stopped == jobstore.Busy {
		w.Logger.Debug("tenant at its running_jobs limit; task handed back", "job", p.JobID, "tenant", p.Tenant, "limit", s.Limit)
		return "", nil, ErrTenantBusy
	}
	if stopped != "" || s.Key == "" {
		return stopped, nil, nil
	}
	h := &heldSlot{w: w, p: p, key: s.Key}
	h.stop = renewEvery(ctx, runRenew, func(rctx context.Context) {
		err := renewSlotScript.Run(rctx, w.Redis, []string{s.Key}, p.JobID, runLease.Milliseconds()).Err()
		if err != nil && !errors.Is(err, context.Canceled) {
			w.Logger.Warn("renew running_jobs slot", "job", p.JobID, "tenant", p.Tenant, "err", err)
		}
	})
	return "", h, nil
}

// setKey is the set Finish leaves ("" without a slot).
func (h *heldSlot) setKey() string {
	if h == nil {
		return ""
	}
	return h.key
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
	if err := h.w.Redis.ZRem(rctx, h.key, h.p.JobID).Err(); err != nil {
		h.w.Logger.Warn("release running_jobs slot", "job", h.p.JobID, "tenant", h.p.Tenant, "err", err)
	}
}

// tenantBusyDelay is when a task handed back for its tenant's limit comes
// back: soon, with jitter so that waiting tasks do not arrive together.
func tenantBusyDelay() time.Duration {
	return time.Second + time.Duration(rand.Int64N(int64(time.Second)))
}

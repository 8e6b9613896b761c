package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
	"github.com/pagefleet/pagefleet/pkg/tenant"
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
func RunningKey(tenantID string) string { return "pf:t:" + tenantID + ":running" }

// takeSlotScript drops expired leases, then takes (or renews) a lease for
// ARGV[2] when the set holds fewer than ARGV[1] members. 1: taken, 0: full.
var takeSlotScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
`)

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

// takeRunSlot takes a place for p among its tenant's running jobs and
// returns the function that gives it back. Over the limit it returns
// ErrTenantBusy — unless the job already ended (cancelled while it waited):
// then it returns a no-op so that ProcessRun drops the task as usual.
func (w *Worker) takeRunSlot(ctx context.Context, p *jobs.RunPayload) (release func(), err error) {
	limit := 0
	if w.RunningLimit != nil {
		limit = w.RunningLimit(p.Tenant)
	}
	if limit <= 0 {
		return func() {}, nil
	}
	key := RunningKey(p.Tenant)
	lease := runLease.Milliseconds()
	ok, err := takeSlotScript.Run(ctx, w.Redis, []string{key}, limit, p.JobID, lease).Int()
	if err != nil {
		return nil, fmt.Errorf("running_jobs slot: %w", err)
	}
	if ok == 0 {
		if st, err := w.Jobs.Status(ctx, p.JobID); err == nil && (st == "" || spec.Terminal(st)) {
			return func() {}, nil
		}
		w.Logger.Debug("tenant at its running_jobs limit; task handed back", "job", p.JobID, "tenant", p.Tenant, "limit", limit)
		return nil, ErrTenantBusy
	}
	hold, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(runRenew)
		defer t.Stop()
		for {
			select {
			case <-hold.Done():
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(hold, 5*time.Second)
				if err := renewSlotScript.Run(rctx, w.Redis, []string{key}, p.JobID, lease).Err(); err != nil && hold.Err() == nil {
					w.Logger.Warn("renew running_jobs slot", "job", p.JobID, "tenant", p.Tenant, "err", err)
				}
				cancel()
			}
		}
	}()
	return func() {
		stop()
		<-done
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.Redis.ZRem(rctx, key, p.JobID).Err(); err != nil {
			w.Logger.Warn("release running_jobs slot", "job", p.JobID, "tenant", p.Tenant, "err", err)
		}
	}, nil
}

// tenantBusyDelay is when a task handed back for its tenant's limit comes
// back: soon, with jitter so that waiting tasks do not arrive together.
func tenantBusyDelay() time.Duration {
	return time.Second + time.Duration(rand.Int64N(int64(time.Second)))
}

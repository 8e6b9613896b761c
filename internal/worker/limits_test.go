package worker

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
)

// newLimitWorker is a worker with only what start uses.
func newLimitWorker(t *testing.T, limits map[string]int) (*Worker, redis.UniversalClient) {
	t.Helper()
	rc := redistest.Start(t).Client(t, 0)
	w := &Worker{Deps: Deps{Redis: rc, Jobs: rdb.NewJobs(rc, time.Hour), Logger: slog.New(slog.DiscardHandler),
		RunningLimit: func(id string) int { return limits[id] }}}
	return w, rc
}

// takeRunSlot starts a job's first attempt the way ProcessRun does and
// returns what gives its place back.
func (w *Worker) takeRunSlot(ctx context.Context, p *jobs.RunPayload) (func(), error) {
	_, slot, err := w.start(ctx, p, &rdb.Attempt{N: 1})
	if err != nil {
		return nil, err
	}
	return slot.release, nil
}

// queuedJob writes a queued job record so that the job counts as not ended.
func queuedJob(t *testing.T, w *Worker, tenantID, id string) *jobs.RunPayload {
	t.Helper()
	ctx := context.Background()
	if _, err := w.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		w.Jobs.Create(ctx, p, rdb.JobRecord{ID: id, Tenant: tenantID, Kind: jobs.KindFetch, URL: "https://example.com/", CreatedAt: time.Now()})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return &jobs.RunPayload{JobID: id, Tenant: tenantID, Kind: jobs.KindFetch}
}

func TestRunningJobsLimit(t *testing.T) {
	w, rc := newLimitWorker(t, map[string]int{"acme": 2, "globex": 1})
	ctx := context.Background()
	a1, a2, a3 := queuedJob(t, w, "acme", "job_a1"), queuedJob(t, w, "acme", "job_a2"), queuedJob(t, w, "acme", "job_a3")
	g1 := queuedJob(t, w, "globex", "job_g1")

	r1, err := w.takeRunSlot(ctx, a1)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := w.takeRunSlot(ctx, a2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.takeRunSlot(ctx, a3); !errors.Is(err, ErrTenantBusy) {
		t.Fatalf("third job of a tenant with running_jobs 2: %v, want ErrTenantBusy", err)
	}
	// A redelivery of a running job keeps its one place.
	again, err := w.takeRunSlot(ctx, a1)
	if err != nil {
		t.Fatalf("redelivered job: %v", err)
	}
	if n := rc.ZCard(ctx, runningKey("acme")).Val(); n != 2 {
		t.Fatalf("%d places held, want 2", n)
	}
	// Other tenants are not affected.
	rg, err := w.takeRunSlot(ctx, g1)
	if err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	rg()
	// Giving a place back lets the next job run (either delivery of a job
	// gives back its one place).
	r1()
	again()
	r3, err := w.takeRunSlot(ctx, a3)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	// A job cancelled while it waited is let through without a place, so
	// that ProcessRun drops it.
	a4 := queuedJob(t, w, "acme", "job_a4")
	if _, err := w.Jobs.Cancel(ctx, "acme", a4.JobID); err != nil {
		t.Fatal(err)
	}
	r4, err := w.takeRunSlot(ctx, a4)
	if err != nil {
		t.Fatalf("cancelled job over the limit: %v", err)
	}
	r4()
	if n := rc.ZCard(ctx, runningKey("acme")).Val(); n != 2 {
		t.Fatalf("%d places held, want 2", n)
	}
	r2()
	r3()
	if n := rc.ZCard(ctx, runningKey("acme")).Val(); n != 0 {
		t.Fatalf("%d places held after every release", n)
	}
}

func TestRunningJobsLeaseLapses(t *testing.T) {
	w, rc := newLimitWorker(t, map[string]int{"acme": 1})
	ctx := context.Background()
	// A worker that died holding a place: its lease expired a second ago.
	rc.ZAdd(ctx, runningKey("acme"), redis.Z{Score: float64(time.Now().Add(-time.Second).UnixMilli()), Member: "job_dead"})
	release, err := w.takeRunSlot(ctx, queuedJob(t, w, "acme", "job_live"))
	if err != nil {
		t.Fatalf("a lapsed lease should free its place: %v", err)
	}
	defer release()
	if rc.ZScore(ctx, runningKey("acme"), "job_dead").Err() != redis.Nil {
		t.Error("the lapsed lease is still there")
	}
	if ttl := rc.PTTL(ctx, runningKey("acme")).Val(); ttl <= 0 || ttl > 2*runLease {
		t.Errorf("the set's TTL is %v, want up to %v", ttl, 2*runLease)
	}
	score := rc.ZScore(ctx, runningKey("acme"), "job_live").Val()
	if left := time.Until(time.UnixMilli(int64(score))); left < runLease-5*time.Second || left > runLease+5*time.Second {
		t.Errorf("lease ends in %v, want about %v", left, runLease)
	}
}

func TestRunningJobsNoLimit(t *testing.T) {
	w, rc := newLimitWorker(t, map[string]int{})
	ctx := context.Background()
	for i := range 5 {
		release, err := w.takeRunSlot(ctx, queuedJob(t, w, "unknown", "job_"+string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		defer release()
	}
	if n := rc.Exists(ctx, runningKey("unknown")).Val(); n != 0 {
		t.Error("a tenant without a limit should leave no running set")
	}
	w.RunningLimit = nil
	if _, err := w.takeRunSlot(ctx, queuedJob(t, w, "acme", "job_z")); err != nil {
		t.Fatal(err)
	}
}

func TestTenantBusyIsNoFailure(t *testing.T) {
	if IsFailure(ErrTenantBusy) || IsFailure(ErrSessionBusy) || !IsFailure(errors.New("boom")) {
		t.Fatal("IsFailure: busy errors are no failures; others are")
	}
	for range 20 {
		if d := RetryDelay(5, ErrTenantBusy, nil); d < time.Second || d >= 2*time.Second {
			t.Fatalf("RetryDelay for a busy tenant = %v, want 1–2 s", d)
		}
	}
}

func TestTenantRunningLimit(t *testing.T) {
	r, err := tenant.New([]*tenant.Tenant{
		{ID: "a", Plan: tenant.PlanFree, APIKeys: []string{"pf_key_aaaaaaaa"}},
		{ID: "b", Plan: tenant.PlanPro, APIKeys: []string{"pf_key_bbbbbbbb"}, Limits: tenant.Limits{RunningJobs: 7}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := TenantRunningLimit(r)
	if f("a") != tenant.PlanLimits[tenant.PlanFree].RunningJobs || f("b") != 7 || f("nobody") != 0 {
		t.Fatalf("limits a=%d b=%d nobody=%d", f("a"), f("b"), f("nobody"))
	}
}

// The script that writes a job's outcome gives its place back: a job's
// start and end each cost one round trip, slot included.
func TestFinishGivesPlaceBack(t *testing.T) {
	w, rc := newLimitWorker(t, map[string]int{"acme": 1})
	ctx := context.Background()
	p := queuedJob(t, w, "acme", "job_f1")
	_, slot, err := w.start(ctx, p, &rdb.Attempt{N: 1})
	if err != nil || slot == nil {
		t.Fatalf("start: slot %v err %v", slot, err)
	}
	if err := w.Jobs.Finish(ctx, p.JobID, rdb.Outcome{Status: "succeeded", LeaveRunning: slot.tenant()}); err != nil {
		t.Fatal(err)
	}
	if n := rc.ZCard(ctx, runningKey("acme")).Val(); n != 0 {
		t.Fatalf("%d places held after Finish", n)
	}
	// The next job of the tenant runs at once.
	if _, next, err := w.start(ctx, queuedJob(t, w, "acme", "job_f2"), &rdb.Attempt{N: 1}); err != nil {
		t.Fatalf("next job: %v", err)
	} else {
		next.release()
	}
	slot.left = true
	slot.release()
	// Finish of a job that had ended already still leaves its place.
	rc.ZAdd(ctx, runningKey("acme"), redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: "job_f1"})
	if err := w.Jobs.Finish(ctx, p.JobID, rdb.Outcome{Status: "failed", LeaveRunning: "acme"}); !errors.Is(err, rdb.ErrJobEnded) {
		t.Fatalf("second Finish: %v, want ErrConflict", err)
	}
	if n := rc.ZCard(ctx, runningKey("acme")).Val(); n != 0 {
		t.Fatalf("%d places held after a conflicting Finish", n)
	}
}

// runningKey is the sorted set of a tenant's running jobs, which these
// tests look at.
func runningKey(tenant string) string { return "{pf}:t:" + tenant + ":running" }

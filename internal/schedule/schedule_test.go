package schedule

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/internal/submit"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func TestParse(t *testing.T) {
	at := time.Date(2026, 3, 28, 23, 59, 58, 500e6, time.UTC)
	for _, c := range []struct {
		expr, tz string
		want     string // the next due time after at, UTC
	}{
		{"*/2 * * * * *", "", "2026-03-29T00:00:00Z"},
		{"0 * * * *", "UTC", "2026-03-29T00:00:00Z"},
		{"30 2 * * *", "Europe/Berlin", "2026-03-30T00:30:00Z"}, // 02:30 does not exist on the 29th in Berlin
		{"0 9 * * 1", "America/New_York", "2026-03-30T13:00:00Z"},
		{"@hourly", "Asia/Kolkata", "2026-03-29T00:30:00Z"},
	} {
		s, err := Parse(c.expr, c.tz)
		if err != nil {
			t.Errorf("%q in %q: %v", c.expr, c.tz, err)
			continue
		}
		if got := s.Next(at).Format(time.RFC3339); got != c.want {
			t.Errorf("%q in %q: next %s, want %s", c.expr, c.tz, got, c.want)
		}
	}
	for _, bad := range []struct{ expr, tz string }{
		{"CRON_TZ=UTC", ""}, {"CRON_TZ=UTC * * * * *", ""}, {"* * * *", ""}, {"* * * * * * *", ""},
		{"* * * * *", "Mars/Olympus"}, {"* * * * *", "Local"}, {"0 0 30 2 *", ""}, {"", ""},
	} {
		if _, err := Parse(bad.expr, bad.tz); err == nil {
			t.Errorf("%q in %q parsed", bad.expr, bad.tz)
		}
	}
}

func TestPlanClaim(t *testing.T) {
	s, _ := Parse("*/2 * * * * *", "UTC")
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name     string
		due, now time.Time
		run      bool
		next     time.Time
	}{
		{"on time", t0, t0.Add(10 * time.Millisecond), true, t0.Add(2 * time.Second)},
		{"a few due times late: each runs", t0, t0.Add(7 * time.Second), true, t0.Add(2 * time.Second)},
		{"just within misfire", t0, t0.Add(time.Minute), true, t0.Add(2 * time.Second)},
		{"missed for too long: skipped to the first within", t0, t0.Add(time.Minute + 3*time.Second), false, t0.Add(4 * time.Second)},
	} {
		p := PlanClaim(s, c.due, c.now, time.Minute)
		if p.Run != c.run || !p.Next.Equal(c.next) {
			t.Errorf("%s: %+v, want run %v next %s", c.name, p, c.run, c.next)
		}
	}
}

// TestRunnersCreateEachRunOnce runs four Runners against one Redis for a
// schedule due every second, one of them stopped and one started midway,
// after a claimer that died with the first due time after creating its
// batch: every due time between the schedule's creation and the end has
// exactly one run, one batch, counted once.
func TestRunnersCreateEachRunOnce(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t, 0)
	stores := rdb.Open(rc, time.Hour)
	queue := asynq.NewClientFromRedisClient(rc)
	sub := submit.New(submit.Deps{Jobs: stores.Jobs, Batches: stores.Batches, Sessions: stores.Sessions, Idem: stores.Idempotency, Queue: queue})
	reg, err := tenant.New([]*tenant.Tenant{{ID: "acme", Plan: "pro", APIKeys: []string{"pf_test_key_for_schedules"}, Limits: tenant.Limits{RequestsPerSecond: 1000, QueuedJobs: 100000}}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(spec.BatchRequest{URLs: []string{"https://a.test/1", "https://a.test/2"}, Template: &spec.Request{Output: []string{"html"}}})
	now := time.Now().UTC()
	first, _ := Parse("* * * * * *", "UTC")
	next := first.Next(now)
	s := &rdb.StoredSchedule{ID: rdb.NewScheduleID(), Tenant: "acme", Cron: "* * * * * *", Timezone: "UTC", Kind: KindBatch, Body: body,
		Next: &next, CreatedAt: now, UpdatedAt: now}
	if err := stores.Schedules.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	// A process that claimed the first due time, created its batch and
	// died before it recorded the run (or a Redis failover lost the
	// record): the run is taken over when its lease ends and created
	// again, which writes nothing twice.
	claimed := next.Add(time.Second)
	for time.Now().Before(next) {
		time.Sleep(10 * time.Millisecond)
	}
	if ok, err := stores.Schedules.Claim(context.Background(), s.ID, next, &claimed, time.Now().Add(time.Second), true); !ok || err != nil {
		t.Fatalf("claim as a process that dies: %v %v", ok, err)
	}
	sr, err := RunOf(s, next)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Scheduled(context.Background(), reg.Get("acme"), sr); err != nil {
		t.Fatal(err)
	}
	start := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		r := NewRunner(stores.Schedules, sub, reg, queue, Config{Lease: 2 * time.Second, Registerer: prometheus.NewRegistry(),
			Logger: slog.New(slog.DiscardHandler)})
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	var stops []func()
	for range 4 {
		stops = append(stops, start())
	}
	time.Sleep(2500 * time.Millisecond) // time is what is tested: runs fall due
	stops[0]()
	stops[0] = start()
	time.Sleep(2500 * time.Millisecond)
	// Pause the schedule, then wait for the runs claimed to be recorded.
	got, _ := stores.Schedules.Get(context.Background(), "acme", s.ID)
	got.Paused, got.Next = true, nil
	for {
		if err := stores.Schedules.Update(context.Background(), got); err == nil {
			break
		}
		got, _ = stores.Schedules.Get(context.Background(), "acme", s.ID)
		got.Paused, got.Next = true, nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, _ := stores.Schedules.Lapsed(context.Background(), time.Now().Add(time.Hour), 10)
		if len(l) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs still pending: %+v", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, stop := range stops {
		stop()
	}
	runs, _, err := stores.Schedules.Runs(context.Background(), s.ID, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].ScheduledAt.Before(runs[j].ScheduledAt) })
	if len(runs) < 4 {
		t.Fatalf("%d runs in 5 s", len(runs))
	}
	seen := map[string]bool{}
	for i, r := range runs {
		if r.Status != spec.RunCreated || r.BatchID != rdb.RunID("bat", s.ID, r.ScheduledAt) {
			t.Errorf("run %d: %+v", i, r)
		}
		if i > 0 && r.ScheduledAt.Sub(runs[i-1].ScheduledAt) != time.Second {
			t.Errorf("runs %d and %d are %s apart", i-1, i, r.ScheduledAt.Sub(runs[i-1].ScheduledAt))
		}
		if seen[r.BatchID] {
			t.Errorf("batch %s twice", r.BatchID)
		}
		seen[r.BatchID] = true
		v, err := stores.Batches.Get(context.Background(), "acme", r.BatchID)
		if err != nil || v.ScheduleID != s.ID || v.Total != 2 {
			t.Errorf("batch of run %d: %+v %v", i, v, err)
		}
	}
	if !runs[0].ScheduledAt.Equal(next) {
		t.Errorf("first run at %s, want %s", runs[0].ScheduledAt, next)
	}
	list, _, _ := stores.Batches.List(context.Background(), "acme", "", 1000)
	if len(list) != len(runs) {
		t.Errorf("%d batches for %d runs", len(list), len(runs))
	}
	// Each batch counts its two URLs among the tenant's jobs once.
	if n, _ := rc.Get(context.Background(), rdb.ActiveKey("acme")).Int(); n != 2*len(runs) {
		t.Errorf("active count %d, want %d", n, 2*len(runs))
	}
	t.Log(fmt.Sprintf("%d runs, from %s to %s", len(runs), runs[0].ScheduledAt.Format(time.TimeOnly), runs[len(runs)-1].ScheduledAt.Format(time.TimeOnly)))
}

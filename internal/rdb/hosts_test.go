package rdb

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/redistest"
)

func TestHostGate(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t, 0)
	js := NewJobs(c, time.Hour)
	h := NewHosts(c)
	for _, id := range []string{"job_1", "job_2", "job_3", "job_4", "job_x"} {
		if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			js.Create(ctx, p, JobRecord{ID: id, Tenant: "acme", Kind: "fetch", URL: "http://a.test/", CreatedAt: time.Now()})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	ask := func(job, tenant string, limit int, delay time.Duration) HostAnswer {
		t.Helper()
		a, err := h.Acquire(ctx, HostAsk{Tenant: tenant, Host: "a.test", Job: job, Member: "bulk:" + job,
			Limit: limit, Delay: delay, Fleet: 3, Lease: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// Two at a time for acme: the third waits for a place, first in line.
	if a := ask("job_1", "acme", 2, 0); a.Reason != "" {
		t.Fatalf("job_1: %+v", a)
	}
	if a := ask("job_2", "acme", 2, 0); a.Reason != "" {
		t.Fatalf("job_2: %+v", a)
	}
	if a := ask("job_3", "acme", 2, 0); a.Reason != HostConcurrency || a.Rank != 0 {
		t.Fatalf("job_3: %+v", a)
	}
	if a := ask("job_4", "acme", 2, 0); a.Reason != HostConcurrency || a.Rank != 1 {
		t.Fatalf("job_4: %+v", a)
	}
	// Another attempt of a running job keeps its place.
	if a := ask("job_1", "acme", 2, 0); a.Reason != "" {
		t.Fatalf("job_1 again: %+v", a)
	}
	head, err := h.Release(ctx, "acme", "a.test", "job_1")
	if err != nil || head != "bulk:job_3" {
		t.Fatalf("release: head %q, %v", head, err)
	}
	// job_4 may not pass job_3, first in line.
	if a := ask("job_4", "acme", 2, 0); a.Reason != HostQueue {
		t.Fatalf("job_4 before job_3: %+v", a)
	}
	if a := ask("job_3", "acme", 2, 0); a.Reason != "" || a.Waited <= 0 {
		t.Fatalf("job_3 after a release: %+v", a)
	}
	// The fleet allows 3 on the host: globex's first job finds 2 of acme's
	// running and gets the third place; its second waits for the fleet.
	if a := ask("job_x", "globex", 5, 0); a.Reason != "" {
		t.Fatalf("globex: %+v", a)
	}
	h.Release(ctx, "acme", "a.test", "job_2")
	h.Release(ctx, "acme", "a.test", "job_3")
	h.Release(ctx, "globex", "a.test", "job_x")

	// A delay between starts.
	if a := ask("job_4", "acme", 2, 300*time.Millisecond); a.Reason != "" {
		t.Fatalf("job_4: %+v", a)
	}
	a := ask("job_1", "acme", 2, 300*time.Millisecond)
	if a.Reason != HostDelay || a.Wait <= 0 || a.Wait > 300*time.Millisecond {
		t.Fatalf("job_1 right after job_4: %+v", a)
	}
	time.Sleep(a.Wait + 10*time.Millisecond)
	if a := ask("job_1", "acme", 2, 300*time.Millisecond); a.Reason != "" {
		t.Fatalf("job_1 after the delay: %+v", a)
	}
	h.Release(ctx, "acme", "a.test", "job_1")
	h.Release(ctx, "acme", "a.test", "job_4")

	// A pause, and one at a time until answers are good again.
	if prev, err := h.Pause(ctx, "acme", "a.test", 200*time.Millisecond, 7); err != nil || prev != 0 {
		t.Fatalf("pause: %d %v", prev, err)
	}
	if a := ask("job_1", "acme", 2, 0); a.Reason != HostPaused || a.Wait <= 0 {
		t.Fatalf("during the pause: %+v", a)
	}
	time.Sleep(350 * time.Millisecond) // past the pause and the delay of the last start
	if a := ask("job_1", "acme", 2, 0); a.Reason != "" || a.Level != 1 {
		t.Fatalf("after the pause: %+v", a)
	}
	if a := ask("job_2", "acme", 2, 0); a.Reason != HostConcurrency {
		t.Fatalf("a second job while backed off: %+v", a)
	}
	if left, _ := h.Good(ctx, "acme", "a.test"); left != 0 {
		t.Fatalf("after a good answer: level %d", left)
	}
	if a := ask("job_2", "acme", 2, 0); a.Reason != "" {
		t.Fatalf("a second job after recovery: %+v", a)
	}
	// A job that ended leaves the line.
	js.Finish(ctx, "job_3", Outcome{Status: "failed"})
	if a := ask("job_3", "acme", 2, 0); a.Reason != HostEnded {
		t.Fatalf("ended job: %+v", a)
	}
}

func TestHostPace(t *testing.T) {
	ctx := context.Background()
	h := NewHosts(redistest.Start(t).Client(t, 0))
	start := time.Now() // before the first request: what is left is at least 300 ms less this
	if w, err := h.Pace(ctx, "acme", "a.test", 300*time.Millisecond, 0); err != nil || w != 0 {
		t.Fatalf("first request: wait %v %v", w, err)
	}
	w, err := h.Pace(ctx, "acme", "a.test", 300*time.Millisecond, 0)
	// The wait is what is left of the 300 ms since the first request: all
	// of it less the time between the two calls (long on a loaded machine).
	if left := 300*time.Millisecond - time.Since(start); err != nil || w > 300*time.Millisecond || (left > 50*time.Millisecond && w <= 0) {
		t.Fatalf("second request at once: wait %v %v, want about %v", w, err, left)
	}
	// Another tenant has its own pace; the fleet's delay holds across tenants.
	if w, _ := h.Pace(ctx, "globex", "a.test", 300*time.Millisecond, 0); w != 0 {
		t.Fatalf("another tenant waits %v", w)
	}
	start = time.Now()
	if w, _ := h.Pace(ctx, "initech", "b.test", 0, time.Second); w != 0 {
		t.Fatalf("first fleet request waits %v", w)
	}
	if w, _ := h.Pace(ctx, "umbrella", "b.test", 0, time.Second); w <= 0 && time.Since(start) < 900*time.Millisecond {
		t.Fatalf("second fleet request waits %v, want about 1 s", w)
	}
	// No delay: no wait, nothing recorded.
	if w, _ := h.Pace(ctx, "acme", "c.test", 0, 0); w != 0 {
		t.Fatalf("no delay: wait %v", w)
	}
}

// TestHostSent: a request that leaves late moves the host's last-request
// time up, so the next request is spaced from when it left, not from its
// Pace.
func TestHostSent(t *testing.T) {
	ctx := context.Background()
	h := NewHosts(redistest.Start(t).Client(t, 0))
	if w, err := h.Pace(ctx, "acme", "a.test", 300*time.Millisecond, 300*time.Millisecond); err != nil || w != 0 {
		t.Fatalf("first request: wait %v %v", w, err)
	}
	time.Sleep(200 * time.Millisecond) // the request leaves late
	sent := time.Now()
	if err := h.Sent(ctx, "acme", "a.test", 300*time.Millisecond, 300*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	w, err := h.Pace(ctx, "globex", "a.test", 0, 300*time.Millisecond) // the fleet's delay too
	w2, _ := h.Pace(ctx, "acme", "a.test", 300*time.Millisecond, 0)
	// Spaced from the Pace, at most 100 ms would be left; from the
	// departure, 300 ms less the time since it.
	if left := 300*time.Millisecond - time.Since(sent); err != nil || (left > 150*time.Millisecond && (w <= 120*time.Millisecond || w2 <= 120*time.Millisecond)) {
		t.Fatalf("after a late departure: waits %v and %v (%v), want about %v", w, w2, err, left)
	}
	// A moment in the past: the answer began 250 ms ago, so 50 ms are left.
	if err := h.Sent(ctx, "hooli", "d.test", 300*time.Millisecond, 0, 250*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if w, _ := h.Pace(ctx, "hooli", "d.test", 300*time.Millisecond, 0); w > 60*time.Millisecond {
		t.Fatalf("sent 250 ms ago: wait %v, want 50 ms or less", w)
	}
	// A departure never moves the time back.
	if err := h.Sent(ctx, "initech", "b.test", 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if w, _ := h.Pace(ctx, "initech", "b.test", 300*time.Millisecond, 0); w != 0 {
		t.Fatalf("no delay recorded, yet a wait of %v", w)
	}
}

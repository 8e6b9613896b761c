package rdb

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/redistest"
)

func TestProxyPickAndHealth(t *testing.T) {
	ctx := context.Background()
	p := NewProxies(redistest.Start(t).Client(t, 0))
	keys := []string{"k1", "k2", "k3"}
	now := time.UnixMilli(1_000_000_000)
	pick := func(rot string, excl []bool) (int, int) {
		t.Helper()
		i, kind, err := p.Pick(ctx, PickArgs{Tenant: "acme", Pool: "dc", Keys: keys, Rotation: rot, Host: "a.test",
			Exclude: excl, Now: now, Trial: 30 * time.Second, Order: []int{2, 0, 1}})
		if err != nil {
			t.Fatal(err)
		}
		return i, kind
	}
	// Round robin takes the proxies in turn, fleet-wide.
	var got []int
	for range 6 {
		i, _ := pick("round_robin", nil)
		got = append(got, i)
	}
	if want := []int{0, 1, 2, 0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("round robin %v, want %v", got, want)
	}
	// Random follows the order given; least_used the counts.
	if i, _ := pick("random", nil); i != 2 {
		t.Fatalf("random took %d, want 2", i)
	}
	got = got[:0]
	for range 4 {
		i, _ := pick("least_used", nil)
		got = append(got, i)
	}
	if want := []int{0, 1, 2, 0}; !slices.Equal(got, want) {
		t.Fatalf("least_used %v, want %v", got, want)
	}
	// Excluded places are skipped; all excluded gives -1.
	if i, _ := pick("random", []bool{false, true, true}); i != 0 {
		t.Fatalf("with 1 and 2 tried: %d", i)
	}
	if i, _ := pick("random", []bool{true, true, true}); i != -1 {
		t.Fatalf("all tried: %d", i)
	}

	// Three failures within the window set k3 aside for 10 s.
	h := Health{Threshold: 3, Window: 30 * time.Second, Aside: 10 * time.Second, MaxAside: 5 * time.Minute}
	for n := 1; n <= 3; n++ {
		until, err := p.Fail(ctx, "k3", now, h)
		if err != nil {
			t.Fatal(err)
		}
		if (n < 3) != until.IsZero() {
			t.Fatalf("failure %d: aside until %v", n, until)
		}
	}
	for range 6 {
		if i, kind := pick("random", nil); i == 2 || kind != PickHealthy {
			t.Fatalf("set-aside proxy picked: %d (%d)", i, kind)
		}
	}
	// Only k3 left: the least bad one, a fallback.
	if i, kind := pick("random", []bool{true, true, false}); i != 2 || kind != PickFallback {
		t.Fatalf("fallback: %d (%d)", i, kind)
	}
	// After its pause one job tests it; the others skip it meanwhile.
	now = now.Add(11 * time.Second)
	if i, kind := pick("random", nil); i != 2 || kind != PickTrial {
		t.Fatalf("after the pause: %d (%d), want the trial of 2", i, kind)
	}
	if i, _ := pick("random", nil); i == 2 {
		t.Fatal("a second job tests the proxy under test")
	}
	// The test fails: set aside again, twice as long.
	until, err := p.Fail(ctx, "k3", now, h)
	if err != nil || until.Sub(now) != 20*time.Second {
		t.Fatalf("failed test: aside until %v (%v), want 20 s", until.Sub(now), err)
	}
	now = now.Add(21 * time.Second)
	if i, kind := pick("random", nil); i != 2 || kind != PickTrial {
		t.Fatalf("second test: %d (%d)", i, kind)
	}
	if back, err := p.OK(ctx, "k3"); err != nil || !back {
		t.Fatalf("passed test: back=%v %v", back, err)
	}
	if i, kind := pick("random", nil); i != 2 || kind != PickHealthy {
		t.Fatalf("after the test: %d (%d)", i, kind)
	}

	// A host's block sends its jobs to the other proxies first.
	if err := p.BlockedBy(ctx, "k3", "a.test", time.Minute); err != nil {
		t.Fatal(err)
	}
	if i, _ := pick("random", nil); i == 2 {
		t.Fatal("picked the proxy the host blocked")
	}
	aside, blocked, err := p.Usable(ctx, "k3", "a.test", now)
	if err != nil || aside || !blocked {
		t.Fatalf("Usable: aside=%v blocked=%v %v", aside, blocked, err)
	}
}

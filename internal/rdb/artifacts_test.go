package rdb

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/redistest"
)

func TestArtifactsIndex(t *testing.T) {
	ctx := context.Background()
	a := NewArtifacts(redistest.Start(t).Client(t, 0))
	t0 := time.UnixMilli(1_000_000)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.Track(ctx, "job_a", t0.Add(time.Second)))
	must(a.Track(ctx, "job_b", t0.Add(3*time.Second)))
	must(a.Track(ctx, "job_a", t0.Add(5*time.Second))) // a later artifact of job_a
	must(a.Track(ctx, "job_b", t0.Add(2*time.Second))) // an earlier time never wins
	for _, tc := range []struct {
		at   time.Duration
		want []string
	}{{0, nil}, {2 * time.Second, nil}, {3 * time.Second, []string{"job_b"}}, {5 * time.Second, []string{"job_b", "job_a"}}} {
		got, err := a.Due(ctx, t0.Add(tc.at), 10)
		must(err)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Due at +%s = %v, want %v", tc.at, got, tc.want)
		}
	}
	must(a.Forget(ctx, "job_b"))
	if got, _ := a.Due(ctx, t0.Add(time.Hour), 10); !slices.Equal(got, []string{"job_a"}) {
		t.Errorf("after Forget: %v", got)
	}
	s1, err := a.Secret(ctx)
	must(err)
	s2, err := a.Secret(ctx)
	must(err)
	if len(s1) != 32 || !bytes.Equal(s1, s2) {
		t.Errorf("secrets %x and %x: one random 32-byte secret for the fleet", s1, s2)
	}
}

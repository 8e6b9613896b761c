package rdb

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// TestBatchCountersMove checks that the job scripts move a batch job
// between its batch's status buckets, and that GetMany and CancelQueued
// work on many jobs in one round trip.
func TestBatchCountersMove(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t, 0)
	s := NewJobs(rdb, time.Hour)
	const n = 6
	bk := BatchKey("bat_x")
	rdb.HSet(ctx, bk, "tenant", "acme", "kind", "urls", "status", "running", "total", n, "queued", n, "running", 0,
		"succeeded", 0, "failed", 0, "cancelled", 0)
	rdb.IncrBy(ctx, ActiveKey("acme"), n)
	var ids []string
	pipe := rdb.Pipeline()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("job_x%d", i)
		ids = append(ids, id)
		s.Create(ctx, pipe, JobRecord{ID: id, Tenant: "acme", Kind: "fetch", URL: "http://a.test/", CreatedAt: time.Now(), BatchID: "bat_x", Counted: true})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	buckets := func() map[string]string {
		m, _ := rdb.HGetAll(ctx, bk).Result()
		return m
	}
	s.Start(ctx, ids[0], 1)
	s.Start(ctx, ids[1], 1)
	s.Requeue(ctx, ids[1], "")
	s.Finish(ctx, ids[0], Outcome{Status: spec.StatusSucceeded, Result: &spec.Result{URL: "http://a.test/"}})
	s.Start(ctx, ids[2], 1)
	s.Finish(ctx, ids[2], Outcome{Status: spec.StatusFailed, Error: spec.Errorf(spec.CodeTimeout, true, "x")})
	if _, err := s.Cancel(ctx, "acme", ids[3]); err != nil {
		t.Fatal(err)
	}
	s.Start(ctx, ids[4], 1)
	got, err := s.CancelQueued(ctx, "acme", ids) // 1, 5 are queued; 4 runs
	if err != nil || got != 2 {
		t.Fatalf("CancelQueued = %d, %v", got, err)
	}
	m := buckets()
	if m["queued"] != "0" || m["running"] != "1" || m["succeeded"] != "1" || m["failed"] != "1" || m["cancelled"] != "3" {
		t.Fatalf("buckets %v", m)
	}
	if a, _ := rdb.Get(ctx, ActiveKey("acme")).Int(); a != 1 {
		t.Fatalf("active = %d, want 1 (the running job)", a)
	}
	// a queued job of a cancelled batch does not start
	rdb.HSet(ctx, bk, "cancel", "1")
	id := "job_x9"
	pipe = rdb.Pipeline()
	s.Create(ctx, pipe, JobRecord{ID: id, Tenant: "acme", Kind: "fetch", CreatedAt: time.Now(), BatchID: "bat_x"})
	pipe.HIncrBy(ctx, bk, "total", 1)
	pipe.HIncrBy(ctx, bk, "queued", 1)
	pipe.Exec(ctx)
	if st, _ := s.Start(ctx, id, 1); st != spec.StatusCancelled {
		t.Fatalf("start in a cancelled batch: %q", st)
	}
	if m := buckets(); m["queued"] != "0" || m["cancelled"] != "4" {
		t.Fatalf("buckets after a cancelled start %v", m)
	}
	infos, err := s.GetMany(ctx, "acme", append([]string{"job_gone"}, ids...), true)
	if err != nil || len(infos) != n || infos[0].Job.Result == nil || infos[0].Job.Status != spec.StatusSucceeded {
		t.Fatalf("GetMany: %d %v", len(infos), err)
	}
	if other, _ := s.GetMany(ctx, "globex", ids, false); len(other) != 0 {
		t.Fatal("GetMany returned another tenant's jobs")
	}
}

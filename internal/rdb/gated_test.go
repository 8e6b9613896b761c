package rdb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// TestCreateGated checks that the one-script submit writes the record and
// the index entry Create writes, takes a place in the active count, refuses
// over either limit, and that Start and Finish keep their outcomes.
func TestCreateGated(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t, 0)
	s := NewJobs(rdb, time.Hour)
	now := time.Now().UTC()
	wh := &spec.Webhook{URL: "https://hooks.example.com/x"}

	// The same record through Create, for comparison.
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		s.Create(ctx, p, JobRecord{ID: "job_a", Tenant: "acme", Kind: "fetch", URL: "http://a.test/", CreatedAt: now, Webhook: wh, Counted: true})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGated(ctx, JobRecord{ID: "job_b", Tenant: "acme", Kind: "fetch", URL: "http://a.test/", CreatedAt: now, Webhook: wh}, 10, 5, 0); err != nil {
		t.Fatal(err)
	}
	a, _ := rdb.HGetAll(ctx, JobKey("job_a")).Result()
	b, _ := rdb.HGetAll(ctx, JobKey("job_b")).Result()
	if len(a) != len(b) {
		t.Errorf("Create wrote %v, CreateGated %v", a, b)
	}
	for k, v := range a {
		if b[k] != v {
			t.Errorf("field %s: Create %q, CreateGated %q", k, v, b[k])
		}
	}
	if ttl := rdb.PTTL(ctx, JobKey("job_b")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("record TTL %v", ttl)
	}
	if n := rdb.Get(ctx, ActiveKey("acme")).Val(); n != "1" {
		t.Errorf("active count %q, want 1 (only CreateGated counts)", n)
	}
	list, _, err := s.List(ctx, "acme", "", "", 10)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}

	// Over the queued-jobs limit.
	rdb.Set(ctx, ActiveKey("globex"), 3, 0)
	if err := s.CreateGated(ctx, JobRecord{ID: "job_c", Tenant: "globex", Kind: "fetch", URL: "http://a.test/", CreatedAt: now}, 0, 3, 0); !errors.Is(err, ErrQueueFull) {
		t.Errorf("over maxActive: %v", err)
	}
	if rdb.Exists(ctx, JobKey("job_c")).Val() != 0 {
		t.Error("a refused job was written")
	}
	// Over the rate.
	var err2 error
	for i := 0; i < 5 && err2 == nil; i++ {
		err2 = s.CreateGated(ctx, JobRecord{ID: "job_r" + string(rune('0'+i)), Tenant: "initech", Kind: "fetch", URL: "http://a.test/", CreatedAt: now}, 2, 0, 0)
	}
	if !errors.Is(err2, ErrRateLimited) {
		t.Errorf("over rps: %v", err2)
	}
	if err := s.CreateGated(ctx, JobRecord{ID: "job_x", Tenant: "acme", BatchID: "bat_x"}, 0, 0, 0); err == nil {
		t.Error("CreateGated took a batch job")
	}

	// Start and Finish with the HMGET scripts.
	if st, err := s.Start(ctx, "job_b", 1); err != nil || st != "" {
		t.Fatalf("start: %q %v", st, err)
	}
	started := rdb.HGet(ctx, JobKey("job_b"), "started_at").Val()
	if st, err := s.Start(ctx, "job_b", 2); err != nil || st != "" {
		t.Fatalf("second start: %q %v", st, err)
	}
	if again := rdb.HGet(ctx, JobKey("job_b"), "started_at").Val(); again != started || started == "" {
		t.Errorf("started_at %q then %q: the first start must stay", started, again)
	}
	if err := s.Finish(ctx, "job_b", Outcome{Status: spec.StatusSucceeded, Result: &spec.Result{URL: "http://a.test/"}}); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Get(ctx, ActiveKey("acme")).Val(); n != "0" {
		t.Errorf("active count after finish %q, want 0", n)
	}
	if err := s.Finish(ctx, "job_b", Outcome{Status: spec.StatusFailed}); !errors.Is(err, ErrJobEnded) {
		t.Errorf("second finish: %v", err)
	}
	in, err := s.Get(ctx, "acme", "job_b", true)
	if err != nil || in.Job.Status != spec.StatusSucceeded || in.Job.Attempts != 2 || in.Job.StartedAt == nil || in.Job.Result == nil {
		t.Errorf("job: %+v %v", in, err)
	}
	if st, _ := s.Start(ctx, "job_b", 3); st != spec.StatusSucceeded {
		t.Errorf("start after the end: %q", st)
	}
	if st, _ := s.Start(ctx, "job_missing", 1); st != "missing" {
		t.Errorf("start of a missing job: %q", st)
	}
}

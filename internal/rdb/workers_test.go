package rdb

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// A dead worker's claims go to exactly one reaper; a live one's to none.
func TestReapOnce(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t, 0)
	w := NewWorkers(c)
	for _, id := range []string{"alive", "dead"} {
		if err := w.Beat(ctx, id, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := w.Claim(ctx, id, "webhook:deliver:msg_"+id, []byte(`{"type":"webhook:deliver"}`)); err != nil {
			t.Fatal(err)
		}
	}
	c.Del(ctx, heartbeatKey("dead")) // its heartbeat lapsed
	quiet, err := w.Quiet(ctx, time.Now().Add(time.Second))
	if err != nil || len(quiet) != 2 {
		t.Fatalf("quiet = %v, %v", quiet, err)
	}
	if claims, dead, err := w.Reap(ctx, "alive"); err != nil || dead || claims != nil {
		t.Fatalf("reap of a live worker: %v %v %v", claims, dead, err)
	}
	var mu sync.Mutex
	got := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			claims, dead, err := w.Reap(ctx, "dead")
			if err != nil {
				t.Error(err)
			}
			if dead {
				mu.Lock()
				got++
				mu.Unlock()
				if len(claims) != 1 || claims["webhook:deliver:msg_dead"] == "" {
					t.Errorf("claims = %v", claims)
				}
			}
		})
	}
	wg.Wait()
	if got != 1 {
		t.Fatalf("%d reapers got the dead worker's claims, want 1", got)
	}
	if quiet, _ := w.Quiet(ctx, time.Now().Add(time.Second)); len(quiet) != 1 || quiet[0] != "alive" {
		t.Fatalf("after the reap: %v", quiet)
	}
	// A worker that leaves with nothing claimed is forgotten; one that
	// leaves claims behind stays for the reaper.
	w.Unclaim(ctx, "alive", "webhook:deliver:msg_alive")
	if err := w.Leave(ctx, "alive"); err != nil {
		t.Fatal(err)
	}
	w.Beat(ctx, "leaky", time.Minute)
	w.Claim(ctx, "leaky", "k", []byte("{}"))
	w.Leave(ctx, "leaky")
	if quiet, _ := w.Quiet(ctx, time.Now().Add(time.Second)); len(quiet) != 1 || quiet[0] != "leaky" {
		t.Fatalf("after leaving: %v", quiet)
	}
	if claims, dead, _ := w.Reap(ctx, "leaky"); !dead || claims["k"] != "{}" {
		t.Fatalf("reap after leaving with a claim: %v %v", claims, dead)
	}
}

// A job's owner fences it: another attempt does not start while the owner's
// worker lives, takes over (counting after it) when it died, and the old
// owner can then neither finish nor hand back the job. The claim comes and
// goes with the attempt.
func TestAttemptFencing(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t, 0)
	s := NewJobs(c, time.Hour)
	w := NewWorkers(c)
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		s.Create(ctx, p, JobRecord{ID: "job_f", Tenant: "acme", Kind: "fetch", URL: "http://a.test/", CreatedAt: time.Now(), Counted: true})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w.Beat(ctx, "w1", time.Minute)
	w.Beat(ctx, "w2", time.Minute)
	a1 := Attempt{N: 1, Owner: OwnerToken("w1"), TaskID: "job_f", Claim: []byte(`{"a":1}`)}
	if st, err := s.StartIn(ctx, "job_f", a1, RunSlot{}); err != nil || st != "" {
		t.Fatalf("first start: %q %v", st, err)
	}
	if cl, _ := w.Claims(ctx, "w1"); cl["job:job_f"] != `{"a":1}` {
		t.Fatalf("claims of w1: %v", cl)
	}
	a2 := Attempt{N: 1, Owner: OwnerToken("w2"), TaskID: "job_f~r1", Claim: []byte(`{"a":2}`)}
	if st, _ := s.StartIn(ctx, "job_f", a2, RunSlot{}); st != Held {
		t.Fatalf("start while the owner lives: %q, want held", st)
	}
	c.Del(ctx, heartbeatKey("w1")) // w1 dies
	if st, n, _ := s.StartCounted(ctx, "job_f", a2, RunSlot{}); st != "" || n != 2 {
		t.Fatalf("start after the owner died: %q, attempt %d, want 2", st, n)
	}
	in, _ := s.Get(ctx, "acme", "job_f", false)
	if in.Job.Attempts != 2 || in.Job.Status != spec.StatusRunning {
		t.Fatalf("taken over: %+v", in.Job)
	}
	if task, _ := s.TaskOf(ctx, "job_f"); task != "job_f~r1" {
		t.Fatalf("task of the job = %q", task)
	}
	// The old owner comes back: it can neither hand back nor finish.
	if err := s.Requeue(ctx, "job_f", a1.Owner); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "job_f", Outcome{Status: spec.StatusSucceeded, Owner: a1.Owner}); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("finish of the old owner: %v", err)
	}
	if in, _ := s.Get(ctx, "acme", "job_f", false); in.Job.Status != spec.StatusRunning {
		t.Fatalf("after the old owner's writes: %s", in.Job.Status)
	}
	if err := s.Finish(ctx, "job_f", Outcome{Status: spec.StatusSucceeded, Owner: a2.Owner}); err != nil {
		t.Fatal(err)
	}
	if cl, _ := w.Claims(ctx, "w2"); len(cl) != 0 {
		t.Fatalf("claims of w2 after its finish: %v", cl)
	}
	if in, _ := s.Get(ctx, "acme", "job_f", false); in.Job.Status != spec.StatusSucceeded || in.Job.Attempts != 2 {
		t.Fatalf("finished: %+v", in.Job)
	}
	// The old owner's late outcome, after the new owner's, is stale too.
	if err := s.Finish(ctx, "job_f", Outcome{Status: spec.StatusFailed, Owner: a1.Owner}); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("late finish of the old owner: %v", err)
	}
	// A retry hands the job back only for its owner.
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		s.Create(ctx, p, JobRecord{ID: "job_g", Tenant: "acme", Kind: "fetch", URL: "http://a.test/", CreatedAt: time.Now()})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.StartIn(ctx, "job_g", Attempt{N: 1, Owner: OwnerToken("w2")}, RunSlot{})
	s.Requeue(ctx, "job_g", OwnerToken("w2")) // another attempt of w2: not the owner
	if st, _ := s.Status(ctx, "job_g"); st != spec.StatusRunning {
		t.Fatalf("requeue by a non-owner: %s", st)
	}
}

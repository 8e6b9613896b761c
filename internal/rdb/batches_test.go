package rdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// newStore returns a store on a redis-server of the test's own.
func newStore(t *testing.T) (*Batches, *Jobs, *redis.Client) {
	t.Helper()
	s := redistest.Start(t)
	rdb := s.Client(t, 0)
	js := NewJobs(rdb, time.Hour)
	return NewBatches(rdb, js), js, rdb
}

func newBatch(kind string) *Batch {
	b := &Batch{ID: NewBatchID(), Tenant: "acme", Kind: kind, CreatedAt: time.Now().UTC()}
	b.Template.Normalize(spec.KindFetch)
	return b
}

// checkSum fails when the counts do not add up to total.
func checkSum(t *testing.T, s *Batches, id string) *BatchView {
	t.Helper()
	v, err := s.Get(context.Background(), "", id)
	if err != nil {
		t.Fatal(err)
	}
	if sum := v.Queued + v.Running + v.Succeeded + v.Failed + v.Cancelled; sum != v.Total {
		t.Fatalf("counts %+v add up to %d, not total %d", v, sum, v.Total)
	}
	return v
}

func expandAll(t *testing.T, s *Batches, b *Batch, urls []string) []string {
	t.Helper()
	ids, cancelled, err := s.CreateChunk(context.Background(), b, 0, urls)
	if err != nil || cancelled {
		t.Fatalf("CreateChunk: %v cancelled=%v", err, cancelled)
	}
	return ids
}

func TestListBatchCountsAndCompletion(t *testing.T) {
	ctx := context.Background()
	s, js, _ := newStore(t)
	b := newBatch(spec.BatchKindURLs)
	urls := []string{"http://a.test/1", "http://a.test/2", "http://a.test/3", "http://a.test/4"}
	if err := s.CreateURLs(ctx, b, urls); err != nil {
		t.Fatal(err)
	}
	if v := checkSum(t, s, b.ID); v.Total != 4 || v.Queued != 4 || v.Status != spec.BatchRunning {
		t.Fatalf("new batch: %+v", v)
	}
	got, _ := s.URLs(ctx, b.ID, 0, 10)
	if len(got) != 4 || got[3] != urls[3] {
		t.Fatalf("urls = %v", got)
	}
	ids := expandAll(t, s, b, urls[:2])
	if _, _, err := s.CreateChunk(ctx, b, 0, urls[:2]); !errors.Is(err, ErrExpandRace) {
		t.Fatalf("second write of batchChunk 0: %v, want ErrExpandRace", err)
	}
	more, _, err := s.CreateChunk(ctx, b, 2, urls[2:])
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, more...)
	if ids[3] != BatchJobID(b.ID, 3) {
		t.Fatalf("job ids %v", ids)
	}
	checkSum(t, s, b.ID)

	// start, retry, finish: every step keeps the sum
	if st, err := js.Start(ctx, ids[0], 1); err != nil || st != "" {
		t.Fatal(st, err)
	}
	if v := checkSum(t, s, b.ID); v.Running != 1 || v.Queued != 3 {
		t.Fatalf("after start: %+v", v)
	}
	if err := js.Requeue(ctx, ids[0], ""); err != nil {
		t.Fatal(err)
	}
	if v := checkSum(t, s, b.ID); v.Running != 0 || v.Queued != 4 {
		t.Fatalf("after requeue: %+v", v)
	}
	for i, id := range ids {
		js.Start(ctx, id, 1)
		st := spec.StatusSucceeded
		if i == 1 {
			st = spec.StatusFailed
		}
		if err := js.Finish(ctx, id, Outcome{Status: st, Result: &spec.Result{URL: urls[i]}}); err != nil {
			t.Fatal(err)
		}
		if err := js.Finish(ctx, id, Outcome{Status: st}); !errors.Is(err, ErrJobEnded) {
			t.Fatal("second finish", err)
		}
		checkSum(t, s, b.ID)
	}
	// every job ended, but the expansion is still open
	if st, now, _ := s.Settle(ctx, b.ID); st != spec.BatchRunning || now {
		t.Fatalf("settle with the expansion open: %s %v", st, now)
	}
	if err := s.FinishExpand(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	s.FinishExpand(ctx, b.ID) // once only
	if st, now, _ := s.Settle(ctx, b.ID); st != spec.BatchCompleted || !now {
		t.Fatalf("settle: %s %v", st, now)
	}
	if st, now, _ := s.Settle(ctx, b.ID); st != spec.BatchCompleted || now {
		t.Fatalf("second settle: %s %v", st, now)
	}
	v := checkSum(t, s, b.ID)
	if v.Succeeded != 3 || v.Failed != 1 || v.FinishedAt == nil {
		t.Fatalf("completed: %+v", v)
	}
	if err := s.Cancel(ctx, "acme", b.ID); !errors.Is(err, ErrBatchCompleted) {
		t.Fatalf("cancel a completed batch: %v", err)
	}
	if _, err := s.Get(ctx, "globex", b.ID); !errors.Is(err, ErrBatchNotFound) {
		t.Fatalf("another tenant's batch: %v", err)
	}
	list, next, err := s.List(ctx, "acme", "", 10)
	if err != nil || len(list) != 1 || list[0].ID != b.ID || next != "" {
		t.Fatalf("list: %v %q %v", list, next, err)
	}
}

func TestCancelBatch(t *testing.T) {
	ctx := context.Background()
	s, js, rdb := newStore(t)
	b := newBatch(spec.BatchKindURLs)
	urls := []string{"http://a.test/1", "http://a.test/2", "http://a.test/3", "http://a.test/4"}
	if err := s.CreateURLs(ctx, b, urls); err != nil {
		t.Fatal(err)
	}
	ids := expandAll(t, s, b, urls[:3])
	rdb.IncrBy(ctx, ActiveKey("acme"), 4) // as the API's gate did
	js.Start(ctx, ids[0], 1)
	if err := s.Cancel(ctx, "acme", b.ID); err != nil {
		t.Fatal(err)
	}
	v := checkSum(t, s, b.ID)
	if v.Status != spec.BatchCancelled || v.Running != 1 || v.Cancelled != 2 || v.Queued != 1 || v.FinishedAt != nil {
		t.Fatalf("after cancel: %+v", v)
	}
	// the rest of the expansion sees the cancel
	more, cancelled, err := s.CreateChunk(ctx, b, 3, urls[3:])
	if err != nil || !cancelled {
		t.Fatalf("batchChunk after cancel: %v %v", cancelled, err)
	}
	// a job that would start now is cancelled instead
	if st, _ := js.Start(ctx, more[0], 1); st != spec.StatusCancelled {
		t.Fatalf("start of a job of a cancelled batch: %q", st)
	}
	s.FinishExpand(ctx, b.ID)
	if st, now, _ := s.Settle(ctx, b.ID); st != spec.BatchRunning || now {
		t.Fatalf("settle with a running job: %s %v", st, now)
	}
	if r, _ := s.AcquireSlot(ctx, "acme", ids[0], 1, time.Minute, false); r != SlotTaken {
		t.Fatal(r)
	}
	js.Finish(ctx, ids[0], Outcome{Status: spec.StatusSucceeded})
	if st, now, _ := s.ReleaseSlotAndSettle(ctx, "acme", ids[0], b.ID); st != spec.BatchCancelled || !now {
		t.Fatalf("release and settle: %s %v", st, now)
	}
	if n, _ := s.RunningBulk(ctx, "acme"); n != 0 {
		t.Fatalf("slot not released: %d", n)
	}
	v = checkSum(t, s, b.ID)
	if v.Succeeded != 1 || v.Cancelled != 3 || v.FinishedAt == nil {
		t.Fatalf("ended: %+v", v)
	}
	if n, _ := rdb.Get(ctx, ActiveKey("acme")).Int(); n != 0 {
		t.Fatalf("active count after the batch ended: %d", n)
	}
	if err := s.Cancel(ctx, "acme", b.ID); err != nil {
		t.Fatalf("cancel again: %v", err)
	}
}

func TestCrawlDiscovery(t *testing.T) {
	ctx := context.Background()
	s, js, _ := newStore(t)
	b := newBatch(spec.BatchKindCrawl)
	d := 2
	b.Crawl = &spec.Crawl{StartURL: "http://site.test/", MaxDepth: &d, MaxPages: 4}
	if err := s.CreateURLs(ctx, b, []string{b.Crawl.StartURL}); err != nil {
		t.Fatal(err)
	}
	if v := checkSum(t, s, b.ID); v.Total != 1 || v.Queued != 1 {
		t.Fatalf("new crawl: %+v", v)
	}
	// The expansion writes the start page (depth 0, claimed as seen).
	ids, _, err := s.CreateChunk(ctx, b, 0, []string{b.Crawl.StartURL})
	if err != nil {
		t.Fatal(err)
	}
	start := ids[0]
	if err := s.FinishExpand(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	js.Start(ctx, start, 1)
	js.Finish(ctx, start, Outcome{Status: spec.StatusSucceeded})
	if p, _ := s.DiscoveryPending(ctx, start); !p {
		t.Fatal("discovery of the start page should be pending")
	}
	if st, _, _ := s.Settle(ctx, b.ID); st != spec.BatchRunning {
		t.Fatal("a crawl must not complete before its start page's links are followed")
	}
	links := []string{"http://site.test/a", "http://site.test/b", "http://site.test/", "http://site.test/a"}
	kids, err := s.Discover(ctx, b, start, 1, linksFound(links...))
	if err != nil || len(kids) != 2 || kids[0].URL != links[0] || kids[1].JobID != BatchJobID(b.ID, 2) {
		t.Fatalf("discover: %+v %v", kids, err)
	}
	again, err := s.Discover(ctx, b, start, 1, linksFound(links...)) // a redelivery
	if err != nil || len(again) != 2 || again[1] != kids[1] {
		t.Fatalf("discover again: %+v %v", again, err)
	}
	if v := checkSum(t, s, b.ID); v.Total != 3 || v.Queued != 2 {
		t.Fatalf("after discovery: %+v", v)
	}
	s.DiscoveryDone(ctx, b.ID, start)
	s.DiscoveryDone(ctx, b.ID, start)
	if kids, _ := s.Discover(ctx, b, start, 1, linksFound("http://site.test/c")); len(kids) != 0 {
		t.Fatal("discovery after done added jobs")
	}
	// a child finds two more pages; max_pages 4 keeps one
	js.Start(ctx, kids[0].JobID, 1)
	js.Finish(ctx, kids[0].JobID, Outcome{Status: spec.StatusSucceeded})
	more, _ := s.Discover(ctx, b, kids[0].JobID, 2, []Found{{URL: "http://site.test/c", By: "sitemap", Lastmod: "2026-11-30"},
		{URL: "http://site.test/d", By: "link"}, {URL: "http://site.test/b", By: "link"}})
	if len(more) != 1 || more[0].URL != "http://site.test/c" {
		t.Fatalf("max_pages: %+v", more)
	}
	if in, _ := js.Get(ctx, "", more[0].JobID, false); in.Job.DiscoveredBy != "sitemap" || in.Job.Lastmod != "2026-11-30" || in.Depth != 2 {
		t.Fatalf("a page from a sitemap: %+v (depth %d)", in.Job, in.Depth)
	}
	if in, _ := js.Get(ctx, "", start, false); in.Job.DiscoveredBy != "start" {
		t.Fatalf("the start page: %+v", in.Job)
	}
	s.DiscoveryDone(ctx, b.ID, kids[0].JobID)
	for _, id := range []string{kids[1].JobID, more[0].JobID} {
		js.Start(ctx, id, 1)
		js.Finish(ctx, id, Outcome{Status: spec.StatusFailed}) // failed: nothing to follow
		checkSum(t, s, b.ID)
	}
	if st, now, _ := s.Settle(ctx, b.ID); st != spec.BatchCompleted || !now {
		t.Fatalf("settle: %s %v", st, now)
	}
	if v := checkSum(t, s, b.ID); v.Total != 4 || v.Succeeded != 2 || v.Failed != 2 {
		t.Fatalf("ended: %+v", v)
	}
	if n, _ := s.JobCount(ctx, b.ID); n != 4 {
		t.Fatalf("job list has %d", n)
	}
}

func TestSlots(t *testing.T) {
	ctx := context.Background()
	s, js, rdb := newStore(t)
	ids := make([]string, 4)
	for i := range ids {
		ids[i] = fmt.Sprintf("job_slot%d", i)
		p := rdb.Pipeline()
		js.Create(ctx, p, JobRecord{ID: ids[i], Tenant: "acme", Kind: "fetch", CreatedAt: time.Now()})
		p.Exec(ctx)
	}
	lease := time.Minute
	for i, want := range []string{SlotTaken, SlotTaken, Busy} {
		if r, err := s.AcquireSlot(ctx, "acme", ids[i], 2, lease, false); err != nil || r != want {
			t.Fatalf("acquire %d: %q %v, want %q", i, r, err, want)
		}
	}
	if r, _ := s.AcquireSlot(ctx, "acme", ids[2], 2, lease, true); r != SlotTaken {
		t.Fatalf("forced acquire: %q", r)
	}
	js.Start(ctx, ids[0], 1)
	if r, _ := s.AcquireSlot(ctx, "acme", ids[0], 5, lease, false); r != SlotHeld {
		t.Fatalf("second attempt of a running job: %q", r)
	}
	if r, _ := s.AcquireSlot(ctx, "acme", ids[1], 2, lease, false); r != SlotTaken {
		t.Fatalf("stale slot of a queued job: %q", r)
	}
	js.Finish(ctx, ids[0], Outcome{Status: spec.StatusSucceeded})
	if r, _ := s.AcquireSlot(ctx, "acme", ids[0], 5, lease, false); r != SlotEnded {
		t.Fatalf("ended job: %q", r)
	}
	for _, id := range ids {
		s.ReleaseSlot(ctx, "acme", id)
	}
	if n, _ := s.RunningBulk(ctx, "acme"); n != 0 {
		t.Fatalf("running after release: %d", n)
	}
	// A live slot of a running job is held by its attempt, unless the
	// owner's worker died: then another attempt takes it over.
	w := NewWorkers(s.rdb)
	if err := w.Beat(ctx, "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if st, _ := js.StartIn(ctx, ids[3], Attempt{N: 1, Owner: OwnerToken("w1")}, RunSlot{}); st != "" {
		t.Fatal(st)
	}
	if r, _ := s.AcquireSlot(ctx, "acme", ids[3], 5, lease, false); r != SlotTaken {
		t.Fatal(r)
	}
	if r, _ := s.AcquireSlot(ctx, "acme", ids[3], 5, lease, false); r != SlotHeld {
		t.Fatalf("slot of a live owner's job: %q", r)
	}
	if err := w.Leave(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.AcquireSlot(ctx, "acme", ids[3], 5, lease, false); r != SlotTaken {
		t.Fatalf("slot of a dead owner's job: %q", r)
	}
}

// TestCountsUnderConcurrency moves the jobs of a batch through their
// statuses from many goroutines while another reads the batch: every read
// adds up.
func TestCountsUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	s, js, _ := newStore(t)
	b := newBatch(spec.BatchKindURLs)
	const n = 300
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://a.test/%d", i)
	}
	if err := s.CreateURLs(ctx, b, urls); err != nil {
		t.Fatal(err)
	}
	ids := expandAll(t, s, b, urls)
	s.FinishExpand(ctx, b.ID)
	stop := make(chan struct{})
	var reads atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			checkSum(t, s, b.ID)
			reads.Add(1)
		}
	}()
	var work sync.WaitGroup
	for w := 0; w < 8; w++ {
		work.Add(1)
		go func(w int) {
			defer work.Done()
			for i := w; i < n; i += 8 {
				js.Start(ctx, ids[i], 1)
				if i%5 == 0 {
					js.Requeue(ctx, ids[i], "")
					js.Start(ctx, ids[i], 2)
				}
				if i%7 == 0 {
					js.Cancel(ctx, "acme", ids[i])
				}
				js.Finish(ctx, ids[i], Outcome{Status: spec.StatusSucceeded})
				s.Settle(ctx, b.ID)
			}
		}(w)
	}
	work.Wait()
	close(stop)
	wg.Wait()
	v := checkSum(t, s, b.ID)
	if v.Status != spec.BatchCompleted || v.Succeeded+v.Cancelled != n || reads.Load() < 10 {
		t.Fatalf("end: %+v after %d reads", v, reads.Load())
	}
}

// linksFound is the Found of pages found as links.
func linksFound(urls ...string) []Found {
	out := make([]Found, len(urls))
	for i, u := range urls {
		out[i] = Found{URL: u, By: "link"}
	}
	return out
}

package rdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func ptr[T any](v T) *T { return &v }

func TestCachePutGetTouchAndBounds(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t, 0)
	cache := NewCache(c, CacheConfig{TTL: time.Hour, MaxEntries: 3, MaxEntryBytes: 2048})
	md := "# hello"
	res := &spec.Result{URL: "https://a.test/", StatusCode: 200, Markdown: &md, Headers: map[string]string{"etag": `"v1"`, "last-modified": "Mon, 01 Jan 2026 00:00:00 GMT"},
		Timings: spec.Timings{RunMs: 5}, Change: &spec.Change{Status: spec.ChangeNew}}
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	if err := cache.Put(ctx, "acme", "k1", "job_1", t0, res); err != nil {
		t.Fatal(err)
	}
	e, err := cache.Get(ctx, "acme", "k1")
	if err != nil || e == nil {
		t.Fatalf("get: %v %v", e, err)
	}
	if e.Job != "job_1" || !e.At.Equal(t0) || e.ETag != `"v1"` || e.LastModified == "" || !e.Markdown {
		t.Errorf("entry: %+v", e)
	}
	r, err := e.Result()
	if err != nil || *r.Markdown != md || r.Timings.RunMs != 0 || r.Change != nil {
		t.Errorf("result: %+v %v", r, err)
	}
	// Another tenant sees nothing.
	if e, _ := cache.Get(ctx, "globex", "k1"); e != nil {
		t.Error("another tenant's entry is visible")
	}
	// An older write does not replace a newer entry; a touch moves it on.
	if err := cache.Put(ctx, "acme", "k1", "job_0", t0.Add(-time.Second), res); err != nil {
		t.Fatal(err)
	}
	if e, _ := cache.Get(ctx, "acme", "k1"); e.Job != "job_1" {
		t.Errorf("an older result replaced the entry: %+v", e)
	}
	t1 := t0.Add(30 * time.Second)
	if err := cache.Touch(ctx, "acme", "k1", "job_2", t1); err != nil {
		t.Fatal(err)
	}
	if e, _ := cache.Get(ctx, "acme", "k1"); e.Job != "job_2" || !e.At.Equal(t1) {
		t.Errorf("after touch: %+v", e)
	}
	// Too large an entry is refused.
	big := strings.Repeat("x", 10000) + fmt.Sprint(time.Now().UnixNano())
	for i := 0; i < 200; i++ {
		big += fmt.Sprint(i * 7919 % 1000)
	}
	if err := cache.Put(ctx, "acme", "kbig", "job_b", t0, &spec.Result{StatusCode: 200, HTML: ptr(big + randomText(4000))}); !errors.Is(err, ErrCacheEntryTooLarge) {
		t.Errorf("a big entry: %v", err)
	}
	// At most 3 entries: the oldest go.
	for i := 2; i <= 5; i++ {
		if err := cache.Put(ctx, "acme", fmt.Sprintf("k%d", i), "job", t1.Add(time.Duration(i)*time.Second), res); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []bool{false, false, true, true, true} {
		e, _ := cache.Get(ctx, "acme", fmt.Sprintf("k%d", i+1))
		if (e != nil) != want {
			t.Errorf("k%d kept %v, want %v", i+1, e != nil, want)
		}
	}
	if n := c.ZCard(ctx, cacheIndexKey("acme")).Val(); n != 3 {
		t.Errorf("index holds %d entries, want 3", n)
	}
}

func TestResultCoreAndOwn(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t, 0)
	js := NewJobs(c, time.Hour)
	cache := NewCache(c, CacheConfig{})
	md := "# page\n\n" + randomText(6000)
	res := &spec.Result{URL: "https://a.test/p", FinalURL: "https://a.test/p", StatusCode: 200, Markdown: &md,
		Links: []string{"https://a.test/a", "https://a.test/b"}, Canonical: "https://a.test/c", Headers: map[string]string{"etag": `"e"`},
		Timings: spec.Timings{QueuedMs: 3, RunMs: 9}, Change: &spec.Change{Status: spec.ChangeNew}}
	core, own, err := EncodeResult(res)
	if err != nil {
		t.Fatal(err)
	}
	finish := func(o Outcome) *spec.Result {
		t.Helper()
		id := NewID("job")
		if err := js.CreateGated(ctx, JobRecord{ID: id, Tenant: "acme", Kind: "fetch", URL: res.URL, CreatedAt: time.Now()}, 0, 0, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := js.Finish(ctx, id, o); err != nil {
			t.Fatal(err)
		}
		in, err := js.Get(ctx, "acme", id, true)
		if err != nil {
			t.Fatal(err)
		}
		return in.Job.Result
	}
	same := func(what string, got, want *spec.Result) {
		t.Helper()
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("%s reads back as\n%s\nwant\n%s", what, g, w)
		}
	}
	same("core and own", finish(Outcome{Status: spec.StatusSucceeded, Core: core, Own: own}), res)
	same("a whole result", finish(Outcome{Status: spec.StatusSucceeded, Result: res}), res)
	// Another job reuses the cached core with its own fields.
	if err := cache.PutCore(ctx, "acme", "k", "job_src", time.Now(), res, core); err != nil {
		t.Fatal(err)
	}
	e, _ := cache.Get(ctx, "acme", "k")
	head, err := e.Head()
	if err != nil || head.StatusCode != 200 || len(head.Links) != 2 || head.Canonical != res.Canonical || head.Markdown != nil || head.Headers["etag"] != `"e"` {
		t.Errorf("head: %+v %v", head, err)
	}
	reused := *res
	reused.Timings, reused.Change, reused.Cache = spec.Timings{RunMs: 1}, nil, &spec.CacheInfo{Revalidated: true}
	own2, _ := EncodeOwn(&reused)
	same("a reused core", finish(Outcome{Status: spec.StatusSucceeded, Core: e.Core(), Own: own2}), &reused)
}

func randomText(n int) string {
	var sb strings.Builder
	x := uint32(2463534242)
	for sb.Len() < n {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		sb.WriteByte(byte('a' + x%26))
	}
	return sb.String()
}

func TestCreateSucceeded(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t, 0)
	js := NewJobs(c, time.Hour)
	now := time.Now().UTC()
	res := &spec.Result{URL: "https://a.test/", StatusCode: 200, Cache: &spec.CacheInfo{Hit: true, AgeMs: 5, SourceJob: "job_src"}}
	r := JobRecord{ID: NewID("job"), Tenant: "acme", Kind: spec.KindFetch, URL: "https://a.test/", CreatedAt: now}
	if err := js.CreateSucceeded(ctx, r, res, 0); err != nil {
		t.Fatal(err)
	}
	in, err := js.Get(ctx, "acme", r.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if in.Job.Status != spec.StatusSucceeded || in.Job.FinishedAt == nil || in.Job.Result == nil || !in.Job.Result.Cache.Hit {
		t.Errorf("job: %+v", in.Job)
	}
	if n, _ := c.Get(ctx, ActiveKey("acme")).Int(); n != 0 {
		t.Errorf("a cache hit holds %d places among the jobs not ended", n)
	}
	list, _, err := js.List(ctx, "acme", "", "", 10)
	if err != nil || len(list) != 1 || list[0].ID != r.ID {
		t.Errorf("list: %v %v", list, err)
	}
	// Over the rate limit.
	r2 := r
	r2.ID = NewID("job")
	if err := js.CreateSucceeded(ctx, r2, res, 1); !errors.Is(err, ErrRateLimited) {
		t.Errorf("second in a second with rps 1: %v", err)
	}
}

func TestTrackerSwap(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t, 0)
	tr := NewTracker(c, TrackerConfig{MaxEntries: 2})
	at := time.Now().Truncate(time.Millisecond).UTC()
	prev, err := tr.Swap(ctx, "acme", "https://a.test/", "", Tracked{Job: "job_1", At: at, Digest: "d1", Markdown: "one", HasMarkdown: true})
	if err != nil || prev != nil {
		t.Fatalf("first: %+v %v", prev, err)
	}
	prev, err = tr.Swap(ctx, "acme", "https://a.test/", "", Tracked{Job: "job_2", At: at.Add(time.Second), Digest: "d2", Markdown: "two", HasMarkdown: true})
	if err != nil || prev == nil || prev.Job != "job_1" || prev.Digest != "d1" || prev.Markdown != "one" || !prev.HasMarkdown || !prev.At.Equal(at) {
		t.Fatalf("second: %+v %v", prev, err)
	}
	// job_2 again (a later attempt): compared with job_1, without markdown.
	prev, err = tr.Swap(ctx, "acme", "https://a.test/", "", Tracked{Job: "job_2", At: at.Add(2 * time.Second), Digest: "d2", Markdown: "two", HasMarkdown: true})
	if err != nil || prev == nil || prev.Job != "job_1" || prev.Digest != "d1" || prev.HasMarkdown {
		t.Fatalf("job_2 again: %+v %v", prev, err)
	}
	// Tags and tenants are lines of their own.
	for _, x := range []struct{ tenant, tag string }{{"acme", "other"}, {"globex", ""}} {
		if prev, _ := tr.Swap(ctx, x.tenant, "https://a.test/", x.tag, Tracked{Job: "job_3", At: at, Digest: "d3"}); prev != nil {
			t.Errorf("%s/%q sees %+v", x.tenant, x.tag, prev)
		}
	}
	// Two tracked lines per tenant at most: the least recent goes (the
	// tag "other", tracked at at).
	tr.Swap(ctx, "acme", "https://a.test/x", "", Tracked{Job: "job_4", At: at.Add(time.Minute), Digest: "d4"})
	if prev, _ := tr.Swap(ctx, "acme", "https://a.test/", "other", Tracked{Job: "job_5", At: at.Add(time.Hour), Digest: "d5"}); prev != nil {
		t.Errorf("an evicted line still answers: %+v", prev)
	}
	if prev, _ := tr.Swap(ctx, "acme", "https://a.test/x", "", Tracked{Job: "job_6", At: at.Add(2 * time.Hour), Digest: "d6"}); prev == nil || prev.Job != "job_4" {
		t.Errorf("a kept line: %+v", prev)
	}
}

func TestTrackedBatchChanges(t *testing.T) {
	ctx := context.Background()
	s, js, c := newStore(t)
	run := func(scope string, pages map[string]string) *BatchView {
		t.Helper()
		b := newBatch(spec.BatchKindURLs)
		b.Template.ChangeTracking = &spec.ChangeTracking{Tag: "x"}
		b.TrackScope = scope
		var urls []string
		for u := range pages {
			urls = append(urls, u)
		}
		if err := s.CreateURLs(ctx, b, urls); err != nil {
			t.Fatal(err)
		}
		ids := expandAll(t, s, b, urls)
		if err := s.FinishExpand(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			if _, err := js.Start(ctx, id, 1); err != nil {
				t.Fatal(err)
			}
			st := spec.StatusSucceeded
			if pages[urls[i]] == "" {
				st = spec.StatusFailed
			}
			o := Outcome{Status: st, Result: &spec.Result{}, Change: pages[urls[i]], TrackURL: urls[i]}
			if err := js.Finish(ctx, id, o); err != nil {
				t.Fatal(err)
			}
			// A second finish (a redelivery) counts nothing.
			_ = js.Finish(ctx, id, o)
		}
		stt, now, err := s.Settle(ctx, b.ID)
		if err != nil || stt != spec.BatchCompleted || !now {
			t.Fatalf("settle: %s %v %v", stt, now, err)
		}
		return checkSum(t, s, b.ID)
	}
	v := run(TrackScope("", "x"), map[string]string{"u1": "new", "u2": "new", "u3": "new", "u4": ""})
	if c := v.Changes; c == nil || c.New != 3 || c.Same != 0 || c.Changed != 0 || c.Removed != 0 || len(c.RemovedURLs) != 0 {
		t.Errorf("first run: %+v", v.Changes)
	}
	v = run(TrackScope("", "x"), map[string]string{"u1": "same", "u2": "changed", "u5": "new"})
	if c := v.Changes; c == nil || c.New != 1 || c.Same != 1 || c.Changed != 1 || c.Removed != 2 || strings.Join(c.RemovedURLs, ",") != "u3,u4" {
		t.Errorf("second run: %+v", v.Changes)
	}
	// Another scope has its own previous run.
	v = run(TrackScope("sch_1", "x"), map[string]string{"u1": "same"})
	if c := v.Changes; c.Removed != 0 {
		t.Errorf("a schedule's first run removed %d", c.Removed)
	}
	// An untracked batch has no changes.
	b := newBatch(spec.BatchKindURLs)
	if err := s.CreateURLs(ctx, b, []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	if v := checkSum(t, s, b.ID); v.Changes != nil {
		t.Errorf("untracked: %+v", v.Changes)
	}
	if n := c.Exists(ctx, trackRunKey("acme", TrackScope("", "x"))).Val(); n != 1 {
		t.Error("the last run's URLs are not kept")
	}
}

func TestCreateNewIsOnce(t *testing.T) {
	ctx := context.Background()
	s, js, c := newStore(t)
	due := time.Date(2026, 5, 1, 12, 0, 2, 0, time.UTC)
	id := RunID("job", "sch_a", due)
	if id != RunID("job", "sch_a", due) || id == RunID("job", "sch_a", due.Add(2*time.Second)) || id == RunID("job", "sch_b", due) {
		t.Error("RunID is not one per schedule and due time")
	}
	if !strings.HasPrefix(id, "job_") || len(id) != len(NewID("job")) {
		t.Errorf("RunID %q is not shaped like a job id", id)
	}
	r := JobRecord{ID: id, Tenant: "acme", Kind: spec.KindFetch, URL: "https://a.test/", CreatedAt: due, ScheduleID: "sch_a", ScheduledAt: due}
	if err := js.CreateNew(ctx, r, 0, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := js.CreateNew(ctx, r, 0, 0, time.Hour); !errors.Is(err, ErrJobExists) {
		t.Errorf("second create: %v", err)
	}
	if n, _ := c.Get(ctx, ActiveKey("acme")).Int(); n != 1 {
		t.Errorf("active %d, want 1", n)
	}
	in, err := js.Get(ctx, "acme", id, false)
	if err != nil || in.Job.ScheduleID != "sch_a" || in.Job.ScheduledAt == nil || !in.Job.ScheduledAt.Equal(due) {
		t.Errorf("job: %+v %v", in, err)
	}
	// A batch, created by many at once: once.
	b := newBatch(spec.BatchKindURLs)
	b.ID, b.ScheduleID, b.ScheduledAt = RunID("bat", "sch_a", due), "sch_a", due
	var created atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			err := s.CreateURLsNew(ctx, b, []string{"u1", "u2"})
			switch {
			case err == nil:
				created.Add(1)
			case !errors.Is(err, ErrBatchExists):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Errorf("%d creations, want 1", created.Load())
	}
	v := checkSum(t, s, b.ID)
	if v.ScheduleID != "sch_a" || v.ScheduledAt == nil || !v.ScheduledAt.Equal(due) || v.Total != 2 {
		t.Errorf("batch: %+v", v)
	}
}

func TestScheduleClaimRelet(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t, 0)
	st := NewSchedules(c, 2)
	now := time.Now().UTC().Truncate(time.Millisecond)
	due := now.Add(-time.Second)
	s := &StoredSchedule{ID: NewScheduleID(), Tenant: "acme", Cron: "* * * * * *", Timezone: "UTC", Kind: "fetch",
		Body: []byte(`{"url":"https://a.test/"}`), Next: &due, CreatedAt: now, UpdatedAt: now}
	if err := st.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	ds, err := st.DueBy(ctx, now, 10)
	if err != nil || len(ds) != 1 || ds[0].ID != s.ID || !ds[0].At.Equal(due) {
		t.Fatalf("due: %+v %v", ds, err)
	}
	next := due.Add(time.Second)
	// Many claim one due time: one wins.
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Go(func() {
			ok, err := st.Claim(ctx, s.ID, due, &next, now.Add(time.Minute), true)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d claims won, want 1", won.Load())
	}
	got, _ := st.Get(ctx, "acme", s.ID)
	if got.Next == nil || !got.Next.Equal(next) {
		t.Errorf("next after the claim: %v", got.Next)
	}
	// The lease has not ended: nothing lapsed.
	if l, _ := st.Lapsed(ctx, now, 10); len(l) != 0 {
		t.Errorf("lapsed before the lease ended: %+v", l)
	}
	later := now.Add(2 * time.Minute)
	l, _ := st.Lapsed(ctx, later, 10)
	if len(l) != 1 || l[0].ID != s.ID || !l[0].Due.Equal(due) {
		t.Fatalf("lapsed: %+v", l)
	}
	won.Store(0)
	for i := 0; i < 10; i++ {
		wg.Go(func() {
			if ok, _ := st.Relet(ctx, l[0], later, later.Add(time.Minute)); ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Errorf("%d relets won, want 1", won.Load())
	}
	run := spec.ScheduleRun{ScheduleID: s.ID, ScheduledAt: due, Status: spec.RunCreated, JobID: RunID("job", s.ID, due), CreatedAt: now}
	if first, err := st.Complete(ctx, run); err != nil || !first {
		t.Errorf("complete: %v %v", first, err)
	}
	if first, _ := st.Complete(ctx, run); first {
		t.Error("a second complete is first too")
	}
	runs, next2, err := st.Runs(ctx, s.ID, "", 10)
	if err != nil || len(runs) != 1 || runs[0].JobID != run.JobID || next2 != "" {
		t.Errorf("runs: %+v %q %v", runs, next2, err)
	}
	got, _ = st.Get(ctx, "acme", s.ID)
	if got.LastRun == nil || !got.LastRun.Equal(due) {
		t.Errorf("last run: %v", got.LastRun)
	}
	// Paused: a claim of its due time fails; an update with a stale version too.
	got.Paused, got.Next = true, nil
	if err := st.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.Claim(ctx, s.ID, next, nil, later, true); ok {
		t.Error("claimed a paused schedule")
	}
	stale := *got
	stale.Version--
	if err := st.Update(ctx, &stale); !errors.Is(err, ErrScheduleChanged) {
		t.Errorf("stale update: %v", err)
	}
	// The limit, another tenant's view, delete.
	s2 := *s
	s2.ID = NewScheduleID()
	s3 := s2
	s3.ID = NewScheduleID()
	if err := st.Create(ctx, &s2); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, &s3); !errors.Is(err, ErrScheduleLimit) {
		t.Errorf("third schedule: %v", err)
	}
	if _, err := st.Get(ctx, "globex", s.ID); !errors.Is(err, ErrScheduleNotFound) {
		t.Errorf("another tenant's get: %v", err)
	}
	list, _, err := st.List(ctx, "acme", "", 1)
	if err != nil || len(list) != 1 {
		t.Errorf("list: %v %v", list, err)
	}
	if err := st.Delete(ctx, "globex", s.ID); !errors.Is(err, ErrScheduleNotFound) {
		t.Errorf("another tenant's delete: %v", err)
	}
	if err := st.Delete(ctx, "acme", s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "acme", s.ID); !errors.Is(err, ErrScheduleNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if ds, _ := st.DueBy(ctx, later.Add(time.Hour), 10); len(ds) != 1 || ds[0].ID != s2.ID {
		t.Errorf("due after delete: %+v", ds)
	}
}

package e2e

// Freshness tests: the result cache (max_age_ms) answered at submit time,
// revalidation of stale entries, change tracking across two crawls with
// only_changed webhooks. Schedules are in schedule_test.go.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// etagPage serves an article with an ETag and a Last-Modified, and answers
// 304 to a request that names its ETag.
func etagPage(version *string, mu *sync.Mutex) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		v := *version
		mu.Unlock()
		tag := `"` + v + `"`
		w.Header().Set("ETag", tag)
		w.Header().Set("Last-Modified", "Mon, 04 May 2026 10:00:00 GMT")
		if r.Header.Get("If-None-Match") == tag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<html><head><title>Cached</title></head><body><h1>Cached page</h1><p>version %s of the text</p></body></html>`, v)
	}
}

// TestResultCache: a repeat fetch within max_age_ms is answered succeeded
// by the POST itself (200, the whole job, result.cache.hit), and the site
// sees no second request; another tenant's identical request, a session
// job and a result kept out with store_in_cache false are not served from
// the cache; a stale entry is revalidated (304: result.cache.revalidated)
// and a changed page is fetched again; a batch job revalidates too, and its
// batch.page event carries the whole result.
func TestResultCache(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 4})
	var mu sync.Mutex
	version := "v1"
	site := NewSite(t, map[string]http.HandlerFunc{"/cached": etagPage(&version, &mu)})
	rcv := newHookReceiver(t, secretA, nil)
	page := site.URL + "/cached"
	req := func(extra map[string]any) map[string]any {
		r := map[string]any{"url": page, "output": []string{"html", "markdown"}, "max_age_ms": 60000}
		for k, v := range extra {
			r[k] = v
		}
		return r
	}

	first := e.Run(keyA, "fetch", req(nil))
	if first.Status != spec.StatusSucceeded || first.Result.Cache != nil {
		t.Fatalf("first fetch: %s %+v", first.Status, first.Result)
	}
	e.Drain(t, 30*time.Second, func() int { return site.Hits("/cached") })
	if n := site.Hits("/cached"); n != 1 {
		t.Fatalf("the first fetch made %d requests", n)
	}

	// The repeat: succeeded in the POST's own answer, no ?wait=.
	var hit spec.Job
	start := time.Now()
	resp := e.Do("POST", "/v1/fetch", keyA, req(map[string]any{"webhook": map[string]any{"url": rcv.URL + "/hit"}}), &hit)
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK || hit.Status != spec.StatusSucceeded || hit.Result == nil || hit.Result.Cache == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("repeat: %d %s", resp.StatusCode, b)
	}
	c := hit.Result.Cache
	if !c.Hit || c.SourceJob != first.ID || c.AgeMs < 0 || c.AgeMs > 60000 || c.Revalidated {
		t.Errorf("result.cache %+v, want a hit from %s", c, first.ID)
	}
	if hit.ID == first.ID || resp.Header.Get("Location") != "/v1/jobs/"+hit.ID || hit.FinishedAt == nil {
		t.Errorf("the hit's job: %+v (Location %q)", hit, resp.Header.Get("Location"))
	}
	if !contains(hit.Result.HTML, "version v1") || *hit.Result.HTML != *first.Result.HTML || *hit.Result.Markdown != *first.Result.Markdown {
		t.Errorf("the hit's result differs from the cached one")
	}
	t.Logf("the hit was answered in %s", took.Round(time.Millisecond))
	if got := e.Wait(keyA, hit.ID, 10*time.Second); got.Status != spec.StatusSucceeded || got.Result.Cache == nil || !got.Result.Cache.Hit {
		t.Errorf("GET of the hit: %+v", got)
	}
	e.Drain(t, 30*time.Second, func() int { return site.Hits("/cached") }, rcv.count)
	if n := site.Hits("/cached"); n != 1 {
		t.Errorf("the site saw %d requests after the hit, want still 1", n)
	}

	// Another tenant's identical request is not served from acme's cache;
	// neither a session job, nor a request with other outputs.
	other := e.Run(keyB, "fetch", req(nil))
	if other.Status != spec.StatusSucceeded || other.Result.Cache != nil {
		t.Errorf("tenant B: %s cache %+v", other.Status, other.Result.Cache)
	}
	sess := e.Run(keyA, "fetch", req(map[string]any{"session": map[string]any{"id": "cache-s1"}}))
	if sess.Result == nil || sess.Result.Cache != nil {
		t.Errorf("a session job served from the cache: %+v", sess.Result)
	}
	html := e.Run(keyA, "fetch", req(map[string]any{"output": []string{"html"}}))
	if html.Result == nil || html.Result.Cache != nil {
		t.Errorf("other outputs served from the cache: %+v", html.Result.Cache)
	}

	// store_in_cache false keeps a result out.
	noStore := map[string]any{"url": page + "?nostore=1", "output": []string{"html"}, "store_in_cache": false}
	e.Run(keyA, "fetch", noStore)
	noStore["max_age_ms"], noStore["store_in_cache"] = 60000, true
	if j := e.Run(keyA, "fetch", noStore); j.Result.Cache != nil {
		t.Errorf("a result kept out with store_in_cache false was served: %+v", j.Result.Cache)
	}

	e.Drain(t, 30*time.Second, func() int { return site.Hits("/cached") }, rcv.count)
	if n := len(hitsOf(site, "/cached?")); n != 4 {
		t.Errorf("the site saw %d requests of /cached, want 4 (first, tenant B, session, other outputs)", n)
	}
	if n := len(hitsOf(site, "/cached?nostore=1")); n != 2 {
		t.Errorf("the site saw %d requests of /cached?nostore=1, want 2 (store_in_cache false, then its repeat)", n)
	}
	if !rcv.has(spec.EventJobSucceeded, hit.ID) {
		t.Error("no job.succeeded for the hit")
	}

	// max_age_ms 0: never a hit; the entry is revalidated (304).
	reval := e.Run(keyA, "fetch", req(map[string]any{"max_age_ms": 0}))
	if reval.Result == nil || reval.Result.Cache == nil || !reval.Result.Cache.Revalidated || reval.Result.Cache.Hit {
		t.Fatalf("revalidation: %+v", reval.Result)
	}
	if !contains(reval.Result.HTML, "version v1") || reval.Result.StatusCode != 200 {
		t.Errorf("the revalidated result: %d %v", reval.Result.StatusCode, reval.Result.HTML)
	}
	log := hitsOf(site, "/cached?")
	if last := log[len(log)-1]; last.Header.Get("If-None-Match") != `"v1"` || last.Header.Get("If-Modified-Since") == "" {
		t.Errorf("the revalidation sent If-None-Match %q If-Modified-Since %q", last.Header.Get("If-None-Match"), last.Header.Get("If-Modified-Since"))
	}
	// The revalidation vouched for the entry: the next request is a hit
	// from the revalidating job.
	var again spec.Job
	if resp := e.Do("POST", "/v1/fetch", keyA, req(nil), &again); resp.StatusCode != 200 || again.Result.Cache.SourceJob != reval.ID {
		t.Errorf("after the revalidation: %d %+v", resp.StatusCode, again.Result)
	}

	// The page changes: the revalidation fetches it again and keeps it.
	mu.Lock()
	version = "v2"
	mu.Unlock()
	changed := e.Run(keyA, "fetch", req(map[string]any{"max_age_ms": 0}))
	if changed.Result.Cache != nil || !contains(changed.Result.HTML, "version v2") {
		t.Errorf("a changed page: cache %+v", changed.Result.Cache)
	}
	var fresh spec.Job
	if resp := e.Do("POST", "/v1/fetch", keyA, req(nil), &fresh); resp.StatusCode != 200 || !contains(fresh.Result.HTML, "version v2") {
		t.Errorf("after the change: %d", resp.StatusCode)
	}
	// A batch job revalidates too, and its batch.page event carries the
	// whole result (the job knew only the cached result's head).
	acc, _ := e.SubmitBatch(keyA, map[string]any{"urls": []string{page},
		"template": map[string]any{"output": []string{"html", "markdown"}, "max_age_ms": 0},
		"webhook":  map[string]any{"url": rcv.URL + "/batch", "events": []string{"batch.page"}}})
	e.WaitBatch(keyA, acc.ID, 50*time.Millisecond, 30*time.Second)
	e.Drain(t, 30*time.Second, rcv.count)
	if js := e.BatchJobs(keyA, acc.ID, 10); len(js) != 1 || js[0].Result.Cache == nil || !js[0].Result.Cache.Revalidated || !contains(js[0].Result.HTML, "version v2") {
		t.Errorf("a revalidated batch job: %+v", js)
	}
	d, _ := rcv.deliveries()
	pages := 0
	for _, x := range d {
		if x.Path == "/batch" && x.Type == spec.EventBatchPage {
			pages++
			var j spec.Job
			json.Unmarshal(x.Data, &j)
			if j.Result == nil || !contains(j.Result.HTML, "version v2") || !contains(j.Result.Markdown, "version v2") || j.Result.Cache == nil {
				t.Errorf("batch.page of a revalidated page lacks its result: %s", x.Data)
			}
		}
	}
	if pages != 1 {
		t.Errorf("%d batch.page events, want 1", pages)
	}
	if m := apiMetrics(t, e); m["pagefleet_cache_lookups_total{outcome=\"hit\"}"] < 3 {
		t.Errorf("cache hit metric: %v", m["pagefleet_cache_lookups_total{outcome=\"hit\"}"])
	}
	if v, _ := e.workerMetric(0, `pagefleet_cache_revalidations_total{outcome="not_modified"}`); v != 2 {
		t.Errorf("not_modified revalidations: %v, want 2", v)
	}
}

// apiMetrics scrapes the API's /metrics.
func apiMetrics(t *testing.T, e *Env) map[string]float64 {
	t.Helper()
	m, err := scrape(e.APIURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// changingSite is a site whose pages /p/0 … can change, appear and
// disappear between two crawls; its sitemap lists the pages that exist,
// its start page / links to nothing.
type changingSite struct {
	*Site
	mu    sync.Mutex
	pages map[int]string // page → its text
}

func newChangingSite(t *testing.T, n int) *changingSite {
	s := &changingSite{pages: map[int]string{}}
	for i := 0; i < n; i++ {
		s.pages[i] = fmt.Sprintf("Page %d says the same thing every time.", i)
	}
	s.Site = NewSite(t, map[string]http.HandlerFunc{
		"/robots.txt": func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "User-agent: *\nAllow: /\n") },
		"/sitemap.xml": func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			defer s.mu.Unlock()
			var ids []int
			for i := range s.pages {
				ids = append(ids, i)
			}
			sort.Ints(ids)
			fmt.Fprint(w, `<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">`)
			for _, i := range ids {
				fmt.Fprintf(w, "<url><loc>%s/p/%d</loc></url>", s.URL, i)
			}
			fmt.Fprint(w, "</urlset>")
		},
		"/": html(`<html><head><title>Home</title></head><body><h1>Home</h1><p>The start page.</p></body></html>`),
		"/p/": func(w http.ResponseWriter, r *http.Request) {
			var i int
			fmt.Sscanf(r.URL.Path, "/p/%d", &i)
			s.mu.Lock()
			text, ok := s.pages[i]
			s.mu.Unlock()
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<html><head><title>Page %d</title></head><body><h1>Page %d</h1>\n<p>Intro of page %d.</p>\n<p>%s</p>\n<p>Footer of page %d.</p></body></html>", i, i, i, text, i)
		},
	})
	return s
}

// TestChangeTracking: two crawls (sitemap only) of a 12-page site with
// change tracking and a webhook with only_changed. Between them the site
// changes 3 pages, adds 2 and removes 1; the second run reports exactly
// those: changed 3 with diffs that contain the changed text, new 2, removed
// 1 (its URL named), the rest (the other 8 pages and the start page) same,
// and only_changed sends exactly 5 batch.page events, counted after the
// queues drained.
func TestChangeTracking(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 6})
	site := newChangingSite(t, 12)
	rcv := newHookReceiver(t, secretA, nil)
	body := func(run string) map[string]any {
		return map[string]any{
			"crawl":    map[string]any{"start_url": site.URL + "/", "sitemap": "only", "max_depth": 1},
			"template": map[string]any{"output": []string{"text"}, "change_tracking": map[string]any{"tag": "nightly"}},
			"webhook":  map[string]any{"url": rcv.URL + "/" + run, "only_changed": true, "events": []string{"batch.page"}},
		}
	}
	pagesOf := func(run string) []hookDelivery {
		d, _ := rcv.deliveries()
		var out []hookDelivery
		for _, x := range d {
			if x.Path == "/"+run && x.Type == spec.EventBatchPage {
				out = append(out, x)
			}
		}
		return out
	}

	acc1, _ := e.SubmitBatch(keyA, body("run1"))
	b1, _ := e.WaitBatch(keyA, acc1.ID, 100*time.Millisecond, 2*time.Minute)
	e.Drain(t, time.Minute, rcv.count)
	var v1 spec.Batch
	e.Do("GET", "/v1/batches/"+acc1.ID, keyA, nil, &v1)
	if b1.Succeeded != 13 || v1.Changes == nil || v1.Changes.New != 13 || v1.Changes.Same+v1.Changes.Changed+v1.Changes.Removed != 0 {
		t.Fatalf("first run: %+v changes %+v", b1, v1.Changes)
	}
	if n := len(pagesOf("run1")); n != 13 {
		t.Errorf("first run: %d batch.page events, want 13 (all new)", n)
	}
	for _, j := range e.BatchJobs(keyA, acc1.ID, 100) {
		if j.Result == nil || j.Result.Change == nil || j.Result.Change.Status != spec.ChangeNew || j.Result.Markdown == nil {
			t.Errorf("first run, %s: %+v", j.URL, j.Result)
		}
	}

	site.mu.Lock()
	changed := []int{2, 5, 7}
	for _, i := range changed {
		site.pages[i] = fmt.Sprintf("Page %d now says something new: release %d is out.", i, 40+i)
	}
	site.pages[12] = "A new page."
	site.pages[13] = "Another new page."
	delete(site.pages, 9)
	site.mu.Unlock()

	acc2, _ := e.SubmitBatch(keyA, body("run2"))
	b2, _ := e.WaitBatch(keyA, acc2.ID, 100*time.Millisecond, 2*time.Minute)
	e.Drain(t, time.Minute, rcv.count)
	var v2 spec.Batch
	e.Do("GET", "/v1/batches/"+acc2.ID, keyA, nil, &v2)
	want := spec.Changes{New: 2, Same: 9, Changed: 3, Removed: 1, RemovedURLs: []string{site.URL + "/p/9"}}
	if b2.Succeeded != 14 || v2.Changes == nil || v2.Changes.New != want.New || v2.Changes.Same != want.Same ||
		v2.Changes.Changed != want.Changed || v2.Changes.Removed != want.Removed || !slices.Equal(v2.Changes.RemovedURLs, want.RemovedURLs) {
		t.Errorf("second run: %+v changes %+v, want %+v", b2, v2.Changes, want)
	}
	byURL := map[string]spec.Job{}
	for _, j := range e.BatchJobs(keyA, acc2.ID, 100) {
		byURL[strings.TrimPrefix(j.URL, site.URL)] = j
	}
	prevJobs := map[string]string{}
	for _, j := range e.BatchJobs(keyA, acc1.ID, 100) {
		prevJobs[strings.TrimPrefix(j.URL, site.URL)] = j.ID
	}
	for path, j := range byURL {
		if j.Result == nil || j.Result.Change == nil {
			t.Errorf("%s: no change: %+v", path, j.Result)
			continue
		}
		ch := j.Result.Change
		var i int
		fmt.Sscanf(path, "/p/%d", &i)
		switch {
		case path == "/p/12" || path == "/p/13":
			if ch.Status != spec.ChangeNew || ch.PreviousJob != "" {
				t.Errorf("%s: %+v, want new", path, ch)
			}
		case path != "/" && slices.Contains(changed, i):
			if ch.Status != spec.ChangeChanged || ch.PreviousJob != prevJobs[path] || ch.PreviousAt == nil {
				t.Errorf("%s: %+v, want changed since %s", path, ch, prevJobs[path])
			}
			added := fmt.Sprintf("+Page %d now says something new: release %d is out.", i, 40+i)
			removed := fmt.Sprintf("-Page %d says the same thing every time.", i)
			if !strings.Contains(ch.Diff, added) || !strings.Contains(ch.Diff, removed) || !strings.HasPrefix(ch.Diff, "--- a/"+prevJobs[path]+"\n+++ b/"+j.ID+"\n@@ ") {
				t.Errorf("%s: diff\n%s\nlacks %q or %q", path, ch.Diff, added, removed)
			}
		default:
			if ch.Status != spec.ChangeSame || ch.PreviousJob != prevJobs[path] || ch.Diff != "" {
				t.Errorf("%s: %+v, want same as %s", path, ch, prevJobs[path])
			}
		}
	}
	got := pagesOf("run2")
	var paths []string
	for _, d := range got {
		var j spec.Job
		json.Unmarshal(d.Data, &j)
		paths = append(paths, strings.TrimPrefix(j.URL, site.URL))
	}
	sort.Strings(paths)
	if len(got) != 5 || strings.Join(paths, " ") != "/p/12 /p/13 /p/2 /p/5 /p/7" {
		t.Errorf("only_changed sent %d batch.page events, for %v; want 5 (3 changed, 2 new)", len(got), paths)
	}
}

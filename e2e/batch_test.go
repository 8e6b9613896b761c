package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// batchView is the batch object of the API.
type batchView struct {
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	Status     string          `json:"status"`
	Total      int             `json:"total"`
	Queued     int             `json:"queued"`
	Running    int             `json:"running"`
	Succeeded  int             `json:"succeeded"`
	Failed     int             `json:"failed"`
	Cancelled  int             `json:"cancelled"`
	CreatedAt  time.Time       `json:"created_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	Crawl      json.RawMessage `json:"crawl"`
}

func (b batchView) sum() int { return b.Queued + b.Running + b.Succeeded + b.Failed + b.Cancelled }

func (b batchView) ended() bool { return b.FinishedAt != nil }

// SubmitBatch posts a batch, fails the test unless it is accepted, and
// returns its id and how long the API took to answer.
func (e *Env) SubmitBatch(key string, body any) (batchView, time.Duration) {
	e.t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	var acc batchView
	start := time.Now()
	resp := e.Do("POST", "/v1/batches", key, raw, &acc)
	took := time.Since(start)
	if resp.StatusCode != http.StatusAccepted || acc.ID == "" || acc.Status != "running" || resp.Header.Get("Location") != "/v1/batches/"+acc.ID {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("submit batch: %d %s", resp.StatusCode, b)
	}
	return acc, took
}

// Batch reads a batch and checks that its counts add up.
func (e *Env) Batch(key, id string) batchView {
	e.t.Helper()
	var b batchView
	resp := e.Do("GET", "/v1/batches/"+id, key, nil, &b)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("get batch %s: %d %s", id, resp.StatusCode, b)
	}
	if b.sum() != b.Total {
		e.t.Fatalf("batch %s counts do not add up: %+v (sum %d)", id, b, b.sum())
	}
	return b
}

// WaitBatch polls the batch every pause until it ended, checking at every
// poll that the counts add up and that total never shrinks; it returns the
// batch and the number of polls.
func (e *Env) WaitBatch(key, id string, pause, timeout time.Duration) (batchView, int) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	polls, total := 0, 0
	for {
		b := e.Batch(key, id)
		polls++
		if b.Total < total {
			e.t.Fatalf("batch %s total went down from %d to %d", id, total, b.Total)
		}
		total = b.Total
		if b.ended() {
			if b.Status != "completed" && b.Status != "cancelled" {
				e.t.Fatalf("batch %s ended with status %q", id, b.Status)
			}
			return b, polls
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("batch %s not ended after %s: %+v", id, timeout, b)
		}
		time.Sleep(pause)
	}
}

// BatchJobs pages through the batch's jobs with limit and returns them.
func (e *Env) BatchJobs(key, id string, limit int) []spec.Job {
	e.t.Helper()
	var out []spec.Job
	cur := ""
	for pages := 0; ; pages++ {
		var page struct {
			Data       []spec.Job `json:"data"`
			NextCursor string     `json:"next_cursor"`
		}
		resp := e.Do("GET", fmt.Sprintf("/v1/batches/%s/jobs?limit=%d&cursor=%s", id, limit, cur), key, nil, &page)
		if resp.StatusCode != 200 {
			e.t.Fatalf("batch jobs: %d", resp.StatusCode)
		}
		out = append(out, page.Data...)
		if page.NextCursor == "" {
			return out
		}
		if pages > 10000 {
			e.t.Fatal("batch jobs paging does not end")
		}
		cur = page.NextCursor
	}
}

// BatchNDJSON streams the batch's jobs.
func (e *Env) BatchNDJSON(key, id string) []spec.Job {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.APIURL+"/v1/batches/"+id+"/jobs", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		e.t.Fatalf("ndjson: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var out []spec.Job
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		var j spec.Job
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			e.t.Fatalf("ndjson line %d: %v", len(out), err)
		}
		out = append(out, j)
	}
	if err := sc.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// crawlSite is a site of n pages /p/0 … /p/{n-1} that form a binary tree
// (page i links to 2i+1 and 2i+2) whose pages also link back to their
// parent and to the root, so that links run in cycles. Every link appears
// in several spellings that normalise to one URL: relative, upper-case
// scheme or host, with fragments, with the default port when the site runs
// on port 80. Each page also links to an excluded path and to the same
// server under another origin. The site counts hits per path and query.
type crawlSite struct {
	srv    *httptest.Server
	host   string // localhost[:port], the crawl's origin
	port   string
	port80 bool
	mu     sync.Mutex
	hits   map[string]int
}

func newCrawlSite(t *testing.T, n int, robots string, tryPort80 bool) *crawlSite {
	s := &crawlSite{hits: map[string]int{}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		k := r.URL.Path
		if r.URL.RawQuery != "" {
			k += "?" + r.URL.RawQuery
		}
		s.hits[k]++
		s.mu.Unlock()
		switch {
		case r.URL.Path == "/robots.txt" && robots != "":
			fmt.Fprint(w, robots)
			return
		case r.URL.Path == "/q":
			fmt.Fprint(w, `<html><body>query page</body></html>`)
			return
		}
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/p/"))
		if !strings.HasPrefix(r.URL.Path, "/p/") || err != nil || i < 0 || i >= n {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<html><head><title>page %d</title></head><body><h1>page %d</h1>\n", i, i)
		upHost := strings.ToUpper(s.host)
		if c := 2*i + 1; c < n {
			fmt.Fprintf(w, `<a href="/p/%d">child</a> <a href="../p/%d#intro">again</a> <a href="http://%s/p/%d#x">upper host</a>`+"\n", c, c, upHost, c)
			fmt.Fprintf(w, `<a href="http://127.0.0.1:%s/p/%d">other origin</a>`+"\n", s.port, c)
		}
		if c := 2*i + 2; c < n {
			fmt.Fprintf(w, `<a href="HTTP://%s/p/%d">upper scheme</a> <a href="/p/%d?">empty query</a>`+"\n", s.host, c, c)
			if s.port80 {
				fmt.Fprintf(w, `<a href="http://localhost:80/p/%d#p">default port</a>`+"\n", c)
			}
		}
		fmt.Fprintf(w, `<a href="/p/%d">parent</a> <a href="/p/0#top">home</a> <a href="/private/%d">private</a>`+"\n", max(0, (i-1)/2), i)
		fmt.Fprint(w, `<a href="mailto:x@example.com">mail</a> <a href="javascript:void(0)">js</a>`+"\n")
		if i == 0 {
			fmt.Fprint(w, `<a href="/q?a=1">q1</a> <a href="/q?a=1#f">q1 again</a> <a href="/q?a=2">q2</a>`+"\n")
		}
		fmt.Fprint(w, "</body></html>")
	})
	s.srv = httptest.NewUnstartedServer(h)
	if tryPort80 {
		if l, err := net.Listen("tcp", "127.0.0.1:80"); err == nil {
			s.srv.Listener.Close()
			s.srv.Listener = l
			s.port80 = true
		} else {
			t.Logf("port 80 is not free (%v): the default-port spelling is not part of this crawl", err)
		}
	}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	_, s.port, _ = net.SplitHostPort(s.srv.Listener.Addr().String())
	s.host = "localhost:" + s.port
	if s.port80 {
		s.host = "localhost"
	}
	return s
}

func (s *crawlSite) url(path string) string { return "http://" + s.host + path }

func (s *crawlSite) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.hits))
	for k, v := range s.hits {
		out[k] = v
	}
	return out
}

// expectedPages walks the tree breadth first: the pages a crawl from /p/0
// visits with maxDepth when allowed says which pages it may follow. In a
// tree every page is first found from its parent, so its depth is fixed.
func expectedPages(n, maxDepth int, allowed func(i int) bool) map[int]bool {
	out := map[int]bool{0: true}
	level := []int{0}
	for d := 1; d <= maxDepth; d++ {
		var next []int
		for _, i := range level {
			for _, c := range []int{2*i + 1, 2*i + 2} {
				if c < n && allowed(c) {
					out[c] = true
					next = append(next, c)
				}
			}
		}
		level = next
	}
	return out
}

// checkVisits compares the site's hits with the expected pages: each one
// exactly once, nothing else under /p/, nothing under /private/.
func checkVisits(t *testing.T, s *crawlSite, want map[int]bool) {
	t.Helper()
	hits := s.snapshot()
	for i := range want {
		if n := hits["/p/"+strconv.Itoa(i)]; n != 1 {
			t.Errorf("page %d fetched %d times, want once", i, n)
		}
	}
	for k, n := range hits {
		if strings.HasPrefix(k, "/private") {
			t.Errorf("excluded %s fetched %d times", k, n)
		}
		if strings.HasPrefix(k, "/p/") {
			i, err := strconv.Atoi(strings.TrimPrefix(k, "/p/"))
			if err != nil || !want[i] {
				t.Errorf("%s fetched %d times, but the crawl should not reach it", k, n)
			}
		}
	}
}

// TestCrawlBatch crawls a 200-page site with cycles and link spellings
// that normalise to one URL: each page is visited once, the counts add up
// at every poll, max_depth, max_pages, include/exclude and robots.txt
// hold, batch.page fires per page and batch.completed once.
func TestCrawlBatch(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 6})
	const n = 200
	all := func(int) bool { return true }

	t.Run("full crawl", func(t *testing.T) {
		site := newCrawlSite(t, n, "", true)
		rcv := newReceiver(t, secretA, 0)
		acc, took := e.SubmitBatch(keyA, map[string]any{
			"crawl": map[string]any{"start_url": site.url("/p/0#start"), "max_depth": 10, "max_pages": 1000,
				"include": []string{"^/p/", "^/q$"}, "exclude": []string{"^/private"}},
			"template": map[string]any{"output": []string{"text"}},
			"webhook":  map[string]any{"url": rcv.URL + "/hook", "metadata": map[string]any{"crawl": "full"}},
		})
		if acc.Kind != "crawl" || acc.Total != 1 {
			t.Errorf("accepted: %+v", acc)
		}
		start := time.Now()
		b, polls := e.WaitBatch(keyA, acc.ID, 0, 60*time.Second) // poll continuously
		t.Logf("crawl of %d pages ended in %s after %d polls, all adding up (submit took %s)", b.Total, time.Since(start).Round(time.Millisecond), polls, took)
		if b.Status != "completed" || b.Total != n+2 || b.Succeeded != n+2 {
			t.Fatalf("crawl ended %+v, want %d succeeded pages", b, n+2)
		}
		// Count visits and events once nothing can make another: no page
		// task is left to run again (a page enqueues its links and its
		// batch.page while its task is active) and no delivery is pending or
		// waiting for a retry.
		e.Drain(t, time.Minute, rcv.attempts)
		checkVisits(t, site, expectedPages(n, 10, all))
		hits := site.snapshot()
		if hits["/q?a=1"] != 1 || hits["/q?a=2"] != 1 {
			t.Errorf("query pages: /q?a=1 %d, /q?a=2 %d; want each once", hits["/q?a=1"], hits["/q?a=2"])
		}
		var crawl map[string]any
		json.Unmarshal(b.Crawl, &crawl)
		if crawl["start_url"] != site.url("/p/0") || crawl["same_origin"] != true {
			t.Errorf("crawl settings echoed: %v", crawl)
		}
		jobs := e.BatchJobs(keyA, acc.ID, 37)
		inList := 0
		for _, j := range e.listAll(keyA, "") {
			if j.BatchID == acc.ID {
				inList++
			}
		}
		if inList != n+2 {
			t.Errorf("GET /v1/jobs lists %d of the crawl's %d jobs", inList, n+2)
		}
		urls := map[string]bool{}
		for _, j := range jobs {
			if urls[j.URL] || j.BatchID != acc.ID || j.Status != spec.StatusSucceeded || j.Result == nil || j.Result.Text == nil {
				t.Fatalf("job %+v (duplicate url %v)", j, urls[j.URL])
			}
			urls[j.URL] = true
		}
		if len(jobs) != n+2 || jobs[0].URL != site.url("/p/0") || !urls[site.url("/p/199")] {
			t.Errorf("paging returned %d jobs, first %q", len(jobs), jobs[0].URL)
		}
		// webhooks: a batch.page per page, one batch.completed
		evs, _, rejected := rcv.snapshot()
		if rejected > 0 {
			t.Fatalf("%d deliveries failed signature verification", rejected)
		}
		var pages, done int
		for _, ev := range evs {
			switch ev["type"] {
			case "batch.page":
				pages++
			case "batch.completed":
				done++
				d := ev["data"].(map[string]any)
				if d["id"] != acc.ID || d["status"] != "completed" || d["total"] != float64(n+2) || ev["metadata"].(map[string]any)["crawl"] != "full" {
					t.Errorf("batch.completed = %v", ev)
				}
			}
		}
		if pages != n+2 || done != 1 {
			t.Errorf("webhook events: %d batch.page, %d batch.completed; want %d and 1", pages, done, n+2)
		}
		var del struct {
			Data []map[string]any `json:"data"`
		}
		e.Do("GET", "/v1/batches/"+acc.ID+"/deliveries", keyA, nil, &del)
		if len(del.Data) < n+3 {
			t.Errorf("deliveries lists %d attempts", len(del.Data))
		}
	})

	t.Run("max_depth", func(t *testing.T) {
		site := newCrawlSite(t, n, "", false)
		acc, _ := e.SubmitBatch(keyA, map[string]any{"crawl": map[string]any{"start_url": site.url("/p/0"), "max_depth": 3, "include": []string{"^/p/"}}})
		b, _ := e.WaitBatch(keyA, acc.ID, 20*time.Millisecond, 60*time.Second)
		e.Drain(t, time.Minute) // no page task left to fetch a page again
		want := expectedPages(n, 3, all)
		if b.Total != len(want) || b.Succeeded != len(want) {
			t.Errorf("max_depth 3: %+v, want %d pages", b, len(want))
		}
		checkVisits(t, site, want)
	})

	t.Run("max_pages", func(t *testing.T) {
		site := newCrawlSite(t, n, "", false)
		acc, _ := e.SubmitBatch(keyA, map[string]any{"crawl": map[string]any{"start_url": site.url("/p/0"), "max_depth": 10, "max_pages": 25}})
		b, _ := e.WaitBatch(keyA, acc.ID, 20*time.Millisecond, 60*time.Second)
		e.Drain(t, time.Minute) // no page task left to fetch a page again
		if b.Total != 25 || b.Succeeded != 25 {
			t.Errorf("max_pages 25: %+v", b)
		}
		fetched := 0
		for k, c := range site.snapshot() {
			if c != 1 {
				t.Errorf("%s fetched %d times", k, c)
			}
			// robots.txt (for its Crawl-delay and Sitemap lines) and
			// /sitemap.xml (the crawl's "sitemap": "include" default) are
			// read once each, beside the pages.
			if k != "/robots.txt" && k != "/sitemap.xml" {
				fetched += c
			}
		}
		if fetched != 25 {
			t.Errorf("the site served %d pages, want 25", fetched)
		}
	})

	t.Run("include and exclude", func(t *testing.T) {
		site := newCrawlSite(t, n, "", false)
		acc, _ := e.SubmitBatch(keyA, map[string]any{"crawl": map[string]any{"start_url": site.url("/p/0"), "max_depth": 10,
			"include": []string{"^/p/\\d+$"}, "exclude": []string{"^/p/2$", "^/p/1\\d$"}}})
		b, _ := e.WaitBatch(keyA, acc.ID, 20*time.Millisecond, 60*time.Second)
		e.Drain(t, time.Minute) // no page task left to fetch a page again
		excluded := regexp.MustCompile(`^/p/2$|^/p/1\d$`)
		want := expectedPages(n, 10, func(i int) bool { return !excluded.MatchString("/p/" + strconv.Itoa(i)) })
		if b.Total != len(want) || b.Succeeded != len(want) {
			t.Errorf("include/exclude: %+v, want %d pages", b, len(want))
		}
		checkVisits(t, site, want)
		if site.snapshot()["/q?a=1"] != 0 {
			t.Error("/q is not included but was fetched")
		}
	})

	t.Run("robots.txt", func(t *testing.T) {
		site := newCrawlSite(t, n, "User-agent: somebot\nDisallow: /\n\nUser-agent: *\nDisallow: /p/1\nAllow: /p/1$\n", false)
		acc, _ := e.SubmitBatch(keyA, map[string]any{"crawl": map[string]any{"start_url": site.url("/p/0"), "max_depth": 10,
			"include": []string{"^/p/"}, "respect_robots_txt": true}})
		b, _ := e.WaitBatch(keyA, acc.ID, 20*time.Millisecond, 60*time.Second)
		e.Drain(t, time.Minute) // no page task left to fetch a page again
		want := expectedPages(n, 10, func(i int) bool { s := strconv.Itoa(i); return s == "1" || !strings.HasPrefix(s, "1") })
		if b.Total != len(want) || b.Succeeded != len(want) {
			t.Errorf("robots.txt: %+v, want %d pages", b, len(want))
		}
		checkVisits(t, site, want)
		if h := site.snapshot()["/robots.txt"]; h != 1 {
			t.Errorf("robots.txt fetched %d times, want once", h)
		}
	})
}

// TestBatch10k runs a 10 000-URL batch of plain fetches: a fast submit,
// 10 000 results, exactly one batch.completed, paging and NDJSON each
// returning every job once — and, while it runs, another tenant's
// interactive fetch takes about as long as it does alone.
func TestBatch10k(t *testing.T) {
	// Two workers of 8: together more slots than acme's running_bulk_jobs
	// cap (10), so the cap is what holds the batch back.
	e := Start(t, Options{Workers: 2, Concurrency: 8})
	site := NewSite(t, nil)
	rcv := newReceiver(t, secretA, 0)
	const n = 10000

	interactive := func(tag string) time.Duration {
		start := time.Now()
		j := e.Run(keyB, "fetch", map[string]any{"url": site.URL + "/plain?solo=" + tag})
		if j.Status != spec.StatusSucceeded {
			t.Fatalf("interactive fetch %s: %s %+v", tag, j.Status, j.Error)
		}
		return time.Since(start)
	}
	median := func(ds []time.Duration) time.Duration {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	interactive("warmup")
	var alone []time.Duration
	for i := 0; i < 5; i++ {
		alone = append(alone, interactive("alone"+strconv.Itoa(i)))
	}

	urls := make([]string, n)
	for i := range urls {
		urls[i] = site.URL + "/plain?n=" + strconv.Itoa(i)
	}
	apiCPU := procCPU(e.api.PID())
	acc, took := e.SubmitBatch(keyA, map[string]any{"urls": urls, "template": map[string]any{"output": []string{"html"}},
		"webhook": map[string]any{"url": rcv.URL + "/done", "events": []string{"batch.completed"}}})
	start := time.Now()
	workerCPU := procCPU(e.WorkerPID(0)) + procCPU(e.WorkerPID(1))
	t.Logf("10 000-URL batch accepted in %s (API CPU time %s)", took.Round(time.Millisecond), procCPU(e.api.PID())-apiCPU)
	if acc.Total != n || acc.Kind != "urls" {
		t.Errorf("accepted %+v", acc)
	}
	if took > time.Second {
		t.Errorf("submitting 10 000 URLs took %s; want well under a second", took)
	}

	// while it runs: another tenant's interactive fetches
	for e.Batch(keyA, acc.ID).Succeeded < 300 {
		time.Sleep(20 * time.Millisecond)
	}
	var during []time.Duration
	for i := 0; i < 5; i++ {
		during = append(during, interactive("during"+strconv.Itoa(i)))
	}
	mid := e.Batch(keyA, acc.ID)
	ma, md := median(alone), median(during)
	t.Logf("interactive fetch of another tenant: alone median %s %v; during the batch median %s %v (batch at %d/%d, still %s)",
		ma.Round(time.Millisecond), roundAll(alone), md.Round(time.Millisecond), roundAll(during), mid.Succeeded, n, mid.Status)
	if mid.ended() {
		t.Errorf("the batch ended before the interactive fetches were measured; the comparison says nothing")
	}
	// Generous bounds: the machine is saturated by the batch (2 cores run
	// Redis, the API, the worker and the site). A floor of 100 ms keeps a
	// very fast "alone" from making the ratio noise.
	if md > 5*time.Second || md > 10*max(ma, 100*time.Millisecond) {
		t.Errorf("interactive fetch during the batch took %s, alone %s", md, ma)
	}

	// Generous: a machine that runs other suites at the same time slows
	// every Redis round trip down.
	b, polls := e.WaitBatch(keyA, acc.ID, 200*time.Millisecond, 6*time.Minute)
	t.Logf("10 000-URL batch completed in %s (%d polls, counts added up at each); workers' CPU time %s", time.Since(start).Round(time.Millisecond), polls,
		procCPU(e.WorkerPID(0))+procCPU(e.WorkerPID(1))-workerCPU)
	if b.Status != "completed" || b.Total != n || b.Succeeded != n {
		t.Fatalf("batch ended %+v", b)
	}
	// Count fetches and deliveries once nothing can make another: no page
	// task is left to run again, and batch.completed, enqueued while the
	// last page's task was active, was delivered with no retry waiting.
	e.Drain(t, 2*time.Minute, rcv.attempts)
	perQuery := map[string]int{}
	for _, h := range site.Log() {
		perQuery[h.Path]++
	}
	for i := 0; i < n; i++ {
		if c := perQuery["/plain?n="+strconv.Itoa(i)]; c != 1 {
			t.Fatalf("URL %d fetched %d times", i, c)
		}
	}

	checkAll := func(how string, jobs []spec.Job) {
		t.Helper()
		if len(jobs) != n {
			t.Errorf("%s returned %d jobs, want %d", how, len(jobs), n)
		}
		seen := map[string]bool{}
		for i, j := range jobs {
			if seen[j.ID] {
				t.Fatalf("%s returned job %s twice", how, j.ID)
			}
			seen[j.ID] = true
			if j.Status != spec.StatusSucceeded || j.Result == nil || !contains(j.Result.HTML, "plain body") {
				t.Fatalf("%s job %d: %s %+v", how, i, j.Status, j.Error)
			}
			if j.URL != urls[i] {
				t.Fatalf("%s job %d has url %s, want %s (order)", how, i, j.URL, urls[i])
			}
		}
	}
	pstart := time.Now()
	checkAll("paging", e.BatchJobs(keyA, acc.ID, 1000))
	nstart := time.Now()
	checkAll("ndjson", e.BatchNDJSON(keyA, acc.ID))
	t.Logf("reading 10 000 results: paging %s, ndjson %s", nstart.Sub(pstart).Round(time.Millisecond), time.Since(nstart).Round(time.Millisecond))

	// The tenant's job list has them too (they share the batch's creation
	// time), each once, newest first: the batch's last URL first.
	lstart := time.Now()
	var listed []spec.Job
	for _, j := range e.listAll(keyA, "status=succeeded") {
		if j.BatchID == acc.ID {
			listed = append(listed, j)
		}
	}
	t.Logf("GET /v1/jobs?status=succeeded listed the batch's %d jobs in %s", len(listed), time.Since(lstart).Round(time.Millisecond))
	if len(listed) != n {
		t.Fatalf("GET /v1/jobs listed %d of the batch's %d jobs", len(listed), n)
	}
	for i, j := range listed {
		if j.URL != urls[n-1-i] {
			t.Fatalf("GET /v1/jobs place %d: %s, want %s (newest first)", i, j.URL, urls[n-1-i])
		}
	}

	evs, _, rejected := rcv.snapshot() // drained above: a second delivery would be here
	if len(evs) != 1 || rejected != 0 || evs[0]["type"] != "batch.completed" {
		t.Fatalf("webhook events %d (rejected %d); want exactly one batch.completed", len(evs), rejected)
	}
	if d := evs[0]["data"].(map[string]any); d["id"] != acc.ID || d["succeeded"] != float64(n) || d["status"] != "completed" {
		t.Errorf("batch.completed data = %v", d)
	}
	expanded, busy := 0.0, 0.0
	for w := 0; w < 2; w++ {
		metrics := batchScrape(t, "http://"+e.WorkerAddr(w)+"/metrics")
		expanded += batchMetric(metrics, "pagefleet_batch_jobs_expanded_total")
		busy += batchMetric(metrics, "pagefleet_bulk_busy_total")
	}
	if expanded != n {
		t.Errorf("pagefleet_batch_jobs_expanded_total = %g over the workers, want %d", expanded, n)
	}
	t.Logf("bulk hand-backs (running_bulk_jobs cap 10, 16 worker slots): pagefleet_bulk_busy_total %g", busy)
}

// procCPU is the CPU time (user and system) process pid used so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

func batchScrape(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// batchMetric is the value of an unlabelled metric (0 when absent).
func batchMetric(metrics, name string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// TestBatchWorkerKilled kills one of two workers (SIGKILL) in the middle of
// a batch: no page is lost and the batch completes, without waiting for
// asynq to notice the dead worker's tasks (the bulk slot reaper puts them
// back).
func TestBatchWorkerKilled(t *testing.T) {
	t.Parallel() // it waits for leases to run out: let other tests use the time
	e := Start(t, Options{Workers: 2, Concurrency: 4})
	site := NewSite(t, map[string]http.HandlerFunc{"/d": func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond) // pages in flight when the worker is killed
		fmt.Fprint(w, "<html><body>delayed page</body></html>")
	}})
	const n = 300
	urls := make([]string, n)
	for i := range urls {
		urls[i] = site.URL + "/d?n=" + strconv.Itoa(i)
	}
	start := time.Now()
	acc, _ := e.SubmitBatch(keyA, map[string]any{"urls": urls})
	for e.Batch(keyA, acc.ID).Succeeded < 60 {
		time.Sleep(20 * time.Millisecond)
	}
	e.StopWorker(1, syscall.SIGKILL)
	killed := time.Now()
	at := e.Batch(keyA, acc.ID)
	t.Logf("worker 1 killed %s after the submit, batch at %+v", killed.Sub(start).Round(time.Millisecond), at)
	b, _ := e.WaitBatch(keyA, acc.ID, 100*time.Millisecond, 3*time.Minute)
	t.Logf("batch ended %s after the kill (%s in all): %+v", time.Since(killed).Round(time.Millisecond), time.Since(start).Round(time.Millisecond), b)
	if b.Status != "completed" || b.Succeeded != n {
		t.Fatalf("batch ended %+v", b)
	}
	jobs := e.BatchJobs(keyA, acc.ID, 100)
	got := map[string]bool{}
	for _, j := range jobs {
		if j.Status != spec.StatusSucceeded || !contains(j.Result.HTML, "delayed page") {
			t.Errorf("job %s (%s): %s %+v", j.ID, j.URL, j.Status, j.Error)
		}
		got[j.URL] = true
	}
	for _, u := range urls {
		if !got[u] {
			t.Errorf("no succeeded job for %s", u)
		}
	}
	perQuery := map[string]int{}
	for _, h := range site.Log() {
		perQuery[h.Path]++
	}
	again := 0
	for i := range urls {
		c := perQuery["/d?n="+strconv.Itoa(i)]
		if c == 0 {
			t.Errorf("URL %d never fetched", i)
		}
		again += c - 1
	}
	t.Logf("%d pages fetched twice (in flight on the killed worker)", again)
	if !strings.Contains(e.WorkerLog(0), "job queued again") && again > 0 {
		t.Logf("note: the surviving worker's log has no reaped slot")
	}
}

// TestBatchValidation: invalid batches are refused with 422 naming each
// bad field and nothing is written; limits answer 422 batch_too_large and
// 429; cancel, 404 and 409; and the submit time of 100 000 URLs.
func TestBatchValidation(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 4})
	rdb := e.Redis.Client(t, 0)
	thousand := make([]string, 1001)
	for i := range thousand {
		thousand[i] = "http://example.com/" + strconv.Itoa(i)
	}
	cases := []struct {
		name  string
		key   string
		body  any
		code  string
		field string
	}{
		{"bad url", keyA, `{"urls":["http://example.com/a","not a url","ftp://x/y"]}`, "validation_failed", "urls[1]"},
		{"second bad url", keyA, `{"urls":["http://example.com/a","not a url","ftp://x/y"]}`, "validation_failed", "urls[2]"},
		{"no urls", keyA, `{"urls":[]}`, "validation_failed", "urls"},
		{"nothing", keyA, `{}`, "validation_failed", "urls"},
		{"too many for the plan", keyF, map[string]any{"urls": thousand}, "batch_too_large", "urls"},
		{"urls and crawl", keyA, `{"urls":["http://example.com/"],"crawl":{"start_url":"http://example.com/"}}`, "validation_failed", "crawl"},
		{"bad regex", keyA, `{"crawl":{"start_url":"http://example.com/","include":["^/ok","(unclosed"]}}`, "validation_failed", "crawl.include[1]"},
		{"bad exclude", keyA, `{"crawl":{"start_url":"http://example.com/","exclude":["*"]}}`, "validation_failed", "crawl.exclude[0]"},
		{"bad start url", keyA, `{"crawl":{"start_url":"example.com"}}`, "validation_failed", "crawl.start_url"},
		{"max_pages over the limit", keyF, `{"crawl":{"start_url":"http://example.com/","max_pages":5000}}`, "validation_failed", "crawl.max_pages"},
		{"negative depth", keyA, `{"crawl":{"start_url":"http://example.com/","max_depth":-1}}`, "validation_failed", "crawl.max_depth"},
		{"bad template output", keyA, `{"urls":["http://example.com/"],"template":{"output":["pdf"]}}`, "validation_failed", "template.output[0]"},
		{"template url", keyA, `{"urls":["http://example.com/"],"template":{"url":"http://example.com/"}}`, "validation_failed", "template.url"},
		{"template session", keyA, `{"urls":["http://example.com/"],"template":{"session":{"id":"s1"}}}`, "validation_failed", "template.session"},
		{"template actions without render", keyA, `{"urls":["http://example.com/"],"template":{"actions":[{"type":"click","selector":"a"}]}}`, "validation_failed", "template.actions"},
		{"template unknown field", keyA, `{"urls":["http://example.com/"],"template":{"bogus":1}}`, "validation_failed", "template.bogus"},
		{"unknown field", keyA, `{"urls":["http://example.com/"],"bogus":1}`, "validation_failed", "bogus"},
		{"job event on a batch webhook", keyA, `{"urls":["http://example.com/"],"webhook":{"url":"http://example.com/h","events":["job.succeeded"]}}`, "validation_failed", "webhook.events[0]"},
		{"bad webhook url", keyA, `{"urls":["http://example.com/"],"webhook":{"url":"nope"}}`, "validation_failed", "webhook.url"},
	}
	for _, c := range cases {
		var p struct {
			Code   string `json:"code"`
			Errors []struct {
				Field string `json:"field"`
			} `json:"errors"`
		}
		resp := e.Do("POST", "/v1/batches", c.key, c.body, &p)
		fields := []string{}
		for _, f := range p.Errors {
			fields = append(fields, f.Field)
		}
		if resp.StatusCode != 422 || p.Code != c.code || !hasField(fields, c.field) || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %v; want 422 %s naming %s", c.name, resp.StatusCode, p.Code, fields, c.code, c.field)
		}
	}
	if resp := e.Do("POST", "/v1/batches", keyA, `{"urls":["http://example.com/"`, nil); resp.StatusCode != 400 {
		t.Errorf("malformed JSON: %d", resp.StatusCode)
	}
	if keys, _ := rdb.Keys(t.Context(), "{pf}:batch:*").Result(); len(keys) != 0 {
		t.Fatalf("refused batches wrote %v", keys)
	}
	var l struct {
		Data []batchView `json:"data"`
	}
	if e.Do("GET", "/v1/batches", keyA, nil, &l); len(l.Data) != 0 {
		t.Fatalf("refused batches are listed: %v", l.Data)
	}

	// limits: the free tenant may have 1000 jobs not ended
	site := NewSite(t, map[string]http.HandlerFunc{"/s": func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond) // slow pages: the batch is still running when it is cancelled
		fmt.Fprint(w, "<html><body>s</body></html>")
	}})
	urls := make([]string, 1000)
	for i := range urls {
		urls[i] = site.URL + "/s?n=" + strconv.Itoa(i)
	}
	big, _ := e.SubmitBatch(keyF, map[string]any{"urls": urls})
	resp := e.Do("POST", "/v1/batches", keyF, map[string]any{"urls": []string{site.URL + "/s?extra"}}, nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("over the queued-jobs limit: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if e.Do("GET", "/v1/batches", keyF, nil, &l); len(l.Data) != 1 {
		t.Errorf("the refused batch is listed: %d batches", len(l.Data))
	}

	// another tenant's batch is 404 on every route
	for _, r := range []struct{ m, p string }{{"GET", ""}, {"DELETE", ""}, {"GET", "/jobs"}, {"GET", "/deliveries"}} {
		if resp := e.Do(r.m, "/v1/batches/"+big.ID+r.p, keyA, nil, nil); resp.StatusCode != 404 {
			t.Errorf("%s of another tenant's batch%s: %d", r.m, r.p, resp.StatusCode)
		}
	}

	// cancel: what has not run is cancelled, the batch ends cancelled
	for e.Batch(keyF, big.ID).Succeeded < 4 {
		time.Sleep(20 * time.Millisecond)
	}
	var cb batchView
	if resp := e.Do("DELETE", "/v1/batches/"+big.ID, keyF, nil, &cb); resp.StatusCode != 200 || cb.Status != "cancelled" || cb.sum() != cb.Total {
		t.Fatalf("cancel: %d %+v", resp.StatusCode, cb)
	}
	ended, _ := e.WaitBatch(keyF, big.ID, 50*time.Millisecond, 30*time.Second)
	if ended.Status != "cancelled" || ended.Cancelled < 900 || ended.Succeeded+ended.Failed+ended.Cancelled != 1000 {
		t.Errorf("cancelled batch ended %+v", ended)
	}
	if resp := e.Do("DELETE", "/v1/batches/"+big.ID, keyF, nil, nil); resp.StatusCode != 200 {
		t.Errorf("cancelling again: %d", resp.StatusCode)
	}
	small, _ := e.SubmitBatch(keyF, map[string]any{"urls": []string{site.URL + "/s?after"}})
	if b, _ := e.WaitBatch(keyF, small.ID, 50*time.Millisecond, 30*time.Second); b.Status != "completed" || b.Succeeded != 1 {
		t.Errorf("batch after the cancel: %+v", b)
	}
	if resp := e.Do("DELETE", "/v1/batches/"+small.ID, keyF, nil, nil); resp.StatusCode != 409 {
		t.Errorf("cancelling a completed batch: %d, want 409", resp.StatusCode)
	}
	// jobs of the cancelled batch: every one there once, queued ones cancelled
	jobs := e.BatchNDJSON(keyF, big.ID)
	cancelled := 0
	for _, j := range jobs {
		if j.Status == spec.StatusCancelled {
			cancelled++
		}
	}
	if len(jobs) != 1000 || cancelled != ended.Cancelled {
		t.Errorf("cancelled batch lists %d jobs, %d cancelled (batch says %d)", len(jobs), cancelled, ended.Cancelled)
	}

	// 100 000 URLs are accepted quickly (then cancelled)
	hundredK := make([]string, 100000)
	for i := range hundredK {
		hundredK[i] = "http://127.0.0.1:9/never?n=" + strconv.Itoa(i)
	}
	apiCPU := procCPU(e.api.PID())
	huge, took := e.SubmitBatch(keyB, map[string]any{"urls": hundredK})
	t.Logf("100 000-URL batch accepted in %s (API CPU time %s)", took.Round(time.Millisecond), procCPU(e.api.PID())-apiCPU)
	// The target is < 2 s; the bound leaves room for a machine that runs
	// other test suites at the same time.
	if huge.Total != 100000 || took > 3*time.Second {
		t.Errorf("100 000 URLs: total %d in %s (want < 2s)", huge.Total, took)
	}
	cstart := time.Now()
	if resp := e.Do("DELETE", "/v1/batches/"+huge.ID, keyB, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("cancel the 100 000-URL batch: %d", resp.StatusCode)
	}
	hb, _ := e.WaitBatch(keyB, huge.ID, 200*time.Millisecond, 60*time.Second)
	t.Logf("100 000-URL batch cancelled and ended in %s: %+v", time.Since(cstart).Round(time.Millisecond), hb)
	if hb.Status != "cancelled" || hb.Total != 100000 || hb.Cancelled < 90000 {
		t.Errorf("cancelled 100 000-URL batch: %+v", hb)
	}
}

func hasField(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

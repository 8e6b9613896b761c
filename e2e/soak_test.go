package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// soakSample is one point of the soak curve.
type soakSample struct {
	jobs       int
	at         time.Duration
	chromium   int     // chromium processes under the worker's TMPDIR
	zombies    int     // zombie processes under the worker
	heapMiB    float64 // go_memstats_heap_alloc_bytes
	liveMiB    float64 // live heap at the last GC ≈ go_memstats_next_gc_bytes / 2 (GOGC=100)
	goroutines int     // go_goroutines
	workerRSS  int64   // KiB
	chromeRSS  int64   // KiB, summed over the chromium processes (shared pages counted in each)
	chromePSS  int64   // KiB, proportional set size summed: shared pages split between their users
}

func (e *Env) soakSample(t *testing.T, jobs int, start time.Time) soakSample {
	t.Helper()
	m, err := scrape("http://" + e.WorkerAddr(0) + "/metrics")
	if err != nil {
		t.Fatalf("worker metrics: %v", err)
	}
	s := soakSample{jobs: jobs, at: time.Since(start),
		heapMiB: m["go_memstats_heap_alloc_bytes"] / (1 << 20), liveMiB: m["go_memstats_next_gc_bytes"] / 2 / (1 << 20),
		goroutines: int(m["go_goroutines"])}
	pid := e.WorkerPID(0)
	s.workerRSS = statusKB(pid, "status", "VmRSS")
	for _, c := range e.WorkerChromium(0) {
		s.chromium++
		s.chromeRSS += statusKB(c, "status", "VmRSS")
		s.chromePSS += statusKB(c, "smaps_rollup", "Pss")
	}
	s.zombies = len(zombiesUnder(pid))
	return s
}

func soakTable(samples []soakSample) string {
	var b strings.Builder
	b.WriteString("| jobs | elapsed | chromium procs | zombies | Go heap alloc MiB | Go live heap MiB | goroutines | worker RSS MiB | Chrome RSS MiB (sum) | Chrome PSS MiB | worker+Chrome RSS MiB |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %.1f | %.1f | %d | %d | %d | %d | %d |\n", s.jobs, s.at.Round(time.Second), s.chromium, s.zombies,
			s.heapMiB, s.liveMiB, s.goroutines, s.workerRSS>>10, s.chromeRSS>>10, s.chromePSS>>10, (s.workerRSS+s.chromeRSS)>>10)
	}
	return b.String()
}

// Soak bounds (documented in BENCHMARKS.md, "Soak"), for one worker with
// concurrency 4 and one browser.
const (
	soakMaxChromium  = 40        // processes, spare tabs and a recycling browser included
	soakMaxTotalRSS  = 3 << 20   // KiB: worker RSS + the chromium processes' RSS summed
	soakMaxWorkerRSS = 256 << 10 // KiB
)

// TestSoak runs N rendered jobs (PAGEFLEET_SOAK_JOBS, 200 by default; `make
// soak` runs 2 000) through one worker and samples it every 100 jobs: the
// chromium process count stays bounded, the worker's Go heap and goroutines
// come back to their baseline, and its memory with Chrome's stays within a
// bound.
func TestSoak(t *testing.T) {
	// It bounds processes and memory, not time: it may share the machine
	// with the fault tests, which mostly wait.
	t.Parallel()
	n := 200
	if v := os.Getenv("PAGEFLEET_SOAK_JOBS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 {
			t.Fatalf("PAGEFLEET_SOAK_JOBS=%q: want a number ≥ 100", v)
		}
	}
	const concurrency = 4
	// Recycle the browser a few times in any run (the default is 500 jobs).
	perBrowser := max(50, min(500, n/4))
	e := Start(t, Options{Workers: 1, Concurrency: concurrency, Env: []string{
		"PAGEFLEET_BROWSERS=1", "PAGEFLEET_JOBS_PER_BROWSER=" + strconv.Itoa(perBrowser)}})
	site := NewSite(t, map[string]http.HandlerFunc{
		"/form": html(`<!doctype html><html><body><input id="q"><button id="go" onclick="
document.getElementById('out').textContent = 'you typed ' + document.getElementById('q').value;
document.getElementById('out').className = 'done';">go</button><p id="out"></p></body></html>`),
		"/setcookie": func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "n", Value: r.URL.Query().Get("v"), Path: "/", MaxAge: 3600})
			html(`<html><body><p>cookie set</p><script>localStorage.setItem('n', '`+r.URL.Query().Get("v")+`')</script></body></html>`)(w, r)
		},
	})
	tr := e.trackChromium(t, 0)
	start := time.Now()
	// The baseline is taken with the browser's warm tab made (one per
	// browser by default): it counts among the chromium processes.
	if !waitFor(30*time.Second, func() bool {
		n, err := e.workerMetric(0, "pagefleet_browser_contexts_created_total")
		return err == nil && n >= 1
	}) {
		t.Fatal("the worker made no warm tab within 30 s")
	}
	samples := []soakSample{e.soakSample(t, 0, start)}

	type outcome struct {
		i   int
		job spec.Job
		err error
	}
	request := func(i int) (kind string, body map[string]any) {
		switch i % 10 {
		case 6:
			return "fetch", map[string]any{"url": site.URL + "/js?i=" + itoa(i), "render_js": true, "output": []string{"html", "screenshot"}}
		case 7:
			return "interact", map[string]any{"url": site.URL + "/form?i=" + itoa(i), "output": []string{"text"}, "actions": []map[string]any{
				{"type": "type", "selector": "#q", "value": "soak " + itoa(i)},
				{"type": "click", "selector": "#go"},
				{"type": "wait_for", "selector": "#out.done"}}}
		case 8:
			return "fetch", map[string]any{"url": site.URL + "/setcookie?v=" + itoa(i), "render_js": true, "session": map[string]string{"id": "soak-" + itoa(i%5)}}
		case 9:
			return "fetch", map[string]any{"url": site.URL + "/missing?i=" + itoa(i), "render_js": true}
		}
		return "fetch", map[string]any{"url": site.URL + "/article?i=" + itoa(i), "render_js": true, "output": []string{"markdown", "links", "metadata"}}
	}
	next := make(chan int)
	results := make(chan outcome)
	var wg sync.WaitGroup
	for w := 0; w < 2*concurrency; w++ { // a bounded window of jobs in flight
		wg.Go(func() {
			for i := range next {
				kind, body := request(i)
				var o outcome
				o.i = i
				r, err := e.call("POST", "/v1/"+kind+"?wait=60s", keyA, body)
				if err == nil && r.code != http.StatusOK {
					err = fmt.Errorf("%d %s", r.code, r.body)
				}
				if err == nil {
					err = json.Unmarshal(r.body, &o.job)
				}
				for err == nil && !spec.Terminal(o.job.Status) { // over 60 s: keep waiting
					r, err = e.call("GET", "/v1/jobs/"+o.job.ID+"?wait=30s", keyA, nil)
					if err == nil {
						err = json.Unmarshal(r.body, &o.job)
					}
				}
				o.err = err
				results <- o
			}
		})
	}
	go func() {
		for i := 0; i < n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		close(results)
	}()
	var done atomic.Int64
	var failures []string
	for o := range results {
		d := int(done.Add(1))
		switch {
		case o.err != nil:
			failures = append(failures, fmt.Sprintf("job %d: %v", o.i, o.err))
		case o.job.Status != spec.StatusSucceeded:
			failures = append(failures, fmt.Sprintf("job %d (%s): %s %+v", o.i, o.job.ID, o.job.Status, o.job.Error))
		case o.i%10 == 9 && o.job.Result.StatusCode != 404,
			o.i%10 == 7 && !contains(o.job.Result.Text, "you typed soak "+itoa(o.i)):
			failures = append(failures, fmt.Sprintf("job %d (%s): unexpected result", o.i, o.job.ID))
		}
		if d%100 == 0 {
			sm := e.soakSample(t, d, start)
			samples = append(samples, sm)
			tr.observe(e.WorkerChromium(0))
			t.Logf("soak: %d/%d jobs after %s: %d chromium processes, heap %.1f MiB, %d goroutines, worker+Chrome RSS %d MiB",
				d, n, sm.at.Round(time.Second), sm.chromium, sm.heapMiB, sm.goroutines, (sm.workerRSS+sm.chromeRSS)>>10)
		}
	}
	elapsed := time.Since(start)
	// The last sample is of an idle worker: nothing in flight (drained),
	// then 5 s without work, the idle point of the curve that BENCHMARKS.md
	// reports, in which the warm tab is made again.
	e.Drain(t, time.Minute)
	time.Sleep(5 * time.Second)
	final := e.soakSample(t, n, start)
	samples = append(samples, final)
	t.Logf("soak: %d rendered jobs in %s (%.1f jobs/s), 1 worker, concurrency %d, 1 browser recycled every %d jobs; every 100 jobs, then idle 5 s after the last:\n%s",
		n, elapsed.Round(time.Second), float64(n)/elapsed.Seconds(), concurrency, perBrowser, soakTable(samples))

	if len(failures) > 0 {
		t.Errorf("%d of %d jobs did not succeed as expected; first: %s", len(failures), n, strings.Join(failures[:min(5, len(failures))], "; "))
	}
	base := samples[0]
	var maxChromium int
	var maxTotal, maxWorker int64
	for _, s := range samples {
		maxChromium = max(maxChromium, s.chromium)
		maxTotal = max(maxTotal, s.workerRSS+s.chromeRSS)
		maxWorker = max(maxWorker, s.workerRSS)
		if s.zombies > 0 {
			t.Logf("%d zombies under the worker after %d jobs", s.zombies, s.jobs)
		}
	}
	if maxChromium > soakMaxChromium || final.chromium > base.chromium+4 {
		t.Errorf("chromium processes: %d at the start, at most %d, %d at the end (bound %d)", base.chromium, maxChromium, final.chromium, soakMaxChromium)
	}
	if final.goroutines > base.goroutines+25 {
		t.Errorf("goroutines: %d at the start, %d at the end", base.goroutines, final.goroutines)
	}
	// The live heap (marked by the last GC) and the allocated heap come
	// back near their baseline: a leak of a few KiB per job shows over
	// 2 000 jobs.
	if final.liveMiB > base.liveMiB*2+16 {
		t.Errorf("live Go heap: %.1f MiB at the start, %.1f MiB at the end", base.liveMiB, final.liveMiB)
	}
	if final.heapMiB > base.heapMiB*2+32 {
		t.Errorf("Go heap: %.1f MiB at the start, %.1f MiB at the end", base.heapMiB, final.heapMiB)
	}
	if maxWorker > soakMaxWorkerRSS || maxTotal > soakMaxTotalRSS {
		t.Errorf("RSS: worker at most %d MiB (bound %d), worker+Chrome at most %d MiB (bound %d)",
			maxWorker>>10, soakMaxWorkerRSS>>10, maxTotal>>10, soakMaxTotalRSS>>10)
	}
	if z := lastingZombies(e.WorkerPID(0)); len(z) > 0 {
		t.Errorf("zombies under the worker after the soak: %v", z)
	}
	e.StopWorker(0, syscall.SIGTERM)
	assertNoChromiumLeft(t, e, 0, tr)
}

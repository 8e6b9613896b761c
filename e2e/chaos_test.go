package e2e

// Fault tests: processes are killed and stopped with signals, Redis goes away
// and comes back, Chrome and its renderers crash, pages never finish. Every
// check goes through the public HTTP API, the target sites and /proc.
//
// The short versions run in `go test ./...`; PAGEFLEET_CHAOS=long (make chaos)
// repeats each fault more times and keeps Redis down longer.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// chaosLong reports whether the long versions run (make chaos).
func chaosLong() bool { return os.Getenv("PAGEFLEET_CHAOS") == "long" }

// ---------------------------------------------------------------------------
// /proc helpers

// procStat is what /proc/<pid>/stat says of a process.
type procStat struct {
	pid, ppid int
	state     byte
	comm      string
	ticks     uint64 // utime + stime, in clock ticks
	start     uint64 // start time since boot, in clock ticks (tells a reused pid apart)
}

func (p procStat) String() string {
	return fmt.Sprintf("%d(%s,%c,ppid %d)", p.pid, p.comm, p.state, p.ppid)
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+2 >= len(s) {
		return procStat{}, false
	}
	f := strings.Fields(s[end+2:])
	if len(f) < 20 {
		return procStat{}, false
	}
	ps := procStat{pid: pid, state: f[0][0], comm: s[open+1 : end]}
	ps.ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	ps.ticks = ut + st
	ps.start, _ = strconv.ParseUint(f[19], 10, 64)
	return ps, true
}

func allStats() map[int]procStat {
	out := map[int]procStat{}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if ps, ok := readStat(pid); ok {
			out[pid] = ps
		}
	}
	return out
}

// zombiesUnder returns the zombie descendants of root. A zombie has no
// command line any more, so it is found through its parent: chromiumUnder
// cannot see it.
func zombiesUnder(root int) []procStat {
	all := allStats()
	var out []procStat
	for _, ps := range all {
		if ps.state != 'Z' {
			continue
		}
		for p, hops := ps.ppid, 0; p > 1 && hops < 16; hops++ {
			if p == root {
				out = append(out, ps)
				break
			}
			p = all[p].ppid
		}
	}
	return out
}

// lastingZombies returns the zombies under root that are still there ten
// seconds later: a process that just exited is a zombie until its parent
// reaps it, and Chrome reaps its dead children only after a couple of
// seconds (longer on a busy machine).
func lastingZombies(root int) []procStat {
	first := zombiesUnder(root)
	deadline := time.Now().Add(10 * time.Second)
	for len(first) > 0 {
		var still []procStat
		for _, z := range first {
			if ps, ok := readStat(z.pid); ok && ps.state == 'Z' && ps.start == z.start {
				still = append(still, ps)
			}
		}
		if len(still) == 0 || time.Now().After(deadline) {
			return still
		}
		first = still
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// statusKB reads a "Name:   N kB" line of /proc/<pid>/status or smaps_rollup.
func statusKB(pid int, file, name string) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// procTracker remembers every chromium process of a worker it saw, so that
// after the worker stops it can tell whether any of them — zombies included —
// still exists.
type procTracker struct {
	mu   sync.Mutex
	seen map[int]uint64 // pid → start time
}

// trackChromium watches worker i's chromium processes until the test ends.
func (e *Env) trackChromium(t testing.TB, i int) *procTracker {
	tr := &procTracker{seen: map[int]uint64{}}
	dir := e.workers[i].tmp
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			tr.observe(chromiumUnder(dir))
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return tr
}

func (tr *procTracker) observe(pids []int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, pid := range pids {
		if _, ok := tr.seen[pid]; ok {
			continue
		}
		if ps, ok := readStat(pid); ok {
			tr.seen[pid] = ps.start
		}
	}
}

func (tr *procTracker) count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.seen)
}

// remaining returns the tracked processes that still exist, in any state.
func (tr *procTracker) remaining() []procStat {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []procStat
	for pid, start := range tr.seen {
		if ps, ok := readStat(pid); ok && ps.start == start {
			out = append(out, ps)
		}
	}
	return out
}

// assertNoChromiumLeft checks, after worker i stopped, that none of its
// chromium processes runs or lingers as a zombie.
func assertNoChromiumLeft(t *testing.T, e *Env, i int, tr *procTracker) {
	t.Helper()
	tr.observe(e.WorkerChromium(i))
	deadline := time.Now().Add(5 * time.Second)
	for {
		live, left := e.WorkerChromium(i), tr.remaining()
		if len(live) == 0 && len(left) == 0 {
			t.Logf("worker %d: none of the %d chromium processes seen is left", i, tr.count())
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("worker %d stopped, yet chromium processes remain: running %v, tracked and still present %v", i, live, left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// HTTP helpers that report errors instead of failing (usable off the test
// goroutine)

type apiResp struct {
	code int
	hdr  http.Header
	body []byte
	took time.Duration
}

var chaosClient = &http.Client{Timeout: 30 * time.Second}

func (e *Env) call(method, path, key string, body any) (apiResp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.APIURL+path, rd)
	if err != nil {
		return apiResp{}, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := chaosClient.Do(req)
	if err != nil {
		return apiResp{took: time.Since(start)}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return apiResp{code: resp.StatusCode, hdr: resp.Header, body: b, took: time.Since(start)}, err
}

// getJob reads a job without failing the test.
func (e *Env) getJob(key, id string) (spec.Job, error) {
	r, err := e.call("GET", "/v1/jobs/"+id, key, nil)
	if err != nil {
		return spec.Job{}, err
	}
	if r.code != 200 {
		return spec.Job{}, fmt.Errorf("get job %s: %d %s", id, r.code, r.body)
	}
	var j spec.Job
	err = json.Unmarshal(r.body, &j)
	return j, err
}

// scrape reads a Prometheus text page: the value of every series, and per
// metric name the sum over its series.
func scrape(url string) (map[string]float64, error) {
	resp, err := chaosClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		out[series] = v
		if j := strings.IndexByte(series, '{'); j >= 0 {
			out[series[:j]] += v
		}
	}
	return out, sc.Err()
}

// workerMetric reads one metric (summed over its series) of worker i.
func (e *Env) workerMetric(i int, name string) (float64, error) {
	m, err := scrape("http://" + e.WorkerAddr(i) + "/metrics")
	if err != nil {
		return 0, err
	}
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("worker %d exposes no %s", i, name)
	}
	return v, nil
}

// waitFor polls cond every 50 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hitsOf counts the site's requests of path?query.
func hitsOf(s *Site, pathQuery string) []Hit {
	var out []Hit
	for _, h := range s.Log() {
		if h.Path == pathQuery {
			out = append(out, h)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// a site that records, per job URL, the requests in flight

// spanSite serves /span?id=X&d=DUR[&then=DUR2]: it holds the request for DUR
// (DUR2 from the second request of X on; d=hold: until release(X)) or until
// the client goes away, and records each request's span and how many requests of
// the same id were in flight at once.
type spanSite struct {
	*Site
	mu      sync.Mutex
	open    map[string]int
	maxOpen map[string]int
	spans   map[string][]span
	holds   map[string]chan struct{}
}

type span struct {
	start, end time.Time
	finished   bool // served in full (not cut off by the client)
}

func newSpanSite(t testing.TB) *spanSite {
	s := &spanSite{open: map[string]int{}, maxOpen: map[string]int{}, spans: map[string][]span{}, holds: map[string]chan struct{}{}}
	s.Site = NewSite(t, map[string]http.HandlerFunc{"/span": s.serve})
	return s
}

func (s *spanSite) serve(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	d, _ := time.ParseDuration(r.URL.Query().Get("d"))
	sp := span{start: time.Now()}
	s.mu.Lock()
	if then := r.URL.Query().Get("then"); then != "" && len(s.spans[id])+s.open[id] > 0 {
		d, _ = time.ParseDuration(then) // a later attempt takes this long
	}
	if d == 0 {
		d = 5 * time.Minute
	}
	s.open[id]++
	s.maxOpen[id] = max(s.maxOpen[id], s.open[id])
	hold := s.holdLocked(id)
	s.mu.Unlock()
	if r.URL.Query().Get("d") != "hold" {
		hold = nil
	}
	select {
	case <-time.After(d):
		sp.finished = true
	case <-hold:
		sp.finished = true
	case <-r.Context().Done():
	}
	sp.end = time.Now()
	s.mu.Lock()
	s.open[id]--
	s.spans[id] = append(s.spans[id], sp)
	s.mu.Unlock()
	if sp.finished {
		html(`<html><body><p id="span">span done `+id+`</p></body></html>`)(w, r)
	}
}

func (s *spanSite) holdLocked(id string) chan struct{} {
	if s.holds[id] == nil {
		s.holds[id] = make(chan struct{})
	}
	return s.holds[id]
}

// release ends the held requests (d=hold) of id.
func (s *spanSite) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.holdLocked(id))
}

func (s *spanSite) state(id string) (open, maxOpen int, spans []span) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[id], s.maxOpen[id], append([]span(nil), s.spans[id]...)
}

// ---------------------------------------------------------------------------
// SIGKILL

// A worker is killed with SIGKILL while it runs jobs. Another worker recovers
// them once their asynq lease lapses and asynq's recoverer sees it; each job
// completes exactly once as the client sees it (one succeeded record, attempt
// 2) and as its webhook receiver sees it (one job.succeeded delivery).
func TestChaosWorkerKilled(t *testing.T) {
	t.Parallel()
	rounds := 1
	if chaosLong() {
		rounds = 3
	}
	e := Start(t, Options{Workers: 1, Concurrency: 4, Env: []string{"PAGEFLEET_WEBHOOK_RETRY_SCHEDULE=1s,2s,5s"}})
	site := newSpanSite(t)
	rcv := newReceiver(t, secretA, 0)

	type killed struct {
		id, key string
		render  bool
	}
	var all []killed
	victim := 0
	for round := 0; round < rounds; round++ {
		var batch []killed
		for i, render := range []bool{true, true, false} {
			// Long on the killed attempt, short on the next one.
			key := fmt.Sprintf("kill-r%d-n%d", round, i)
			id := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/span?d=5m&then=3s&id=" + key, "render_js": render,
				"output": []string{"html"}, "timeout_ms": 120000, "webhook": map[string]any{"url": rcv.URL + "/hook"}})
			batch = append(batch, killed{id: id, key: key, render: render})
		}
		if !waitFor(60*time.Second, func() bool {
			for _, k := range batch {
				if open, _, _ := site.state(k.key); open != 1 {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("round %d: the jobs did not start on worker %d", round, victim)
		}
		tr := e.trackChromium(t, victim)
		// The worker that recovers the jobs runs before the kill: it cannot
		// take them earlier, they are leased to the victim.
		next := e.StartWorker()
		killedAt := time.Now()
		e.StopWorker(victim, syscall.SIGKILL)
		for _, k := range batch {
			j := e.Wait(keyA, k.id, 240*time.Second)
			_, maxOpen, spans := site.state(k.key)
			if j.Status != spec.StatusSucceeded || j.Attempts != 2 || !contains(j.Result.HTML, "span done") {
				t.Errorf("round %d job %s (render %v): %s attempts %d err %+v", round, k.key, k.render, j.Status, j.Attempts, j.Error)
				continue
			}
			if len(spans) != 2 || spans[0].finished || !spans[1].finished || maxOpen != 1 {
				t.Errorf("round %d job %s: the target saw %+v (at most %d at once), want the killed attempt then the recovered one", round, k.key, spans, maxOpen)
				continue
			}
			if cut := spans[0].end.Sub(killedAt); cut > 5*time.Second {
				t.Errorf("round %d job %s: the killed attempt's request ended %s after the kill", round, k.key, cut)
			}
			recovered := spans[1].start.Sub(killedAt)
			t.Logf("round %d job %s (render %v): attempt 2 started %s after the SIGKILL, succeeded %s after it",
				round, k.key, k.render, recovered.Round(100*time.Millisecond), j.FinishedAt.Sub(killedAt).Round(100*time.Millisecond))
			// asynq: the lease lapses 30 s after the last heartbeat, the
			// recoverer takes tasks whose lease lapsed 30 s ago and runs once
			// a minute; then the retry delay (1–1.5 s) and the forwarder (1 s).
			if recovered > 150*time.Second {
				t.Errorf("round %d job %s recovered %s after the kill; the bound is about 125 s", round, k.key, recovered)
			}
			if !strings.Contains(e.WorkerLog(next), k.id) {
				t.Errorf("round %d job %s did not run on the surviving worker", round, k.key)
			}
		}
		assertNoChromiumLeft(t, e, victim, tr)
		all = append(all, batch...)
		victim = next
	}

	// Webhooks: one job.succeeded per job, one webhook-id, verified.
	// Counted once nothing can send another: no run task is left to run
	// again (each job enqueues its event while its task is active) and no
	// delivery is pending or waiting for a retry on the 1s,2s,5s schedule.
	// The killed worker's own tasks stay active in asynq until its
	// recoverer finds their lease lapsed (30 s, checked once a minute);
	// they then run, find their jobs ended and do nothing.
	e.Drain(t, 150*time.Second, rcv.attempts)
	evs, ids, rejected := rcv.snapshot()
	if rejected != 0 {
		t.Errorf("%d deliveries failed signature verification", rejected)
	}
	perJob := map[string]int{}
	for _, ev := range evs {
		data, _ := ev["data"].(map[string]any)
		id, _ := data["id"].(string)
		if ev["type"] != "job.succeeded" || data["status"] != "succeeded" {
			t.Errorf("unexpected event %v", ev)
		}
		perJob[id]++
	}
	distinct := map[string]bool{}
	for _, id := range ids {
		distinct[id] = true
	}
	if len(distinct) != len(all) {
		t.Errorf("%d distinct webhook-ids for %d jobs", len(distinct), len(all))
	}
	for _, k := range all {
		if perJob[k.id] != 1 {
			t.Errorf("job %s: %d job.succeeded deliveries, want 1", k.id, perJob[k.id])
		}
		var del struct {
			Data []map[string]any `json:"data"`
		}
		e.Do("GET", "/v1/jobs/"+k.id+"/deliveries", keyA, nil, &del)
		if len(del.Data) != 1 || del.Data[0]["status_code"] != float64(204) {
			t.Errorf("job %s deliveries = %v", k.id, del.Data)
		}
	}
	// The client sees one succeeded record per job.
	var pg struct {
		Data []spec.Job `json:"data"`
	}
	e.Do("GET", "/v1/jobs?status=succeeded&limit=1000", keyA, nil, &pg)
	listed := map[string]int{}
	for _, j := range pg.Data {
		listed[j.ID]++
	}
	for _, k := range all {
		if listed[k.id] != 1 {
			t.Errorf("job %s listed %d times as succeeded", k.id, listed[k.id])
		}
	}
}

// ---------------------------------------------------------------------------
// SIGTERM

// A worker gets SIGTERM while it runs a short job and two jobs longer than its
// grace period. It stops pulling at once, lets the short job finish, hands the
// long ones back when the grace period ends and exits soon after with no
// chromium left; another worker completes the long jobs. No job ever runs on
// two workers at the same time.
func TestChaosWorkerSIGTERM(t *testing.T) {
	const handBack = 3 * time.Second // worker.HandBackTime
	t.Parallel()
	const grace = 8 * time.Second
	rounds := 1
	if chaosLong() {
		rounds = 3
	}
	e := Start(t, Options{Workers: 1, Concurrency: 4, Env: []string{"PAGEFLEET_SHUTDOWN_TIMEOUT=" + grace.String()}})
	site := newSpanSite(t)

	type job struct {
		id, key string
		render  bool
		long    bool
	}
	victim := 0
	var everything []string
	for round := 0; round < rounds; round++ {
		var jobs []job
		add := func(name string, d time.Duration, render, long bool) {
			key := fmt.Sprintf("r%d-%s", round, name)
			id := e.Submit(keyA, "fetch", map[string]any{"url": fmt.Sprintf("%s/span?id=%s&d=%s&then=1s", site.URL, key, dur(d)),
				"render_js": render, "timeout_ms": 60000})
			jobs = append(jobs, job{id: id, key: key, render: render, long: long})
			everything = append(everything, key)
		}
		add("short", 0, true, false) // held until released during the grace period
		add("long", 2*time.Minute, true, true)
		add("long-plain", 2*time.Minute, false, true)
		if !waitFor(60*time.Second, func() bool {
			for _, j := range jobs {
				if open, _, _ := site.state(j.key); open != 1 {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("round %d: the jobs did not all start on worker %d", round, victim)
		}
		tr := e.trackChromium(t, victim)
		// The next worker runs before the stop, as in a rolling deploy: it
		// takes what the stopping worker hands back at once, so a handler
		// that went on after its hand-back would overlap with it.
		next := e.StartWorker()
		sigAt := time.Now()
		exited := make(chan time.Duration, 1)
		go func() {
			e.StopWorker(victim, syscall.SIGTERM)
			exited <- time.Since(sigAt)
		}()
		if !waitFor(10*time.Second, func() bool { return strings.Contains(e.WorkerLog(victim), "stopping: no new jobs") }) {
			t.Fatalf("worker %d did not start stopping", victim)
		}
		// The short job ends during the grace period.
		site.release(fmt.Sprintf("r%d-short", round))
		// A job submitted now must not run on the stopping worker, which
		// has free slots.
		lateKey := fmt.Sprintf("r%d-late", round)
		late := e.Submit(keyA, "fetch", map[string]any{"url": fmt.Sprintf("%s/span?id=%s&d=10ms", site.URL, lateKey)})
		everything = append(everything, lateKey)
		var took time.Duration
		select {
		case took = <-exited:
		case <-time.After(grace + 45*time.Second):
			t.Fatalf("worker %d still running %s after SIGTERM", victim, grace+45*time.Second)
		}
		t.Logf("round %d: worker exited %s after SIGTERM (grace %s)", round, took.Round(100*time.Millisecond), grace)
		if took > grace+15*time.Second {
			t.Errorf("round %d: the worker took %s to exit; grace is %s", round, took, grace)
		}
		vlog := e.WorkerLog(victim)
		if os.Getenv("CHAOS_DEBUG") != "" {
			for _, l := range strings.Split(vlog, "\n") {
				if strings.Contains(l, "handed back") || strings.Contains(l, "stopping") || strings.Contains(l, "Quitting") || strings.Contains(l, "stopped") || strings.Contains(l, "job ") {
					t.Log(l)
				}
			}
			t.Logf("SIGTERM at %s", sigAt.UTC().Format(time.RFC3339Nano))
		}
		if strings.Contains(vlog, late) {
			t.Errorf("round %d: the stopping worker took a job submitted after SIGTERM", round)
		}
		for _, j := range jobs {
			_, _, spans := site.state(j.key)
			sort.Slice(spans, func(a, b int) bool { return spans[a].start.Before(spans[b].start) })
			if !j.long {
				// In flight and shorter than the grace period: it finished there.
				got, err := e.getJob(keyA, j.id)
				if err != nil || got.Status != spec.StatusSucceeded || got.Attempts != 1 || len(spans) != 1 || !strings.Contains(vlog, j.id) {
					t.Errorf("round %d %s: %s attempts %d err %v, %d requests (ran on the stopping worker: %v)",
						round, j.key, got.Status, got.Attempts, err, len(spans), strings.Contains(vlog, j.id))
				}
				continue
			}
			// Longer than the grace period: its attempt was stopped (the
			// handler honoured ctx) when the grace period ended.
			if len(spans) == 0 || spans[0].finished {
				t.Errorf("round %d %s: spans on the target after the stop = %+v, want a cut-off request first", round, j.key, spans)
				continue
			}
			cut := spans[0].end.Sub(sigAt)
			t.Logf("round %d %s: its request was cut off %s after SIGTERM", round, j.key, cut.Round(100*time.Millisecond))
			if cut < grace-time.Second || cut > grace+handBack {
				t.Errorf("round %d %s: the attempt ended %s after SIGTERM; the grace period is %s", round, j.key, cut, grace)
			}
		}
		assertNoChromiumLeft(t, e, victim, tr)

		for _, j := range append(jobs, job{id: late, key: lateKey}) {
			if !j.long && j.key != lateKey {
				continue
			}
			got := e.Wait(keyA, j.id, 120*time.Second)
			if _, _, spans := site.state(j.key); j.long && len(spans) == 2 {
				sort.Slice(spans, func(a, b int) bool { return spans[a].start.Before(spans[b].start) })
				t.Logf("round %d %s: the next attempt started %s after the handed-back one ended", round, j.key, spans[1].start.Sub(spans[0].end).Round(time.Millisecond))
			}
			if got.Status != spec.StatusSucceeded || !strings.Contains(e.WorkerLog(next), j.id) {
				t.Errorf("round %d %s: %s %+v (ran on the next worker: %v)", round, j.key, got.Status, got.Error, strings.Contains(e.WorkerLog(next), j.id))
			}
			if j.long && got.Attempts != 1 {
				// A hand-back at shutdown is no failed attempt.
				t.Errorf("round %d %s: attempts %d after a hand-back, want 1", round, j.key, got.Attempts)
			}
		}
		victim = next
	}
	// No job ran twice at the same time, and every job's requests are in
	// order: the handed-back attempt ended before the next one started.
	for _, key := range everything {
		_, maxOpen, spans := site.state(key)
		if maxOpen != 1 {
			t.Errorf("%s: %d requests in flight at once", key, maxOpen)
		}
		sort.Slice(spans, func(a, b int) bool { return spans[a].start.Before(spans[b].start) })
		for i := 1; i < len(spans); i++ {
			if spans[i].start.Before(spans[i-1].end) {
				t.Errorf("%s: attempt %d started before attempt %d ended", key, i+1, i)
			}
		}
	}
}

// dur formats d for a /span URL; 0 is "hold".
func dur(d time.Duration) string {
	if d == 0 {
		return "hold"
	}
	return d.String()
}

// ---------------------------------------------------------------------------
// Redis restart

// Redis (AOF on) goes away and comes back on the same port and data
// directory. While it is down, /readyz says so and API requests answer 503
// problem+json at once; afterwards finished jobs, results, sessions, batches
// and queued jobs are all there, and the same API and worker processes carry
// on by themselves: the job that was running and the queued ones complete,
// waits wake, and cancels reach running jobs.
func TestChaosRedisRestart(t *testing.T) {
	t.Parallel()
	type outage struct {
		down  time.Duration
		crash bool // SIGKILL instead of a clean stop
	}
	outages := []outage{{down: 5 * time.Second}}
	if chaosLong() {
		// 40 s is longer than asynq's 30 s task lease: the running job's
		// lease lapses and asynq's recoverer brings it back.
		outages = []outage{{down: 10 * time.Second}, {down: 20 * time.Second, crash: true}, {down: 40 * time.Second}}
	}
	e := Start(t, Options{Workers: 1, Concurrency: 1})
	cancelled := make(chan time.Time, 1)
	site := NewSite(t, map[string]http.HandlerFunc{
		"/setcookie": func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "keep", Value: "v1", Path: "/", MaxAge: 3600})
			html(`<html><body>set</body></html>`)(w, r)
		},
		"/show": func(w http.ResponseWriter, r *http.Request) {
			c, _ := r.Cookie("keep")
			v := "none"
			if c != nil {
				v = c.Value
			}
			html(`<html><body>keep=`+v+`</body></html>`)(w, r)
		},
		"/cancelme": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(60 * time.Second):
			case <-r.Context().Done():
				cancelled <- time.Now()
				return
			}
			html(`<html><body>not cancelled</body></html>`)(w, r)
		},
	})
	workerPID := e.WorkerPID(0)

	// What must survive: a finished job with its result, a session, a batch.
	done := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/plain", "output": []string{"html", "markdown"}})
	if done.Status != spec.StatusSucceeded {
		t.Fatalf("setup job: %s %+v", done.Status, done.Error)
	}
	if j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/setcookie", "session": map[string]string{"id": "survivor"}}); j.Status != spec.StatusSucceeded {
		t.Fatalf("session job: %s %+v", j.Status, j.Error)
	}
	batchID := ""
	if r, err := e.call("POST", "/v1/batches", keyA, map[string]any{"urls": []string{site.URL + "/plain?b=1", site.URL + "/plain?b=2"}}); err == nil && r.code == http.StatusAccepted {
		var b struct {
			ID string `json:"id"`
		}
		json.Unmarshal(r.body, &b)
		batchID = b.ID
	} else {
		t.Logf("no batch API here (POST /v1/batches: %d %v): the batch part is skipped", r.code, err)
	}

	for n, o := range outages {
		// One job runs (the worker runs one at a time) and five wait.
		slow := fmt.Sprintf("/slow?d=3s&outage=%d", n)
		running := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + slow})
		if !waitFor(30*time.Second, func() bool { return len(hitsOf(site, slow)) > 0 }) {
			t.Fatalf("outage %d: the slow job did not start", n)
		}
		var queued []string
		for i := 0; i < 5; i++ {
			queued = append(queued, e.Submit(keyA, "fetch", map[string]any{"url": fmt.Sprintf("%s/plain?outage=%d&q=%d", site.URL, n, i)}))
		}
		if o.crash {
			e.Redis.Kill()
		} else {
			e.Redis.Stop()
		}
		downAt := time.Now()

		for _, u := range []string{e.APIURL + "/readyz", "http://" + e.WorkerAddr(0) + "/readyz"} {
			var code int
			var took time.Duration
			if !waitFor(5*time.Second, func() bool {
				start := time.Now()
				resp, err := chaosClient.Get(u)
				took = time.Since(start)
				if err != nil {
					return false
				}
				resp.Body.Close()
				code = resp.StatusCode
				return code == http.StatusServiceUnavailable
			}) {
				t.Errorf("outage %d: %s = %d while Redis is down", n, u, code)
			} else if took > 5*time.Second {
				t.Errorf("outage %d: %s took %s", n, u, took)
			}
		}
		requests := []struct {
			method, path string
			body         any
		}{
			{"POST", "/v1/fetch", map[string]any{"url": site.URL + "/plain?during=1"}},
			{"POST", "/v1/fetch?wait=10s", map[string]any{"url": site.URL + "/plain?during=2"}},
			{"GET", "/v1/jobs/" + done.ID, nil},
			{"GET", "/v1/jobs/" + queued[4] + "?wait=10s", nil},
			{"GET", "/v1/jobs?limit=5", nil},
			{"DELETE", "/v1/jobs/" + queued[4], nil},
			{"GET", "/v1/sessions/survivor", nil},
		}
		for len(requests) > 0 {
			q := requests[0]
			requests = requests[1:]
			r, err := e.call(q.method, q.path, keyA, q.body)
			switch {
			case err != nil:
				t.Errorf("outage %d: %s %s during the outage: %v after %s", n, q.method, q.path, err, r.took)
			case r.code != http.StatusServiceUnavailable || r.hdr.Get("Content-Type") != "application/problem+json" || r.hdr.Get("Retry-After") == "":
				t.Errorf("outage %d: %s %s during the outage: %d %s Retry-After %q %s", n, q.method, q.path, r.code, r.hdr.Get("Content-Type"), r.hdr.Get("Retry-After"), r.body)
			case r.took > 5*time.Second:
				t.Errorf("outage %d: %s %s took %s to answer 503", n, q.method, q.path, r.took)
			}
		}
		// Redis stays down for the outage's length: what it tests.
		time.Sleep(time.Until(downAt.Add(o.down)))
		e.Redis.Restart(t)
		upAt := time.Now()

		for _, u := range []string{e.APIURL + "/readyz", "http://" + e.WorkerAddr(0) + "/readyz"} {
			if !waitFor(30*time.Second, func() bool {
				resp, err := chaosClient.Get(u)
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			}) {
				t.Fatalf("outage %d: %s not ready 30 s after Redis came back", n, u)
			}
			t.Logf("outage %d (%s, crash %v): %s ready %s after Redis came back", n, o.down, o.crash, u, time.Since(upAt).Round(10*time.Millisecond))
		}

		// Everything is still there.
		if j, err := e.getJob(keyA, done.ID); err != nil || j.Status != spec.StatusSucceeded || !contains(j.Result.HTML, "plain body") || j.Result.Markdown == nil {
			t.Errorf("outage %d: the finished job after the restart: %+v %v", n, j, err)
		}
		var sess struct {
			State struct {
				Cookies []map[string]any `json:"cookies"`
			} `json:"state"`
		}
		if resp := e.Do("GET", "/v1/sessions/survivor?include=state", keyA, nil, &sess); resp.StatusCode != 200 || len(sess.State.Cookies) != 1 || sess.State.Cookies[0]["value"] != "v1" {
			t.Errorf("outage %d: the session after the restart: %d %+v", n, resp.StatusCode, sess.State.Cookies)
		}
		if batchID != "" {
			var b map[string]any
			if resp := e.Do("GET", "/v1/batches/"+batchID, keyA, nil, &b); resp.StatusCode != 200 || b["total"] != float64(2) {
				t.Errorf("outage %d: the batch after the restart: %d %v", n, resp.StatusCode, b)
			}
		}
		// The running job and the queued ones complete, on the same worker
		// process, which reconnected by itself.
		for _, id := range append([]string{running}, queued...) {
			j := e.Wait(keyA, id, 200*time.Second)
			if j.Status != spec.StatusSucceeded {
				t.Errorf("outage %d: job %s after the restart: %s attempts %d %+v", n, id, j.Status, j.Attempts, j.Error)
			}
			if !strings.Contains(e.WorkerLog(0), id) {
				t.Errorf("outage %d: job %s did not run on the worker that lived through the outage", n, id)
			}
		}
		took := time.Since(upAt)
		t.Logf("outage %d: the job that was running and the 5 queued ones completed %s after Redis came back", n, took.Round(100*time.Millisecond))
		// Shorter than the 30 s task lease, an outage costs no more than
		// itself: the job that ended during it keeps its outcome. Longer, the
		// lease lapses and asynq's recoverer brings the job back (≤ 2 min).
		if bound := 30 * time.Second; (o.down < 20*time.Second && took > bound) || took > 150*time.Second {
			t.Errorf("outage %d (%s): the jobs took %s after Redis came back", n, o.down, took)
		}
	}
	if e.WorkerPID(0) != workerPID {
		t.Fatal("the worker was replaced")
	}
	if os.Getenv("CHAOS_DEBUG") != "" {
		t.Log(e.WorkerLog(0))
	}
	if batchID != "" {
		var b map[string]any
		waitFor(60*time.Second, func() bool {
			e.Do("GET", "/v1/batches/"+batchID, keyA, nil, &b)
			return b["status"] == "completed"
		})
		if b["status"] != "completed" || b["succeeded"] != float64(2) {
			t.Errorf("the batch after the outages: %v", b)
		}
	}

	// The API's notification subscription came back: ?wait= answers as soon
	// as the job ends.
	var j spec.Job
	start := time.Now()
	if resp := e.Do("POST", "/v1/fetch?wait=30s", keyA, map[string]any{"url": site.URL + "/plain?after=1"}, &j); resp.StatusCode != 200 || j.Status != spec.StatusSucceeded {
		t.Errorf("submit and wait after the outages: %d %s", resp.StatusCode, j.Status)
	}
	t.Logf("submit with ?wait= after the outages answered in %s", time.Since(start).Round(time.Millisecond))
	// A session job still sends the session's cookie.
	if j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/show", "session": map[string]string{"id": "survivor"}}); !contains(j.Result.HTML, "keep=v1") {
		t.Errorf("the session's cookie after the outages: %s %+v", j.Status, j.Error)
	}
	// The worker's cancel subscription came back: a cancel stops a running
	// job.
	id := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/cancelme", "render_js": true})
	if !waitFor(30*time.Second, func() bool { return site.Hits("/cancelme") > 0 }) {
		t.Fatal("the job to cancel did not start")
	}
	cancelAt := time.Now()
	if resp := e.Do("DELETE", "/v1/jobs/"+id, keyA, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("cancel after the outages: %d", resp.StatusCode)
	}
	select {
	case at := <-cancelled:
		t.Logf("a cancel stopped the running job %s after the request", at.Sub(cancelAt).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Errorf("a cancel after the outages did not reach the running job")
	}
	if j := e.Wait(keyA, id, 30*time.Second); j.Status != spec.StatusCancelled {
		t.Errorf("cancelled job: %s", j.Status)
	}
}

// ---------------------------------------------------------------------------
// Chrome crashes and pages that never finish

// renderersOf lists the page renderer processes of worker i.
func (e *Env) renderersOf(i int) []int {
	var out []int
	for _, pid := range e.WorkerChromium(i) {
		cl := readCmdline(pid)
		if strings.Contains(cl, "--type=renderer") && !strings.Contains(cl, "--top-chrome-webui") && !strings.Contains(cl, "--extension-process") {
			out = append(out, pid)
		}
	}
	return out
}

// busiestRenderer returns worker i's renderer that burns the most CPU over
// three seconds, how many clock ticks it burnt, and how many the runner-up
// burnt. (The machine may be busy: a spinning renderer does not get a whole
// core.)
func (e *Env) busiestRenderer(i int) (pid int, most, second uint64) {
	before := map[int]uint64{}
	for _, pid := range e.renderersOf(i) {
		if ps, ok := readStat(pid); ok {
			before[pid] = ps.ticks
		}
	}
	time.Sleep(3 * time.Second) // the measuring window: CPU ticks burnt in it
	for p, t0 := range before {
		ps, ok := readStat(p)
		if !ok {
			continue
		}
		switch d := ps.ticks - t0; {
		case d > most:
			pid, most, second = p, d, most
		case d > second:
			second = d
		}
	}
	return pid, most, second
}

// attemptDurations returns how long each attempt of job id ran, from worker
// log text: from "job started" to the line that ended the attempt.
func attemptDurations(log, id string) []time.Duration {
	var out []time.Duration
	var start time.Time
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, id) {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		switch rec.Msg {
		case "job started":
			start = rec.Time
		case "job attempt failed; will retry", "job failed", "job succeeded":
			if !start.IsZero() {
				out = append(out, rec.Time.Sub(start))
				start = time.Time{}
			}
		}
	}
	return out
}

// attemptLog returns worker i's "will retry" log lines of job id.
func attemptLog(log, id string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, id) && strings.Contains(l, "will retry") {
			out = append(out, l)
		}
	}
	return out
}

// Chrome's renderer is killed under a job, the browser process is killed
// under a job, every renderer (the warm spare tabs' too) is killed while the
// worker idles, and pages never finish loading: each job fails or retries
// within its timeout, crashes are reported as crashes, the pool replaces the
// browser, nothing is left as a zombie while the worker runs, and no
// chromium process remains after it stops.
func TestChaosChromeCrashes(t *testing.T) {
	t.Parallel()
	rounds := 1
	if chaosLong() {
		rounds = 3
	}
	e := Start(t, Options{Workers: 1, Concurrency: 2})
	tr := e.trackChromium(t, 0)
	workerPID := e.WorkerPID(0)
	quit := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	spans := map[string][]span{}
	first := func(r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		id := r.URL.Path + r.URL.Query().Get("id")
		seen[id]++
		return seen[id] == 1
	}
	hold := func(w http.ResponseWriter, r *http.Request) {
		sp := span{start: time.Now()}
		select {
		case <-r.Context().Done():
		case <-quit:
		}
		sp.end = time.Now()
		mu.Lock()
		spans[r.URL.Path+r.URL.Query().Get("id")] = append(spans[r.URL.Path+r.URL.Query().Get("id")], sp)
		mu.Unlock()
	}
	site := NewSite(t, map[string]http.HandlerFunc{
		// The first visit spins forever in script; later ones are plain.
		"/spin": func(w http.ResponseWriter, r *http.Request) {
			if first(r) {
				html(`<html><body><p>spinning</p><script>for (;;) {}</script></body></html>`)(w, r)
				return
			}
			html(`<html><body><p>spin done</p></body></html>`)(w, r)
		},
		// The first visit hangs until the client goes away; later ones are plain.
		"/once": func(w http.ResponseWriter, r *http.Request) {
			if first(r) {
				hold(w, r)
				return
			}
			html(`<html><body><p>once done</p></body></html>`)(w, r)
		},
		// Headers and the start of a body, then nothing more, ever.
		"/hang": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(200)
			w.Write([]byte("<html><body><p>the rest never comes"))
			w.(http.Flusher).Flush()
			hold(w, r)
		},
		// Not even headers.
		"/silent": hold,
	})
	t.Cleanup(func() { close(quit) }) // before the site closes

	noZombies := func(when string) {
		t.Helper()
		if z := lastingZombies(workerPID); len(z) > 0 {
			t.Errorf("%s: zombie processes under the worker (pid %d): %v", when, workerPID, z)
			if os.Getenv("CHAOS_DEBUG") != "" {
				for _, l := range strings.Split(e.WorkerLog(0), "\n") {
					if strings.Contains(l, "browser") && !strings.Contains(l, "job rendered") {
						t.Log("  " + l)
					}
				}
			}
		}
	}
	restarts := func() float64 {
		m, err := scrape("http://" + e.WorkerAddr(0) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return m[`pagefleet_browser_restarts_total{reason="crashed"}`]
	}

	for round := 0; round < rounds; round++ {
		t.Run(fmt.Sprintf("renderer killed/%d", round), func(t *testing.T) {
			const timeout = 40 * time.Second
			key := fmt.Sprintf("r%d", round)
			id := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/spin?id=" + key, "render_js": true, "timeout_ms": timeout.Milliseconds()})
			if !waitFor(30*time.Second, func() bool { return len(hitsOf(site, "/spin?id="+key)) == 1 }) {
				t.Fatal("the job did not load the page")
			}
			var pid int
			var ticks, second uint64
			spinning := func() bool { return ticks >= 5 && ticks >= 3*second+1 }
			waitFor(20*time.Second, func() bool { pid, ticks, second = e.busiestRenderer(0); return spinning() })
			if !spinning() {
				for _, p := range e.WorkerChromium(0) {
					ps, _ := readStat(p)
					cl := readCmdline(p)
					t.Logf("  %v ticks %d: %.150s", ps, ps.ticks, cl)
				}
				t.Fatalf("found no renderer spinning in the page's script (busiest %d: %d ticks in 3 s, the next %d)", pid, ticks, second)
			}
			killAt := time.Now()
			syscall.Kill(pid, syscall.SIGKILL)
			j := e.Wait(keyA, id, 90*time.Second)
			hits := hitsOf(site, "/spin?id="+key)
			if j.Status != spec.StatusSucceeded || j.Attempts != 2 || !contains(j.Result.HTML, "spin done") || len(hits) != 2 {
				t.Fatalf("after the renderer crash: %s attempts %d %+v, %d visits", j.Status, j.Attempts, j.Error, len(hits))
			}
			retried := hits[1].At.Sub(killAt)
			t.Logf("renderer %d killed (it burnt %d ticks in 3 s, the next renderer %d): attempt 2 loaded the page %s later", pid, ticks, second, retried.Round(10*time.Millisecond))
			if retried > timeout {
				t.Errorf("attempt 2 came %s after the crash; the job's timeout is %s", retried, timeout)
			}
			if l := attemptLog(e.WorkerLog(0), id); len(l) != 1 || !strings.Contains(l[0], spec.CodeBrowserCrashed) {
				t.Errorf("the crashed attempt was not reported as %s: %q", spec.CodeBrowserCrashed, l)
			}
			noZombies("after the renderer kill")
		})

		t.Run(fmt.Sprintf("browser killed/%d", round), func(t *testing.T) {
			const timeout = 30 * time.Second
			before := restarts()
			key := fmt.Sprintf("b%d", round)
			id := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/once?id=" + key, "render_js": true, "timeout_ms": timeout.Milliseconds()})
			if !waitFor(30*time.Second, func() bool { return len(hitsOf(site, "/once?id="+key)) == 1 }) {
				t.Fatal("the job did not load the page")
			}
			var browsers []procStat
			for _, pid := range e.WorkerChromium(0) {
				if ps, ok := readStat(pid); ok && isBrowserProcess(pid) && ps.ppid == workerPID {
					browsers = append(browsers, ps)
				}
			}
			if len(browsers) != 1 {
				t.Fatalf("want one browser process under the worker, found %v", browsers)
			}
			killAt := time.Now()
			syscall.Kill(browsers[0].pid, syscall.SIGKILL)
			j := e.Wait(keyA, id, 90*time.Second)
			hits := hitsOf(site, "/once?id="+key)
			if j.Status != spec.StatusSucceeded || j.Attempts != 2 || !contains(j.Result.HTML, "once done") || len(hits) != 2 {
				t.Fatalf("after the browser kill: %s attempts %d %+v, %d visits", j.Status, j.Attempts, j.Error, len(hits))
			}
			t.Logf("browser %d killed: attempt 2 loaded the page %s later", browsers[0].pid, hits[1].At.Sub(killAt).Round(10*time.Millisecond))
			if d := hits[1].At.Sub(killAt); d > timeout {
				t.Errorf("attempt 2 came %s after the crash; the job's timeout is %s", d, timeout)
			}
			if l := attemptLog(e.WorkerLog(0), id); len(l) != 1 || !strings.Contains(l[0], spec.CodeBrowserCrashed) {
				t.Errorf("the crashed attempt was not reported as %s: %q", spec.CodeBrowserCrashed, l)
			}
			// The pool replaced the browser, and the worker reaped the dead one.
			if !waitFor(30*time.Second, func() bool { return restarts() == before+1 }) {
				t.Errorf("browser restarts (crashed) %v → %v", before, restarts())
			}
			if n, err := e.workerMetric(0, "pagefleet_browser_pool_size"); err != nil || n != 1 {
				t.Errorf("pool size after the crash: %v %v", n, err)
			}
			if !waitFor(5*time.Second, func() bool {
				ps, ok := readStat(browsers[0].pid)
				return !ok || ps.start != browsers[0].start
			}) {
				ps, _ := readStat(browsers[0].pid)
				t.Errorf("the killed browser process is still there: %v", ps)
			}
			noZombies("after the browser kill")
		})
	}

	t.Run("every renderer killed while idle", func(t *testing.T) {
		rs := e.renderersOf(0)
		if len(rs) == 0 {
			t.Fatal("no renderer to kill")
		}
		var killed []procStat
		for _, pid := range rs {
			if ps, ok := readStat(pid); ok {
				killed = append(killed, ps)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		}
		// Every renderer is dead (gone, or a zombie not yet reaped) before
		// the jobs are submitted.
		if !waitFor(10*time.Second, func() bool {
			for _, k := range killed {
				if ps, ok := readStat(k.pid); ok && ps.start == k.start && ps.state != 'Z' {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("the killed renderers %v are still running", killed)
		}
		// The warm tabs died with their renderers: the next jobs must not
		// get a dead one.
		var ids []string
		for i := 0; i < 3; i++ {
			ids = append(ids, e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/js?after-kill=" + itoa(i), "render_js": true}))
		}
		for _, id := range ids {
			if j := e.Wait(keyA, id, 60*time.Second); j.Status != spec.StatusSucceeded || !contains(j.Result.HTML, "rendered-by-javascript") {
				t.Errorf("job after the renderers died: %s attempts %d %+v", j.Status, j.Attempts, j.Error)
			} else if j.Attempts != 1 {
				t.Logf("job after the renderers died needed %d attempts", j.Attempts)
			}
		}
		noZombies("after killing every renderer")
	})

	t.Run("pages that never finish", func(t *testing.T) {
		const timeout = 4 * time.Second
		const slack = 3 * time.Second
		type never struct {
			path   string
			render bool
		}
		cases := []never{{"/hang?id=render", true}, {"/hang?id=plain", false}, {"/silent?id=render", true}, {"/silent?id=plain", false}}
		ids := make([]string, len(cases))
		for i, c := range cases {
			ids[i] = e.Submit(keyA, "fetch", map[string]any{"url": site.URL + c.path, "render_js": c.render, "timeout_ms": timeout.Milliseconds()})
		}
		for i, c := range cases {
			j := e.Wait(keyA, ids[i], 120*time.Second)
			if j.Status != spec.StatusFailed || j.Error == nil || (j.Error.Code != spec.CodeNavigationTimeout && j.Error.Code != spec.CodeTimeout) || j.Attempts != 3 {
				t.Errorf("%s (render %v): %s attempts %d %+v", c.path, c.render, j.Status, j.Attempts, j.Error)
				continue
			}
			// The worker logs the attempt's end just after it writes it.
			waitFor(5*time.Second, func() bool { return len(attemptDurations(e.WorkerLog(0), ids[i])) >= j.Attempts })
			mu.Lock()
			ss := append([]span(nil), spans[strings.Replace(c.path, "?id=", "", 1)]...)
			mu.Unlock()
			var longest, held time.Duration
			for _, d := range attemptDurations(e.WorkerLog(0), ids[i]) {
				longest = max(longest, d)
			}
			for _, s := range ss {
				held = max(held, s.end.Sub(s.start))
			}
			t.Logf("%s (render %v): %s after %d attempts, the longest %s; the target held a request at most %s; %s from the first start to the end",
				c.path, c.render, j.Error.Code, j.Attempts, longest.Round(10*time.Millisecond), held.Round(10*time.Millisecond), j.FinishedAt.Sub(*j.StartedAt).Round(100*time.Millisecond))
			if os.Getenv("CHAOS_DEBUG") != "" {
				for _, s := range ss {
					t.Logf("  span %s → %s", s.start.Format("15:04:05.000"), s.end.Format("15:04:05.000"))
				}
				for _, l := range strings.Split(e.WorkerLog(0), "\n") {
					if strings.Contains(l, ids[i]) {
						t.Log("  " + l)
					}
				}
			}
			// Each attempt ends within the job's timeout, and lets go of the
			// target. (On a busy machine a rendered attempt may time out
			// before its request reaches the target.)
			if n := len(attemptDurations(e.WorkerLog(0), ids[i])); n != 3 || longest > timeout+slack {
				t.Errorf("%s (render %v): %d attempts logged, the longest %s; timeout %s", c.path, c.render, n, longest, timeout)
			}
			if len(ss) > 3 || held > timeout+slack {
				t.Errorf("%s (render %v): %d requests on the target, one held %s; timeout %s", c.path, c.render, len(ss), held, timeout)
			}
		}
		noZombies("after the timeouts")
		// The pool still works.
		if j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/js", "render_js": true}); j.Status != spec.StatusSucceeded {
			t.Errorf("a job after the faults: %s %+v", j.Status, j.Error)
		}
	})

	e.StopWorker(0, syscall.SIGTERM)
	assertNoChromiumLeft(t, e, 0, tr)
}

// Package e2e tests pagefleet end to end through its public HTTP API: the
// real api and worker binaries, a real redis-server and real Chromium, with
// local httptest sites as targets.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/proctest"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pagefleet-e2e-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	if err := proctest.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	keyA = "pf_test_tenant_a_key"
	keyB = "pf_test_tenant_b_key"
	keyF = "pf_test_tenant_free_key"
)

// Env is one running pagefleet: Redis, an API and any number of workers.
type Env struct {
	t       testing.TB
	Redis   *redistest.Server
	DB      int
	APIURL  string
	dir     string
	env     []string
	mu      sync.Mutex
	api     *proc
	workers []*proc
}

// proc is a running api or worker.
type proc struct {
	*proctest.Proc
	tmp string // a worker's TMPDIR (its Chrome profiles)
}

// Options shape an Env.
type Options struct {
	Workers     int
	Concurrency int
	Env         []string // extra KEY=VALUE
	// Tenants, when set, is the whole tenants file (YAML) in place of the
	// default one (tenants acme, globex and freebie).
	Tenants string
}

func freeAddr(t testing.TB) string {
	addr, err := proctest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Start starts Redis, the API and opts.Workers workers.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 4
	}
	e := &Env{t: t, Redis: redistest.Start(t), dir: t.TempDir()}
	tenants := filepath.Join(e.dir, "tenants.yaml")
	tenantsYAML := opts.Tenants
	if tenantsYAML == "" {
		tenantsYAML = fmt.Sprintf(`tenants:
  - id: acme
    plan: pro
    api_keys: [%q]
    webhook_secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    # Tests submit in bursts; limits are tested with tenants of their own.
    limits: { requests_per_second: 100000, queued_jobs: 1000000 }
  - id: globex
    plan: enterprise
    api_keys: ["sha256:%x"]
    limits: { requests_per_second: 100000, queued_jobs: 1000000 }
    webhook_secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
  - id: freebie
    plan: free
    api_keys: [%q]
`, keyA, sha(keyB), keyF)
	}
	if err := os.WriteFile(tenants, []byte(tenantsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	e.env = append([]string{
		"PAGEFLEET_REDIS_URL=" + e.Redis.URL(0),
		"PAGEFLEET_TENANTS_FILE=" + tenants,
		"PAGEFLEET_ALLOW_PRIVATE_NETWORKS=true",
		"PAGEFLEET_WORKER_CONCURRENCY=" + strconv.Itoa(opts.Concurrency),
		"PAGEFLEET_LOG_FORMAT=json",
		"PAGEFLEET_SHUTDOWN_TIMEOUT=10s",
		// One artifact store for the API and every worker (each worker
		// has a TMPDIR of its own, so the default would not be shared).
		"PAGEFLEET_ARTIFACTS_URL=file://" + filepath.Join(e.dir, "artifacts"),
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
	}, opts.Env...)
	e.StartAPI()
	for i := 0; i < opts.Workers; i++ {
		e.StartWorker()
	}
	t.Cleanup(e.stopAll)
	return e
}

func (e *Env) start(name, bin string, extra ...string) *proc {
	e.t.Helper()
	addr := freeAddr(e.t)
	p := &proc{}
	env := append([]string{}, e.env...)
	if bin == "api" {
		env = append(env, "PAGEFLEET_API_ADDR="+addr)
	} else {
		// Each worker gets its own TMPDIR, so the Chrome profiles it makes
		// (and any process left behind) can be found by path.
		// A short path: Chrome's socket paths under it must stay within
		// the 108 bytes a Unix socket name may have, whatever the test's name.
		tmp, err := os.MkdirTemp("", "pfw")
		if err != nil {
			e.t.Fatal(err)
		}
		p.tmp = tmp
		env = append(env, "PAGEFLEET_WORKER_ADDR="+addr, "TMPDIR="+p.tmp)
	}
	var err error
	p.Proc, err = proctest.Start(proctest.Options{Name: name, Bin: filepath.Join(binDir, bin), Env: append(env, extra...), Addr: addr})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// logText is everything the process logged so far ("" for none).
func (p *proc) logText() string {
	if p == nil || p.Proc == nil {
		return ""
	}
	return p.Log()
}

// StartAPI starts (or restarts) the API process.
func (e *Env) StartAPI() {
	e.api = e.start("api", "api")
	e.APIURL = "http://" + e.api.Addr
}

// StartWorker starts one more worker and returns its index.
func (e *Env) StartWorker(extra ...string) int {
	p := e.start(fmt.Sprintf("worker%d", len(e.workers)), "worker", extra...)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.workers = append(e.workers, p)
	return len(e.workers) - 1
}

// WorkerPID is the process id of worker i.
func (e *Env) WorkerPID(i int) int { return e.workers[i].PID() }

// WorkerMetricsURL is worker i's metrics address.
func (e *Env) WorkerAddr(i int) string { return e.workers[i].Addr }

// StopAPI stops the API with SIGTERM.
func (e *Env) StopAPI() { stopProc(e.t, e.api, syscall.SIGTERM) }

// KillAPI kills the API with SIGKILL.
func (e *Env) KillAPI() { stopProc(e.t, e.api, syscall.SIGKILL) }

// StopWorker stops worker i with sig and waits for it.
func (e *Env) StopWorker(i int, sig syscall.Signal) { stopProc(e.t, e.workers[i], sig) }

// WorkerLog returns worker i's log.
func (e *Env) WorkerLog(i int) string { return e.workers[i].logText() }

// stopProc sends sig to p and waits for it (a test error past 40 s, and
// then the group is killed).
func stopProc(t testing.TB, p *proc, sig syscall.Signal) {
	if p == nil || p.Proc == nil {
		return
	}
	if err := p.Stop(sig, 40*time.Second); err != nil {
		t.Error(err)
	}
}

func (e *Env) stopAll() {
	for _, w := range e.workers {
		stopProc(e.t, w, syscall.SIGTERM)
	}
	stopProc(e.t, e.api, syscall.SIGTERM)
	if e.t.Failed() {
		for _, w := range e.workers {
			e.t.Logf("%s log (tail):\n%s", w.Name, tail(w.logText(), 4000))
		}
		if e.api != nil {
			e.t.Logf("api log (tail):\n%s", tail(e.api.logText(), 3000))
		}
	}
	for _, w := range e.workers {
		if w.tmp != "" {
			os.RemoveAll(w.tmp)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Do sends a request with key and decodes the JSON answer into out (if non-nil).
func (e *Env) Do(method, path, key string, body any, out any, hdr ...string) *http.Response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, e.APIURL+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp
}

// Submit posts a job and returns its id (fails the test on a non-202).
func (e *Env) Submit(key, kind string, req any) string {
	e.t.Helper()
	var acc struct {
		ID string `json:"id"`
	}
	resp := e.Do("POST", "/v1/"+kind, key, req, &acc)
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("submit %s: %d %s", kind, resp.StatusCode, b)
	}
	return acc.ID
}

// Wait polls the job until it ends (or timeout) and returns it.
func (e *Env) Wait(key, id string, timeout time.Duration) spec.Job {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var j spec.Job
		resp := e.Do("GET", "/v1/jobs/"+id+"?wait=20s", key, nil, &j)
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			e.t.Fatalf("get job %s: %d %s", id, resp.StatusCode, b)
		}
		if spec.Terminal(j.Status) {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s still %s after %s", id, j.Status, timeout)
		}
	}
}

// Run submits and waits.
func (e *Env) Run(key, kind string, req any) spec.Job {
	e.t.Helper()
	return e.Wait(key, e.Submit(key, kind, req), 90*time.Second)
}

func sha(s string) []byte {
	h := sha256Sum([]byte(s))
	return h[:]
}

// chromiumUnder lists running chromium processes of the worker whose
// TMPDIR is dir. The browser process names dir on its command line (its
// profile lives there); its children may not (chromium-headless-shell's
// zygotes, renderers and utility processes do not), but they stay in the
// process group the pool starts Chrome in, whose id is the browser's pid.
// The groups seen are remembered, so that a child left running after its
// browser died is still found.
func chromiumUnder(dir string) []int {
	type proc struct {
		pgrp int
		cl   string
	}
	procs := map[int]proc{}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		n, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		// A zombie has an empty command line, so it never matches here:
		// zombies are found through their parent (zombiesUnder) or by the
		// pids seen earlier (procTracker), both in chaos_test.go.
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", n))
		if !strings.Contains(string(cl), "chrom") {
			continue
		}
		procs[n] = proc{pgrpOf(n), string(cl)}
	}
	chromeGroups.Lock()
	defer chromeGroups.Unlock()
	if chromeGroups.of == nil {
		chromeGroups.of = map[string]map[int]bool{}
	}
	groups := chromeGroups.of[dir]
	if groups == nil {
		groups = map[int]bool{}
		chromeGroups.of[dir] = groups
	}
	for _, p := range procs {
		// dir + "/": another worker's TMPDIR may start with this one's name.
		if strings.Contains(p.cl, dir+"/") && p.pgrp > 0 {
			groups[p.pgrp] = true
		}
	}
	var out []int
	for n, p := range procs {
		if strings.Contains(p.cl, dir+"/") || groups[p.pgrp] {
			out = append(out, n)
		}
	}
	return out
}

// chromeGroups are the process groups of each worker's browsers seen so
// far, by the worker's TMPDIR.
var chromeGroups struct {
	sync.Mutex
	of map[string]map[int]bool
}

// pgrpOf is pid's process group, or 0.
func pgrpOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 || end+2 >= len(s) {
		return 0
	}
	f := strings.Fields(s[end+2:])
	if len(f) < 3 {
		return 0
	}
	g, _ := strconv.Atoi(f[2])
	return g
}

// WorkerChromium lists chromium processes of worker i still running.
func (e *Env) WorkerChromium(i int) []int { return chromiumUnder(e.workers[i].tmp) }

// waitCtx is a context for a test step.
func waitCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

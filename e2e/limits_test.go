package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

const (
	keyRPS   = "pf_test_limits_rps_key"
	keyQueue = "pf_test_limits_queue_key"
	keyRun   = "pf_test_limits_running_key"
)

// limitTenants is a tenants file with one small limit per tenant.
const limitTenants = `tenants:
  - id: lim-rps
    plan: pro
    api_keys: [%q]
    limits: { requests_per_second: 2 }
  - id: lim-queue
    plan: pro
    api_keys: [%q]
    limits: { queued_jobs: 3 }
  - id: lim-run
    plan: pro
    api_keys: [%q]
    limits: { running_jobs: 1 }
`

// gates hold requests of a fixture site until released, per group.
type gates struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func (g *gates) get(name string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch == nil {
		g.ch = map[string]chan struct{}{}
	}
	c, ok := g.ch[name]
	if !ok {
		c = make(chan struct{})
		g.ch[name] = c
	}
	return c
}

func (g *gates) release(name string) {
	c := g.get(name)
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-c:
	default:
		close(c)
	}
}

// problemOf decodes a problem+json answer, failing when it is not one.
func problemOf(t testing.TB, resp *http.Response) map[string]any {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("status %d with Content-Type %q, want application/problem+json", resp.StatusCode, ct)
	}
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("problem body: %v", err)
	}
	if p["status"] != float64(resp.StatusCode) || p["code"] == "" || p["title"] == "" || p["type"] == "" {
		t.Fatalf("problem %v does not match status %d", p, resp.StatusCode)
	}
	return p
}

// check429 asserts a 429 problem with a Retry-After of at least a second.
func check429(t testing.TB, resp *http.Response) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After %q, want whole seconds ≥ 1", resp.Header.Get("Retry-After"))
	}
	if p := problemOf(t, resp); p["code"] != "rate_limited" {
		t.Fatalf("problem code %v, want rate_limited", p["code"])
	}
}

// listJobs returns every job of the tenant of key (at most 1000).
func (e *Env) listJobs(key string) []spec.Job {
	e.t.Helper()
	var l struct {
		Data []spec.Job `json:"data"`
	}
	if resp := e.Do("GET", "/v1/jobs?limit=1000", key, nil, &l); resp.StatusCode != 200 {
		e.t.Fatalf("list jobs: %d", resp.StatusCode)
	}
	return l.Data
}

// listAll pages through GET /v1/jobs?query with limit 1000 and returns
// every job it lists, failing on a job listed twice.
func (e *Env) listAll(key, query string) []spec.Job {
	e.t.Helper()
	var out []spec.Job
	seen := map[string]bool{}
	cursor := ""
	for {
		var pg struct {
			Data       []spec.Job `json:"data"`
			NextCursor string     `json:"next_cursor"`
		}
		if resp := e.Do("GET", "/v1/jobs?limit=1000&"+query+"&cursor="+cursor, key, nil, &pg); resp.StatusCode != 200 {
			e.t.Fatalf("list jobs: %d", resp.StatusCode)
		}
		for _, j := range pg.Data {
			if seen[j.ID] {
				e.t.Fatalf("GET /v1/jobs listed %s twice", j.ID)
			}
			seen[j.ID] = true
			out = append(out, j)
		}
		if cursor = pg.NextCursor; cursor == "" {
			return out
		}
	}
}

// queuedTasks lists the ids of the run tasks asynq holds in any state
// (pending, active, scheduled, retry): the task id is the job id.
func (e *Env) queuedTasks() map[string]bool {
	e.t.Helper()
	rdb := e.Redis.Client(e.t, 0)
	out := map[string]bool{}
	for _, q := range []string{"interactive", "bulk"} {
		prefix := "asynq:{" + q + "}:t:"
		iter := rdb.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
		for iter.Next(context.Background()) {
			out[strings.TrimPrefix(iter.Val(), prefix)] = true
		}
		if err := iter.Err(); err != nil {
			e.t.Fatalf("scan %s: %v", prefix, err)
		}
	}
	return out
}

// TestLimitTenants proves the tenants file's limits through the API with
// real binaries: the request past requests_per_second and the job past
// queued_jobs get 429 with Retry-After and leave nothing behind (no job
// record, no asynq task, no place in the tenant's count, no claimed
// Idempotency-Key); running_jobs caps a tenant's concurrently running jobs
// across workers without counting a failure against the waiting jobs.
func TestLimitTenants(t *testing.T) {
	var g gates
	var running, peak atomic.Int32
	site := NewSite(t, map[string]http.HandlerFunc{
		"/hold": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-g.get(r.URL.Query().Get("g")):
			case <-r.Context().Done():
			case <-time.After(60 * time.Second):
			}
			html(`<html><body>held</body></html>`)(w, r)
		},
		"/busy": func(w http.ResponseWriter, r *http.Request) {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(700 * time.Millisecond) // long enough to overlap, were two let through
			running.Add(-1)
			html(`<html><body>busy</body></html>`)(w, r)
		},
	})
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(limitTenants, keyRPS, keyQueue, keyRun)), 0o600); err != nil {
		t.Fatal(err)
	}
	e := Start(t, Options{Workers: 2, Concurrency: 2, Env: []string{"PAGEFLEET_TENANTS_FILE=" + file}})
	t.Cleanup(func() { g.release("rps"); g.release("queue") })
	rdb := e.Redis.Client(t, 0)
	ctx := context.Background()

	t.Run("rps", func(t *testing.T) {
		// A burst of 8 at once: at most 2 per second get through (4 when
		// the burst straddles a second), the rest get 429.
		const burst = 8
		type answer struct {
			status int
			id     string
			resp   *http.Response
		}
		answers := make([]answer, burst)
		var wg sync.WaitGroup
		for i := range burst {
			wg.Go(func() {
				var acc struct {
					ID string `json:"id"`
				}
				u := site.URL + "/hold?g=rps&n=" + strconv.Itoa(i)
				resp := e.Do("POST", "/v1/fetch", keyRPS, map[string]any{"url": u}, &acc, "Idempotency-Key", "rps-"+strconv.Itoa(i))
				answers[i] = answer{resp.StatusCode, acc.ID, resp}
			})
		}
		wg.Wait()
		var accepted []string
		rejected, rejectedURL, rejectedKey := (*http.Response)(nil), "", ""
		for i, a := range answers {
			switch a.status {
			case http.StatusAccepted:
				accepted = append(accepted, a.id)
			case http.StatusTooManyRequests:
				check429(t, a.resp)
				rejected, rejectedURL, rejectedKey = a.resp, site.URL+"/hold?g=rps&n="+strconv.Itoa(i), "rps-"+strconv.Itoa(i)
			default:
				t.Fatalf("submit %d: status %d", i, a.status)
			}
		}
		if rejected == nil || len(accepted) < 2 || len(accepted) > 4 {
			t.Fatalf("%d of a burst of %d accepted with requests_per_second 2", len(accepted), burst)
		}
		// Nothing of the rejected request exists.
		jobs := e.listJobs(keyRPS)
		if len(jobs) != len(accepted) {
			t.Errorf("GET /v1/jobs lists %d jobs, %d were accepted", len(jobs), len(accepted))
		}
		for _, j := range jobs {
			if j.URL == rejectedURL {
				t.Errorf("the rejected request left job %s", j.ID)
			}
		}
		tasks := e.queuedTasks()
		if len(tasks) != len(accepted) {
			t.Errorf("asynq holds %d tasks, %d jobs were accepted: %v", len(tasks), len(accepted), tasks)
		}
		for _, id := range accepted {
			if !tasks[id] {
				t.Errorf("accepted job %s has no task", id)
			}
		}
		if n, _ := rdb.Get(ctx, "{pf}:t:lim-rps:active").Int(); n != len(accepted) {
			t.Errorf("the tenant's active count is %d, want %d", n, len(accepted))
		}
		// The rejected request's Idempotency-Key was not kept: once the
		// second has passed, the same key creates a job. The sleep waits
		// out the rate limit's one-second window, which is what is tested.
		time.Sleep(1100 * time.Millisecond)
		var acc struct {
			ID string `json:"id"`
		}
		resp := e.Do("POST", "/v1/fetch", keyRPS, map[string]any{"url": rejectedURL}, &acc, "Idempotency-Key", rejectedKey)
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("resubmit with the rejected key: %d replayed=%q", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"))
		}
		accepted = append(accepted, acc.ID)
		g.release("rps")
		for _, id := range accepted {
			if j := e.Wait(keyRPS, id, 60*time.Second); j.Status != spec.StatusSucceeded {
				t.Errorf("job %s: %s %+v", id, j.Status, j.Error)
			}
		}
	})

	t.Run("queued", func(t *testing.T) {
		var ids []string
		for i := 0; i < 3; i++ {
			ids = append(ids, e.Submit(keyQueue, "fetch", map[string]any{"url": site.URL + "/hold?g=queue&n=" + strconv.Itoa(i)}))
		}
		before := e.queuedTasks()
		resp := e.Do("POST", "/v1/fetch", keyQueue, map[string]any{"url": site.URL + "/hold?g=queue&n=over"}, nil)
		check429(t, resp)
		if jobs := e.listJobs(keyQueue); len(jobs) != 3 {
			t.Errorf("GET /v1/jobs lists %d jobs after the 429, want 3", len(jobs))
		}
		if after := e.queuedTasks(); len(after) != len(before) || len(after) != 3 {
			t.Errorf("asynq tasks %d before, %d after the 429; want 3 and 3", len(before), len(after))
		}
		if n, _ := rdb.Get(ctx, "{pf}:t:lim-queue:active").Int(); n != 3 {
			t.Errorf("the tenant's active count is %d, want 3", n)
		}
		// Jobs that end give their places back.
		g.release("queue")
		for _, id := range ids {
			if j := e.Wait(keyQueue, id, 60*time.Second); j.Status != spec.StatusSucceeded {
				t.Errorf("job %s: %s %+v", id, j.Status, j.Error)
			}
		}
		id := e.Submit(keyQueue, "fetch", map[string]any{"url": site.URL + "/plain"})
		if j := e.Wait(keyQueue, id, 60*time.Second); j.Status != spec.StatusSucceeded {
			t.Errorf("job after the queue drained: %s %+v", j.Status, j.Error)
		}
	})

	t.Run("running", func(t *testing.T) {
		// Two workers with two slots each could run all four at once.
		var ids []string
		for i := 0; i < 4; i++ {
			ids = append(ids, e.Submit(keyRun, "fetch", map[string]any{"url": site.URL + "/busy?n=" + url.QueryEscape(strconv.Itoa(i))}))
		}
		for _, id := range ids {
			j := e.Wait(keyRun, id, 90*time.Second)
			if j.Status != spec.StatusSucceeded {
				t.Errorf("job %s: %s %+v", id, j.Status, j.Error)
			}
			if j.Attempts != 1 {
				t.Errorf("job %s: %d attempts; waiting for a running slot is no failure", id, j.Attempts)
			}
		}
		if p := peak.Load(); p != 1 {
			t.Errorf("%d jobs of the tenant ran at once, running_jobs is 1", p)
		}
		// The slot is given back right after the outcome is written.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			n, _ := rdb.ZCard(ctx, "{pf}:t:lim-run:running").Result()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%d running slots still held after every job ended", n)
				break
			}
		}
	})
}

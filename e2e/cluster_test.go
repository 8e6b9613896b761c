package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// TestRedisCluster runs the API and a worker against a three-node Redis
// Cluster given as PAGEFLEET_REDIS_URL=redis-cluster://<one node> (the
// client learns the other nodes): plain and rendered jobs, a session's jobs
// in order with its state carried over, a batch, a cancellation and the
// job list all work, and neither process logs a Redis error (a script or
// transaction whose keys spanned hash slots would: CROSSSLOT).
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t, 3)
	e := Start(t, Options{Workers: 1, Concurrency: 4, Env: []string{"PAGEFLEET_REDIS_URL=" + cluster.URL()}})
	site := NewSite(t, map[string]http.HandlerFunc{
		"/set": func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "c", Value: r.URL.Query().Get("v"), Path: "/", MaxAge: 3600})
			fmt.Fprint(w, "<html><body>set</body></html>")
		},
		"/show": func(w http.ResponseWriter, r *http.Request) {
			v := "none"
			if c, err := r.Cookie("c"); err == nil {
				v = c.Value
			}
			fmt.Fprintf(w, "<html><body>cookie=%s</body></html>", v)
		},
	})

	if j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/plain", "output": []string{"html", "links"}}); j.Status != spec.StatusSucceeded || !contains(j.Result.HTML, "plain body") {
		t.Fatalf("plain fetch: %s %+v", j.Status, j.Error)
	}
	if j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/js", "render_js": true}); j.Status != spec.StatusSucceeded || !contains(j.Result.HTML, "rendered-by-javascript") {
		t.Fatalf("rendered fetch: %s %+v", j.Status, j.Error)
	}

	// A session's jobs, submitted at once, run in order and see each
	// other's cookie.
	sess := map[string]string{"id": "on-a-cluster"}
	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/set?v=" + strconv.Itoa(i), "render_js": i%2 == 0, "session": sess}))
	}
	show := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/show", "session": sess})
	if show.Status != spec.StatusSucceeded || !contains(show.Result.HTML, "cookie=3") {
		t.Fatalf("session job after four setters: %s %+v %v", show.Status, show.Error, show.Result)
	}
	var last time.Time
	for i, id := range ids {
		j := e.Wait(keyA, id, time.Minute)
		if j.Status != spec.StatusSucceeded || j.StartedAt == nil || j.StartedAt.Before(last) {
			t.Fatalf("session job %d: %s %+v (started %v, previous %v)", i, j.Status, j.Error, j.StartedAt, last)
		}
		last = *j.StartedAt
	}
	var info struct {
		Cookies int `json:"cookies"`
	}
	if resp := e.Do("GET", "/v1/sessions/on-a-cluster", keyA, nil, &info); resp.StatusCode != 200 || info.Cookies != 1 {
		t.Fatalf("GET session: %d, %+v", resp.StatusCode, info)
	}

	// A batch completes.
	urls := make([]string, 20)
	for i := range urls {
		urls[i] = site.URL + "/plain?n=" + strconv.Itoa(i)
	}
	acc, _ := e.SubmitBatch(keyA, map[string]any{"urls": urls})
	if b, _ := e.WaitBatch(keyA, acc.ID, 100*time.Millisecond, 2*time.Minute); b.Status != "completed" || b.Succeeded != len(urls) {
		t.Fatalf("batch: %+v", b)
	}

	// A slow job is cancelled while it runs.
	slow := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/slow?d=20s"})
	for deadline := time.Now().Add(20 * time.Second); site.Hits("/slow") == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if resp := e.Do("DELETE", "/v1/jobs/"+slow, keyA, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
	if j := e.Wait(keyA, slow, 15*time.Second); j.Status != spec.StatusCancelled {
		t.Fatalf("cancelled job: %s", j.Status)
	}
	if jobs := e.listJobs(keyA); len(jobs) < 8 {
		t.Fatalf("job list has %d jobs, want at least 8", len(jobs))
	}

	for name, log := range map[string]string{"api": e.api.logText(), "worker": e.WorkerLog(0)} {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "CROSSSLOT") || strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "non local key") {
				t.Errorf("%s logged: %.300s", name, line)
			}
		}
	}
}

// TestRedisClusterFailover kills (SIGKILL) the master that holds
// pagefleet's keys (the {pf} hash slot) in a cluster of three masters with a
// replica each. While the replica takes over, a submit answers 202 or a
// problem+json 503, never a 500 or a hang; once it has taken over, the API
// and the worker go on without a restart, within seconds: new jobs (plain
// and rendered) run, and the jobs that ended before the kill are still
// there.
func TestRedisClusterFailover(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartClusterWithReplicas(t, 3)
	e := Start(t, Options{Workers: 1, Concurrency: 2, Env: []string{"PAGEFLEET_REDIS_URL=" + cluster.URL()}})
	site := NewSite(t, nil)

	before := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/plain"})
	if before.Status != spec.StatusSucceeded {
		t.Fatalf("job before the failover: %s %+v", before.Status, before.Error)
	}
	old := cluster.MasterOf(t, "{pf}")
	if old == nil {
		t.Fatal("no master holds {pf}")
	}
	// Replication is asynchronous: kill the master only once its replica has
	// the writes made so far (the job before the failover among them).
	if off, acked := replicaCaughtUp(t, old, 30*time.Second); off > acked {
		t.Fatalf("the replica of %s acknowledged offset %d of %d within 30 s", old.Addr, acked, off)
	}
	old.Kill()
	killed := time.Now()

	// Submit until a job is accepted and done again. The replica takes over
	// within seconds (cluster-node-timeout 2 s); the clients must follow
	// (go-redis alone reloads the slot map only every 60 s: a job ran again
	// 58 s after the kill).
	answers := map[int]int{}
	var recovered time.Duration
	for deadline := killed.Add(45 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatalf("no job accepted and done within 45 s of the kill; answers %v", answers)
		}
		r, err := e.call("POST", "/v1/fetch?wait=10s", keyA, map[string]any{"url": site.URL + "/plain?after=1"})
		if err != nil {
			answers[0]++
			time.Sleep(200 * time.Millisecond)
			continue
		}
		answers[r.code]++
		if r.code >= 500 && r.code != 503 {
			t.Fatalf("submit during the failover answered %d: %s", r.code, r.body)
		}
		if r.code == 503 && r.hdr.Get("Content-Type") != "application/problem+json" {
			t.Errorf("503 without problem+json: %q %s", r.hdr.Get("Content-Type"), r.body)
		}
		var j spec.Job
		if (r.code == 200 || r.code == 202) && json.Unmarshal(r.body, &j) == nil && j.Status == spec.StatusSucceeded {
			recovered = time.Since(killed)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	now := cluster.MasterOf(t, "{pf}")
	t.Logf("master of {pf} %s killed; %s took over; a job ran again %s after the kill; answers meanwhile %v",
		old.Addr, addrOf(now), recovered.Round(100*time.Millisecond), answers)
	if now == nil || now == old {
		t.Fatalf("no replica took over the {pf} slot (master now %s)", addrOf(now))
	}
	if answers[0] > 0 {
		t.Errorf("%d submits got no HTTP answer", answers[0])
	}

	for i := 0; i < 3; i++ {
		if j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/plain?n=" + strconv.Itoa(i)}); j.Status != spec.StatusSucceeded {
			t.Fatalf("plain job %d after the failover: %s %+v", i, j.Status, j.Error)
		}
	}
	if j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/js", "render_js": true}); j.Status != spec.StatusSucceeded || !contains(j.Result.HTML, "rendered-by-javascript") {
		t.Fatalf("rendered job after the failover: %s %+v", j.Status, j.Error)
	}
	if j, err := e.getJob(keyA, before.ID); err != nil || j.Status != spec.StatusSucceeded {
		t.Fatalf("the job that ended before the kill: %+v %v", j, err)
	}
	if r, err := e.call("GET", "/readyz", "", nil); err != nil || r.code != 200 {
		t.Errorf("/readyz after the failover: %d %v", r.code, err)
	}
}

// replicaCaughtUp waits until every replica of master s has acknowledged
// the replication offset s had at the call (replicas acknowledge once a
// second), or timeout passes. It returns that offset and the lowest
// acknowledged one.
func replicaCaughtUp(t *testing.T, s *redistest.Server, timeout time.Duration) (offset, acked int64) {
	t.Helper()
	c := s.Client(t, 0)
	replication := func() (master int64, replicas []int64) {
		info, err := c.Info(t.Context(), "replication").Result()
		if err != nil {
			t.Fatalf("INFO replication of %s: %v", s.Addr, err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "master_repl_offset:"); ok {
				master, _ = strconv.ParseInt(v, 10, 64)
			}
			if strings.HasPrefix(l, "slave") && strings.Contains(l, ":ip=") {
				for _, kv := range strings.Split(l, ",") {
					if v, ok := strings.CutPrefix(kv, "offset="); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						replicas = append(replicas, n)
					}
				}
			}
		}
		return master, replicas
	}
	offset, _ = replication()
	waitFor(timeout, func() bool {
		_, replicas := replication()
		if len(replicas) == 0 {
			acked = -1
			return false
		}
		acked = slices.Min(replicas)
		return acked >= offset
	})
	return offset, acked
}

func addrOf(s *redistest.Server) string {
	if s == nil {
		return "none"
	}
	return s.Addr
}

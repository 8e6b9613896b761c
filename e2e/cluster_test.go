package e2e

import (
	"fmt"
	"net/http"
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

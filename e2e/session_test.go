package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// The seed's login workflow, exactly as written there, against a local app,
// with the API and the worker both restarted between the steps and the
// second step run by a different worker process.
func TestSeedLoginWorkflow(t *testing.T) {
	llm := newFakeLLM(t)
	e := Start(t, Options{Workers: 1, Env: []string{
		"PAGEFLEET_LLM_BASE_URL=" + llm.URL + "/v1", "PAGEFLEET_LLM_MODEL=test-model",
		"PAGEFLEET_SESSION_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
	}})
	app := loginApp(t)

	step1 := fmt.Sprintf(`{
  "url": "%s/login",
  "session": { "id": "user-session" },
  "actions": [
    { "type": "type", "selector": "#email", "value": "user@example.com" },
    { "type": "type", "selector": "#password", "value": "secret" },
    { "type": "click", "selector": "button[type=submit]" },
    { "type": "wait_for", "selector": ".user-avatar" }
  ],
  "output": ["html"]
}`, app.URL)
	// "Every fetch and interact response includes a session field": the
	// 202 too, before the job ran.
	var acc struct {
		ID      string            `json:"id"`
		Session *spec.SessionInfo `json:"session"`
	}
	if resp := e.Do("POST", "/v1/interact", keyA, step1, &acc); resp.StatusCode != 202 || acc.Session == nil ||
		acc.Session.ID != "user-session" || acc.Session.Updated {
		t.Fatalf("202 answer of a session job: %d, session %+v", resp.StatusCode, acc.Session)
	}
	if j0 := e.Wait(keyA, acc.ID, time.Minute); j0.Status != spec.StatusSucceeded {
		t.Fatalf("login: %s %+v", j0.Status, j0.Error)
	}
	j1 := e.Run(keyA, "interact", step1)
	if j1.Status != spec.StatusSucceeded {
		t.Fatalf("login: %s %+v %+v", j1.Status, j1.Error, j1.Result)
	}
	if j1.Session == nil || j1.Session.ID != "user-session" || !j1.Session.Updated {
		t.Fatalf("login session field = %+v", j1.Session)
	}
	if len(j1.Result.Actions) != 4 {
		t.Fatalf("actions = %+v", j1.Result.Actions)
	}

	// Restart everything; the next step runs on a new worker process.
	e.StopWorker(0, syscall.SIGTERM)
	e.StopAPI()
	e.StartAPI()
	w2 := e.StartWorker()

	step2 := fmt.Sprintf(`{
  "url": "%s/account/orders",
  "render_js": true,
  "session": { "id": "user-session" },
  "output": ["json", "html"],
  "extract": {
    "mode": "schema",
    "schema": { "orders": "array of recent order IDs and statuses" }
  }
}`, app.URL)
	j2 := e.Run(keyA, "fetch", step2)
	if j2.Status != spec.StatusSucceeded {
		t.Fatalf("orders: %s %+v", j2.Status, j2.Error)
	}
	if !strings.Contains(e.WorkerLog(w2), j2.ID) {
		t.Fatalf("step 2 did not run on the new worker")
	}
	for _, want := range []string{"cookie: ok", "token: ls-token-42", "idb: Ada since 2020-01-02 (true)"} {
		if !contains(j2.Result.HTML, want) {
			t.Errorf("protected page lacks %q", want)
		}
	}
	var got struct {
		Orders []map[string]string `json:"orders"`
	}
	json.Unmarshal(j2.Result.JSON, &got)
	if len(got.Orders) != 2 || got.Orders[0]["id"] != "ORDER-1001" || got.Orders[1]["status"] != "processing" {
		t.Errorf("result.json = %s", j2.Result.JSON)
	}
	if j2.Session == nil || j2.Session.Updated {
		t.Errorf("reading the orders page changed the session: %+v", j2.Session)
	}

	// A plain (render_js:false) fetch sends the session cookie too.
	j3 := e.Run(keyA, "fetch", map[string]any{"url": app.URL + "/account/orders", "session": map[string]string{"id": "user-session"}})
	if j3.Status != spec.StatusSucceeded || j3.Result.StatusCode != 200 || j3.Session.Updated {
		t.Errorf("plain fetch with the session: %s %d %+v", j3.Status, j3.Result.StatusCode, j3.Session)
	}

	// The session export is a Playwright storageState.
	var sess struct {
		ID      string   `json:"id"`
		Cookies int      `json:"cookies"`
		Origins []string `json:"origins"`
		Version int64    `json:"version"`
		State   struct {
			Cookies []map[string]any `json:"cookies"`
			Origins []struct {
				Origin       string              `json:"origin"`
				LocalStorage []map[string]string `json:"localStorage"`
			} `json:"origins"`
		} `json:"state"`
	}
	if resp := e.Do("GET", "/v1/sessions/user-session?include=state", keyA, nil, &sess); resp.StatusCode != 200 {
		t.Fatalf("get session: %d", resp.StatusCode)
	}
	if sess.Cookies != 1 || len(sess.State.Cookies) != 1 || sess.State.Cookies[0]["name"] != "auth" || sess.State.Cookies[0]["httpOnly"] != true {
		t.Errorf("session cookies: %+v", sess.State.Cookies)
	}
	if len(sess.State.Origins) != 1 || sess.State.Origins[0].LocalStorage[0]["value"] != "ls-token-42" {
		t.Errorf("session origins: %+v", sess.State.Origins)
	}
	// Other tenants cannot see it; the same id there is another session.
	if resp := e.Do("GET", "/v1/sessions/user-session", keyB, nil, nil); resp.StatusCode != 404 {
		t.Errorf("other tenant sees the session: %d", resp.StatusCode)
	}
	jb := e.Run(keyB, "fetch", map[string]any{"url": app.URL + "/account/orders", "session": map[string]string{"id": "user-session"}})
	if jb.Result.StatusCode != 401 {
		t.Errorf("tenant B's same-named session is logged in: %d", jb.Result.StatusCode)
	}
	var lst struct {
		Data []map[string]any `json:"data"`
	}
	e.Do("GET", "/v1/sessions", keyA, nil, &lst)
	if len(lst.Data) != 1 || lst.Data[0]["id"] != "user-session" {
		t.Errorf("session list: %+v", lst.Data)
	}
	// DELETE removes the state: the next job starts logged out.
	if resp := e.Do("DELETE", "/v1/sessions/user-session", keyA, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("delete session: %d", resp.StatusCode)
	}
	if resp := e.Do("GET", "/v1/sessions/user-session", keyA, nil, nil); resp.StatusCode != 404 {
		t.Errorf("deleted session still there: %d", resp.StatusCode)
	}
	j4 := e.Run(keyA, "fetch", map[string]any{"url": app.URL + "/account/orders", "session": map[string]string{"id": "user-session"}})
	if j4.Result.StatusCode != 401 {
		t.Errorf("after delete the session is still logged in: %d", j4.Result.StatusCode)
	}
}

// 20 jobs of one session, submitted at once to two workers with concurrency
// 4 each, never overlap and arrive in submission order, while jobs of
// another session complete meanwhile. A failed and a cancelled job in the
// middle do not stall the rest.
func TestSessionOrderAcrossWorkers(t *testing.T) {
	e := Start(t, Options{Workers: 2, Concurrency: 4})
	type span struct {
		n          int
		start, end time.Time
	}
	var mu sync.Mutex
	var spans []span
	var otherDone []time.Time
	site := NewSite(t, map[string]http.HandlerFunc{
		"/seq": func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			s := span{n: n, start: time.Now()}
			time.Sleep(150 * time.Millisecond) // a span long enough for an overlap to show
			s.end = time.Now()
			mu.Lock()
			spans = append(spans, s)
			mu.Unlock()
			w.Header().Set("Set-Cookie", "last="+strconv.Itoa(n)+"; Path=/")
			fmt.Fprintf(w, "<html><body>%d</body></html>", n)
		},
		"/other": func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			otherDone = append(otherDone, time.Now())
			mu.Unlock()
			fmt.Fprint(w, "<html><body>other</body></html>")
		},
	})
	var ids []string
	var cancelID string
	for i := 0; i < 20; i++ {
		req := map[string]any{"url": fmt.Sprintf("%s/seq?n=%d", site.URL, i), "session": map[string]string{"id": "ordered"}}
		switch i {
		case 6: // fails for good: nothing listens there
			req["url"] = "http://" + freeAddr(t) + "/x"
		case 7: // rendered, to mix the kinds
			req["render_js"] = true
		}
		id := e.Submit(keyA, "fetch", req)
		if i == 9 {
			cancelID = id
		}
		ids = append(ids, id)
	}
	if resp := e.Do("DELETE", "/v1/jobs/"+cancelID, keyA, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
	var others []string
	for i := 0; i < 4; i++ {
		others = append(others, e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/other", "session": map[string]string{"id": fmt.Sprintf("other-%d", i)}}))
	}
	var lastA time.Time
	for i, id := range ids {
		j := e.Wait(keyA, id, 120*time.Second)
		want := spec.StatusSucceeded
		switch i {
		case 6:
			want = spec.StatusFailed
		case 9:
			want = spec.StatusCancelled
		}
		if j.Status != want {
			t.Fatalf("job %d: %s, want %s (%+v)", i, j.Status, want, j.Error)
		}
		if j.FinishedAt != nil && j.FinishedAt.After(lastA) {
			lastA = *j.FinishedAt
		}
	}
	for _, id := range others {
		if j := e.Wait(keyA, id, 60*time.Second); j.Status != spec.StatusSucceeded {
			t.Fatalf("other session job: %s", j.Status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var order []int
	for _, s := range spans {
		order = append(order, s.n)
	}
	var want []int
	for i := 0; i < 20; i++ {
		if i != 6 && i != 9 {
			want = append(want, i)
		}
	}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("arrival order %v, want %v", order, want)
	}
	sorted := append([]span(nil), spans...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a].start.Before(sorted[b].start) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].start.Before(sorted[i-1].end) {
			t.Fatalf("jobs %d and %d overlapped", sorted[i-1].n, sorted[i].n)
		}
	}
	// Jobs of other sessions did not wait for the busy one.
	if len(otherDone) != 4 || !otherDone[3].Before(lastA) {
		t.Errorf("other sessions' jobs finished at %v, the ordered session at %v", otherDone, lastA)
	}
	// The cookie the last job set is what the session holds.
	var sess struct {
		State struct {
			Cookies []map[string]any `json:"cookies"`
		} `json:"state"`
	}
	e.Do("GET", "/v1/sessions/ordered?include=state", keyA, nil, &sess)
	if len(sess.State.Cookies) != 1 || sess.State.Cookies[0]["value"] != "19" {
		t.Errorf("session cookies after the run: %+v", sess.State.Cookies)
	}
}

// A worker holding a session's lease is killed with SIGKILL mid-job: the
// session's jobs still run after the lease lapses.
func TestSessionHolderKilled(t *testing.T) {
	t.Parallel() // it waits for leases to run out: let other tests use the time
	e := Start(t, Options{Workers: 1, Concurrency: 2})
	site := NewSite(t, nil)
	first := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/slow?d=8s", "render_js": true, "session": map[string]string{"id": "s-kill"}})
	deadline := time.Now().Add(30 * time.Second)
	for site.Hits("/slow") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	second := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/plain", "session": map[string]string{"id": "s-kill"}})
	e.StopWorker(0, syscall.SIGKILL)
	start := time.Now()
	e.StartWorker()
	j1 := e.Wait(keyA, first, 150*time.Second)
	j2 := e.Wait(keyA, second, 150*time.Second)
	if j1.Status != spec.StatusSucceeded || j2.Status != spec.StatusSucceeded {
		t.Fatalf("after the kill: first %s %+v, second %s %+v", j1.Status, j1.Error, j2.Status, j2.Error)
	}
	if !j2.StartedAt.After(*j1.FinishedAt) && !j2.StartedAt.Equal(*j1.FinishedAt) {
		t.Errorf("second started %v before first finished %v", j2.StartedAt, j1.FinishedAt)
	}
	t.Logf("recovered %s after the kill (attempts %d)", time.Since(start).Round(time.Second), j1.Attempts)
}

// A session's state expires after the configured TTL without use; using it
// restarts the clock. A state over the size cap keeps the last good one.
func TestSessionTTLAndSizeCap(t *testing.T) {
	e := Start(t, Options{Workers: 1, Env: []string{"PAGEFLEET_SESSION_TTL=4s", "PAGEFLEET_SESSION_MAX_BYTES=4096"}})
	site := NewSite(t, map[string]http.HandlerFunc{
		"/set": func(w http.ResponseWriter, r *http.Request) {
			v := r.URL.Query().Get("v")
			if v == "big" { // random, so the stored state really is over the cap after compression
				for i := 0; i < 4; i++ {
					b := make([]byte, 1500)
					rand.Read(b)
					http.SetCookie(w, &http.Cookie{Name: fmt.Sprintf("big%d", i), Value: hex.EncodeToString(b), Path: "/", MaxAge: 3600})
				}
			} else {
				http.SetCookie(w, &http.Cookie{Name: "c", Value: v, Path: "/", MaxAge: 3600})
			}
			fmt.Fprint(w, "<html><body>set</body></html>")
		},
		"/loop": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/loop", http.StatusFound)
		},
		"/show": func(w http.ResponseWriter, r *http.Request) {
			c, _ := r.Cookie("c")
			v := "none"
			if c != nil {
				v = c.Value
			}
			fmt.Fprintf(w, "<html><body>cookie=%s</body></html>", v)
		},
	})
	sess := map[string]string{"id": "short"}
	e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/set?v=one", "session": sess})
	// Used every 2 s, it stays alive past the 4 s TTL; a job that fails
	// uses it too: after two failed uses in a row (6 s after the last
	// successful one) the state is still there.
	for i, path := range []string{"/show", "/loop", "/loop", "/show"} {
		time.Sleep(2 * time.Second) // the pace of use is what is tested: every 2 s, under the 4 s TTL
		j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + path, "session": sess})
		if path == "/loop" {
			if j.Status != spec.StatusFailed || j.Error == nil || j.Error.Code != spec.CodeTooManyRedirects {
				t.Fatalf("use %d: %s %+v, want failed too_many_redirects", i, j.Status, j.Error)
			}
			continue
		}
		if !contains(j.Result.HTML, "cookie=one") {
			t.Fatalf("use %d: session lost while in use: %s", i, *j.Result.HTML)
		}
	}
	time.Sleep(5 * time.Second) // unused for longer than the 4 s TTL: the expiry is what is tested
	if resp := e.Do("GET", "/v1/sessions/short", keyA, nil, nil); resp.StatusCode != 404 {
		t.Errorf("session alive after its TTL: %d", resp.StatusCode)
	}
	j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/show", "session": sess})
	if !contains(j.Result.HTML, "cookie=none") {
		t.Errorf("expired session still sent its cookie")
	}
	// size cap
	e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/set?v=small", "session": map[string]string{"id": "capped"}})
	big := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/set?v=big", "session": map[string]string{"id": "capped"}})
	if big.Status != spec.StatusFailed || big.Error.Code != spec.CodeSessionTooLarge {
		t.Fatalf("over the cap: %s %+v", big.Status, big.Error)
	}
	after := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/show", "session": map[string]string{"id": "capped"}})
	if !contains(after.Result.HTML, "cookie=small") {
		t.Errorf("after the failed save the session should keep the last good state: %s", *after.Result.HTML)
	}
}

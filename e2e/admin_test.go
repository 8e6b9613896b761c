package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

const adminToken = "adm_e2e_token_0123456789"

// adminGet fetches path from the API with the given headers (no redirects
// followed) and returns the status and body.
func (e *Env) adminGet(path string, hdr ...string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.APIURL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminQueues: the queue dashboard (asynqmon) under /admin/queues of the
// real API binary is 401 without PAGEFLEET_ADMIN_TOKEN's value, shows the
// queues with it, and does not exist (404) when no token is configured.
func TestAdminQueues(t *testing.T) {
	e := Start(t, Options{Workers: 1, Env: []string{"PAGEFLEET_ADMIN_TOKEN=" + adminToken}})
	site := NewSite(t, nil)
	rcv := newReceiver(t, secretA, 0)

	for _, p := range []string{"/admin/queues", "/admin/queues/api/queues"} {
		if code, body := e.adminGet(p); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d %.200s, want 401", p, code, body)
		}
		if code, _ := e.adminGet(p, "Authorization", "Bearer wrong"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", p, code)
		}
		if code, _ := e.adminGet(p, "Authorization", "Bearer "+keyA); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a tenant's API key: %d, want 401", p, code)
		}
	}

	// Work in each queue: a fetch (interactive) with a webhook (webhooks),
	// and a batch (bulk).
	j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/plain", "webhook": map[string]any{"url": rcv.URL + "/hook"}})
	if j.Status != spec.StatusSucceeded {
		t.Fatalf("fetch: %s %+v", j.Status, j.Error)
	}
	resp := e.Do("POST", "/v1/batches", keyA, map[string]any{"urls": []string{site.URL + "/plain"}}, nil)
	switch resp.StatusCode {
	case http.StatusAccepted:
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		// Batches not built yet: put a task in the bulk queue directly, due
		// in an hour so no worker takes it.
		c := asynq.NewClientFromRedisClient(e.Redis.Client(t, 0))
		defer c.Close()
		if _, err := c.Enqueue(asynq.NewTask(jobs.KindFetch, []byte(`{}`)), asynq.Queue(jobs.QueueBulk), asynq.ProcessIn(time.Hour)); err != nil {
			t.Fatal(err)
		}
	default:
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /v1/batches: %d %s", resp.StatusCode, b)
	}

	want := []string{jobs.QueueInteractive, jobs.QueueBulk, jobs.QueueWebhooks}
	var names []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := e.adminGet("/admin/queues/api/queues", "Authorization", "Bearer "+adminToken)
		if code != http.StatusOK {
			t.Fatalf("queue list with the token: %d %.300s", code, body)
		}
		var list struct {
			Queues []struct {
				Queue string `json:"queue"`
				Size  int    `json:"size"`
			} `json:"queues"`
		}
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("queue list %.300s: %v", body, err)
		}
		names = names[:0]
		for _, q := range list.Queues {
			names = append(names, q.Queue)
		}
		if containsAll(names, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queues %v, want %v", names, want)
		}
		time.Sleep(200 * time.Millisecond) // the webhook task is enqueued as the job ends
	}

	// The dashboard page itself, with the bearer token…
	code, page := e.adminGet("/admin/queues", "Authorization", "Bearer "+adminToken)
	if code != http.StatusOK || !strings.Contains(page, `src="/admin/queues/static/js/`) {
		t.Fatalf("dashboard page: %d %.300s", code, page)
	}
	if code, js := e.adminGet("/admin/queues/static/js/"+scriptName(page), "Authorization", "Bearer "+adminToken); code != http.StatusOK || len(js) < 1000 {
		t.Errorf("dashboard script: %d, %d bytes", code, len(js))
	}
	// …and as a browser gets it: ?token= once sets a cookie, then the page
	// and its API calls work with the cookie alone.
	req, _ := http.NewRequest("GET", e.APIURL+"/admin/queues?token="+adminToken, nil)
	r, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == "pagefleet_admin" {
			cookie = c
		}
	}
	if r.StatusCode != http.StatusSeeOther || cookie == nil {
		t.Fatalf("?token=: %d, cookies %v; want 303 and the pagefleet_admin cookie", r.StatusCode, r.Cookies())
	}
	for _, p := range []string{"/admin/queues", "/admin/queues/api/queues/" + jobs.QueueInteractive} {
		if code, body := e.adminGet(p, "Cookie", cookie.Name+"="+cookie.Value); code != http.StatusOK {
			t.Errorf("GET %s with the cookie: %d %.200s", p, code, body)
		}
	}
	// The queue collector on the API's and on the worker's /metrics
	// exports the same queues.
	_, metrics := e.adminGet("/metrics")
	workerMetrics, err := scrape("http://" + e.WorkerAddr(0) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range want {
		if !strings.Contains(metrics, `asynq_queue_size{queue="`+q+`"}`) {
			t.Errorf("the API's /metrics has no asynq_queue_size for %s", q)
		}
		if _, ok := workerMetrics[`asynq_queue_size{queue="`+q+`"}`]; !ok {
			t.Errorf("the worker's /metrics has no asynq_queue_size for %s", q)
		}
	}

	// Without a token configured the admin routes do not exist.
	e.StopAPI()
	e.env = append(e.env, "PAGEFLEET_ADMIN_TOKEN=")
	e.StartAPI()
	for _, p := range []string{"/admin/queues", "/admin/queues/api/queues"} {
		if code, _ := e.adminGet(p, "Authorization", "Bearer "+adminToken); code != http.StatusNotFound {
			t.Errorf("GET %s with no admin token configured: %d, want 404", p, code)
		}
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// scriptName is the file name of the dashboard's main script in page.
func scriptName(page string) string {
	const marker = `src="/admin/queues/static/js/`
	i := strings.LastIndex(page, marker)
	if i < 0 {
		return ""
	}
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

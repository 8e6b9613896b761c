package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/internal/tenant"
)

func newAdminServer(t *testing.T, token string) *httptest.Server {
	t.Helper()
	rdb := redistest.Start(t).Client(t, 0)
	tenants, err := tenant.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{AdminToken: token}, Deps{Redis: rdb, Tenants: tenants})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	// A task in a queue, so the dashboard has a queue to list.
	c := asynq.NewClientFromRedisClient(rdb)
	if _, err := c.Enqueue(asynq.NewTask("fetch", []byte(`{"job_id":"job_1","request":{"url":"https://example.com","actions":[{"type":"type","value":"hunter2"}]}}`)), asynq.Queue("interactive")); err != nil {
		t.Fatal(err)
	}
	return ts
}

func adminGet(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestAdminQueuesOffWithoutToken(t *testing.T) {
	ts := newAdminServer(t, "")
	for _, p := range []string{"/admin/queues", "/admin/queues/api/queues"} {
		if r := adminGet(t, ts.URL+p, "Authorization", "Bearer anything"); r.StatusCode != http.StatusNotFound {
			t.Errorf("%s without PAGEFLEET_ADMIN_TOKEN: %d, want 404", p, r.StatusCode)
		}
	}
}

func TestAdminQueuesAuth(t *testing.T) {
	const tok = "adm_secret_token"
	ts := newAdminServer(t, tok)
	for _, tc := range []struct {
		name string
		path string
		hdr  []string
		want int
	}{
		{"no token", "/admin/queues", nil, 401},
		{"no token api", "/admin/queues/api/queues", nil, 401},
		{"wrong bearer", "/admin/queues/api/queues", []string{"Authorization", "Bearer nope"}, 401},
		{"wrong cookie", "/admin/queues/api/queues", []string{"Cookie", AdminCookie + "=nope"}, 401},
		{"wrong query token", "/admin/queues?token=nope", nil, 401},
		{"bearer page", "/admin/queues", []string{"Authorization", "Bearer " + tok}, 200},
		{"bearer api", "/admin/queues/api/queues", []string{"Authorization", "Bearer " + tok}, 200},
		{"cookie api", "/admin/queues/api/queues", []string{"Cookie", AdminCookie + "=" + tok}, 200},
		{"query token sets cookie", "/admin/queues?token=" + tok, nil, http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := adminGet(t, ts.URL+tc.path, tc.hdr...)
			if r.StatusCode != tc.want {
				t.Fatalf("GET %s: %d, want %d", tc.path, r.StatusCode, tc.want)
			}
			if tc.want == 401 && r.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}

	r := adminGet(t, ts.URL+"/admin/queues?token="+tok)
	if loc := r.Header.Get("Location"); strings.Contains(loc, tok) || !strings.HasPrefix(loc, "/admin/queues") {
		t.Errorf("redirect to %q: want /admin/queues without the token", loc)
	}
	var ck *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == AdminCookie {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v: want an HttpOnly SameSite=Strict %s cookie", ck, AdminCookie)
	}

	// The page is asynqmon's UI, rooted under /admin/queues.
	page := readAll(t, adminGet(t, ts.URL+"/admin/queues", "Cookie", ck.Name+"="+ck.Value))
	if !strings.Contains(page, `src="/admin/queues/static/js/`) || !strings.Contains(page, "Asynq") {
		t.Errorf("page does not load its assets from /admin/queues/static/: %.300s", page)
	}

	// The queue list and task payloads, summarized (no action values).
	var list struct {
		Queues []struct {
			Queue   string `json:"queue"`
			Pending int    `json:"pending"`
		} `json:"queues"`
	}
	resp := adminGet(t, ts.URL+"/admin/queues/api/queues", "Authorization", "Bearer "+tok)
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Queues) != 1 || list.Queues[0].Queue != "interactive" || list.Queues[0].Pending != 1 {
		t.Errorf("queues %+v: want interactive with 1 pending", list.Queues)
	}
	tasks := readAll(t, adminGet(t, ts.URL+"/admin/queues/api/queues/interactive/pending_tasks", "Authorization", "Bearer "+tok))
	if !strings.Contains(tasks, "job_1") || strings.Contains(tasks, "hunter2") {
		t.Errorf("pending tasks %s: want the job id and no action values", tasks)
	}

	// Unsafe requests with the cookie from another origin are refused.
	req, _ := http.NewRequest("POST", ts.URL+"/admin/queues/api/queues/interactive:pause", nil)
	req.Header.Set("Cookie", ck.Name+"="+ck.Value)
	req.Header.Set("Origin", "https://evil.example")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin POST with the cookie: %d, want 403", r2.StatusCode)
	}
}

func readAll(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

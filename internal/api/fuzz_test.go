package api

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// submitRoutes are the routes FuzzSubmit posts to, picked by the first
// fuzz argument.
var submitRoutes = []struct{ method, path string }{
	{"POST", "/v1/fetch"},
	{"POST", "/v1/interact"},
	{"POST", "/v1/batches"},
	{"PUT", "/v1/identities/fuzz"},
}

// noWait drops ?wait= from a fuzzed query: an accepted job would hold the
// answer until it ends, and no worker runs here (FuzzParseWait covers it).
func noWait(q string) string {
	v, err := url.ParseQuery(q)
	if err != nil {
		return ""
	}
	v.Del("wait")
	return v.Encode()
}

// FuzzSubmit drives request decoding and validation through the real Echo
// handler (auth, body limits, depth limit, strict decoding, validation,
// plan checks, the stores on a real Redis): whatever the body, idempotency
// key and query, the answer is never a 5xx; errors are problem+json with a
// matching status and successes JSON.
func FuzzSubmit(f *testing.F) {
	for _, seed := range []struct {
		route uint8
		query string
		idem  string
		body  string
	}{
		{0, "", "", `{"url":"https://example.com/"}`},
		{0, "", "k1", `{"url":"https://example.com/","render_js":true,"output":["html","markdown","links","screenshot"],"timeout_ms":1000}`},
		{0, "", "", `{"url":"https://example.com/","session":{"id":"s-1"},"webhook":{"url":"https://hooks.example.com/x","events":["job.failed"],"metadata":{"k":"v"}}}`},
		{0, "", "", `{"url":"https://example.com/","render_js":true,"actions":[{"type":"click","selector":"#a"}],"extract":{"mode":"selectors","selectors":{"t":"h1","l":{"selector":"a","attr":"href","all":true}}},"output":["json"]}`},
		{1, "", "", `{"url":"https://example.com/","actions":[{"type":"wait","ms":10},{"type":"evaluate","script":"1+1"},{"type":"navigate","url":"https://example.com/b"}]}`},
		{1, "wait=1s", "", `{"url":"https://example.com/"}`},
		{2, "", "", `{"urls":["https://example.com/a","https://example.com/b"],"template":{"output":["text"]}}`},
		{2, "", "", `{"crawl":{"start_url":"https://example.com/","max_depth":2,"max_pages":10,"include":["^/docs"]},"template":{}}`},
		{3, "", "", `{"user_agent":"Mozilla/5.0","locale":"de-DE","timezone":"Europe/Berlin","viewport":{"width":1280,"height":800},"headers":{"X-A":"b"}}`},
		{0, "", "", ``},
		{0, "", "", `null`},
		{0, "", "", `[]`},
		{0, "", "", `{"url":5}`},
		{0, "", "", `{"url":"http://u:p@example.com/"}`},
		{0, "", "", `{"url":"file:///etc/passwd"}`},
		{0, "", "", `{"url":"https://example.com/","timeout_ms":1e309}`},
		{0, "", "", `{"url":"https://example.com/"}{}`},
		{0, "", "", "{\"url\":\"\xff\"}"},
		{0, "", "", `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`},
		{0, "", "", `{"url":"https://example.com/","extract":{"mode":"schema","schema":{"a":"b"}},"output":["json"]}`},
		{0, "", "", `{"url":"https://example.com/","identity":"nobody"}`},
		{1, "", "", `{"url":"https://example.com/","actions":[{"type":"wait_for","selector":"a","state":"gone"}]}`},
		{2, "", "", `{"urls":"https://example.com/"}`},
		{3, "", "", `{"viewport":{"width":-1,"height":1e9}}`},
	} {
		f.Add(seed.route, seed.query, seed.idem, []byte(seed.body))
	}
	s := newHostileServer(f)
	f.Fuzz(func(t *testing.T, route uint8, query, idem string, body []byte) {
		r := submitRoutes[int(route)%len(submitRoutes)]
		target := r.path
		if q := noWait(query); q != "" {
			target += "?" + q
		}
		hdr := map[string]string{}
		if idem != "" && validHeaderValue(idem) {
			hdr["Idempotency-Key"] = idem
		}
		rec := serveHostile(s, r.method, target, body, hdr)
		if msg := checkAnswer(rec); msg != "" {
			t.Fatalf("%s %s %q: %d %s", r.method, target, body, rec.Code, msg)
		}
	})
}

// readRoutes are the routes FuzzReadRoutes calls with a fuzzed id and query.
var readRoutes = []struct{ method, path string }{
	{"GET", "/v1/jobs/{}"},
	{"DELETE", "/v1/jobs/{}"},
	{"GET", "/v1/jobs/{}/deliveries"},
	{"GET", "/v1/jobs"},
	{"GET", "/v1/sessions/{}"},
	{"DELETE", "/v1/sessions/{}"},
	{"GET", "/v1/sessions"},
	{"GET", "/v1/identities/{}"},
	{"DELETE", "/v1/identities/{}"},
	{"GET", "/v1/batches/{}"},
	{"GET", "/v1/batches/{}/jobs"},
	{"DELETE", "/v1/batches/{}"},
	{"GET", "/v1/batches"},
}

// FuzzReadRoutes fuzzes ids and query parameters (limit, cursor, status,
// include, …) on the routes that read, list and delete: never a 5xx, and
// errors are problem+json (a malformed id is 404 or 422).
func FuzzReadRoutes(f *testing.F) {
	for _, seed := range []struct {
		route uint8
		id    string
		query string
	}{
		{0, "job_00000000000000000000000000", ""},
		{0, "../../etc/passwd", ""},
		{1, "job_'OR 1=1", ""},
		{2, "job_*", ""},
		{3, "", "limit=-1"},
		{3, "", "limit=99999999999999999999&cursor=garbage"},
		{3, "", "status=running&limit=1000&cursor=1700000000000000"},
		{4, "a:b.c-d_e", "include=state"},
		{5, "%2e%2e%2f", ""},
		{6, "", "cursor=\x00&limit=0"},
		{7, "de-desktop", ""},
		{8, "bad name", ""},
		{9, "bat_00000000000000000000000000", ""},
		{10, "bat_x", "cursor=-1&limit=5"},
		{11, "", ""},
		{12, "", "limit=1e3"},
	} {
		f.Add(seed.route, seed.id, seed.query)
	}
	s := newHostileServer(f)
	f.Fuzz(func(t *testing.T, route uint8, id, query string) {
		r := readRoutes[int(route)%len(readRoutes)]
		target := r.path
		if id == "" {
			id = "x"
		}
		if len(id) > 20000 {
			id = id[:20000]
		}
		target = strings.ReplaceAll(target, "{}", url.PathEscape(id))
		if q := noWait(query); q != "" {
			target += "?" + q
		}
		rec := serveHostile(s, r.method, target, nil, nil)
		if msg := checkAnswer(rec); msg != "" {
			t.Fatalf("%s %s: %d %s", r.method, target, rec.Code, msg)
		}
	})
}

// FuzzParseWait holds ?wait= to its contract: an error, or a duration from
// 0 to 60 s.
func FuzzParseWait(f *testing.F) {
	for _, s := range []string{"", "30s", "90s", "2.5", "-1", "NaN", "inf", "1e309", "1e12", "forever", "9223372036854775807", "-0", "0x10", "1h1m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := parseWaitValue(v)
		if err == nil && (d < 0 || d > maxWait) {
			t.Fatalf("wait=%q gave %v", v, d)
		}
	})
}

func parseWaitValue(v string) (time.Duration, error) {
	req := httptest.NewRequest("GET", "/?wait="+url.QueryEscape(v), nil)
	return parseWait(echo.New().NewContext(req, httptest.NewRecorder()))
}

// validHeaderValue reports whether v may be sent as a header value.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

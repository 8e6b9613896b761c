package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/internal/tenant"
)

// hostileKey is the API key of the tenant the hostile-input tests and fuzz
// targets act as: plan pro, limits so high that only validation answers.
const hostileKey = "pf_test_hostile_key"

// newHostileServer builds the real server (Echo routes, auth, decoding,
// validation, stores) on a real Redis, for driving with httptest.
func newHostileServer(tb testing.TB) *Server {
	tb.Helper()
	rdb := redistest.Start(tb).Client(tb, 0)
	tenants, err := tenant.New([]*tenant.Tenant{{ID: "hostile", Plan: tenant.PlanPro, APIKeys: []string{hostileKey},
		Limits: tenant.Limits{RequestsPerSecond: 1e9, QueuedJobs: 1 << 30, BatchSize: 1000}}})
	if err != nil {
		tb.Fatal(err)
	}
	sessions, err := session.New(rdb, session.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	s := New(Config{}, Deps{Redis: rdb, Tenants: tenants, Sessions: sessions, Logger: slog.New(slog.DiscardHandler)})
	tb.Cleanup(func() { s.queue.Close() })
	return s
}

// serveHostile sends one request through the server's handler.
func serveHostile(s *Server, method, target string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, "/", rd)
	if u, err := url.ParseRequestURI(target); err == nil {
		req.URL = u
		req.RequestURI = target
	}
	req.Header.Set("Authorization", "Bearer "+hostileKey)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

// checkAnswer reports what is wrong with an answer: a 5xx, an error that is
// not problem+json with a matching status, or a success that is not JSON.
func checkAnswer(rec *httptest.ResponseRecorder) string {
	ct := rec.Header().Get(echo.HeaderContentType)
	switch {
	case rec.Code >= 500:
		return "server error " + rec.Body.String()
	case rec.Code >= 400:
		if !strings.HasPrefix(ct, "application/problem+json") {
			return "error without problem+json: " + ct
		}
		var p Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || p.Code == "" || p.Type == "" || p.Title == "" {
			return "malformed problem " + rec.Body.String()
		}
	case rec.Code >= 200 && rec.Code < 300:
		if rec.Code != http.StatusNoContent && !json.Valid(rec.Body.Bytes()) {
			return "success without a JSON body"
		}
	default:
		return "unexpected status"
	}
	return ""
}

func TestJSONDepthOver(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"a":[`, n/2) + strings.Repeat(`]}`, n/2) }
	for _, tc := range []struct {
		body string
		over bool
	}{
		{`{}`, false},
		{deep(32), false},
		{deep(34), true},
		{strings.Repeat("[", 33), true}, // unbalanced: counted all the same
		{`{"s":"` + strings.Repeat("[", 100) + `"}`, false},   // brackets inside a string
		{`{"s":"\"` + strings.Repeat("{", 100) + `"}`, false}, // after an escaped quote
		{`{"s":"\\"}` + strings.Repeat("[", 40) + "", true},   // an escaped backslash ends the string
		{`"` + strings.Repeat(`\\`, 10) + `"` + strings.Repeat("{", 33), true},
		{strings.Repeat("]", 1000) + strings.Repeat("[", 32), false}, // closing first never goes negative past the limit
	} {
		if got := jsonDepthOver([]byte(tc.body), MaxJSONDepth); got != tc.over {
			t.Errorf("jsonDepthOver(%.60q) = %t, want %t", tc.body, got, tc.over)
		}
	}
}

func TestParseWait(t *testing.T) {
	e := echo.New()
	for _, tc := range []struct {
		q    string
		want time.Duration
		bad  bool
	}{
		{"", 0, false}, {"30s", 30 * time.Second, false}, {"90s", 60 * time.Second, false}, {"2.5", 2500 * time.Millisecond, false},
		{"1e12", 60 * time.Second, false}, {"9223372036854775807", 60 * time.Second, false}, {"inf", 60 * time.Second, false},
		{"forever", 0, true}, {"-5s", 0, true}, {"-1", 0, true}, {"NaN", 0, true}, {"1e309", 0, true}, {"-inf", 0, true}, {"30", 30 * time.Second, false},
	} {
		req := httptest.NewRequest("GET", "/?wait="+url.QueryEscape(tc.q), nil)
		d, err := parseWait(e.NewContext(req, httptest.NewRecorder()))
		if (err != nil) != tc.bad || (!tc.bad && d != tc.want) {
			t.Errorf("wait=%q: %v, %v; want %v (error %t)", tc.q, d, err, tc.want, tc.bad)
		}
	}
}

// TestDecodeLimits drives the real handler: a body past the size limit is
// 413, nesting past MaxJSONDepth is 400 json_too_deep on every route that
// decodes JSON, and neither creates anything.
func TestDecodeLimits(t *testing.T) {
	s := newHostileServer(t)
	deep := strings.Repeat("[", 40) + strings.Repeat("]", 40)
	meta := func(depth int) string {
		return `{"url":"http://example.com/","webhook":{"url":"http://example.com/h","metadata":` +
			strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth) + `}}`
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"fetch deep", "POST", "/v1/fetch", deep, 400, "json_too_deep"},
		{"fetch nested to the limit", "POST", "/v1/fetch", meta(30), 202, ""}, // 30 levels inside two objects: 32
		{"fetch nested past the limit", "POST", "/v1/fetch", meta(31), 400, "json_too_deep"},
		{"interact deep", "POST", "/v1/interact", deep, 400, "json_too_deep"},
		{"batch deep", "POST", "/v1/batches", deep, 400, "json_too_deep"},
		{"identity deep", "PUT", "/v1/identities/deep", deep, 400, "json_too_deep"},
		{"fetch too large", "POST", "/v1/fetch", `{"url":"http://example.com/","webhook":{"url":"http://example.com/h","metadata":{"p":"` + strings.Repeat("x", 1<<20) + `"}}}`, 413, "body_too_large"},
		{"identity too large", "PUT", "/v1/identities/big", `{"user_agent":"` + strings.Repeat("x", 100<<10) + `"}`, 413, "body_too_large"},
	} {
		rec := serveHostile(s, tc.method, tc.path, []byte(tc.body), nil)
		if msg := checkAnswer(rec); msg != "" {
			t.Errorf("%s: %s", tc.name, msg)
		}
		var p Problem
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		if rec.Code != tc.status || p.Code != tc.code {
			t.Errorf("%s: %d %q, want %d %q: %.200s", tc.name, rec.Code, p.Code, tc.status, tc.code, rec.Body.String())
		}
	}
	rec := serveHostile(s, "GET", "/v1/jobs", nil, nil)
	var l struct {
		Data []json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &l)
	if len(l.Data) != 1 {
		t.Errorf("%d jobs exist; only the one valid request should have created one", len(l.Data))
	}
}

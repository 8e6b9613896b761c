package api_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/pagefleet/pagefleet/internal/api"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/internal/tenant"
)

const (
	identKeyPro  = "pf_test_ident_pro_key"
	identKeyEnt  = "pf_test_ident_ent_key"
	identKeyFree = "pf_test_ident_free_key"
)

func newIdentityServer(t *testing.T) *httptest.Server {
	t.Helper()
	rdb := redistest.Start(t).Client(t, 0)
	tenants, err := tenant.New([]*tenant.Tenant{
		{ID: "acme", Plan: tenant.PlanPro, APIKeys: []string{identKeyPro}},
		{ID: "globex", Plan: tenant.PlanEnterprise, APIKeys: []string{identKeyEnt}},
		{ID: "freebie", Plan: tenant.PlanFree, APIKeys: []string{identKeyFree}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Config{}, api.Deps{Redis: rdb, Tenants: tenants, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

type problemDoc struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Errors []struct {
		Field string `json:"field"`
	} `json:"errors"`
}

func (p problemDoc) fields() string {
	var f []string
	for _, e := range p.Errors {
		f = append(f, e.Field)
	}
	sort.Strings(f)
	return strings.Join(f, ",")
}

func call(t *testing.T, ts *httptest.Server, method, path, key, body string, out any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, ts.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("%s %s: %d without problem+json: %s", method, path, resp.StatusCode, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func TestIdentityRoutes(t *testing.T) {
	ts := newIdentityServer(t)
	var got map[string]any
	code := call(t, ts, "PUT", "/v1/identities/de-desktop", identKeyPro,
		`{"locale":"de-de","timezone":"Europe/Berlin","viewport":{"width":1280,"height":800},"headers":{"x-team":"blue"}}`, &got)
	if code != 200 {
		t.Fatalf("put: %d %v", code, got)
	}
	for k, want := range map[string]any{"name": "de-desktop", "locale": "de-DE", "timezone": "Europe/Berlin",
		"accept_language": "de-DE,de;q=0.9", "user_agent": ""} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if h, _ := got["headers"].(map[string]any); h["X-Team"] != "blue" {
		t.Errorf("headers %v", got["headers"])
	}
	if v, _ := got["viewport"].(map[string]any); v["width"] != 1280.0 || v["height"] != 800.0 {
		t.Errorf("viewport %v", got["viewport"])
	}
	if got["created_at"] == nil || got["updated_at"] == nil {
		t.Errorf("times missing: %v", got)
	}

	// A GET answer sent back with PUT is accepted (times ignored).
	var again map[string]any
	back, _ := json.Marshal(got)
	if code := call(t, ts, "PUT", "/v1/identities/de-desktop", identKeyPro, string(back), &again); code != 200 || again["created_at"] != got["created_at"] {
		t.Errorf("round trip: %d %v", code, again)
	}
	var one map[string]any
	if code := call(t, ts, "GET", "/v1/identities/de-desktop", identKeyPro, "", &one); code != 200 || one["locale"] != "de-DE" {
		t.Errorf("get: %d %v", code, one)
	}
	var l struct {
		Data       []map[string]any `json:"data"`
		NextCursor *string          `json:"next_cursor"`
	}
	if code := call(t, ts, "GET", "/v1/identities", identKeyPro, "", &l); code != 200 || len(l.Data) != 1 || l.NextCursor == nil || *l.NextCursor != "" {
		t.Errorf("list: %d %+v", code, l)
	}

	// Another tenant sees nothing.
	var p problemDoc
	if code := call(t, ts, "GET", "/v1/identities/de-desktop", identKeyEnt, "", &p); code != 404 {
		t.Errorf("other tenant get: %d", code)
	}
	if code := call(t, ts, "DELETE", "/v1/identities/de-desktop", identKeyEnt, "", nil); code != 404 {
		t.Errorf("other tenant delete: %d", code)
	}
	var el struct {
		Data []any `json:"data"`
	}
	if call(t, ts, "GET", "/v1/identities", identKeyEnt, "", &el); el.Data == nil || len(el.Data) != 0 {
		t.Errorf("other tenant list: %v", el.Data)
	}

	// Validation names each field.
	tests := []struct{ body, fields string }{
		{`{"timezone":"Mars/Base","locale":"xx_YY_ZZ!","viewport":{"width":10,"height":10}}`, "locale,timezone,viewport.height,viewport.width"},
		{`{"headers":{"Host":"x","Cookie":"a=b","Proxy-Authorization":"x","Connection":"close"}}`, "headers.Connection,headers.Cookie,headers.Host,headers.Proxy-Authorization"},
		{`{"name":"other"}`, "name"},
		{`{"accept_language":"de;q=7","user_agent":"a\u0001"}`, "accept_language,user_agent"},
		{`{"viewport":{"width":"wide","height":800}}`, "viewport.width"},
		{`{"colour":"blue"}`, "colour"},
	}
	for _, tt := range tests {
		var p problemDoc
		if code := call(t, ts, "PUT", "/v1/identities/x", identKeyPro, tt.body, &p); code != 422 || p.fields() != tt.fields {
			t.Errorf("put %s: %d %s, want 422 naming %s", tt.body, code, p.fields(), tt.fields)
		}
	}
	if code := call(t, ts, "PUT", "/v1/identities/bad%20name", identKeyPro, `{}`, &p); code != 422 || p.fields() != "name" {
		t.Errorf("bad name: %d %s", code, p.fields())
	}
	if code := call(t, ts, "PUT", "/v1/identities/x", identKeyPro, `{`, nil); code != 400 {
		t.Errorf("malformed: %d", code)
	}

	// Free plan: 403 plan_required everywhere, also on a job naming one.
	for _, r := range [][3]string{{"PUT", "/v1/identities/x", `{}`}, {"GET", "/v1/identities/x", ""}, {"GET", "/v1/identities", ""},
		{"DELETE", "/v1/identities/x", ""}, {"POST", "/v1/fetch", `{"url":"https://example.com","identity":"x"}`}} {
		var p problemDoc
		if code := call(t, ts, r[0], r[1], identKeyFree, r[2], &p); code != 403 || p.Code != "plan_required" {
			t.Errorf("free %s %s: %d %s", r[0], r[1], code, p.Code)
		}
	}
	// A job naming an unknown identity: 422 naming identity.
	if code := call(t, ts, "POST", "/v1/fetch", identKeyPro, `{"url":"https://example.com","identity":"nope"}`, &p); code != 422 || p.fields() != "identity" {
		t.Errorf("unknown identity: %d %s", code, p.fields())
	}
	if code := call(t, ts, "POST", "/v1/fetch", identKeyEnt, `{"url":"https://example.com","identity":"de-desktop"}`, &p); code != 422 || p.fields() != "identity" {
		t.Errorf("other tenant's identity: %d %s", code, p.fields())
	}

	if code := call(t, ts, "DELETE", "/v1/identities/de-desktop", identKeyPro, "", nil); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if code := call(t, ts, "GET", "/v1/identities/de-desktop", identKeyPro, "", nil); code != 404 {
		t.Errorf("get after delete: %d", code)
	}
	if code := call(t, ts, "GET", "/v1/identities?cursor=%21%21", identKeyPro, "", &p); code != 422 || p.fields() != "cursor" {
		t.Errorf("bad cursor: %d %s", code, p.fields())
	}
}

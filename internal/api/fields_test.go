package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/submit"
)

// TestFieldErrorPaths: a 422 names every bad field of the body, each by its
// JSON path, whether the value has the wrong type, the key is unknown, or a
// check after decoding refuses it; and it names nothing twice.
func TestFieldErrorPaths(t *testing.T) {
	s := newHostileServer(t)
	for _, tt := range []struct {
		name, path, body string
		want             []string
	}{
		{"type error inside an array", "/v1/interact",
			`{"url":"https://example.com","actions":[{"type":"click","selector":"#a"},{"type":"click","selector":5}]}`,
			[]string{"actions[1].selector"}},
		{"unknown key inside an array", "/v1/interact",
			`{"url":"https://example.com","actions":[{"type":"click","selector":"#a","foo":1}]}`,
			[]string{"actions[0].foo"}},
		{"a type error does not hide the other bad fields", "/v1/fetch",
			`{"url":"ftp://x","render_js":"yes","output":["bogus"]}`,
			[]string{"output[0]", "render_js", "url"}},
		{"several type errors and an unknown key", "/v1/fetch",
			`{"url":5,"timeout_ms":"slow","output":"html","webhook":{"url":"https://h.example.com","metadata":[1]},"x":1}`,
			[]string{"output", "timeout_ms", "url", "webhook.metadata", "x"}},
		{"an element that is not an object keeps the others' indexes", "/v1/interact",
			`{"url":"https://example.com","actions":["click",{"type":"click"}]}`,
			[]string{"actions[0]", "actions[1].selector"}},
		{"a whole number is wanted", "/v1/fetch",
			`{"url":"https://example.com","timeout_ms":1.5}`,
			[]string{"timeout_ms"}},
		{"batch template and body", "/v1/batches",
			`{"urls":["https://example.com/"],"template":{"render_js":true,"timeout_ms":"x","actions":[{"type":"click","selector":[]}]},"bogus":true}`,
			[]string{"bogus", "template.actions[0].selector", "template.timeout_ms"}},
		{"identity", "/v1/identities/de",
			`{"user_agent":7,"viewport":{"width":"wide","height":800},"headers":{"X-A":1}}`,
			[]string{"headers.X-A", "user_agent", "viewport.width"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			method := "POST"
			if strings.HasPrefix(tt.path, "/v1/identities/") {
				method = "PUT"
			}
			rec := serveHostile(s, method, tt.path, []byte(tt.body), nil)
			if msg := checkAnswer(rec); msg != "" {
				t.Fatal(msg)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Code != http.StatusUnprocessableEntity {
				t.Fatalf("%d %s, want 422", rec.Code, rec.Body)
			}
			var got []string
			for _, e := range p.Errors {
				if e.Message == "" {
					t.Errorf("%s has no message", e.Field)
				}
				got = append(got, e.Field)
			}
			sort.Strings(got)
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("fields %v, want %v (%s)", got, tt.want, rec.Body)
			}
		})
	}
}

// A body of a million bad values answers at once with at most 100 errors
// (the walk stops there; the merge with later checks is linear).
func TestFieldErrorsBounded(t *testing.T) {
	s := newHostileServer(t)
	for _, body := range []string{
		`{"url":"https://example.com","actions":[` + strings.Repeat("1,", 300000) + `1]}`,
		`{"url":"https://example.com","output":[` + strings.Repeat(`1,"x",`, 80000) + `1]}`,
	} {
		start := time.Now()
		rec := serveHostile(s, "POST", "/v1/interact", []byte(body), nil)
		took := time.Since(start)
		var p Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Code != http.StatusUnprocessableEntity {
			t.Fatalf("%d %.300s", rec.Code, rec.Body)
		}
		if len(p.Errors) == 0 || len(p.Errors) > maxFieldErrors {
			t.Errorf("%d errors, want 1 to %d", len(p.Errors), maxFieldErrors)
		}
		t.Logf("%d bytes: %d errors, %d-byte answer, %v", len(body), len(p.Errors), rec.Body.Len(), took)
	}
}

// A repeated Idempotency-Key whose job has expired (PAGEFLEET_RESULT_TTL
// under 24 h) answers 410 and creates nothing; while the first request may
// still be writing its job, 409.
func TestIdempotencyKeyOfExpiredJob(t *testing.T) {
	s := newHostileServer(t)
	body := []byte(`{"url":"https://example.com/"}`)
	hdr := map[string]string{"Idempotency-Key": "once"}
	rec := serveHostile(s, "POST", "/v1/fetch", body, hdr)
	var acc struct{ ID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &acc); err != nil || rec.Code != http.StatusAccepted {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	ctx := t.Context()
	s.rc.Del(ctx, "{pf}:job:"+acc.ID) // the job expired…
	k := testIdemKey("hostile", "once")
	s.rc.PExpire(ctx, k, 20*time.Hour) // …hours after the key was set
	rec = serveHostile(s, "POST", "/v1/fetch", body, hdr)
	var p Problem
	if json.Unmarshal(rec.Body.Bytes(), &p); rec.Code != http.StatusGone || p.Code != "idempotency_expired" {
		t.Fatalf("repeat after expiry: %d %s", rec.Code, rec.Body)
	}
	s.rc.PExpire(ctx, k, submit.IdemTTL) // a key set just now whose job is not written yet
	rec = serveHostile(s, "POST", "/v1/fetch", body, hdr)
	if json.Unmarshal(rec.Body.Bytes(), &p); rec.Code != http.StatusConflict || p.Code != "idempotency_conflict" {
		t.Fatalf("repeat while being written: %d %s", rec.Code, rec.Body)
	}
}

// A body with a bad field and a second JSON value after it is malformed
// (400), as a body without the bad field is.
func TestTrailingValueWithBadField(t *testing.T) {
	s := newHostileServer(t)
	for _, body := range []string{`{"url":5} {"url":"https://example.com"}`, `{"url":"https://example.com"} 1`} {
		rec := serveHostile(s, "POST", "/v1/fetch", []byte(body), nil)
		var p Problem
		if json.Unmarshal(rec.Body.Bytes(), &p); rec.Code != http.StatusBadRequest || p.Code != "malformed_json" {
			t.Errorf("%s: %d %s", body, rec.Code, rec.Body)
		}
	}
}

// At most 50 actions: the 51st is refused, naming actions.
func TestAtMostFiftyActions(t *testing.T) {
	s := newHostileServer(t)
	for _, n := range []int{50, 51} {
		acts := strings.TrimSuffix(strings.Repeat(`{"type":"wait","ms":1},`, n), ",")
		rec := serveHostile(s, "POST", "/v1/interact", []byte(`{"url":"https://example.com/","actions":[`+acts+`]}`), nil)
		var p Problem
		json.Unmarshal(rec.Body.Bytes(), &p)
		switch {
		case n == 50 && rec.Code != http.StatusAccepted:
			t.Errorf("50 actions: %d %s", rec.Code, rec.Body)
		case n == 51 && (rec.Code != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Field != "actions"):
			t.Errorf("51 actions: %d %s", rec.Code, rec.Body)
		}
	}
}

// testIdemKey is the Redis key of a tenant's job Idempotency-Key, which this
// test ages by hand.
func testIdemKey(tenant, key string) string {
	h := sha256.Sum256([]byte(key))
	return "{pf}:t:" + tenant + ":idem:" + hex.EncodeToString(h[:16])
}

package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/client"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// fake serves handler and returns a client of it.
func fake(t *testing.T, h http.HandlerFunc) *client.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return client.New(srv.URL+"/", "k1")
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name   string
		h      http.HandlerFunc
		status int
		code   string
		detail string
		after  time.Duration
		fields int
	}{
		{"problem", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(422)
			io.WriteString(w, `{"type":"https://pagefleet.dev/problems/validation-failed","title":"Unprocessable Entity","status":422,"detail":"invalid fields: url","code":"validation_failed","errors":[{"field":"url","message":"is required"}]}`)
		}, 422, "validation_failed", "invalid fields: url", 0, 1},
		{"retry after", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
			io.WriteString(w, `{"type":"x","title":"Too Many Requests","status":429,"code":"rate_limited"}`)
		}, 429, "rate_limited", "", 7 * time.Second, 0},
		{"not a problem", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			io.WriteString(w, "<html>bad gateway</html>")
		}, 502, "", "<html>bad gateway</html>", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fake(t, tt.h).Job(context.Background(), "job_1")
			var perr *client.Error
			if !errors.As(err, &perr) {
				t.Fatalf("err = %v, want *client.Error", err)
			}
			if perr.Status != tt.status || perr.Code != tt.code || perr.Detail != tt.detail || perr.RetryAfter != tt.after || len(perr.Errors) != tt.fields {
				t.Errorf("got %+v", perr)
			}
			if perr.Temporary() != (tt.status == 429) {
				t.Errorf("Temporary() = %v", perr.Temporary())
			}
		})
	}
}

func TestRequests(t *testing.T) {
	var got *http.Request
	var body string
	c := fake(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, body = r, string(b)
		w.Header().Set("Location", "/v1/jobs/job_1")
		w.Header().Set("Idempotent-Replayed", "true")
		w.WriteHeader(202)
		io.WriteString(w, `{"id":"job_1","kind":"fetch","status":"queued","created_at":"2026-03-01T12:00:00Z"}`)
	})
	acc, err := c.Fetch(context.Background(), client.Request{URL: "https://example.com"}, client.IdempotencyKey("k-1"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != "POST" || got.URL.Path != "/v1/fetch" || got.Header.Get("Authorization") != "Bearer k1" ||
		got.Header.Get("Idempotency-Key") != "k-1" || got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request: %s %s %v", got.Method, got.URL, got.Header)
	}
	if body != `{"url":"https://example.com"}` {
		t.Errorf("body = %s", body)
	}
	if acc.ID != "job_1" || acc.Location != "/v1/jobs/job_1" || !acc.Replayed || acc.CreatedAt.IsZero() {
		t.Errorf("accepted = %+v", acc)
	}
	// Path segments are escaped; list options become the query.
	_, _ = c.Session(context.Background(), "a/b:c", true)
	if got.URL.EscapedPath() != "/v1/sessions/a%2Fb:c" || got.URL.RawQuery != "include=state" {
		t.Errorf("session request: %s ? %s", got.URL.EscapedPath(), got.URL.RawQuery)
	}
	_, _ = c.Jobs(context.Background(), client.ListOptions{Status: "failed", Limit: 5, Cursor: "17"})
	if q := got.URL.Query(); q.Get("status") != "failed" || q.Get("limit") != "5" || q.Get("cursor") != "17" {
		t.Errorf("jobs query: %s", got.URL.RawQuery)
	}
}

func TestWait(t *testing.T) {
	var calls atomic.Int32
	c := fake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") == "" {
			t.Errorf("Wait sent no ?wait=: %s", r.URL)
		}
		n := calls.Add(1)
		switch {
		case n == 1: // the store blinked
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
			io.WriteString(w, `{"type":"x","title":"Service Unavailable","status":503,"code":"unavailable"}`)
		case n < 4:
			fmt.Fprint(w, `{"id":"job_1","kind":"fetch","status":"running","created_at":"2026-03-01T12:00:00Z","attempts":1}`)
		default:
			fmt.Fprint(w, `{"id":"job_1","kind":"fetch","status":"succeeded","created_at":"2026-03-01T12:00:00Z","attempts":1}`)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := c.Wait(ctx, "job_1")
	if err != nil || j.Status != "succeeded" || calls.Load() != 4 {
		t.Fatalf("Wait = %+v, %v after %d calls", j, err, calls.Load())
	}
}

func TestWaitContext(t *testing.T) {
	c := fake(t, func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("wait"))
		if d > 2*time.Second {
			t.Errorf("wait=%s asks for longer than the context allows", d)
		}
		time.Sleep(min(d, 200*time.Millisecond))
		fmt.Fprint(w, `{"id":"job_1","kind":"fetch","status":"queued","created_at":"2026-03-01T12:00:00Z","attempts":0}`)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	j, err := c.Wait(ctx, "job_1")
	if !errors.Is(err, context.DeadlineExceeded) || j == nil || j.Status != "queued" {
		t.Fatalf("Wait = %+v, %v; want the last job and the context's error", j, err)
	}
}

func TestBatchResultsStream(t *testing.T) {
	lines := `{"id":"job_1","kind":"fetch","status":"succeeded","created_at":"2026-03-01T12:00:00Z","attempts":1}
{"id":"job_2","kind":"fetch","status":"failed","created_at":"2026-03-01T12:00:00Z","attempts":3}

{"id":"job_3","kind":"fetch","status":"succeeded","created_at":"2026-03-01T12:00:00Z","attempts":1}
`
	c := fake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/x-ndjson" || r.URL.Path != "/v1/batches/bat_1/jobs" {
			t.Errorf("request: %s %v", r.URL, r.Header)
		}
		if strings.HasSuffix(r.URL.Path, "bat_1/jobs") {
			w.Header().Set("Content-Type", "application/x-ndjson")
			io.WriteString(w, lines)
		}
	})
	var ids []string
	for j, err := range c.BatchResults(context.Background(), "bat_1") {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID+":"+j.Status)
	}
	if strings.Join(ids, " ") != "job_1:succeeded job_2:failed job_3:succeeded" {
		t.Errorf("ids = %v", ids)
	}
	n := 0
	for range c.BatchResults(context.Background(), "bat_1") {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break did not stop the loop")
	}
}

func TestBatchResultsErrors(t *testing.T) {
	c := fake(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "missing") {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(404)
			io.WriteString(w, `{"type":"x","title":"Not Found","status":404,"code":"not_found"}`)
			return
		}
		io.WriteString(w, "{\"id\":\"job_1\",\"status\":\"succeeded\"}\nnot json\n")
	})
	var errs []error
	for _, err := range c.BatchResults(context.Background(), "missing") {
		errs = append(errs, err)
	}
	var perr *client.Error
	if len(errs) != 1 || !errors.As(errs[0], &perr) || perr.Status != 404 {
		t.Errorf("missing batch: %v", errs)
	}
	errs = nil
	for j, err := range c.BatchResults(context.Background(), "bat_2") {
		errs = append(errs, err)
		_ = j
	}
	if len(errs) != 2 || errs[0] != nil || errs[1] == nil {
		t.Errorf("a bad line must end the stream with an error: %v", errs)
	}
}

func TestVerifyWebhook(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := `{"type":"job.succeeded","timestamp":"2026-03-01T12:00:00Z","data":{"id":"job_1","kind":"fetch","status":"succeeded","created_at":"2026-03-01T12:00:00Z","attempts":1},"metadata":{"k":"v"}}`
	deliver := func(body string, sigBody string) *http.Request {
		now := time.Now()
		sig, err := spec.SignWebhook(secret, "msg_1", now, []byte(sigBody))
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/hook", strings.NewReader(body))
		r.Header.Set("webhook-id", "msg_1")
		r.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		r.Header.Set("webhook-signature", sig)
		return r
	}
	r := deliver(body, body)
	ev, err := client.VerifyWebhook(secret, r)
	if err != nil {
		t.Fatal(err)
	}
	j, err := ev.Job()
	if ev.ID != "msg_1" || ev.Type != client.EventJobSucceeded || string(ev.Metadata) != `{"k":"v"}` || err != nil || j.ID != "job_1" {
		t.Errorf("event = %+v, job %+v, %v", ev, j, err)
	}
	if again, _ := io.ReadAll(r.Body); string(again) != body {
		t.Errorf("the body is not left for the handler: %q", again)
	}
	_, err = client.VerifyWebhook(secret, deliver(strings.Replace(body, "succeeded", "failed", 1), body))
	if !errors.Is(err, spec.ErrWebhookSignature) {
		t.Errorf("tampered body: %v", err)
	}
	_, err = client.VerifyWebhook("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", deliver(body, body))
	if !errors.Is(err, spec.ErrWebhookSignature) {
		t.Errorf("other secret: %v", err)
	}
	r = deliver(body, body)
	r.Header.Del("webhook-signature")
	if _, err := client.VerifyWebhook(secret, r); !errors.Is(err, spec.ErrWebhookHeaders) {
		t.Errorf("unsigned: %v", err)
	}
}

// The client links neither the browser nor the server.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/chromedp/", "github.com/labstack/echo", "github.com/pagefleet/pagefleet/internal/api", "github.com/pagefleet/pagefleet/internal/browser"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("pkg/client links %s", dep)
			}
		}
	}
}

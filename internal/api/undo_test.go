package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/internal/tenant"
)

// outageHook wraps the real Redis client: armed, it takes Redis "down" (every
// command fails with EOF, as when Redis stops) for a second from the first
// command of asynq's — the moment after the job record was written and
// before its task is enqueued.
type outageHook struct {
	armed, down atomic.Bool
}

func (h *outageHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *outageHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.armed.Load() {
			for _, a := range cmd.Args() {
				if s, ok := a.(string); ok && strings.HasPrefix(s, "asynq:") {
					h.armed.Store(false)
					h.down.Store(true)
					time.AfterFunc(time.Second, func() { h.down.Store(false) })
					break
				}
			}
		}
		if h.down.Load() {
			cmd.SetErr(io.EOF)
			return io.EOF
		}
		return next(ctx, cmd)
	}
}

func (h *outageHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.down.Load() {
			for _, c := range cmds {
				c.SetErr(io.EOF)
			}
			return io.EOF
		}
		return next(ctx, cmds)
	}
}

// A submit whose task cannot be enqueued answers 503 and leaves nothing
// behind once Redis is back: no job record (a queued job that would never
// run), no place in the tenant's active count, none in the session's line,
// and the Idempotency-Key free for the client's retry.
func TestEnqueueFailureTakesTheJobBack(t *testing.T) {
	const key = "pf_test_undo_key"
	rdb := redistest.Start(t).Client(t, 0)
	hook := &outageHook{}
	rdb.AddHook(hook)
	tenants, err := tenant.New([]*tenant.Tenant{{ID: "undo", Plan: tenant.PlanPro, APIKeys: []string{key},
		Limits: tenant.Limits{RequestsPerSecond: 1e9, QueuedJobs: 1 << 30}}})
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := session.New(rdb, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{}, Deps{Redis: rdb, Tenants: tenants, Sessions: sessions, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { s.queue.Close() })
	submit := func(body, idem string) int {
		req := httptest.NewRequest(http.MethodPost, "/v1/fetch", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idem)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	ctx := context.Background()
	for _, c := range []struct{ name, body string }{
		{"plain", `{"url":"http://example.com/a"}`},
		{"session", `{"url":"http://example.com/b","session":{"id":"s1"}}`},
	} {
		hook.armed.Store(true)
		if code := submit(c.body, "idem-"+c.name); code != http.StatusServiceUnavailable {
			t.Fatalf("%s: submit during the outage answered %d, want 503", c.name, code)
		}
		deadline := time.Now().Add(10 * time.Second)
		for hook.down.Load() {
			time.Sleep(50 * time.Millisecond)
		}
		for {
			jobs, _ := rdb.Keys(ctx, "{pf}:job:*").Result()
			active, _ := rdb.Get(ctx, "{pf}:t:undo:active").Int()
			head, _ := sessions.Head(ctx, "undo", "s1")
			if len(jobs) == 0 && active == 0 && head == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: left behind 10 s after the outage: records %v, active count %d, session line head %q", c.name, jobs, active, head)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if code := submit(c.body, "idem-"+c.name); code != http.StatusAccepted {
			t.Errorf("%s: the retry with the same Idempotency-Key answered %d, want 202", c.name, code)
		}
		rdb.FlushDB(ctx)
	}
}

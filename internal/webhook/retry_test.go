package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/polite"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func TestRetryDelay(t *testing.T) {
	srv := redistest.Start(t)
	reg, _ := tenant.New(nil)
	d := NewDeliverer(Config{Schedule: []time.Duration{time.Second, time.Minute}, Tenants: reg, Log: rdb.NewDeliveries(srv.Client(t, 0), 0)})
	task := asynq.NewTask(jobs.KindWebhookDeliver, nil)
	plain := errors.New("503")
	for _, tc := range []struct {
		name     string
		n        int
		err      error
		min, max time.Duration
	}{
		{"first", 0, plain, time.Second, time.Second},
		{"second", 1, plain, time.Minute, time.Minute},
		{"last repeated", 7, plain, time.Minute, time.Minute},
		{"shorter retry-after ignored", 1, &retryError{status: 503, retryAfter: time.Second}, time.Minute, time.Minute},
		{"longer retry-after, rounded up to a whole second", 0, &retryError{status: 429, retryAfter: 90 * time.Second}, 90 * time.Second, 91 * time.Second},
		{"capped", 0, &retryError{status: 429, retryAfter: 48 * time.Hour}, MaxRetryDelay, MaxRetryDelay},
	} {
		got := d.RetryDelay(tc.n, tc.err, task)
		if got < tc.min || got > tc.max {
			t.Errorf("%s: RetryDelay = %v, want [%v, %v]", tc.name, got, tc.min, tc.max)
		}
	}
	if got := d.RetryDelay(0, plain, asynq.NewTask("fetch", nil)); got == time.Second {
		t.Errorf("other kinds should get asynq's default delay")
	}

	// A long schedule is capped too.
	d2 := NewDeliverer(Config{Schedule: []time.Duration{30 * time.Hour}, Tenants: reg, Log: rdb.NewDeliveries(srv.Client(t, 0), 0)})
	if got := d2.RetryDelay(0, plain, task); got != MaxRetryDelay {
		t.Errorf("RetryDelay = %v", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"120", 2 * time.Minute},
		{" 3 ", 3 * time.Second},
		{"999999999999", MaxRetryDelay},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"soon", 0},
	} {
		if got := polite.ParseRetryAfter(tc.v, now, MaxRetryDelay); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestNewDeliverTask(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t, 0)
	c := asynq.NewClientFromRedisClient(rc)
	insp := asynq.NewInspectorFromRedisClient(rc)
	body, err := NewEvent("job.succeeded", time.Now(), json.RawMessage(`{"id":"job_1"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &DeliverPayload{WebhookID: NewWebhookID(), Tenant: "acme", URL: "https://hooks.example.com/x", Owner: "job_1", Body: body, Type: "job.succeeded"}
	task, err := NewDeliverTask(p, ms(10, 20, 30))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	info, err := insp.GetTaskInfo(jobs.QueueWebhooks, p.WebhookID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != jobs.KindWebhookDeliver || info.MaxRetry != 3 || info.Timeout != TaskTimeout {
		t.Fatalf("task %+v", info)
	}
	got, err := DecodeDeliver(info.Payload)
	if err != nil || string(got.Body) != string(body) {
		t.Fatalf("payload %+v %v", got, err)
	}
	// One event is enqueued once.
	if _, err := c.Enqueue(task); !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Fatalf("second enqueue: %v", err)
	}
	if task, _ := NewDeliverTask(p, nil); task == nil {
		t.Fatal("no task with the default schedule")
	} else if _, err := c.EnqueueContext(context.Background(), task); !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Fatalf("enqueue: %v", err)
	}
	for _, bad := range []DeliverPayload{
		{Tenant: "acme", URL: p.URL, Owner: "o", Body: body, Type: "t"},
		{WebhookID: "msg_x", Tenant: "acme", URL: "ftp://x", Owner: "o", Body: body, Type: "t"},
		{WebhookID: "msg_x", Tenant: "acme", URL: p.URL, Owner: "o", Body: json.RawMessage("{"), Type: "t"},
	} {
		if _, err := NewDeliverTask(&bad, nil); !errors.Is(err, jobs.ErrBadPayload) {
			t.Errorf("NewDeliverTask(%+v) = %v", bad, err)
		}
	}
	var ev spec.Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type != "job.succeeded" || string(ev.Metadata) != "{}" || string(ev.Data) != `{"id":"job_1"}` {
		t.Fatalf("event %s: %v", body, err)
	}
}

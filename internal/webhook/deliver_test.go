package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// refVerify verifies a delivery with the Standard Webhooks reference library.
func refVerify(t *testing.T, secret string, h hit) error {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	return wh.Verify(h.body, h.header)
}

func TestDeliveryVerifiedByReferenceLibrary(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var (
		mu       sync.Mutex
		rejected []error
	)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, h hit) {
		if err := refVerify(t, e.secret, h); err != nil {
			mu.Lock()
			rejected = append(rejected, err)
			mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	job := spec.Job{ID: "job_1", Kind: spec.KindFetch, Status: spec.StatusSucceeded, CreatedAt: now, Attempts: 1,
		Result: &spec.Result{URL: "https://example.com/<&>", StatusCode: 200}}
	batch := map[string]any{"id": "bat_1", "status": "completed", "total": 2}
	w := &spec.Webhook{URL: rc.URL + "/hook", Events: []string{spec.EventJobSucceeded, spec.EventBatchCompleted},
		Metadata: json.RawMessage(`{"k":"v"}`)}

	if err := Enqueue(ctx, e.client, w, tenantSigned, "job_1", spec.EventJobSucceeded, job, nil); err != nil {
		t.Fatal(err)
	}
	if err := Enqueue(ctx, e.client, w, tenantSigned, "job_1", spec.EventJobFailed, job, nil); err != nil {
		t.Fatal(err) // not asked for: no delivery
	}
	if err := Enqueue(ctx, e.client, w, tenantSigned, "bat_1", spec.EventBatchCompleted, batch, nil); err != nil {
		t.Fatal(err)
	}
	if err := Enqueue(ctx, e.client, nil, tenantSigned, "job_2", spec.EventJobSucceeded, job, nil); err != nil {
		t.Fatal(err) // no webhook: no delivery
	}

	jobLog := e.waitLog(t, "job_1", 1, 10*time.Second)
	batLog := e.waitLog(t, "bat_1", 1, 10*time.Second)
	for _, a := range []spec.Delivery{jobLog[0], batLog[0]} {
		if a.StatusCode != http.StatusNoContent || a.Error != "" || a.Attempt != 1 || !strings.HasPrefix(a.WebhookID, "msg_") {
			t.Fatalf("attempt %+v", a)
		}
		e.waitTask(t, a.WebhookID, false)
	}
	if jobLog[0].Event != spec.EventJobSucceeded || batLog[0].Event != spec.EventBatchCompleted {
		t.Fatalf("events %q %q", jobLog[0].Event, batLog[0].Event)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rejected) != 0 {
		t.Fatalf("reference library rejected deliveries: %v", rejected)
	}
	hits := rc.got()
	if len(hits) != 2 {
		t.Fatalf("receiver got %d requests, want 2", len(hits))
	}
	for _, h := range hits {
		if got := h.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type %q", got)
		}
		if got := h.header.Get("User-Agent"); got != UserAgent {
			t.Errorf("User-Agent %q", got)
		}
		ts, _ := strconv.ParseInt(h.header.Get(spec.WebhookTimestampHeader), 10, 64)
		if d := time.Since(time.Unix(ts, 0)); d < -2*time.Second || d > 10*time.Second {
			t.Errorf("webhook-timestamp %d is %v off", ts, d)
		}
		if err := spec.VerifyWebhook(e.secret, h.header, h.body); err != nil {
			t.Errorf("Verify: %v", err)
		}
		var ev struct {
			Type      string          `json:"type"`
			Timestamp time.Time       `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
			Metadata  map[string]any  `json:"metadata"`
		}
		if err := json.Unmarshal(h.body, &ev); err != nil {
			t.Fatalf("body %s: %v", h.body, err)
		}
		if ev.Metadata["k"] != "v" || time.Since(ev.Timestamp) > 10*time.Second {
			t.Errorf("body %s", h.body)
		}
		var want []byte
		switch ev.Type {
		case spec.EventJobSucceeded:
			want, _ = json.Marshal(job)
			if h.header.Get(spec.WebhookIDHeader) != jobLog[0].WebhookID {
				t.Errorf("webhook-id %q, logged %q", h.header.Get(spec.WebhookIDHeader), jobLog[0].WebhookID)
			}
		case spec.EventBatchCompleted:
			want, _ = json.Marshal(batch)
		default:
			t.Fatalf("unexpected event %q", ev.Type)
		}
		if string(ev.Data) != string(want) {
			t.Errorf("%s data\n got %s\nwant %s", ev.Type, ev.Data, want)
		}
	}
	if n := e.outcome(t, OutcomeDelivered); n != 2 {
		t.Fatalf("delivered = %v", n)
	}
	if log, _ := rdb.NewDeliveries(e.rc, 0).List(ctx, "job_2"); len(log) != 0 {
		t.Fatalf("job_2 log %+v", log)
	}
}

func TestDeliveryUnsignedWithoutSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	rc := newReceiver(t, status(http.StatusOK))
	w := &spec.Webhook{URL: rc.URL}
	if err := Enqueue(context.Background(), e.client, w, tenantUnsigned, "job_u", spec.EventJobFailed, map[string]string{"id": "job_u"}, nil); err != nil {
		t.Fatal(err)
	}
	log := e.waitLog(t, "job_u", 1, 10*time.Second)
	if log[0].StatusCode != 200 {
		t.Fatalf("attempt %+v", log[0])
	}
	h := rc.got()[0]
	if h.header.Get(spec.WebhookSignatureHeader) != "" || h.header.Get(spec.WebhookIDHeader) != log[0].WebhookID || h.header.Get(spec.WebhookTimestampHeader) == "" {
		t.Fatalf("headers %v", h.header)
	}
	if string(h.body) == "" || !strings.Contains(string(h.body), `"metadata":{}`) {
		t.Fatalf("body %s", h.body)
	}
}

func TestRetryKeepsWebhookID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Schedule: ms(100, 100, 100, 100)})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ hit) {
		if n < 3 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	w := &spec.Webhook{URL: rc.URL}
	if err := Enqueue(context.Background(), e.client, w, tenantSigned, "job_r", spec.EventJobSucceeded, map[string]string{"id": "job_r"}, ms(100, 100, 100, 100)); err != nil {
		t.Fatal(err)
	}
	log := e.waitLog(t, "job_r", 4, 15*time.Second)
	e.waitTask(t, log[0].WebhookID, false)
	for i, a := range log {
		want := 500
		if i == 3 {
			want = 200
		}
		if a.StatusCode != want || a.Attempt != i+1 || a.WebhookID != log[0].WebhookID || a.Event != spec.EventJobSucceeded {
			t.Errorf("attempt %d: %+v", i, a)
		}
	}
	hits := rc.got()
	if len(hits) != 4 {
		t.Fatalf("receiver got %d requests", len(hits))
	}
	for i, h := range hits {
		if h.header.Get(spec.WebhookIDHeader) != log[0].WebhookID {
			t.Errorf("request %d webhook-id %q, want %q", i, h.header.Get(spec.WebhookIDHeader), log[0].WebhookID)
		}
		if string(h.body) != string(hits[0].body) {
			t.Errorf("request %d body differs", i)
		}
		if err := refVerify(t, e.secret, h); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if r, d := e.outcome(t, OutcomeRetry), e.outcome(t, OutcomeDelivered); r != 3 || d != 1 {
		t.Fatalf("retry=%v delivered=%v", r, d)
	}
}

func TestRetryAfterDelaysNextAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Schedule: ms(50)})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ hit) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	if err := Enqueue(context.Background(), e.client, &spec.Webhook{URL: rc.URL}, tenantSigned, "job_ra", spec.EventJobSucceeded, map[string]int{"n": 1}, ms(50)); err != nil {
		t.Fatal(err)
	}
	log := e.waitLog(t, "job_ra", 2, 10*time.Second)
	if log[0].StatusCode != 503 || log[1].StatusCode != 200 {
		t.Fatalf("log %+v", log)
	}
	hits := rc.got()
	if gap := hits[1].at.Sub(hits[0].at); gap < time.Second {
		t.Fatalf("second attempt %v after the first; Retry-After asked for 1s", gap)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Schedule: ms(100)})
	other := newReceiver(t, status(http.StatusOK))
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ hit) {
		w.Header().Set("Location", other.URL+"/elsewhere")
		w.WriteHeader(http.StatusFound)
	})
	if err := Enqueue(context.Background(), e.client, &spec.Webhook{URL: rc.URL}, tenantSigned, "job_3xx", spec.EventJobSucceeded, map[string]int{"n": 1}, ms(100)); err != nil {
		t.Fatal(err)
	}
	log := e.waitLog(t, "job_3xx", 2, 10*time.Second)
	info := e.waitTask(t, log[0].WebhookID, true)
	for _, a := range log {
		if a.StatusCode != http.StatusFound || a.Error != ErrorRedirect {
			t.Fatalf("attempt %+v", a)
		}
	}
	if info.Retried != 1 || info.MaxRetry != 1 {
		t.Fatalf("task retried %d of %d", info.Retried, info.MaxRetry)
	}
	if n := len(other.got()); n != 0 {
		t.Fatalf("redirect target got %d requests", n)
	}
	if len(rc.got()) != 2 {
		t.Fatalf("receiver got %d requests", len(rc.got()))
	}
	if r, f := e.outcome(t, OutcomeRetry), e.outcome(t, OutcomeFailed); r != 1 || f != 1 {
		t.Fatalf("retry=%v failed=%v", r, f)
	}
}

// 410 Gone ends the delivery after one attempt: the receiver has said it
// wants no more (the task is not retried, the attempt is logged with 410,
// and a second task of the event sends nothing). A 5xx is still retried.
func TestGoneStopsRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Schedule: ms(50, 50)})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ hit) {
		w.WriteHeader(http.StatusGone)
	})
	if err := Enqueue(context.Background(), e.client, &spec.Webhook{URL: rc.URL}, tenantSigned, "job_410", spec.EventJobSucceeded, map[string]int{"n": 1}, ms(50, 50)); err != nil {
		t.Fatal(err)
	}
	log := e.waitLog(t, "job_410", 1, 10*time.Second)
	info := e.waitTask(t, log[0].WebhookID, true)
	if log[0].StatusCode != http.StatusGone || info.Retried != 0 {
		t.Fatalf("log %+v, task retried %d times", log, info.Retried)
	}
	if n := len(rc.got()); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
	if g, r := e.outcome(t, OutcomeGone), e.outcome(t, OutcomeRetry); g != 1 || r != 0 {
		t.Fatalf("gone=%v retry=%v", g, r)
	}
	// A second task of the same event (one run again after its worker
	// died) finds it done and sends nothing.
	p := &DeliverPayload{WebhookID: log[0].WebhookID, Tenant: tenantSigned, URL: rc.URL, Owner: "job_410",
		Body: []byte(`{"type":"job.succeeded"}`), Type: spec.EventJobSucceeded}
	task, err := NewDeliverTask(p, ms(50))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Enqueue(task, asynq.TaskID(log[0].WebhookID+"~r1")); err != nil {
		t.Fatal(err)
	}
	e.waitTask(t, log[0].WebhookID+"~r1", false)
	if n := len(rc.got()); n != 1 {
		t.Fatalf("receiver got %d requests after a second task of a done event", n)
	}
}

// A 5xx answer is retried with the same webhook-id until a 2xx.
func TestServerErrorIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Schedule: ms(50)})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ hit) {
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	if err := Enqueue(context.Background(), e.client, &spec.Webhook{URL: rc.URL}, tenantSigned, "job_503", spec.EventJobSucceeded, map[string]int{"n": 1}, ms(50)); err != nil {
		t.Fatal(err)
	}
	log := e.waitLog(t, "job_503", 2, 10*time.Second)
	if log[0].StatusCode != http.StatusServiceUnavailable || log[1].StatusCode != http.StatusOK || log[0].WebhookID != log[1].WebhookID {
		t.Fatalf("log %+v", log)
	}
	if r, d := e.outcome(t, OutcomeRetry), e.outcome(t, OutcomeDelivered); r != 1 || d != 1 {
		t.Fatalf("retry=%v delivered=%v", r, d)
	}
}

func TestBlockedAddressNotRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Policy: &egress.Policy{AllowPrivate: false}})
	rc := newReceiver(t, status(http.StatusOK))
	if err := Enqueue(context.Background(), e.client, &spec.Webhook{URL: rc.URL}, tenantSigned, "job_blk", spec.EventJobSucceeded, map[string]int{"n": 1}, nil); err != nil {
		t.Fatal(err)
	}
	log := e.waitLog(t, "job_blk", 1, 10*time.Second)
	info := e.waitTask(t, log[0].WebhookID, true)
	if log[0].Error != ErrorBlockedAddress || log[0].StatusCode != 0 || info.Retried != 0 {
		t.Fatalf("log %+v, task retried %d", log, info.Retried)
	}
	if n := len(rc.got()); n != 0 {
		t.Fatalf("receiver got %d requests", n)
	}
	if n := e.outcome(t, OutcomeBlocked); n != 1 {
		t.Fatalf("blocked = %v", n)
	}
}

func TestConnectionErrorsAndTimeoutsRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Schedule: ms(100), Timeout: 300 * time.Millisecond})

	closed := "http://" + refusingAddr(t) + "/hook"
	release := make(chan struct{})
	slow := newReceiver(t, func(_ int, w http.ResponseWriter, _ hit) {
		select {
		case <-release:
		case <-time.After(2 * time.Second):
		}
	})
	t.Cleanup(func() { close(release) })

	ctx := context.Background()
	if err := Enqueue(ctx, e.client, &spec.Webhook{URL: closed}, tenantSigned, "job_ref", spec.EventJobSucceeded, 1, ms(100)); err != nil {
		t.Fatal(err)
	}
	if err := Enqueue(ctx, e.client, &spec.Webhook{URL: slow.URL}, tenantSigned, "job_slow", spec.EventJobSucceeded, 1, ms(100)); err != nil {
		t.Fatal(err)
	}
	for owner, code := range map[string]string{"job_ref": spec.CodeConnectionRefused, "job_slow": ErrorTimeout} {
		log := e.waitLog(t, owner, 2, 10*time.Second)
		e.waitTask(t, log[0].WebhookID, true)
		for _, a := range log {
			if a.Error != code || a.StatusCode != 0 {
				t.Errorf("%s: attempt %+v, want error %s", owner, a, code)
			}
		}
		if log[0].Attempt != 1 || log[1].Attempt != 2 {
			t.Errorf("%s: attempts %d, %d", owner, log[0].Attempt, log[1].Attempt)
		}
	}
	if r, f := e.outcome(t, OutcomeRetry), e.outcome(t, OutcomeFailed); r != 2 || f != 2 {
		t.Fatalf("retry=%v failed=%v", r, f)
	}
}

func TestUnknownTenantAndBadPayloadSkipRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	rc := newReceiver(t, status(http.StatusOK))
	if err := Enqueue(context.Background(), e.client, &spec.Webhook{URL: rc.URL}, "nobody", "job_nt", spec.EventJobSucceeded, 1, nil); err != nil {
		t.Fatal(err)
	}
	bad := []byte(`{"webhook_id":"msg_bad","tenant":"acme"}`)
	if _, err := e.client.Enqueue(asynqTask(bad)); err != nil {
		t.Fatal(err)
	}
	e.waitTask(t, "msg_bad", true)
	waitFor(t, 10*time.Second, "unknown tenant task archived", func() bool {
		infos, err := e.insp.ListArchivedTasks("webhooks")
		return err == nil && len(infos) == 2
	})
	if n := len(rc.got()); n != 0 {
		t.Fatalf("receiver got %d requests", n)
	}
}

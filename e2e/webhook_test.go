package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// receiver verifies every delivery with the Standard Webhooks reference
// library and records what it accepted.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	events   []map[string]any
	ids      []string
	rejected int
	failN    int // answer 500 to the first failN deliveries
	seen     int
}

func newReceiver(t testing.TB, secret string, failN int) *receiver {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{failN: failN}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := wh.Verify(body, req.Header); err != nil {
			r.rejected++
			w.WriteHeader(400)
			return
		}
		r.seen++
		r.ids = append(r.ids, req.Header.Get("webhook-id"))
		if r.seen <= r.failN {
			w.WriteHeader(500)
			return
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		r.events = append(r.events, ev)
		w.WriteHeader(204)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) snapshot() ([]map[string]any, []string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.events...), append([]string(nil), r.ids...), r.rejected
}

// attempts is how many deliveries reached the receiver, verified or not: a
// log for Env.Drain.
func (r *receiver) attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen + r.rejected
}

const secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestJobWebhooks(t *testing.T) {
	e := Start(t, Options{Workers: 1, Env: []string{"PAGEFLEET_WEBHOOK_RETRY_SCHEDULE=200ms,200ms,200ms,200ms"}})
	site := NewSite(t, nil)
	rcv := newReceiver(t, secretA, 3)
	j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/plain",
		"webhook": map[string]any{"url": rcv.URL + "/hook", "metadata": map[string]any{"k": "v"}}})
	if j.Status != spec.StatusSucceeded {
		t.Fatal(j.Status)
	}
	// Count once no attempt is left: the three failed attempts' retries and
	// any further one, had the 204 not ended the delivery, come before that.
	e.Drain(t, 30*time.Second, rcv.attempts)
	evs, ids, rejected := rcv.snapshot()
	if len(evs) != 1 || rejected != 0 {
		t.Fatalf("events %d, rejected signatures %d", len(evs), rejected)
	}
	if len(ids) != 4 || ids[0] != ids[3] {
		t.Errorf("webhook ids over 4 tries: %v", ids)
	}
	ev := evs[0]
	data, _ := ev["data"].(map[string]any)
	if ev["type"] != "job.succeeded" || data["id"] != j.ID || data["status"] != "succeeded" || ev["metadata"].(map[string]any)["k"] != "v" {
		t.Errorf("event = %v", ev)
	}
	var del struct {
		Data []map[string]any `json:"data"`
	}
	e.Do("GET", "/v1/jobs/"+j.ID+"/deliveries", keyA, nil, &del)
	if len(del.Data) != 4 || del.Data[0]["status_code"] != float64(500) || del.Data[3]["status_code"] != float64(204) {
		t.Errorf("deliveries = %v", del.Data)
	}
	// a failed job sends job.failed; events filters
	rcv2 := newReceiver(t, secretA, 0)
	f := e.Run(keyA, "fetch", map[string]any{"url": "http://no-such-host.invalid/", "webhook": map[string]any{"url": rcv2.URL, "events": []string{"job.failed"}}})
	s := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/plain", "webhook": map[string]any{"url": rcv2.URL, "events": []string{"job.failed"}}})
	// A job.succeeded that the filter let through would be delivered before
	// the queues drain: the event is enqueued while s's task is still active.
	e.Drain(t, 30*time.Second, rcv2.attempts)
	evs2, _, _ := rcv2.snapshot()
	if len(evs2) != 1 || evs2[0]["type"] != "job.failed" || evs2[0]["data"].(map[string]any)["id"] != f.ID {
		t.Errorf("filtered events = %v (succeeded job %s)", evs2, s.ID)
	}
}

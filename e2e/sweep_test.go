package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// attemptSite counts the requests per id: the first two attempts hold
// longer than the job's timeout (a retryable failure), the third holds until
// the client goes away.
type attemptSite struct {
	*Site
	mu    sync.Mutex
	n     map[string]int
	third chan string
}

func newAttemptSite(t testing.TB) *attemptSite {
	s := &attemptSite{n: map[string]int{}, third: make(chan string, 8)}
	s.Site = NewSite(t, map[string]http.HandlerFunc{"/attempt": func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		s.mu.Lock()
		s.n[id]++
		n := s.n[id]
		s.mu.Unlock()
		d := 10 * time.Second
		if n >= 3 {
			s.third <- id
			d = 10 * time.Minute
		}
		select {
		case <-time.After(d):
			html(`<html><body>too late</body></html>`)(w, r)
		case <-r.Context().Done():
		}
	}})
	return s
}

// checkEndedLost checks a job that ended as retries_exhausted (its last
// attempt lost), its webhook event and that its session's next job ran.
func checkEndedLost(t *testing.T, e *Env, j spec.Job, attempts int, next string, rcv *receiver) {
	t.Helper()
	if j.Status != spec.StatusFailed || j.Error == nil || j.Error.Code != spec.CodeRetriesExhausted || j.Attempts != attempts {
		t.Fatalf("job %s: status %s attempts %d error %+v; want failed, retries_exhausted, %d attempts", j.ID, j.Status, j.Attempts, j.Error, attempts)
	}
	t.Logf("ended: %s", j.Error.Message)
	if n := e.Wait(keyA, next, 60*time.Second); n.Status != spec.StatusSucceeded {
		t.Errorf("the session's next job: %s %+v (its line was not freed)", n.Status, n.Error)
	}
	// Counted once nothing can send another job.failed: the sweep deletes
	// an archived task only after it ended the job and enqueued the event,
	// and no delivery is pending or waiting for a retry.
	e.Drain(t, 60*time.Second, rcv.attempts)
	evs, _, rejected := rcv.snapshot()
	if len(evs) != 1 || rejected != 0 {
		t.Fatalf("webhook: %d events (%d rejected), want one job.failed", len(evs), rejected)
	}
	data, _ := evs[0]["data"].(map[string]any)
	errObj, _ := data["error"].(map[string]any)
	if evs[0]["type"] != "job.failed" || data["id"] != j.ID || errObj["code"] != spec.CodeRetriesExhausted {
		t.Errorf("event = %v", evs[0])
	}
}

// The worker running a job's last attempt is killed with SIGKILL. Another
// worker finds it dead within seconds and runs its task again; the job has
// had its three attempts, so that run ends it as failed
// (retries_exhausted), sends job.failed, and frees the job's session line
// so the session's next job runs. (asynq's recoverer later archives the
// original task; the sweep finds the job ended.)
func TestChaosLastAttemptLost(t *testing.T) {
	t.Parallel()
	e := Start(t, Options{Workers: 1, Concurrency: 2, Env: []string{"PAGEFLEET_SWEEP_INTERVAL=500ms", "PAGEFLEET_WEBHOOK_RETRY_SCHEDULE=1s,2s"}})
	site := newAttemptSite(t)
	rcv := newReceiver(t, secretA, 0)
	sess := map[string]any{"id": "last-attempt"}
	id := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/attempt?id=lost", "timeout_ms": 3000,
		"session": sess, "webhook": map[string]any{"url": rcv.URL + "/hook"}})
	next := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/plain", "session": sess})
	select {
	case <-site.third:
	case <-time.After(90 * time.Second):
		t.Fatalf("the third attempt never started; job %+v", e.Wait(keyA, id, time.Millisecond))
	}
	// Kill first: starting the survivor takes seconds on a loaded machine,
	// and the attempt's 3 s deadline must not pass before the kill.
	killedAt := time.Now()
	e.StopWorker(0, syscall.SIGKILL)
	survivor := e.StartWorker()
	j := e.Wait(keyA, id, 200*time.Second)
	ended := j.FinishedAt.Sub(killedAt)
	t.Logf("the job ended %s after the SIGKILL", ended.Round(100*time.Millisecond))
	// The survivor finds the worker dead within seconds and runs its task
	// again; the job has had its three attempts, so that run ends it.
	if ended > 15*time.Second {
		t.Errorf("the job ended %s after the SIGKILL; a dead worker's tasks run again within seconds", ended)
	}
	checkEndedLost(t, e, j, 3, next, rcv)
	if v, err := e.workerMetric(survivor, "pagefleet_tasks_recovered_total"); err != nil || v < 1 {
		t.Errorf("pagefleet_tasks_recovered_total = %v (%v), want at least 1", v, err)
	}
}

// The short version for make test: the task of a queued session job is
// archived while no worker runs (as asynq does after a lost last attempt,
// or an operator in /admin/queues). A worker that starts ends the job
// within its sweep interval and the session's next job runs.
func TestArchivedTaskEndsJob(t *testing.T) {
	t.Parallel()
	e := Start(t, Options{Workers: 1, Env: []string{"PAGEFLEET_SWEEP_INTERVAL=300ms"}})
	e.StopWorker(0, syscall.SIGTERM)
	site := NewSite(t, nil)
	// A batch whose expansion task is archived before it ran: the sweep
	// runs it again, and every page of the batch runs.
	bat, _ := e.SubmitBatch(keyA, map[string]any{"urls": []string{site.URL + "/plain?b=1", site.URL + "/plain?b=2", site.URL + "/plain?b=3"}})
	rcv := newReceiver(t, secretA, 0)
	sess := map[string]any{"id": "archived"}
	id := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/plain", "session": sess,
		"webhook": map[string]any{"url": rcv.URL + "/hook"}})
	next := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/plain", "session": sess})
	insp := asynq.NewInspectorFromRedisClient(e.Redis.Client(t, 0))
	if err := insp.ArchiveTask(jobs.QueueInteractive, id); err != nil {
		t.Fatal(err)
	}
	if err := insp.ArchiveTask(jobs.QueueBulk, "expand:"+bat.ID); err != nil {
		t.Fatal(err)
	}
	e.StartWorker()
	j := e.Wait(keyA, id, 30*time.Second)
	checkEndedLost(t, e, j, 0, next, rcv)
	if b, _ := e.WaitBatch(keyA, bat.ID, 200*time.Millisecond, 60*time.Second); b.Status != "completed" || b.Succeeded != 3 {
		t.Errorf("batch after its archived expansion: %+v", b)
	}
	if hits := site.Hits("/plain"); hits != 4 {
		t.Errorf("the site saw %d requests, want 4 (the session's next job and 3 batch pages; not the archived job)", hits)
	}
	// The archived task is gone: the job record is what users read.
	for _, q := range []string{jobs.QueueInteractive, jobs.QueueBulk} {
		if tasks, err := insp.ListArchivedTasks(q); err != nil || len(tasks) != 0 {
			t.Errorf("archived %s tasks left: %d (%v)", q, len(tasks), err)
		}
	}
}

// Batch jobs whose tasks are archived while they wait for their tenant's
// running_bulk_jobs place (the cap is 1 and another page of the batch holds
// it): the sweep ends them as failed, and the batch — whose last jobs they
// were — completes, with one batch.completed.
func TestArchivedBatchJobsEndTheBatch(t *testing.T) {
	t.Parallel()
	const key = "pf_test_sweep_bulk_key"
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`tenants:
  - id: sweep-bulk
    plan: pro
    api_keys: [%q]
    webhook_secret: %q
    limits: { running_bulk_jobs: 1 }
`, key, secretA)), 0o600); err != nil {
		t.Fatal(err)
	}
	e := Start(t, Options{Workers: 1, Env: []string{"PAGEFLEET_SWEEP_INTERVAL=300ms", "PAGEFLEET_TENANTS_FILE=" + file}})
	site := newSpanSite(t)
	rcv := newReceiver(t, secretA, 0)
	ids := []string{"sb1", "sb2", "sb3"}
	var urls []string
	for _, id := range ids {
		urls = append(urls, site.URL+"/span?d=hold&id="+id)
	}
	bat, _ := e.SubmitBatch(key, map[string]any{"urls": urls,
		"webhook": map[string]any{"url": rcv.URL + "/done", "events": []string{"batch.completed"}}})
	running := ""
	if !waitFor(30*time.Second, func() bool {
		for _, id := range ids {
			if open, _, _ := site.state(id); open == 1 {
				running = id
				return true
			}
		}
		return false
	}) {
		t.Fatal("no page of the batch started")
	}
	insp := asynq.NewInspectorFromRedisClient(e.Redis.Client(t, 0))
	var archived []string
	for _, j := range e.BatchJobs(key, bat.ID, 100) {
		if strings.HasSuffix(j.URL, "id="+running) {
			continue
		}
		// The task waits for the bulk place: pending, or in retry between
		// hand-backs; it cannot be archived while a worker holds it.
		var err error
		if !waitFor(15*time.Second, func() bool { err = insp.ArchiveTask(jobs.QueueBulk, j.ID); return err == nil }) {
			t.Fatalf("archive the task of %s: %v", j.ID, err)
		}
		archived = append(archived, j.ID)
	}
	site.release(running)
	b, _ := e.WaitBatch(key, bat.ID, 200*time.Millisecond, 60*time.Second)
	if b.Status != "completed" || b.Succeeded != 1 || b.Failed != 2 {
		t.Fatalf("batch = %+v; want completed with 1 succeeded and 2 failed", b)
	}
	// Counted once nothing can fetch a page or send another
	// batch.completed: the sweep deletes an archived task only after it
	// ended the job and settled the batch, and no delivery is pending or
	// waiting for a retry.
	e.Drain(t, 60*time.Second, rcv.attempts)
	for _, id := range archived {
		if j := e.Wait(key, id, time.Second); j.Status != spec.StatusFailed || j.Error == nil || j.Error.Code != spec.CodeRetriesExhausted {
			t.Errorf("job %s: %s %+v, want failed with retries_exhausted", id, j.Status, j.Error)
		}
	}
	for _, id := range ids {
		if id != running {
			if _, _, spans := site.state(id); len(spans) != 0 {
				t.Errorf("page %s was fetched %d times; its task was archived before it ran", id, len(spans))
			}
		}
	}
	evs, _, rejected := rcv.snapshot()
	if len(evs) != 1 || rejected != 0 || evs[0]["type"] != "batch.completed" {
		t.Errorf("webhook events %v (rejected %d); want one batch.completed", evs, rejected)
	}
}

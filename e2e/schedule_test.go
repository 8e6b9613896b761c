package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// StartExtraAPI starts one more API process on the Env's Redis (the
// harness starts one) and returns it; it is stopped when the test ends.
func (e *Env) StartExtraAPI(name string) *proc {
	e.t.Helper()
	p := e.start(name, "api")
	e.t.Cleanup(func() {
		stopProc(e.t, p, syscall.SIGTERM)
		if e.t.Failed() {
			e.t.Logf("%s log (tail):\n%s", p.Name, tail(p.logText(), 3000))
		}
	})
	return p
}

// doAt is Do against another API process.
func (e *Env) doAt(p *proc, method, path, key string, body, out any) *http.Response {
	e.t.Helper()
	saved := e.APIURL
	e.APIURL = "http://" + p.Addr
	defer func() { e.APIURL = saved }()
	return e.Do(method, path, key, body, out)
}

// TestScheduleExactlyOnce runs a schedule due every 2 s (seconds field,
// Europe/Berlin) against 3 API processes and 2 workers, all of which run
// the scheduler, and restarts one API (killed: SIGKILL, so a run it
// claimed may be left to be taken over) and one worker (SIGTERM) in the
// middle.
//
// The count: the window is [t0, t0+30 s), t0 being the schedule's first
// due time (its next_run_at when created): it holds exactly the 15 due
// times t0, t0+2 s, …, t0+28 s, and each must have exactly one run and one
// batch, ±0. The schedule is paused at t0+31 s, so the due time at t0+30 s
// (the boundary after the last slot) may have a run too; it is outside the
// window and not counted, but every run, in the window or not, must be
// alone with its due time, and every schedule.run event alone with its run.
func TestScheduleExactlyOnce(t *testing.T) {
	e := Start(t, Options{Workers: 2, Concurrency: 2})
	apis := []*proc{e.api, e.StartExtraAPI("api1"), e.StartExtraAPI("api2")}
	site := NewSite(t, nil)
	rcv := newHookReceiver(t, secretA, nil)

	var s spec.Schedule
	resp := e.doAt(apis[1], "POST", "/v1/schedules", keyA, map[string]any{
		"cron": "*/2 * * * * *", "timezone": "Europe/Berlin",
		"batch":   map[string]any{"urls": []string{site.URL + "/plain"}, "template": map[string]any{"output": []string{"text"}}},
		"webhook": map[string]any{"url": rcv.URL + "/runs"},
	}, &s)
	if resp.StatusCode != http.StatusCreated || s.NextRunAt == nil || s.Kind != "batch" || s.Paused || resp.Header.Get("Location") != "/v1/schedules/"+s.ID {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	t0 := *s.NextRunAt
	if t0.Second()%2 != 0 || t0.Nanosecond() != 0 || time.Until(t0) > 2*time.Second {
		t.Fatalf("next_run_at %s is not the next even second", t0)
	}
	const slots = 15
	end := t0.Add(slots * 2 * time.Second)
	t.Logf("window %s – %s", t0.Format(time.TimeOnly), end.Format(time.TimeOnly))
	var got spec.Schedule
	if resp := e.doAt(apis[2], "GET", "/v1/schedules/"+s.ID, keyA, nil, &got); resp.StatusCode != 200 || got.ID != s.ID || got.Cron != s.Cron {
		t.Fatalf("get on another API: %d %+v", resp.StatusCode, got)
	}
	if resp := e.Do("GET", "/v1/schedules/"+s.ID, keyB, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another tenant's GET: %d", resp.StatusCode)
	}

	// Time is what is tested: the schedule runs while processes restart.
	time.Sleep(time.Until(t0.Add(13 * time.Second)))
	killed := apis[1]
	stopProc(t, killed, syscall.SIGKILL)
	e.StopWorker(0, syscall.SIGTERM)
	apis[1] = e.StartExtraAPI("api1-again")
	e.StartWorker()
	t.Logf("api1 and worker0 restarted by %s", time.Now().Format(time.TimeOnly))
	time.Sleep(time.Until(end.Add(time.Second)))
	var paused spec.Schedule
	if resp := e.doAt(apis[2], "PATCH", "/v1/schedules/"+s.ID, keyA, map[string]any{"paused": true}, &paused); resp.StatusCode != 200 || !paused.Paused || paused.NextRunAt != nil {
		t.Fatalf("pause: %d %+v", resp.StatusCode, paused)
	}

	// Every slot's run is recorded (a run whose claimer stopped is taken
	// over within its 15 s lease).
	runsIn := func() (all, in []spec.ScheduleRun) {
		var page spec.List[spec.ScheduleRun]
		e.Do("GET", "/v1/schedules/"+s.ID+"/runs?limit=1000", keyA, nil, &page)
		for _, r := range page.Data {
			if !r.ScheduledAt.Before(t0) && r.ScheduledAt.Before(end) {
				in = append(in, r)
			}
		}
		return page.Data, in
	}
	if !waitFor(40*time.Second, func() bool { _, in := runsIn(); return len(in) >= slots }) {
		_, in := runsIn()
		t.Fatalf("%d runs in the window after 40 s, want %d", len(in), slots)
	}
	e.Drain(t, time.Minute, rcv.count)
	all, in := runsIn()
	sort.Slice(in, func(i, j int) bool { return in[i].ScheduledAt.Before(in[j].ScheduledAt) })
	if len(in) != slots {
		t.Errorf("%d runs in the window, want exactly %d", len(in), slots)
	}
	for k, r := range in {
		want := t0.Add(time.Duration(2*k) * time.Second)
		if !r.ScheduledAt.Equal(want) || r.Status != spec.RunCreated || r.BatchID == "" || r.ScheduleID != s.ID {
			t.Errorf("run %d: %+v, want one created at %s", k, r, want.Format(time.TimeOnly))
		}
	}
	dueSeen, batchSeen := map[time.Time]int{}, map[string]int{}
	for _, r := range all {
		dueSeen[r.ScheduledAt]++
		batchSeen[r.BatchID]++
	}
	for due, n := range dueSeen {
		if n != 1 {
			t.Errorf("%d runs due at %s", n, due.Format(time.TimeOnly))
		}
	}

	// The runs are batches with schedule_id: exactly one per run.
	var batches spec.List[spec.Batch]
	e.Do("GET", "/v1/batches?limit=1000", keyA, nil, &batches)
	perDue := map[time.Time][]spec.Batch{}
	for _, b := range batches.Data {
		if b.ScheduleID == s.ID && b.ScheduledAt != nil {
			perDue[*b.ScheduledAt] = append(perDue[*b.ScheduledAt], b)
		}
	}
	if len(perDue) != len(all) {
		t.Errorf("%d due times have batches, %d runs", len(perDue), len(all))
	}
	for due, bs := range perDue {
		if len(bs) != 1 || batchSeen[bs[0].ID] != 1 {
			t.Errorf("due %s: %d batches", due.Format(time.TimeOnly), len(bs))
			continue
		}
		if v, _ := e.WaitBatch(keyA, bs[0].ID, 100*time.Millisecond, 30*time.Second); v.Status != "completed" || v.Succeeded != 1 {
			t.Errorf("the batch of %s: %+v", due.Format(time.TimeOnly), v)
		}
	}

	// One schedule.run per run.
	d, rejected := rcv.deliveries()
	events := map[string]int{}
	for _, x := range d {
		if x.Type != spec.EventScheduleRun {
			continue
		}
		var r spec.ScheduleRun
		json.Unmarshal(x.Data, &r)
		events[fmt.Sprint(r.ScheduledAt.UnixMilli(), r.BatchID)]++
	}
	if rejected > 0 || len(events) != len(all) {
		t.Errorf("%d schedule.run events (%d rejected) for %d runs", len(events), rejected, len(all))
	}
	for k, n := range events {
		if n != 1 {
			t.Errorf("schedule.run %s delivered %d times", k, n)
		}
	}

	// Who created the runs (each process logs the runs it recorded).
	var who []string
	for _, p := range append(apis, killed) {
		who = append(who, fmt.Sprintf("%s %d", p.Name, strings.Count(p.logText(), `"msg":"schedule run"`)))
	}
	for i := range e.workers {
		who = append(who, fmt.Sprintf("worker%d %d", i, strings.Count(e.WorkerLog(i), `"msg":"schedule run"`)))
	}
	t.Logf("%d runs in all; recorded by: %s", len(all), strings.Join(who, ", "))

	if resp := e.Do("DELETE", "/v1/schedules/"+s.ID, keyA, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("delete: %d", resp.StatusCode)
	}
	if resp := e.Do("GET", "/v1/schedules/"+s.ID, keyA, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after delete: %d", resp.StatusCode)
	}
}

package worker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// An archived task whose job a replacement task now runs (the bulk reaper
// put one in after the job's worker died) leaves the job alone; the
// archived task of a job nothing else runs ends it.
func TestSweepLeavesJobsOfReplacementTasks(t *testing.T) {
	rc := redistest.Start(t).Client(t, 0)
	ctx := context.Background()
	js := rdb.NewJobs(rc, time.Hour)
	w := New(Deps{Redis: rc, Jobs: js, Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
	queue := asynq.NewClientFromRedisClient(rc)
	defer queue.Close()
	insp := asynq.NewInspectorFromRedisClient(rc)

	enqueueArchived := func(id string) {
		t.Helper()
		p := &jobs.RunPayload{JobID: id, Tenant: "acme", Kind: jobs.KindFetch, AcceptedAt: time.Now(),
			Request: spec.Request{URL: "https://example.com/" + id}}
		p.Request.Normalize(jobs.KindFetch)
		task, err := jobs.NewRunTask(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := queue.Enqueue(task, asynq.ProcessIn(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := insp.ArchiveTask(p.Queue(), id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"job_replaced", "job_lost"} {
		if _, err := rc.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			js.Create(ctx, pipe, rdb.JobRecord{ID: id, Tenant: "acme", Kind: jobs.KindFetch, URL: "https://example.com/", CreatedAt: time.Now()})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		enqueueArchived(id)
	}
	if err := js.SetTask(ctx, "job_replaced", "job_replaced-r1"); err != nil {
		t.Fatal(err)
	}
	n, err := w.SweepOnce(ctx)
	if err != nil || n != 1 {
		t.Fatalf("SweepOnce = %d, %v; want 1 job ended", n, err)
	}
	if st, _ := js.Status(ctx, "job_replaced"); st != spec.StatusQueued {
		t.Errorf("the job a replacement task runs: %q, want queued", st)
	}
	if st, _ := js.Status(ctx, "job_lost"); st != spec.StatusFailed {
		t.Errorf("the job of the archived task: %q, want failed", st)
	}
	if tasks, _ := insp.ListArchivedTasks(jobs.QueueInteractive); len(tasks) != 0 {
		t.Errorf("%d archived tasks left", len(tasks))
	}
}

// Package worker holds the asynq handlers that run jobs: it takes a job's
// turn on its session, runs it as a plain fetch or in the Chrome pool, derives
// the outputs, saves the session state under its fence, writes the outcome
// and wakes the session's next job.
package worker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/artifact"
	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/internal/extract"
	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/fresh"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// ErrSessionBusy is returned to asynq when it is not the job's turn on its
// session. It is no failure: no retry is counted and the task comes back
// after a short delay (or at once, when the job before it wakes it).
var ErrSessionBusy = errors.New("session busy")

// Renderer renders a page in Chrome (the browser pool).
type Renderer interface {
	Render(ctx context.Context, req browser.Request) (*browser.Result, error)
}

// Fetcher performs plain HTTP fetches.
type Fetcher interface {
	Do(ctx context.Context, req fetch.Request) (*fetch.Response, error)
}

// Deps are the parts a worker uses.
type Deps struct {
	// ID names this worker process in Redis (rdb.Workers): its attempts'
	// owner tokens and claims carry it. "": attempts are not fenced.
	ID       string
	Redis    redis.UniversalClient
	Jobs     *rdb.Jobs
	Sessions *session.Store
	Browser  Renderer
	Fetcher  Fetcher
	LLM      extract.LLMConfig
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Hooks are told about every job with a webhook or of a batch that
	// ended (see FinishHook).
	Hooks []FinishHook
	// Swept are told about every job the sweep ended, after Hooks (see
	// Sweep).
	Swept []func(ctx context.Context, p *jobs.RunPayload)
	// Identities holds the identity profiles jobs name (nil: a store on Redis).
	Identities *rdb.Identities
	// Politeness holds jobs to their host's limits (nil: none; see
	// hosts.go).
	Politeness *Politeness
	// Proxies are the upstream proxies and block rules (nil: every job
	// goes directly; built-in block rules only).
	Proxies *Proxies
	// RunningLimit returns a tenant's running_jobs limit (0: none); jobs
	// over it are handed back with ErrTenantBusy (see limits.go).
	RunningLimit func(tenantID string) int
	// Cache serves and keeps results (nil: no result cache), Tracker
	// compares tracked results, Fresh counts both (see fresh.go).
	Cache   *rdb.Cache
	Tracker *rdb.Tracker
	Fresh   *fresh.Metrics
	// PageEvents reports whether the batch of a batch job sends
	// batch.page (nil: assume it does); a job that reused a cached result
	// then reads it back whole for the event.
	PageEvents func(ctx context.Context, p *jobs.RunPayload) bool

	// Artifacts keeps the files jobs produce (screenshots, PDFs); nil:
	// they stay inline in the result, as before artifacts. The files of
	// capture outputs and diagnostics are left out without it, with a
	// note (capture.go).
	Artifacts *artifact.Store
}

// Worker runs fetch and interact tasks.
type Worker struct {
	Deps
	insp *asynq.Inspector

	mu       sync.Mutex
	running  map[string]context.CancelCauseFunc
	draining bool // set by Drain: running jobs hand themselves back

	jobsDone  *prometheus.CounterVec
	runTime   *prometheus.HistogramVec
	busy      prometheus.Counter
	inflight  prometheus.Gauge
	queueWait prometheus.Histogram
	swept     prometheus.Counter

	hostWait      prometheus.Histogram
	hostThrottled *prometheus.CounterVec
	hostPauses    prometheus.Counter
}

// New builds a worker.
func New(d Deps) *Worker {
	f := promauto.With(d.Registry)
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Identities == nil {
		d.Identities = rdb.NewIdentities(d.Redis, rdb.IdentitiesConfig{})
	}
	return &Worker{
		Deps:    d,
		insp:    asynq.NewInspectorFromRedisClient(d.Redis),
		running: map[string]context.CancelCauseFunc{},
		jobsDone: f.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_jobs_total", Help: "Jobs finished by kind and outcome."},
			[]string{"kind", "outcome"}),
		runTime: f.NewHistogramVec(prometheus.HistogramOpts{Name: "pagefleet_job_run_seconds", Help: "Time one job attempt ran.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}, []string{"kind", "mode"}),
		busy:     f.NewCounter(prometheus.CounterOpts{Name: "pagefleet_session_busy_delays_total", Help: "Task attempts handed back because their session was busy or it was not their turn."}),
		inflight: f.NewGauge(prometheus.GaugeOpts{Name: "pagefleet_jobs_running", Help: "Jobs running on this worker."}),
		queueWait: f.NewHistogram(prometheus.HistogramOpts{Name: "pagefleet_job_queue_wait_seconds", Help: "Time from acceptance to the start of the first attempt.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		hostWait: f.NewHistogram(prometheus.HistogramOpts{Name: "pagefleet_host_wait_seconds",
			Help:    "Time a job waited for its host (politeness), from its first ask to its start.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12)}),
		hostThrottled: f.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_host_throttled_total",
			Help: "Job attempts handed back because their host was not free for them, by reason (delay, concurrency, queue, fleet, paused)."},
			[]string{"reason"}),
		hostPauses: f.NewCounter(prometheus.CounterOpts{Name: "pagefleet_host_pauses_total",
			Help: "Hosts paused after a 429 or 503 answer (adaptive politeness)."}),
		swept: f.NewCounter(prometheus.CounterOpts{Name: "pagefleet_jobs_swept_total",
			Help: "Jobs ended as failed (retries_exhausted) because asynq archived their task without an outcome."}),
	}
}

// Register adds the worker's handlers to mux.
func (w *Worker) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(jobs.KindFetch, w.ProcessRun)
	mux.HandleFunc(jobs.KindInteract, w.ProcessRun)
}

// IsFailure tells asynq which errors count as failures.
func IsFailure(err error) bool { return !handedBack(err) }

// RetryDelay is the asynq retry delay: short with jitter for a busy session,
// growing for real failures.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	if hb := (*HostBusyError)(nil); errors.As(err, &hb) {
		return hb.Wait
	}
	if errors.Is(err, ErrTenantBusy) {
		return tenantBusyDelay()
	}
	if errors.Is(err, ErrSessionBusy) {
		return 1500*time.Millisecond + time.Duration(rand.Int64N(int64(time.Second)))
	}
	d := time.Second << min(n, 6)
	return d + time.Duration(rand.Int64N(int64(d/2)+1))
}

// CancelListener cancels running jobs when the API publishes a cancel.
func (w *Worker) CancelListener(ctx context.Context) {
	w.Jobs.WatchCancels(ctx, func(id string) {
		w.mu.Lock()
		if cancel := w.running[id]; cancel != nil {
			cancel(errCancelled)
		}
		w.mu.Unlock()
	})
}

var errCancelled = errors.New("job cancelled by request")

// errStopping is the cause of the cancellation of the jobs Drain stops.
var errStopping = errors.New("worker stopping")

// HandBackTime is how long after Drain a stopped job has to hand itself
// back: cmd/worker gives asynq a shutdown timeout this much longer than the
// grace period, and asynq puts the tasks back in their queues only then.
const HandBackTime = 3 * time.Second

// Drain stops the running jobs (and any job that registers later): each
// hands its job back and then waits until asynq, at the end of its shutdown
// timeout, puts the task back in its queue and cancels the task's context.
// asynq requeues a task before it cancels its handler, so without Drain the
// next worker could start a job while this one still runs it. Call Drain
// only while the asynq server shuts down, when the grace period ends.
func (w *Worker) Drain() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.draining = true
	for _, cancel := range w.running {
		cancel(errStopping)
	}
}

func (w *Worker) isTerminal(ctx context.Context, jobID string) (bool, error) {
	st, err := w.Jobs.Status(ctx, jobID)
	if err != nil {
		return false, err
	}
	return st == "" || spec.Terminal(st), nil
}

// outcomeRetryFor bounds how long finish retries: less than asynq's 30 s
// task lease, which lapses while Redis is unreachable.
const outcomeRetryFor = 20 * time.Second

// finish writes the outcome of an attempt. While Redis is unreachable it
// retries for a while rather than throw the work away: the error would send
// the task back to asynq, whose own write of that fails too and is never
// retried (its syncer's retries run on a context it has already cancelled),
// so the job would only run again when asynq's recoverer finds its lease
// lapsed, one to two minutes later.
func (w *Worker) finish(ctx context.Context, id string, o rdb.Outcome) error {
	bg := context.WithoutCancel(ctx)
	deadline := time.Now().Add(outcomeRetryFor)
	delay := 200 * time.Millisecond
	for {
		err := w.Jobs.Finish(bg, id, o)
		if err == nil || errors.Is(err, rdb.ErrJobEnded) || time.Now().Add(delay).After(deadline) {
			return err
		}
		w.Logger.Warn("write outcome; retrying", "job", id, "err", err, "retry_in_ms", delay.Milliseconds())
		select {
		case <-ctx.Done(): // the task's lease lapsed, or its deadline passed
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// unlock ends a session turn. done takes the job out of the line and wakes
// the next job; otherwise the job keeps its place (it will retry) and only
// the lock is freed.
func (w *Worker) unlock(l *session.Lease, done bool) {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !done {
		if err := w.Sessions.Unlock(ctx, l); err != nil {
			w.Logger.Warn("session unlock", "job", l.JobID, "tenant", l.Tenant, "session", l.SID, "err", err)
		}
		return
	}
	next, err := w.Sessions.Release(ctx, l)
	if err != nil {
		w.Logger.Warn("session release", "job", l.JobID, "tenant", l.Tenant, "session", l.SID, "err", err)
		return
	}
	w.wake(next)
}

func (w *Worker) removeFromLine(ctx context.Context, tenant, sid, jobID string) {
	next, err := w.Sessions.Remove(context.WithoutCancel(ctx), tenant, sid, jobID)
	if err == nil {
		w.wake(next)
	}
}

// wake runs the session's next task now instead of after its retry delay.
func (w *Worker) wake(jobID string) {
	if jobID == "" {
		return
	}
	for _, q := range []string{jobs.QueueInteractive, jobs.QueueBulk} {
		if err := w.insp.RunTask(q, jobID); err == nil {
			return
		}
	}
}

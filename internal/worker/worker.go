// Package worker holds the asynq handlers that run jobs: it takes a job's
// turn on its session, runs it as a plain fetch or in the Chrome pool, derives
// the outputs, saves the session state under its fence, writes the outcome
// and wakes the session's next job.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/internal/convert"
	"github.com/pagefleet/pagefleet/internal/extract"
	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/identity"
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
	// RunningLimit returns a tenant's running_jobs limit (0: none); jobs
	// over it are handed back with ErrTenantBusy (see limits.go).
	RunningLimit func(tenantID string) int
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

// ProcessRun handles fetch and interact tasks.
func (w *Worker) ProcessRun(ctx context.Context, t *asynq.Task) error {
	p, err := jobs.DecodeRun(t.Payload())
	if err != nil {
		w.Logger.Error("bad payload", "kind", t.Type(), "err", err)
		if p != nil && p.JobID != "" {
			_ = w.Jobs.Finish(ctx, p.JobID, rdb.Outcome{Status: spec.StatusFailed, Error: spec.Errorf(spec.CodeInternal, false, "%v", err)})
		}
		return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
	}
	log := w.Logger.With("job", p.JobID, "tenant", p.Tenant, "kind", p.Kind)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	final := retried >= maxRetry

	var lease *session.Lease
	sid := ""
	if p.Request.Session != nil {
		sid = p.Request.Session.ID
		lease, err = w.Sessions.Acquire(ctx, p.Tenant, sid, p.JobID, w.isTerminal)
		if errors.Is(err, session.ErrBusy) {
			w.busy.Inc()
			// A job that ended while it waited (cancelled) leaves the line.
			if st, _ := w.Jobs.Status(ctx, p.JobID); st == "" || spec.Terminal(st) {
				w.removeFromLine(ctx, p.Tenant, sid, p.JobID)
				return nil
			}
			return ErrSessionBusy
		}
		if errors.Is(err, session.ErrNotInLine) {
			log.Info("duplicate delivery of an ended session job dropped")
			return nil
		}
		if err != nil {
			return fmt.Errorf("session %q turn: %w", sid, err)
		}
		w.Sessions.ObserveWait(time.Since(p.AcceptedAt))
	}

	// The job can be cancelled from here on: a cancel that reaches the
	// record before Start makes Start refuse the job, and one that comes
	// later finds the job in w.running, so no status read is needed after
	// Start.
	jobCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w.mu.Lock()
	w.running[p.JobID] = cancel
	if w.draining {
		cancel(errStopping)
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.running, p.JobID)
		w.mu.Unlock()
	}()

	// Start takes the job's place among its tenant's running jobs in the
	// same script (the running_jobs limit).
	stopped, slot, err := w.start(ctx, p, retried+1)
	if errors.Is(err, ErrTenantBusy) {
		w.unlock(lease, false)
		return err
	}
	if err != nil {
		w.unlock(lease, false)
		return fmt.Errorf("start job: %w", err)
	}
	defer slot.release()
	if stopped != "" {
		log.Info("job not run", "status", stopped)
		if stopped == spec.StatusSucceeded || stopped == spec.StatusFailed {
			// A redelivery after the outcome was written: make sure its
			// events went out (they are deduplicated).
			w.ended(ctx, p)
		}
		w.unlock(lease, true)
		return nil
	}
	if retried == 0 {
		w.queueWait.Observe(time.Since(p.AcceptedAt).Seconds())
	}

	if lease != nil {
		var stopHold func()
		jobCtx, stopHold = w.Sessions.Hold(jobCtx, lease)
		defer stopHold()
	}
	w.inflight.Inc()
	defer w.inflight.Dec()

	log.Info("job started", "attempt", retried+1, "url", p.Request.URL)
	start := time.Now()
	out := w.run(jobCtx, p, lease, log)
	mode := "plain"
	if p.Request.Rendered(p.Kind) {
		mode = "rendered"
	}
	w.runTime.WithLabelValues(p.Kind, mode).Observe(time.Since(start).Seconds())

	switch {
	case errors.Is(context.Cause(jobCtx), errCancelled):
		log.Info("job cancelled while running")
		w.unlock(lease, true)
		w.jobsDone.WithLabelValues(p.Kind, spec.StatusCancelled).Inc()
		w.ended(ctx, p)
		return nil
	case errors.Is(context.Cause(jobCtx), errStopping) && out.err != nil:
		// The grace period ended and the attempt stopped: hand the job back,
		// then wait for asynq to requeue the task (it cancels ctx after
		// that). Nothing of this attempt runs any more when another worker
		// takes the task, and the hand-back counts as no failed attempt.
		_ = w.Jobs.Requeue(context.WithoutCancel(ctx), p.JobID)
		w.unlock(lease, false)
		log.Info("job handed back: the worker is stopping")
		<-ctx.Done()
		return fmt.Errorf("%w: %w", errStopping, ctx.Err())
	case lease != nil && jobCtx.Err() != nil && ctx.Err() == nil && out.err != nil && !out.saved:
		// The lease was lost: write nothing; a later attempt runs the job.
		log.Warn("session lease lost; attempt abandoned")
		return fmt.Errorf("session %q: %w", sid, session.ErrLeaseLost)
	case ctx.Err() != nil && out.err != nil && errors.Is(ctx.Err(), context.Canceled) && !final:
		// The worker is shutting down: hand the job back.
		_ = w.Jobs.Requeue(context.WithoutCancel(ctx), p.JobID)
		w.unlock(lease, false)
		return fmt.Errorf("worker stopping: %w", ctx.Err())
	}

	if out.err != nil && out.err.Retryable && !final {
		log.Warn("job attempt failed; will retry", "code", out.err.Code, "err", out.err.Message)
		_ = w.Jobs.Requeue(context.WithoutCancel(ctx), p.JobID)
		w.unlock(lease, false)
		return out.err
	}
	o := rdb.Outcome{Status: spec.StatusSucceeded, Result: out.result, SessionUpdated: out.updated, LeaveRunning: slot.tenant()}
	if out.err != nil {
		o.Status, o.Error = spec.StatusFailed, out.err
	}
	if out.result != nil {
		out.result.Timings = spec.Timings{QueuedMs: max(0, start.Sub(p.AcceptedAt).Milliseconds()), RunMs: time.Since(start).Milliseconds()}
	}
	if err := w.finish(ctx, p.JobID, o); err != nil && !errors.Is(err, rdb.ErrJobEnded) {
		w.unlock(lease, false)
		return fmt.Errorf("write outcome: %w", err)
	}
	if slot != nil {
		slot.left = true // Finish gave the place back
	}
	w.jobsDone.WithLabelValues(p.Kind, o.Status).Inc()
	if out.err != nil {
		log.Info("job failed", "code", out.err.Code, "err", out.err.Message, "ms", time.Since(start).Milliseconds())
	} else {
		log.Info("job succeeded", "status_code", out.result.StatusCode, "ms", time.Since(start).Milliseconds(), "session_updated", out.updated)
	}
	w.unlock(lease, true)
	w.ended(ctx, p)
	return nil
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
		w.Logger.Warn("write outcome; retrying", "job", id, "err", err, "retry_in", delay)
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
			w.Logger.Warn("session unlock", "session", l.SID, "err", err)
		}
		return
	}
	next, err := w.Sessions.Release(ctx, l)
	if err != nil {
		w.Logger.Warn("session release", "session", l.SID, "err", err)
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

type runOutcome struct {
	result  *spec.Result
	err     *spec.Error
	updated bool
	saved   bool
}

// run executes the job and derives its outputs.
func (w *Worker) run(ctx context.Context, p *jobs.RunPayload, lease *session.Lease, log *slog.Logger) runOutcome {
	req := &p.Request
	ident, ierr := w.loadIdentity(ctx, p.Tenant, req)
	if ierr != nil {
		w.touchSession(ctx, lease)
		return runOutcome{err: ierr}
	}
	var prev *spec.State
	if lease != nil {
		st, _, err := w.Sessions.Load(ctx, p.Tenant, lease.SID)
		switch {
		case errors.Is(err, session.ErrNotFound):
		case err != nil:
			return runOutcome{err: spec.Errorf(spec.CodeInternal, true, "load session: %v", err)}
		default:
			prev = st
		}
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	res := &spec.Result{URL: req.URL}
	var html string
	var next *spec.State
	var jerr *spec.Error
	if req.Rendered(p.Kind) {
		shot := req.Wants(spec.OutScreenshot)
		br, err := w.Browser.Render(runCtx, browser.Request{
			URL: req.URL, WaitUntil: req.WaitUntil, Actions: req.Actions, Screenshot: shot,
			State: prev, CaptureState: lease != nil, Identity: browserIdentity(ident),
			BlockResources: !shot && !shotAction(req.Actions) && !req.LoadResources, Tenant: p.Tenant,
		})
		if err != nil {
			jerr = asJobError(err, runCtx)
		}
		if br != nil {
			res.FinalURL, res.StatusCode, res.Headers = br.FinalURL, br.StatusCode, br.Headers
			html = br.HTML
			if shot {
				res.Screenshot = br.Screenshot
			}
			for _, a := range br.Actions {
				res.Actions = append(res.Actions, spec.ActionResult{Index: a.Index, Type: a.Type, Status: a.Status,
					DurationMs: a.DurationMs, Result: a.Result, Screenshot: a.Screenshot, Error: a.Error})
			}
			next = br.State
		}
		if jerr != nil && br == nil {
			w.touchSession(ctx, lease) // a failed job used the session too
			return runOutcome{err: jerr}
		}
	} else {
		freq := fetch.Request{URL: req.URL, Timeout: timeout, Headers: identity.RequestHeaders(ident)}
		if prev != nil {
			freq.Cookies = prev.Cookies
		}
		fr, err := w.Fetcher.Do(runCtx, freq)
		if err != nil {
			w.touchSession(ctx, lease) // a failed job used the session too
			return runOutcome{err: asJobError(err, runCtx)}
		}
		res.FinalURL, res.StatusCode, res.Headers = fr.FinalURL, fr.StatusCode, fr.Headers
		html = fr.Body
		if lease != nil {
			next = spec.CloneState(prev)
			next.Cookies = fr.Cookies
		}
	}

	if err := w.outputs(runCtx, req, res, html); err != nil && jerr == nil {
		jerr = err
	}

	out := runOutcome{result: res, err: jerr}
	if lease != nil && next != nil && (jerr == nil || jerr.Code == spec.CodeActionFailed) {
		changed, err := w.Sessions.Save(context.WithoutCancel(ctx), lease, next)
		switch {
		case errors.Is(err, session.ErrTooLarge):
			out.err = spec.Errorf(spec.CodeSessionTooLarge, false, "the session state would exceed the size cap; the stored state is unchanged")
			w.touchSession(ctx, lease)
		case errors.Is(err, session.ErrDeleted):
			// The user deleted the session while the job ran (DELETE waits
			// only so long): the job's result stands, nothing is saved.
			w.Logger.Info("session deleted while its job ran; state not saved", "job", p.JobID, "session", lease.SID)
		case errors.Is(err, session.ErrStaleFence):
			return runOutcome{err: spec.Errorf(spec.CodeInternal, true, "session lease lost")}
		case err != nil:
			return runOutcome{err: spec.Errorf(spec.CodeInternal, true, "save session: %v", err)}
		default:
			out.updated, out.saved = changed, true
		}
	} else {
		w.touchSession(ctx, lease)
	}
	return out
}

// touchSession restarts the expiry clock of the session of lease (if any)
// after a job that did not save its state: every job of a session counts as
// a use, whatever its outcome.
func (w *Worker) touchSession(ctx context.Context, lease *session.Lease) {
	if lease != nil {
		_ = w.Sessions.Touch(context.WithoutCancel(ctx), lease)
	}
}

// outputs fills the requested outputs from the page's HTML.
func (w *Worker) outputs(ctx context.Context, req *spec.Request, res *spec.Result, html string) *spec.Error {
	if req.Wants(spec.OutHTML) {
		res.HTML = &html
	}
	needDoc := req.Wants(spec.OutMarkdown) || req.Wants(spec.OutText) || req.Wants(spec.OutLinks) || req.Wants(spec.OutMetadata) || req.Extract != nil
	if !needDoc {
		return nil
	}
	base := res.FinalURL
	if base == "" {
		base = req.URL
	}
	doc, err := convert.Parse(html, base)
	if err != nil {
		return spec.Errorf(spec.CodeInternal, false, "parse page: %v", err)
	}
	var md string
	if req.Wants(spec.OutMarkdown) || (req.Extract != nil && req.Extract.Mode == "schema") {
		md, err = doc.Markdown()
		if err != nil {
			return spec.Errorf(spec.CodeInternal, false, "markdown: %v", err)
		}
		if req.Wants(spec.OutMarkdown) {
			res.Markdown = &md
		}
	}
	if req.Wants(spec.OutText) {
		t := doc.Text()
		res.Text = &t
	}
	if req.Wants(spec.OutLinks) {
		res.Links = doc.Links()
		if res.Links == nil {
			res.Links = []string{}
		}
	}
	if req.Wants(spec.OutMetadata) {
		res.Metadata, _ = json.Marshal(doc.Metadata())
	}
	if req.Extract != nil && req.Wants(spec.OutJSON) {
		var v map[string]any
		switch req.Extract.Mode {
		case "selectors":
			v, err = extract.Selectors(doc, req.Extract.Selectors)
			if err != nil {
				return asJobError(err, ctx)
			}
		case "schema":
			var usage extract.Usage
			v, usage, err = extract.Schema(ctx, w.LLM, req.Extract.Schema, md, base)
			res.Usage, _ = json.Marshal(usage)
			if err != nil {
				return asJobError(err, ctx)
			}
		}
		res.JSON, _ = json.Marshal(v)
	}
	return nil
}

// asJobError turns any error into a job error.
func asJobError(err error, ctx context.Context) *spec.Error {
	var je *spec.Error
	if errors.As(err, &je) {
		return je
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return spec.Errorf(spec.CodeTimeout, true, "the job ran out of time")
	}
	return spec.Errorf(spec.CodeInternal, true, "%v", err)
}

// shotAction reports whether actions take a screenshot: the page then loads
// its images, media and fonts, as for a screenshot output.
func shotAction(actions []spec.Action) bool {
	for _, a := range actions {
		if a.Type == spec.ActScreenshot {
			return true
		}
	}
	return false
}

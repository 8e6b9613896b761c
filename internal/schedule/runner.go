package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/pagefleet/pagefleet/internal/batch"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/submit"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Kinds of schedule: what each run creates.
const (
	KindBatch = "batch"
	KindFetch = "fetch"
)

// Config holds a Runner's settings; zero values take defaults.
type Config struct {
	// Poll is the longest a Runner waits between two looks at the
	// schedules due (default 250 ms; it wakes sooner for a due time).
	Poll time.Duration
	// Lease is how long a claimed run may take to be created before
	// another Runner takes it over (default 15 s).
	Lease time.Duration
	// Misfire is how late a due time may still run (default 10 min): due
	// times missed by more (no process ran) are skipped.
	Misfire time.Duration
	// Parallel bounds the runs one Runner creates at once (default 4).
	Parallel int
	// WebhookSchedule is the retry schedule of schedule.run events.
	WebhookSchedule []time.Duration
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Poll <= 0 {
		c.Poll = 250 * time.Millisecond
	}
	if c.Lease <= 0 {
		c.Lease = 15 * time.Second
	}
	if c.Misfire <= 0 {
		c.Misfire = 10 * time.Minute
	}
	if c.Parallel <= 0 {
		c.Parallel = 4
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Runner creates the runs of every tenant's schedules that fall due.
type Runner struct {
	cfg     Config
	store   *rdb.Schedules
	submit  *submit.Service
	tenants *tenant.Registry
	queue   *asynq.Client

	runs   *prometheus.CounterVec
	claims prometheus.Counter

	sem chan struct{}
	wg  sync.WaitGroup
}

// Outcomes of pagefleet_schedule_runs_total.
const (
	outcomeCreated = spec.RunCreated
	outcomeSkipped = spec.RunSkipped
)

// NewRunner returns a Runner that creates runs through sub, for the
// tenants of reg, and enqueues schedule.run events with queue.
func NewRunner(store *rdb.Schedules, sub *submit.Service, reg *tenant.Registry, queue *asynq.Client, cfg Config) *Runner {
	cfg.setDefaults()
	f := promauto.With(cfg.Registerer)
	r := &Runner{cfg: cfg, store: store, submit: sub, tenants: reg, queue: queue, sem: make(chan struct{}, cfg.Parallel),
		runs: f.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_schedule_runs_total",
			Help: "Schedule runs this process recorded, by outcome (created: its batch or job; skipped: a tenant limit refused it)."},
			[]string{"outcome"}),
		claims: f.NewCounter(prometheus.CounterOpts{Name: "pagefleet_schedule_takeovers_total",
			Help: "Schedule runs this process took over after their claimer's lease ended (it died or stopped first)."}),
	}
	r.runs.WithLabelValues(outcomeCreated)
	r.runs.WithLabelValues(outcomeSkipped)
	return r
}

// Run creates runs until ctx ends, then waits for the runs it started.
func (r *Runner) Run(ctx context.Context) error {
	defer r.wg.Wait()
	for {
		r.tick(ctx)
		wait := r.cfg.Poll
		if next, ok, err := r.store.NextDue(ctx); err == nil && ok {
			wait = min(wait, max(0, next.Sub(r.cfg.Now())))
		}
		// A little jitter spreads the processes that all look at once.
		wait += time.Duration(rand.Int64N(int64(10 * time.Millisecond)))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// tick claims the due times due now and takes over the runs whose claim
// lapsed.
func (r *Runner) tick(ctx context.Context) {
	now := r.cfg.Now()
	due, err := r.store.DueBy(ctx, now, 100)
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("read the schedules due", "err", err)
		}
		return
	}
	for _, d := range due {
		r.claim(ctx, d, now)
	}
	lapsed, err := r.store.Lapsed(ctx, now, 20)
	if err != nil {
		return
	}
	for _, p := range lapsed {
		ok, err := r.store.Relet(ctx, p, now, now.Add(r.cfg.Lease))
		if err != nil || !ok {
			continue
		}
		r.claims.Inc()
		s, err := r.store.Get(ctx, "", p.ID)
		if err != nil {
			continue // deleted: nothing to create (Relet dropped it)
		}
		r.cfg.Logger.Info("schedule run taken over", "schedule", p.ID, "tenant", s.Tenant, "scheduled_at", p.Due)
		r.start(ctx, s, p.Due)
	}
}

// claim claims due time d and, when this process won it, starts its run.
func (r *Runner) claim(ctx context.Context, d rdb.Due, now time.Time) {
	s, err := r.store.Get(ctx, "", d.ID)
	if err != nil {
		return
	}
	sp, err := Parse(s.Cron, s.Timezone)
	if err != nil {
		r.cfg.Logger.Error("a stored schedule does not parse; it is not run", "schedule", s.ID, "tenant", s.Tenant, "err", err)
		return
	}
	plan := PlanClaim(sp, d.At, now, r.cfg.Misfire)
	var next *time.Time
	if !plan.Next.IsZero() {
		next = &plan.Next
	}
	ok, err := r.store.Claim(ctx, s.ID, d.At, next, now.Add(r.cfg.Lease), plan.Run)
	if err != nil || !ok {
		return
	}
	if !plan.Run {
		r.cfg.Logger.Warn("schedule due times missed for too long skipped", "schedule", s.ID, "tenant", s.Tenant,
			"scheduled_at", d.At, "next_run_at", plan.Next)
		return
	}
	r.start(ctx, s, d.At)
}

// start creates the run of s due at due in the background (at most
// Parallel at once); a Runner that stops lets it finish.
func (r *Runner) start(ctx context.Context, s *rdb.StoredSchedule, due time.Time) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return // the claim lapses; another process creates the run
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.sem }()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Lease)
		defer cancel()
		r.create(cctx, s, due)
	}()
}

// create creates the run's batch or job and records the run. A run a
// rate limit refused comes back in a second (until it is too late); one
// the queued-jobs limit refused is recorded as skipped; any other failure
// leaves it pending, to be taken over when its lease ends.
func (r *Runner) create(ctx context.Context, s *rdb.StoredSchedule, due time.Time) {
	log := r.cfg.Logger.With("schedule", s.ID, "tenant", s.Tenant, "scheduled_at", due)
	run := spec.ScheduleRun{ScheduleID: s.ID, ScheduledAt: due, CreatedAt: r.cfg.Now().UTC()}
	t := r.tenants.Get(s.Tenant)
	if t == nil {
		run.Status, run.Error = spec.RunSkipped, "the schedule's tenant is not configured"
		r.complete(ctx, log, s, run)
		return
	}
	sr, err := RunOf(s, due)
	if err != nil {
		run.Status, run.Error = spec.RunSkipped, err.Error()
		r.complete(ctx, log, s, run)
		return
	}
	id, err := r.submit.Scheduled(ctx, t, sr)
	var le *submit.LimitError
	switch {
	case errors.As(err, &le) && errors.Is(err, submit.ErrRateLimited) && r.cfg.Now().Sub(due) < r.cfg.Misfire:
		_ = r.store.Postpone(ctx, rdb.Pending{ID: s.ID, Due: due}, r.cfg.Now().Add(le.RetryAfter))
		log.Info("schedule run over the tenant's rate; it comes back", "retry_in_ms", le.RetryAfter.Milliseconds())
		return
	case errors.As(err, &le):
		run.Status, run.Error = spec.RunSkipped, le.Detail
	case err != nil:
		log.Warn("create a schedule run; it is taken over when its claim lapses", "err", err)
		return
	default:
		run.Status = spec.RunCreated
		if s.Kind == KindFetch {
			run.JobID = id
		} else {
			run.BatchID = id
		}
	}
	r.complete(ctx, log, s, run)
}

// complete sends schedule.run (before the record: a run recorded has sent
// it; its webhook-id is derived, so a run sent twice is one event) and
// records the run.
func (r *Runner) complete(ctx context.Context, log *slog.Logger, s *rdb.StoredSchedule, run spec.ScheduleRun) {
	if err := r.event(ctx, s, run); err != nil {
		log.Warn("enqueue schedule.run; the run is taken over when its claim lapses", "err", err)
		return
	}
	first, err := r.store.Complete(ctx, run)
	if err != nil {
		log.Warn("record a schedule run; it is taken over when its claim lapses", "err", err)
		return
	}
	if first {
		r.runs.WithLabelValues(run.Status).Inc()
		log.Info("schedule run", "status", run.Status, "batch", run.BatchID, "job", run.JobID, "error", run.Error)
	}
}

// event enqueues the run's schedule.run event when the schedule has a
// webhook.
func (r *Runner) event(ctx context.Context, s *rdb.StoredSchedule, run spec.ScheduleRun) error {
	w := s.Webhook
	if w == nil || w.URL == "" || !w.WantsEvent(spec.EventScheduleRun) {
		return nil
	}
	body, err := webhook.NewEvent(spec.EventScheduleRun, r.cfg.Now(), run, w.Metadata)
	if err != nil {
		return err
	}
	p := &webhook.DeliverPayload{WebhookID: webhook.EventID(s.ID+"@"+strconv.FormatInt(run.ScheduledAt.UnixMilli(), 10), spec.EventScheduleRun),
		Tenant: s.Tenant, URL: w.URL, Owner: s.ID, Body: body, Type: spec.EventScheduleRun}
	task, err := webhook.NewDeliverTask(p, r.cfg.WebhookSchedule)
	if err != nil {
		return err
	}
	_, err = r.queue.EnqueueContext(ctx, task, asynq.Retention(25*time.Hour))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	return nil
}

// RunOf is what the run of s due at due submits.
func RunOf(s *rdb.StoredSchedule, due time.Time) (submit.Run, error) {
	run := submit.Run{ScheduleID: s.ID, Due: due}
	switch s.Kind {
	case KindFetch:
		var req spec.Request
		if err := json.Unmarshal(s.Body, &req); err != nil {
			return run, fmt.Errorf("the schedule's fetch does not decode: %v", err)
		}
		run.Fetch = &req
	case KindBatch:
		var body spec.BatchRequest
		if err := json.Unmarshal(s.Body, &body); err != nil {
			return run, fmt.Errorf("the schedule's batch does not decode: %v", err)
		}
		kind, errs := batch.KindOf(&body)
		if len(errs) > 0 {
			return run, fmt.Errorf("the schedule's batch: %s", errs[0].Error())
		}
		b := &rdb.Batch{Kind: kind.Name(), Webhook: body.Webhook, Crawl: body.Crawl}
		if body.Template != nil {
			b.Template = *body.Template
		}
		run.Batch, run.Seeds = b, kind.Seeds(&body)
	default:
		return run, fmt.Errorf("unknown schedule kind %q", s.Kind)
	}
	return run, nil
}

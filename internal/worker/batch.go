package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/batch"
	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// ErrBulkBusy is returned to asynq when a batch job's tenant already runs as
// many bulk jobs as its running_bulk_jobs limit allows, on all workers
// together. It is an ErrTenantBusy: no failure, the task comes back after a
// short delay.
var ErrBulkBusy error = bulkBusyError{}

type bulkBusyError struct{}

func (bulkBusyError) Error() string        { return "tenant at its running_bulk_jobs limit" }
func (bulkBusyError) Is(target error) bool { return target == ErrTenantBusy }

// BulkConfig holds the settings of the batch side of a worker. Redis, Jobs,
// Tenants and Queue are required.
type BulkConfig struct {
	Redis   redis.UniversalClient
	Jobs    *rdb.Jobs
	Tenants *tenant.Registry
	// Queue enqueues fetch tasks and webhook events.
	Queue *asynq.Client
	// Fetcher reads robots.txt for crawls that respect it.
	Fetcher Fetcher
	// Schedule is the webhook retry schedule (empty: the default).
	Schedule []time.Duration
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// SlotLease is the lease of a running bulk job's slot, renewed while it
	// runs; a dead worker's slots lapse after it (default 20 s).
	SlotLease time.Duration
	// ReapInterval is how often lapsed slots are looked for (default 5 s).
	ReapInterval time.Duration
	// EnqueueConcurrency is how many goroutines an expansion enqueues
	// tasks with (default 8).
	EnqueueConcurrency int
}

func (c *BulkConfig) setDefaults() {
	if c.SlotLease <= 0 {
		c.SlotLease = 20 * time.Second
	}
	if c.ReapInterval <= 0 {
		c.ReapInterval = 5 * time.Second
	}
	if c.EnqueueConcurrency <= 0 {
		c.EnqueueConcurrency = 8
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Bulk runs the batch side of a worker: the batch:expand handler, the
// middleware that holds batch jobs to their tenant's running_bulk_jobs cap
// and completes batches, the finish hook that sends batch.page and follows a
// crawl's links, and the reaper of a dead worker's slots.
type Bulk struct {
	cfg   BulkConfig
	store *rdb.Batches

	busy     prometheus.Counter
	expanded prometheus.Counter
	reaped   prometheus.Counter

	mu    sync.Mutex
	confs map[string]*batchConf
}

// batchConf is what a worker keeps of a batch: its settings never change.
type batchConf struct {
	meta   *rdb.Batch
	filter *batch.Filter
	mu     sync.Mutex
	robots map[string]*batch.Robots
}

// NewBulk builds the batch side of a worker.
func NewBulk(cfg BulkConfig) *Bulk {
	cfg.setDefaults()
	f := promauto.With(cfg.Registry)
	return &Bulk{
		cfg:   cfg,
		store: rdb.NewBatches(cfg.Redis, cfg.Jobs),
		busy: f.NewCounter(prometheus.CounterOpts{Name: "pagefleet_bulk_busy_total",
			Help: "Batch job attempts handed back because their tenant ran as many bulk jobs as its running_bulk_jobs limit."}),
		expanded: f.NewCounter(prometheus.CounterOpts{Name: "pagefleet_batch_jobs_expanded_total",
			Help: "Jobs created from the URL lists of batches."}),
		reaped: f.NewCounter(prometheus.CounterOpts{Name: "pagefleet_bulk_slots_reaped_total",
			Help: "Running bulk jobs put back in the queue because their worker stopped renewing their slot."}),
		confs: map[string]*batchConf{},
	}
}

// Register adds the batch:expand handler and the bulk middleware to mux.
func (b *Bulk) Register(mux *asynq.ServeMux) {
	mux.Use(b.Middleware)
	mux.HandleFunc(jobs.KindBatchExpand, b.ProcessExpand)
}

// Run reaps lapsed bulk slots until ctx ends: the jobs of a worker that
// died go back to the queue within the slot lease, instead of waiting for
// asynq to notice the lost task.
func (b *Bulk) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.reap(ctx)
		}
	}
}

func (b *Bulk) conf(ctx context.Context, id string) (*batchConf, error) {
	b.mu.Lock()
	c := b.confs[id]
	b.mu.Unlock()
	if c != nil {
		return c, nil
	}
	m, err := b.store.Meta(ctx, id)
	if err != nil {
		return nil, err
	}
	c = &batchConf{meta: m, robots: map[string]*batch.Robots{}}
	if m.Crawl != nil {
		if c.filter, err = batch.NewFilter(m.Crawl); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	if len(b.confs) >= 1000 {
		b.confs = map[string]*batchConf{}
	}
	b.confs[id] = c
	b.mu.Unlock()
	return c, nil
}

func (b *Bulk) capOf(tenantID string) int {
	if t := b.cfg.Tenants.Get(tenantID); t != nil && t.Limits.RunningBulkJobs > 0 {
		return t.Limits.RunningBulkJobs
	}
	return tenant.PlanLimits[tenant.PlanFree].RunningBulkJobs
}

// Middleware holds batch jobs (fetch and interact tasks on the bulk queue)
// to their tenant's running_bulk_jobs cap: it takes a slot before the job
// runs, renews it while it runs and gives it back after; over the cap the
// task is handed back with ErrBulkBusy. After the job it completes the
// batch when that was its last job. Other tasks pass through.
func (b *Bulk) Middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if q, _ := asynq.GetQueueName(ctx); q != jobs.QueueBulk || (t.Type() != jobs.KindFetch && t.Type() != jobs.KindInteract) {
			return next.ProcessTask(ctx, t)
		}
		p, err := jobs.DecodeRun(t.Payload())
		if err != nil || p.BatchID == "" {
			return next.ProcessTask(ctx, t)
		}
		return b.runBulk(ctx, t, p, next)
	})
}

func (b *Bulk) runBulk(ctx context.Context, t *asynq.Task, p *jobs.RunPayload, next asynq.Handler) error {
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	// A task on its last attempt is never handed back (asynq would drop it).
	res, err := b.store.AcquireSlot(ctx, p.Tenant, p.JobID, b.capOf(p.Tenant), b.cfg.SlotLease, retried >= maxRetry)
	if err != nil {
		return fmt.Errorf("bulk slot: %w", err)
	}
	held := false
	switch res {
	case rdb.Busy:
		b.busy.Inc()
		return ErrBulkBusy
	case rdb.SlotHeld:
		// Another attempt of this job runs it (a replacement put in by the
		// reaper, or the original): this duplicate has nothing to do.
		b.cfg.Logger.Info("duplicate delivery of a running batch job dropped", "job", p.JobID, "batch", p.BatchID)
		return nil
	case rdb.SlotEnded:
		err = next.ProcessTask(ctx, t) // drops the task; re-sends the job's events
	default:
		held = true
		stop := b.hold(ctx, p)
		err = next.ProcessTask(ctx, t)
		stop()
	}
	bg := context.WithoutCancel(ctx)
	if err == nil && b.linksPending(bg, p) {
		// The finish hook could not follow the page's links: run the task
		// again (it finds the job ended and follows them).
		err = fmt.Errorf("crawl links of job %s not followed yet", p.JobID)
	}
	settle := err == nil || !handedBack(err)
	var st string
	var now bool
	switch {
	case held:
		// give the slot back (and settle the batch) in one round trip
		rctx, cancel := context.WithTimeout(bg, 5*time.Second)
		var serr error
		if settle {
			st, now, serr = b.store.ReleaseSlotAndSettle(rctx, p.Tenant, p.JobID, p.BatchID)
		} else {
			serr = b.store.ReleaseSlot(rctx, p.Tenant, p.JobID)
		}
		cancel()
		if serr != nil {
			if !errors.Is(serr, rdb.ErrBatchNotFound) {
				b.cfg.Logger.Warn("release bulk slot", "job", p.JobID, "tenant", p.Tenant, "err", serr)
			}
			settle = false
		}
	case settle:
		var serr error
		if st, now, serr = b.store.Settle(bg, p.BatchID); serr != nil {
			settle = false
		}
	}
	if settle {
		b.ended(bg, p.BatchID, st, now, retried > 0)
	}
	return err
}

// linksPending reports whether p is a crawl job whose links are still to
// be followed.
func (b *Bulk) linksPending(ctx context.Context, p *jobs.RunPayload) bool {
	c, err := b.conf(ctx, p.BatchID)
	if err != nil || c.meta.Crawl == nil {
		return false
	}
	pending, err := b.store.DiscoveryPending(ctx, p.JobID)
	return err == nil && pending
}

// hold renews the job's slot while it runs.
func (b *Bulk) hold(ctx context.Context, p *jobs.RunPayload) (stop func()) {
	return renewEvery(ctx, b.cfg.SlotLease/4, func(rctx context.Context) {
		ok, err := b.store.RenewSlot(rctx, p.Tenant, p.JobID, b.cfg.SlotLease)
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			b.cfg.Logger.Warn("renew bulk slot", "job", p.JobID, "tenant", p.Tenant, "err", err)
		case err == nil && !ok:
			b.cfg.Logger.Warn("bulk slot lapsed while the job ran; it may run twice", "job", p.JobID, "tenant", p.Tenant)
		}
	})
}

// settle completes the batch when nothing of it is left (see ended).
func (b *Bulk) settle(ctx context.Context, id string, redelivery bool) {
	st, now, err := b.store.Settle(ctx, id)
	if err != nil {
		if !errors.Is(err, rdb.ErrBatchNotFound) {
			b.cfg.Logger.Error("settle batch", "batch", id, "err", err)
		}
		return
	}
	b.ended(ctx, id, st, now, redelivery)
}

// ended sends batch.completed when a settle completed the batch (now), or
// saw it ended during a redelivery, whose first run may have died before
// sending it (the event is deduplicated).
func (b *Bulk) ended(ctx context.Context, id, st string, now, redelivery bool) {
	if st == spec.BatchRunning || (!now && !redelivery) {
		return
	}
	if now {
		b.cfg.Logger.Info("batch ended", "batch", id, "status", st)
	}
	if err := b.completed(ctx, id); err != nil {
		b.cfg.Logger.Error("enqueue batch.completed", "batch", id, "err", err)
	}
}

func (b *Bulk) completed(ctx context.Context, id string) error {
	c, err := b.conf(ctx, id)
	if err != nil {
		return err
	}
	if !c.meta.Webhook.WantsEvent(spec.EventBatchCompleted) {
		return nil
	}
	v, err := b.store.Get(ctx, "", id)
	if err != nil {
		return err
	}
	return webhook.EnqueueOnce(ctx, b.cfg.Queue, c.meta.Webhook, c.meta.Tenant, id, spec.EventBatchCompleted, v, b.cfg.Schedule)
}

// JobEnded is the FinishHook of batch jobs: batch.page for a job that
// succeeded or failed, and for a crawl page that succeeded, its links
// followed. It may run twice for one job; both steps are idempotent.
func (b *Bulk) JobEnded(ctx context.Context, p *jobs.RunPayload, job *spec.Job) {
	if p.BatchID == "" {
		return
	}
	c, err := b.conf(ctx, p.BatchID)
	if err != nil {
		if !errors.Is(err, rdb.ErrBatchNotFound) {
			b.cfg.Logger.Error("read batch", "batch", p.BatchID, "job", p.JobID, "err", err)
		}
		return
	}
	if (job.Status == spec.StatusSucceeded || job.Status == spec.StatusFailed) && c.meta.Webhook.WantsEvent(spec.EventBatchPage) {
		if err := b.pageEvent(ctx, c.meta, job); err != nil {
			b.cfg.Logger.Error("enqueue batch.page", "batch", p.BatchID, "job", p.JobID, "err", err)
		}
	}
	if c.meta.Crawl != nil && job.Status == spec.StatusSucceeded {
		if err := b.follow(ctx, c, p, job); err != nil {
			b.cfg.Logger.Error("follow crawl links", "batch", p.BatchID, "job", p.JobID, "err", err)
		}
	}
}

// Swept settles the batch of a job that the sweep ended (see
// Worker.Sweep): it may have been the batch's last job.
func (b *Bulk) Swept(ctx context.Context, p *jobs.RunPayload) {
	if p.BatchID != "" {
		b.settle(ctx, p.BatchID, false)
	}
}

// pageEvent enqueues batch.page for job once: its webhook-id is derived
// from the job, its attempts are logged under the batch.
func (b *Bulk) pageEvent(ctx context.Context, m *rdb.Batch, job *spec.Job) error {
	body, err := webhook.NewEvent(spec.EventBatchPage, time.Now(), job, m.Webhook.Metadata)
	if err != nil {
		return err
	}
	dp := &webhook.DeliverPayload{WebhookID: webhook.EventID(job.ID, spec.EventBatchPage), Tenant: m.Tenant, URL: m.Webhook.URL,
		Owner: m.ID, Body: body, Type: spec.EventBatchPage}
	task, err := webhook.NewDeliverTask(dp, b.cfg.Schedule)
	if err != nil {
		return err
	}
	_, err = b.cfg.Queue.EnqueueContext(ctx, task, asynq.Retention(25*time.Hour))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	return nil
}

// follow adds the links of a crawl page as jobs of its batch: normalised,
// filtered (depth, same origin, include/exclude, robots.txt), each URL once
// per batch, then closes the page's discovery.
func (b *Bulk) follow(ctx context.Context, c *batchConf, p *jobs.RunPayload, job *spec.Job) error {
	pending, err := b.store.DiscoveryPending(ctx, p.JobID)
	if err != nil || !pending {
		return err
	}
	m := c.meta
	depth := p.Depth + 1
	var cands []string
	if job.Result != nil && m.Crawl.MaxDepth != nil && depth <= *m.Crawl.MaxDepth {
		seen := map[string]bool{}
		for _, l := range job.Result.Links {
			n, u, ok := c.filter.Follow(l)
			if !ok || seen[n] {
				continue
			}
			seen[n] = true
			if m.Crawl.RespectRobotsTxt {
				path := u.EscapedPath()
				if u.RawQuery != "" {
					path += "?" + u.RawQuery
				}
				if !b.robots(ctx, c, u.Scheme+"://"+u.Host).Allowed(path) {
					continue
				}
			}
			cands = append(cands, n)
		}
	}
	children, err := b.store.Discover(ctx, m, p.JobID, depth, cands)
	if err != nil {
		return err
	}
	payloads := make([]*jobs.RunPayload, len(children))
	now := time.Now().UTC()
	for i, ch := range children {
		payloads[i] = b.payload(m, ch.JobID, ch.URL, depth)
		payloads[i].AcceptedAt = now // queued from now, not from the batch's start
	}
	if err := b.enqueueAll(ctx, payloads); err != nil {
		return err
	}
	return b.store.DiscoveryDone(ctx, m.ID, p.JobID)
}

// robots returns origin's robots.txt rules for the batch, fetched once per
// batch (whichever worker gets the lock fetches; the others wait for it).
func (b *Bulk) robots(ctx context.Context, c *batchConf, origin string) *batch.Robots {
	c.mu.Lock()
	r := c.robots[origin]
	c.mu.Unlock()
	if r != nil {
		return r
	}
	r = b.loadRobots(ctx, c.meta.ID, origin)
	c.mu.Lock()
	c.robots[origin] = r
	c.mu.Unlock()
	return r
}

func (b *Bulk) loadRobots(ctx context.Context, id, origin string) *batch.Robots {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if f, ok, err := b.store.Robots(ctx, id, origin); err == nil && ok {
			return robotsRules(f)
		}
		if got, err := b.store.LockRobots(ctx, id, origin, 30*time.Second); err == nil && got {
			f := b.fetchRobots(ctx, origin)
			if err := b.store.SetRobots(ctx, id, origin, f); err != nil {
				b.cfg.Logger.Warn("store robots.txt", "batch", id, "origin", origin, "err", err)
			}
			return robotsRules(f)
		}
		select {
		case <-ctx.Done():
			return batch.DenyAll
		case <-time.After(100 * time.Millisecond):
		}
	}
	return batch.DenyAll
}

// robotsRules are the rules of a robots.txt outcome.
func robotsRules(f rdb.RobotsFile) *batch.Robots {
	switch {
	case f.AllowAll:
		return batch.AllowAll
	case f.DenyAll:
		return batch.DenyAll
	}
	return batch.ParseRobots(f.Text)
}

// fetchRobots reads origin's robots.txt: 2xx is parsed, 4xx allows
// everything, a 5xx or an unreachable site allows nothing (RFC 9309).
func (b *Bulk) fetchRobots(ctx context.Context, origin string) rdb.RobotsFile {
	if b.cfg.Fetcher == nil {
		return rdb.RobotsFile{AllowAll: true}
	}
	resp, err := b.cfg.Fetcher.Do(ctx, fetch.Request{URL: origin + "/robots.txt", Timeout: 10 * time.Second})
	switch {
	case err != nil:
		b.cfg.Logger.Info("robots.txt unreachable; the origin is skipped", "origin", origin, "err", err)
		return rdb.RobotsFile{DenyAll: true}
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return rdb.RobotsFile{Text: resp.Body}
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return rdb.RobotsFile{AllowAll: true}
	}
	return rdb.RobotsFile{DenyAll: true}
}

// payload is the fetch task of a batch job.
func (b *Bulk) payload(m *rdb.Batch, jobID, url string, depth int) *jobs.RunPayload {
	req := m.Template
	req.URL = url
	return &jobs.RunPayload{JobID: jobID, Tenant: m.Tenant, Kind: spec.KindFetch, BatchID: m.ID, Depth: depth,
		AcceptedAt: m.CreatedAt, Request: req}
}

// enqueueAll enqueues the tasks with a few goroutines; a task that exists
// already (a re-run) is no error.
func (b *Bulk) enqueueAll(ctx context.Context, ps []*jobs.RunPayload) error {
	if len(ps) == 0 {
		return nil
	}
	work := make(chan *jobs.RunPayload)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(b.cfg.EnqueueConcurrency, len(ps)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				task, err := jobs.NewRunTask(p)
				if err == nil {
					_, err = b.cfg.Queue.EnqueueContext(ctx, task)
				}
				if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("enqueue job %s: %w", p.JobID, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, p := range ps {
		work <- p
	}
	close(work)
	wg.Wait()
	return first
}

// expandChunk is how many URLs one expansion step turns into jobs.
const expandChunk = 500

// ProcessExpand handles batch:expand: it turns the batch's URL list into
// job records (a chunk per transaction, resumable from the expansion mark)
// and enqueues their fetch tasks, then closes the expansion. A re-run after
// a crash resumes where the last run stopped and enqueues again the tasks
// of jobs still queued (task id = job id: no duplicates).
func (b *Bulk) ProcessExpand(ctx context.Context, t *asynq.Task) error {
	p, err := jobs.DecodeExpand(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
	}
	log := b.cfg.Logger.With("batch", p.BatchID, "tenant", p.Tenant)
	c, err := b.conf(ctx, p.BatchID)
	if errors.Is(err, rdb.ErrBatchNotFound) {
		log.Warn("batch to expand is gone")
		return nil
	}
	if err != nil {
		return err
	}
	m := c.meta
	st, err := b.store.ExpandState(ctx, m.ID)
	if err != nil {
		return err
	}
	if st.Done {
		b.settle(ctx, m.ID, true)
		return nil
	}
	start := time.Now()
	if st.Expanded > 0 {
		if err := b.reenqueue(ctx, m, st.Expanded); err != nil {
			return err
		}
	}
	for i := st.Expanded; i < st.Total; {
		urls, err := b.store.URLs(ctx, m.ID, i, expandChunk)
		if err != nil {
			return err
		}
		if len(urls) == 0 {
			return fmt.Errorf("%w: batch %s has no URL at index %d", asynq.SkipRetry, m.ID, i)
		}
		ids, cancelled, err := b.store.CreateChunk(ctx, m, i, urls)
		if err != nil {
			return err
		}
		if cancelled {
			if _, err := b.cfg.Jobs.CancelQueued(ctx, m.Tenant, ids); err != nil {
				return err
			}
		} else {
			ps := make([]*jobs.RunPayload, len(ids))
			for k, id := range ids {
				ps[k] = b.payload(m, id, urls[k], 0)
			}
			if err := b.enqueueAll(ctx, ps); err != nil {
				return err
			}
		}
		b.expanded.Add(float64(len(ids)))
		i += len(urls)
	}
	if err := b.store.FinishExpand(ctx, m.ID); err != nil {
		return err
	}
	log.Info("batch expanded", "jobs", st.Total, "ms", time.Since(start).Milliseconds())
	b.settle(context.WithoutCancel(ctx), m.ID, false)
	return nil
}

// reenqueue enqueues again the tasks of the first n jobs that are still
// queued (their enqueue may have been cut short by a crash).
func (b *Bulk) reenqueue(ctx context.Context, m *rdb.Batch, n int) error {
	for i := 0; i < n; i += expandChunk {
		ids, err := b.store.JobIDs(ctx, m.ID, int64(i), int64(min(expandChunk, n-i)))
		if err != nil {
			return err
		}
		infos, err := b.cfg.Jobs.GetMany(ctx, m.Tenant, ids, false)
		if err != nil {
			return err
		}
		var ps []*jobs.RunPayload
		for _, in := range infos {
			if in.Job.Status == spec.StatusQueued {
				ps = append(ps, b.payload(m, in.Job.ID, in.Job.URL, 0))
			}
		}
		if err := b.enqueueAll(ctx, ps); err != nil {
			return err
		}
	}
	return nil
}

// reap puts the jobs whose bulk slot lapsed back in the queue.
func (b *Bulk) reap(ctx context.Context) {
	tenants, err := b.store.SlotTenants(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.cfg.Logger.Warn("list bulk slots", "err", err)
		}
		return
	}
	for _, tn := range tenants {
		ids, err := b.store.ReapSlots(ctx, tn)
		if err != nil {
			b.cfg.Logger.Warn("reap bulk slots", "tenant", tn, "err", err)
			continue
		}
		for _, id := range ids {
			if err := b.requeueLapsed(ctx, tn, id); err != nil {
				b.cfg.Logger.Error("requeue job of a lapsed bulk slot", "job", id, "tenant", tn, "err", err)
			}
		}
	}
}

// requeueLapsed puts a job whose worker died back in the queue, as a new
// task (the old one stays with asynq until it notices, and then finds the
// job ended or running and drops it).
func (b *Bulk) requeueLapsed(ctx context.Context, tenantID, id string) error {
	if err := b.cfg.Jobs.Requeue(ctx, id); err != nil {
		return err
	}
	in, err := b.cfg.Jobs.Get(ctx, tenantID, id, false)
	if errors.Is(err, rdb.ErrJobNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if in.Job.Status != spec.StatusQueued || in.Job.BatchID == "" {
		return nil
	}
	c, err := b.conf(ctx, in.Job.BatchID)
	if err != nil {
		return err
	}
	p := b.payload(c.meta, id, in.Job.URL, in.Depth)
	p.Kind = in.Job.Kind
	task, err := jobs.NewRunTask(p)
	if err != nil {
		return err
	}
	taskID := id + "-r" + strconv.FormatInt(time.Now().UnixMilli(), 36)
	if _, err := b.cfg.Queue.EnqueueContext(ctx, task, asynq.TaskID(taskID)); err != nil {
		return err
	}
	// The old task may still reach asynq's archive; the sweep leaves the
	// job to this one.
	if err := b.cfg.Jobs.SetTask(ctx, id, taskID); err != nil {
		return err
	}
	b.reaped.Inc()
	b.cfg.Logger.Warn("bulk slot lapsed (its worker died?); job queued again", "job", id, "tenant", tenantID, "batch", in.Job.BatchID)
	return nil
}

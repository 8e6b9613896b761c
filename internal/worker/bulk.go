package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/crawl"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
)

// ErrBulkBusy is returned to asynq when a batch job's tenant already runs as
// many bulk jobs as its running_bulk_jobs limit allows, on all workers
// together. It is an ErrTenantBusy: no failure, the task comes back after a
// short delay.
var ErrBulkBusy error = bulkBusyError{}

type bulkBusyError struct{}

func (bulkBusyError) Error() string { return "tenant at its running_bulk_jobs limit" }

func (bulkBusyError) Is(target error) bool { return target == ErrTenantBusy }

// BulkConfig holds the settings of the batch side of a worker. Redis, Jobs,
// Tenants and Queue are required.
type BulkConfig struct {
	Redis redis.UniversalClient
	Jobs  *rdb.Jobs
	// Batches stores the batches (nil: a store on Redis).
	Batches *rdb.Batches
	Tenants *tenant.Registry
	// Queue enqueues fetch tasks and webhook events.
	Queue *asynq.Client
	// Follower decides which links of a crawl page its crawl follows.
	Follower *crawl.Follower
	// Schedule is the webhook retry schedule (empty: the default).
	Schedule []time.Duration
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// SlotLease is the lease of a running bulk job's slot, renewed while it
	// runs; a dead worker's slots lapse after it (default 20 s).
	SlotLease time.Duration
	// EnqueueConcurrency is how many goroutines an expansion enqueues
	// tasks with (default 8).
	EnqueueConcurrency int
}

func (c *BulkConfig) setDefaults() {
	if c.SlotLease <= 0 {
		c.SlotLease = 20 * time.Second
	}
	if c.EnqueueConcurrency <= 0 {
		c.EnqueueConcurrency = 8
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Batches == nil {
		c.Batches = rdb.NewBatches(c.Redis, c.Jobs)
	}
	if c.Follower == nil {
		c.Follower = crawl.NewFollower(c.Batches, nil, c.Logger)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Bulk runs the batch side of a worker. Its parts, one file each: the
// middleware that holds batch jobs to their tenant's running_bulk_jobs cap
// and settles their batch (bulk.go); the batch:expand handler that turns a
// batch's URL list into jobs (expand.go); the finish hook that sends
// batch.page and has a crawl page's links followed (pages.go).
type Bulk struct {
	cfg   BulkConfig
	store *rdb.Batches

	busy     prometheus.Counter
	expanded prometheus.Counter

	follower *crawl.Follower

	mu    sync.Mutex
	confs map[string]*batchConf
}

// batchConf is what a worker keeps of a batch: its settings never change.
type batchConf struct {
	meta *rdb.Batch
}

// NewBulk builds the batch side of a worker.
func NewBulk(cfg BulkConfig) *Bulk {
	cfg.setDefaults()
	f := promauto.With(cfg.Registry)
	return &Bulk{
		cfg:      cfg,
		store:    cfg.Batches,
		follower: cfg.Follower,
		busy: f.NewCounter(prometheus.CounterOpts{Name: "pagefleet_bulk_busy_total",
			Help: "Batch job attempts handed back because their tenant ran as many bulk jobs as its running_bulk_jobs limit."}),
		expanded: f.NewCounter(prometheus.CounterOpts{Name: "pagefleet_batch_jobs_expanded_total",
			Help: "Jobs created from the URL lists of batches."}),
		confs: map[string]*batchConf{},
	}
}

// Register adds the batch:expand handler and the bulk middleware to mux.
func (b *Bulk) Register(mux *asynq.ServeMux) {
	mux.Use(b.Middleware)
	mux.HandleFunc(jobs.KindBatchExpand, b.ProcessExpand)
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
	c = &batchConf{meta: m}
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
		b.cfg.Logger.Info("duplicate delivery of a running batch job dropped", "job", p.JobID, "tenant", p.Tenant, "batch", p.BatchID)
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

// CrawlDelay is the Crawl-delay of the host of p's URL, for a page of a
// crawl (0 for other jobs, and for a host without one).
func (b *Bulk) CrawlDelay(ctx context.Context, p *jobs.RunPayload) time.Duration {
	if p.BatchID == "" {
		return 0
	}
	c, err := b.conf(ctx, p.BatchID)
	if err != nil || c.meta.Crawl == nil {
		return 0
	}
	u, err := url.Parse(p.Request.URL)
	if err != nil {
		return 0
	}
	d, err := b.follower.CrawlDelay(ctx, c.meta, u.Scheme+"://"+u.Host)
	if err != nil {
		b.cfg.Logger.Warn("read robots.txt for its crawl-delay", "job", p.JobID, "tenant", p.Tenant, "batch", p.BatchID, "err", err)
	}
	return d
}

// Command worker pulls jobs from asynq and runs them as plain HTTP fetches or
// in pooled headless Chrome.
//
// Shutdown order on SIGTERM: stop pulling work (and claiming schedules' due
// times) and let in-flight jobs finish within PAGEFLEET_SHUTDOWN_TIMEOUT;
// then the rest stop and hand their jobs back (worker.Drain) and Chrome
// stops, and asynq requeues their tasks; wait for the schedule runs this
// worker started; stop the heartbeat and leave the workers' registry (worker.Recovery); stop the
// Chrome pool (no chromium process outlives the worker), stop the egress
// proxy and the metrics server, then close Redis.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pagefleet/pagefleet/internal/artifact"
	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/internal/config"
	"github.com/pagefleet/pagefleet/internal/crawl"
	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/extract"
	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/fresh"
	"github.com/pagefleet/pagefleet/internal/metrics"
	"github.com/pagefleet/pagefleet/internal/polite"
	"github.com/pagefleet/pagefleet/internal/proxy"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/schedule"
	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/internal/submit"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/internal/worker"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pagefleet worker:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	// The worker's id names it in Redis: its heartbeat, the owner tokens
	// of its attempts and its claims (see internal/worker/recover.go).
	workerID := rdb.NewID("w")
	log := cfg.NewLogger("worker").With("worker_id", workerID)
	rc, err := cfg.NewRedis()
	if err != nil {
		return err
	}
	defer rc.Close()
	rdb.MigrateAtStart(rc, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// asynq's queue metrics on both binaries, as on the API (dashboards and
	// alerts take the max over instances).
	// Collected at most every 5 s: each collection sends Redis ≈ 30
	// commands, whatever polls /metrics.
	reg.MustRegister(metrics.Cached(asynqmetrics.NewQueueMetricsCollector(asynq.NewInspectorFromRedisClient(rc)), 5*time.Second))

	policy := &egress.Policy{AllowPrivate: cfg.AllowPrivate, Allow: cfg.AllowCIDRs, Ports: cfg.AllowedPorts}
	guard := egress.NewProxyWithOptions(policy, egress.ProxyOptions{Logger: log, Registerer: reg})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := guard.Start(ctx); err != nil {
		return fmt.Errorf("egress proxy: %w", err)
	}
	pool, err := browser.New(browser.Config{
		ChromePath: cfg.ChromePath, Browsers: cfg.Browsers,
		ContextsPerBrowser: (cfg.Concurrency + cfg.Browsers - 1) / cfg.Browsers,
		JobsPerBrowser:     cfg.JobsPerBrowser, AllowPrivate: cfg.AllowPrivate,
		ProxyURL: guard.URL(), EgressError: guard.LastError, Logger: log, Registerer: reg,
		MaxDownloadBytes: cfg.MaxDownloadBytes,
	})
	if err != nil {
		return err
	}
	if err := pool.Start(ctx); err != nil {
		return fmt.Errorf("chrome pool: %w", err)
	}
	sessions, err := session.New(rc, session.Config{TTL: cfg.SessionTTL, MaxBytes: cfg.SessionMaxBytes, Key: cfg.SessionKey, Registerer: reg,
		Worker: workerID})
	if err != nil {
		return err
	}
	tenants, err := tenant.Load(cfg.TenantsFile, cfg.DevAPIKey)
	if err != nil {
		return err
	}
	proxies, err := proxy.Load(cfg.ProxiesFile, tenants.All())
	if err != nil {
		return err
	}
	picker := &proxy.Picker{Store: rdb.NewProxies(rc), Metrics: proxy.NewMetrics(reg), Log: log}
	picker.Attach(proxies)
	exits := &proxy.Exits{Policy: policy, Logger: log, Registerer: reg}
	queue := asynq.NewClientFromRedisClient(rc)
	defer queue.Close()
	deliverer := webhook.NewDeliverer(webhook.Config{Policy: policy, Schedule: cfg.WebhookSchedule, Tenants: tenants, Log: rdb.NewDeliveries(rc, cfg.ResultTTL), Logger: log, Registerer: reg})
	events := &worker.Events{Client: queue, Schedule: cfg.WebhookSchedule, Logger: log}
	jobStore := rdb.NewJobs(rc, cfg.ResultTTL)
	fetcher := fetch.New(fetch.Config{Policy: policy, Registerer: reg})
	batches := rdb.NewBatches(rc, jobStore)
	bulk := worker.NewBulk(worker.BulkConfig{Redis: rc, Jobs: jobStore, Batches: batches, Tenants: tenants, Queue: queue,
		Follower: crawl.NewFollower(batches, fetcher, log),
		Schedule: cfg.WebhookSchedule, Logger: log, Registry: reg})
	recovery := worker.NewRecovery(workerID, rdb.NewWorkers(rc), jobStore, queue, log, reg)
	// Freshness: the result cache and change tracking in each job's turn;
	// the schedule runner (every worker and API process runs one).
	stores := rdb.Open(rc, cfg.ResultTTL).WithCacheTTL(rc, cfg.CacheTTL)
	freshMetrics := fresh.NewMetrics(reg)
	submitter := submit.New(submit.Deps{Jobs: jobStore, Batches: batches, Sessions: stores.Sessions, Idem: stores.Idempotency,
		Queue: queue, LineTTL: sessions.LineTTL(), Logger: log})
	schedules := schedule.NewRunner(stores.Schedules, submitter, tenants, queue,
		schedule.Config{WebhookSchedule: cfg.WebhookSchedule, Logger: log, Registerer: reg})
	store, err := artifact.OpenFleet(ctx, artifact.Settings{URL: cfg.ArtifactsURL, Secret: cfg.ArtifactsSecret, PublicURL: cfg.PublicURL, TTL: cfg.ResultTTL}, stores.Artifacts)
	if err != nil {
		return err
	}
	reaper := &artifact.Reaper{Store: store, Index: stores.Artifacts, Logger: log}
	w := worker.New(worker.Deps{
		ID:    workerID,
		Redis: rc, Jobs: jobStore, Sessions: sessions, Browser: pool,
		Fetcher: fetcher,
		LLM:     extract.LLMConfig{BaseURL: cfg.LLMBaseURL, Model: cfg.LLMModel, APIKey: cfg.LLMAPIKey},
		Logger:  log, Registry: reg,
		Hooks:        []worker.FinishHook{events.JobEnded, bulk.JobEnded},
		Swept:        []func(context.Context, *jobs.RunPayload){bulk.Swept},
		RunningLimit: worker.TenantRunningLimit(tenants),
		Politeness: &worker.Politeness{
			Hosts:    rdb.NewHosts(rc),
			Operator: polite.Operator{Concurrency: cfg.HostConcurrency, Delay: cfg.HostDelay},
			Tenant: func(id string) spec.Politeness {
				if t := tenants.Get(id); t != nil {
					return t.Politeness
				}
				return spec.Politeness{}
			},
			CrawlDelay: bulk.CrawlDelay,
		},
		Identities: rdb.NewIdentities(rc, rdb.IdentitiesConfig{}),
		Proxies: &worker.Proxies{Dir: proxies, Picker: picker, Exits: exits,
			BlockRules: func(id string) []spec.BlockRule {
				if t := tenants.Get(id); t != nil {
					return t.BlockRules
				}
				return nil
			}},
		Cache: stores.Cache, Tracker: stores.Tracker, Fresh: freshMetrics, PageEvents: bulk.PageEvents,
		Artifacts: store,
	})
	srv := asynq.NewServerFromRedisClient(rc, asynq.Config{
		Concurrency: cfg.Concurrency,
		Queues:      jobs.QueueWeights,
		IsFailure:   worker.IsFailure,
		RetryDelayFunc: func(n int, err error, t *asynq.Task) time.Duration {
			if t.Type() == jobs.KindWebhookDeliver {
				return deliverer.RetryDelay(n, err, t)
			}
			return worker.RetryDelay(n, err, t)
		},
		ShutdownTimeout:          cfg.ShutdownTimeout + worker.HandBackTime, // see w.Drain below
		TaskCheckInterval:        100 * time.Millisecond,
		DelayedTaskCheckInterval: time.Second,
		Logger:                   asynqLogger{log},
		LogLevel:                 asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if worker.IsFailure(err) {
				log.Debug("task attempt failed", "kind", t.Type(), "err", err)
			}
		}),
	})
	mux := asynq.NewServeMux()
	mux.Use(recovery.Middleware) // claims of webhook deliveries and batch expansions
	w.Register(mux)
	bulk.Register(mux) // batch:expand, and the running_bulk_jobs cap on batch jobs
	mux.Handle(jobs.KindWebhookDeliver, deliverer)

	// Metrics and health.
	hmux := http.NewServeMux()
	hmux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hmux.HandleFunc("/healthz", func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte(`{"status":"ok"}`)) })
	hmux.HandleFunc("/readyz", func(rw http.ResponseWriter, r *http.Request) {
		c, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := rc.Ping(c).Err(); err != nil {
			http.Error(rw, `{"status":"unavailable","redis":"down"}`, http.StatusServiceUnavailable)
			return
		}
		if err := pool.Ready(); err != nil {
			http.Error(rw, `{"status":"unavailable","chrome":"down"}`, http.StatusServiceUnavailable)
			return
		}
		rw.Write([]byte(`{"status":"ready"}`))
	})
	ln, err := net.Listen("tcp", cfg.WorkerAddr)
	if err != nil {
		return fmt.Errorf("PAGEFLEET_WORKER_ADDR: %w", err)
	}
	hsrv := &http.Server{Handler: hmux, ReadHeaderTimeout: 5 * time.Second}
	go hsrv.Serve(ln)

	lctx, lcancel := context.WithCancel(context.Background())
	defer lcancel()
	go w.CancelListener(lctx)
	go w.Sweep(lctx, cfg.SweepInterval)    // ends the jobs whose tasks asynq archived without an outcome
	go reaper.Run(lctx, cfg.SweepInterval) // deletes the artifacts of jobs whose retention passed
	scheduled := make(chan struct{})
	go func() { defer close(scheduled); schedules.Run(ctx) }()
	if err := recovery.Start(ctx); err != nil {
		return err
	}
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("asynq: %w", err)
	}
	log.Info("worker running", "concurrency", cfg.Concurrency, "browsers", cfg.Browsers, "metrics", ln.Addr().String())

	<-ctx.Done()
	log.Info("stopping: no new jobs; waiting for running ones", "grace_ms", cfg.ShutdownTimeout.Milliseconds())
	// When the grace period ends, the jobs still running stop and hand
	// themselves back, and Chrome stops, so that no page of theirs still
	// loads when asynq requeues their tasks HandBackTime later.
	drained := make(chan struct{})
	drain := time.AfterFunc(cfg.ShutdownTimeout, func() {
		defer close(drained)
		w.Drain()
		dctx, cancel := context.WithTimeout(context.Background(), worker.HandBackTime/3)
		defer cancel()
		if err := pool.Stop(dctx); err != nil {
			log.Info("chrome pool stopped under running jobs", "err", err)
		}
	})
	srv.Shutdown()
	if !drain.Stop() {
		<-drained
	}
	lcancel()
	<-scheduled // the schedule runs it started are created (each within its lease)
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := recovery.Stop(sctx); err != nil {
		log.Warn("leave the workers' registry", "err", err)
	}
	if err := pool.Stop(sctx); err != nil {
		log.Warn("chrome pool stop", "err", err)
	}
	_ = guard.Stop(sctx)
	_ = exits.Stop(sctx)
	picker.Wait()
	_ = hsrv.Shutdown(sctx)
	log.Info("stopped")
	return nil
}

type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)); os.Exit(1) }

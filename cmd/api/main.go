// Command api is pagefleet's HTTP API: it validates and authenticates
// requests, writes job records, enqueues tasks and serves results.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pagefleet/pagefleet/internal/api"
	"github.com/pagefleet/pagefleet/internal/artifact"
	"github.com/pagefleet/pagefleet/internal/config"
	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/fresh"
	"github.com/pagefleet/pagefleet/internal/metrics"
	"github.com/pagefleet/pagefleet/internal/proxy"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/schedule"
	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/internal/submit"
	"github.com/pagefleet/pagefleet/internal/tenant"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pagefleet api:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	log := cfg.NewLogger("api")
	tenants, err := tenant.Load(cfg.TenantsFile, cfg.DevAPIKey)
	if err != nil {
		return err
	}
	proxies, err := proxy.Load(cfg.ProxiesFile, tenants.All())
	if err != nil {
		return err
	}
	if tenants.Len() == 0 {
		log.Warn("no tenants: set PAGEFLEET_TENANTS_FILE or PAGEFLEET_DEV_API_KEY; every /v1 call will be 401")
	}
	rc, err := cfg.NewRedis()
	if err != nil {
		return err
	}
	defer rc.Close()
	rdb.MigrateAtStart(rc, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Queue depth, latency and totals per asynq queue (asynq_queue_size,
	// asynq_queue_latency_seconds, asynq_tasks_enqueued_total{state}, …),
	// read from Redis at a scrape, at most every 5 s: each collection sends
	// Redis ≈ 30 commands, whatever polls /metrics.
	reg.MustRegister(metrics.Cached(asynqmetrics.NewQueueMetricsCollector(asynq.NewInspectorFromRedisClient(rc)), 5*time.Second))
	sessions, err := session.New(rc, session.Config{TTL: cfg.SessionTTL, MaxBytes: cfg.SessionMaxBytes, Key: cfg.SessionKey, Registerer: reg})
	if err != nil {
		return err
	}
	stores := rdb.Open(rc, cfg.ResultTTL).WithCacheTTL(rc, cfg.CacheTTL)
	queue := asynq.NewClientFromRedisClient(rc)
	submitter := submit.New(submit.Deps{Jobs: stores.Jobs, Batches: stores.Batches, Sessions: stores.Sessions,
		Idem: stores.Idempotency, Queue: queue, LineTTL: sessions.LineTTL(), Logger: log,
		Cache: stores.Cache, Tracker: stores.Tracker, Fresh: fresh.NewMetrics(reg), WebhookSchedule: cfg.WebhookSchedule})
	// Every API and worker process runs the schedules that fall due; each
	// due time makes one run whichever of them claims it (package schedule).
	schedules := schedule.NewRunner(stores.Schedules, submitter, tenants, queue,
		schedule.Config{WebhookSchedule: cfg.WebhookSchedule, Logger: log, Registerer: reg})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	artifacts, err := artifact.OpenFleet(ctx, artifact.Settings{URL: cfg.ArtifactsURL, Secret: cfg.ArtifactsSecret, PublicURL: cfg.PublicURL, TTL: cfg.ResultTTL}, stores.Artifacts)
	if err != nil {
		return err
	}
	srv := api.New(api.Config{Addr: cfg.APIAddr, ResultTTL: cfg.ResultTTL, LLMEnabled: cfg.LLMBaseURL != "", AdminToken: cfg.AdminToken,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, WebhookSchedule: cfg.WebhookSchedule},
		api.Deps{Redis: rc, Tenants: tenants, Proxies: proxies, Stores: stores, Sessions: sessions, Queue: queue, Submit: submitter, Logger: log, Registry: reg,
			Artifacts: artifacts,
			// POST /v1/map reads sites with plain HTTP, through the same
			// egress guard as the workers.
			Fetcher: fetch.New(fetch.Config{Policy: &egress.Policy{AllowPrivate: cfg.AllowPrivate, Allow: cfg.AllowCIDRs, Ports: cfg.AllowedPorts}, Registerer: reg})})

	if err := srv.Start(ctx); err != nil {
		return err
	}
	scheduled := make(chan struct{})
	go func() { defer close(scheduled); schedules.Run(ctx) }()
	<-ctx.Done()
	log.Info("stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = srv.Stop(sctx)
	<-scheduled // the runs it started are created (each within its lease)
	return err
}

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
	"github.com/pagefleet/pagefleet/internal/config"
	"github.com/pagefleet/pagefleet/internal/jobstore"
	"github.com/pagefleet/pagefleet/internal/metrics"
	"github.com/pagefleet/pagefleet/internal/session"
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
	if tenants.Len() == 0 {
		log.Warn("no tenants: set PAGEFLEET_TENANTS_FILE or PAGEFLEET_DEV_API_KEY; every /v1 call will be 401")
	}
	rdb, err := cfg.NewRedis()
	if err != nil {
		return err
	}
	defer rdb.Close()
	jobstore.MigrateAtStart(rdb, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Queue depth, latency and totals per asynq queue (asynq_queue_size,
	// asynq_queue_latency_seconds, asynq_tasks_enqueued_total{state}, …),
	// read from Redis at a scrape, at most every 5 s: each collection sends
	// Redis ≈ 30 commands, whatever polls /metrics.
	reg.MustRegister(metrics.Cached(asynqmetrics.NewQueueMetricsCollector(asynq.NewInspectorFromRedisClient(rdb)), 5*time.Second))
	sessions, err := session.New(rdb, session.Config{TTL: cfg.SessionTTL, MaxBytes: cfg.SessionMaxBytes, Key: cfg.SessionKey, Registerer: reg})
	if err != nil {
		return err
	}
	srv := api.New(api.Config{Addr: cfg.APIAddr, ResultTTL: cfg.ResultTTL, LLMEnabled: cfg.LLMBaseURL != "", AdminToken: cfg.AdminToken,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, WebhookSchedule: cfg.WebhookSchedule},
		api.Deps{Redis: rdb, Tenants: tenants, Sessions: sessions, Logger: log, Registry: reg})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return srv.Stop(sctx)
}

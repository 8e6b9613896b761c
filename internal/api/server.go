// Package api is pagefleet's HTTP API: Echo routes, bearer authentication,
// strict request decoding, problem+json errors, and the handlers that write
// job records and enqueue tasks. It never links the browser.
package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/artifact"
	"github.com/pagefleet/pagefleet/internal/crawl"
	"github.com/pagefleet/pagefleet/internal/fresh"
	"github.com/pagefleet/pagefleet/internal/proxy"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/internal/submit"
	"github.com/pagefleet/pagefleet/internal/tenant"
)

// Config holds the API's settings.
type Config struct {
	Addr          string
	ResultTTL     time.Duration
	MaxBodyBytes  int64 // job bodies (default 1 MiB)
	MaxBatchBytes int64 // batch bodies (default 32 MiB)
	LLMEnabled    bool
	AdminToken    string
	// ReadHeaderTimeout cuts off a client that has not sent its request
	// headers within it (slowloris); default 10 s.
	ReadHeaderTimeout time.Duration
	// WebhookSchedule is the webhook retry schedule of the events the API
	// enqueues itself (batch.completed of a cancelled batch).
	WebhookSchedule []time.Duration
}

// Server is the API process's HTTP server.
type Server struct {
	cfg       Config
	rc        redis.UniversalClient
	tenants   *tenant.Registry
	jobs      *rdb.Jobs
	batches   *rdb.Batches
	sessions  *session.Store
	idents    *rdb.Identities
	proxies   *proxy.Directory
	deliv     *rdb.Deliveries
	schedules *rdb.Schedules
	idem      *rdb.Idempotency
	submitter *submit.Service
	fetcher   crawl.Fetcher
	queue     *asynq.Client
	notifier  *rdb.Notifier
	artifacts *artifact.Store
	log       *slog.Logger
	echo      *echo.Echo
	http      *http.Server
	reg       *prometheus.Registry
	gatherer  prometheus.Gatherer

	reqs      *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	jobsIn    *prometheus.CounterVec
	batchesIn *prometheus.CounterVec

	mon     echo.HandlerFunc // the queue dashboard, built once
	monOnce sync.Once

	insp     *asynq.Inspector
	inspOnce sync.Once

	cancelRun context.CancelFunc
	ln        net.Listener
}

// Deps are the parts the server is built from. Redis and Tenants are
// required; cmd/api passes the rest, and a test may leave Stores, Queue and
// Submit nil to have them built on Redis.
type Deps struct {
	Redis    redis.UniversalClient
	Tenants  *tenant.Registry
	Stores   *rdb.Stores
	Sessions *session.Store
	Queue    *asynq.Client
	Submit   *submit.Service
	// Fetcher reads the sites POST /v1/map lists (nil: the route answers
	// 503).
	Fetcher crawl.Fetcher
	// Proxies are the upstream proxy pools jobs may name (nil: none).
	Proxies *proxy.Directory
	// Artifacts is the artifact store (nil: GET /v1/artifacts answers 503
	// and results are answered as stored).
	Artifacts *artifact.Store
	Logger    *slog.Logger
	Registry  *prometheus.Registry
}

// New builds the server.
func New(cfg Config, d Deps) *Server {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = 32 << 20
	}
	if cfg.ResultTTL == 0 {
		cfg.ResultTTL = 24 * time.Hour
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	reg := d.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if d.Stores == nil {
		d.Stores = rdb.Open(d.Redis, cfg.ResultTTL)
	}
	if d.Queue == nil {
		d.Queue = asynq.NewClientFromRedisClient(d.Redis)
	}
	if d.Submit == nil {
		d.Submit = submit.New(submit.Deps{Jobs: d.Stores.Jobs, Batches: d.Stores.Batches, Sessions: d.Stores.Sessions,
			Idem: d.Stores.Idempotency, Queue: d.Queue, Logger: d.Logger,
			Cache: d.Stores.Cache, Tracker: d.Stores.Tracker, Fresh: fresh.NewMetrics(reg), WebhookSchedule: cfg.WebhookSchedule})
	}
	f := promauto.With(reg)
	s := &Server{
		cfg: cfg, rc: d.Redis, tenants: d.Tenants, sessions: d.Sessions, log: d.Logger, reg: reg, gatherer: reg,
		jobs:      d.Stores.Jobs,
		batches:   d.Stores.Batches,
		idents:    d.Stores.Identities,
		proxies:   d.Proxies,
		deliv:     d.Stores.Deliveries,
		schedules: d.Stores.Schedules,
		idem:      d.Stores.Idempotency,
		queue:     d.Queue,
		submitter: d.Submit,
		fetcher:   d.Fetcher,
		notifier:  rdb.NewNotifier(d.Redis),
		artifacts: d.Artifacts,
		reqs: f.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_http_requests_total", Help: "HTTP requests by route, method and status code."},
			[]string{"route", "method", "code"}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{Name: "pagefleet_http_request_duration_seconds", Help: "HTTP request latency.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"route", "method"}),
		jobsIn: f.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_jobs_submitted_total", Help: "Jobs accepted by kind."}, []string{"kind"}),
		batchesIn: f.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_batches_total",
			Help: "Batches accepted by kind (urls, crawl)."}, []string{"kind"}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Pre(limitHeaders)
	e.Use(s.observe)
	s.echo = e
	s.routes()
	return s
}

// MaxHeaderBytes bounds the request line and headers of a request: past it
// the answer is 431.
const MaxHeaderBytes = 32 << 10

// limitHeaders answers 431 (problem+json) to a request whose request line
// and headers are larger than MaxHeaderBytes.
func limitHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		n := len(r.Method) + len(r.RequestURI) + len(r.Host)
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
		if n > MaxHeaderBytes {
			return problem(http.StatusRequestHeaderFieldsTooLarge, "headers_too_large",
				fmt.Sprintf("the request line and headers are larger than %d bytes", MaxHeaderBytes))
		}
		return next(c)
	}
}

// Handler returns the HTTP handler (for tests with httptest).
func (s *Server) Handler() http.Handler { return s.echo }

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// observe records request metrics.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		m := c.Request().Method
		s.latency.WithLabelValues(route, m).Observe(time.Since(start).Seconds())
		s.reqs.WithLabelValues(route, m, itoa(c.Response().Status)).Inc()
		return nil
	}
}

func itoa(n int) string {
	if n >= 100 && n < 600 {
		return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
	}
	return "0"
}

type ctxKey struct{}

// auth resolves the bearer key to a tenant.
func (s *Server) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		key, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			key, ok = strings.CutPrefix(h, "bearer ")
		}
		t := s.tenants.Authenticate(strings.TrimSpace(key))
		if !ok || t == nil {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="pagefleet"`)
			if !ok {
				return problem(http.StatusUnauthorized, "unauthorized", "missing API key: send Authorization: Bearer <api key>")
			}
			return problem(http.StatusUnauthorized, "unauthorized", "unknown API key")
		}
		c.Set("tenant", t)
		return next(c)
	}
}

func tenantOf(c echo.Context) *tenant.Tenant { return c.Get("tenant").(*tenant.Tenant) }

func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.rc.Ping(ctx).Err(); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "redis": err.Error()})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// isStoreDown reports whether err means Redis is unreachable.
func isStoreDown(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	msg := err.Error()
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) || strings.Contains(msg, "connection refused") ||
		strings.Contains(msg, "LOADING") || errors.Is(err, net.ErrClosed) ||
		// A Redis that stops closes its connections: commands in flight
		// end with EOF or a reset. asynq passes such errors on as text.
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || strings.HasSuffix(msg, ": EOF") || strings.Contains(msg, "connection reset") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "i/o timeout")
}

// Start listens and serves until Stop.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancelRun = cancel
	go s.notifier.Run(runCtx)
	s.http = &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       120 * time.Second,
		// limitHeaders answers past MaxHeaderBytes with problem+json (it
		// counts the parsed header, without the padding a client may add);
		// the server itself refuses, in plain text, what passes twice that
		// in raw bytes.
		MaxHeaderBytes: 2 * MaxHeaderBytes,
	}
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server stopped", "err", err)
		}
	}()
	s.log.Info("api listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the server listens on (after Start).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop stops accepting, lets requests finish within ctx, and closes.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	if s.http != nil {
		err = s.http.Shutdown(ctx)
	}
	if s.cancelRun != nil {
		s.cancelRun()
	}
	s.queue.Close()
	return err
}

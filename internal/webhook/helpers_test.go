package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

const (
	tenantSigned   = "acme"
	tenantUnsigned = "plain"
)

// env is one delivery setup: a redis-server, an asynq client, inspector and
// in-process server running a Deliverer.
type env struct {
	rc      *redis.Client
	client  *asynq.Client
	insp    *asynq.Inspector
	d       *Deliverer
	reg     *prometheus.Registry
	secret  string
	tenants *tenant.Registry
}

func newSecret() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return spec.WebhookSecretPrefix + base64.StdEncoding.EncodeToString(k)
}

// newEnv starts everything for one test; cfg fields left zero get test
// defaults (policy AllowPrivate, schedule 100ms×4).
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	srv := redistest.Start(t)
	rc := srv.Client(t, 0)
	e := &env{rc: rc, reg: prometheus.NewRegistry(), secret: newSecret()}
	var err error
	e.tenants, err = tenant.New([]*tenant.Tenant{
		{ID: tenantSigned, APIKeys: []string{"pf_test_acme_key"}, WebhookSecret: e.secret},
		{ID: tenantUnsigned, APIKeys: []string{"pf_test_plain_key"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy == nil {
		cfg.Policy = &egress.Policy{AllowPrivate: true}
	}
	if cfg.Schedule == nil {
		cfg.Schedule = ms(100, 100, 100, 100)
	}
	cfg.Tenants, cfg.Log, cfg.Registerer = e.tenants, rdb.NewDeliveries(rc, 0), e.reg
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.d = NewDeliverer(cfg)
	t.Cleanup(e.d.CloseIdleConnections)

	e.client = asynq.NewClientFromRedisClient(rc)
	e.insp = asynq.NewInspectorFromRedisClient(rc)
	mux := asynq.NewServeMux()
	mux.Handle(jobs.KindWebhookDeliver, e.d)
	as := asynq.NewServerFromRedisClient(rc, asynq.Config{
		Concurrency:              4,
		Queues:                   map[string]int{jobs.QueueWebhooks: 1},
		RetryDelayFunc:           e.d.RetryDelay,
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		TaskCheckInterval:        50 * time.Millisecond,
		ShutdownTimeout:          2 * time.Second,
		LogLevel:                 asynq.FatalLevel,
	})
	if err := as.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Shutdown)
	return e
}

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

// hit is one request a receiver got.
type hit struct {
	at     time.Time
	header http.Header
	body   []byte
}

// receiver is a local webhook endpoint; answer decides the response to the
// n-th request (0-based).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	hits []hit
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, h hit)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := hit{at: time.Now(), header: r.Header.Clone(), body: b}
		rc.mu.Lock()
		n := len(rc.hits)
		rc.hits = append(rc.hits, h)
		rc.mu.Unlock()
		answer(n, w, h)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func status(code int) func(int, http.ResponseWriter, hit) {
	return func(_ int, w http.ResponseWriter, _ hit) { w.WriteHeader(code) }
}

func (rc *receiver) got() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.hits...)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until owner's delivery log has n attempts and returns it.
func (e *env) waitLog(t *testing.T, owner string, n int, timeout time.Duration) []spec.Delivery {
	t.Helper()
	var log []spec.Delivery
	waitFor(t, timeout, "delivery log", func() bool {
		var err error
		log, err = rdb.NewDeliveries(e.rc, 0).List(context.Background(), owner)
		if err != nil {
			t.Fatal(err)
		}
		return len(log) >= n
	})
	if len(log) != n {
		t.Fatalf("delivery log has %d attempts, want %d: %+v", len(log), n, log)
	}
	return log
}

// waitTask waits until the task with id is archived (archived=true) or
// finished and removed (archived=false).
func (e *env) waitTask(t *testing.T, id string, archived bool) *asynq.TaskInfo {
	t.Helper()
	var info *asynq.TaskInfo
	waitFor(t, 10*time.Second, "task "+id+" to end", func() bool {
		var err error
		info, err = e.insp.GetTaskInfo(jobs.QueueWebhooks, id)
		if errors.Is(err, asynq.ErrTaskNotFound) {
			if archived {
				t.Fatalf("task %s removed; want archived", id)
			}
			return true
		}
		if err != nil {
			t.Fatal(err)
		}
		if info.State == asynq.TaskStateArchived && !archived {
			t.Fatalf("task %s archived (%s); want delivered", id, info.LastErr)
		}
		return info.State == asynq.TaskStateArchived
	})
	return info
}

// outcome reads pagefleet_webhook_deliveries_total{outcome}.
func (e *env) outcome(t *testing.T, outcome string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pagefleet_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no pagefleet_webhook_deliveries_total{outcome=%q}", outcome)
	return 0
}

// asynqTask is a raw webhook:deliver task with payload b and id msg_bad.
func asynqTask(b []byte) *asynq.Task {
	return asynq.NewTask(jobs.KindWebhookDeliver, b, asynq.TaskID("msg_bad"), asynq.Queue(jobs.QueueWebhooks), asynq.MaxRetry(3))
}

// refusingAddr returns a loopback address that refuses connections: a TCP
// socket bound to it but not listening holds the port, so no other process
// can take it while the test runs (a closed listener's port could be reused).
func refusingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}

package proxy

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/rdb"
)

// Defaults of a Picker.
var (
	// DefaultHealth sets a proxy aside after 3 failures within 30 s, for
	// 10 s, doubling while its tests fail, up to 5 min.
	DefaultHealth = rdb.Health{Threshold: 3, Window: 30 * time.Second, Aside: 10 * time.Second, MaxAside: 5 * time.Minute}
	// DefaultTrial is how long one job's test of a proxy back from a pause
	// may take before another job may test it.
	DefaultTrial = 30 * time.Second
	// DefaultBlockTTL is how long a host's block of a proxy makes the
	// host's jobs take the pool's other proxies first.
	DefaultBlockTTL = 10 * time.Minute
)

// Metrics are the proxy counters, labelled by pool and proxy id only.
type Metrics struct {
	requests, failures, blocks *prometheus.CounterVec
}

// NewMetrics registers the counters with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_proxy_requests_total",
			Help: "Connections and requests sent through an upstream proxy, by pool and proxy id."}, []string{"pool", "proxy"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_proxy_failures_total",
			Help: "Times an upstream proxy could not be reached or refused the credentials, by pool and proxy id."}, []string{"pool", "proxy"}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_proxy_blocks_total",
			Help: "Responses through an upstream proxy that matched a block rule, by pool and proxy id."}, []string{"pool", "proxy"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.failures, m.blocks)
	}
	return m
}

// Picker chooses a proxy of a pool for each try of a job, for the whole
// fleet: the pool's rotation, skipping proxies set aside and, for the
// job's host, those it blocked lately; it records failures and blocks.
type Picker struct {
	Store    *rdb.Proxies
	Health   rdb.Health
	Trial    time.Duration
	BlockTTL time.Duration
	Metrics  *Metrics
	Log      *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu    sync.Mutex
	aside map[string]time.Time // what this worker knows is set aside
	bg    sync.WaitGroup
}

func (p *Picker) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Picker) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Attach sets the hooks of every proxy of d: the request and failure
// counters and the fleet-wide health record.
func (p *Picker) Attach(d *Directory) {
	if p.Health.Threshold == 0 {
		p.Health = DefaultHealth
	}
	if p.Trial == 0 {
		p.Trial = DefaultTrial
	}
	if p.BlockTTL == 0 {
		p.BlockTTL = DefaultBlockTTL
	}
	if p.Metrics == nil {
		p.Metrics = NewMetrics(nil)
	}
	for _, up := range d.Upstreams() {
		req := p.Metrics.requests.WithLabelValues(up.Pool, up.ID)
		fail := p.Metrics.failures.WithLabelValues(up.Pool, up.ID)
		up.OnRequest = req.Inc
		up.OnFailure = func(e *egress.ProxyError) {
			fail.Inc()
			p.failed(up, e)
		}
	}
}

// failed records a failure of up in Redis, in the background: it is
// called on the path of a connection.
func (p *Picker) failed(up *egress.Upstream, e *egress.ProxyError) {
	now := p.now()
	p.mu.Lock()
	if until, ok := p.aside[up.Key]; ok && now.Before(until) {
		p.mu.Unlock()
		return // set aside already: nothing more to record
	}
	p.mu.Unlock()
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		until, err := p.Store.Fail(ctx, up.Key, now, p.Health)
		if err != nil {
			p.log().Warn("record proxy failure", "pool", up.Pool, "proxy", up.ID, "err", err)
			return
		}
		if !until.IsZero() {
			p.mu.Lock()
			if p.aside == nil {
				p.aside = map[string]time.Time{}
			}
			p.aside[up.Key] = until
			p.mu.Unlock()
			p.log().Warn("proxy set aside", "pool", up.Pool, "proxy", up.ID, "until", until.UTC(), "cause", e.Op)
		}
	}()
}

// Wait waits for the failures being recorded (tests, shutdown).
func (p *Picker) Wait() { p.bg.Wait() }

// Pick chooses a proxy of pool for a job to host; tried marks the places
// the job has tried already. It returns nil when every place was tried.
func (p *Picker) Pick(ctx context.Context, tenantID, rotation string, pool *Pool, host string, tried []bool) (*egress.Upstream, int, error) {
	n := len(pool.Proxies)
	keys := make([]string, n)
	for i, up := range pool.Proxies {
		keys[i] = up.Key
	}
	a := rdb.PickArgs{Tenant: tenantID, Pool: pool.Name, Keys: keys, Rotation: rotation, Host: host,
		Exclude: tried, Now: p.now(), Trial: p.Trial}
	if rotation == "random" {
		a.Order = rand.Perm(n)
	}
	i, kind, err := p.Store.Pick(ctx, a)
	if err != nil {
		return nil, 0, err
	}
	if i < 0 {
		return nil, 0, nil
	}
	return pool.Proxies[i], kind, nil
}

// Worked records that up carried a try: a proxy under test is back.
func (p *Picker) Worked(ctx context.Context, up *egress.Upstream) {
	back, err := p.Store.OK(ctx, up.Key)
	if err != nil && !errors.Is(err, context.Canceled) {
		p.log().Warn("record proxy success", "pool", up.Pool, "proxy", up.ID, "err", err)
	}
	if back {
		p.mu.Lock()
		delete(p.aside, up.Key)
		p.mu.Unlock()
		p.log().Info("proxy back in use after its test", "pool", up.Pool, "proxy", up.ID)
	}
}

// Blocked records that host blocked up.
func (p *Picker) Blocked(ctx context.Context, up *egress.Upstream, host string) {
	p.Metrics.blocks.WithLabelValues(up.Pool, up.ID).Inc()
	if err := p.Store.BlockedBy(ctx, up.Key, host, p.BlockTTL); err != nil {
		p.log().Warn("record proxy block", "pool", up.Pool, "proxy", up.ID, "err", err)
	}
}

// Unusable says why a session should leave up for a job to host:
// "set_aside" (it keeps failing), "blocked" (host blocked it lately), or
// "" when it may keep it.
func (p *Picker) Unusable(ctx context.Context, up *egress.Upstream, host string) string {
	aside, blocked, err := p.Store.Usable(ctx, up.Key, host, p.now())
	switch {
	case err != nil:
		return ""
	case aside:
		return "set_aside"
	case blocked:
		return "blocked"
	}
	return ""
}

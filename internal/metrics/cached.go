package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cached wraps c so that a scrape within ttl of c's last collection answers
// that collection's metrics again. A collector that queries Redis on every
// scrape (asynq's queue collector sends LLEN, ZCARD, MEMORY USAGE and more
// for each queue: ≈ 30 commands) then costs Redis the same whether
// Prometheus scrapes every 15 s or something polls /metrics every 20 ms.
// Concurrent scrapes share one collection.
func Cached(c prometheus.Collector, ttl time.Duration) prometheus.Collector {
	return &cached{inner: c, ttl: ttl}
}

type cached struct {
	inner prometheus.Collector
	ttl   time.Duration

	mu      sync.Mutex
	at      time.Time
	metrics []prometheus.Metric
}

// Describe forwards to the wrapped collector.
func (c *cached) Describe(ch chan<- *prometheus.Desc) { c.inner.Describe(ch) }

// Collect sends the metrics of the last collection, collecting again when it
// is older than the ttl.
func (c *cached) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.current() {
		ch <- m
	}
}

// current returns the metrics of the last collection, collecting again when
// it is older than the ttl.
func (c *cached) current() []prometheus.Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.metrics == nil || time.Since(c.at) >= c.ttl {
		buf := make(chan prometheus.Metric, 64)
		done := make(chan []prometheus.Metric)
		go func() {
			var ms []prometheus.Metric
			for m := range buf {
				ms = append(ms, m)
			}
			done <- ms
		}()
		c.inner.Collect(buf)
		close(buf)
		c.metrics = <-done
		if c.metrics == nil {
			c.metrics = []prometheus.Metric{}
		}
		c.at = time.Now()
	}
	return c.metrics
}

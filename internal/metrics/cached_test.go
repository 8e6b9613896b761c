package metrics_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pagefleet/pagefleet/internal/metrics"
)

// counting is a collector that counts its collections and reports the count.
type counting struct {
	desc  *prometheus.Desc
	calls atomic.Int64
}

func (c *counting) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *counting) Collect(ch chan<- prometheus.Metric) {
	n := c.calls.Add(1)
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}

func TestCachedCollectsOncePerTTL(t *testing.T) {
	inner := &counting{desc: prometheus.NewDesc("expensive_collections", "collections of the inner collector", nil, nil)}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.Cached(inner, 300*time.Millisecond))
	for range 20 {
		if got := value(t, reg); got != 1 {
			t.Fatalf("within the ttl a scrape answered %v, want the first collection (1)", got)
		}
	}
	if n := inner.calls.Load(); n != 1 {
		t.Fatalf("20 scrapes within the ttl collected %d times, want 1", n)
	}
	time.Sleep(350 * time.Millisecond)
	if got := value(t, reg); got != 2 {
		t.Fatalf("after the ttl a scrape answered %v, want a new collection (2)", got)
	}
}

// value gathers reg and returns the value of its one gauge.
func value(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].Metric) != 1 {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	return mfs[0].Metric[0].GetGauge().GetValue()
}

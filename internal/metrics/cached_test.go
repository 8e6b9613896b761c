package metrics_test

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
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

// The test runs in a synctest bubble: its clock moves only by the sleeps
// below, so "within the ttl" and "after the ttl" are exact, however slow
// the machine.
func TestCachedCollectsOncePerTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 5 * time.Second
		inner := &counting{desc: prometheus.NewDesc("expensive_collections", "collections of the inner collector", nil, nil)}
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics.Cached(inner, ttl))
		for range 20 {
			if got := value(t, reg); got != 1 {
				t.Fatalf("within the ttl a scrape answered %v, want the first collection (1)", got)
			}
		}
		time.Sleep(ttl - time.Nanosecond)
		if got := value(t, reg); got != 1 {
			t.Fatalf("just before the ttl ran out a scrape answered %v, want the first collection (1)", got)
		}
		if n := inner.calls.Load(); n != 1 {
			t.Fatalf("21 scrapes within the ttl collected %d times, want 1", n)
		}
		time.Sleep(time.Nanosecond)
		if got := value(t, reg); got != 2 {
			t.Fatalf("once the ttl ran out a scrape answered %v, want a new collection (2)", got)
		}
		// The new collection is cached in turn, for a ttl from when it was made.
		time.Sleep(ttl - time.Nanosecond)
		if got := value(t, reg); got != 2 {
			t.Fatalf("within the second ttl a scrape answered %v, want the second collection (2)", got)
		}
		if n := inner.calls.Load(); n != 2 {
			t.Fatalf("the inner collector ran %d times, want 2", n)
		}
	})
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

package fresh

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Outcomes of a cache lookup (pagefleet_cache_lookups_total).
const (
	LookupHit   = "hit"   // served from the cache
	LookupStale = "stale" // an entry older than max_age_ms
	LookupMiss  = "miss"  // no entry
)

// Outcomes of a revalidation (pagefleet_cache_revalidations_total).
const (
	NotModified = "not_modified" // 304: the cached result reused
	Modified    = "modified"     // the site sent the page again
)

// Metrics are the freshness counters of a binary. A nil *Metrics counts
// nothing.
type Metrics struct {
	lookups       *prometheus.CounterVec
	revalidations *prometheus.CounterVec
	changes       *prometheus.CounterVec
}

// NewMetrics registers the counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		lookups: f.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_cache_lookups_total",
			Help: "Result cache lookups of jobs with max_age_ms, by outcome (hit, stale, miss)."}, []string{"outcome"}),
		revalidations: f.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_cache_revalidations_total",
			Help: "Conditional fetches of stale cache entries, by outcome (not_modified: the cached result was reused; modified)."}, []string{"outcome"}),
		changes: f.NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_changes_total",
			Help: "Results of jobs with change tracking, by change status (new, same, changed)."}, []string{"status"}),
	}
	for _, o := range []string{LookupHit, LookupStale, LookupMiss} {
		m.lookups.WithLabelValues(o)
	}
	for _, o := range []string{NotModified, Modified} {
		m.revalidations.WithLabelValues(o)
	}
	return m
}

// Lookup counts a cache lookup.
func (m *Metrics) Lookup(outcome string) {
	if m != nil {
		m.lookups.WithLabelValues(outcome).Inc()
	}
}

// Revalidation counts a conditional fetch.
func (m *Metrics) Revalidation(outcome string) {
	if m != nil {
		m.revalidations.WithLabelValues(outcome).Inc()
	}
}

// Change counts a tracked result.
func (m *Metrics) Change(status string) {
	if m != nil {
		m.changes.WithLabelValues(status).Inc()
	}
}

// LookupOutcome is the lookup outcome of a decision: use, with an entry
// (found) or not.
func LookupOutcome(use Use, found bool) string {
	switch {
	case use == Hit:
		return LookupHit
	case found:
		return LookupStale
	}
	return LookupMiss
}

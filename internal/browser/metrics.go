package browser

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pool's Prometheus metrics.
type metrics struct {
	size     prometheus.Gauge
	busy     prometheus.Gauge
	restarts *prometheus.CounterVec
	contexts prometheus.Counter
}

// newMetrics builds the metrics and registers them with reg (nil: not
// registered). A collector that reg already holds, from an earlier pool of the
// same process, is reused.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pagefleet_browser_pool_size",
			Help: "Chrome processes running in the worker's browser pool.",
		}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pagefleet_browser_pool_busy",
			Help: "Jobs running in the browser pool.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pagefleet_browser_restarts_total",
			Help: "Browsers replaced, by reason (recycled after their job budget, or crashed).",
		}, []string{"reason"}),
		contexts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pagefleet_browser_contexts_created_total",
			Help: "Browser contexts (with their tab) created for jobs.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.size = register(reg, m.size, &err)
	m.busy = register(reg, m.busy, &err)
	m.restarts = register(reg, m.restarts, &err)
	m.contexts = register(reg, m.contexts, &err)
	return m, err
}

// register registers c with reg and returns it, or the collector reg already
// has under the same name. It records the first other error in errp.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	if *errp == nil {
		*errp = err
	}
	return c
}

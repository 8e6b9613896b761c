package egress

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// BlockedCounter returns the counter pagefleet_egress_blocked_total{via}
// registered with reg; when reg already holds it (the proxy, the fetcher and
// the webhook sender share one registry) the registered one is returned.
// A nil reg gives an unregistered counter.
func BlockedCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pagefleet_egress_blocked_total",
		Help: "Connections refused by the egress policy, by the path that asked (proxy, fetch, webhook).",
	}, []string{"via"})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		return c
	}
	return c
}

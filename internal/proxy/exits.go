package proxy

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pagefleet/pagefleet/internal/egress"
)

// Exits are the local guard listeners Chrome talks to, one per upstream
// proxy, started on first use: Chrome cannot send credentials to a proxy
// (a per-context proxy with them fails), so each listener, on 127.0.0.1
// and without credentials, checks every destination with the egress
// policy and chains to its upstream with the credentials.
type Exits struct {
	Policy     *egress.Policy
	Logger     *slog.Logger
	Registerer prometheus.Registerer

	mu      sync.Mutex
	m       map[*egress.Upstream]*egress.Proxy
	stopped bool
}

var errExitsStopped = errors.New("proxy exits stopped")

// For returns the running listener of up.
func (e *Exits) For(ctx context.Context, up *egress.Upstream) (*egress.Proxy, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil, errExitsStopped
	}
	if x, ok := e.m[up]; ok {
		return x, nil
	}
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	x := egress.NewProxyWithOptions(e.Policy, egress.ProxyOptions{Logger: log.With("proxy", up.ID), Registerer: e.Registerer, Upstream: up})
	if err := x.Start(ctx); err != nil {
		return nil, err
	}
	if e.m == nil {
		e.m = map[*egress.Upstream]*egress.Proxy{}
	}
	e.m[up] = x
	return x, nil
}

// Stop stops every listener.
func (e *Exits) Stop(ctx context.Context) error {
	e.mu.Lock()
	e.stopped = true
	xs := e.m
	e.m = nil
	e.mu.Unlock()
	var errs []error
	for _, x := range xs {
		errs = append(errs, x.Stop(ctx))
	}
	return errors.Join(errs...)
}

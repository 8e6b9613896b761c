package worker

import (
	"context"
	"time"

	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/identity"
	"github.com/pagefleet/pagefleet/internal/polite"
	"github.com/pagefleet/pagefleet/internal/proxy"
	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Proxies are the upstream proxies jobs leave through (see package proxy).
type Proxies struct {
	Dir    *proxy.Directory
	Picker *proxy.Picker
	Exits  *proxy.Exits
	// BlockRules returns a tenant's block_rules.
	BlockRules func(tenantID string) []spec.BlockRule
}

// route is how one job leaves: directly, or through a pool of proxies, a
// proxy per try.
type route struct {
	w        *Worker
	tenant   string
	rotation string
	pool     *proxy.Pool // nil: directly
	host     string
	tried    []bool
	// sticky is the session's proxy (nil: no session, or none yet).
	sticky *spec.ProxyRef
	// move is the session's move away from its proxy, when it moves (To
	// is filled in when the job's last try is known).
	move *spec.ProxyMove
}

// routeOf decides the job's pool: the job's "proxy", else its identity's
// pool, else the tenant's default pool, else directly.
func (w *Worker) routeOf(tenantID string, req *spec.Request, ident *identity.Profile, meta *session.Meta) (*route, *spec.Error) {
	r := &route{w: w, tenant: tenantID, host: polite.Host(req.URL)}
	if w.Proxies == nil || w.Proxies.Dir.Empty() {
		if req.Proxy != nil && !req.Proxy.None {
			return nil, spec.Errorf(spec.CodeProxyFailed, false, "proxy pool %q is not configured", req.Proxy.Pool)
		}
		return r, nil
	}
	set := w.Proxies.Dir.For(tenantID)
	r.rotation = set.Rotation
	name := set.Default
	switch {
	case req.Proxy != nil && req.Proxy.None:
		return r, nil
	case req.Proxy != nil:
		name = req.Proxy.Pool
	case ident != nil && ident.ProxyPool != "":
		name = ident.ProxyPool
	}
	if name == "" {
		return r, nil
	}
	r.pool = set.Pool(name)
	if r.pool == nil {
		return nil, spec.Errorf(spec.CodeProxyFailed, false, "proxy pool %q is not configured", name)
	}
	r.tried = make([]bool, len(r.pool.Proxies))
	if meta != nil {
		r.sticky = meta.Proxy
	}
	return r, nil
}

// next picks the proxy of the next try (nil, true: directly; nil, false:
// every proxy of the pool was tried).
func (r *route) next(ctx context.Context, log interface{ Warn(string, ...any) }) (*egress.Upstream, bool) {
	if r.pool == nil {
		return nil, true
	}
	pk := r.w.Proxies.Picker
	if s := r.sticky; s != nil {
		// The session keeps its proxy while it works.
		r.sticky = nil
		if s.Pool == r.pool.Name {
			for i, up := range r.pool.Proxies {
				if up.ID != s.ID || r.tried[i] {
					continue
				}
				if why := pk.Unusable(ctx, up, r.host); why != "" {
					r.moveFrom(s.ID, why)
					break
				}
				r.tried[i] = true
				return up, true
			}
			r.moveFrom(s.ID, "proxy_gone") // not in the pool any more (or tried)
		} else {
			r.moveFrom(s.ID, "pool_changed")
		}
	}
	up, _, err := pk.Pick(ctx, r.tenant, r.rotation, r.pool, r.host, r.tried)
	if err != nil {
		log.Warn("pick a proxy", "pool", r.pool.Name, "err", err)
		// Redis is out of reach: take the first proxy not tried.
		for i, t := range r.tried {
			if !t {
				up = r.pool.Proxies[i]
				break
			}
		}
	}
	if up == nil {
		return nil, false
	}
	for i, p := range r.pool.Proxies {
		if p == up {
			r.tried[i] = true
		}
	}
	return up, true
}

// moveFrom starts a move of the session away from proxy id; a move
// already started keeps its origin and reason.
func (r *route) moveFrom(id, why string) {
	if r.move == nil {
		r.move = &spec.ProxyMove{From: id, At: time.Now().UTC(), Reason: why}
	}
}

// left records that the session's try through up ended for why
// (proxy_failed, blocked): the session moves on with the next pick.
func (r *route) left(up *egress.Upstream, why string, session bool) {
	if up == nil || !session {
		return
	}
	r.moveFrom(up.ID, why)
}

// untried reports whether a proxy of the pool is left to try.
func (r *route) untried() bool {
	for _, t := range r.tried {
		if !t {
			return true
		}
	}
	return false
}

// exitFor returns the Chrome proxy address of up and its egress errors.
func (w *Worker) exitFor(ctx context.Context, up *egress.Upstream) (string, func(string) string, *spec.Error) {
	x, err := w.Proxies.Exits.For(ctx, up)
	if err != nil {
		return "", nil, spec.Errorf(spec.CodeInternal, true, "proxy %s: start its local listener: %v", up.ID, err)
	}
	return x.URL(), x.LastError, nil
}

// blockRules are the tenant's rules.
func (w *Worker) blockRules(tenantID string) []spec.BlockRule {
	if w.Proxies == nil || w.Proxies.BlockRules == nil {
		return nil
	}
	return w.Proxies.BlockRules(tenantID)
}

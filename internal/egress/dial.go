package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Dial defaults.
const (
	dialTimeout     = 30 * time.Second
	minPartialDial  = 2 * time.Second
	tcpKeepAlive    = 30 * time.Second
	maxResponseHead = 1 << 20
)

// dialGuard, when set (tests only), sees every address just before connect.
var dialGuard func(network string, ap netip.AddrPort) error

// resolver returns the resolver to use.
func (p *Policy) resolver() *net.Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	return net.DefaultResolver
}

// Resolve returns the addresses a connection to host may use, each one
// checked: an address literal (in any spelling browsers accept) is checked
// as is; localhost names resolve to loopback; .invalid names fail as DNS
// errors; other names are resolved with the policy's resolver and refused as
// a whole when any of their addresses is denied. network is "ip", "ip4" or
// "ip6".
func (p *Policy) Resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	ip, literal, err := parseHostLiteral(host)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if literal {
		addrs = []netip.Addr{ip}
	} else {
		name := canonicalName(host)
		switch {
		case name == "":
			return nil, &net.DNSError{Err: "empty host name", Name: host, IsNotFound: true}
		case isLocalhostName(name):
			addrs = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
		case isInvalidName(name):
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		default:
			addrs, err = p.resolver().LookupNetIP(ctx, network, name)
			if err != nil {
				return nil, err
			}
		}
	}
	addrs = filterFamily(network, addrs)
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no suitable address", Name: host, IsNotFound: true}
	}
	for _, a := range addrs {
		if err := p.CheckIP(a); err != nil {
			var be *BlockedError
			if errors.As(err, &be) {
				be.Host = host
			}
			return nil, err
		}
	}
	return addrs, nil
}

func filterFamily(network string, addrs []netip.Addr) []netip.Addr {
	if network == "ip" {
		return addrs
	}
	out := addrs[:0:0]
	for _, a := range addrs {
		if (network == "ip4") == (a.Is4() || a.Is4In6()) {
			out = append(out, a)
		}
	}
	return out
}

// DialContext resolves addr with the policy's resolver, checks every
// resolved address and dials only checked ones, in order, until one
// connects. The dialer's control hook checks the address once more right
// before connect. Only TCP networks are allowed.
func (p *Policy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	addrs, port, err := p.check(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{
		KeepAlive: tcpKeepAlive,
		Control:   p.control,
	}
	var firstErr error
	for i, a := range addrs {
		dctx, cancel := partialDeadline(ctx, len(addrs)-i)
		c, err := d.DialContext(dctx, network, netip.AddrPortFrom(a, uint16(port)).String())
		cancel()
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil || errors.Is(err, ErrBlocked) {
			break
		}
	}
	return nil, firstErr
}

// partialDeadline gives one of n remaining attempts its share of the time
// left (at least minPartialDial), as the standard dialer does.
func partialDeadline(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(dialTimeout)
	}
	if n > 1 {
		share := time.Until(deadline) / time.Duration(n)
		if share < minPartialDial {
			share = minPartialDial
		}
		if d := time.Now().Add(share); d.Before(deadline) {
			deadline = d
		}
	}
	return context.WithDeadline(ctx, deadline)
}

// control is the net.Dialer control hook: it checks the address the socket
// is about to connect to.
func (p *Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedError{Host: address, Reason: "unparsable dial address"}
	}
	if err := p.CheckIP(ap.Addr()); err != nil {
		return err
	}
	if err := p.checkPort(int(ap.Port())); err != nil {
		return err
	}
	if dialGuard != nil {
		return dialGuard(network, ap)
	}
	return nil
}

// Transport returns a new HTTP transport that dials through the policy and
// ignores environment proxies: keep-alives with per-host connection reuse,
// HTTP/2 over TLS, bounded handshake and response-header sizes. Each call
// returns a new transport; share one per client.
func (p *Policy) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            p.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           512,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHead,
	}
}

// String describes the policy for logs.
func (p *Policy) String() string {
	return fmt.Sprintf("egress policy (allow_private=%t allow=%v ports=%v)", p.AllowPrivate, p.Allow, p.Ports)
}

package egress

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/proxy"
)

// upstreamDialTimeout bounds the connection to an upstream proxy and its
// handshake (CONNECT or SOCKS5) when the caller's context has no earlier
// deadline.
const upstreamDialTimeout = 15 * time.Second

// Upstream is one upstream proxy an operator configured: http://, https://
// or socks5:// with optional credentials. The egress guard decides every
// destination before it asks an upstream for it; the upstream's own
// address is trusted (it may be loopback or private).
//
// Nothing of an Upstream that is printed, logged or returned in an error
// carries its credentials: its ID names it.
type Upstream struct {
	// Pool and ID name the proxy ("dc", "dc-2").
	Pool, ID string
	// Key identifies the proxy's URL (credentials included) without
	// revealing it: the first 16 hex digits of its SHA-256. Health state
	// is kept under it.
	Key string
	// TLS configures the TLS connection to an https:// proxy (nil: the
	// system's roots, the proxy's host name).
	TLS *tls.Config
	// OnRequest, when set, is called for every connection or request sent
	// through the proxy.
	OnRequest func()
	// OnFailure, when set, is called when the proxy could not be reached,
	// failed its handshake or refused the credentials.
	OnFailure func(*ProxyError)

	scheme    string // http, https or socks5
	addr      string // host:port
	user      string
	password  string
	hasAuth   bool
	basicAuth string // "Basic …" for http(s) proxies with credentials
}

// ParseUpstream parses an upstream proxy URL. Errors name the proxy by id,
// never by its URL (which may hold a password).
func ParseUpstream(pool, id, raw string) (*Upstream, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: not a valid URL", id)
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return nil, fmt.Errorf("proxy %s: scheme must be http, https or socks5", id)
	}
	if scheme == "socks5h" {
		scheme = "socks5"
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return nil, fmt.Errorf("proxy %s: has no host", id)
	}
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		default:
			port = "1080"
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("proxy %s: invalid port", id)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("proxy %s: must be scheme://[user:password@]host:port with nothing after", id)
	}
	sum := sha256.Sum256([]byte(raw))
	up := &Upstream{Pool: pool, ID: id, Key: hex.EncodeToString(sum[:8]), scheme: scheme, addr: net.JoinHostPort(host, port)}
	if u.User != nil {
		up.hasAuth = true
		up.user = u.User.Username()
		up.password, _ = u.User.Password()
		up.basicAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(up.user+":"+up.password))
	}
	return up, nil
}

// String names the proxy without its credentials: "dc-2 (socks5://h:p)".
func (u *Upstream) String() string { return u.ID + " (" + u.scheme + "://" + u.addr + ")" }

// Scheme is http, https or socks5.
func (u *Upstream) Scheme() string { return u.scheme }

// Secrets are the strings of the proxy's credentials as they could appear
// on the wire: user, password and the Basic token. Tests look for them.
func (u *Upstream) Secrets() []string {
	if !u.hasAuth {
		return nil
	}
	return []string{u.user, u.password, strings.TrimPrefix(u.basicAuth, "Basic ")}
}

// ProxyError is a failure of the upstream proxy itself, not of the
// destination: Op is "connect" (unreachable, handshake failed) or "auth"
// (credentials refused).
type ProxyError struct {
	ID  string
	Op  string
	Err error
}

// Error implements error.
func (e *ProxyError) Error() string {
	msg := "proxy " + e.ID + ": "
	switch e.Op {
	case "auth":
		msg += "credentials refused"
	default:
		msg += "unreachable"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *ProxyError) Unwrap() error { return e.Err }

func (u *Upstream) failed(op string, err error) *ProxyError {
	pe := &ProxyError{ID: u.ID, Op: op, Err: scrubbed(u, err)}
	if u.OnFailure != nil {
		u.OnFailure(pe)
	}
	return pe
}

// scrubbed returns err, or an error of the same text without the proxy's
// credentials when it held them (no library is expected to print them).
func scrubbed(u *Upstream, err error) error {
	if err == nil || !u.hasAuth {
		return err
	}
	msg := err.Error()
	clean := msg
	for _, s := range u.Secrets() {
		if s != "" {
			clean = strings.ReplaceAll(clean, s, "***")
		}
	}
	if clean == msg {
		return err
	}
	return errors.New(clean)
}

func (u *Upstream) requested() {
	if u.OnRequest != nil {
		u.OnRequest()
	}
}

// dialProxy connects to the proxy itself (TLS for https://).
func (u *Upstream) dialProxy(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: tcpKeepAlive}
	c, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, u.failed("connect", err)
	}
	if u.scheme != "https" {
		return c, nil
	}
	cfg := &tls.Config{}
	if u.TLS != nil {
		cfg = u.TLS.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(u.addr)
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, u.failed("connect", err)
	}
	return tc, nil
}

// Tunnel opens a connection to addr (host:port) through the proxy: CONNECT
// for http(s) proxies, a SOCKS5 CONNECT for socks5. It does not check addr:
// see [Policy.DialVia].
func (u *Upstream) Tunnel(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, upstreamDialTimeout)
	defer cancel()
	u.requested()
	if u.scheme == "socks5" {
		return u.socks(ctx, addr)
	}
	c, err := u.dialProxy(ctx)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if u.hasAuth {
		req += "Proxy-Authorization: " + u.basicAuth + "\r\n"
	}
	req += "\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		_ = c.Close()
		return nil, u.failed("connect", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		_ = c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, u.failed("connect", err)
	}
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusProxyAuthRequired:
		_ = c.Close()
		return nil, u.failed("auth", errors.New("the proxy answered 407"))
	case resp.StatusCode/100 != 2:
		// The proxy works; it could not reach the destination.
		_ = c.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("proxy %s could not connect to %s: it answered %s", u.ID, addr, resp.Status)}
	}
	_ = c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufConn{Conn: c, r: br}, nil
	}
	return c, nil
}

// socks dials addr through a SOCKS5 proxy (golang.org/x/net/proxy).
func (u *Upstream) socks(ctx context.Context, addr string) (net.Conn, error) {
	var auth *proxy.Auth
	if u.hasAuth {
		auth = &proxy.Auth{User: u.user, Password: u.password}
	}
	d, err := proxy.SOCKS5("tcp", u.addr, auth, socksForward{u})
	if err != nil {
		return nil, u.failed("connect", err)
	}
	c, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", addr)
	if err == nil {
		return c, nil
	}
	var pe *ProxyError
	if errors.As(err, &pe) {
		return nil, pe // reported by socksForward
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "authentication failed"), strings.Contains(msg, "no acceptable authentication"),
		strings.Contains(msg, "unsupported authentication"):
		return nil, u.failed("auth", err)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case strings.Contains(msg, "unexpected protocol version"), strings.Contains(msg, "EOF"):
		return nil, u.failed("connect", err)
	}
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("proxy %s could not connect to %s: %w", u.ID, addr, scrubbed(u, errors.Unwrap(err)))}
}

// socksForward dials the SOCKS5 proxy itself, reporting failures.
type socksForward struct{ u *Upstream }

func (f socksForward) Dial(network, addr string) (net.Conn, error) {
	return f.DialContext(context.Background(), network, addr)
}

func (f socksForward) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	return f.u.dialProxy(ctx)
}

// bufConn is a connection whose first bytes were already read into r.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// DialVia resolves and checks addr as DialContext does, then connects to
// the first allowed address through u (the address, not the name, goes to
// the proxy: what the proxy reaches is what the guard checked). Nothing
// is sent to the proxy for a destination the policy refuses.
func (p *Policy) DialVia(ctx context.Context, u *Upstream, network, addr string) (net.Conn, error) {
	addrs, port, err := p.check(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for _, a := range addrs {
		c, err := u.Tunnel(ctx, netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		var pe *ProxyError
		if ctx.Err() != nil || errors.As(err, &pe) {
			break
		}
	}
	return nil, firstErr
}

// UpstreamTransport returns a transport that sends every request through
// u after checking its destination with the policy: https requests (and
// every request through a SOCKS5 proxy) through a tunnel to the checked
// address; plain http requests through an http(s) proxy in absolute form,
// after the policy checked the host's addresses. An upstream 407 becomes a
// *ProxyError.
func (p *Policy) UpstreamTransport(u *Upstream) *UpstreamTransport {
	tunnel := p.Transport()
	tunnel.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return p.DialVia(ctx, u, network, addr)
	}
	tunnel.DisableCompression = true
	t := &UpstreamTransport{p: p, u: u, tunnel: tunnel}
	if u.scheme != "socks5" {
		pu := &url.URL{Scheme: u.scheme, Host: u.addr} // no credentials: the header carries them
		t.forward = &http.Transport{
			Proxy: http.ProxyURL(pu),
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := u.dialProxyPlain(ctx)
				if err == nil {
					u.requested()
				}
				return c, err
			},
			TLSClientConfig:        u.TLS,
			DisableCompression:     true,
			MaxIdleConns:           256,
			MaxIdleConnsPerHost:    64,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    10 * time.Second,
			ExpectContinueTimeout:  time.Second,
			MaxResponseHeaderBytes: maxResponseHead,
		}
	}
	return t
}

// dialProxyPlain connects to the proxy's TCP address only (the transport
// does the TLS of an https proxy itself).
func (u *Upstream) dialProxyPlain(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: tcpKeepAlive}
	c, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, u.failed("connect", err)
	}
	return c, nil
}

// UpstreamTransport is an http.RoundTripper through one upstream proxy.
type UpstreamTransport struct {
	p       *Policy
	u       *Upstream
	tunnel  *http.Transport
	forward *http.Transport // http(s) proxies: plain http in absolute form
}

// RoundTrip implements http.RoundTripper.
func (t *UpstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.forward == nil || req.URL.Scheme != "http" {
		return t.tunnel.RoundTrip(req)
	}
	if _, _, err := t.p.check(req.Context(), "tcp", dialAddr(req.URL)); err != nil {
		return nil, err
	}
	out := req
	if t.u.hasAuth {
		out = req.Clone(req.Context())
		out.Header.Set("Proxy-Authorization", t.u.basicAuth)
	}
	resp, err := t.forward.RoundTrip(out)
	if err != nil {
		var pe *ProxyError
		if errors.As(err, &pe) {
			return nil, pe
		}
		return nil, scrubbed(t.u, err)
	}
	if resp.StatusCode == http.StatusProxyAuthRequired && resp.Header.Get(ErrorHeader) == "" {
		_ = resp.Body.Close()
		return nil, t.u.failed("auth", errors.New("the proxy answered 407"))
	}
	return resp, nil
}

// CloseIdleConnections closes idle connections of both ways.
func (t *UpstreamTransport) CloseIdleConnections() {
	t.tunnel.CloseIdleConnections()
	if t.forward != nil {
		t.forward.CloseIdleConnections()
	}
}

// check resolves and checks addr (host:port) for network the way
// DialContext does, returning the allowed addresses and the port.
func (p *Policy) check(ctx context.Context, network, addr string) ([]netip.Addr, int, error) {
	var family string
	switch network {
	case "tcp":
		family = "ip"
	case "tcp4":
		family = "ip4"
	case "tcp6":
		family = "ip6"
	default:
		return nil, 0, &net.OpError{Op: "dial", Net: network, Err: &BlockedError{Host: addr, Reason: "network " + network + " not allowed"}}
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, 0, &net.OpError{Op: "dial", Net: network, Err: &BlockedError{Host: host, Reason: "invalid port " + strconv.Quote(portStr)}}
	}
	if err := p.checkPort(port); err != nil {
		err.(*BlockedError).Host = host
		return nil, 0, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	addrs, err := p.Resolve(ctx, family, host)
	if err != nil {
		return nil, 0, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	return addrs, port, nil
}

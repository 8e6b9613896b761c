package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/idna"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// ErrorHeader is the response header the proxy sets on the answers it makes
// up itself when it refuses or cannot reach a destination; its value is the
// spec error code (blocked_address, dns_failure, connection_refused, …).
const ErrorHeader = "Pagefleet-Egress-Error"

// Proxy defaults.
const (
	defaultProxyDialTimeout = 30 * time.Second
	defaultProxyIdleTimeout = 5 * time.Minute
	defaultProxyHeaderBytes = 256 << 10
	proxyReadHeaderTimeout  = 20 * time.Second
	proxyKeepAliveTimeout   = 2 * time.Minute
	lastErrorTTL            = 2 * time.Minute
	lastErrorMax            = 8192
	spliceBufSize           = 32 << 10
)

// ProxyOptions are the settings of a Proxy; zero values take defaults.
type ProxyOptions struct {
	// Logger receives debug logs of refusals; nil discards them.
	Logger *slog.Logger
	// Registerer, when set, gets pagefleet_egress_blocked_total{via="proxy"}.
	Registerer prometheus.Registerer
	// DialTimeout bounds one upstream dial (default 30 s).
	DialTimeout time.Duration
	// IdleTimeout closes a CONNECT tunnel or upgraded connection that carried
	// no byte in either direction for this long (default 5 min).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a client request's header (default 256 KiB).
	MaxHeaderBytes int
	// Upstream, when set, chains every connection and request to this
	// upstream proxy, each destination checked by the policy before the
	// upstream hears of it.
	Upstream *Upstream
}

// roundTripper is a transport the proxy forwards plain requests with.
type roundTripper interface {
	http.RoundTripper
	CloseIdleConnections()
}

// Proxy is an HTTP forward proxy, listening on loopback, that dials every
// upstream connection through a Policy. Chrome is started with
// --proxy-server=<URL> --proxy-bypass-list=<-loopback> so that every request
// of a page goes through it: CONNECT tunnels (https, wss), absolute-form
// plain HTTP requests (with upstream connection reuse) and plain HTTP
// Upgrade requests (ws). A refused or failed dial is answered by the proxy
// itself — 403 for blocked, 502 for DNS and connection errors, 504 for
// timeouts — with the header Pagefleet-Egress-Error: <code>, and the code is
// remembered for LastError.
type Proxy struct {
	policy    *Policy
	opts      ProxyOptions
	log       *slog.Logger
	blocked   prometheus.Counter
	transport roundTripper
	rp        *httputil.ReverseProxy

	mu      sync.Mutex
	srv     *http.Server
	url     string
	cancel  context.CancelFunc
	stopped bool
	conns   map[net.Conn]struct{} // hijacked client and upstream conns
	wg      sync.WaitGroup        // serve loop and tunnels

	errMu sync.Mutex
	errs  map[string]lastErr
}

type lastErr struct {
	code string
	at   time.Time
}

// NewProxy returns a proxy that dials through p; start it with Start.
func NewProxy(p *Policy, logger *slog.Logger) *Proxy {
	return NewProxyWithOptions(p, ProxyOptions{Logger: logger})
}

// NewProxyWithOptions returns a proxy that dials through p with o.
func NewProxyWithOptions(p *Policy, o ProxyOptions) *Proxy {
	if p == nil {
		p = &Policy{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultProxyDialTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = defaultProxyIdleTimeout
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = defaultProxyHeaderBytes
	}
	x := &Proxy{
		policy:  p,
		opts:    o,
		log:     o.Logger,
		blocked: BlockedCounter(o.Registerer).WithLabelValues("proxy"),
		conns:   map[net.Conn]struct{}{},
		errs:    map[string]lastErr{},
	}
	if o.Upstream != nil {
		x.transport = p.UpstreamTransport(o.Upstream)
	} else {
		tr := p.Transport()
		tr.DialContext = x.dial
		tr.DisableCompression = true // pass encodings through untouched
		tr.ResponseHeaderTimeout = 0
		x.transport = tr
	}
	x.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Out already carries the absolute URL and the client's Host.
			pr.Out.Host = pr.In.Host
		},
		Transport: x.transport,
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request != nil && resp.Header.Get(ErrorHeader) == "" {
				x.clear(hostPortOf(resp.Request.URL))
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { x.fail(w, r, hostPortOf(r.URL), err) },
		ErrorLog:     slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	return x
}

// Start listens on 127.0.0.1 on a free port and serves in the background.
func (x *Proxy) Start(ctx context.Context) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.srv != nil {
		return errors.New("egress proxy already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("egress proxy listen: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	x.url = "http://" + ln.Addr().String()
	x.srv = &http.Server{
		Handler:           x,
		ReadHeaderTimeout: proxyReadHeaderTimeout,
		IdleTimeout:       proxyKeepAliveTimeout,
		MaxHeaderBytes:    x.opts.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(x.log.Handler(), slog.LevelDebug),
	}
	srv := x.srv
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			x.log.Error("egress proxy stopped serving", "err", err)
		}
	}()
	x.log.Debug("egress proxy listening", "url", x.url)
	return nil
}

// URL is the proxy's address, "http://127.0.0.1:PORT" (empty before Start).
func (x *Proxy) URL() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.url
}

// Stop closes the listener, every tunnel and upgraded connection, and waits
// (within ctx) for in-flight requests to end. A stopped proxy cannot be
// started again.
func (x *Proxy) Stop(ctx context.Context) error {
	x.mu.Lock()
	if x.srv == nil || x.stopped {
		x.stopped = true
		x.mu.Unlock()
		return nil
	}
	x.stopped = true
	srv := x.srv
	x.cancel()
	for c := range x.conns {
		_ = c.Close()
	}
	x.mu.Unlock()

	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close()
	}
	x.transport.CloseIdleConnections()
	done := make(chan struct{})
	go func() { x.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		return fmt.Errorf("egress proxy stop: %w", err)
	}
	return nil
}

// LastError returns the error code the proxy recorded in the last two
// minutes for rawURL's host and port (scheme default port when none), or ""
// when none. rawURL may also be a bare "host:port". A later successful
// connection to the same host and port clears it.
func (x *Proxy) LastError(rawURL string) string {
	key := ""
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		key = hostPortOf(u)
	} else if h, p, err := net.SplitHostPort(rawURL); err == nil {
		key = canonicalHostPort(h, p)
	}
	if key == "" {
		return ""
	}
	x.errMu.Lock()
	defer x.errMu.Unlock()
	e, ok := x.errs[key]
	if !ok || time.Since(e.at) > lastErrorTTL {
		return ""
	}
	return e.code
}

func (x *Proxy) record(key, code string) {
	if key == "" {
		return
	}
	now := time.Now()
	x.errMu.Lock()
	defer x.errMu.Unlock()
	if len(x.errs) >= lastErrorMax {
		for k, e := range x.errs {
			if now.Sub(e.at) > lastErrorTTL {
				delete(x.errs, k)
			}
		}
		for k := range x.errs {
			if len(x.errs) < lastErrorMax*3/4 {
				break
			}
			delete(x.errs, k)
		}
	}
	x.errs[key] = lastErr{code: code, at: now}
}

func (x *Proxy) clear(key string) {
	x.errMu.Lock()
	delete(x.errs, key)
	x.errMu.Unlock()
}

// dial dials through the policy (and the upstream, when there is one) and
// clears a recorded error on success.
func (x *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	if up := x.opts.Upstream; up != nil {
		c, err = x.policy.DialVia(ctx, up, network, addr)
	} else {
		c, err = x.policy.DialContext(ctx, network, addr)
	}
	if err == nil {
		if h, p, serr := net.SplitHostPort(addr); serr == nil {
			x.clear(canonicalHostPort(h, p))
		}
	}
	return c, err
}

// ServeHTTP implements http.Handler.
func (x *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		x.serveConnect(w, r)
	case !r.URL.IsAbs() || r.URL.Host == "":
		http.Error(w, "pagefleet egress proxy: absolute-form request or CONNECT required", http.StatusBadRequest)
	case r.URL.Scheme != "http" && r.URL.Scheme != "https":
		http.Error(w, "pagefleet egress proxy: unsupported scheme "+r.URL.Scheme, http.StatusBadRequest)
	case httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") && r.Header.Get("Upgrade") != "":
		x.serveUpgrade(w, r)
	default:
		x.rp.ServeHTTP(w, r)
	}
}

// serveConnect opens a tunnel to r.Host through the policy.
func (x *Proxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	h, p, err := net.SplitHostPort(r.Host)
	if err != nil || p == "" {
		http.Error(w, "pagefleet egress proxy: CONNECT needs host:port", http.StatusBadRequest)
		return
	}
	key := canonicalHostPort(h, p)
	ctx, cancel := context.WithTimeout(r.Context(), x.opts.DialTimeout)
	up, err := x.dial(ctx, "tcp", r.Host)
	cancel()
	if err != nil {
		x.fail(w, r, key, err)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = up.Close()
		return
	}
	_ = client.SetDeadline(time.Time{})
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		_ = client.Close()
		_ = up.Close()
		return
	}
	x.splice(client, brw.Reader, up)
}

// serveUpgrade forwards a plain HTTP Upgrade request (ws://) and splices the
// two connections once the request is written.
func (x *Proxy) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	if r.URL.Scheme != "http" {
		http.Error(w, "pagefleet egress proxy: use CONNECT for TLS upgrades", http.StatusBadRequest)
		return
	}
	key := hostPortOf(r.URL)
	ctx, cancel := context.WithTimeout(r.Context(), x.opts.DialTimeout)
	up, err := x.dial(ctx, "tcp", dialAddr(r.URL))
	cancel()
	if err != nil {
		x.fail(w, r, key, err)
		return
	}
	out := r.Clone(context.Background())
	out.RequestURI = ""
	out.Close = false
	out.Header = r.Header.Clone()
	for _, h := range []string{"Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate", "Keep-Alive", "Te", "Trailer"} {
		out.Header.Del(h)
	}
	out.Header.Set("Connection", "Upgrade")
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // write none rather than Go's
	}
	_ = up.SetWriteDeadline(time.Now().Add(x.opts.DialTimeout))
	if err := out.Write(up); err != nil {
		_ = up.Close()
		x.fail(w, r, key, err)
		return
	}
	_ = up.SetWriteDeadline(time.Time{})
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = up.Close()
		return
	}
	_ = client.SetDeadline(time.Time{})
	x.splice(client, brw.Reader, up)
}

// fail answers a refused or failed upstream connection.
func (x *Proxy) fail(w http.ResponseWriter, r *http.Request, key string, err error) {
	se := Classify(err)
	status := http.StatusBadGateway
	switch se.Code {
	case spec.CodeBlockedAddress:
		status = http.StatusForbidden
		x.blocked.Inc()
	case spec.CodeNavigationTimeout:
		status = http.StatusGatewayTimeout
	}
	if se.Code != spec.CodeCancelled {
		x.record(key, se.Code)
	}
	x.log.Debug("egress proxy refused", "method", r.Method, "target", key, "code", se.Code, "err", err)
	body := "pagefleet egress: " + se.Code
	if se.Code == spec.CodeBlockedAddress {
		body += ": " + se.Message
	}
	h := w.Header()
	h.Set(ErrorHeader, se.Code)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodConnect {
		h.Set("Connection", "close")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body+"\n")
}

var spliceBufs = sync.Pool{New: func() any { b := make([]byte, spliceBufSize); return &b }}

// splice copies bytes both ways between client (whose buffered reader may
// already hold bytes) and up until both sides are done, either side fails,
// the pair is idle for IdleTimeout, or the proxy stops.
func (x *Proxy) splice(client net.Conn, br *bufio.Reader, up net.Conn) {
	if !x.track(client, up) {
		_ = client.Close()
		_ = up.Close()
		return
	}
	defer x.untrack(client, up)
	if br != nil && br.Buffered() > 0 {
		pending, _ := br.Peek(br.Buffered())
		if _, err := up.Write(pending); err != nil {
			_ = client.Close()
			_ = up.Close()
			return
		}
	}
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		x.pipe(up, client, &last)
	}()
	x.pipe(client, up, &last)
	<-done
	_ = client.Close()
	_ = up.Close()
}

// pipe copies src to dst. At EOF it half-closes dst; on any other error it
// closes both, which ends the other direction too.
func (x *Proxy) pipe(dst, src net.Conn, last *atomic.Int64) {
	bp := spliceBufs.Get().(*[]byte)
	defer spliceBufs.Put(bp)
	buf := *bp
	idle := x.opts.IdleTimeout
	var armed time.Time
	for {
		if now := time.Now(); now.Sub(armed) > time.Second {
			armed = now
			_ = src.SetReadDeadline(now.Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			_ = dst.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				_ = dst.Close()
				return
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
				armed = time.Time{}
				continue
			}
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
					return
				}
			}
			_ = src.Close()
			_ = dst.Close()
			return
		}
	}
}

func (x *Proxy) track(cs ...net.Conn) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.stopped {
		return false
	}
	for _, c := range cs {
		x.conns[c] = struct{}{}
	}
	x.wg.Add(1)
	return true
}

func (x *Proxy) untrack(cs ...net.Conn) {
	x.mu.Lock()
	for _, c := range cs {
		delete(x.conns, c)
	}
	x.mu.Unlock()
	x.wg.Done()
}

// dialAddr is the host:port to dial for u.
func dialAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func defaultPort(scheme string) string {
	switch strings.ToLower(scheme) {
	case "https", "wss":
		return "443"
	default:
		return "80"
	}
}

// hostPortOf is the canonical host:port key of u.
func hostPortOf(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	return canonicalHostPort(u.Hostname(), port)
}

// canonicalHostPort spells host:port the way Chrome puts it on the wire:
// addresses in canonical form (127.1 → 127.0.0.1), names lower-case and
// punycoded, without a trailing dot.
func canonicalHostPort(host, port string) string {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, literal, err := parseHostLiteral(host); literal && err == nil {
		return net.JoinHostPort(ip.WithZone("").String(), port)
	}
	name := canonicalName(host)
	if a, err := idna.Lookup.ToASCII(name); err == nil {
		name = a
	}
	return net.JoinHostPort(name, port)
}

// Package proxytest runs real upstream proxies for tests: an HTTP proxy
// (github.com/elazarl/goproxy) and a SOCKS5 proxy
// (github.com/things-go/go-socks5), both with username and password, each
// listening on a loopback address of its own (127.0.0.2, 127.0.0.3, …) and
// connecting out from that same address, so that a test site sees which
// proxy a request came through. Every proxy keeps a log of the targets it
// was asked for.
package proxytest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elazarl/goproxy"
	socks5 "github.com/things-go/go-socks5"
)

// Proxy is one running upstream proxy.
type Proxy struct {
	// Kind is "http" or "socks5".
	Kind string
	// IP is the loopback address it listens on and connects out from.
	IP string
	// Addr is its host:port.
	Addr string
	// User and Password are the credentials it requires.
	User, Password string

	mu      sync.Mutex
	log     []string
	denied  int
	ln      net.Listener
	srv     *http.Server
	stopped bool
}

// URL is the proxy's URL with its credentials, as an operator writes it in
// the proxies file.
func (p *Proxy) URL() string {
	return (&url.URL{Scheme: p.Kind, User: url.UserPassword(p.User, p.Password), Host: p.Addr}).String()
}

// Seen returns the targets (host:port, or an absolute URL for a plain HTTP
// request through the HTTP proxy) the proxy was asked for, authenticated or
// not, in order.
func (p *Proxy) Seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// Denied is the number of requests refused for bad credentials.
func (p *Proxy) Denied() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.denied
}

func (p *Proxy) saw(target string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, target)
	if !ok {
		p.denied++
	}
}

// Stop closes the listener and every connection: the proxy is dead from
// here on (connections to its address are refused).
func (p *Proxy) Stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	if p.srv != nil {
		_ = p.srv.Close()
	}
	_ = p.ln.Close()
}

// dialFrom dials from ip.
func dialFrom(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return d.DialContext
}

func listen(t testing.TB, ip string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("proxytest: listen on %s: %v", ip, err)
	}
	return ln
}

// StartHTTP starts an HTTP proxy (CONNECT and absolute-form requests) on
// ip that requires Basic credentials user:password. It stops when the test
// ends.
func StartHTTP(t testing.TB, ip, user, password string) *Proxy {
	t.Helper()
	p := &Proxy{Kind: "http", IP: ip, User: user, Password: password}
	px := goproxy.NewProxyHttpServer()
	// The defaults honour HTTP(S)_PROXY from the environment: dial directly.
	px.Tr = &http.Transport{Proxy: nil, DialContext: dialFrom(ip), DisableCompression: true}
	px.ConnectDial = nil
	px.Logger = quiet{}
	deny := func(r *http.Request) *http.Response {
		resp := goproxy.NewResponse(r, goproxy.ContentTypeText, http.StatusProxyAuthRequired, "proxy credentials required")
		resp.Header.Set("Proxy-Authenticate", `Basic realm="proxytest"`)
		return resp
	}
	px.OnRequest().DoFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		ok := basicOK(r.Header.Get("Proxy-Authorization"), user, password)
		p.saw(r.URL.String(), ok)
		if !ok {
			return r, deny(r)
		}
		r.Header.Del("Proxy-Authorization")
		return r, nil
	})
	px.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		ok := basicOK(ctx.Req.Header.Get("Proxy-Authorization"), user, password)
		p.saw(host, ok)
		if !ok {
			ctx.Resp = deny(ctx.Req)
			return goproxy.RejectConnect, host
		}
		return goproxy.OkConnect, host
	})
	p.ln = listen(t, ip)
	p.Addr = p.ln.Addr().String()
	p.srv = &http.Server{Handler: px, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(p.ln) }()
	t.Cleanup(p.Stop)
	return p
}

// StartSOCKS5 starts a SOCKS5 proxy on ip that requires user:password. It
// stops when the test ends.
func StartSOCKS5(t testing.TB, ip, user, password string) *Proxy {
	t.Helper()
	p := &Proxy{Kind: "socks5", IP: ip, User: user, Password: password}
	creds := checkCreds{p: p, user: user, password: password}
	dial := dialFrom(ip)
	srv := socks5.NewServer(
		socks5.WithCredential(creds),
		socks5.WithDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
			p.saw(addr, true)
			return dial(ctx, network, addr)
		}),
		socks5.WithLogger(quiet{}),
	)
	p.ln = listen(t, ip)
	p.Addr = p.ln.Addr().String()
	go func() { _ = srv.Serve(p.ln) }()
	t.Cleanup(p.Stop)
	return p
}

// checkCreds counts refused logins.
type checkCreds struct {
	p              *Proxy
	user, password string
}

func (c checkCreds) Valid(user, password, _ string) bool {
	ok := user == c.user && password == c.password
	if !ok {
		c.p.saw("(login refused)", false)
	}
	return ok
}

func basicOK(h, user, password string) bool {
	v, ok := strings.CutPrefix(h, "Basic ")
	if !ok {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(v)
	return err == nil && string(b) == user+":"+password
}

// quiet discards the libraries' logs.
type quiet struct{}

func (quiet) Printf(string, ...any) {}
func (quiet) Errorf(string, ...any) {}

// ClosedAddr returns an address on ip where nothing listens (a dead proxy).
func ClosedAddr(t testing.TB, ip string) string {
	t.Helper()
	ln := listen(t, ip)
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// ErrNoAlias is returned by CheckAliases when a loopback alias is missing.
var ErrNoAlias = errors.New("proxytest: loopback alias not usable")

// CheckAliases verifies that 127.0.0.2–127.0.0.5 can be listened on.
func CheckAliases() error {
	for i := 2; i <= 5; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrNoAlias, ip, err)
		}
		_ = ln.Close()
	}
	return nil
}

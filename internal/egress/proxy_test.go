package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

func startProxy(t *testing.T, p *Policy, o ProxyOptions) *Proxy {
	t.Helper()
	x := NewProxyWithOptions(p, o)
	if err := x.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := x.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return x
}

// proxiedClient is an HTTP client that uses the proxy for every request and
// trusts tlsSrv's certificate when given.
func proxiedClient(t *testing.T, x *Proxy, tlsSrv *httptest.Server) *http.Client {
	t.Helper()
	pu, _ := url.Parse(x.URL())
	tr := &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: false}
	if tlsSrv != nil {
		tr.TLSClientConfig = tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// wsHandler answers an Upgrade: websocket request with 101 and then echoes
// every byte; other requests get "plain".
func wsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			_, _ = io.WriteString(w, "plain")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_, _ = io.Copy(c, brw)
	})
}

// rawRequest writes req to a new connection to the proxy and reads the
// response; the connection stays open for the caller.
func rawRequest(t *testing.T, x *Proxy, req string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(x.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, br, resp
}

func echo(t *testing.T, c net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, got %q", msg, got)
	}
}

func TestProxyAllowed(t *testing.T) {
	var lastHeader atomic.Value
	tg := startTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastHeader.Store(r.Header.Clone())
		wsHandler().ServeHTTP(w, r)
	}))
	tlsTarget := httptest.NewTLSServer(wsHandler())
	t.Cleanup(tlsTarget.Close)
	x := startProxy(t, &Policy{AllowPrivate: true}, ProxyOptions{})
	if !strings.HasPrefix(x.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q", x.URL())
	}
	c := proxiedClient(t, x, tlsTarget)

	t.Run("plain http, connections reused", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			req, _ := http.NewRequest("GET", "http://127.0.0.1:"+tg.port+"/x", nil)
			req.Header.Set("Proxy-Connection", "keep-alive")
			req.Header.Set("X-Forwarded-For", "1.2.3.4")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "plain" {
				t.Fatalf("%d %q", resp.StatusCode, b)
			}
		}
		h := lastHeader.Load().(http.Header)
		for _, k := range []string{"Proxy-Connection", "X-Forwarded-For", "Via", "Forwarded"} {
			if v := h.Get(k); v != "" {
				t.Errorf("upstream got %s: %q", k, v)
			}
		}
		if h.Get("User-Agent") != "Go-http-client/1.1" {
			t.Errorf("User-Agent %q", h.Get("User-Agent"))
		}
		if tg.hits.Load() != 3 || tg.conns.Load() != 1 {
			t.Fatalf("hits %d over %d connections; want 3 over 1", tg.hits.Load(), tg.conns.Load())
		}
	})
	t.Run("connect tunnel to https", func(t *testing.T) {
		resp, err := c.Get(tlsTarget.URL + "/secure")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "plain" {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
	})
	t.Run("websocket upgrade over plain http", func(t *testing.T) {
		conn, br, resp := rawRequest(t, x, "GET http://127.0.0.1:"+tg.port+"/ws HTTP/1.1\r\nHost: 127.0.0.1:"+tg.port+
			"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\n\r\n")
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		echo(t, conn, br, "hello over ws")
		echo(t, conn, br, strings.Repeat("x", 100000))
	})
	t.Run("websocket upgrade inside a CONNECT tunnel", func(t *testing.T) {
		conn, br, resp := rawRequest(t, x, "CONNECT 127.0.0.1:"+tg.port+" HTTP/1.1\r\nHost: 127.0.0.1:"+tg.port+"\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		r2, err := http.ReadResponse(br, nil)
		if err != nil || r2.StatusCode != 101 {
			t.Fatalf("%v %v", r2, err)
		}
		echo(t, conn, br, "tunnelled")
	})
	t.Run("origin-form is refused", func(t *testing.T) {
		_, _, resp := rawRequest(t, x, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
		if resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("oversized header", func(t *testing.T) {
		x2 := startProxy(t, &Policy{AllowPrivate: true}, ProxyOptions{MaxHeaderBytes: 4096})
		_, _, resp := rawRequest(t, x2, "GET http://127.0.0.1:"+tg.port+"/ HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("a", 20000)+"\r\n\r\n")
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestProxyBlocked(t *testing.T) {
	tg := startTarget(t, wsHandler())
	tlsTarget := httptest.NewTLSServer(wsHandler())
	t.Cleanup(tlsTarget.Close)
	var tlsHits atomic.Int64
	tlsTarget.Config.ConnState = func(net.Conn, http.ConnState) { tlsHits.Add(1) }
	_, tlsPort, _ := net.SplitHostPort(tlsTarget.Listener.Addr().String())
	reg := prometheus.NewRegistry()
	x := startProxy(t, &Policy{}, ProxyOptions{Registerer: reg})
	c := proxiedClient(t, x, tlsTarget)

	checkRefusal := func(t *testing.T, resp *http.Response) {
		t.Helper()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(ErrorHeader) != spec.CodeBlockedAddress {
			t.Fatalf("status %d, %s: %q", resp.StatusCode, ErrorHeader, resp.Header.Get(ErrorHeader))
		}
	}
	t.Run("plain http", func(t *testing.T) {
		for _, host := range []string{"127.0.0.1", "127.1", "0x7f000001", "[::1]", "localhost"} {
			resp, err := c.Get("http://" + host + ":" + tg.port + "/")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			checkRefusal(t, resp)
			if got := x.LastError("http://" + host + ":" + tg.port + "/anything"); got != spec.CodeBlockedAddress {
				t.Fatalf("LastError(%s) = %q", host, got)
			}
		}
		if got := x.LastError("http://127.0.0.1:" + tg.port); got != spec.CodeBlockedAddress {
			t.Fatalf("LastError canonical = %q", got)
		}
	})
	t.Run("connect", func(t *testing.T) {
		_, err := c.Get(tlsTarget.URL)
		if err == nil {
			t.Fatal("https through a refused tunnel succeeded")
		}
		_, _, resp := rawRequest(t, x, "CONNECT 127.0.0.1:"+tlsPort+" HTTP/1.1\r\nHost: 127.0.0.1:"+tlsPort+"\r\n\r\n")
		checkRefusal(t, resp)
		if got := x.LastError(tlsTarget.URL + "/page"); got != spec.CodeBlockedAddress {
			t.Fatalf("LastError = %q", got)
		}
		if got := x.LastError("127.0.0.1:" + tlsPort); got != spec.CodeBlockedAddress {
			t.Fatalf("LastError(host:port) = %q", got)
		}
	})
	t.Run("websocket upgrade", func(t *testing.T) {
		_, _, resp := rawRequest(t, x, "GET http://127.0.0.1:"+tg.port+"/ws HTTP/1.1\r\nHost: 127.0.0.1:"+tg.port+
			"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		checkRefusal(t, resp)
	})
	if tg.touched() != 0 || tlsHits.Load() != 0 {
		t.Fatalf("targets touched: %d, %d", tg.touched(), tlsHits.Load())
	}
	if n := counterValue(t, reg, "pagefleet_egress_blocked_total", "proxy"); n < 8 {
		t.Fatalf("pagefleet_egress_blocked_total{via=proxy} = %v", n)
	}
	if x.LastError("http://elsewhere.example/") != "" || x.LastError("::bad") != "" {
		t.Fatal("LastError for an unseen host")
	}
}

func TestProxyUpstreamErrors(t *testing.T) {
	x := startProxy(t, &Policy{AllowPrivate: true}, ProxyOptions{})
	c := proxiedClient(t, x, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	_ = ln.Close()
	for _, tc := range []struct {
		url    string
		status int
		code   string
	}{
		{"http://no-such-host.invalid/", 502, spec.CodeDNSFailure},
		{"http://" + closed + "/", 502, spec.CodeConnectionRefused},
	} {
		resp, err := c.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get(ErrorHeader) != tc.code {
			t.Errorf("%s: %d %q", tc.url, resp.StatusCode, resp.Header.Get(ErrorHeader))
		}
		if got := x.LastError(tc.url); got != tc.code {
			t.Errorf("LastError(%s) = %q", tc.url, got)
		}
	}
	_, _, resp := rawRequest(t, x, "CONNECT "+closed+" HTTP/1.1\r\nHost: "+closed+"\r\n\r\n")
	if resp.StatusCode != 502 || resp.Header.Get(ErrorHeader) != spec.CodeConnectionRefused {
		t.Fatalf("CONNECT closed port: %d %q", resp.StatusCode, resp.Header.Get(ErrorHeader))
	}

	// A later successful connection clears the recorded error.
	ln2, err := net.Listen("tcp", closed)
	if err != nil {
		t.Skipf("port taken again: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go func() { _ = srv.Serve(ln2) }()
	defer srv.Close()
	r2, err := c.Get("http://" + closed + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = r2.Body.Close()
	if got := x.LastError("http://" + closed + "/"); got != "" {
		t.Fatalf("LastError after success = %q", got)
	}
}

func TestProxyIdleTimeoutAndStop(t *testing.T) {
	base := runtime.NumGoroutine()
	tg := startTarget(t, wsHandler())
	x := NewProxyWithOptions(&Policy{AllowPrivate: true}, ProxyOptions{IdleTimeout: time.Second})
	if err := x.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	connect := func() (net.Conn, *bufio.Reader) {
		conn, br, resp := rawRequest(t, x, "CONNECT 127.0.0.1:"+tg.port+" HTTP/1.1\r\nHost: 127.0.0.1:"+tg.port+"\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		if r2, err := http.ReadResponse(br, nil); err != nil || r2.StatusCode != 101 {
			t.Fatalf("%v %v", r2, err)
		}
		return conn, br
	}

	// Traffic in one direction keeps the tunnel open past the idle timeout.
	conn, br := connect()
	// (gaps of 150 ms against a 1 s timeout: robust on a loaded machine)
	for i := 0; i < 10; i++ {
		echo(t, conn, br, fmt.Sprint("tick", i))
		time.Sleep(150 * time.Millisecond)
	}
	// Silence closes it.
	_ = conn.SetReadDeadline(time.Now().Add(6 * time.Second))
	start := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("idle tunnel still open")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("idle tunnel closed after %v", d)
	}

	// Stop closes open tunnels.
	conn2, br2 := connect()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := x.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	_ = conn2.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br2.ReadByte(); err == nil {
		t.Fatal("tunnel open after Stop")
	}
	_ = conn.Close()
	_ = conn2.Close()
	tg.v4.CloseClientConnections()
	if tg.v6 != nil {
		tg.v6.CloseClientConnections()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+4 && time.Now().Before(deadline) { // the target's servers stay up
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+4 {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after\n%s", base, n, buf[:runtime.Stack(buf, true)])
	}
	if err := x.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// counterValue reads one labelled counter from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, via string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "via" && l.GetValue() == via {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/proxytest"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// remoteSite answers every request with the address it came from (over
// TLS when tls).
func remoteSite(t *testing.T, tls bool) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		_, _ = io.WriteString(w, host)
	}))
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func mustUpstream(t *testing.T, pool, id, raw string) *Upstream {
	t.Helper()
	u, err := ParseUpstream(pool, id, raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func getBody(t *testing.T, c *http.Client, rawURL string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestUpstreamChains sends plain and TLS requests, from a Go client and
// through the guard proxy, to an HTTP and a SOCKS5 upstream with
// credentials: the site sees the upstream's address.
func TestUpstreamChains(t *testing.T) {
	site, tlsSite := remoteSite(t, false), remoteSite(t, true)
	ups := []*proxytest.Proxy{
		proxytest.StartHTTP(t, "127.0.0.2", "alice", "s3cret-h"),
		proxytest.StartSOCKS5(t, "127.0.0.3", "bob", "s3cret-s"),
	}
	p := &Policy{AllowPrivate: true}
	for _, px := range ups {
		t.Run(px.Kind, func(t *testing.T) {
			up := mustUpstream(t, "dc", "dc-1", px.URL())
			var reqs atomic.Int64
			up.OnRequest = func() { reqs.Add(1) }

			// Directly, as the plain fetcher does.
			tr := p.UpstreamTransport(up)
			tr.tunnel.TLSClientConfig = tlsSite.Client().Transport.(*http.Transport).TLSClientConfig
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			for _, u := range []string{site.URL, tlsSite.URL} {
				code, body, err := getBody(t, c, u)
				if err != nil || code != 200 || body != px.IP {
					t.Fatalf("GET %s via %s: %d %q %v", u, px.Kind, code, body, err)
				}
			}

			// Through the guard proxy, as Chrome does.
			x := startProxy(t, p, ProxyOptions{Upstream: up})
			gc := proxiedClient(t, x, tlsSite)
			for _, u := range []string{site.URL, tlsSite.URL} {
				code, body, err := getBody(t, gc, u)
				if err != nil || code != 200 || body != px.IP {
					t.Fatalf("GET %s via guard and %s: %d %q %v", u, px.Kind, code, body, err)
				}
			}
			if reqs.Load() < 2 {
				t.Fatalf("OnRequest counted %d", reqs.Load())
			}
			if len(px.Seen()) == 0 || px.Denied() != 0 {
				t.Fatalf("proxy saw %v, denied %d", px.Seen(), px.Denied())
			}
		})
	}
}

// TestUpstreamRefusedDestination: a destination the policy refuses never
// reaches the upstream, on either path.
func TestUpstreamRefusedDestination(t *testing.T) {
	site := remoteSite(t, false)
	hp := proxytest.StartHTTP(t, "127.0.0.2", "alice", "pw")
	sp := proxytest.StartSOCKS5(t, "127.0.0.3", "bob", "pw")
	strict := &Policy{} // loopback refused
	for _, px := range []*proxytest.Proxy{hp, sp} {
		up := mustUpstream(t, "dc", "dc-1", px.URL())
		c := &http.Client{Transport: strict.UpstreamTransport(up), Timeout: 5 * time.Second}
		_, _, err := getBody(t, c, site.URL)
		if se := Classify(err); se == nil || se.Code != spec.CodeBlockedAddress {
			t.Fatalf("%s: direct transport err %v (%v)", px.Kind, err, se)
		}
		x := startProxy(t, strict, ProxyOptions{Upstream: up})
		code, _, err := getBody(t, proxiedClient(t, x, nil), site.URL)
		if err != nil || code != http.StatusForbidden || x.LastError(site.URL) != spec.CodeBlockedAddress {
			t.Fatalf("%s: guard answered %d %v, last error %q", px.Kind, code, err, x.LastError(site.URL))
		}
		// CONNECT to a loopback https destination.
		conn, _, resp := rawRequest(t, x, "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n")
		conn.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: CONNECT answered %d", px.Kind, resp.StatusCode)
		}
		if seen := px.Seen(); len(seen) != 0 {
			t.Fatalf("%s: the upstream heard of a refused destination: %v", px.Kind, seen)
		}
	}
}

// TestUpstreamFailures: wrong credentials and a dead proxy are proxy
// failures (reported, classified proxy_failed, and the guard never hands
// an upstream 407 to its client); an error never carries the credentials.
func TestUpstreamFailures(t *testing.T) {
	site, tlsSite := remoteSite(t, false), remoteSite(t, true)
	hp := proxytest.StartHTTP(t, "127.0.0.2", "alice", "right")
	sp := proxytest.StartSOCKS5(t, "127.0.0.3", "bob", "right")
	dead := "http://carol:deadpw@" + proxytest.ClosedAddr(t, "127.0.0.4")
	deadSocks := "socks5://dave:deadpw2@" + proxytest.ClosedAddr(t, "127.0.0.5")
	wrong := func(px *proxytest.Proxy) string {
		return px.Kind + "://" + px.User + ":wrong-pw-123@" + px.Addr
	}
	p := &Policy{AllowPrivate: true}
	cases := []struct {
		name, raw, op string
	}{
		{"http wrong credentials", wrong(hp), "auth"},
		{"socks5 wrong credentials", wrong(sp), "auth"},
		{"http dead", dead, "connect"},
		{"socks5 dead", deadSocks, "connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := mustUpstream(t, "dc", "dc-9", tc.raw)
			var mu sync.Mutex
			var ops []string
			up.OnFailure = func(e *ProxyError) { mu.Lock(); ops = append(ops, e.Op); mu.Unlock() }
			c := &http.Client{Transport: p.UpstreamTransport(up), Timeout: 5 * time.Second}
			for _, u := range []string{site.URL, tlsSite.URL} {
				_, _, err := getBody(t, c, u)
				se := Classify(err)
				if se == nil || se.Code != spec.CodeProxyFailed || !se.Retryable {
					t.Fatalf("GET %s: %v → %+v", u, err, se)
				}
				for _, s := range up.Secrets() {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("error %q carries a credential", err)
					}
				}
			}
			x := startProxy(t, p, ProxyOptions{Upstream: up})
			code, _, err := getBody(t, proxiedClient(t, x, nil), site.URL)
			if err != nil || code != http.StatusBadGateway || x.LastError(site.URL) != spec.CodeProxyFailed {
				t.Fatalf("guard answered %d %v, last error %q", code, err, x.LastError(site.URL))
			}
			conn, _, resp := rawRequest(t, x, "CONNECT "+strings.TrimPrefix(tlsSite.URL, "https://")+" HTTP/1.1\r\nHost: x\r\n\r\n")
			conn.Close()
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ErrorHeader) != spec.CodeProxyFailed {
				t.Fatalf("CONNECT answered %d %q", resp.StatusCode, resp.Header.Get(ErrorHeader))
			}
			mu.Lock()
			defer mu.Unlock()
			if len(ops) < 3 || ops[0] != tc.op {
				t.Fatalf("failures reported %v, want %s", ops, tc.op)
			}
		})
	}
}

// TestUpstreamTargetDown: a destination the proxy cannot reach is no
// failure of the proxy.
func TestUpstreamTargetDown(t *testing.T) {
	hp := proxytest.StartHTTP(t, "127.0.0.2", "alice", "pw")
	sp := proxytest.StartSOCKS5(t, "127.0.0.3", "bob", "pw")
	closed := proxytest.ClosedAddr(t, "127.0.0.1")
	p := &Policy{AllowPrivate: true}
	for _, px := range []*proxytest.Proxy{hp, sp} {
		up := mustUpstream(t, "dc", "dc-1", px.URL())
		failures := 0
		up.OnFailure = func(*ProxyError) { failures++ }
		c, err := p.DialVia(context.Background(), up, "tcp", closed)
		if err == nil {
			c.Close()
			t.Fatalf("%s: dial to a closed port succeeded", px.Kind)
		}
		var pe *ProxyError
		if errors.As(err, &pe) || failures != 0 {
			t.Fatalf("%s: a down destination counted as a proxy failure: %v", px.Kind, err)
		}
	}
}

func TestParseUpstream(t *testing.T) {
	good := map[string]string{
		"http://u:p@proxy.example:3128": "http",
		"https://proxy.example":         "https",
		"socks5://u:p@10.0.0.1:1080":    "socks5",
		"socks5h://[::1]:1080":          "socks5",
	}
	for raw, scheme := range good {
		u, err := ParseUpstream("dc", "dc-1", raw)
		if err != nil || u.Scheme() != scheme {
			t.Fatalf("%s: %v %v", raw, u, err)
		}
		if strings.Contains(u.String(), ":p@") || strings.Contains(u.Key, "p") && len(u.Key) != 16 {
			t.Fatalf("%s: String %q Key %q", raw, u.String(), u.Key)
		}
	}
	for _, raw := range []string{"ftp://h:1", "http://", "http://u:topsecret@h:99999", "http://u:topsecret@h:1/path", "::"} {
		_, err := ParseUpstream("dc", "dc-1", raw)
		if err == nil {
			t.Fatalf("%s: accepted", raw)
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Fatalf("error %q shows the password", err)
		}
	}
	a, _ := ParseUpstream("dc", "dc-1", "http://u:p@h:1")
	b, _ := ParseUpstream("dc", "dc-1", "http://u:q@h:1")
	if a.Key == b.Key {
		t.Fatal("two proxies share a key")
	}
}

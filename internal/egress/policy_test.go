package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// fixture is a loopback target, a "public" redirector and a DNS server.
type fixture struct {
	tg       *target
	redirect *httptest.Server // on 127.0.0.2, treated as public via Allow
	dns      *dnsServer
	rport    string
	rhits    atomic.Int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{tg: startTarget(t, nil)}
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.2: %v", err)
	}
	f.redirect = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.rhits.Add(1)
		http.Redirect(w, r, "http://127.0.0.1:"+f.tg.port+"/after-redirect", http.StatusFound)
	}))
	_ = f.redirect.Listener.Close()
	f.redirect.Listener = ln
	f.redirect.Start()
	t.Cleanup(f.redirect.Close)
	_, f.rport, _ = net.SplitHostPort(ln.Addr().String())
	f.dns = startDNS(t, map[string][]string{
		"loopback.test": {"127.0.0.1"},
		"v6loop.test":   {"::1"},
		"mixed.test":    {"93.184.215.14", "127.0.0.1"},
		"metadata.test": {"169.254.169.254"},
		"private.test":  {"10.1.2.3", "fd00::1"},
		"public.test":   {"127.0.0.2"},
	})
	return f
}

// policy returns a policy on the fixture's resolver, with 127.0.0.2 (the
// redirector) allowed as if it were a public address.
func (f *fixture) policy(allowPrivate bool) *Policy {
	return &Policy{
		AllowPrivate: allowPrivate,
		Allow:        []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		Resolver:     f.dns.resolver(),
	}
}

func get(t *testing.T, p *Policy, rawURL string) (*http.Response, error) {
	t.Helper()
	tr := p.Transport()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get(rawURL)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return resp, err
}

// blockedForms are the URL forms that must never reach the loopback target
// with AllowPrivate=false. P is the target's port, R the redirector's.
// reach marks the forms that do reach it with AllowPrivate=true.
var blockedForms = []struct {
	url   string
	reach bool
}{
	{"http://127.0.0.1:P/", true},
	{"http://127.1:P/", true},
	{"http://2130706433:P/", true},
	{"http://0x7f000001:P/", true},
	{"http://0177.0.0.1:P/", true},
	{"http://0x7f.1:P/", true},
	{"http://127.0.0.1.:P/", true},
	{"http://0.0.0.0:P/", true},
	{"http://[::1]:P/", true},
	{"http://[::ffff:127.0.0.1]:P/", true},
	{"http://[::ffff:7f00:1]:P/", true},
	{"http://localhost:P/", true},
	{"http://LOCALHOST.:P/", true},
	{"http://app.localhost:P/", true},
	{"http://loopback.test:P/", true},
	{"http://v6loop.test:P/", true},
	{"http://public.test:R/redirect", true},
	{"http://127.0.0.2:R/redirect", true},
	{"http://mixed.test:P/", false},
	{"http://169.254.169.254:P/latest/meta-data", false},
	{"http://metadata.test:P/latest/meta-data", false},
	{"http://[::ffff:a9fe:a9fe]:P/latest/meta-data", false},
	{"http://[64:ff9b::a9fe:a9fe]:P/", false},
	{"http://[fd00::1]:P/", false},
	{"http://10.0.0.1:P/", false},
	{"http://012.0.0.1:P/", false},
	{"http://172.16.0.1:P/", false},
	{"http://172.31.255.255:P/", false},
	{"http://192.168.1.1:P/", false},
	{"http://100.64.0.1:P/", false},
	{"http://private.test:P/", false},
	{"http://[fe80::1]:P/", false},
	{"http://[fe80::1%25lo]:P/", false},
	{"http://[64:ff9b::7f00:1]:P/", false},
	{"http://[64:ff9b:1:7f00:0:100::]:P/", false},
	{"http://[2002:7f00:1::1]:P/", false},
	{"http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:P/", false},
	{"http://[::127.0.0.1]:P/", false},
	{"http://[::ffff:10.0.0.1]:P/", false},
	{"http://[2001:db8::1]:P/", false},
	{"http://224.0.0.1:P/", false},
	{"http://[ff02::1]:P/", false},
	{"http://255.255.255.255:P/", false},
	{"http://198.18.0.1:P/", false},
	{"http://192.0.2.2:P/", false},
	{"http://192.0.0.8:P/", false},
	{"http://203.0.113.5:P/", false},
	{"http://240.0.0.1:P/", false},
	{"http://[::]:P/", false},
}

func (f *fixture) expand(u string) string {
	u = strings.Replace(u, ":P/", ":"+f.tg.port+"/", 1)
	return strings.Replace(u, ":R/", ":"+f.rport+"/", 1)
}

func TestBlockedForms(t *testing.T) {
	f := newFixture(t)
	p := f.policy(false)
	if len(blockedForms) < 25 {
		t.Fatalf("only %d forms", len(blockedForms))
	}
	for _, tc := range blockedForms {
		t.Run(tc.url, func(t *testing.T) {
			u := f.expand(tc.url)
			before, rbefore, qbefore := f.tg.touched(), f.rhits.Load(), f.dns.queries.Load()
			start := time.Now()
			_, err := get(t, p, u)
			if err == nil {
				t.Fatalf("GET %s succeeded", u)
			}
			if !errors.Is(err, ErrBlocked) {
				t.Fatalf("GET %s: want ErrBlocked, got %v", u, err)
			}
			var be *BlockedError
			if !errors.As(err, &be) || be.Reason == "" {
				t.Fatalf("GET %s: no BlockedError with a reason in %v", u, err)
			}
			if c := Classify(err); c.Code != spec.CodeBlockedAddress || c.Retryable {
				t.Fatalf("Classify = %+v", c)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("refusal took %v; must come from the check, not a timeout", d)
			}
			if n := f.tg.touched() - before; n != 0 {
				t.Fatalf("target saw %d requests/connections", n)
			}
			if strings.Contains(tc.url, "/redirect") {
				if f.rhits.Load() != rbefore+1 || be.IP.String() != "127.0.0.1" {
					t.Fatalf("want the redirect hop refused: redirector hits %d, refused %v", f.rhits.Load()-rbefore, be.IP)
				}
			}
			if strings.Contains(tc.url, ".test:") && f.dns.queries.Load() == qbefore {
				t.Fatalf("test resolver not asked")
			}
			t.Logf("%v", err)
		})
	}
	if n := f.tg.touched(); n != 0 {
		t.Fatalf("target touched %d times", n)
	}
}

func TestAllowPrivateReachesLoopback(t *testing.T) {
	f := newFixture(t)
	p := f.policy(true)
	for _, tc := range blockedForms {
		if !tc.reach {
			continue
		}
		if strings.Contains(tc.url, "::1") || strings.Contains(tc.url, "v6loop") {
			if f.tg.v6 == nil {
				t.Logf("no ::1 on this machine; skipping %s", tc.url)
				continue
			}
		}
		t.Run(tc.url, func(t *testing.T) {
			u := f.expand(tc.url)
			before := f.tg.hits.Load()
			resp, err := get(t, p, u)
			if err != nil {
				t.Fatalf("GET %s: %v", u, err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: status %d", u, resp.StatusCode)
			}
			if f.tg.hits.Load() != before+1 {
				t.Fatalf("target not reached")
			}
		})
	}
}

func TestCheckIP(t *testing.T) {
	strict, open := &Policy{}, &Policy{AllowPrivate: true}
	listed := &Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd12::/16")}}
	for _, tc := range []struct {
		ip                 string
		strict, open, list bool // allowed?
	}{
		{"8.8.8.8", true, true, true},
		{"1.1.1.1", true, true, true},
		{"2606:4700:4700::1111", true, true, true},
		{"::ffff:8.8.8.8", true, true, true},
		{"64:ff9b::808:808", true, true, true},
		{"127.0.0.1", false, true, false},
		{"127.255.255.254", false, true, false},
		{"10.20.1.1", false, true, true},
		{"::ffff:10.20.1.1", false, true, true},
		{"10.21.1.1", false, true, false},
		{"fd12::5", false, true, true},
		{"fd13::5", false, true, false},
		{"169.254.169.254", false, true, false},
		{"100.127.255.255", false, true, false},
		{"100.128.0.0", true, true, true},
		{"172.15.255.255", true, true, true},
		{"172.32.0.0", true, true, true},
		{"192.169.0.1", true, true, true},
		{"0.0.0.0", false, true, false},
		{"::", false, true, false},
		{"::1", false, true, false},
		{"fe80::1%eth0", false, true, false},
		{"fec0::1", false, true, false},
		{"224.0.0.1", false, false, false},
		{"239.255.255.250", false, false, false},
		{"ff02::1", false, false, false},
		{"::ffff:224.0.0.1", false, false, false},
		{"255.255.255.255", false, false, false},
		{"240.0.0.1", false, true, false},
		{"198.19.255.255", false, true, false},
		{"192.88.99.1", false, true, false},
		{"192.31.196.1", false, true, false},
		{"64:ff9b::a00:1", false, true, false},
		{"64:ff9b:1:a00:1:100::", false, true, false},
		{"2002:c0a8:101::1", false, true, false},
		{"2002:808:808::1", false, true, false},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false, true, false},
		{"2001:db8::1", false, true, false},
		{"3fff::1", false, true, false},
		{"100::1", false, true, false},
	} {
		ip := netip.MustParseAddr(tc.ip)
		for _, c := range []struct {
			name string
			p    *Policy
			want bool
		}{{"strict", strict, tc.strict}, {"allow_private", open, tc.open}, {"allow_list", listed, tc.list}} {
			err := c.p.CheckIP(ip)
			if (err == nil) != c.want {
				t.Errorf("%s CheckIP(%s) = %v, want allowed=%t", c.name, tc.ip, err, c.want)
			}
			if err != nil && !errors.Is(err, ErrBlocked) {
				t.Errorf("%s CheckIP(%s): %v does not wrap ErrBlocked", c.name, tc.ip, err)
			}
		}
	}
	if err := strict.CheckIP(netip.Addr{}); !errors.Is(err, ErrBlocked) {
		t.Errorf("invalid addr: %v", err)
	}
}

func TestParseHostLiteral(t *testing.T) {
	for _, tc := range []struct {
		host    string
		want    string // "" for a name, "!" for malformed
		literal bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.1", "127.0.0.1", true},
		{"127.0.1", "127.0.0.1", true},
		{"2130706433", "127.0.0.1", true},
		{"0x7f000001", "127.0.0.1", true},
		{"0X7F.0.0.1", "127.0.0.1", true},
		{"0177.0.0.1", "127.0.0.1", true},
		{"0x7f.1", "127.0.0.1", true},
		{"127.0.0.1.", "127.0.0.1", true},
		{"0", "0.0.0.0", true},
		{"0x", "0.0.0.0", true},
		{"4294967295", "255.255.255.255", true},
		{"4294967296", "!", true},
		{"256.0.0.1", "!", true},
		{"1.2.3.4.5", "!", true},
		{"08", "!", true},
		{"1..1", "!", true},
		{"[::1]", "::1", true},
		{"::ffff:7f00:1", "::ffff:127.0.0.1", true},
		{"[1.2.3.4]", "!", true},
		{"example.com", "", false},
		{"0x7f.example", "", false},
		{"1.2.3.4x", "", false},
		{"abc", "", false},
		{"", "", false},
	} {
		ip, literal, err := parseHostLiteral(tc.host)
		switch {
		case literal != tc.literal:
			t.Errorf("%q: literal=%t", tc.host, literal)
		case tc.want == "!":
			if !errors.Is(err, ErrBlocked) {
				t.Errorf("%q: want malformed, got %v %v", tc.host, ip, err)
			}
		case tc.want == "":
			if err != nil || ip.IsValid() {
				t.Errorf("%q: want a name, got %v %v", tc.host, ip, err)
			}
		default:
			if err != nil || ip.String() != tc.want {
				t.Errorf("%q = %v, %v; want %s", tc.host, ip, err, tc.want)
			}
		}
	}
}

func TestPortsAndNetworks(t *testing.T) {
	tg := startTarget(t, nil)
	p := &Policy{AllowPrivate: true, Ports: []int{80, 443}}
	_, err := get(t, p, "http://127.0.0.1:"+tg.port+"/")
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "port") {
		t.Fatalf("want port refusal, got %v", err)
	}
	if tg.touched() != 0 {
		t.Fatal("target reached")
	}
	if _, err := p.DialContext(context.Background(), "udp", "127.0.0.1:53"); !errors.Is(err, ErrBlocked) {
		t.Fatalf("udp: %v", err)
	}
	p.Ports = []int{80, 443, mustAtoi(t, tg.port)}
	if _, err := get(t, p, "http://127.0.0.1:"+tg.port+"/"); err != nil {
		t.Fatal(err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestClassify(t *testing.T) {
	ctx := context.Background()
	p := &Policy{AllowPrivate: true}

	// DNS failure: .invalid never resolves, without asking any server.
	_, err := p.DialContext(ctx, "tcp", "nothing-here.invalid:80")
	if c := Classify(err); c.Code != spec.CodeDNSFailure {
		t.Errorf("invalid name: %v → %+v", err, c)
	}
	// DNS failure through a resolver: NXDOMAIN.
	dns := startDNS(t, nil)
	p2 := &Policy{Resolver: dns.resolver()}
	_, err = p2.DialContext(ctx, "tcp", "unknown.test:80")
	if c := Classify(err); c.Code != spec.CodeDNSFailure || c.Retryable {
		t.Errorf("nxdomain: %v → %+v", err, c)
	}
	// Connection refused: a port nobody listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	_ = ln.Close()
	_, err = p.DialContext(ctx, "tcp", addr)
	if c := Classify(err); c.Code != spec.CodeConnectionRefused {
		t.Errorf("closed port: %v → %+v", err, c)
	}
	// Timeout.
	tctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-tctx.Done()
	_, err = p.DialContext(tctx, "tcp", addr)
	if c := Classify(err); c.Code != spec.CodeNavigationTimeout {
		t.Errorf("timeout: %v → %+v", err, c)
	}
	// TLS: an untrusted certificate.
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	ts.Config.ErrorLog = quietLog()
	ts.StartTLS()
	defer ts.Close()
	_, err = get(t, p, ts.URL)
	if c := Classify(err); c.Code != spec.CodeTLSFailure {
		t.Errorf("tls: %v → %+v", err, c)
	}
	// Pass-through, nil and anything else.
	se := spec.Errorf(spec.CodeInternal, false, "x")
	if Classify(se) != se || Classify(nil) != nil {
		t.Error("pass-through")
	}
	if c := Classify(io.ErrUnexpectedEOF); c.Code != spec.CodeConnectionFailed {
		t.Errorf("other: %+v", c)
	}
	if c := Classify(context.Canceled); c.Code != spec.CodeCancelled {
		t.Errorf("cancel: %+v", c)
	}
}

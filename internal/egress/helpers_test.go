package egress

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// strayDials counts dials the test guard refused: any connect to an address
// that is not loopback. It must stay zero.
var strayDials atomic.Int64

func TestMain(m *testing.M) {
	dialGuard = func(network string, ap netip.AddrPort) error {
		a := ap.Addr().Unmap()
		if a.IsLoopback() || a.IsUnspecified() {
			return nil
		}
		strayDials.Add(1)
		return fmt.Errorf("test guard: refusing to send a packet to %s", ap)
	}
	code := m.Run()
	if n := strayDials.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d dials reached a non-loopback address\n", n)
		code = 1
	}
	os.Exit(code)
}

// dnsServer is a tiny UDP DNS server answering A and AAAA queries from a
// fixed table; every other name gets NXDOMAIN.
type dnsServer struct {
	conn    net.PacketConn
	records map[string][]netip.Addr // lower-case FQDN without trailing dot
	queries atomic.Int64
}

func startDNS(t *testing.T, records map[string][]string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{conn: pc, records: map[string][]netip.Addr{}}
	for name, addrs := range records {
		for _, a := range addrs {
			s.records[name] = append(s.records[name], netip.MustParseAddr(a))
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := s.answer(buf[:n]); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
	return s
}

func (s *dnsServer) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	s.queries.Add(1)
	question := qs[0]
	name := strings.TrimSuffix(strings.ToLower(question.Name.String()), ".")
	addrs, known := s.records[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(question)
	_ = b.StartAnswers()
	for _, a := range addrs {
		hdr := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 60}
		switch {
		case question.Type == dnsmessage.TypeA && a.Is4():
			_ = b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
		case question.Type == dnsmessage.TypeAAAA && a.Is6():
			_ = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// resolver returns a net.Resolver that asks only this server.
func (s *dnsServer) resolver() *net.Resolver {
	addr := s.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

// target is a loopback HTTP server (on 127.0.0.1 and, where it can, on ::1
// at the same port) that counts requests and accepted connections.
type target struct {
	hits  atomic.Int64 // requests
	conns atomic.Int64 // TCP connections accepted
	v4    *httptest.Server
	v6    *httptest.Server
	port  string
}

// touched is the number of requests plus connections the target saw.
func (tg *target) touched() int64 { return tg.hits.Load() + tg.conns.Load() }

func startTarget(t *testing.T, h http.Handler) *target {
	t.Helper()
	tg := &target{}
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("target")) })
	}
	counting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.hits.Add(1)
		h.ServeHTTP(w, r)
	})
	connState := func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			tg.conns.Add(1)
		}
	}
	tg.v4 = httptest.NewUnstartedServer(counting)
	tg.v4.Config.ConnState = connState
	tg.v4.Start()
	t.Cleanup(tg.v4.Close)
	_, tg.port, _ = net.SplitHostPort(tg.v4.Listener.Addr().String())
	if ln, err := net.Listen("tcp", "[::1]:"+tg.port); err == nil {
		tg.v6 = httptest.NewUnstartedServer(counting)
		_ = tg.v6.Listener.Close()
		tg.v6.Listener = ln
		tg.v6.Config.ConnState = connState
		tg.v6.Start()
		t.Cleanup(tg.v6.Close)
	}
	return tg
}

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

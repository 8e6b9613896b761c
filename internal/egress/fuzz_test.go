package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"code.dny.dev/ssrf"
)

// offlineResolver never reaches a DNS server (only /etc/hosts answers).
var offlineResolver = &net.Resolver{
	PreferGo: true,
	Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("offline")
	},
}

// internal reports the addresses no policy without AllowPrivate may reach,
// judged by the standard library alone.
func internal(a netip.Addr) bool {
	u := a.Unmap().WithZone("")
	return u.IsLoopback() || u.IsPrivate() || u.IsLinkLocalUnicast() || u.IsLinkLocalMulticast() ||
		u.IsUnspecified() || u.IsMulticast() || u.IsInterfaceLocalMulticast()
}

// FuzzCheckHost: resolving a URL host never panics, and never lets a
// loopback, private, link-local or unspecified address through.
func FuzzCheckHost(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.1", "127.0.0.1.",
		"[::1]", "::ffff:127.0.0.1", "[::ffff:7f00:1]", "[64:ff9b::7f00:1]", "fe80::1%lo",
		"localhost", "LocalHost.", "a.localhost", "x.invalid", "10.0.0.1", "0", "0x", "4294967295",
		"08", "1.2.3.4.5", "example.com", "[fd00::1]", "[2002:7f00:1::]", "192.168.0.1", "1e1.0.0.1",
	} {
		f.Add(s)
	}
	p := &Policy{Resolver: offlineResolver}
	f.Fuzz(func(t *testing.T, host string) {
		addrs, err := p.Resolve(context.Background(), "ip", host)
		if err == nil {
			for _, a := range addrs {
				if internal(a) {
					t.Fatalf("Resolve(%q) allowed %v", host, a)
				}
				if cerr := p.CheckIP(a); cerr != nil {
					t.Fatalf("Resolve(%q) returned %v which CheckIP refuses: %v", host, a, cerr)
				}
			}
		}
		// Oracle 1: whatever the standard library parses as an internal
		// address must be refused.
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); ip != nil {
			if a, ok := netip.AddrFromSlice(ip); ok && internal(a) && !errors.Is(err, ErrBlocked) {
				t.Fatalf("Resolve(%q) = %v, %v; want ErrBlocked", host, addrs, err)
			}
		}
		// Oracle 2: localhost names are loopback.
		if isLocalhostName(canonicalName(host)) && !errors.Is(err, ErrBlocked) {
			t.Fatalf("Resolve(%q) = %v, %v; want ErrBlocked", host, addrs, err)
		}
		// Oracle 3: a legacy numeric host names the same address as the
		// dotted form the standard library reads.
		if a, numeric, ok := parseWHATWGIPv4(host); numeric && ok {
			if b, perr := netip.ParseAddr(a.String()); perr != nil || b != a {
				t.Fatalf("%q → %v does not round-trip", host, a)
			}
			if internal(a) && !errors.Is(err, ErrBlocked) {
				t.Fatalf("Resolve(%q) = %v, %v; want ErrBlocked", host, addrs, err)
			}
		}
	})
}

// FuzzCheckIP: CheckIP never panics, refuses every internal address, never
// allows what code.dny.dev/ssrf refuses (after unwrapping IPv4-mapped and
// NAT64 forms, which it does not do), and AllowPrivate only widens it.
func FuzzCheckIP(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1", "10.1.2.3", "169.254.169.254", "8.8.8.8", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1",
		"64:ff9b::808:808", "fe80::1", "fd00::1", "2002:c0a8:101::", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
		"2606:4700::1111", "255.255.255.255", "224.0.0.1", "::", "0.0.0.0", "100.64.0.1",
	} {
		a := netip.MustParseAddr(s)
		f.Add(a.AsSlice())
	}
	strict, open := &Policy{}, &Policy{AllowPrivate: true}
	guard := ssrf.New(ssrf.WithAnyPort())
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		err := strict.CheckIP(a)
		if err != nil && !errors.Is(err, ErrBlocked) {
			t.Fatalf("CheckIP(%v) = %v, not ErrBlocked", a, err)
		}
		if err == nil && internal(a) {
			t.Fatalf("CheckIP(%v) allowed an internal address", a)
		}
		if err == nil {
			ref := a
			switch {
			case a.Is4In6():
				ref = a.Unmap()
			case pfxNAT64.Contains(a):
				b := a.As16()
				ref = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
			case pfxNAT64Loc.Contains(a):
				b := a.As16()
				ref = netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]})
			}
			if gerr := guard.SafeAddr(ref); gerr != nil {
				t.Fatalf("CheckIP(%v) allowed what ssrf refuses: %v", a, gerr)
			}
		}
		if open.CheckIP(a) != nil && err == nil {
			t.Fatalf("AllowPrivate refused %v which the strict policy allows", a)
		}
	})
}

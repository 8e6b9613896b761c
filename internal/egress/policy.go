package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"code.dny.dev/ssrf"
)

// ErrBlocked is wrapped by every refusal of the policy.
var ErrBlocked = errors.New("blocked address")

// BlockedError describes one refusal. It wraps [ErrBlocked].
type BlockedError struct {
	Host   string     // the host as asked for ("" when an address was checked directly)
	IP     netip.Addr // the refused address (invalid for refusals that are not about an address)
	Reason string     // why, e.g. "loopback", "private", "port 22 not allowed"
}

// Error implements error.
func (e *BlockedError) Error() string {
	var b strings.Builder
	b.WriteString("blocked address")
	if e.Host != "" {
		b.WriteString(" ")
		b.WriteString(strconv.Quote(e.Host))
	}
	if e.IP.IsValid() && e.IP.String() != e.Host {
		b.WriteString(" (")
		b.WriteString(e.IP.String())
		b.WriteString(")")
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	return b.String()
}

// Unwrap returns [ErrBlocked].
func (e *BlockedError) Unwrap() error { return ErrBlocked }

// Policy decides which addresses and ports a worker may connect to. The zero
// value denies every non-public address and allows any port. A Policy must
// not be modified once in use; it is safe for concurrent use.
type Policy struct {
	// AllowPrivate lets connections reach loopback, private, link-local,
	// CGNAT, unique-local and reserved addresses (local development and tests
	// only). Multicast and broadcast stay denied unless listed in Allow.
	AllowPrivate bool
	// Allow lists prefixes that are allowed even though they would be denied.
	Allow []netip.Prefix
	// Ports lists the destination ports that may be dialed; empty means any.
	Ports []int
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// CheckIP reports whether ip may be connected to: nil, or a *BlockedError
// wrapping ErrBlocked.
func (p *Policy) CheckIP(ip netip.Addr) error {
	if !ip.IsValid() {
		return &BlockedError{Reason: "invalid address"}
	}
	ip = ip.WithZone("")
	if p.allowListed(ip) {
		return nil
	}
	reason, hard := deniedReason(ip)
	if reason == "" || (p.AllowPrivate && !hard) {
		return nil
	}
	return &BlockedError{IP: ip, Reason: reason}
}

// checkPort reports whether port may be dialed.
func (p *Policy) checkPort(port int) error {
	if len(p.Ports) == 0 || slices.Contains(p.Ports, port) {
		return nil
	}
	return &BlockedError{Reason: fmt.Sprintf("port %d not allowed", port)}
}

func (p *Policy) allowListed(ip netip.Addr) bool {
	for _, pfx := range p.Allow {
		if pfx.Contains(ip) || (ip.Is4In6() && pfx.Contains(ip.Unmap())) {
			return true
		}
	}
	return false
}

type namedPrefix struct {
	prefix netip.Prefix
	reason string
	hard   bool // never allowed by AllowPrivate
}

func np(s, reason string, hard bool) namedPrefix {
	return namedPrefix{netip.MustParsePrefix(s), reason, hard}
}

// v4Denied names the IPv4 ranges that are denied, most specific first.
// ssrf.IPv4DeniedPrefixes (the IANA special-purpose registry) is checked
// after it, so anything that list adds is denied too.
var v4Denied = []namedPrefix{
	np("0.0.0.0/8", "unspecified (this network)", false),
	np("10.0.0.0/8", "private", false),
	np("100.64.0.0/10", "shared address space (CGNAT)", false),
	np("127.0.0.0/8", "loopback", false),
	np("169.254.169.254/32", "link-local (cloud metadata)", false),
	np("169.254.0.0/16", "link-local", false),
	np("172.16.0.0/12", "private", false),
	np("192.0.0.0/24", "reserved (IETF protocol assignments)", false),
	np("192.0.2.0/24", "documentation", false),
	np("192.88.99.0/24", "reserved (6to4 relay anycast)", false),
	np("192.168.0.0/16", "private", false),
	np("198.18.0.0/15", "benchmarking", false),
	np("198.51.100.0/24", "documentation", false),
	np("203.0.113.0/24", "documentation", false),
	np("224.0.0.0/4", "multicast", true),
	np("255.255.255.255/32", "broadcast", true),
	np("240.0.0.0/4", "reserved", false),
}

var (
	pfxULA      = netip.MustParsePrefix("fc00::/7")
	pfxNAT64    = netip.MustParsePrefix("64:ff9b::/96")
	pfxNAT64Loc = netip.MustParsePrefix("64:ff9b:1::/48")
	pfx6to4     = netip.MustParsePrefix("2002::/16")
	pfxTeredo   = netip.MustParsePrefix("2001::/32")
	pfxDoc6     = netip.MustParsePrefix("2001:db8::/32")
)

// reason4 names why an IPv4 address is denied, or "" when it is public.
func reason4(ip netip.Addr) (string, bool) {
	for _, d := range v4Denied {
		if d.prefix.Contains(ip) {
			return d.reason, d.hard
		}
	}
	for _, pfx := range ssrf.IPv4DeniedPrefixes {
		if pfx.Contains(ip) {
			return "reserved (" + pfx.String() + ")", false
		}
	}
	return "", false
}

// deniedReason names why ip is denied by default, or "" when it is public.
// hard reports a denial that AllowPrivate does not lift.
func deniedReason(ip netip.Addr) (reason string, hard bool) {
	if ip.Is4() {
		return reason4(ip)
	}
	if ip.Is4In6() {
		if r, h := reason4(ip.Unmap()); r != "" {
			return "IPv4-mapped " + r, h
		}
		return "", false
	}
	b := ip.As16()
	switch {
	case ip.IsUnspecified():
		return "unspecified", false
	case ip.IsLoopback():
		return "loopback", false
	case ip.IsMulticast():
		return "multicast", true
	case ip.IsLinkLocalUnicast():
		return "link-local", false
	case pfxULA.Contains(ip):
		return "unique-local (private)", false
	case pfxNAT64.Contains(ip):
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if r, h := reason4(v4); r != "" {
			return "NAT64 of " + v4.String() + ": " + r, h
		}
		return "", false
	case pfxNAT64Loc.Contains(ip):
		// RFC 6052 /48 layout: bits 64-71 (the "u" octet) are skipped.
		v4 := netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]})
		if r, h := reason4(v4); r != "" {
			return "local-use NAT64 of " + v4.String() + ": " + r, h
		}
		return "", false
	case pfx6to4.Contains(ip):
		v4 := netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		if r, _ := reason4(v4); r != "" {
			return "6to4 of " + v4.String() + ": " + r, false
		}
		return "6to4 (deprecated transition address)", false
	case pfxTeredo.Contains(ip):
		client := netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
		server := netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]})
		for _, v4 := range []netip.Addr{client, server} {
			if r, _ := reason4(v4); r != "" {
				return "Teredo embedding " + v4.String() + ": " + r, false
			}
		}
		return "Teredo (deprecated transition address)", false
	case pfxDoc6.Contains(ip):
		return "documentation", false
	case !ssrf.IPv6GlobalUnicast.Contains(ip):
		return "reserved (outside global unicast)", false
	}
	for _, pfx := range ssrf.IPv6DeniedPrefixes {
		if pfx.Contains(ip) {
			return "reserved (" + pfx.String() + ")", false
		}
	}
	return "", false
}

// errMalformedNumericHost marks a host that ends in a number but is no valid
// IPv4 address in any spelling; browsers reject such URLs.
const reasonMalformedNumeric = "malformed numeric host"

// parseHostLiteral recognises the address spellings a URL host may take: an
// IPv6 literal (with or without brackets and zone), a dotted IPv4 address, or
// a legacy numeric IPv4 form as the WHATWG URL standard parses it (127.1,
// 2130706433, 0x7f000001, 0177.0.0.1). literal is false for host names. A host
// that ends in a number but is no valid address returns a *BlockedError.
func parseHostLiteral(host string) (ip netip.Addr, literal bool, err error) {
	h := host
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
		a, perr := netip.ParseAddr(h)
		if perr != nil || !a.Is6() {
			return netip.Addr{}, true, &BlockedError{Host: host, Reason: "malformed IPv6 literal"}
		}
		return a, true, nil
	}
	if a, perr := netip.ParseAddr(h); perr == nil {
		return a, true, nil
	}
	if strings.Contains(h, ":") {
		return netip.Addr{}, true, &BlockedError{Host: host, Reason: "malformed IPv6 literal"}
	}
	a, numeric, ok := parseWHATWGIPv4(h)
	if !numeric {
		return netip.Addr{}, false, nil
	}
	if !ok {
		return netip.Addr{}, true, &BlockedError{Host: host, Reason: reasonMalformedNumeric}
	}
	return a, true, nil
}

// parseWHATWGIPv4 implements the WHATWG URL "IPv4 parser". numeric reports
// whether the host "ends in a number" (and so must be an IPv4 address); ok
// whether it parsed.
func parseWHATWGIPv4(host string) (ip netip.Addr, numeric, ok bool) {
	parts := strings.Split(host, ".")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	last := parts[len(parts)-1]
	if last == "" {
		return netip.Addr{}, false, false
	}
	if !isAllDigits(last) {
		if _, ok := parseIPv4Number(last); !ok {
			return netip.Addr{}, false, false
		}
	}
	if len(parts) > 4 {
		return netip.Addr{}, true, false
	}
	nums := make([]uint64, len(parts))
	for i, part := range parts {
		n, ok := parseIPv4Number(part)
		if !ok {
			return netip.Addr{}, true, false
		}
		nums[i] = n
	}
	for _, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, true, false
		}
	}
	if nums[len(nums)-1] >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, true, false
	}
	v := nums[len(nums)-1]
	for i, n := range nums[:len(nums)-1] {
		v += n << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, true
}

func isAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseIPv4Number parses one part of a WHATWG IPv4 host: 0x-prefixed hex
// (possibly empty), 0-prefixed octal, or decimal. Values past 2^32 fail.
func parseIPv4Number(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
		if s == "" {
			return 0, true
		}
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		var d uint64
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= uint64(base) {
			return 0, false
		}
		v = v*uint64(base) + d
		if v > 1<<32 {
			return 0, false
		}
	}
	return v, true
}

// isLocalhostName reports RFC 6761 localhost names, which always resolve to
// loopback without asking DNS.
func isLocalhostName(name string) bool {
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}

// isInvalidName reports RFC 6761 .invalid names, which never resolve.
func isInvalidName(name string) bool {
	return name == "invalid" || strings.HasSuffix(name, ".invalid")
}

// canonicalName lower-cases a host name and drops one trailing dot.
func canonicalName(host string) string {
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

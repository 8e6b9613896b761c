package fetch

import (
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// maxCookieAge caps a cookie's lifetime as browsers do (RFC 6265bis).
const maxCookieAge = 400 * 24 * time.Hour

// jar is the cookie store of one fetch: the session's cookies in, every
// Set-Cookie applied (RFC 6265bis storage model, without a public-suffix-
// less shortcut: domain cookies for public suffixes are refused), the
// session's cookies out. Cookies are kept in the Playwright storageState
// shape: a Domain with a leading dot is a domain cookie, without one it is
// host-only. Expires is seconds since the epoch, -1 (or any value <= 0) for
// a session cookie.
type jar struct {
	entries []*entry
	seq     int
}

type entry struct {
	c        spec.Cookie // exported as is; parsed fields below
	domain   string      // lower-case, no leading dot
	hostOnly bool
	path     string
	seq      int // creation order
}

func newJar(in []spec.Cookie) *jar {
	j := &jar{}
	for _, c := range in {
		d := strings.ToLower(c.Domain)
		e := &entry{c: c, hostOnly: !strings.HasPrefix(d, "."), domain: strings.TrimSuffix(strings.TrimPrefix(d, "."), "."), path: c.Path}
		if e.path == "" || e.path[0] != '/' {
			e.path = "/"
		}
		j.seq++
		e.seq = j.seq
		j.entries = append(j.entries, e)
	}
	return j
}

func (e *entry) expired(now time.Time) bool {
	return e.c.Expires > 0 && e.c.Expires <= float64(now.Unix())
}

// canonicalHost is the host as cookies see it: lower-case, punycoded, no
// trailing dot, IPv6 without brackets or zone.
func canonicalHost(u *url.URL) string {
	h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if i := strings.IndexByte(h, '%'); i >= 0 && strings.Contains(h, ":") {
		h = h[:i]
	}
	if a, err := idna.Lookup.ToASCII(h); err == nil && a != "" {
		h = a
	}
	return h
}

func isIPHost(h string) bool { return net.ParseIP(h) != nil }

func isSecureScheme(u *url.URL) bool { return u.Scheme == "https" || u.Scheme == "wss" }

// header returns the Cookie header value for a request to u ("" for none):
// matching cookies, longest path first, then oldest first.
func (j *jar) header(u *url.URL, now time.Time) string {
	host := canonicalHost(u)
	reqPath := u.EscapedPath()
	if reqPath == "" {
		reqPath = "/"
	}
	var match []*entry
	for _, e := range j.entries {
		if e.c.Name == "" && e.c.Value == "" || e.domain == "" || e.expired(now) {
			continue
		}
		if !domainMatch(host, e.domain, e.hostOnly) || !pathMatch(reqPath, e.path) {
			continue
		}
		if e.c.Secure && !isSecureScheme(u) {
			continue
		}
		match = append(match, e)
	}
	sort.SliceStable(match, func(a, b int) bool {
		if len(match[a].path) != len(match[b].path) {
			return len(match[a].path) > len(match[b].path)
		}
		return match[a].seq < match[b].seq
	})
	var sb strings.Builder
	for i, e := range match {
		if i > 0 {
			sb.WriteString("; ")
		}
		if e.c.Name != "" {
			sb.WriteString(e.c.Name)
			sb.WriteByte('=')
		}
		sb.WriteString(e.c.Value)
	}
	return sb.String()
}

func domainMatch(host, domain string, hostOnly bool) bool {
	if host == domain {
		return true
	}
	return !hostOnly && strings.HasSuffix(host, "."+domain) && !isIPHost(host)
}

func pathMatch(reqPath, cookiePath string) bool {
	if reqPath == cookiePath {
		return true
	}
	if !strings.HasPrefix(reqPath, cookiePath) {
		return false
	}
	return strings.HasSuffix(cookiePath, "/") || reqPath[len(cookiePath)] == '/'
}

// defaultPath is RFC 6265 §5.1.4's default-path of u.
func defaultPath(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" || p[0] != '/' {
		return "/"
	}
	i := strings.LastIndexByte(p, '/')
	if i == 0 {
		return "/"
	}
	return p[:i]
}

// set applies one Set-Cookie received from u. It reports nothing: the
// caller compares the exported jar with its input.
func (j *jar) set(u *url.URL, sc *http.Cookie, now time.Time) {
	if sc.Name == "" {
		return
	}
	host := canonicalHost(u)
	if host == "" || strings.HasPrefix(host, ".") || strings.Contains(host, "..") {
		return // no valid host name (an empty label): nothing to scope a cookie to
	}
	secureOrigin := isSecureScheme(u)

	hostOnly, domain := true, host
	if d := strings.ToLower(strings.TrimPrefix(sc.Domain, ".")); d != "" {
		if a, err := idna.Lookup.ToASCII(d); err == nil {
			d = a
		}
		switch {
		case strings.HasSuffix(d, "."):
			return
		case isIPHost(host):
			if d != host {
				return
			}
		case isPublicSuffix(d):
			if d != host {
				return
			}
		case !domainMatch(host, d, false):
			return
		default:
			hostOnly, domain = false, d
		}
	}
	path := sc.Path
	if path == "" || path[0] != '/' {
		path = defaultPath(u)
	}
	if sc.Secure && !secureOrigin {
		return
	}
	switch {
	case strings.HasPrefix(sc.Name, "__Secure-") && !sc.Secure:
		return
	case strings.HasPrefix(sc.Name, "__Host-") && (!sc.Secure || !hostOnly || path != "/"):
		return
	}
	sameSite := ""
	switch sc.SameSite {
	case http.SameSiteLaxMode:
		sameSite = "Lax"
	case http.SameSiteStrictMode:
		sameSite = "Strict"
	case http.SameSiteNoneMode:
		if !sc.Secure {
			return // browsers refuse SameSite=None without Secure
		}
		sameSite = "None"
	}
	expires, remove := -1.0, false
	switch {
	case sc.MaxAge < 0:
		remove = true
	case sc.MaxAge > 0:
		age := time.Duration(sc.MaxAge) * time.Second
		if age > maxCookieAge || age < 0 {
			age = maxCookieAge
		}
		expires = float64(now.Add(age).Unix())
	case !sc.Expires.IsZero():
		if !sc.Expires.After(now) {
			remove = true
		} else {
			exp := sc.Expires
			if exp.Sub(now) > maxCookieAge {
				exp = now.Add(maxCookieAge)
			}
			expires = float64(exp.Unix())
		}
	}
	value := sc.Value
	if sc.Quoted {
		value = `"` + value + `"`
	}

	// A non-secure origin may not overwrite (or shadow) a Secure cookie.
	if !secureOrigin {
		for _, e := range j.entries {
			if e.c.Secure && e.c.Name == sc.Name && (domainMatch(domain, e.domain, false) || domainMatch(e.domain, domain, false)) && pathMatch(path, e.path) {
				return
			}
		}
	}

	exportDomain := domain
	if !hostOnly {
		exportDomain = "." + domain
	}
	c := spec.Cookie{
		Name: sc.Name, Value: value, Domain: exportDomain, Path: path, Expires: expires,
		HTTPOnly: sc.HttpOnly, Secure: sc.Secure, SameSite: sameSite,
	}
	for i, e := range j.entries {
		if e.c.Name == sc.Name && e.domain == domain && e.hostOnly == hostOnly && e.path == path {
			if remove {
				j.entries = append(j.entries[:i], j.entries[i+1:]...)
				return
			}
			e.c = c
			return
		}
	}
	if remove {
		return
	}
	j.seq++
	j.entries = append(j.entries, &entry{c: c, domain: domain, hostOnly: hostOnly, path: path, seq: j.seq})
}

func isPublicSuffix(d string) bool {
	ps, _ := publicsuffix.PublicSuffix(d)
	return ps == d
}

// export returns the jar's cookies, expired ones dropped, in creation order.
func (j *jar) export(now time.Time) []spec.Cookie {
	out := make([]spec.Cookie, 0, len(j.entries))
	for _, e := range j.entries {
		if !e.expired(now) {
			out = append(out, e.c)
		}
	}
	return out
}

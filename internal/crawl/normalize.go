package crawl

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// ErrNotHTTP is returned by Normalize for a URL that is not an absolute
// http or https URL with a host.
var ErrNotHTTP = errors.New("not an absolute http(s) URL with a host")

// Normalize returns the canonical form of an absolute http(s) URL, the form
// under which a crawl visits a page once: scheme and host lower-cased, the
// default port (80 for http, 443 for https) and the fragment dropped, an
// empty path written "/", the query kept as it was. URLs with credentials
// are refused.
func Normalize(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", err
	}
	return normalizeURL(u)
}

func normalizeURL(u *url.URL) (string, error) {
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Opaque != "" || u.User != nil {
		return "", ErrNotHTTP
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", ErrNotHTTP
	}
	port := u.Port()
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", ErrNotHTTP
		}
		port = strconv.Itoa(n)
		if (scheme == "http" && n == 80) || (scheme == "https" && n == 443) {
			port = ""
		}
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	v := *u
	v.Scheme, v.Host, v.Fragment, v.RawFragment = scheme, host, "", ""
	v.ForceQuery = false
	// A space is the one character url.Parse leaves raw in a query; browsers
	// send it as %20, and a raw one at the end would be trimmed from a later
	// reading of the URL.
	v.RawQuery = strings.ReplaceAll(v.RawQuery, " ", "%20")
	if v.Path == "" {
		v.Path, v.RawPath = "/", ""
	}
	out := v.String()
	// The result must read back as itself: refuse the rare spelling that
	// does not survive a round trip rather than visit a page twice.
	w, err := url.Parse(out)
	if err != nil || w.String() != out {
		return "", ErrNotHTTP
	}
	return out, nil
}

// Origin returns the scheme://host[:port] of a normalised URL.
func Origin(normalized string) string {
	u, err := url.Parse(normalized)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

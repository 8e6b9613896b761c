package crawl

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Filter decides which discovered links a crawl (or a map) follows.
type Filter struct {
	origin      string
	scheme      string
	site        string // the start host without "www.", for subdomains
	port        string
	sameOrigin  bool
	subdomains  bool
	ignoreQuery bool
	include     []*regexp.Regexp
	exclude     []*regexp.Regexp
}

// NewFilter compiles the crawl's rules (validated before).
func NewFilter(c *spec.Crawl) (*Filter, error) {
	return newFilter(c.StartURL, c.SameOrigin == nil || *c.SameOrigin, c.AllowSubdomains, c.IgnoreQuery, c.Include, c.Exclude)
}

func newFilter(start string, sameOrigin, subdomains, ignoreQuery bool, include, exclude []string) (*Filter, error) {
	f := &Filter{origin: Origin(start), sameOrigin: sameOrigin, subdomains: subdomains, ignoreQuery: ignoreQuery}
	if u, err := url.Parse(start); err == nil {
		f.scheme, f.port = u.Scheme, u.Port()
		f.site = strings.TrimPrefix(u.Hostname(), "www.")
	}
	for _, p := range include {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("crawl include %q: %w", p, err)
		}
		f.include = append(f.include, re)
	}
	for _, p := range exclude {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("crawl exclude %q: %w", p, err)
		}
		f.exclude = append(f.exclude, re)
	}
	return f, nil
}

// Follow normalises a discovered link and reports whether the crawl
// follows it: on the start URL's site (its origin, or with
// allow_subdomains its host's subdomains too, when same_origin), its path
// matching an include pattern (when there are any) and no exclude pattern.
// With ignore_query the link's query is dropped first.
func (f *Filter) Follow(link string) (normalized string, u *url.URL, ok bool) {
	n, err := Normalize(link)
	if err != nil {
		return "", nil, false
	}
	u, err = url.Parse(n)
	if err != nil {
		return "", nil, false
	}
	if f.ignoreQuery && u.RawQuery != "" {
		u.RawQuery = ""
		n = u.String()
	}
	if f.sameOrigin && !f.onSite(u) {
		return "", nil, false
	}
	path := u.Path
	if len(f.include) > 0 {
		match := false
		for _, re := range f.include {
			if re.MatchString(path) {
				match = true
				break
			}
		}
		if !match {
			return "", nil, false
		}
	}
	for _, re := range f.exclude {
		if re.MatchString(path) {
			return "", nil, false
		}
	}
	return n, u, true
}

// onSite reports whether u is on the crawl's site: the start URL's origin,
// or with allow_subdomains a host under the start host (its "www."
// dropped), with the same scheme and port.
func (f *Filter) onSite(u *url.URL) bool {
	if u.Scheme+"://"+u.Host == f.origin {
		return true
	}
	if !f.subdomains || u.Scheme != f.scheme || u.Port() != f.port {
		return false
	}
	h := u.Hostname()
	return h == f.site || strings.HasSuffix(h, "."+f.site)
}

// SameSite reports whether link, normalised, is on the crawl's site (see
// Follow): a page's canonical URL counts only then.
func (f *Filter) SameSite(link string) (string, bool) {
	n, err := Normalize(link)
	if err != nil {
		return "", false
	}
	u, err := url.Parse(n)
	if err != nil || !f.onSite(u) {
		return "", false
	}
	if f.ignoreQuery && u.RawQuery != "" {
		u.RawQuery = ""
		n = u.String()
	}
	return n, true
}

package crawl

import (
	"fmt"
	"net/url"
	"regexp"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Filter decides which discovered links a crawl follows.
type Filter struct {
	origin     string
	sameOrigin bool
	include    []*regexp.Regexp
	exclude    []*regexp.Regexp
}

// NewFilter compiles the crawl's rules (validated before).
func NewFilter(c *spec.Crawl) (*Filter, error) {
	f := &Filter{origin: Origin(c.StartURL), sameOrigin: c.SameOrigin == nil || *c.SameOrigin}
	for _, p := range c.Include {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("crawl include %q: %w", p, err)
		}
		f.include = append(f.include, re)
	}
	for _, p := range c.Exclude {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("crawl exclude %q: %w", p, err)
		}
		f.exclude = append(f.exclude, re)
	}
	return f, nil
}

// Follow normalises a discovered link and reports whether the crawl
// follows it: same origin as the start URL (when same_origin), its path
// matching an include pattern (when there are any) and no exclude pattern.
func (f *Filter) Follow(link string) (normalized string, u *url.URL, ok bool) {
	n, err := Normalize(link)
	if err != nil {
		return "", nil, false
	}
	u, err = url.Parse(n)
	if err != nil {
		return "", nil, false
	}
	if f.sameOrigin && u.Scheme+"://"+u.Host != f.origin {
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

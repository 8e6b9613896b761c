package batch

import (
	"fmt"
	"net/url"

	"github.com/pagefleet/pagefleet/internal/crawl"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// crawlKind is a batch that discovers its pages by following links from a
// start page (package crawl follows them).
type crawlKind struct{}

func (crawlKind) Name() string                      { return spec.BatchKindCrawl }
func (crawlKind) Asked(req *spec.BatchRequest) bool { return req.Crawl != nil }
func (crawlKind) Seeds(req *spec.BatchRequest) []string {
	return []string{req.Crawl.StartURL}
}

// Template asks every page for its links, which the crawl follows.
func (crawlKind) Template(t *spec.Request) {
	if !t.Wants(spec.OutLinks) {
		t.Output = append(t.Output, spec.OutLinks)
	}
}

// Check validates the crawl against maxPages (the tenant's batch size) and
// fills its defaults: the start URL normalised (its query dropped with
// ignore_query), max_depth 3, max_pages 1000 (at most maxPages),
// same_origin true, sitemap include.
func (crawlKind) Check(req *spec.BatchRequest, maxPages int) []spec.FieldError {
	c := req.Crawl
	var errs []spec.FieldError
	add := func(f, m string) { errs = append(errs, spec.FieldError{Field: "crawl." + f, Message: m}) }
	if m := spec.CheckURL(c.StartURL); m != "" {
		add("start_url", m)
	} else if n, err := crawl.Normalize(c.StartURL); err != nil {
		add("start_url", "is not a URL a crawl can start from")
	} else {
		c.StartURL = n
	}
	if c.MaxDepth == nil {
		d := DefaultMaxDepth
		c.MaxDepth = &d
	} else if *c.MaxDepth < 0 || *c.MaxDepth > MaxDepth {
		add("max_depth", fmt.Sprintf("must be between 0 and %d", MaxDepth))
	}
	switch {
	case c.MaxPages == 0:
		c.MaxPages = min(DefaultMaxPages, maxPages)
	case c.MaxPages < 0 || c.MaxPages > maxPages:
		add("max_pages", fmt.Sprintf("must be between 1 and %d (the tenant's batch size)", maxPages))
	}
	errs = append(errs, crawl.CheckPatterns("crawl.", c.Include, c.Exclude)...)
	if c.SameOrigin == nil {
		t := true
		c.SameOrigin = &t
	}
	switch c.Sitemap {
	case "":
		c.Sitemap = spec.SitemapInclude
	case spec.SitemapInclude, spec.SitemapOnly, spec.SitemapSkip:
	default:
		add("sitemap", `must be "include", "only" or "skip"`)
	}
	if c.IgnoreQuery {
		if u, err := url.Parse(c.StartURL); err == nil && u.RawQuery != "" {
			u.RawQuery = ""
			c.StartURL = u.String()
		}
	}
	sortErrors(errs)
	return errs
}

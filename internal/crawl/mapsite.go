package crawl

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/internal/convert"
	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// CheckMap validates a map request and fills its defaults (limit 5000,
// sitemap include, the URL normalised).
func CheckMap(r *spec.MapRequest) []spec.FieldError {
	var errs []spec.FieldError
	add := func(f, m string) { errs = append(errs, spec.FieldError{Field: f, Message: m}) }
	if m := spec.CheckURL(r.URL); m != "" {
		add("url", m)
	} else if n, err := Normalize(r.URL); err != nil {
		add("url", "is not a URL a map can start from")
	} else {
		r.URL = n
	}
	switch {
	case r.Limit == 0:
		r.Limit = spec.DefaultMapLimit
	case r.Limit < 0 || r.Limit > spec.MaxMapLimit:
		add("limit", fmt.Sprintf("must be between 1 and %d", spec.MaxMapLimit))
	}
	switch r.Sitemap {
	case "":
		r.Sitemap = spec.SitemapInclude
	case spec.SitemapInclude, spec.SitemapOnly, spec.SitemapSkip:
	default:
		add("sitemap", `must be "include", "only" or "skip"`)
	}
	errs = append(errs, CheckPatterns("", r.Include, r.Exclude)...)
	if len(r.Search) > 1000 {
		add("search", "must be at most 1000 characters")
	}
	return errs
}

// Limits of include and exclude patterns.
const (
	MaxPatterns      = 50
	MaxPatternLength = 1000
)

// CheckPatterns validates include and exclude regular expressions; prefix
// names their field ("crawl.").
func CheckPatterns(prefix string, include, exclude []string) []spec.FieldError {
	var errs []spec.FieldError
	for _, l := range []struct {
		name string
		list []string
	}{{"include", include}, {"exclude", exclude}} {
		if len(l.list) > MaxPatterns {
			errs = append(errs, spec.FieldError{Field: prefix + l.name, Message: fmt.Sprintf("must have at most %d patterns", MaxPatterns)})
			continue
		}
		for i, p := range l.list {
			f := fmt.Sprintf("%s%s[%d]", prefix, l.name, i)
			if len(p) > MaxPatternLength {
				errs = append(errs, spec.FieldError{Field: f, Message: fmt.Sprintf("is longer than %d characters", MaxPatternLength)})
			} else if _, err := regexp.Compile(p); err != nil {
				errs = append(errs, spec.FieldError{Field: f, Message: "is not a valid regular expression: " + strings.TrimPrefix(err.Error(), "error parsing regexp: ")})
			}
		}
	}
	return errs
}

// mapTimeout bounds a whole map: its robots.txt, sitemaps and start page.
const mapTimeout = 50 * time.Second

// Map lists a site's URLs (r checked by CheckMap): the pages its sitemaps
// list (robots.txt's Sitemap: lines, else /sitemap.xml; indexes and gzip
// followed) and the links of its start page, with plain HTTP only, each
// normalised and filtered as a crawl filters links (the start URL's site,
// include, exclude), once, then those with every word of search, at most
// r.Limit.
func Map(ctx context.Context, f Fetcher, r spec.MapRequest) (spec.MapResult, error) {
	ctx, cancel := context.WithTimeout(ctx, mapTimeout)
	defer cancel()
	filter, err := newFilter(r.URL, true, r.AllowSubdomains, false, r.Include, r.Exclude)
	if err != nil {
		return spec.MapResult{}, err
	}
	words := strings.Fields(strings.ToLower(r.Search))
	out := spec.MapResult{URLs: []spec.MapURL{}}
	seen := map[string]bool{}
	add := func(raw, lastmod, source string) bool {
		n, _, ok := filter.Follow(raw)
		if !ok || seen[n] {
			return true
		}
		seen[n] = true
		low := strings.ToLower(n)
		for _, w := range words {
			if !strings.Contains(low, w) {
				return true
			}
		}
		if len(out.URLs) == r.Limit {
			out.Truncated = true
			return false
		}
		out.URLs = append(out.URLs, spec.MapURL{URL: n, Lastmod: lastmod, Source: source})
		return true
	}
	origin := Origin(r.URL)
	if r.Sitemap != spec.SitemapSkip {
		var listed []string
		if resp, err := f.Do(ctx, fetch.Request{URL: origin + "/robots.txt", Timeout: 10 * time.Second}); err == nil &&
			resp.StatusCode >= 200 && resp.StatusCode < 300 {
			listed = ParseRobots(resp.Body).Sitemaps
		}
		// Read past the limit: the filter and the search drop some.
		pages, cut := Sitemaps(ctx, f, origin, listed, min(spec.MaxBatchURLs, 2*r.Limit+1000))
		for _, p := range pages {
			if !add(p.URL, p.Lastmod, spec.DiscoveredSitemap) {
				return out, nil
			}
		}
		// A file cut at its bound (50 000 URLs, 50 MB) left URLs unread.
		out.Truncated = out.Truncated || cut
	}
	if r.Sitemap != spec.SitemapOnly {
		resp, err := f.Do(ctx, fetch.Request{URL: r.URL, Timeout: 30 * time.Second})
		if err != nil {
			if len(out.URLs) == 0 {
				return out, err
			}
			return out, nil // the sitemaps' pages stand
		}
		if doc, err := convert.Parse(resp.Body, resp.FinalURL); err == nil {
			add(r.URL, "", "page")
			for _, l := range doc.Links() {
				if !add(l, "", "page") {
					return out, nil
				}
			}
		}
	}
	return out, nil
}

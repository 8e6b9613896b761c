package crawl

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Fetcher reads robots.txt and sitemap files (plain HTTP fetches through
// the egress guard; fetch.Client).
type Fetcher interface {
	Do(ctx context.Context, req fetch.Request) (*fetch.Response, error)
	Opener
}

// Follower decides which links of a crawl page a crawl follows: the
// crawl's rules (depth, same origin, include, exclude) and, when the crawl
// respects it, each origin's robots.txt, fetched once per batch by
// whichever worker gets there first.
type Follower struct {
	batches *rdb.Batches
	fetcher Fetcher // nil: robots.txt allows everything
	log     *slog.Logger

	mu     sync.Mutex
	crawls map[string]*crawlState // by batch id
}

// crawlState is what a worker keeps of one crawl: its settings never
// change, and robots.txt is read once.
type crawlState struct {
	filter *Filter
	mu     sync.Mutex
	robots map[string]*Robots // by origin
}

// NewFollower returns a follower on batches that reads robots.txt with
// fetcher.
func NewFollower(batches *rdb.Batches, fetcher Fetcher, log *slog.Logger) *Follower {
	if log == nil {
		log = slog.Default()
	}
	return &Follower{batches: batches, fetcher: fetcher, log: log, crawls: map[string]*crawlState{}}
}

func (f *Follower) state(b *rdb.Batch) (*crawlState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.crawls[b.ID]; c != nil {
		return c, nil
	}
	filter, err := NewFilter(b.Crawl)
	if err != nil {
		return nil, err
	}
	if len(f.crawls) >= 1000 {
		f.crawls = map[string]*crawlState{}
	}
	c := &crawlState{filter: filter, robots: map[string]*Robots{}}
	f.crawls[b.ID] = c
	return c, nil
}

// Pages returns the pages a page of crawl b leads to, at depth (the page's
// depth plus one): its links that the crawl follows (none with sitemap
// "only"), and for the start page (depth 1) the pages the site's sitemaps
// list (unless sitemap is "skip"), each normalised and filtered as a link,
// once.
func (f *Follower) Pages(ctx context.Context, b *rdb.Batch, depth int, links []string) ([]rdb.Found, error) {
	if b.Crawl == nil || b.Crawl.MaxDepth == nil || depth > *b.Crawl.MaxDepth {
		return nil, nil
	}
	c, err := f.state(b)
	if err != nil {
		return nil, err
	}
	var out []rdb.Found
	seen := map[string]bool{}
	add := func(raw, by, lastmod string) {
		n, u, ok := c.filter.Follow(raw)
		if !ok || seen[n] {
			return
		}
		seen[n] = true
		if b.Crawl.RespectRobotsTxt {
			path := u.EscapedPath()
			if u.RawQuery != "" {
				path += "?" + u.RawQuery
			}
			if !f.robots(ctx, b.ID, c, u.Scheme+"://"+u.Host).Allowed(path) {
				return
			}
		}
		out = append(out, rdb.Found{URL: n, By: by, Lastmod: lastmod})
	}
	if b.Crawl.Sitemap != spec.SitemapOnly {
		for _, l := range links {
			add(l, spec.DiscoveredLink, "")
		}
	}
	if depth == 1 && b.Crawl.Sitemap != spec.SitemapSkip && f.fetcher != nil {
		origin := Origin(b.Crawl.StartURL)
		listed := f.robots(ctx, b.ID, c, origin).Sitemaps
		limit := max(b.Crawl.MaxPages, 1)
		pages, _ := Sitemaps(ctx, f.fetcher, origin, listed, min(limit, spec.MaxBatchURLs))
		for _, p := range pages {
			add(p.URL, spec.DiscoveredSitemap, p.Lastmod)
		}
	}
	return out, nil
}

// Canonical returns a crawl page's canonical URL, normalised, when it is on
// the crawl's site and is not the page's own URL: the crawl counts it as
// visited.
func (f *Follower) Canonical(b *rdb.Batch, pageURL, canonical string) (string, bool) {
	if b.Crawl == nil || canonical == "" {
		return "", false
	}
	c, err := f.state(b)
	if err != nil {
		return "", false
	}
	n, ok := c.filter.SameSite(canonical)
	if !ok {
		return "", false
	}
	if own, err := Normalize(pageURL); err == nil && own == n {
		return "", false
	}
	return n, true
}

// robots returns origin's robots.txt rules for the batch.
func (f *Follower) robots(ctx context.Context, batchID string, c *crawlState, origin string) *Robots {
	c.mu.Lock()
	r := c.robots[origin]
	c.mu.Unlock()
	if r != nil {
		return r
	}
	r = f.loadRobots(ctx, batchID, origin)
	c.mu.Lock()
	c.robots[origin] = r
	c.mu.Unlock()
	return r
}

// loadRobots reads the batch's stored robots.txt of origin, or fetches and
// stores it when this worker gets the lock; the others wait for it.
func (f *Follower) loadRobots(ctx context.Context, id, origin string) *Robots {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if file, ok, err := f.batches.Robots(ctx, id, origin); err == nil && ok {
			return rulesOf(file)
		}
		if got, err := f.batches.LockRobots(ctx, id, origin, 30*time.Second); err == nil && got {
			file := f.fetchRobots(ctx, origin)
			if err := f.batches.SetRobots(ctx, id, origin, file); err != nil {
				f.log.Warn("store robots.txt", "batch", id, "origin", origin, "err", err)
			}
			return rulesOf(file)
		}
		select {
		case <-ctx.Done():
			return DenyAll
		case <-time.After(100 * time.Millisecond):
		}
	}
	return DenyAll
}

// rulesOf are the rules of a robots.txt outcome.
func rulesOf(f rdb.RobotsFile) *Robots {
	switch {
	case f.AllowAll:
		return AllowAll
	case f.DenyAll:
		return DenyAll
	}
	return ParseRobots(f.Text)
}

// fetchRobots reads origin's robots.txt: 2xx is parsed, 4xx allows
// everything, a 5xx or an unreachable site allows nothing (RFC 9309).
func (f *Follower) fetchRobots(ctx context.Context, origin string) rdb.RobotsFile {
	if f.fetcher == nil {
		return rdb.RobotsFile{AllowAll: true}
	}
	resp, err := f.fetcher.Do(ctx, fetch.Request{URL: origin + "/robots.txt", Timeout: 10 * time.Second})
	switch {
	case err != nil:
		f.log.Info("robots.txt unreachable; the origin is skipped", "origin", origin, "err", err)
		return rdb.RobotsFile{DenyAll: true}
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return rdb.RobotsFile{Text: resp.Body}
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return rdb.RobotsFile{AllowAll: true}
	}
	return rdb.RobotsFile{DenyAll: true}
}

// CrawlDelay is the Crawl-delay robots.txt asks of origin for crawl b
// (read once per batch and origin, as for its rules; 0 for none).
func (f *Follower) CrawlDelay(ctx context.Context, b *rdb.Batch, origin string) (time.Duration, error) {
	c, err := f.state(b)
	if err != nil {
		return 0, err
	}
	return f.robots(ctx, b.ID, c, origin).CrawlDelay, nil
}

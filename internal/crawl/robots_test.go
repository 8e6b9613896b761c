package crawl

import (
	"testing"
	"time"
)

func TestRobots(t *testing.T) {
	r := ParseRobots(`# comment
User-agent: googlebot
Disallow: /

User-agent: other
User-agent: *
Disallow: /private   # trailing comment
Allow: /private/open
Disallow: /*.pdf$
Disallow: /tmp*/x
Disallow:

Sitemap: http://site.test/sitemap.xml
User-agent: late
Disallow: /late
`)
	for path, want := range map[string]bool{
		"/":                  true,
		"/private":           false,
		"/private/a":         false,
		"/private/open":      true,
		"/private/open/more": true,
		"/doc.pdf":           false,
		"/doc.pdf?x=1":       true,
		"/tmp123/x":          false,
		"/tmp/y":             true,
		"/late":              true, // another agent's group
	} {
		if got := r.Allowed(path); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", path, got, want)
		}
	}
	if !ParseRobots("").Allowed("/x") || !AllowAll.Allowed("/x") || DenyAll.Allowed("/") {
		t.Error("empty, AllowAll, DenyAll")
	}
	if ParseRobots("User-agent: *\nDisallow: /\n").Allowed("/anything") {
		t.Error("Disallow: / should disallow everything")
	}
}

func TestRobotsCrawlDelayAndSitemaps(t *testing.T) {
	r := ParseRobots(`User-agent: *
Crawl-delay: 2.5
Disallow: /private

User-agent: pagefleet
Crawl-delay: 1
Allow: /

Sitemap: http://site.test/sitemap.xml
Sitemap: http://site.test/news.xml.gz
`)
	if r.CrawlDelay != time.Second {
		t.Errorf("crawl-delay of pagefleet's group = %v, want 1s", r.CrawlDelay)
	}
	if len(r.Sitemaps) != 2 || r.Sitemaps[1] != "http://site.test/news.xml.gz" {
		t.Errorf("sitemaps = %v", r.Sitemaps)
	}
	if other := ParseRobots("User-agent: *\nCrawl-delay: 2.5\n"); other.CrawlDelay != 2500*time.Millisecond {
		t.Errorf("crawl-delay of *: %v", other.CrawlDelay)
	}
	// A line temoto cannot read drops the delay and the sitemaps, not the
	// rules.
	bad := ParseRobots("User-agent: *\nCrawl-delay: 10s\nDisallow: /x\nSitemap: http://site.test/s.xml\n")
	if bad.CrawlDelay != 0 || bad.Allowed("/x") {
		t.Errorf("bad crawl-delay: delay %v, /x allowed %v", bad.CrawlDelay, bad.Allowed("/x"))
	}
	if huge := ParseRobots("User-agent: *\nCrawl-delay: 86400\n"); huge.CrawlDelay != MaxCrawlDelay {
		t.Errorf("huge crawl-delay: %v", huge.CrawlDelay)
	}
}

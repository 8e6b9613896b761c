package crawl

import (
	"bufio"
	"strings"
	"time"

	"github.com/temoto/robotstxt"
)

// MaxRobotsBytes is how much of a robots.txt is read (RFC 9309 asks for at
// least 500 KiB).
const MaxRobotsBytes = 500 << 10

// UserAgent is the product token whose robots.txt group applies to
// pagefleet's Crawl-delay (falling back to "*").
const UserAgent = "pagefleet"

// MaxCrawlDelay bounds a Crawl-delay pagefleet honours.
const MaxCrawlDelay = time.Minute

// Robots holds what a robots.txt says to pagefleet: the Allow/Disallow
// rules of the groups for user-agent "*" (matched as RFC 9309 says), the
// Crawl-delay of the group for "pagefleet" (else "*"), and the Sitemap:
// lines.
//
// Crawl-delay and Sitemap are read by github.com/temoto/robotstxt. Its
// Allow/Disallow matching departs from RFC 9309 (a tie goes to the first
// rule rather than to Allow, a pattern with "*" matches anywhere in the
// path rather than from its start, a rule's length counts escaped
// characters twice), so the decisions stay with the matcher here, which
// the tests hold to the RFC.
type Robots struct {
	rules    []robotsRule
	denyAll  bool
	allowAll bool
	// CrawlDelay is the host's Crawl-delay (0: none).
	CrawlDelay time.Duration
	// Sitemaps are the Sitemap: lines, in order.
	Sitemaps []string
}

type robotsRule struct {
	allow   bool
	pattern string
}

// AllowAll is the rule set of a site without a robots.txt.
var AllowAll = &Robots{allowAll: true}

// DenyAll is the rule set of a site whose robots.txt could not be read
// because of a server or network error (RFC 9309 2.3.1.4).
var DenyAll = &Robots{denyAll: true}

// ParseRobots reads the groups of a robots.txt that name user-agent "*":
// their allow and disallow lines, with "*" wildcards and a "$" end anchor.
// Everything else (other agents, sitemaps, crawl-delay) is ignored.
func ParseRobots(body string) *Robots {
	if len(body) > MaxRobotsBytes {
		body = body[:MaxRobotsBytes]
	}
	r := &Robots{}
	// A line temoto cannot read (a Crawl-delay of "10s") fails its whole
	// parse: the file's rules still apply, without delay or sitemaps.
	if data, err := robotstxt.FromString(body); err == nil {
		r.Sitemaps = data.Sitemaps
		if g := data.FindGroup(UserAgent); g != nil && g.CrawlDelay > 0 {
			r.CrawlDelay = min(g.CrawlDelay, MaxCrawlDelay)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), MaxRobotsBytes+1)
	inGroup, star, sawRule := false, false, false
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		key = strings.ToLower(strings.TrimSpace(key))
		val = strings.TrimSpace(val)
		switch key {
		case "user-agent":
			if !inGroup || sawRule { // a new group starts
				inGroup, star, sawRule = true, false, false
			}
			if val == "*" {
				star = true
			}
		case "allow", "disallow":
			sawRule = true
			if !inGroup || !star || val == "" {
				continue
			}
			r.rules = append(r.rules, robotsRule{allow: key == "allow", pattern: val})
		}
	}
	return r
}

// Allowed reports whether a crawler may fetch path (the URL's path and
// query, "/" for none): the longest matching rule decides, allow winning a
// tie; no matching rule allows.
func (r *Robots) Allowed(path string) bool {
	if r == nil || r.allowAll {
		return true
	}
	if r.denyAll {
		return false
	}
	if path == "" {
		path = "/"
	}
	best, allowed := -1, true
	for _, rule := range r.rules {
		if !robotsMatch(rule.pattern, path) {
			continue
		}
		if n := len(rule.pattern); n > best || (n == best && rule.allow) {
			best, allowed = n, rule.allow
		}
	}
	return allowed
}

// robotsMatch matches a robots.txt path pattern ("*" any run of characters,
// a final "$" the end) against the start of path.
func robotsMatch(pattern, path string) bool {
	anchored := strings.HasSuffix(pattern, "$")
	if anchored {
		pattern = pattern[:len(pattern)-1]
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(path, parts[0]) {
		return false
	}
	rest := path[len(parts[0]):]
	if len(parts) == 1 {
		return !anchored || rest == ""
	}
	for i, p := range parts[1:] {
		last := i == len(parts)-2
		if last && anchored {
			return strings.HasSuffix(rest, p)
		}
		j := strings.Index(rest, p)
		if j < 0 {
			return false
		}
		rest = rest[j+len(p):]
	}
	return true
}

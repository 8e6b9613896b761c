package crawl

import (
	"bufio"
	"strings"
)

// MaxRobotsBytes is how much of a robots.txt is read (RFC 9309 asks for at
// least 500 KiB).
const MaxRobotsBytes = 500 << 10

// Robots holds the rules of a robots.txt that apply to every crawler
// (the groups for user-agent "*").
type Robots struct {
	rules    []robotsRule
	denyAll  bool
	allowAll bool
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

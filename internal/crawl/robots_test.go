package crawl

import "testing"

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

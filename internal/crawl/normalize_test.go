package crawl

import (
	"net/url"
	"strings"
	"testing"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"http://example.com", "http://example.com/"},
		{"HTTP://Example.COM/a/B?x=1#frag", "http://example.com/a/B?x=1"},
		{"http://example.com:80/p", "http://example.com/p"},
		{"https://example.com:443/p", "https://example.com/p"},
		{"https://example.com:80/p", "https://example.com:80/p"},
		{"http://example.com:8080/p#x", "http://example.com:8080/p"},
		{"http://LOCALHOST:08080/p", "http://localhost:8080/p"},
		{"http://example.com/p?", "http://example.com/p"},
		{"http://example.com/p?b=2&a=1", "http://example.com/p?b=2&a=1"},
		{"http://[::1]:80/x", "http://[::1]/x"},
		{"http://[FE80::1]:8080/x", "http://[fe80::1]:8080/x"},
		{" http://example.com/sp ", "http://example.com/sp"},
	}
	for _, c := range cases {
		got, err := Normalize(c.in)
		if err != nil || got != c.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "ftp://example.com/", "mailto:a@b.c", "http://", "/relative", "http://u:p@example.com/",
		"http://example.com:99999/", "http:opaque", "javascript:alert(1)"} {
		if got, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", bad, got)
		}
	}
}

func TestFilter(t *testing.T) {
	d, same := 2, true
	c := &spec.Crawl{StartURL: "http://site.test/", MaxDepth: &d, SameOrigin: &same, Include: []string{"^/docs/", "^/blog$"}, Exclude: []string{"/private"}}
	f, err := NewFilter(c)
	if err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]bool{
		"http://SITE.test:80/docs/a#x":    true,
		"http://site.test/blog":           true,
		"http://site.test/blog/2":         false, // include anchored with $
		"http://site.test/docs/private/1": false, // excluded
		"http://other.test/docs/a":        false, // other origin
		"https://site.test/docs/a":        false, // other scheme: other origin
		"http://site.test/":               false, // not included
	} {
		if _, _, ok := f.Follow(link); ok != want {
			t.Errorf("Follow(%q) = %v, want %v", link, ok, want)
		}
	}
	off := false
	c.SameOrigin = &off
	f, _ = NewFilter(c)
	if _, _, ok := f.Follow("http://other.test/docs/a"); !ok {
		t.Error("same_origin false should follow other origins")
	}
}

// FuzzNormalize checks the properties a crawl relies on: the normal form
// is a fixed point, parses as an absolute http(s) URL without fragment,
// default port or upper-case host.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"http://example.com", "HTTP://Example.COM:80/a?b#c", "https://[::1]:443/", "http://a.b:8080/%41%2f?q=%20#f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		n, err := Normalize(raw)
		if err != nil {
			return
		}
		again, err := Normalize(n)
		if err != nil || again != n {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", raw, n, n, again, err)
		}
		u, err := url.Parse(n)
		if err != nil {
			t.Fatalf("normal form %q does not parse: %v", n, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("normal form %q has scheme %q", n, u.Scheme)
		}
		if strings.Contains(n, "#") || u.Fragment != "" {
			t.Fatalf("normal form %q keeps a fragment", n)
		}
		if u.Hostname() != strings.ToLower(u.Hostname()) {
			t.Fatalf("normal form %q has an upper-case host", n)
		}
		if (u.Scheme == "http" && u.Port() == "80") || (u.Scheme == "https" && u.Port() == "443") {
			t.Fatalf("normal form %q keeps the default port", n)
		}
	})
}

func TestFilterSubdomainsAndQuery(t *testing.T) {
	f, err := NewFilter(&spec.Crawl{StartURL: "https://www.site.test/", AllowSubdomains: true, IgnoreQuery: true})
	if err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]string{
		"https://www.site.test/a?x=1":  "https://www.site.test/a",
		"https://site.test/b":          "https://site.test/b",
		"https://docs.site.test/c?y#z": "https://docs.site.test/c",
		"https://a.b.site.test/d":      "https://a.b.site.test/d",
		"http://docs.site.test/e":      "", // another scheme
		"https://site.test:8443/f":     "", // another port
		"https://othersite.test/g":     "",
		"https://notsite.test/h":       "",
	} {
		n, _, ok := f.Follow(link)
		if (want == "") == ok || n != want {
			t.Errorf("Follow(%q) = %q, %v; want %q", link, n, ok, want)
		}
	}
	strict, _ := NewFilter(&spec.Crawl{StartURL: "https://www.site.test/"})
	if _, _, ok := strict.Follow("https://docs.site.test/c"); ok {
		t.Error("a subdomain followed without allow_subdomains")
	}
	if n, _, _ := strict.Follow("https://www.site.test/a?x=1"); n != "https://www.site.test/a?x=1" {
		t.Errorf("query dropped without ignore_query: %q", n)
	}
}

package spec_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// FuzzCheckURL holds CheckURL to what the fetcher, the browser and the
// egress guard rely on: an accepted URL parses as an absolute http(s) URL
// with a host, no credentials, a port from 0 to 65535 and at most
// MaxURLLength characters; and CheckURL never panics.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/", "http://127.1:8080/x?y#z", "http://[::ffff:127.0.0.1]/", "http://user:pass@example.com/",
		"https://token@example.com/", "file:///etc/passwd", "javascript:alert(1)", "//example.com/", "http:///x",
		"http://example.com:99999/", "http://example.com:0/", "HTTP://EXAMPLE.COM", "http://[fe80::1%25eth0]/",
		"http://exa mple.com/", "http://%65xample.com/", "http://0x7f000001/", "http://example.com\\@evil.com/",
		"http://evil.com#@example.com/", "https://xn--n3h.example/", "http://\u2603.example/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if spec.CheckURL(raw) != "" {
			return
		}
		if len(raw) > spec.MaxURLLength {
			t.Fatalf("accepted a URL of %d characters", len(raw))
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", raw, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("accepted scheme %q in %q", u.Scheme, raw)
		}
		if u.Hostname() == "" || u.Opaque != "" {
			t.Fatalf("accepted %q without a host", raw)
		}
		if u.User != nil || strings.Contains(u.Host, "@") {
			t.Fatalf("accepted credentials in %q", raw)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
				t.Fatalf("accepted port %q in %q", p, raw)
			}
		}
	})
}

package fetch

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzSetCookie: applying any Set-Cookie from any URL never panics, and what
// the jar keeps is only ever scoped to the URL's own host or a parent domain
// of it, and Secure only when set over https.
func FuzzSetCookie(f *testing.F) {
	for _, s := range [][2]string{
		{"http://www.example.com/a/b", "a=1; Domain=example.com; Path=/"},
		{"http://www.example.com/", "a=1; Domain=com"},
		{"http://127.0.0.1:8080/", "a=1; Domain=127.0.0.1"},
		{"http://127.0.0.1/", "a=1; Domain=0.0.1"},
		{"https://x.localhost/", "__Host-a=1; Secure; Path=/"},
		{"http://x.example/", "s=1; Secure"},
		{"http://[::1]:80/p", "a=\"q\"; Max-Age=0"},
		{"http://bücher.example/", "a=1; Domain=BÜCHER.example."},
		{"https://a.b.co.uk/", "a=1; Domain=co.uk"},
		{"http://x/", "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT"},
		{"http://x/", "a=1; Max-Age=99999999999999"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, rawURL, setCookie string) {
		u, err := url.Parse(rawURL)
		if err != nil || u.Host == "" {
			return
		}
		sc, err := http.ParseSetCookie(setCookie)
		if err != nil {
			return
		}
		now := time.Now()
		j := newJar(nil)
		j.set(u, sc, now)
		_ = j.header(u, now)
		host := canonicalHost(u)
		for _, c := range j.export(now) {
			d := strings.TrimPrefix(c.Domain, ".")
			if d != host && !strings.HasSuffix(host, "."+d) {
				t.Fatalf("cookie for %q stored from host %q", c.Domain, host)
			}
			if strings.HasPrefix(c.Domain, ".") && isPublicSuffix(d) {
				t.Fatalf("domain cookie for public suffix %q", d)
			}
			if c.Secure && u.Scheme != "https" && u.Scheme != "wss" {
				t.Fatalf("secure cookie from %s", u.Scheme)
			}
			if c.Expires > float64(now.Add(maxCookieAge).Unix()+1) {
				t.Fatalf("expiry past the cap: %v", c.Expires)
			}
		}
	})
}

package fetch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// cookieLog records the Cookie header each path received.
type cookieLog struct {
	mu  sync.Mutex
	got map[string]string
}

func (l *cookieLog) put(path, v string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got == nil {
		l.got = map[string]string{}
	}
	l.got[path] = v
}

func (l *cookieLog) get(path string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[path]
}

func find(cs []spec.Cookie, name string) *spec.Cookie {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func TestCookiesAcrossRedirects(t *testing.T) {
	var log cookieLog
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		log.put(r.URL.Path, r.Header.Get("Cookie"))
		switch r.URL.Path {
		case "/login":
			w.Header().Add("Set-Cookie", "a=1; HttpOnly; SameSite=Lax")
			http.Redirect(w, r, "/step2", http.StatusFound)
		case "/step2":
			w.Header().Add("Set-Cookie", "b=2; Path=/; Max-Age=3600")
			w.Header().Add("Set-Cookie", "s=changed")
			http.Redirect(w, r, "/final", http.StatusSeeOther)
		}
	})
	in := []spec.Cookie{{Name: "s", Value: "0", Domain: "127.0.0.1", Path: "/", Expires: -1}}
	c := newClient(t, Config{})
	resp, err := c.Do(context.Background(), Request{URL: s.URL + "/login", Cookies: in})
	if err != nil {
		t.Fatal(err)
	}
	if got := log.get("/login"); got != "s=0" {
		t.Fatalf("/login Cookie %q", got)
	}
	if got := log.get("/step2"); got != "s=0; a=1" {
		t.Fatalf("/step2 Cookie %q", got)
	}
	if got := log.get("/final"); got != "s=changed; a=1; b=2" {
		t.Fatalf("/final Cookie %q", got)
	}
	if !resp.CookiesChanged || len(resp.Cookies) != 3 {
		t.Fatalf("changed=%t cookies %+v", resp.CookiesChanged, resp.Cookies)
	}
	a, b, sc := find(resp.Cookies, "a"), find(resp.Cookies, "b"), find(resp.Cookies, "s")
	if a == nil || a.Domain != "127.0.0.1" || a.Path != "/" || !a.HTTPOnly || a.SameSite != "Lax" || a.Expires != -1 {
		t.Fatalf("a = %+v", a)
	}
	if exp := float64(time.Now().Add(time.Hour).Unix()); b == nil || b.Expires < exp-5 || b.Expires > exp+5 {
		t.Fatalf("b = %+v", b)
	}
	if sc == nil || sc.Value != "changed" {
		t.Fatalf("s = %+v", sc)
	}
	if in[0].Value != "0" {
		t.Fatal("input modified")
	}
	if resp.Headers["set-cookie"] != "" {
		t.Fatalf("final response has no Set-Cookie, got %q", resp.Headers["set-cookie"])
	}
}

func TestHostOnlyAndDomainCookies(t *testing.T) {
	var log cookieLog
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		host := strings.Split(r.Host, ":")[0]
		log.put(host+r.URL.Path, r.Header.Get("Cookie"))
		if r.URL.Path == "/set" {
			for _, c := range []string{
				"hostonly=1",
				"dom=1; Domain=site.localhost",
				"dotdom=1; Domain=.SITE.localhost",
				"suffix=1; Domain=localhost",       // a public suffix: refused
				"other=1; Domain=other.localhost",  // not our domain: refused
				"sub=1; Domain=api.site.localhost", // a subdomain of ours: refused
			} {
				w.Header().Add("Set-Cookie", c)
			}
		}
	})
	p := port(s)
	c := newClient(t, Config{})
	resp, err := c.Do(context.Background(), Request{URL: "http://www.site.localhost:" + p + "/set"})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, ck := range resp.Cookies {
		names[ck.Name] = ck.Domain
	}
	want := map[string]string{"hostonly": "www.site.localhost", "dom": ".site.localhost", "dotdom": ".site.localhost"}
	if len(names) != len(want) {
		t.Fatalf("stored %v, want %v", names, want)
	}
	for n, d := range want {
		if names[n] != d {
			t.Fatalf("stored %v, want %v", names, want)
		}
	}
	jar := resp.Cookies
	for _, tc := range []struct{ host, want string }{
		{"www.site.localhost", "hostonly=1; dom=1; dotdom=1"},
		{"api.site.localhost", "dom=1; dotdom=1"},
		{"deep.api.site.localhost", "dom=1; dotdom=1"},
		{"sub.www.site.localhost", "dom=1; dotdom=1"}, // host-only does not reach subdomains
		{"site.localhost", "dom=1; dotdom=1"},
		{"notsite.localhost", ""},
		{"WWW.Site.Localhost", "hostonly=1; dom=1; dotdom=1"},
	} {
		r2, err := c.Do(context.Background(), Request{URL: "http://" + tc.host + ":" + p + "/echo", Cookies: jar})
		if err != nil {
			t.Fatal(err)
		}
		if got := log.get(strings.ToLower(tc.host) + "/echo"); got != tc.want {
			t.Errorf("%s got Cookie %q, want %q", tc.host, got, tc.want)
		}
		if r2.CookiesChanged {
			t.Errorf("%s: nothing set, but CookiesChanged", tc.host)
		}
	}
}

func TestCookiePaths(t *testing.T) {
	var log cookieLog
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		log.put(r.URL.Path, r.Header.Get("Cookie"))
		switch r.URL.Path {
		case "/set":
			w.Header().Add("Set-Cookie", "app=1; Path=/app")
			w.Header().Add("Set-Cookie", "root=1; Path=/")
			w.Header().Add("Set-Cookie", "deep=1; Path=/app/deep/")
		case "/dir/page":
			w.Header().Add("Set-Cookie", "def=1") // default path /dir
			w.Header().Add("Set-Cookie", "rel=1; Path=relative")
		}
	})
	c := newClient(t, Config{})
	r1, err := c.Do(context.Background(), Request{URL: s.URL + "/set"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Do(context.Background(), Request{URL: s.URL + "/dir/page", Cookies: r1.Cookies})
	if err != nil {
		t.Fatal(err)
	}
	if d := find(r2.Cookies, "def"); d == nil || d.Path != "/dir" {
		t.Fatalf("def = %+v", d)
	}
	if d := find(r2.Cookies, "rel"); d == nil || d.Path != "/dir" {
		t.Fatalf("rel = %+v", d)
	}
	for path, want := range map[string]string{
		"/app":         "app=1; root=1",
		"/app/x":       "app=1; root=1",
		"/app/deep/y":  "deep=1; app=1; root=1",
		"/application": "root=1",
		"/":            "root=1",
		"/dir":         "def=1; rel=1; root=1",
		"/dir/sub":     "def=1; rel=1; root=1",
		"/directory":   "root=1",
	} {
		if _, err := c.Do(context.Background(), Request{URL: s.URL + path, Cookies: r2.Cookies}); err != nil {
			t.Fatal(err)
		}
		if got := log.get(path); got != want {
			t.Errorf("%s: Cookie %q, want %q", path, got, want)
		}
	}
}

func TestSecureCookies(t *testing.T) {
	var log cookieLog
	h := func(scheme string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			log.put(scheme+r.URL.Path, r.Header.Get("Cookie"))
			if r.URL.Path == "/set" {
				w.Header().Add("Set-Cookie", "sec=1; Secure; SameSite=None")
				w.Header().Add("Set-Cookie", "plain=1")
				w.Header().Add("Set-Cookie", "__Secure-x=1; Secure")
				w.Header().Add("Set-Cookie", "__Host-y=1; Secure; Path=/")
				w.Header().Add("Set-Cookie", "__Host-bad=1; Secure; Path=/sub")
				w.Header().Add("Set-Cookie", "none=1; SameSite=None") // None without Secure: refused
			}
		}
	}
	ts := httptest.NewTLSServer(h("https"))
	defer ts.Close()
	plain := serve(t, h("http"))
	c := newClient(t, Config{})
	c.transport.TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()

	r1, err := c.Do(context.Background(), Request{URL: ts.URL + "/set"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r1.Cookies) != 4 || find(r1.Cookies, "sec") == nil || !find(r1.Cookies, "sec").Secure || find(r1.Cookies, "sec").SameSite != "None" {
		t.Fatalf("https stored %+v", r1.Cookies)
	}
	if _, err := c.Do(context.Background(), Request{URL: plain.URL + "/echo", Cookies: r1.Cookies}); err != nil {
		t.Fatal(err)
	}
	if got := log.get("http/echo"); got != "plain=1" {
		t.Fatalf("http got %q", got)
	}
	if _, err := c.Do(context.Background(), Request{URL: ts.URL + "/echo", Cookies: r1.Cookies}); err != nil {
		t.Fatal(err)
	}
	if got := log.get("https/echo"); got != "sec=1; plain=1; __Secure-x=1; __Host-y=1" {
		t.Fatalf("https got %q", got)
	}
	// Over http, Secure cookies are refused and cannot overwrite secure ones.
	r3, err := c.Do(context.Background(), Request{URL: plain.URL + "/set", Cookies: r1.Cookies})
	if err != nil {
		t.Fatal(err)
	}
	if r3.CookiesChanged || len(r3.Cookies) != 4 {
		t.Fatalf("http set changed=%t %+v", r3.CookiesChanged, r3.Cookies)
	}
	r4, err := c.Do(context.Background(), Request{URL: plain.URL + "/set"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r4.Cookies) != 1 || r4.Cookies[0].Name != "plain" {
		t.Fatalf("http only stores plain: %+v", r4.Cookies)
	}

}

func TestCookieExpiry(t *testing.T) {
	var log cookieLog
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		log.put(r.URL.Path, r.Header.Get("Cookie"))
		switch r.URL.Path {
		case "/delete":
			w.Header().Add("Set-Cookie", "gone=; Max-Age=0")
			w.Header().Add("Set-Cookie", "old=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
			w.Header().Add("Set-Cookie", "neg=x; Max-Age=-1")
			w.Header().Add("Set-Cookie", "never=x; Max-Age=0") // deleting what is not there changes nothing
		case "/same":
			w.Header().Add("Set-Cookie", "keep=1; Path=/; HttpOnly")
		case "/far":
			w.Header().Add("Set-Cookie", "far=1; Expires=Fri, 01 Jan 2100 00:00:00 GMT")
		}
	})
	now := float64(time.Now().Unix())
	in := []spec.Cookie{
		{Name: "gone", Value: "1", Domain: "127.0.0.1", Path: "/", Expires: now + 3600},
		{Name: "old", Value: "1", Domain: "127.0.0.1", Path: "/", Expires: -1},
		{Name: "neg", Value: "1", Domain: "127.0.0.1", Path: "/", Expires: -1},
		{Name: "keep", Value: "1", Domain: "127.0.0.1", Path: "/", Expires: -1, HTTPOnly: true},
	}
	c := newClient(t, Config{})
	resp, err := c.Do(context.Background(), Request{URL: s.URL + "/delete", Cookies: in})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.CookiesChanged || len(resp.Cookies) != 1 || resp.Cookies[0].Name != "keep" {
		t.Fatalf("after deletion: changed=%t %+v", resp.CookiesChanged, resp.Cookies)
	}

	// Re-setting an identical cookie and sending unchanged ones is no change.
	resp, err = c.Do(context.Background(), Request{URL: s.URL + "/same", Cookies: resp.Cookies})
	if err != nil {
		t.Fatal(err)
	}
	if resp.CookiesChanged {
		t.Fatalf("identical Set-Cookie counted as a change: %+v", resp.Cookies)
	}

	// An expired input cookie is neither sent nor kept: a change.
	expired := append([]spec.Cookie{{Name: "stale", Value: "1", Domain: "127.0.0.1", Path: "/", Expires: now - 10}}, resp.Cookies...)
	resp, err = c.Do(context.Background(), Request{URL: s.URL + "/echo", Cookies: expired})
	if err != nil {
		t.Fatal(err)
	}
	if got := log.get("/echo"); got != "keep=1" {
		t.Fatalf("sent %q", got)
	}
	if !resp.CookiesChanged || find(resp.Cookies, "stale") != nil {
		t.Fatalf("stale kept: changed=%t %+v", resp.CookiesChanged, resp.Cookies)
	}

	// Far-future expiry is capped at 400 days.
	resp, err = c.Do(context.Background(), Request{URL: s.URL + "/far"})
	if err != nil {
		t.Fatal(err)
	}
	if f := find(resp.Cookies, "far"); f == nil || f.Expires > float64(time.Now().Add(maxCookieAge).Unix()+5) {
		t.Fatalf("far = %+v", f)
	}

	// Cookies of other sites pass through untouched.
	foreign := []spec.Cookie{{Name: "x", Value: "1", Domain: ".example.com", Path: "/", Expires: now + 999, SameSite: "Strict"}}
	resp, err = c.Do(context.Background(), Request{URL: s.URL + "/none", Cookies: foreign})
	if err != nil {
		t.Fatal(err)
	}
	if resp.CookiesChanged || len(resp.Cookies) != 1 || resp.Cookies[0] != foreign[0] || log.get("/none") != "" {
		t.Fatalf("foreign: changed=%t %+v sent %q", resp.CookiesChanged, resp.Cookies, log.get("/none"))
	}

}

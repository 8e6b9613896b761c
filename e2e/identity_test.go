package e2e

import (
	"encoding/json"
	"fmt"
	stdhtml "html"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// whoamiSite serves /whoami, a page that shows what the server received
// (User-Agent, Accept-Language, X-Team, client hints; echoed into the HTML)
// and what the page's script sees (navigator.userAgent, navigator.language,
// the Intl time zone, innerWidth), plus the headers of a sub-resource
// request (/hdr.js). /gate?g=<gate>&to=… holds a request until the test
// opens that gate (a or b), then redirects.
type whoamiSite struct {
	*Site
	mu    sync.Mutex
	gates map[string]chan struct{}
}

func newWhoamiSite(t *testing.T) *whoamiSite {
	w := &whoamiSite{gates: map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}}
	esc := func(r *http.Request, h string) string { return stdhtml.EscapeString(r.Header.Get(h)) }
	w.Site = NewSite(t, map[string]http.HandlerFunc{
		"/whoami": func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(rw, `<!doctype html><html><head><title>whoami</title></head><body>
<pre id="h-ua">%s</pre><pre id="h-al">%s</pre><pre id="h-x">%s</pre><pre id="h-ch">%s</pre><pre id="h-chp">%s</pre>
<pre id="js-ua"></pre><pre id="js-lang"></pre><pre id="js-langs"></pre><pre id="js-tz"></pre><pre id="js-w"></pre><pre id="js-brands"></pre>
<pre id="sub-ua"></pre><pre id="sub-al"></pre><pre id="sub-x"></pre>
<script>
function set(id, v) { document.getElementById(id).textContent = String(v); }
set('js-ua', navigator.userAgent);
set('js-lang', navigator.language);
set('js-langs', navigator.languages.join(','));
set('js-tz', Intl.DateTimeFormat().resolvedOptions().timeZone);
set('js-w', innerWidth);
set('js-brands', navigator.userAgentData ? navigator.userAgentData.brands.map((b) => b.brand + '/' + b.version).join(',') + ';' + navigator.userAgentData.platform : '');
</script>
<script src="/hdr.js"></script>
</body></html>`, esc(r, "User-Agent"), esc(r, "Accept-Language"), esc(r, "X-Team"), esc(r, "Sec-CH-UA"), esc(r, "Sec-CH-UA-Platform"))
		},
		"/hdr.js": func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Type", "text/javascript")
			for id, h := range map[string]string{"sub-ua": "User-Agent", "sub-al": "Accept-Language", "sub-x": "X-Team"} {
				v, _ := json.Marshal(r.Header.Get(h))
				fmt.Fprintf(rw, "document.getElementById(%q).textContent = %s;\n", id, v)
			}
		},
		"/gate": func(rw http.ResponseWriter, r *http.Request) {
			w.mu.Lock()
			gate, ok := w.gates[r.URL.Query().Get("g")]
			w.mu.Unlock()
			if !ok {
				http.Error(rw, "no such gate", http.StatusNotFound)
				return
			}
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
			http.Redirect(rw, r, r.URL.Query().Get("to"), http.StatusFound)
		},
	})
	t.Cleanup(func() { w.open("a"); w.open("b") })
	return w
}

// open lets the requests held at gate g through (now and from now on).
func (w *whoamiSite) open(g string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.gates[g]:
	default:
		close(w.gates[g])
	}
}

var preRe = regexp.MustCompile(`<pre id="([a-z-]+)">([^<]*)</pre>`)

// seen reads the <pre> values of a /whoami result.
func seen(t *testing.T, j spec.Job) map[string]string {
	t.Helper()
	if j.Status != spec.StatusSucceeded || j.Result == nil || j.Result.HTML == nil {
		t.Fatalf("job %s: %s %+v", j.ID, j.Status, j.Error)
	}
	out := map[string]string{}
	for _, m := range preRe.FindAllStringSubmatch(*j.Result.HTML, -1) {
		out[m[1]] = stdhtml.UnescapeString(m[2])
	}
	return out
}

// expect compares the named values and reports each difference.
func expect(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], want[k])
		}
	}
}

type problemBody struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

func (p problemBody) fields() string {
	var f []string
	for _, e := range p.Errors {
		f = append(f, e.Field)
	}
	sort.Strings(f)
	return strings.Join(f, ",")
}

const winChromeUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"

func TestIdentityProfiles(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 4})
	site := newWhoamiSite(t)

	put := func(key, name string, body any) (int, map[string]any) {
		t.Helper()
		var out map[string]any
		resp := e.Do("PUT", "/v1/identities/"+name, key, body, &out)
		return resp.StatusCode, out
	}

	t.Run("api", func(t *testing.T) {
		code, got := put(keyA, "de-desktop", map[string]any{
			"user_agent": winChromeUA, "locale": "de-DE", "timezone": "Asia/Tokyo",
			"viewport": map[string]int{"width": 1024, "height": 700}, "headers": map[string]string{"x-team": "blue"},
		})
		if code != 200 {
			t.Fatalf("put: %d %v", code, got)
		}
		if got["name"] != "de-desktop" || got["accept_language"] != "de-DE,de;q=0.9" || got["headers"].(map[string]any)["X-Team"] != "blue" ||
			got["created_at"] == nil || got["updated_at"] == nil {
			t.Errorf("put answer: %v", got)
		}
		var one map[string]any
		if r := e.Do("GET", "/v1/identities/de-desktop", keyA, nil, &one); r.StatusCode != 200 || one["timezone"] != "Asia/Tokyo" {
			t.Errorf("get: %d %v", r.StatusCode, one)
		}
		var l struct {
			Data       []map[string]any `json:"data"`
			NextCursor string           `json:"next_cursor"`
		}
		if r := e.Do("GET", "/v1/identities", keyA, nil, &l); r.StatusCode != 200 || len(l.Data) != 1 || l.Data[0]["name"] != "de-desktop" || l.NextCursor != "" {
			t.Errorf("list: %d %+v", r.StatusCode, l)
		}

		// Another tenant: 404, an empty list, and a job naming it is 422.
		var p problemBody
		if r := e.Do("GET", "/v1/identities/de-desktop", keyB, nil, &p); r.StatusCode != 404 {
			t.Errorf("other tenant get: %d", r.StatusCode)
		}
		if r := e.Do("DELETE", "/v1/identities/de-desktop", keyB, nil, &p); r.StatusCode != 404 {
			t.Errorf("other tenant delete: %d", r.StatusCode)
		}
		if r := e.Do("GET", "/v1/identities", keyB, nil, &l); r.StatusCode != 200 || len(l.Data) != 0 {
			t.Errorf("other tenant list: %d %+v", r.StatusCode, l)
		}
		if r := e.Do("POST", "/v1/fetch", keyB, map[string]any{"url": site.URL + "/whoami", "identity": "de-desktop"}, &p); r.StatusCode != 422 || p.fields() != "identity" {
			t.Errorf("other tenant's identity in a job: %d %+v", r.StatusCode, p)
		}

		// Unknown identity: 422 naming identity.
		p = problemBody{}
		if r := e.Do("POST", "/v1/fetch", keyA, map[string]any{"url": site.URL + "/whoami", "identity": "nope"}, &p); r.StatusCode != 422 || p.fields() != "identity" {
			t.Errorf("unknown identity: %d %+v", r.StatusCode, p)
		}

		// Bad fields: 422 naming each.
		p = problemBody{}
		r := e.Do("PUT", "/v1/identities/broken", keyA, map[string]any{
			"timezone": "Mars/Base", "locale": "xx_YY_ZZ!", "viewport": map[string]int{"width": 10, "height": 10},
			"headers": map[string]string{"Cookie": "a=b", "Proxy-Authorization": "x"},
		}, &p)
		if r.StatusCode != 422 || p.fields() != "headers.Cookie,headers.Proxy-Authorization,locale,timezone,viewport.height,viewport.width" {
			t.Errorf("bad fields: %d %+v", r.StatusCode, p)
		}
		if r := e.Do("GET", "/v1/identities/broken", keyA, nil, nil); r.StatusCode != 404 {
			t.Errorf("an invalid profile was stored: %d", r.StatusCode)
		}

		// Free plan: 403 plan_required on the routes and on a job.
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"PUT", "/v1/identities/mine", map[string]any{"locale": "de-DE"}},
			{"GET", "/v1/identities/mine", nil},
			{"GET", "/v1/identities", nil},
			{"DELETE", "/v1/identities/mine", nil},
			{"POST", "/v1/fetch", map[string]any{"url": site.URL + "/whoami", "identity": "de-desktop"}},
		} {
			p := problemBody{}
			if r := e.Do(c.method, c.path, keyF, c.body, &p); r.StatusCode != 403 || p.Code != "plan_required" {
				t.Errorf("free %s %s: %d %+v", c.method, c.path, r.StatusCode, p)
			}
		}
	})

	t.Run("applied rendered and plain", func(t *testing.T) {
		// Both run at once: submitted together, then awaited.
		rid := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/whoami", "render_js": true, "identity": "de-desktop"})
		pid := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/whoami", "identity": "de-desktop"})
		rendered, plain := e.Wait(keyA, rid, 60*time.Second), e.Wait(keyA, pid, 60*time.Second)

		r := seen(t, rendered)
		expect(t, "rendered", r, map[string]string{
			"h-ua": winChromeUA, "h-al": "de-DE,de;q=0.9", "h-x": "blue",
			"js-ua": winChromeUA, "js-lang": "de-DE", "js-langs": "de-DE,de", "js-tz": "Asia/Tokyo", "js-w": "1024",
			"sub-ua": winChromeUA, "sub-al": "de-DE,de;q=0.9", "sub-x": "blue",
		})
		// The client hints agree with the user agent.
		if !strings.Contains(r["js-brands"], "Google Chrome/150") || !strings.HasSuffix(r["js-brands"], ";Windows") {
			t.Errorf("navigator.userAgentData contradicts the user agent: %q", r["js-brands"])
		}
		if ch := r["h-ch"]; !strings.Contains(ch, `"Google Chrome";v="150"`) || !strings.Contains(ch, `"Chromium";v="150"`) {
			t.Errorf("Sec-CH-UA contradicts the user agent: %q", ch)
		}
		if chp := r["h-chp"]; chp != `"Windows"` {
			t.Errorf("Sec-CH-UA-Platform = %q, want \"Windows\"", chp)
		}

		expect(t, "plain", seen(t, plain), map[string]string{
			"h-ua": winChromeUA, "h-al": "de-DE,de;q=0.9", "h-x": "blue", "js-ua": "", "js-tz": "",
		})

		// Without an identity: Chrome's and the fetcher's own values.
		def := seen(t, e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/whoami", "render_js": true}))
		if def["js-ua"] == winChromeUA || def["h-x"] != "" || def["js-tz"] == "Asia/Tokyo" {
			t.Errorf("identity leaked into a job without one: %v", def)
		}
	})

	t.Run("read once when the job starts", func(t *testing.T) {
		v1 := map[string]any{"user_agent": "PagefleetTest/1.0", "locale": "de-DE", "timezone": "Asia/Tokyo",
			"viewport": map[string]int{"width": 800, "height": 600}, "headers": map[string]string{"X-Team": "v1"}}
		v2 := map[string]any{"user_agent": "PagefleetTest/2.0", "locale": "fr-FR", "timezone": "America/New_York",
			"viewport": map[string]int{"width": 1280, "height": 720}, "headers": map[string]string{"X-Team": "v2"}}
		if code, out := put(keyA, "moving", v1); code != 200 {
			t.Fatalf("put v1: %d %v", code, out)
		}
		target := site.URL + "/gate?g=a&to=/whoami"
		rid := e.Submit(keyA, "fetch", map[string]any{"url": target, "render_js": true, "identity": "moving"})
		pid := e.Submit(keyA, "fetch", map[string]any{"url": target, "identity": "moving"})
		// Both jobs are running (held at the gate) before the profile changes.
		deadline := time.Now().Add(30 * time.Second)
		for site.Hits("/gate") < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("jobs did not reach the gate: %d hits", site.Hits("/gate"))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code, out := put(keyA, "moving", v2); code != 200 {
			t.Fatalf("put v2: %d %v", code, out)
		}
		site.open("a")
		old := map[string]string{"h-ua": "PagefleetTest/1.0", "h-al": "de-DE,de;q=0.9", "h-x": "v1"}
		expect(t, "running plain job", seen(t, e.Wait(keyA, pid, 60*time.Second)), old)
		expect(t, "running rendered job", seen(t, e.Wait(keyA, rid, 60*time.Second)), map[string]string{
			"h-ua": "PagefleetTest/1.0", "h-al": "de-DE,de;q=0.9", "h-x": "v1", "sub-x": "v1", "sub-al": "de-DE,de;q=0.9",
			"js-ua": "PagefleetTest/1.0", "js-lang": "de-DE", "js-tz": "Asia/Tokyo", "js-w": "800",
		})

		expect(t, "next rendered job", seen(t, e.Run(keyA, "fetch", map[string]any{"url": target, "render_js": true, "identity": "moving"})), map[string]string{
			"h-ua": "PagefleetTest/2.0", "h-al": "fr-FR,fr;q=0.9", "h-x": "v2", "sub-x": "v2",
			"js-ua": "PagefleetTest/2.0", "js-lang": "fr-FR", "js-tz": "America/New_York", "js-w": "1280",
		})
		expect(t, "next plain job", seen(t, e.Run(keyA, "fetch", map[string]any{"url": target, "identity": "moving"})), map[string]string{
			"h-ua": "PagefleetTest/2.0", "h-al": "fr-FR,fr;q=0.9", "h-x": "v2",
		})

	})

	t.Run("deleted before the job starts", func(t *testing.T) {
		if code, out := put(keyA, "short-lived", map[string]any{"locale": "it-IT"}); code != 200 {
			t.Fatalf("put: %d %v", code, out)
		}
		// The first job of a session holds the session at gate b; the second
		// waits for its turn and reads the identity only when it starts.
		sess := map[string]string{"id": "identity-line"}
		first := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/gate?g=b&to=/whoami", "session": sess})
		second := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/whoami", "session": sess, "identity": "short-lived"})
		deadline := time.Now().Add(30 * time.Second)
		for !hitWithQuery(site.Site, "g=b") {
			if time.Now().After(deadline) {
				t.Fatal("the first job did not reach the gate")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if r := e.Do("DELETE", "/v1/identities/short-lived", keyA, nil, nil); r.StatusCode != 204 {
			t.Fatalf("delete: %d", r.StatusCode)
		}
		var p problemBody
		if r := e.Do("POST", "/v1/fetch", keyA, map[string]any{"url": site.URL + "/whoami", "identity": "short-lived"}, &p); r.StatusCode != 422 || p.fields() != "identity" {
			t.Errorf("a job naming the deleted identity: %d %+v", r.StatusCode, p)
		}
		site.open("b")
		if j := e.Wait(keyA, first, 60*time.Second); j.Status != spec.StatusSucceeded {
			t.Errorf("first job: %s %+v", j.Status, j.Error)
		}
		j := e.Wait(keyA, second, 60*time.Second)
		if j.Status != spec.StatusFailed || j.Error == nil || j.Error.Code != "identity_not_found" || j.Error.Retryable || j.Attempts != 1 {
			t.Errorf("queued job whose identity was deleted: %s %+v (attempts %d)", j.Status, j.Error, j.Attempts)
		}
	})
}

// hitWithQuery reports whether the site saw a request whose query has q.
func hitWithQuery(s *Site, q string) bool {
	for _, h := range s.Log() {
		if strings.Contains(h.Path, q) {
			return true
		}
	}
	return false
}

package browser_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// The pool and the fixture site that the tests share.
var (
	pool *browser.Pool
	ts   *site
)

func TestMain(m *testing.M) {
	ts = newSite()
	var err error
	pool, err = browser.New(browser.Config{
		Browsers:           1,
		ContextsPerBrowser: 4,
		AllowPrivate:       true,
		EgressError: func(raw string) string {
			if strings.Contains(raw, "blocked-by-egress") {
				return spec.CodeBlockedAddress
			}
			return ""
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser tests need Chrome:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := pool.Start(ctx); err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, "start the browser pool:", err)
		os.Exit(1)
	}
	cancel()

	code := m.Run()

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	if err := pool.Stop(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "stop the browser pool:", err)
		code = 1
	}
	cancel()
	if left := pool.LeftoverProcesses(); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "chromium processes left after Stop:", left)
		code = 1
	}
	ts.Close()
	os.Exit(code)
}

// render runs req on the shared pool with a 45 s deadline (the machine may
// be busy).
func render(t *testing.T, req browser.Request) (*browser.Result, error) {
	t.Helper()
	return renderOn(t, pool, req, 45*time.Second)
}

// startPool makes and starts a pool of its own for a test, logging nowhere,
// and stops it when the test ends.
func startPool(t *testing.T, cfg browser.Config) *browser.Pool {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := browser.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("start the pool: %v", err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p.Stop(sctx)
	})
	return p
}

func renderOn(t *testing.T, p *browser.Pool, req browser.Request, timeout time.Duration) (*browser.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Render(ctx, req)
}

// mustRender fails the test when req fails.
func mustRender(t *testing.T, req browser.Request) *browser.Result {
	t.Helper()
	res, err := render(t, req)
	if err != nil {
		t.Fatalf("Render(%s): %v", req.URL, err)
	}
	return res
}

// specError returns the *spec.Error in err, failing the test when there is
// none.
func specError(t *testing.T, err error) *spec.Error {
	t.Helper()
	var se *spec.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is no *spec.Error", err, err)
	}
	return se
}

func TestJavaScriptRenderedText(t *testing.T) {
	t.Parallel()
	res := mustRender(t, browser.Request{URL: ts.URL + "/js"})
	if !strings.Contains(res.HTML, `<div id="app">rendered by javascript</div>`) {
		t.Errorf("HTML lacks the text the script wrote:\n%s", res.HTML)
	}
	if !strings.HasPrefix(res.HTML, "<!DOCTYPE html>") {
		t.Errorf("HTML does not start with the doctype: %.60q", res.HTML)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Headers["content-type"], "text/html") {
		t.Errorf("status %d, headers %v", res.StatusCode, res.Headers)
	}
	if res.FinalURL != ts.URL+"/js" {
		t.Errorf("FinalURL = %q", res.FinalURL)
	}
	if res.Screenshot != nil || res.State != nil || res.Actions != nil {
		t.Errorf("unasked outputs: screenshot %d bytes, state %v, actions %v", len(res.Screenshot), res.State, res.Actions)
	}
}

func TestHTTPErrorStatusIsNoError(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/notfound", "/notfound-empty"} {
		t.Run(path, func(t *testing.T) {
			res := mustRender(t, browser.Request{URL: ts.URL + path})
			if res.StatusCode != 404 {
				t.Errorf("StatusCode = %d, want 404", res.StatusCode)
			}
			if path == "/notfound" {
				if !strings.Contains(res.HTML, "nothing here") || res.Headers["x-fixture"] != "yes" {
					t.Errorf("HTML %q, headers %v", res.HTML, res.Headers)
				}
			} else if strings.Contains(res.HTML, "neterror") || res.FinalURL != ts.URL+path {
				t.Errorf("an empty 404 gives Chrome's error page: FinalURL %q, HTML %.200q", res.FinalURL, res.HTML)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		url, code string
	}{
		{"http://" + closed + "/", spec.CodeConnectionRefused},
		{"http://pagefleet-test.invalid/", spec.CodeDNSFailure},
		{"http://" + closed + "/blocked-by-egress", spec.CodeBlockedAddress},
		{ts.URL + "/egress", spec.CodeBlockedAddress},
	} {
		t.Run(tc.url, func(t *testing.T) {
			res, err := render(t, browser.Request{URL: tc.url})
			if err == nil {
				t.Fatalf("no error; status %d", res.StatusCode)
			}
			if se := specError(t, err); se.Code != tc.code || se.Retryable {
				t.Errorf("error %+v, want code %s, not retryable", se, tc.code)
			}
		})
	}
}

func TestNavigationTimeout(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := renderOn(t, pool, browser.Request{URL: ts.URL + "/slow?ms=5000"}, time.Second)
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Render took %v after a 1 s deadline", took)
	}
	se := specError(t, err)
	if se.Code != spec.CodeNavigationTimeout || !se.Retryable {
		t.Errorf("error %+v, want a retryable navigation_timeout", se)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
}

func TestWaitUntil(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path, waitUntil string
		want, notWant   string
	}{
		{"/wait/dcl", "domcontentloaded", "<p>dcl</p>", `data-loaded="yes"`},
		{"/wait/dcl", "load", `data-loaded="yes"`, ""},
		{"/wait/idle", "load", "<p>idle</p>", "late data"},
		{"/wait/idle", "networkidle", `<p id="late">late data</p>`, ""},
	} {
		t.Run(tc.path+"/"+tc.waitUntil, func(t *testing.T) {
			res := mustRender(t, browser.Request{URL: ts.URL + tc.path, WaitUntil: tc.waitUntil})
			if !strings.Contains(res.HTML, tc.want) {
				t.Errorf("HTML lacks %q:\n%s", tc.want, res.HTML)
			}
			if tc.notWant != "" && strings.Contains(res.HTML, tc.notWant) {
				t.Errorf("HTML has %q too early:\n%s", tc.notWant, res.HTML)
			}
		})
	}
}

func TestScreenshot(t *testing.T) {
	t.Parallel()
	res := mustRender(t, browser.Request{
		URL: ts.URL + "/tall", Screenshot: true,
		Actions: []spec.Action{{Type: spec.ActEvaluate, Script: "innerWidth"}},
	})
	img, err := png.Decode(bytes.NewReader(res.Screenshot))
	if err != nil {
		t.Fatalf("screenshot is no PNG: %v", err)
	}
	width, _ := strconv.Atoi(string(res.Actions[0].Result))
	if b := img.Bounds(); b.Dx() != width || b.Dy() < 3000 {
		t.Errorf("screenshot is %v, want the page: %d wide, at least 3000 high", b.Size(), width)
	}
}

func TestActions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		path    string
		actions []spec.Action
		check   func(t *testing.T, res *browser.Result)
	}{
		{
			name: "click an element that appears late",
			path: "/actions/appear",
			actions: []spec.Action{
				{Type: spec.ActClick, Selector: "#late"},
			},
			check: func(t *testing.T, res *browser.Result) {
				if !strings.Contains(res.HTML, "clicked late button") {
					t.Errorf("the click did not happen:\n%s", res.HTML)
				}
			},
		},
		{
			name:    "click waits until the button is enabled",
			path:    "/actions/disabled",
			actions: []spec.Action{{Type: spec.ActClick, Selector: "#b"}},
			check: func(t *testing.T, res *browser.Result) {
				m := regexp.MustCompile(`clicked after (\d+)`).FindStringSubmatch(res.HTML)
				if m == nil {
					t.Fatalf("no click:\n%s", res.HTML)
				}
				if ms, _ := strconv.Atoi(m[1]); ms < 1000 {
					t.Errorf("clicked %d ms after load, before the button was enabled", ms)
				}
			},
		},
		{
			name: "type and submit a form with Enter",
			path: "/actions/form",
			actions: []spec.Action{
				{Type: spec.ActType, Selector: "#q", Value: "hello wörld"},
				{Type: spec.ActPress, Key: "Enter"},
				{Type: spec.ActWaitFor, Selector: "#results"},
			},
			check: func(t *testing.T, res *browser.Result) {
				if !strings.Contains(res.HTML, "Results for hello wörld") || !strings.Contains(res.FinalURL, "/actions/search?q=hello+w") {
					t.Errorf("the form was not submitted: %s\n%s", res.FinalURL, res.HTML)
				}
			},
		},
		{
			name: "click a link, then wait on the new page",
			path: "/actions/link",
			actions: []spec.Action{
				{Type: spec.ActClick, Selector: "#next"},
				{Type: spec.ActWaitFor, Selector: "#arrived"},
			},
			check: func(t *testing.T, res *browser.Result) {
				if !strings.Contains(res.HTML, `<div id="arrived">arrived</div>`) || res.FinalURL != ts.URL+"/actions/next" {
					t.Errorf("not on the new page: %s\n%s", res.FinalURL, res.HTML)
				}
			},
		},
		{
			name: "select an option by value and by label",
			path: "/actions/select",
			actions: []spec.Action{
				{Type: spec.ActSelect, Selector: "#s", Value: "b"},
				{Type: spec.ActSelect, Selector: "#s", Value: "Sea"},
			},
			check: func(t *testing.T, res *browser.Result) {
				if !strings.Contains(res.HTML, "chose c") || !strings.Contains(res.HTML, `<div id="inputs">2</div>`) {
					t.Errorf("the selection did not happen:\n%s", res.HTML)
				}
			},
		},
		{
			name:    "infinite scroll",
			path:    "/actions/scroll",
			actions: []spec.Action{{Type: spec.ActScroll, To: "bottom"}},
			check: func(t *testing.T, res *browser.Result) {
				if !strings.Contains(res.HTML, ">item 39<") {
					t.Errorf("scrolling loaded no more items:\n%.300s", res.HTML)
				}
			},
		},
		{
			name: "hover, scroll to an element and to the top, wait",
			path: "/actions/hover",
			actions: []spec.Action{
				{Type: spec.ActHover, Selector: "#h"},
				{Type: spec.ActScroll, Selector: "#out"},
				{Type: spec.ActScroll, To: "top"},
				{Type: spec.ActWait, Ms: 50},
			},
			check: func(t *testing.T, res *browser.Result) {
				if !strings.Contains(res.HTML, `<div id="out">hovered</div>`) {
					t.Errorf("no hover:\n%s", res.HTML)
				}
			},
		},
		{
			name: "evaluate, wait_for states, screenshot, navigate",
			path: "/actions/misc",
			actions: []spec.Action{
				{Type: spec.ActEvaluate, Script: `({title: document.title, n: 1 + 1, list: [1, "two"], nested: {ok: true}})`},
				{Type: spec.ActEvaluate, Script: `const r = await fetch('/api/text?text=fetched'); return {text: await r.text()};`},
				{Type: spec.ActEvaluate, Script: `() => ({fn: 'called'})`},
				{Type: spec.ActEvaluate, Script: `{"plain": "object"}`},
				{Type: spec.ActEvaluate, Script: `void 0`},
				{Type: spec.ActWaitFor, Selector: "#spinner", State: "detached"},
				{Type: spec.ActWaitFor, Selector: "#gone", State: "hidden"},
				{Type: spec.ActWaitFor, Selector: "#gone", State: "attached"},
				{Type: spec.ActScreenshot},
				{Type: spec.ActNavigate, URL: ts.URL + "/js"},
			},
			check: func(t *testing.T, res *browser.Result) {
				for i, want := range []string{
					`{"title":"","n":2,"list":[1,"two"],"nested":{"ok":true}}`,
					`{"text":"fetched"}`,
					`{"fn":"called"}`,
					`{"plain":"object"}`,
					``,
				} {
					if got := string(res.Actions[i].Result); got != want {
						t.Errorf("evaluate %d gave %s, want %s", i, got, want)
					}
				}
				if _, err := png.Decode(bytes.NewReader(res.Actions[8].Screenshot)); err != nil {
					t.Errorf("screenshot action: %v", err)
				}
				if !strings.Contains(res.HTML, "rendered by javascript") || res.FinalURL != ts.URL+"/js" {
					t.Errorf("navigate did not reach /js: %s", res.FinalURL)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := mustRender(t, browser.Request{URL: ts.URL + tc.path, Actions: tc.actions})
			if len(res.Actions) != len(tc.actions) {
				t.Fatalf("%d action results for %d actions: %+v", len(res.Actions), len(tc.actions), res.Actions)
			}
			for i, a := range res.Actions {
				if a.Index != i || a.Type != tc.actions[i].Type || a.Status != browser.StatusOK || a.Error != "" {
					t.Errorf("action %d: %+v", i, a)
				}
			}
			tc.check(t, res)
		})
	}
}

func TestActionFailure(t *testing.T) {
	t.Parallel()
	start := time.Now()
	res, err := render(t, browser.Request{
		URL: ts.URL + "/js", Screenshot: true, CaptureState: true,
		Actions: []spec.Action{
			{Type: spec.ActWaitFor, Selector: "#app"},
			{Type: spec.ActClick, Selector: "#never", TimeoutMs: 700},
			{Type: spec.ActWaitFor, Selector: "#app"},
		},
	})
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v for a 700 ms action timeout", took)
	}
	se := specError(t, err)
	if se.Code != spec.CodeActionFailed || se.Retryable || se.Action == nil || *se.Action != 1 {
		t.Fatalf("error %+v, want action_failed at 1, not retryable", se)
	}
	if res == nil {
		t.Fatal("no result with the failed action")
	}
	if len(res.Actions) != 2 || res.Actions[0].Status != browser.StatusOK || res.Actions[1].Status != browser.StatusFailed {
		t.Fatalf("actions %+v, want ok then failed", res.Actions)
	}
	if e := res.Actions[1].Error; !strings.Contains(e, "#never") || !strings.Contains(e, "not found") {
		t.Errorf("failed action's error %q", e)
	}
	if !strings.Contains(res.HTML, "rendered by javascript") || len(res.Screenshot) == 0 || res.State == nil {
		t.Errorf("result of the failed job lacks the page: html %d bytes, screenshot %d bytes, state %v", len(res.HTML), len(res.Screenshot), res.State)
	}

	_, err = render(t, browser.Request{URL: ts.URL + "/js", Actions: []spec.Action{{Type: spec.ActClick, Selector: "#app["}}})
	if se := specError(t, err); se.Code != spec.CodeActionFailed || !strings.Contains(se.Message, "#app[") {
		t.Errorf("invalid selector: %+v", se)
	}
}

func TestSessionStateRoundTrip(t *testing.T) {
	t.Parallel()
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	res := mustRender(t, browser.Request{
		URL:          ts.URL + "/state/set?id=" + id,
		Actions:      []spec.Action{{Type: spec.ActWaitFor, Selector: "#saved"}},
		CaptureState: true,
	})
	st := res.State
	if st == nil {
		t.Fatal("no state captured")
	}
	if len(st.Cookies) != 1 || st.Cookies[0].Name != "sid" || st.Cookies[0].Value != "secret-"+id || !st.Cookies[0].HTTPOnly || st.Cookies[0].Expires != -1 {
		t.Errorf("cookies %+v", st.Cookies)
	}
	if len(st.Origins) != 1 || st.Origins[0].Origin != ts.URL {
		t.Fatalf("origins %+v, want %s", st.Origins, ts.URL)
	}
	o := st.Origins[0]
	if len(o.LocalStorage) != 1 || o.LocalStorage[0] != (spec.NameValue{Name: "lk", Value: "local value"}) ||
		len(o.SessionStorage) != 1 || o.SessionStorage[0] != (spec.NameValue{Name: "sk", Value: "session value"}) {
		t.Errorf("storage %+v %+v", o.LocalStorage, o.SessionStorage)
	}
	if len(o.IndexedDB) != 1 || o.IndexedDB[0].Name != "pf" || o.IndexedDB[0].Version != 3 || len(o.IndexedDB[0].Stores) != 2 {
		t.Fatalf("indexedDB %+v", o.IndexedDB)
	}
	raw, _ := json.Marshal(o.IndexedDB[0])
	for _, want := range []string{`{"$t":"Date","v":1700000000000}`, `"$t":"Map"`, `{"$t":"Uint8Array","v":"AQID"}`, `{"$t":"BigInt","v":"12345678901234567890"}`, `"keyPath":"id"`, `"byName"`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("indexedDB lacks %s: %s", want, raw)
		}
	}
	// The state survives the JSON of a session store.
	enc, _ := json.Marshal(st)
	var restored spec.State
	if err := json.Unmarshal(enc, &restored); err != nil {
		t.Fatal(err)
	}

	// A new job with the state sees all of it on its first request and at
	// its first script run.
	res = mustRender(t, browser.Request{
		URL:          ts.URL + "/state/check?id=" + id,
		State:        &restored,
		Actions:      []spec.Action{{Type: spec.ActWaitFor, Selector: "#idb[data-done]", State: "attached"}},
		CaptureState: true,
	})
	reqs := ts.seen("/state/check", "id="+id)
	if len(reqs) == 0 {
		t.Fatal("the server saw no request")
	}
	if c, err := reqs[0].Cookie("sid"); err != nil || c.Value != "secret-"+id {
		t.Errorf("first request's cookie sid: %v %v", c, err)
	}
	for _, want := range []string{
		`<div id="ls">ls=local value</div>`,
		`<div id="ss">ss=session value</div>`,
		`idb v3 1700000000000 2+3 1.2.3 bigint true true true true`,
	} {
		if !strings.Contains(res.HTML, want) {
			t.Errorf("the restored page lacks %q:\n%s", want, res.HTML)
		}
	}
	if !spec.EqualStates(st, res.State) {
		a, _ := json.Marshal(st)
		b, _ := json.Marshal(res.State)
		t.Errorf("state changed by a round trip:\n%s\n%s", a, b)
	}

	// A job without state sees nothing of it.
	res = mustRender(t, browser.Request{
		URL:          ts.URL + "/state/check?id=" + id + "&clean=1",
		Actions:      []spec.Action{{Type: spec.ActWaitFor, Selector: "#idb[data-done]", State: "attached"}},
		CaptureState: true,
	})
	if reqs := ts.seen("/state/check", "clean=1"); len(reqs) == 0 || len(reqs[0].Cookies()) != 0 {
		t.Errorf("a clean job sent cookies: %v", reqs)
	}
	for _, want := range []string{"ls=null", "ss=null", "idb=none"} {
		if !strings.Contains(res.HTML, want) {
			t.Errorf("a clean job sees state: lacks %q\n%s", want, res.HTML)
		}
	}
	if !res.State.Empty() {
		t.Errorf("a clean job captured %+v", res.State)
	}
}

func TestCookieRestoreSkipsRefusedCookies(t *testing.T) {
	t.Parallel()
	host := strings.TrimPrefix(ts.URL, "http://")
	host = host[:strings.LastIndex(host, ":")]
	st := &spec.State{Cookies: []spec.Cookie{
		{Name: "bad", Value: "x", Domain: host, Path: "/", Expires: -1, SameSite: "None"}, // None needs Secure
		{Name: "good", Value: "y", Domain: host, Path: "/", Expires: float64(time.Now().Add(time.Hour).Unix()), SameSite: "Lax"},
	}}
	mustRender(t, browser.Request{URL: ts.URL + "/echo?cookies", State: st})
	reqs := ts.seen("/echo", "cookies")
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	if c, err := reqs[0].Cookie("good"); err != nil || c.Value != "y" {
		t.Errorf("cookie good: %v %v (all: %v)", c, err, reqs[0].Cookies())
	}
}

func TestNoLeakBetweenJobs(t *testing.T) {
	t.Parallel()
	id := "leak" + strconv.FormatInt(time.Now().UnixNano(), 36)
	mustRender(t, browser.Request{URL: ts.URL + "/state/set?id=" + id, Actions: []spec.Action{{Type: spec.ActWaitFor, Selector: "#saved"}}})
	res := mustRender(t, browser.Request{
		URL:     ts.URL + "/state/check?id=" + id,
		Actions: []spec.Action{{Type: spec.ActWaitFor, Selector: "#idb[data-done]", State: "attached"}},
	})
	if reqs := ts.seen("/state/check", "id="+id); len(reqs) != 1 || len(reqs[0].Cookies()) != 0 {
		t.Errorf("the second job sent cookies: %v", reqs)
	}
	for _, want := range []string{"ls=null", "ss=null", "idb=none"} {
		if !strings.Contains(res.HTML, want) {
			t.Errorf("state leaked into the next job: lacks %q\n%s", want, res.HTML)
		}
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"
	res := mustRender(t, browser.Request{
		URL: ts.URL + "/echo",
		Identity: &browser.Identity{
			UserAgent: ua, Locale: "de-DE", Timezone: "Asia/Tokyo", Width: 1024, Height: 700,
			Headers: map[string]string{"X-Test": "hello"},
		},
		Actions: []spec.Action{{Type: spec.ActEvaluate, Script: `({ua: navigator.userAgent, lang: navigator.language,
			tz: Intl.DateTimeFormat().resolvedOptions().timeZone, locale: Intl.DateTimeFormat().resolvedOptions().locale,
			w: innerWidth, h: innerHeight, platform: navigator.platform, brands: navigator.userAgentData.brands.map((b) => b.brand + '/' + b.version).join(',')})`}},
	})
	var got struct {
		UA, Lang, TZ, Locale, Platform, Brands string
		W, H                                   int
	}
	if err := json.Unmarshal(res.Actions[0].Result, &got); err != nil {
		t.Fatal(err)
	}
	if got.UA != ua || got.Lang != "de-DE" || got.TZ != "Asia/Tokyo" || got.Locale != "de-DE" || got.W != 1024 || got.H != 700 || got.Platform != "Win32" {
		t.Errorf("identity not applied: %+v", got)
	}
	if !strings.Contains(got.Brands, "Google Chrome/150") {
		t.Errorf("client hints contradict the user agent: %s", got.Brands)
	}
	if !strings.Contains(res.HTML, `<pre id="al">de-DE,de;q=0.9</pre>`) || !strings.Contains(res.HTML, `<pre id="x">hello</pre>`) {
		t.Errorf("headers not sent:\n%s", res.HTML)
	}
}

func TestBlockResources(t *testing.T) {
	t.Parallel()
	res := mustRender(t, browser.Request{URL: ts.URL + "/block", BlockResources: true})
	if !strings.Contains(res.HTML, `data-img="failed"`) {
		t.Errorf("the image was not blocked:\n%s", res.HTML)
	}
	if n := len(ts.seen("/img/blocked.png", "")); n != 0 {
		t.Errorf("the server saw %d image requests", n)
	}
	res = mustRender(t, browser.Request{URL: ts.URL + "/block"})
	if !strings.Contains(res.HTML, `data-img="loaded"`) {
		t.Errorf("the image did not load without blocking:\n%s", res.HTML)
	}
}

// TestBlockResourcesByNameThenType checks how blocking finds what to block:
// by file extension at once (no request is made), never the page itself
// even at a .png path, and on a host where an image without an extension
// loaded, by resource type from the next job on.
func TestBlockResourcesByNameThenType(t *testing.T) {
	t.Parallel()
	res := mustRender(t, browser.Request{URL: ts.URL + "/doc.png", BlockResources: true})
	if !strings.Contains(res.HTML, `id="doc"`) || res.StatusCode != 200 {
		t.Fatalf("the page at a .png path did not load (%d):\n%s", res.StatusCode, res.HTML)
	}
	if n := len(ts.seen("/img/in-doc.png", "")); n != 0 {
		t.Errorf("the server saw %d requests for the page's image", n)
	}
	// Another name of the fixture's host, so that no other test has taught
	// the pool about it.
	host := strings.Replace(ts.URL, "127.0.0.1", "localhost", 1)
	// An SVG image is not blocked by name, on purpose, and does not switch
	// the host to blocking by type: it loads every time.
	for i := range 2 {
		res = mustRender(t, browser.Request{URL: host + "/block-svg", BlockResources: true})
		if !strings.Contains(res.HTML, `data-svg="loaded"`) {
			t.Fatalf("job %d: the SVG image did not load:\n%s", i, res.HTML)
		}
	}
	u := host + "/block-unnamed"
	res = mustRender(t, browser.Request{URL: u, BlockResources: true})
	if !strings.Contains(res.HTML, `data-img="loaded"`) || len(ts.seen("/noext-img", "")) != 1 {
		t.Fatalf("first job: the image without an extension should load (requests %d):\n%s", len(ts.seen("/noext-img", "")), res.HTML)
	}
	res = mustRender(t, browser.Request{URL: u, BlockResources: true})
	if !strings.Contains(res.HTML, `data-img="failed"`) || len(ts.seen("/noext-img", "")) != 1 {
		t.Errorf("second job on the host: the image should be blocked by type (requests %d):\n%s", len(ts.seen("/noext-img", "")), res.HTML)
	}
	if n := len(ts.seen("/font/f.woff2", "")); n != 0 {
		t.Errorf("the server saw %d requests for the web font", n)
	}
	// What one tenant's jobs taught the pool does not change another's.
	res = mustRender(t, browser.Request{URL: u, BlockResources: true, Tenant: "another"})
	if !strings.Contains(res.HTML, `data-img="loaded"`) || len(ts.seen("/noext-img", "")) != 2 {
		t.Errorf("another tenant's first job: the image should load (requests %d):\n%s", len(ts.seen("/noext-img", "")), res.HTML)
	}
	// Without blocking, all of it loads.
	res = mustRender(t, browser.Request{URL: u})
	if !strings.Contains(res.HTML, `data-img="loaded"`) || len(ts.seen("/font/f.woff2", "")) == 0 {
		t.Errorf("without blocking the image and font should load (font requests %d)", len(ts.seen("/font/f.woff2", "")))
	}
}

func TestRendererCrash(t *testing.T) {
	t.Parallel()
	_, err := render(t, browser.Request{
		URL:     ts.URL + "/js?crash-renderer",
		Actions: []spec.Action{{Type: spec.ActWaitFor, Selector: "#never"}},
	})
	if se := specError(t, err); se.Code != spec.CodeBrowserCrashed || !se.Retryable {
		t.Errorf("error %+v, want a retryable browser_crashed", se)
	}
	// Only that job failed: the browser still works.
	mustRender(t, browser.Request{URL: ts.URL + "/js"})
}

func TestConcurrentJobs(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			res, err := render(t, browser.Request{URL: ts.URL + "/js"})
			if err == nil && !strings.Contains(res.HTML, "rendered by javascript") {
				err = errors.New("wrong page")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLifecycle checks, on a pool of its own, that a killed browser fails its
// job with browser_crashed and is replaced, that a browser is recycled after
// its job budget, and that Stop leaves no Chrome process behind.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	p, err := browser.New(browser.Config{
		Browsers: 1, ContextsPerBrowser: 2, JobsPerBrowser: 3, AllowPrivate: true, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			p.Stop(context.Background())
		}
	}()
	if err := p.Ready(); err != nil {
		t.Fatalf("Ready after Start: %v", err)
	}
	if got := metricValue(t, reg, "pagefleet_browser_pool_size", ""); got != 1 {
		t.Errorf("pool size %v, want 1", got)
	}

	// Kill the browser in the middle of a job.
	pids := p.PIDs()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := renderOn(t, p, browser.Request{URL: ts.URL + "/slow?ms=5000"}, 20*time.Second)
		done <- err
	}()
	time.Sleep(800 * time.Millisecond)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if se := specError(t, err); se.Code != spec.CodeBrowserCrashed || !se.Retryable {
		t.Errorf("error %+v, want a retryable browser_crashed", se)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("the crashed job took %v", took)
	}
	res, err := renderOn(t, p, browser.Request{URL: ts.URL + "/js"}, 20*time.Second)
	if err != nil || !strings.Contains(res.HTML, "rendered by javascript") {
		t.Fatalf("job after the crash: %v", err)
	}
	if now := p.PIDs(); len(now) != 1 || now[0] == pids[0] {
		t.Errorf("PIDs %v after the crash of %v", now, pids)
	}

	// The job above was the replacement's first; two more reach its budget
	// of three, and the fourth runs on the next browser.
	before := p.PIDs()
	for range 3 {
		if _, err := renderOn(t, p, browser.Request{URL: ts.URL + "/js"}, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if now := p.PIDs(); len(now) != 1 || now[0] == before[0] {
		t.Errorf("PIDs %v, want the recycled browser %v replaced", now, before)
	}
	if c := metricValue(t, reg, "pagefleet_browser_restarts_total", "crashed"); c != 1 {
		t.Errorf("crashed restarts = %v", c)
	}
	if c := metricValue(t, reg, "pagefleet_browser_restarts_total", "recycled"); c != 1 {
		t.Errorf("recycled restarts = %v", c)
	}

	stopCtx, stopCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer stopCancel()
	if err := p.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := p.Ready(); err == nil {
		t.Error("Ready after Stop")
	}
	if _, err := renderOn(t, p, browser.Request{URL: ts.URL + "/js"}, 5*time.Second); err == nil {
		t.Error("Render after Stop succeeded")
	}
	// No chromium process of the pool remains: ask ps, as an operator would.
	out, err := exec.Command("ps", "-eo", "pid,args").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range p.DataDirs() {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, dir) {
				t.Errorf("process left after Stop: %s", line)
			}
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("user data dir %s left after Stop: %v", dir, err)
		}
	}
}

// metricValue returns the value of the metric name in reg, of the series
// whose reason label is reason ("" for a metric without labels).
func metricValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			r := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					r = l.GetValue()
				}
			}
			if r != reason {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestStartRetriesChrome checks that Start tries again when Chrome exits
// during its start (seen now and then on a loaded machine): a wrapper
// around the real binary fails its first launch, and the pool still starts
// and renders.
func TestStartRetriesChrome(t *testing.T) {
	t.Parallel()
	var real string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			real = p
			break
		}
	}
	if real == "" {
		t.Fatal("no Chrome on PATH")
	}
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "chrome")
	script := fmt.Sprintf(`#!/bin/sh
n=$(cat %[1]q/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]q/count
if [ "$n" -eq 1 ]; then echo "simulated start failure" >&2; exit 1; fi
exec %[2]q "$@"
`, dir, real)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := startPool(t, browser.Config{Browsers: 1, ContextsPerBrowser: 1, AllowPrivate: true, ChromePath: wrapper})
	if n, _ := os.ReadFile(filepath.Join(dir, "count")); strings.TrimSpace(string(n)) != "2" {
		t.Errorf("launches: %q, want 2", n)
	}
	if res, err := renderOn(t, p, browser.Request{URL: ts.URL + "/js"}, 20*time.Second); err != nil || !strings.Contains(res.HTML, "rendered by javascript") {
		t.Fatalf("render after the retry: %v", err)
	}
}

package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// hitServer is an HTTP server on a chosen loopback address that records
// every request it gets, before any handler runs. A target that must never
// be reached is one of these; its Hits must stay zero.
type hitServer struct {
	Host string // host:port it listens on
	URL  string // http://host:port
	Port string

	mu    sync.Mutex
	paths []string
	srvs  []*http.Server
}

// newHitServer listens on addr ("127.0.0.1:0", "127.0.0.2:0", …) and serves
// handlers by path (unknown paths: a small HTML page). When also6 is set it
// listens on [::1] with the same port too (if the machine has IPv6
// loopback), so that IPv6 forms of loopback would reach it.
func newHitServer(t testing.TB, addr string, also6 bool, handlers map[string]http.HandlerFunc) *hitServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v (loopback answers all of 127/8 on Linux)", addr, err)
	}
	s := &hitServer{Host: ln.Addr().String()}
	s.URL = "http://" + s.Host
	_, s.Port, _ = net.SplitHostPort(s.Host)
	mux := http.NewServeMux()
	for p, h := range handlers {
		mux.HandleFunc(p, h)
	}
	if _, ok := handlers["/"]; !ok {
		mux.HandleFunc("/", html(`<!doctype html><html><head><title>hit</title></head><body><p>reached</p></body></html>`))
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.Method+" "+r.Host+r.URL.RequestURI())
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	lns := []net.Listener{ln}
	if also6 {
		if ln6, err := net.Listen("tcp", "[::1]:"+s.Port); err == nil {
			lns = append(lns, ln6)
		} else {
			t.Logf("no [::1]:%s listener (%v); IPv6 forms cannot reach the target anyway", s.Port, err)
		}
	}
	for _, l := range lns {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		s.srvs = append(s.srvs, srv)
		go srv.Serve(l)
	}
	t.Cleanup(func() {
		for _, srv := range s.srvs {
			srv.Close()
		}
	})
	return s
}

// Hits is the number of requests seen.
func (s *hitServer) Hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.paths)
}

// Paths lists "METHOD host/path?query" of every request seen.
func (s *hitServer) Paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

// saw reports whether a request for path (without query) was seen.
func (s *hitServer) saw(path string) bool {
	for _, p := range s.Paths() {
		_, rest, _ := strings.Cut(p, " ")
		if i := strings.Index(rest, "/"); i >= 0 {
			rest = rest[i:]
		}
		rest, _, _ = strings.Cut(rest, "?")
		if rest == path {
			return true
		}
	}
	return false
}

// redirectTo answers 302 to the URL in ?to=.
func redirectTo(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
}

// pngPixel serves a 1×1 PNG.
func pngPixel(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	png.Encode(&b, image.NewGray(image.Rect(0, 0, 1, 1)))
	w.Header().Set("Content-Type", "image/png")
	w.Write(b.Bytes())
}

// wsAccept completes a WebSocket handshake and holds the connection until
// the client closes it (or 10 s).
func wsAccept(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		http.Error(w, "not a websocket request", http.StatusBadRequest)
		return
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", base64.StdEncoding.EncodeToString(sum[:]))
	brw.Flush()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, conn)
}

// loopbackHostNames lists names other than localhost that the system
// resolver maps to loopback here without DNS: /etc/hosts entries (such as
// the machine's own name) and the host name when /etc/hosts lists it.
func loopbackHostNames(t testing.TB) []string {
	b, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ip := net.ParseIP(f[0])
		if ip == nil || !ip.IsLoopback() {
			continue
		}
		for _, n := range f[1:] {
			n = strings.ToLower(n)
			if n == "localhost" || strings.HasSuffix(n, ".localhost") || seen[n] {
				continue
			}
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	if len(out) > 4 {
		out = out[:4]
	}
	t.Logf("names /etc/hosts maps to loopback: %v", out)
	return out
}

// guardedEnv is the deployment's default: private networks denied, with
// 127.0.0.2 allowed as a stand-in for a public address.
func guardedEnv(extra ...string) []string {
	return append([]string{
		"PAGEFLEET_ALLOW_PRIVATE_NETWORKS=false",
		"PAGEFLEET_ALLOW_CIDRS=127.0.0.2/32",
		"PAGEFLEET_WEBHOOK_RETRY_SCHEDULE=200ms,200ms",
	}, extra...)
}

// envValue is the last KEY=value of key in env (os/exec uses the last).
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// submitCase is one job of a table, submitted before any is awaited.
type submitCase struct {
	name string
	kind string
	body map[string]any
	id   string
}

// deliveries returns the job's webhook delivery attempts.
func (e *Env) deliveries(key, id string) []map[string]any {
	e.t.Helper()
	var del struct {
		Data []map[string]any `json:"data"`
	}
	if resp := e.Do("GET", "/v1/jobs/"+id+"/deliveries", key, nil, &del); resp.StatusCode != 200 {
		e.t.Fatalf("deliveries of %s: %d", id, resp.StatusCode)
	}
	return del.Data
}

// waitDeliveries polls until the job has at least one delivery attempt.
func (e *Env) waitDeliveries(key, id string, timeout time.Duration) []map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := e.deliveries(key, id)
		if len(d) > 0 || time.Now().After(deadline) {
			return d
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var metricLine = regexp.MustCompile(`(?m)^pagefleet_egress_blocked_total\{via="([a-z]+)"\} ([0-9.e+]+)$`)

// blockedCounts reads pagefleet_egress_blocked_total by "via" from worker i.
func (e *Env) blockedCounts(i int) map[string]float64 {
	e.t.Helper()
	resp, err := http.Get("http://" + e.WorkerAddr(i) + "/metrics")
	if err != nil {
		e.t.Fatalf("worker metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, m := range metricLine.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] = v
	}
	return out
}

// TestSecuritySSRFAddressForms submits every spelling of a loopback,
// private, link-local or otherwise internal address as a plain fetch, a
// rendered fetch and a webhook URL with the guard on: every job fails with
// blocked_address (every webhook delivery records it), and the local target
// records zero hits. Public-looking pages are served from 127.0.0.2, which
// PAGEFLEET_ALLOW_CIDRS allows; no traffic is ever sent to a non-loopback
// address (the guard refuses before dialing, so the codes are
// blocked_address and never timeouts). A port outside
// PAGEFLEET_ALLOWED_PORTS is refused the same way.
func TestSecuritySSRFAddressForms(t *testing.T) {
	target := newHitServer(t, "127.0.0.1:0", true, nil)
	P := target.Port
	public := newHitServer(t, "127.0.0.2:0", false, map[string]http.HandlerFunc{
		"/redirect": redirectTo,
		"/jsredirect": func(w http.ResponseWriter, r *http.Request) {
			html(fmt.Sprintf(`<html><body><script>location.replace(%q)</script></body></html>`, r.URL.Query().Get("to")))(w, r)
		},
	})
	otherPort := newHitServer(t, "127.0.0.2:0", false, nil) // allowed address, port not allowed
	envs := guardedEnv("PAGEFLEET_ALLOWED_PORTS=" + P + "," + public.Port)
	e := Start(t, Options{Workers: 1, Concurrency: 4, Env: envs})
	if v := envValue(e.env, "PAGEFLEET_ALLOW_PRIVATE_NETWORKS"); v != "false" {
		t.Fatalf("the harness's default must be overridden: PAGEFLEET_ALLOW_PRIVATE_NETWORKS=%q", v)
	}

	// Controls: the allowed public-looking site is reachable both ways.
	for _, render := range []bool{false, true} {
		j := e.Run(keyA, "fetch", map[string]any{"url": public.URL + "/ok", "render_js": render})
		if j.Status != spec.StatusSucceeded || j.Result.StatusCode != 200 {
			t.Fatalf("control fetch (render_js=%t) of the allowed site: %s %+v", render, j.Status, j.Error)
		}
	}

	hosts := []string{
		// IPv4 loopback in every spelling browsers and Go accept
		"127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0x7f.0x0.0x0.0x1",
		"0177.0.0.1", "017700000001", "127.000.000.001", "127.0.0.1.", "127.127.127.127",
		// unspecified ("this host")
		"0.0.0.0", "0",
		// IPv6 loopback, unspecified, IPv4-mapped, NAT64
		"[::1]", "[0:0:0:0:0:0:0:1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[64:ff9b::127.0.0.1]",
		// link-local and cloud metadata
		"169.254.169.254", "[::ffff:169.254.169.254]", "169.254.1.1", "[fe80::1]",
		// private, unique-local, CGNAT, benchmarking, multicast
		"10.0.0.1", "[::ffff:10.0.0.1]", "172.16.0.1", "172.31.255.254", "192.168.1.1", "100.64.0.1",
		"[fd00::1]", "[fc00::1]", "198.18.0.1", "224.0.0.1",
		// names that resolve to loopback without DNS
		"localhost", "LOCALHOST", "localhost.", "foo.localhost", "a.b.c.localhost",
	}
	hosts = append(hosts, loopbackHostNames(t)...)

	var cases []*submitCase
	for _, h := range hosts {
		u := "http://" + h + ":" + P + "/form?h=" + url.QueryEscape(h)
		cases = append(cases,
			&submitCase{name: "plain " + h, kind: "fetch", body: map[string]any{"url": u, "timeout_ms": 15000}},
			&submitCase{name: "rendered " + h, kind: "fetch", body: map[string]any{"url": u, "render_js": true, "timeout_ms": 15000}},
			&submitCase{name: "webhook " + h, kind: "fetch", body: map[string]any{"url": public.URL + "/ok",
				"webhook": map[string]any{"url": "http://" + h + ":" + P + "/hook?h=" + url.QueryEscape(h)}}},
		)
	}
	// A public-looking URL that redirects to loopback: the redirect hop is
	// refused (for rendered jobs it goes through the proxy too).
	for _, to := range []string{
		"http://127.0.0.1:" + P + "/redirected",
		"http://localhost:" + P + "/redirected",
		"http://[::1]:" + P + "/redirected",
		"http://2130706433:" + P + "/redirected",
		"http://169.254.169.254:" + P + "/latest/meta-data/",
		"http://10.0.0.1:" + P + "/redirected",
	} {
		u := public.URL + "/redirect?to=" + url.QueryEscape(to)
		cases = append(cases,
			&submitCase{name: "plain redirect to " + to, kind: "fetch", body: map[string]any{"url": u, "timeout_ms": 15000}},
			&submitCase{name: "rendered redirect to " + to, kind: "fetch", body: map[string]any{"url": u, "render_js": true, "timeout_ms": 15000}},
		)
	}
	// A port outside PAGEFLEET_ALLOWED_PORTS on an allowed address.
	cases = append(cases,
		&submitCase{name: "plain disallowed port", kind: "fetch", body: map[string]any{"url": otherPort.URL + "/port", "timeout_ms": 15000}},
		&submitCase{name: "rendered disallowed port", kind: "fetch", body: map[string]any{"url": otherPort.URL + "/port", "render_js": true, "timeout_ms": 15000}},
		&submitCase{name: "webhook disallowed port", kind: "fetch", body: map[string]any{"url": public.URL + "/ok", "webhook": map[string]any{"url": otherPort.URL + "/hook"}}},
	)
	for _, c := range cases {
		c.id = e.Submit(keyA, c.kind, c.body)
	}
	// A client-side (script) redirect to loopback in a rendered page: the
	// page's own load may finish first, so only the hits are checked.
	jsRedirect := e.Submit(keyA, "fetch", map[string]any{"url": public.URL + "/jsredirect?to=" + url.QueryEscape("http://127.0.0.1:"+P+"/js-redirected"),
		"render_js": true, "wait_until": "networkidle", "timeout_ms": 15000})

	// One deadline for the whole table: on a loaded machine the last jobs
	// wait long in the queue.
	deadline := time.Now().Add(4 * time.Minute)
	n := 0
	for _, c := range cases {
		j := e.Wait(keyA, c.id, time.Until(deadline))
		webhook := c.body["webhook"] != nil
		if webhook {
			if j.Status != spec.StatusSucceeded {
				t.Errorf("%s: the job itself should succeed, got %s %+v", c.name, j.Status, j.Error)
				continue
			}
			d := e.waitDeliveries(keyA, c.id, 20*time.Second)
			if len(d) != 1 || d[0]["error"] != "blocked_address" || d[0]["status_code"] != float64(0) {
				t.Errorf("%s: deliveries = %v, want one attempt with error blocked_address", c.name, d)
				continue
			}
		} else {
			if j.Status != spec.StatusFailed || j.Error == nil || j.Error.Code != spec.CodeBlockedAddress {
				t.Errorf("%s: got %s %+v, want failed with blocked_address", c.name, j.Status, j.Error)
				continue
			}
			if j.Attempts != 1 || j.Error.Retryable {
				t.Errorf("%s: a blocked address is permanent: attempts %d, retryable %t", c.name, j.Attempts, j.Error.Retryable)
			}
		}
		n++
	}
	js := e.Wait(keyA, jsRedirect, time.Until(deadline))
	t.Logf("%d of %d jobs blocked as required (%d address forms); script redirect job: %s %+v", n, len(cases), len(hosts), js.Status, js.Error)

	// Nothing reached the targets. Counted once no task is left: a job
	// attempt or a webhook delivery retried against a blocked address
	// (there must be none) would have been tried by then.
	e.Drain(t, time.Minute, target.Hits, otherPort.Hits)
	if h := target.Hits(); h != 0 {
		t.Errorf("the loopback target was reached %d times: %v", h, target.Paths())
	}
	if h := otherPort.Hits(); h != 0 {
		t.Errorf("the server on a disallowed port was reached %d times: %v", h, otherPort.Paths())
	}
	counts := e.blockedCounts(0)
	t.Logf("pagefleet_egress_blocked_total on the worker: %v", counts)
	if counts["proxy"] == 0 || counts["fetch"] == 0 {
		t.Errorf("the egress guard should have counted its refusals: %v", counts)
	}
}

// subresourcePage is a page whose image, iframe, fetch(), XHR, WebSocket,
// service worker, shared worker and dedicated worker all request the
// loopback target; each outcome lands in #status, and #done appears when
// all have settled (or after 10 s).
const subresourcePage = `<!doctype html><html><head><title>subresources</title></head><body>
<pre id="status"></pre>
<script>
(function () {
  const T = %q, WS = %q;
  const results = {secure: String(window.isSecureContext)};
  const kinds = ['img', 'iframe', 'fetch', 'xhr', 'ws', 'sw', 'shared', 'worker'];
  let finished = false;
  function finish() {
    if (finished) return;
    finished = true;
    const d = document.createElement('div'); d.id = 'done'; document.body.appendChild(d);
  }
  function done(k, v) {
    if (k in results) return;
    results[k] = v;
    document.getElementById('status').textContent = JSON.stringify(results);
    if (kinds.every(x => x in results)) finish();
  }
  setTimeout(finish, 10000);
  const img = new Image();
  img.onload = () => done('img', 'load'); img.onerror = () => done('img', 'error');
  img.src = T + '/img';
  const f = document.createElement('iframe');
  f.onload = () => done('iframe', 'load');
  f.src = T + '/iframe';
  document.body.appendChild(f);
  fetch(T + '/fetch', {mode: 'no-cors'}).then(() => done('fetch', 'ok'), () => done('fetch', 'error'));
  const x = new XMLHttpRequest();
  x.onload = () => done('xhr', 'load'); x.onerror = () => done('xhr', 'error');
  x.open('GET', T + '/xhr'); x.send();
  try {
    const ws = new WebSocket(WS + '/ws');
    ws.onopen = () => { done('ws', 'open'); ws.close(); };
    ws.onerror = () => done('ws', 'error');
  } catch (e) { done('ws', 'throw ' + e); }
  if (navigator.serviceWorker) {
    navigator.serviceWorker.register('/sw.js').then(reg => {
      const w = reg.installing || reg.waiting || reg.active;
      if (!w) return done('sw', 'none');
      if (w.state === 'activated') return done('sw', 'activated');
      w.addEventListener('statechange', () => {
        if (w.state === 'activated' || w.state === 'redundant') done('sw', w.state);
      });
    }, e => done('sw', 'register error ' + e));
  } else done('sw', 'unavailable (insecure context)');
  try {
    const sh = new SharedWorker('/shared.js');
    sh.port.onmessage = e => done('shared', e.data);
    sh.port.start();
  } catch (e) { done('shared', 'throw ' + e); }
  try {
    const wk = new Worker('/worker.js');
    wk.onmessage = e => done('worker', e.data);
  } catch (e) { done('worker', 'throw ' + e); }
})();
</script></body></html>`

// subresourceSite serves subresourcePage and its worker scripts; every
// request they make goes to target.
func subresourceSite(t testing.TB, target *hitServer) *hitServer {
	T := target.URL
	js := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, body)
		}
	}
	return newHitServer(t, "127.0.0.2:0", false, map[string]http.HandlerFunc{
		"/page": html(fmt.Sprintf(subresourcePage, T, "ws://"+target.Host)),
		"/sw.js": js(fmt.Sprintf(`const T = %q;
self.addEventListener('install', e => e.waitUntil(fetch(T + '/sw', {mode: 'no-cors'}).then(() => {}, () => {})));
self.addEventListener('activate', e => e.waitUntil(self.clients.claim()));`, T)),
		"/shared.js": js(fmt.Sprintf(`const T = %q;
onconnect = e => { const port = e.ports[0];
  fetch(T + '/shared', {mode: 'no-cors'}).then(() => port.postMessage('ok'), () => port.postMessage('error')); };`, T)),
		"/worker.js": js(fmt.Sprintf(`fetch(%q + '/worker', {mode: 'no-cors'}).then(() => postMessage('ok'), () => postMessage('error'));`, T)),
	})
}

// renderSubresources runs the page as an interact job that waits for #done
// and returns the page's own account of each request.
func renderSubresources(t *testing.T, e *Env, site *hitServer) map[string]string {
	t.Helper()
	j := e.Run(keyA, "interact", map[string]any{"url": site.URL + "/page", "load_resources": true, "timeout_ms": 40000,
		"actions": []map[string]any{
			{"type": "wait_for", "selector": "#done", "state": "attached", "timeout_ms": 20000},
			{"type": "evaluate", "script": "document.getElementById('status').textContent"},
		}})
	if j.Status != spec.StatusSucceeded || len(j.Result.Actions) != 2 {
		t.Fatalf("render the page: %s %+v", j.Status, j.Error)
	}
	var status string
	if err := json.Unmarshal(j.Result.Actions[1].Result, &status); err != nil {
		t.Fatalf("page status %s: %v", j.Result.Actions[1].Result, err)
	}
	out := map[string]string{}
	if err := json.Unmarshal([]byte(status), &out); err != nil {
		t.Fatalf("page status %q: %v", status, err)
	}
	return out
}

// TestSecuritySubresources renders a public-looking page (127.0.0.2, allowed
// by PAGEFLEET_ALLOW_CIDRS) whose img, iframe, fetch(), XHR, WebSocket,
// service worker, shared worker and dedicated worker point at a loopback
// server. With the guard on, that server records zero hits and the
// worker's proxy counts the refusals; with
// PAGEFLEET_ALLOW_PRIVATE_NETWORKS=true the same page reaches it with every
// kind of request. (Chrome treats http://127.0.0.2 as a secure context —
// all of 127/8 is potentially trustworthy — so the service worker registers
// without any test-only flag.)
func TestSecuritySubresources(t *testing.T) {
	kinds := []string{"/img", "/iframe", "/fetch", "/xhr", "/ws", "/sw", "/shared", "/worker"}
	t.Run("on", func(t *testing.T) {
		target := newHitServer(t, "127.0.0.1:0", false, map[string]http.HandlerFunc{"/ws": wsAccept, "/img": pngPixel})
		site := subresourceSite(t, target)
		e := Start(t, Options{Workers: 1, Concurrency: 2, Env: guardedEnv()})
		before := e.blockedCounts(0)["proxy"]
		status := renderSubresources(t, e, site)
		// The page reports each request's outcome, which the proxy gave by
		// refusing it; its counter may still be a moment behind the job's end.
		var after float64
		waitFor(10*time.Second, func() bool {
			after = e.blockedCounts(0)["proxy"]
			return after-before >= float64(len(kinds))
		})
		t.Logf("page reports %s; proxy refusals %v → %v; page site saw %v", status, before, after, site.Paths())
		if h := target.Hits(); h != 0 {
			t.Errorf("the loopback target was reached %d times: %v", h, target.Paths())
		}
		// Each kind was attempted and refused by the guard (not skipped by
		// Chrome): img, iframe, fetch, xhr, ws, sw, shared, worker.
		if status["secure"] != "true" || status["sw"] == "" || status["sw"] == "unavailable (insecure context)" {
			t.Errorf("the page should be a secure context that can register a service worker: %v", status)
		}
		if after-before < float64(len(kinds)) {
			t.Errorf("the proxy refused %v requests, want at least %d (one per kind)", after-before, len(kinds))
		}
		for _, p := range []string{"/page", "/sw.js", "/shared.js", "/worker.js"} {
			if !site.saw(p) {
				t.Errorf("the page's own %s was not loaded; the test proves nothing", p)
			}
		}
	})
	t.Run("off", func(t *testing.T) {
		target := newHitServer(t, "127.0.0.1:0", false, map[string]http.HandlerFunc{"/ws": wsAccept, "/img": pngPixel})
		site := subresourceSite(t, target)
		e := Start(t, Options{Workers: 1, Concurrency: 2, Env: []string{
			"PAGEFLEET_ALLOW_PRIVATE_NETWORKS=true", "PAGEFLEET_ALLOW_CIDRS=127.0.0.2/32"}})
		status := renderSubresources(t, e, site)
		t.Logf("page reports %s; target saw %v", status, target.Paths())
		for _, k := range kinds {
			if !target.saw(k) {
				t.Errorf("the target never saw the page's %s request", k)
			}
		}
		for k, want := range map[string]string{"secure": "true", "img": "load", "iframe": "load", "fetch": "ok", "ws": "open",
			"sw": "activated", "shared": "ok", "worker": "ok"} {
			if status[k] != want {
				t.Errorf("the page's %s: %q, want %q (all: %v)", k, status[k], want, status)
			}
		}
	})
}

// TestSecurityNoSecretsLogged runs session jobs (plain and rendered) whose
// site sets a secret cookie and a secret localStorage value, with a webhook
// signed by the tenant's secret, and a request with a wrong key: neither the
// API's nor the worker's log holds the cookie value, the stored value, an
// API key (right or wrong) or a webhook secret, and no API answer holds a
// webhook secret.
func TestSecurityNoSecretsLogged(t *testing.T) {
	cookieValue := "ck" + strconv.FormatInt(time.Now().UnixNano(), 36) + "Secret"
	storedValue := "ls" + strconv.FormatInt(time.Now().UnixNano()+7, 36) + "Secret"
	wrongKey := "pf_wrong_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	site := NewSite(t, map[string]http.HandlerFunc{
		"/login": func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: cookieValue, Path: "/", HttpOnly: true})
			html(`<html><body>logged in</body></html>`)(w, r)
		},
		"/account": func(w http.ResponseWriter, r *http.Request) {
			c, err := r.Cookie("sid")
			state := "anonymous"
			if err == nil && c.Value == cookieValue {
				state = "signed-in"
			}
			html(fmt.Sprintf(`<html><body><p id="s">%s</p><script>localStorage.setItem('token', %q)</script></body></html>`, state, storedValue))(w, r)
		},
	})
	rcv := newReceiver(t, secretA, 0)
	e := Start(t, Options{Workers: 1, Concurrency: 2})
	var answers []string
	record := func(resp *http.Response) {
		b, _ := io.ReadAll(resp.Body)
		answers = append(answers, string(b))
	}

	sess := map[string]any{"id": "secret-sess"}
	hook := map[string]any{"url": rcv.URL + "/hook"}
	var last spec.Job
	for _, req := range []map[string]any{
		{"url": site.URL + "/login", "session": sess, "webhook": hook},
		{"url": site.URL + "/account", "session": sess, "render_js": true, "webhook": hook},
		{"url": site.URL + "/account", "session": sess, "output": []string{"text"}},
	} {
		j := e.Run(keyA, "fetch", req)
		if j.Status != spec.StatusSucceeded {
			t.Fatalf("session job: %s %+v", j.Status, j.Error)
		}
		last = j
		record(e.Do("GET", "/v1/jobs/"+j.ID, keyA, nil, nil))
		record(e.Do("GET", "/v1/jobs/"+j.ID+"/deliveries", keyA, nil, nil))
	}
	if last.Result == nil || !contains(last.Result.Text, "signed-in") {
		t.Fatalf("the session's cookie did not reach the site: %+v", last.Result)
	}
	resp := e.Do("GET", "/v1/sessions/secret-sess?include=state", keyA, nil, nil)
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), cookieValue) || !strings.Contains(string(b), storedValue) {
		t.Fatalf("the session state should hold the cookie and the stored value: %.500s", b)
	}
	record(e.Do("GET", "/v1/jobs?limit=100", keyA, nil, nil))
	record(e.Do("GET", "/v1/sessions", keyA, nil, nil))
	if resp := e.Do("GET", "/v1/jobs", wrongKey, nil, nil); resp.StatusCode != 401 {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
	// Wait for the webhook deliveries, then stop the processes so that
	// their logs are complete.
	deadline := time.Now().Add(20 * time.Second)
	for evs, _, _ := rcv.snapshot(); len(evs) < 2 && time.Now().Before(deadline); evs, _, _ = rcv.snapshot() {
		time.Sleep(100 * time.Millisecond)
	}
	evs, _, _ := rcv.snapshot()
	if len(evs) < 2 {
		t.Fatalf("webhook events %d, want 2", len(evs))
	}
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		answers = append(answers, string(b))
	}
	e.StopWorker(0, syscall.SIGTERM)
	e.StopAPI()

	logs := map[string]string{"api": e.api.logText(), "worker": e.WorkerLog(0)}
	secrets := map[string]string{
		"cookie value": cookieValue, "stored value": storedValue, "API key": keyA, "wrong API key": wrongKey,
		"webhook secret": secretA, "webhook secret body": strings.TrimPrefix(secretA, "whsec_"), "another tenant's key": keyB,
	}
	for name, log := range logs {
		if !strings.Contains(log, "job succeeded") && !strings.Contains(log, "job accepted") {
			t.Errorf("the %s log looks empty: %.300s", name, log)
		}
		for what, v := range secrets {
			if strings.Contains(log, v) {
				t.Errorf("the %s log holds the %s", name, what)
			}
		}
	}
	for _, a := range answers {
		if strings.Contains(a, "whsec_") || strings.Contains(a, strings.TrimPrefix(secretA, "whsec_")) {
			t.Errorf("an API answer or event holds a webhook secret: %.300s", a)
		}
	}
}

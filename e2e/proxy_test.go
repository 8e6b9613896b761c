package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/proxytest"
)

// Every proxy of these tests takes these credentials; none of their forms
// may appear in a job record, result, error, log line, metric or Redis value.
const (
	pxUser = "pfuser-SECRETU1"
	pxPass = "pfpass-SECRETP1"
)

// pxSecrets are the forms of the proxy credentials that must never leak.
func pxSecrets() []string {
	up := []byte(pxUser + ":" + pxPass)
	return []string{pxUser, pxPass,
		base64.StdEncoding.EncodeToString(up), base64.RawStdEncoding.EncodeToString(up),
		base64.URLEncoding.EncodeToString(up), base64.RawURLEncoding.EncodeToString(up)}
}

// leakedIn lists the secret forms found in text.
func leakedIn(text string) []string {
	var out []string
	for _, s := range pxSecrets() {
		if strings.Contains(text, s) {
			out = append(out, s)
		}
	}
	return out
}

// checkNoSecrets fails t when text carries a proxy credential.
func checkNoSecrets(t testing.TB, what, text string) {
	t.Helper()
	if l := leakedIn(text); len(l) > 0 {
		i := strings.Index(text, l[0])
		t.Errorf("%s carries the proxy credential %q: …%s…", what, l[0], text[max(0, i-200):min(len(text), i+200)])
	}
}

// pxInvalidStatus is the status of a request naming an unknown pool or a
// retry_on_block out of 0–5: 422 validation_failed, as for every invalid
// field of the API.
const pxInvalidStatus = 422

// aliases fails the test unless 127.0.0.2–127.0.0.5 can be listened on
// (Linux answers all of 127/8; CI never skips these tests).
func aliases(t testing.TB) {
	t.Helper()
	if err := proxytest.CheckAliases(); err != nil {
		t.Fatal(err)
	}
}

// deadProxyURL is a proxy URL, with the credentials, of an address where
// nothing listens.
func deadProxyURL(t testing.TB, ip string) string {
	return (&url.URL{Scheme: "http", User: url.UserPassword(pxUser, pxPass), Host: proxytest.ClosedAddr(t, ip)}).String()
}

// yamlList is a YAML flow list of quoted strings.
func yamlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// proxiesBlock is a `proxies:` block indented by indent spaces.
func proxiesBlock(indent int, defaultPool, rotation string, pools map[string][]string) string {
	pad := strings.Repeat(" ", indent)
	var b strings.Builder
	fmt.Fprintf(&b, "%sproxies:\n", pad)
	if defaultPool != "" {
		fmt.Fprintf(&b, "%s  default_pool: %s\n", pad, defaultPool)
	}
	if rotation != "" {
		fmt.Fprintf(&b, "%s  rotation: %s\n", pad, rotation)
	}
	fmt.Fprintf(&b, "%s  pools:\n", pad)
	names := make([]string, 0, len(pools))
	for n := range pools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s    %s: %s\n", pad, n, yamlList(pools[n]))
	}
	return b.String()
}

// writeProxiesFile writes a PAGEFLEET_PROXIES_FILE and returns the
// environment entry naming it.
func writeProxiesFile(t testing.TB, defaultPool, rotation string, pools map[string][]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "proxies.yaml")
	if err := os.WriteFile(p, []byte(proxiesBlock(0, defaultPool, rotation, pools)), 0o600); err != nil {
		t.Fatal(err)
	}
	return "PAGEFLEET_PROXIES_FILE=" + p
}

// urlsOfProxies are the proxies' URLs (with credentials), in pool order.
func urlsOfProxies(ps ...*proxytest.Proxy) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.URL()
	}
	return out
}

// ---------------------------------------------------------------------------
// A site that records which address every request came from.

// ipHit is one request an ipSite answered.
type ipHit struct {
	Path   string // path?query
	IP     string // the client's address (a proxy's, or 127.0.0.1 when direct)
	Status int    // the status it was answered with
	Cookie string
}

// ipSite is a local site on a chosen loopback address that records, for
// every request, the client address and the status it answered, at the
// moment the status is written (before the client can read it).
type ipSite struct {
	*httptest.Server
	Host string // host:port
	mu   sync.Mutex
	hits []ipHit
}

func newIPSite(t testing.TB, ip string, h http.HandlerFunc) *ipSite {
	t.Helper()
	s := &ipSite{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		rw := &ipRecorder{ResponseWriter: w, s: s, hit: ipHit{Path: r.URL.Path + "?" + r.URL.RawQuery, IP: host, Cookie: r.Header.Get("Cookie")}}
		h(rw, r)
		if !rw.done {
			rw.WriteHeader(http.StatusOK)
		}
	}))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	s.Server = srv
	s.Host = ln.Addr().String()
	t.Cleanup(srv.Close)
	return s
}

type ipRecorder struct {
	http.ResponseWriter
	s    *ipSite
	hit  ipHit
	done bool
}

func (w *ipRecorder) WriteHeader(code int) {
	if !w.done {
		w.done = true
		w.hit.Status = code
		w.s.mu.Lock()
		w.s.hits = append(w.s.hits, w.hit)
		w.s.mu.Unlock()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *ipRecorder) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// IP is the address the site listens on.
func (s *ipSite) IP() string {
	h, _, _ := net.SplitHostPort(s.Host)
	return h
}

// Hits returns every request answered so far, in order.
func (s *ipSite) Hits() []ipHit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ipHit(nil), s.hits...)
}

// byPath groups the hits by path (without the query) that start with
// prefix, each group in order.
func (s *ipSite) byPath(prefix string) map[string][]ipHit {
	out := map[string][]ipHit{}
	for _, h := range s.Hits() {
		p, _, _ := strings.Cut(h.Path, "?")
		if strings.HasPrefix(p, prefix) {
			out[p] = append(out[p], h)
		}
	}
	return out
}

// ipsOf lists the distinct client addresses of the hits whose path (without
// query) starts with prefix.
func (s *ipSite) ipsOf(prefix string) []string {
	seen := map[string]bool{}
	for _, hs := range s.byPath(prefix) {
		for _, h := range hs {
			seen[h.IP] = true
		}
	}
	var out []string
	for ip := range seen {
		out = append(out, ip)
	}
	sort.Strings(out)
	return out
}

func pathOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Path
}

// ---------------------------------------------------------------------------
// Jobs as the API shows them, with the fields of upstream proxies decoded
// here (not through pkg/spec).

type pxRef struct {
	Pool string `json:"pool"`
	ID   string `json:"id"`
}

type pxTry struct {
	ProxyID     string `json:"proxy_id"`
	StatusCode  int    `json:"status_code"`
	BlockReason string `json:"block_reason"`
	ErrorCode   string `json:"error_code"`
}

func (tr pxTry) String() string {
	if tr.ErrorCode != "" {
		return tr.ProxyID + ":" + tr.ErrorCode
	}
	s := tr.ProxyID + ":" + strconv.Itoa(tr.StatusCode)
	if tr.BlockReason != "" {
		s += "(" + tr.BlockReason + ")"
	}
	return s
}

type pxJob struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	URL      string `json:"url"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Result *struct {
		URL        string  `json:"url"`
		StatusCode int     `json:"status_code"`
		HTML       *string `json:"html"`
		Proxy      *pxRef  `json:"proxy"`
		Blocked    *struct {
			Reason string `json:"reason"`
		} `json:"blocked"`
		AttemptsLog []pxTry `json:"attempts_log"`
	} `json:"result"`
}

func (j pxJob) errCode() string {
	if j.Error == nil {
		return ""
	}
	return j.Error.Code
}

// url is the job's URL.
func (j pxJob) url() string {
	if j.URL == "" && j.Result != nil {
		return j.Result.URL
	}
	return j.URL
}

func (j pxJob) html() string {
	if j.Result == nil || j.Result.HTML == nil {
		return ""
	}
	return *j.Result.HTML
}

func (j pxJob) proxy() pxRef {
	if j.Result == nil || j.Result.Proxy == nil {
		return pxRef{}
	}
	return *j.Result.Proxy
}

func (j pxJob) tries() []pxTry {
	if j.Result == nil {
		return nil
	}
	return j.Result.AttemptsLog
}

func (j pxJob) String() string {
	s := fmt.Sprintf("%s %s attempts=%d", j.ID, j.Status, j.Attempts)
	if j.Error != nil {
		s += fmt.Sprintf(" error=%s (%s)", j.Error.Code, j.Error.Message)
	}
	if j.Result != nil {
		s += fmt.Sprintf(" status_code=%d proxy=%+v tries=%v", j.Result.StatusCode, j.Result.Proxy, j.Result.AttemptsLog)
		if j.Result.Blocked != nil {
			s += " blocked=" + j.Result.Blocked.Reason
		}
	}
	return s
}

// pxClient submits and reads jobs for one test without failing the Env's
// own test (it fails the t it is given), and checks every answer it reads
// for the proxy credentials.
type pxClient struct {
	e *Env
}

// get reads a path (decoded into out when non-nil) and checks its body.
func (c pxClient) get(t testing.TB, path, key string, out any) int {
	t.Helper()
	r, err := c.e.call("GET", path, key, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	checkNoSecrets(t, "GET "+path, string(r.body))
	if out != nil && r.code == 200 {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("GET %s: decode %q: %v", path, r.body, err)
		}
	}
	return r.code
}

// submit posts a fetch and returns its id (fails t on a non-202).
func (c pxClient) submit(t testing.TB, key string, body any) string {
	t.Helper()
	r, err := c.e.call("POST", "/v1/fetch", key, body)
	if err != nil {
		t.Fatalf("POST /v1/fetch: %v", err)
	}
	checkNoSecrets(t, "POST /v1/fetch answer", string(r.body))
	var acc struct {
		ID string `json:"id"`
	}
	if r.code != http.StatusAccepted || json.Unmarshal(r.body, &acc) != nil || acc.ID == "" {
		t.Fatalf("submit %v: %d %s", body, r.code, r.body)
	}
	return acc.ID
}

// wait polls the job until it ends.
func (c pxClient) wait(t testing.TB, key, id string, timeout time.Duration) pxJob {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var j pxJob
		if code := c.get(t, "/v1/jobs/"+id+"?wait=20s", key, &j); code != 200 {
			t.Fatalf("get job %s: %d", id, code)
		}
		switch j.Status {
		case "succeeded", "failed", "cancelled":
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %s", id, j.Status, timeout)
		}
	}
}

// run submits a fetch and waits for it.
func (c pxClient) run(t testing.TB, key string, body any) pxJob {
	t.Helper()
	return c.wait(t, key, c.submit(t, key, body), 90*time.Second)
}

// runAll submits every body first, then waits for each.
func (c pxClient) runAll(t testing.TB, key string, bodies []map[string]any) []pxJob {
	t.Helper()
	ids := make([]string, len(bodies))
	for i, b := range bodies {
		ids[i] = c.submit(t, key, b)
	}
	out := make([]pxJob, len(ids))
	for i, id := range ids {
		out[i] = c.wait(t, key, id, 90*time.Second)
	}
	return out
}

// batchJobs pages through a batch's jobs.
func (c pxClient) batchJobs(t testing.TB, key, id string) []pxJob {
	t.Helper()
	var out []pxJob
	cur := ""
	for pages := 0; pages < 1000; pages++ {
		var page struct {
			Data       []pxJob `json:"data"`
			NextCursor string  `json:"next_cursor"`
		}
		if code := c.get(t, fmt.Sprintf("/v1/batches/%s/jobs?limit=200&cursor=%s", id, url.QueryEscape(cur)), key, &page); code != 200 {
			t.Fatalf("batch jobs of %s: %d", id, code)
		}
		out = append(out, page.Data...)
		if page.NextCursor == "" {
			return out
		}
		cur = page.NextCursor
	}
	t.Fatal("batch jobs paging does not end")
	return nil
}

// problem posts body to path and returns the status, the problem's fields
// and its Content-Type.
func (c pxClient) problem(t testing.TB, method, path, key string, body any) (int, problemBody, string) {
	t.Helper()
	r, err := c.e.call(method, path, key, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	var p problemBody
	json.Unmarshal(r.body, &p)
	return r.code, p, r.hdr.Get("Content-Type")
}

// ---------------------------------------------------------------------------
// Metrics.

// pxSeries is one series of a metric.
type pxSeries struct {
	Labels map[string]string
	Value  float64
}

// parseLabels reads `a="x",b="y"` (Prometheus text escapes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return out
		}
		name := strings.TrimSpace(s[:eq])
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		out[name] = val.String()
		s = strings.TrimPrefix(s[min(i+1, len(s)):], ",")
	}
	return out
}

// seriesOf lists the series of metric name in a Prometheus text page.
func seriesOf(text, name string) []pxSeries {
	var out []pxSeries
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var labels map[string]string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels = parseLabels(rest[1:end])
			rest = rest[end+1:]
		case strings.HasPrefix(rest, " "):
			labels = map[string]string{}
		default:
			continue // a longer name
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out = append(out, pxSeries{labels, v})
	}
	return out
}

// getText reads a URL's body.
func getText(t testing.TB, u string) string {
	t.Helper()
	resp, err := chaosClient.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// workerMetrics is the /metrics page of every worker.
func (e *Env) workerMetricsPages(t testing.TB) []string {
	var out []string
	for i := range e.workers {
		out = append(out, getText(t, "http://"+e.WorkerAddr(i)+"/metrics"))
	}
	return out
}

// proxyMetric sums, over every worker, the series of name whose labels
// include want (nil: every series); it also returns every label set seen.
func (e *Env) proxyMetric(t testing.TB, name string, want map[string]string) (float64, []map[string]string) {
	var sum float64
	var all []map[string]string
	for _, page := range e.workerMetricsPages(t) {
	series:
		for _, s := range seriesOf(page, name) {
			all = append(all, s.Labels)
			for k, v := range want {
				if s.Labels[k] != v {
					continue series
				}
			}
			sum += s.Value
		}
	}
	return sum, all
}

// ---------------------------------------------------------------------------
// The credential sweep.

// gunzipAll returns the decompressed forms of every gzip stream found in b.
func gunzipAll(b []byte) [][]byte {
	var out [][]byte
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte{0x1f, 0x8b, 0x08})
		if i < 0 {
			return out
		}
		zr, err := gzip.NewReader(bytes.NewReader(b[off+i:]))
		if err == nil {
			zr.Multistream(false)
			d, _ := io.ReadAll(io.LimitReader(zr, 256<<20))
			if len(d) > 0 {
				out = append(out, d)
			}
		}
		off += i + 1
	}
}

// redisValues calls fn with every key and value (raw and decompressed) of
// every database of the Env's Redis.
func (e *Env) redisValues(t testing.TB, fn func(what string, b []byte)) int {
	t.Helper()
	ctx := waitCtx(t, time.Minute)
	info, err := e.Redis.Client(t, 0).Info(ctx, "keyspace").Result()
	if err != nil {
		t.Fatalf("redis INFO keyspace: %v", err)
	}
	var dbs []int
	for _, line := range strings.Split(info, "\n") {
		if name, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && strings.HasPrefix(name, "db") {
			if n, err := strconv.Atoi(name[2:]); err == nil {
				dbs = append(dbs, n)
			}
		}
	}
	keys := 0
	emit := func(what string, b []byte) {
		fn(what, b)
		for _, d := range gunzipAll(b) {
			fn(what+" (gunzipped)", d)
		}
	}
	for _, db := range dbs {
		rdb := e.Redis.Client(t, db)
		iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			keys++
			what := fmt.Sprintf("redis db%d key %q", db, k)
			fn(what+" (name)", []byte(k))
			typ, err := rdb.Type(ctx, k).Result()
			if err != nil {
				continue
			}
			switch typ {
			case "string":
				v, err := rdb.Get(ctx, k).Bytes()
				if err == nil {
					emit(what, v)
				}
			case "hash":
				m, _ := rdb.HGetAll(ctx, k).Result()
				for f, v := range m {
					emit(what+" field "+f, []byte(f+"\x00"+v))
				}
			case "list":
				l, _ := rdb.LRange(ctx, k, 0, -1).Result()
				for i, v := range l {
					emit(fmt.Sprintf("%s [%d]", what, i), []byte(v))
				}
			case "set":
				l, _ := rdb.SMembers(ctx, k).Result()
				for _, v := range l {
					emit(what+" member", []byte(v))
				}
			case "zset":
				l, _ := rdb.ZRange(ctx, k, 0, -1).Result()
				for _, v := range l {
					emit(what+" member", []byte(v))
				}
			case "stream":
				l, _ := rdb.XRange(ctx, k, "-", "+").Result()
				for _, m := range l {
					for f, v := range m.Values {
						emit(what+" entry "+m.ID, []byte(fmt.Sprint(f, "\x00", v)))
					}
				}
			default:
				v, err := rdb.Dump(ctx, k).Bytes()
				if err != nil && err != redis.Nil {
					continue
				}
				emit(what+" (dump)", v)
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("redis SCAN db%d: %v", db, err)
		}
	}
	return keys
}

// sweepCredentials checks every log, metric page and Redis value of e for
// the proxy credentials.
func sweepCredentials(t *testing.T, e *Env) {
	t.Helper()
	texts := map[string]string{
		"api log":      e.api.logText(),
		"api /metrics": getText(t, e.APIURL+"/metrics"),
	}
	for i := range e.workers {
		texts[fmt.Sprintf("worker %d log", i)] = e.WorkerLog(i)
		texts[fmt.Sprintf("worker %d /metrics", i)] = getText(t, "http://"+e.WorkerAddr(i)+"/metrics")
	}
	for what, text := range texts {
		if text == "" && strings.HasSuffix(what, "/metrics") {
			t.Errorf("%s is empty", what)
		}
		checkNoSecrets(t, what, text)
	}
	found := 0
	keys := e.redisValues(t, func(what string, b []byte) {
		if l := leakedIn(string(b)); len(l) > 0 && found < 10 {
			found++
			s := string(b)
			i := strings.Index(s, l[0])
			t.Errorf("%s carries the proxy credential %q: …%q…", what, l[0], s[max(0, i-150):min(len(s), i+150)])
		}
	})
	t.Logf("searched %d log and metric pages and %d Redis keys for the proxy credentials", len(texts), keys)
	if keys == 0 {
		t.Error("Redis holds no keys: the sweep searched nothing")
	}
}

// ---------------------------------------------------------------------------
// The suite.

// pxTenants is the tenants file of the proxy tests: acme (keyA) uses the
// proxies file's pools; globex (keyB) has a pool "rot" of its own, picked
// at random; both treat a 403 that says "pf-e2e-wall" as a block.
func pxTenants(globexProxies string) string {
	return fmt.Sprintf(`tenants:
  - id: acme
    plan: pro
    api_keys: [%q]
    limits: { requests_per_second: 100000, queued_jobs: 1000000 }
    block_rules:
      - { status: 403, body_contains: "pf-e2e-wall" }
  - id: globex
    plan: enterprise
    api_keys: ["sha256:%x"]
    limits: { requests_per_second: 100000, queued_jobs: 1000000 }
    block_rules:
      - { status: 403, body_contains: "pf-e2e-wall" }
%s`, keyA, sha(keyB), globexProxies)
}

// routePage is a page with a stylesheet, a script, an image and a fetch()
// call; #fetched appears once the fetch answered.
const routePage = `<!doctype html><html><head><title>route</title>
<link rel="stylesheet" href="/r/style.css">
<script src="/r/app.js"></script>
</head><body><h1>route</h1><img id="pic" src="/r/img.png" width="1" height="1"><div id="out"></div>
<script>
fetch('/r/api').then(r => r.text()).then(t => {
  const p = document.createElement('p'); p.id = 'fetched'; p.textContent = t; document.body.appendChild(p);
});
</script></body></html>`

// routeSite serves routePage and its subresources.
func routeSite(t testing.TB) *ipSite {
	return newIPSite(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/r/page":
			html(routePage)(w, r)
		case "/r/style.css":
			w.Header().Set("Content-Type", "text/css")
			fmt.Fprint(w, "h1 { color: rgb(1, 2, 3); }")
		case "/r/app.js":
			w.Header().Set("Content-Type", "application/javascript")
			fmt.Fprint(w, "document.documentElement.dataset.app = 'script-ran';")
		case "/r/img.png":
			pngPixel(w, r)
		case "/r/api":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "api-answer-42")
		default:
			http.NotFound(w, r)
		}
	})
}

// routeSubresources are the paths a rendered routePage must request.
var routeSubresources = []string{"/r/page", "/r/style.css", "/r/app.js", "/r/img.png", "/r/api"}

// renderedRoute is the body of a rendered job of routePage that loads
// images and waits for the fetch() answer.
func renderedRoute(site *ipSite, extra map[string]any) map[string]any {
	b := map[string]any{"url": site.URL + "/r/page", "render_js": true, "load_resources": true,
		"actions": []map[string]any{{"type": "wait_for", "selector": "#fetched", "state": "attached", "timeout_ms": 15000}}}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

// checkRoute checks that every request the site saw came from ip, and that
// the rendered page requested each of its subresources (plain: the page).
func checkRoute(t *testing.T, site *ipSite, rendered bool, ip string, j pxJob) {
	t.Helper()
	if j.Status != "succeeded" || j.Result == nil || j.Result.StatusCode != 200 {
		t.Fatalf("job: %s", j)
	}
	want := []string{"/r/page"}
	if rendered {
		want = routeSubresources
		if h := j.html(); !strings.Contains(h, "api-answer-42") || !strings.Contains(h, "script-ran") {
			t.Errorf("the rendered page lacks the fetch() answer or the script's mark: %.400s", h)
		}
	}
	paths := site.byPath("/")
	for _, p := range want {
		if len(paths[p]) == 0 {
			t.Errorf("the site never saw %s (saw %v)", p, site.Hits())
		}
	}
	for p, hs := range paths {
		for _, h := range hs {
			if h.IP != ip {
				t.Errorf("%s came from %s, want %s", p, h.IP, ip)
			}
		}
	}
}

// seenHosts lists the host names (or addresses) the proxy was asked for.
func seenHosts(p *proxytest.Proxy) []string {
	var out []string
	for _, s := range p.Seen() {
		if strings.Contains(s, "://") {
			if u, err := url.Parse(s); err == nil {
				out = append(out, u.Hostname())
			}
			continue
		}
		if h, _, err := net.SplitHostPort(s); err == nil {
			out = append(out, h)
		}
	}
	return out
}

// seenHost reports whether the proxy was asked for host (host:port), as a
// CONNECT target, a SOCKS target or an absolute URL.
func seenHost(p *proxytest.Proxy, host string) bool {
	for _, s := range p.Seen() {
		if s == host || strings.Contains(s, "//"+host+"/") || strings.HasSuffix(s, "//"+host) {
			return true
		}
	}
	return false
}

// TestProxyPools runs plain and rendered jobs through real HTTP and SOCKS5
// proxies with credentials (each on its own loopback address, so the local
// sites see which one a request came through), against one pagefleet of
// two workers: routing of every subresource, pool choice and validation,
// block detection and retry_on_block over a 400-URL batch, a session that
// keeps its proxy and moves when it dies, a dead proxy set aside, the
// metrics, and finally a sweep of every log, metric page, job read and
// Redis value for the credentials.
func TestProxyPools(t *testing.T) {
	t.Parallel()
	aliases(t)
	start := time.Now()

	// Proxies. A pool's proxies have distinct addresses, so that a site
	// tells them apart; pools of different scenarios may share addresses
	// (each scenario has a site of its own).
	httpP := proxytest.StartHTTP(t, "127.0.0.2", pxUser, pxPass)
	socksP := proxytest.StartSOCKS5(t, "127.0.0.3", pxUser, pxPass)
	rot := []*proxytest.Proxy{
		proxytest.StartHTTP(t, "127.0.0.2", pxUser, pxPass),
		proxytest.StartSOCKS5(t, "127.0.0.3", pxUser, pxPass),
		proxytest.StartHTTP(t, "127.0.0.4", pxUser, pxPass),
		proxytest.StartSOCKS5(t, "127.0.0.5", pxUser, pxPass),
	}
	sess := []*proxytest.Proxy{
		proxytest.StartHTTP(t, "127.0.0.3", pxUser, pxPass),
		proxytest.StartSOCKS5(t, "127.0.0.4", pxUser, pxPass),
		proxytest.StartHTTP(t, "127.0.0.5", pxUser, pxPass),
	}
	deadAlive1 := proxytest.StartHTTP(t, "127.0.0.2", pxUser, pxPass)
	deadAlive3 := proxytest.StartSOCKS5(t, "127.0.0.4", pxUser, pxPass)
	cf := []*proxytest.Proxy{
		proxytest.StartHTTP(t, "127.0.0.2", pxUser, pxPass),
		proxytest.StartSOCKS5(t, "127.0.0.3", pxUser, pxPass),
	}
	pools := map[string][]string{
		"web":  urlsOfProxies(httpP),
		"sock": urlsOfProxies(socksP),
		"sess": urlsOfProxies(sess...),
		"dead": {deadAlive1.URL(), deadProxyURL(t, "127.0.0.3"), deadAlive3.URL()},
		"cf":   urlsOfProxies(cf...),
		// globex's own "rot" (below) wins over this one, whose proxy is dead.
		"rot": {deadProxyURL(t, "127.0.0.5")},
	}
	globex := proxiesBlock(4, "", "random", map[string][]string{"rot": urlsOfProxies(rot...), "gx": urlsOfProxies(httpP)})
	e := Start(t, Options{Workers: 2, Concurrency: 8, Tenants: pxTenants(globex),
		Env: []string{writeProxiesFile(t, "web", "round_robin", pools)}})
	c := pxClient{e}

	t.Run("validation", func(t *testing.T) {
		site := routeSite(t)
		u := site.URL + "/r/page"
		cases := []struct {
			name, method, path, key string
			body                    any
			field                   string
		}{
			{"unknown pool", "POST", "/v1/fetch", keyA, map[string]any{"url": u, "proxy": map[string]any{"pool": "nope"}}, "proxy.pool"},
			{"another tenant's pool", "POST", "/v1/fetch", keyA, map[string]any{"url": u, "proxy": map[string]any{"pool": "gx"}}, "proxy.pool"},
			{"unknown pool in interact", "POST", "/v1/interact", keyA, map[string]any{"url": u, "proxy": map[string]any{"pool": "nope"},
				"actions": []map[string]any{{"type": "wait", "ms": 1}}}, "proxy.pool"},
			{"retry_on_block 6", "POST", "/v1/fetch", keyA, map[string]any{"url": u, "proxy": map[string]any{"pool": "web"}, "retry_on_block": 6}, "retry_on_block"},
			{"retry_on_block -1", "POST", "/v1/fetch", keyA, map[string]any{"url": u, "retry_on_block": -1}, "retry_on_block"},
			{"unknown pool in a batch template", "POST", "/v1/batches", keyA, map[string]any{"urls": []string{u},
				"template": map[string]any{"proxy": map[string]any{"pool": "nope"}}}, ""},
			{"identity with an unknown pool", "PUT", "/v1/identities/px-bad", keyA, map[string]any{"proxy_pool": "nope"}, "proxy_pool"},
		}
		for _, tc := range cases {
			code, p, ct := c.problem(t, tc.method, tc.path, tc.key, tc.body)
			if code != pxInvalidStatus || !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("%s: %d %s %+v, want %d problem+json", tc.name, code, ct, p, pxInvalidStatus)
				continue
			}
			f := p.fields()
			switch {
			case tc.field != "" && f != tc.field:
				t.Errorf("%s: problem names %q, want %q", tc.name, f, tc.field)
			case tc.field == "" && !strings.Contains(f, "proxy.pool"):
				t.Errorf("%s: problem names %q, want a field ending in proxy.pool", tc.name, f)
			}
		}
		if n := len(site.Hits()); n != 0 {
			t.Errorf("refused jobs reached the site %d times", n)
		}
		for _, px := range []*proxytest.Proxy{httpP, socksP} {
			if seenHost(px, site.Host) {
				t.Errorf("a refused job reached the %s proxy", px.Kind)
			}
		}
	})

	t.Run("routing", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			px   *proxytest.Proxy
			pool string
		}{{"http", httpP, "web"}, {"socks5", socksP, "sock"}} {
			for _, rendered := range []bool{false, true} {
				name := tc.name + "/plain"
				if rendered {
					name = tc.name + "/rendered"
				}
				t.Run(name, func(t *testing.T) {
					site := routeSite(t)
					body := map[string]any{"url": site.URL + "/r/page", "proxy": map[string]any{"pool": tc.pool}}
					if rendered {
						body = renderedRoute(site, map[string]any{"proxy": map[string]any{"pool": tc.pool}})
					}
					j := c.run(t, keyA, body)
					checkRoute(t, site, rendered, tc.px.IP, j)
					if got := j.proxy(); got != (pxRef{tc.pool, tc.pool + "-1"}) {
						t.Errorf("result.proxy = %+v, want {%s %s-1}", got, tc.pool, tc.pool)
					}
					if tr := j.tries(); len(tr) != 1 || tr[0].ProxyID != tc.pool+"-1" || tr[0].StatusCode != 200 || tr[0].BlockReason != "" || tr[0].ErrorCode != "" {
						t.Errorf("attempts_log = %v, want one 200 through %s-1", tr, tc.pool)
					}
					if !seenHost(tc.px, site.Host) {
						t.Errorf("the %s proxy was never asked for %s: %v", tc.name, site.Host, tc.px.Seen())
					}
					if tc.px.Denied() != 0 {
						t.Errorf("the %s proxy refused %d requests for their credentials", tc.name, tc.px.Denied())
					}
				})
			}
		}

		// No "proxy": the default pool; "none": directly, even so.
		t.Run("default pool and none", func(t *testing.T) {
			site := routeSite(t)
			j := c.run(t, keyA, map[string]any{"url": site.URL + "/r/page"})
			checkRoute(t, site, false, httpP.IP, j)
			if j.proxy() != (pxRef{"web", "web-1"}) {
				t.Errorf("default pool: result.proxy = %+v, want {web web-1}", j.proxy())
			}
			for _, rendered := range []bool{false, true} {
				site := routeSite(t)
				body := map[string]any{"url": site.URL + "/r/page", "proxy": "none"}
				if rendered {
					body = renderedRoute(site, map[string]any{"proxy": "none"})
				}
				j := c.run(t, keyA, body)
				checkRoute(t, site, rendered, "127.0.0.1", j)
				if j.Result != nil && (j.Result.Proxy != nil || len(j.Result.AttemptsLog) != 0) {
					t.Errorf(`"proxy": "none" (rendered %t): result.proxy = %+v, attempts_log = %v; want neither`, rendered, j.Result.Proxy, j.Result.AttemptsLog)
				}
				if seenHost(httpP, site.Host) {
					t.Errorf(`"proxy": "none" (rendered %t) went through the default pool's proxy`, rendered)
				}
			}
		})

		// An identity's pool wins over the default pool; a job's own
		// "proxy" wins over the identity's.
		t.Run("identity pool", func(t *testing.T) {
			var id map[string]any
			r, err := e.call("PUT", "/v1/identities/px-socks", keyA, map[string]any{"proxy_pool": "sock"})
			if err != nil || r.code != 200 || json.Unmarshal(r.body, &id) != nil || id["proxy_pool"] != "sock" {
				t.Fatalf("put identity: %v %d %s", err, r.code, r.body)
			}
			checkNoSecrets(t, "PUT /v1/identities answer", string(r.body))
			c.get(t, "/v1/identities/px-socks", keyA, nil)
			site := routeSite(t)
			j := c.run(t, keyA, map[string]any{"url": site.URL + "/r/page", "identity": "px-socks"})
			checkRoute(t, site, false, socksP.IP, j)
			if j.proxy() != (pxRef{"sock", "sock-1"}) {
				t.Errorf("identity's pool: result.proxy = %+v", j.proxy())
			}
			site = routeSite(t)
			j = c.run(t, keyA, map[string]any{"url": site.URL + "/r/page", "identity": "px-socks", "proxy": map[string]any{"pool": "web"}})
			checkRoute(t, site, false, httpP.IP, j)
			if j.proxy() != (pxRef{"web", "web-1"}) {
				t.Errorf("job's pool over the identity's: result.proxy = %+v", j.proxy())
			}
		})
	})

	// A block page with the built-in marker (header cf-mitigated:
	// challenge) through every proxy of the pool: failed, blocked.
	t.Run("still blocked", func(t *testing.T) {
		cfIP := map[string]string{"cf-1": cf[0].IP, "cf-2": cf[1].IP}
		site := newIPSite(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/cf/") {
				w.Header().Set("cf-mitigated", "challenge")
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprint(w, "<html><body><p>one moment please</p></body></html>")
				return
			}
			// A 403 that matches no rule is an answer, not a block.
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, "<html><body><p>members only</p></body></html>")
		})
		jobs := c.runAll(t, keyA, []map[string]any{
			{"url": site.URL + "/cf/plain", "proxy": map[string]any{"pool": "cf"}, "retry_on_block": 1},
			{"url": site.URL + "/cf/rendered", "render_js": true, "proxy": map[string]any{"pool": "cf"}},
			{"url": site.URL + "/members", "proxy": map[string]any{"pool": "cf"}, "retry_on_block": 2},
		})
		seen := site.byPath("/")
		for i, j := range jobs {
			want := []int{2, 1, 1}[i]
			path := []string{"/cf/plain", "/cf/rendered", "/members"}[i]
			tries := j.tries()
			hs := seen[path]
			if i < 2 {
				if j.Status != "failed" || j.errCode() != "blocked" || j.Result == nil || j.Result.Blocked == nil ||
					!strings.Contains(strings.ToLower(j.Result.Blocked.Reason), "cf-mitigated") {
					t.Errorf("%s: %s; want failed, error.code blocked, result.blocked.reason naming cf-mitigated", path, j)
				}
				if len(tries) == 2 && tries[0].ProxyID == tries[1].ProxyID {
					t.Errorf("%s: both tries through %s", path, tries[0].ProxyID)
				}
			} else if j.Status != "succeeded" || j.Result == nil || j.Result.StatusCode != 403 || j.Result.Blocked != nil {
				t.Errorf("%s (a 403 no rule matches): %s; want succeeded with status_code 403 and no result.blocked", path, j)
			}
			if len(tries) != want || len(hs) != want {
				t.Errorf("%s: attempts_log %v, site saw %v; want %d tries", path, tries, hs, want)
				continue
			}
			for k, tr := range tries {
				if cfIP[tr.ProxyID] != hs[k].IP || tr.StatusCode != 403 || hs[k].Status != 403 || (i < 2) != (tr.BlockReason != "") {
					t.Errorf("%s try %d: %v, site saw %+v", path, k, tr, hs[k])
				}
			}
			if last := tries[len(tries)-1]; j.proxy() != (pxRef{"cf", last.ProxyID}) {
				t.Errorf("%s: result.proxy = %+v, want the last try's {cf %s}", path, j.proxy(), last.ProxyID)
			}
		}
	})

	// A site that blocks an address after 100 requests (a 403 that the
	// tenant's block_rules match), 400 URLs through a pool of 4 proxies
	// with retry_on_block 3: the pool's 4 × 100 requests are enough for
	// every URL, so every job succeeds, without a retry by the client or
	// the queue, and every try of every job is one answer the site gave.
	t.Run("retry on block", func(t *testing.T) {
		const perAddress, urls = 100, 400
		rotIP := map[string]string{}
		for i, p := range rot {
			rotIP[fmt.Sprintf("rot-%d", i+1)] = p.IP
		}
		var mu sync.Mutex
		served := map[string]int{}
		site := newIPSite(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/w/") {
				http.NotFound(w, r)
				return
			}
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			mu.Lock()
			served[host]++
			n := served[host]
			mu.Unlock()
			w.Header().Set("Content-Type", "text/html")
			if n > perAddress {
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprint(w, "<html><body><h1>Slow down</h1><p>Too many visits from your network. ref pf-e2e-wall</p></body></html>")
				return
			}
			fmt.Fprintf(w, "<html><body><p>page %s</p></body></html>", r.URL.Path)
		})
		list := make([]string, urls)
		for i := range list {
			list[i] = fmt.Sprintf("%s/w/%d", site.URL, i)
		}
		began := time.Now()
		acc, _ := e.SubmitBatch(keyB, map[string]any{"urls": list,
			"template": map[string]any{"proxy": map[string]any{"pool": "rot"}, "retry_on_block": 3}})
		b, _ := e.WaitBatch(keyB, acc.ID, 200*time.Millisecond, 2*time.Minute)
		t.Logf("400 jobs through 4 proxies in %s: %+v", time.Since(began).Round(time.Millisecond), b)
		if b.Succeeded != urls || b.Failed != 0 {
			t.Errorf("batch: %+v, want %d succeeded", b, urls)
		}
		c.get(t, "/v1/batches/"+acc.ID, keyB, nil)
		jobs := c.batchJobs(t, keyB, acc.ID)
		if len(jobs) != urls {
			t.Fatalf("the batch lists %d jobs, want %d", len(jobs), urls)
		}
		seen := site.byPath("/w/")
		retried, blocks, bad := 0, 0, 0
		report := func(format string, args ...any) {
			if bad++; bad <= 15 {
				t.Errorf(format, args...)
			}
		}
		for _, j := range jobs {
			path := pathOf(j.url())
			hs, tries := seen[path], j.tries()
			delete(seen, path)
			if j.Status != "succeeded" || j.Attempts != 1 || j.Result == nil || j.Result.StatusCode != 200 || j.Result.Blocked != nil {
				report("%s: %s; want succeeded in one attempt with 200 and no result.blocked", path, j)
			}
			if len(tries) == 0 || len(tries) > 4 || len(tries) != len(hs) {
				report("%s: attempts_log %v, the site answered %v", path, tries, hs)
				continue
			}
			if len(tries) > 1 {
				retried++
			}
			ids := map[string]bool{}
			for k, tr := range tries {
				h := hs[k]
				blocked := tr.StatusCode == 403
				if blocked {
					blocks++
				}
				if rotIP[tr.ProxyID] == "" || rotIP[tr.ProxyID] != h.IP || tr.StatusCode != h.Status ||
					blocked != (tr.BlockReason != "") || tr.ErrorCode != "" || ids[tr.ProxyID] || (k < len(tries)-1) != blocked {
					report("%s try %d: %v, but the site answered %s with %d (all tries %v, site %v)", path, k, tr, h.IP, h.Status, tries, hs)
				}
				ids[tr.ProxyID] = true
			}
			if last := tries[len(tries)-1]; j.proxy() != (pxRef{"rot", last.ProxyID}) {
				report("%s: result.proxy = %+v, want {rot %s}", path, j.proxy(), last.ProxyID)
			}
		}
		for p, hs := range seen {
			report("the site answered %s (%v), which no job of the batch names", p, hs)
		}
		mu.Lock()
		t.Logf("requests per address: %v; %d jobs retried after %d blocks", served, retried, blocks)
		mu.Unlock()
		if retried == 0 {
			t.Errorf("no job was blocked, so retry_on_block was not exercised (requests per address %v)", served)
		}
		if v, _ := e.proxyMetric(t, "pagefleet_proxy_blocks_total", map[string]string{"pool": "rot"}); int(v) != blocks {
			t.Errorf(`pagefleet_proxy_blocks_total{pool="rot"} = %v over the workers, want the %d blocked tries`, v, blocks)
		}
	})

	// A session's jobs leave through one proxy; when it dies the next job
	// moves to another and the session's cookies still work.
	t.Run("session", func(t *testing.T) {
		sessIP := map[string]*proxytest.Proxy{}
		for i, p := range sess {
			sessIP[fmt.Sprintf("sess-%d", i+1)] = p
		}
		const token = "tok-7f3a"
		site := newIPSite(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/s/login":
				http.SetCookie(w, &http.Cookie{Name: "pxsess", Value: token, Path: "/", HttpOnly: true})
				html(`<html><body><p id="state">logged in</p></body></html>`)(w, r)
			case "/s/check":
				if ck, err := r.Cookie("pxsess"); err != nil || ck.Value != token {
					w.Header().Set("Content-Type", "text/html")
					w.WriteHeader(http.StatusUnauthorized)
					fmt.Fprint(w, `<html><body><p id="state">no-cookie</p></body></html>`)
					return
				}
				html(`<html><body><p id="state">cookie-ok</p></body></html>`)(w, r)
			default:
				http.NotFound(w, r)
			}
		})
		ref := map[string]any{"id": "px-session"}
		pool := map[string]any{"pool": "sess"}
		job := func(n int, rendered bool) map[string]any {
			b := map[string]any{"url": fmt.Sprintf("%s/s/check?n=%d", site.URL, n), "session": ref, "proxy": pool}
			if rendered {
				b["render_js"] = true
			}
			return b
		}
		bodies := []map[string]any{{"url": site.URL + "/s/login?n=1", "session": ref, "proxy": pool}}
		for n := 2; n <= 10; n++ {
			bodies = append(bodies, job(n, n == 5 || n == 10))
		}
		jobs := c.runAll(t, keyA, bodies)
		first := jobs[0].proxy().ID
		if sessIP[first] == nil {
			t.Fatalf("login: %s; want it through a proxy of pool sess", jobs[0])
		}
		for i, j := range jobs {
			if j.Status != "succeeded" || j.Result == nil || j.Result.StatusCode != 200 || j.proxy() != (pxRef{"sess", first}) {
				t.Errorf("session job %d: %s; want 200 through %s", i+1, j, first)
			}
			if i > 0 && !strings.Contains(j.html(), "cookie-ok") {
				t.Errorf("session job %d did not send the session's cookie: %.300s", i+1, j.html())
			}
		}
		if ips := site.ipsOf("/s/"); len(ips) != 1 || ips[0] != sessIP[first].IP {
			t.Errorf("the session's 10 jobs came from %v, want only %s (%s)", ips, sessIP[first].IP, first)
		}
		var view struct {
			Proxy      *pxRef `json:"proxy"`
			ProxyMoves []struct {
				From   string `json:"from"`
				To     string `json:"to"`
				At     string `json:"at"`
				Reason string `json:"reason"`
			} `json:"proxy_moves"`
		}
		if code := c.get(t, "/v1/sessions/px-session", keyA, &view); code != 200 || view.Proxy == nil || *view.Proxy != (pxRef{"sess", first}) || len(view.ProxyMoves) != 0 {
			t.Errorf("session before the proxy died: %d %+v", code, view)
		}

		// The session's proxy dies.
		sessIP[first].Stop()
		before := len(site.Hits())
		after := c.runAll(t, keyA, []map[string]any{job(11, false), job(12, true)})
		moved := after[0].proxy().ID
		if sessIP[moved] == nil || moved == first {
			t.Fatalf("after %s died: %s; want another proxy of pool sess", first, after[0])
		}
		for i, j := range after {
			if j.Status != "succeeded" || j.Result == nil || j.Result.StatusCode != 200 || j.proxy() != (pxRef{"sess", moved}) ||
				!strings.Contains(j.html(), "cookie-ok") {
				t.Errorf("session job %d after the move: %s %.300s; want 200 with the cookie through %s", 11+i, j, j.html(), moved)
			}
			for _, tr := range j.tries() {
				if tr.ProxyID == first && tr.ErrorCode != "proxy_failed" {
					t.Errorf("session job %d: try through the dead %s: %v", 11+i, first, tr)
				}
			}
		}
		for _, h := range site.Hits()[before:] {
			if strings.HasPrefix(h.Path, "/s/") && h.IP != sessIP[moved].IP {
				t.Errorf("after the move %s came from %s, want %s (%s)", h.Path, h.IP, sessIP[moved].IP, moved)
			}
		}
		view.Proxy, view.ProxyMoves = nil, nil
		c.get(t, "/v1/sessions/px-session", keyA, &view)
		if view.Proxy == nil || *view.Proxy != (pxRef{"sess", moved}) {
			t.Errorf("session.proxy after the move = %+v, want {sess %s}", view.Proxy, moved)
		}
		if n := len(view.ProxyMoves); n != 1 || view.ProxyMoves[0].From != first || view.ProxyMoves[0].To != moved ||
			view.ProxyMoves[0].Reason != "proxy_failed" || view.ProxyMoves[0].At == "" {
			t.Errorf("session.proxy_moves = %+v, want one move %s → %s for proxy_failed", view.ProxyMoves, first, moved)
		}
	})

	// A dead proxy in a pool of three: jobs keep succeeding, and within
	// seconds the pool stops choosing it.
	t.Run("dead proxy", func(t *testing.T) {
		site := newIPSite(t, "127.0.0.1", html(`<html><body><p>alive</p></body></html>`))
		deadIP := map[string]string{"dead-1": deadAlive1.IP, "dead-3": deadAlive3.IP}
		n := 0
		wave := func(size int) []pxJob {
			bodies := make([]map[string]any, size)
			for i := range bodies {
				n++
				bodies[i] = map[string]any{"url": fmt.Sprintf("%s/d/%d", site.URL, n), "proxy": map[string]any{"pool": "dead"}}
			}
			jobs := c.runAll(t, keyA, bodies)
			seen := site.byPath("/d/")
			for _, j := range jobs {
				tries, hs := j.tries(), seen[pathOf(j.url())]
				if j.Status != "succeeded" || j.Result == nil || j.Result.StatusCode != 200 || len(tries) == 0 {
					t.Errorf("job through pool dead: %s", j)
					continue
				}
				var answered []pxTry
				for _, tr := range tries {
					switch {
					case tr.ProxyID == "dead-2" && tr.ErrorCode == "proxy_failed" && tr.StatusCode == 0:
					case deadIP[tr.ProxyID] != "" && tr.ErrorCode == "" && tr.StatusCode == 200:
						answered = append(answered, tr)
					default:
						t.Errorf("%s: unexpected try %v", j.url(), tr)
					}
				}
				if len(answered) != 1 || len(hs) != 1 || deadIP[answered[0].ProxyID] != hs[0].IP || tries[len(tries)-1] != answered[0] ||
					j.proxy() != (pxRef{"dead", answered[0].ProxyID}) {
					t.Errorf("%s: %s, the site saw %v", j.url(), j, hs)
				}
			}
			return jobs
		}
		failedTries := func(jobs []pxJob) int {
			k := 0
			for _, j := range jobs {
				for _, tr := range j.tries() {
					if tr.ProxyID == "dead-2" {
						k++
					}
				}
			}
			return k
		}
		// Until the dead proxy failed 3 times (the threshold), within 20 s.
		failures, began := 0, time.Now()
		for failures < 3 && time.Since(began) < 20*time.Second {
			failures += failedTries(wave(6))
		}
		if failures < 3 {
			t.Fatalf("the dead proxy was tried %d times in %s of jobs, want 3 or more", failures, time.Since(began))
		}
		aside := time.Now()
		t.Logf("the dead proxy failed %d tries in %s", failures, aside.Sub(began).Round(time.Millisecond))
		// From now on, for 5 s (well within the 10 s it is set aside for),
		// no job tries it.
		used, named := map[string]int{}, 0
		for time.Since(aside) < 5*time.Second {
			for _, j := range wave(8) {
				named += failedTries([]pxJob{j})
				used[j.proxy().ID]++
			}
		}
		t.Logf("jobs in the 5 s after: %v through each proxy; %d tries named dead-2", used, named)
		if named != 0 {
			t.Errorf("%d tries went through the dead proxy after it failed %d times", named, failures)
		}
		if used["dead-1"] == 0 || used["dead-3"] == 0 {
			t.Errorf("after dead-2 was set aside the jobs used %v, want both live proxies", used)
		}
		if v, _ := e.proxyMetric(t, "pagefleet_proxy_failures_total", map[string]string{"pool": "dead", "proxy": "dead-2"}); v < 3 {
			t.Errorf(`pagefleet_proxy_failures_total{pool="dead",proxy="dead-2"} = %v over the workers, want 3 or more`, v)
		}
		for _, id := range []string{"dead-1", "dead-3"} {
			if v, _ := e.proxyMetric(t, "pagefleet_proxy_failures_total", map[string]string{"pool": "dead", "proxy": id}); v != 0 {
				t.Errorf(`pagefleet_proxy_failures_total{pool="dead",proxy=%q} = %v, want 0`, id, v)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, want := range []map[string]string{
			{"pool": "web", "proxy": "web-1"}, {"pool": "sock", "proxy": "sock-1"},
			{"pool": "rot", "proxy": "rot-1"}, {"pool": "rot", "proxy": "rot-2"}, {"pool": "rot", "proxy": "rot-3"}, {"pool": "rot", "proxy": "rot-4"},
			{"pool": "cf", "proxy": "cf-1"}, {"pool": "cf", "proxy": "cf-2"}, {"pool": "dead", "proxy": "dead-1"}, {"pool": "dead", "proxy": "dead-3"},
		} {
			if v, _ := e.proxyMetric(t, "pagefleet_proxy_requests_total", want); v <= 0 {
				t.Errorf("pagefleet_proxy_requests_total%v = %v, want > 0", want, v)
			}
		}
		for _, id := range []string{"cf-1", "cf-2"} {
			if v, _ := e.proxyMetric(t, "pagefleet_proxy_blocks_total", map[string]string{"pool": "cf", "proxy": id}); v <= 0 {
				t.Errorf(`pagefleet_proxy_blocks_total{pool="cf",proxy=%q} = %v, want > 0`, id, v)
			}
		}
		for _, name := range []string{"pagefleet_proxy_requests_total", "pagefleet_proxy_failures_total", "pagefleet_proxy_blocks_total"} {
			_, all := e.proxyMetric(t, name, nil)
			if len(all) == 0 {
				t.Errorf("no worker exposes %s", name)
			}
			for _, l := range all {
				if len(l) != 2 || l["pool"] == "" || l["proxy"] == "" || !strings.HasPrefix(l["proxy"], l["pool"]+"-") {
					t.Errorf("%s has a series labelled %v, want exactly pool and proxy (<pool>-<n>)", name, l)
				}
			}
		}
	})

	// Last: the credentials appear nowhere.
	t.Run("no credentials anywhere", func(t *testing.T) {
		sweepCredentials(t, e)
	})
	t.Logf("the proxy suite took %s", time.Since(start).Round(time.Millisecond))
}

// TestProxyEgressGuard: with the private-address guard on, a job whose URL
// is (or resolves to, or redirects to) a loopback or private address fails
// with blocked_address before anything is sent to its proxy, plain and
// rendered, through an HTTP and a SOCKS5 proxy. The proxies themselves are
// on loopback addresses, which the operator's configuration trusts; a
// public-looking target (127.0.0.5, allowed by PAGEFLEET_ALLOW_CIDRS) is
// reached through them.
func TestProxyEgressGuard(t *testing.T) {
	t.Parallel()
	aliases(t)
	httpP := proxytest.StartHTTP(t, "127.0.0.3", pxUser, pxPass)
	socksP := proxytest.StartSOCKS5(t, "127.0.0.4", pxUser, pxPass)
	private := newIPSite(t, "127.0.0.1", html(`<html><body><p>private</p></body></html>`))
	public := newIPSite(t, "127.0.0.5", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			redirectTo(w, r)
			return
		}
		html(`<html><body><p>public</p></body></html>`)(w, r)
	})
	_, port, _ := net.SplitHostPort(private.Host)
	e := Start(t, Options{Workers: 1, Concurrency: 8, Tenants: pxTenants(""), Env: []string{
		"PAGEFLEET_ALLOW_PRIVATE_NETWORKS=false",
		"PAGEFLEET_ALLOW_CIDRS=127.0.0.5/32",
		writeProxiesFile(t, "g", "", map[string][]string{"g": {httpP.URL()}, "gs": {socksP.URL()}}),
	}})
	if v := envValue(e.env, "PAGEFLEET_ALLOW_PRIVATE_NETWORKS"); v != "false" {
		t.Fatalf("the harness's default must be overridden: PAGEFLEET_ALLOW_PRIVATE_NETWORKS=%q", v)
	}
	c := pxClient{e}

	for _, tc := range []struct {
		name string
		px   *proxytest.Proxy
		pool any
	}{{"http", httpP, nil}, {"socks5", socksP, map[string]any{"pool": "gs"}}} {
		t.Run(tc.name, func(t *testing.T) {
			with := func(b map[string]any) map[string]any {
				if tc.pool != nil {
					b["proxy"] = tc.pool
				}
				return b
			}
			// Control: the allowed target, through the proxy.
			for _, rendered := range []bool{false, true} {
				j := c.run(t, keyA, with(map[string]any{"url": fmt.Sprintf("%s/ok?%s-%t", public.URL, tc.name, rendered), "render_js": rendered}))
				if j.Status != "succeeded" || j.Result == nil || j.Result.StatusCode != 200 || j.proxy().ID == "" {
					t.Fatalf("control (rendered %t): %s", rendered, j)
				}
			}
			if ips := public.ipsOf("/ok"); len(ips) == 0 || !strings.Contains(strings.Join(ips, ","), tc.px.IP) {
				t.Errorf("the allowed target saw %v, want %s among them", ips, tc.px.IP)
			}
			seenBefore := len(seenHosts(tc.px))

			targets := []string{
				"http://127.0.0.1:" + port + "/x",
				"http://localhost:" + port + "/x",
				"http://10.1.2.3:" + port + "/x",
				public.URL + "/redirect?to=" + url.QueryEscape("http://127.0.0.1:"+port+"/redirected"),
			}
			var bodies []map[string]any
			for _, u := range targets {
				for _, rendered := range []bool{false, true} {
					bodies = append(bodies, with(map[string]any{"url": u, "render_js": rendered, "timeout_ms": 20000}))
				}
			}
			jobs := c.runAll(t, keyA, bodies)
			for i, j := range jobs {
				if j.Status != "failed" || j.errCode() != "blocked_address" {
					t.Errorf("%s (rendered %t): %s; want failed with blocked_address", bodies[i]["url"], bodies[i]["render_js"], j)
				}
			}
			for _, h := range seenHosts(tc.px)[seenBefore:] {
				if h != public.IP() {
					t.Errorf("the %s proxy was asked for %q (asked for, in all: %v)", tc.name, h, tc.px.Seen())
				}
			}
			if n := len(private.Hits()); n != 0 {
				t.Errorf("the private target was reached %d times: %v", n, private.Hits())
			}
		})
	}

	t.Run("no credentials anywhere", func(t *testing.T) {
		sweepCredentials(t, e)
	})
}

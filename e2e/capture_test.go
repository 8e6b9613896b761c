package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// artifactBytes downloads an artifact through its signed link, with no API
// key.
func (e *Env) artifactBytes(t *testing.T, a *spec.Artifact) []byte {
	t.Helper()
	if a == nil {
		t.Fatal("no artifact")
	}
	if !strings.HasPrefix(a.URL, "http") {
		t.Fatalf("artifact link %q is not absolute", a.URL)
	}
	resp, err := http.Get(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", a.URL, resp.StatusCode, b)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != a.SHA256 || int64(len(b)) != a.Size {
		t.Fatalf("artifact %s: %d bytes, sha256 %x; the artifact says %d and %s", a.ID, len(b), sum, a.Size, a.SHA256)
	}
	return b
}

func TestNetworkOutputKeepsThePagesOwnFetch(t *testing.T) {
	e := Start(t, Options{})
	site := NewSite(t, map[string]http.HandlerFunc{
		"/cap/app": html(`<!doctype html><html><body><ul id="list"></ul>
<link rel="stylesheet" href="/cap/style.css">
<script>
fetch('/cap/api/items?page=1').then(r => r.json()).then(d => {
  for (const it of d.items) { const li = document.createElement('li'); li.textContent = it; document.getElementById('list').appendChild(li); }
});
fetch('/cap/other/config.json').then(r => r.json());
</script></body></html>`),
		"/cap/style.css": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/css")
			fmt.Fprint(w, "body{color:black}")
		},
		"/cap/api/items": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"items":["alpha","beta"],"page":1}`)
		},
		"/cap/other/config.json": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"other":true}`)
		},
	})
	j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/cap/app", "render_js": true, "wait_until": "networkidle",
		"output": []string{"html", "network", "har"}, "network": map[string]any{"url_patterns": []string{"*/api/*"}}})
	if j.Status != spec.StatusSucceeded {
		t.Fatalf("job %s: %+v", j.Status, j.Error)
	}
	n := j.Result.Network
	if len(n) != 1 {
		t.Fatalf("network %+v, want only the /cap/api/items response", n)
	}
	if n[0].URL != site.URL+"/cap/api/items?page=1" || n[0].Method != "GET" || n[0].Status != 200 ||
		n[0].MIMEType != "application/json" || n[0].Body == nil || *n[0].Body != `{"items":["alpha","beta"],"page":1}` {
		t.Errorf("network entry %+v (body %v)", n[0], n[0].Body)
	}
	var h struct {
		Log struct {
			Version string `json:"version"`
			Entries []struct {
				Request struct {
					URL string `json:"url"`
				} `json:"request"`
				Response struct {
					Status int `json:"status"`
				} `json:"response"`
			} `json:"entries"`
		} `json:"log"`
	}
	if err := json.Unmarshal(e.artifactBytes(t, j.Result.HAR), &h); err != nil {
		t.Fatal(err)
	}
	urls := map[string]int{}
	for _, en := range h.Log.Entries {
		urls[strings.TrimPrefix(en.Request.URL, site.URL)] = en.Response.Status
	}
	if h.Log.Version != "1.2" || urls["/cap/app"] != 200 || urls["/cap/api/items?page=1"] != 200 || urls["/cap/other/config.json"] != 200 {
		t.Errorf("HAR %s lists %v", h.Log.Version, urls)
	}
}

func TestDownloadsOfParallelJobsStayApart(t *testing.T) {
	// One worker, one browser, four jobs at once: four browser contexts
	// of one Chrome, each clicking a link to a different file.
	e := Start(t, Options{Workers: 1, Concurrency: 4})
	files := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d"} {
		files[n] = strings.Repeat(fmt.Sprintf("line of report %s\n", n), 2000+len(n))
	}
	site := NewSite(t, map[string]http.HandlerFunc{
		"/dl/page": func(w http.ResponseWriter, r *http.Request) {
			n := r.URL.Query().Get("f")
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `<!doctype html><html><body><a id="get" href="/dl/file/%s">report %s</a></body></html>`, n, n)
		},
		"/dl/file/": func(w http.ResponseWriter, r *http.Request) {
			n := strings.TrimPrefix(r.URL.Path, "/dl/file/")
			time.Sleep(300 * time.Millisecond) // the downloads overlap
			w.Header().Set("Content-Type", "text/csv")
			w.Header().Set("Content-Disposition", `attachment; filename="report-`+n+`.csv"`)
			fmt.Fprint(w, files[n])
		},
	})
	ids := map[string]string{}
	for n := range files {
		ids[n] = e.Submit(keyA, "interact", map[string]any{"url": site.URL + "/dl/page?f=" + n,
			"actions": []map[string]any{{"type": "click", "selector": "#get"}}})
	}
	var wg sync.WaitGroup
	for n, id := range ids {
		wg.Go(func() {
			j := e.Wait(keyA, id, 90*time.Second)
			if j.Status != spec.StatusSucceeded {
				t.Errorf("job %s: %s %+v", n, j.Status, j.Error)
				return
			}
			d := j.Result.Downloads
			if len(d) != 1 {
				t.Errorf("job %s downloads %+v, want its one file", n, d)
				return
			}
			sum := sha256.Sum256([]byte(files[n]))
			if d[0].Filename != "report-"+n+".csv" || d[0].MIMEType != "text/csv" || d[0].Size != int64(len(files[n])) ||
				d[0].Artifact == nil || d[0].Artifact.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("job %s download %+v artifact %+v", n, d[0], d[0].Artifact)
				return
			}
			if got := e.artifactBytes(t, d[0].Artifact); string(got) != files[n] {
				t.Errorf("job %s: the downloaded file differs from report %s", n, n)
			}
		})
	}
	wg.Wait()
}

func TestDiagnosticsOfAFailedInteractJob(t *testing.T) {
	e := Start(t, Options{})
	rcv := newReceiver(t, secretA, 0)
	site := NewSite(t, map[string]http.HandlerFunc{
		"/diag/app": html(`<!doctype html><html><body><h1>Orders</h1>
<button id="load">Load orders</button><p id="status">idle</p>
<script>
document.getElementById('load').onclick = async () => {
  document.getElementById('status').textContent = 'loading';
  const r = await fetch('/diag/api/orders');
  if (!r.ok) {
    console.error('orders request failed with status', r.status);
    document.getElementById('status').textContent = 'failed to load orders';
    return;
  }
  const t = document.createElement('table'); t.id = 'orders'; document.body.appendChild(t);
};
</script></body></html>`),
		"/diag/api/orders": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"database unavailable"}`, http.StatusInternalServerError)
		},
	})
	j := e.Run(keyA, "interact", map[string]any{"url": site.URL + "/diag/app",
		"actions": []map[string]any{
			{"type": "wait_for", "selector": "#load"},
			{"type": "click", "selector": "#load"},
			{"type": "wait_for", "selector": "#orders", "timeout_ms": 1500},
		},
		"webhook": map[string]any{"url": rcv.URL + "/hook", "events": []string{"job.failed"}},
	})
	if j.Status != spec.StatusFailed || j.Error == nil || j.Error.Code != spec.CodeActionFailed || j.Error.Action == nil || *j.Error.Action != 2 {
		t.Fatalf("job %s error %+v, want action_failed at action 2", j.Status, j.Error)
	}
	d := j.Result.Diagnostics
	if d == nil {
		t.Fatal("no diagnostics")
	}
	shot := e.artifactBytes(t, d.Screenshot)
	if img, err := png.Decode(bytes.NewReader(shot)); err != nil || img.Bounds().Dx() < 100 {
		t.Errorf("screenshot: %v", err)
	}
	dom := string(e.artifactBytes(t, d.DOM))
	if !strings.Contains(dom, "failed to load orders") || !strings.Contains(dom, `id="load"`) || strings.Contains(dom, `id="orders"`) {
		t.Errorf("DOM at the failure: %s", dom)
	}
	found := false
	for _, m := range d.Console {
		found = found || (m.Level == "error" && m.Text == "orders request failed with status 500")
	}
	if !found {
		t.Errorf("console %+v lacks the page's error line", d.Console)
	}
	var h struct {
		Log struct {
			Entries []struct {
				Request  struct{ URL string }
				Response struct{ Status int }
			}
		}
	}
	if err := json.Unmarshal(e.artifactBytes(t, d.HAR), &h); err != nil {
		t.Fatal(err)
	}
	status := 0
	for _, en := range h.Log.Entries {
		if en.Request.URL == site.URL+"/diag/api/orders" {
			status = en.Response.Status
		}
	}
	if status != 500 {
		t.Errorf("HAR entries %+v: /diag/api/orders answered %d, want 500", h.Log.Entries, status)
	}

	// The job.failed event links the same diagnostics.
	e.Drain(t, 30*time.Second, rcv.attempts)
	evs, _, _ := rcv.snapshot()
	if len(evs) != 1 || evs[0]["type"] != spec.EventJobFailed {
		t.Fatalf("events %v", evs)
	}
	b, _ := json.Marshal(evs[0]["data"])
	var ev spec.Job
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Result == nil || ev.Result.Diagnostics == nil || ev.Result.Diagnostics.Screenshot == nil ||
		ev.Result.Diagnostics.Screenshot.ID != d.Screenshot.ID || ev.Result.Diagnostics.HAR == nil || ev.Result.Diagnostics.DOM == nil {
		t.Errorf("job.failed data: %s", b)
	}

	// "diagnostics": false keeps none.
	j2 := e.Run(keyA, "interact", map[string]any{"url": site.URL + "/diag/app", "diagnostics": false,
		"actions": []map[string]any{{"type": "wait_for", "selector": "#orders", "timeout_ms": 500}}})
	if j2.Status != spec.StatusFailed || j2.Result == nil || j2.Result.Diagnostics != nil {
		t.Errorf("with diagnostics false: %s, result %+v", j2.Status, j2.Result)
	}
}

func TestCaptureValidation(t *testing.T) {
	e := Start(t, Options{Workers: -1})
	for _, c := range []struct {
		kind  string
		body  map[string]any
		field string
	}{
		{"fetch", map[string]any{"url": "https://example.com/", "output": []string{"network"}, "render_js": true}, "network"},
		{"fetch", map[string]any{"url": "https://example.com/", "output": []string{"network"},
			"network": map[string]any{"url_patterns": []string{"*/api/*"}}}, "output[0]"},
		{"fetch", map[string]any{"url": "https://example.com/", "output": []string{"har"}}, "output[0]"},
		{"fetch", map[string]any{"url": "https://example.com/", "render_js": true, "output": []string{"network"},
			"network": map[string]any{"url_patterns": []string{}}}, "network.url_patterns"},
		{"interact", map[string]any{"url": "https://example.com/", "output": []string{"network"},
			"network": map[string]any{"url_patterns": []string{" "}}, "actions": []map[string]any{{"type": "wait", "ms": 1}}},
			"network.url_patterns[0]"},
		{"interact", map[string]any{"url": "https://example.com/", "network": map[string]any{"url_patterns": []string{"*"}},
			"actions": []map[string]any{{"type": "wait", "ms": 1}}}, "network"},
		{"interact", map[string]any{"url": "https://example.com/", "diagnostics": "no",
			"actions": []map[string]any{{"type": "wait", "ms": 1}}}, "diagnostics"},
	} {
		var p struct {
			Errors []spec.FieldError `json:"errors"`
		}
		resp := e.Do("POST", "/v1/"+c.kind, keyA, c.body, &p)
		ok := false
		for _, fe := range p.Errors {
			ok = ok || fe.Field == c.field
		}
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") || !ok {
			t.Errorf("%v: %d %s %+v, want 422 naming %s", c.body, resp.StatusCode, resp.Header.Get("Content-Type"), p.Errors, c.field)
		}
	}
}

func TestDownloadOverTheLimitIsListed(t *testing.T) {
	e := Start(t, Options{Env: []string{"PAGEFLEET_MAX_DOWNLOAD_BYTES=2048"}})
	site := NewSite(t, map[string]http.HandlerFunc{
		"/dl/big": html(`<!doctype html><html><body><a id="get" href="/dl/big.bin">big file</a></body></html>`),
		"/dl/big.bin": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Disposition", `attachment; filename="big.bin"`)
			w.Write(bytes.Repeat([]byte{7}, 64<<10))
		},
	})
	j := e.Run(keyA, "interact", map[string]any{"url": site.URL + "/dl/big",
		"actions": []map[string]any{{"type": "click", "selector": "#get"}}})
	if j.Status != spec.StatusSucceeded {
		t.Fatalf("job %s: %+v", j.Status, j.Error)
	}
	if d := j.Result.Downloads; len(d) != 1 || d[0].Filename != "big.bin" || d[0].Artifact != nil || !strings.Contains(d[0].Error, "2048") {
		t.Errorf("downloads %+v, want big.bin refused over 2048 bytes", d)
	}
}

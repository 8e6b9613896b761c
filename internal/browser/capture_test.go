package browser_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// captureSite serves the pages of the capture tests.
func captureSite(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/app", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><body><div id="out">loading</div>
<script>
console.log('app starting', 42);
fetch('/api/items').then(r => r.json()).then(d => { document.getElementById('out').textContent = d.items.join(','); });
fetch('/other/thing').then(r => r.text());
fetch('/api/broken').then(r => { console.error('api failed with', r.status); });
</script></body></html>`)
	})
	mux.HandleFunc("/api/items", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"items":["a","b"]}`)
	})
	mux.HandleFunc("/other/thing", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "other") })
	mux.HandleFunc("/api/broken", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })
	mux.HandleFunc("/files", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><body>`)
		for _, n := range []string{"a", "b", "c", "d"} {
			fmt.Fprintf(w, `<a id="%s" href="/file/%s">file %s</a> `, n, n, n)
			fmt.Fprintf(w, `<a id="pop-%s" href="/file/%s" target="_blank">file %s in a new tab</a> `, n, n, n)
		}
		fmt.Fprint(w, `</body></html>`)
	})
	mux.HandleFunc("/autodownload", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><body><p>your file is coming</p>
<script>addEventListener('load', () => setTimeout(() => { location.href = '/file/b'; }, 100));</script></body></html>`)
	})
	mux.HandleFunc("/file/", func(w http.ResponseWriter, r *http.Request) {
		n := strings.TrimPrefix(r.URL.Path, "/file/")
		w.Header().Set("Content-Type", "text/csv")
		w.Header().Set("Content-Disposition", `attachment; filename="report-`+n+`.csv"`)
		fmt.Fprint(w, strings.Repeat("row of file "+n+"\n", 1000))
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func TestNetworkOutputAndHAR(t *testing.T) {
	t.Parallel()
	s := captureSite(t)
	res, err := render(t, browser.Request{URL: s.URL + "/app", WaitUntil: "networkidle",
		NetworkPatterns: []string{"*/api/items"}, HAR: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Network) != 1 {
		t.Fatalf("network %+v, want the one /api/items response", res.Network)
	}
	n := res.Network[0]
	if n.Method != "GET" || n.Status != 200 || n.MIMEType != "application/json" || string(n.Body) != `{"items":["a","b"]}` {
		t.Errorf("network entry %+v body %q", n, n.Body)
	}
	var h struct {
		Log struct {
			Version string
			Entries []struct {
				Request  struct{ Method, URL string }
				Response struct{ Status int }
			}
		}
	}
	if err := json.Unmarshal(res.HAR, &h); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range h.Log.Entries {
		got[strings.TrimPrefix(e.Request.URL, s.URL)] = e.Response.Status
	}
	if h.Log.Version != "1.2" || got["/app"] != 200 || got["/api/broken"] != 500 || got["/other/thing"] != 200 {
		t.Errorf("HAR %s entries %v", h.Log.Version, got)
	}
}

func TestDiagnosticsOnActionFailure(t *testing.T) {
	t.Parallel()
	s := captureSite(t)
	res, err := render(t, browser.Request{URL: s.URL + "/app", Diagnostics: true, WaitUntil: "networkidle",
		Actions: []spec.Action{{Type: spec.ActWaitFor, Selector: "#out"}, {Type: spec.ActWait, Ms: 10},
			{Type: spec.ActWaitFor, Selector: "#never", TimeoutMs: 500}}})
	var se *spec.Error
	if !errors.As(err, &se) || se.Code != spec.CodeActionFailed {
		t.Fatalf("err %v", err)
	}
	d := res.Diagnostics
	if d == nil {
		t.Fatal("no diagnostics")
	}
	if !bytes.HasPrefix(d.Screenshot, []byte("\x89PNG")) || !strings.Contains(d.DOM, `id="out"`) || strings.Contains(d.DOM, "never") {
		t.Errorf("screenshot %d bytes, DOM %q", len(d.Screenshot), d.DOM)
	}
	if !strings.Contains(fmt.Sprint(d.Console), "app starting 42") || !strings.Contains(fmt.Sprint(d.Console), "api failed with 500") {
		t.Errorf("console %+v", d.Console)
	}
	if !bytes.Contains(d.HAR, []byte(`/api/broken`)) {
		t.Errorf("HAR %s", d.HAR)
	}
}

func TestDownloadsOfParallelJobs(t *testing.T) {
	t.Parallel()
	s := captureSite(t)
	var wg sync.WaitGroup
	for _, n := range []string{"a", "b", "c", "d"} {
		wg.Go(func() {
			res, err := render(t, browser.Request{URL: s.URL + "/files",
				Actions: []spec.Action{{Type: spec.ActClick, Selector: "#" + n}}})
			if err != nil {
				t.Error(err)
				return
			}
			want := strings.Repeat("row of file "+n+"\n", 1000)
			if len(res.Downloads) != 1 || res.Downloads[0].Filename != "report-"+n+".csv" || string(res.Downloads[0].Data) != want {
				t.Errorf("job %s downloads %+v", n, res.Downloads)
			}
		})
	}
	wg.Wait()
}

func TestDownloadOverTheLimit(t *testing.T) {
	t.Parallel()
	s := captureSite(t)
	p := startPool(t, browser.Config{AllowPrivate: true, MaxDownloadBytes: 4 << 10})
	res, err := renderOn(t, p, browser.Request{URL: s.URL + "/files",
		Actions: []spec.Action{{Type: spec.ActClick, Selector: "#a"}}}, 45*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Downloads) != 1 || res.Downloads[0].Data != nil || !strings.Contains(res.Downloads[0].Error, "limit") ||
		res.Downloads[0].Filename != "report-a.csv" {
		t.Errorf("downloads %+v, want report-a.csv refused for its size", res.Downloads)
	}
}

func TestDiagnosticsOfAFailedNavigation(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	res, err := render(t, browser.Request{URL: closed, Diagnostics: true})
	var se *spec.Error
	var de *browser.DiagnosedError
	if res != nil || !errors.As(err, &se) || se.Code != spec.CodeConnectionRefused || !errors.As(err, &de) {
		t.Fatalf("result %v, err %v: want connection_refused with diagnostics", res, err)
	}
	if d := de.Diagnostics; d == nil || d.HAR == nil || d.Screenshot == nil {
		t.Errorf("diagnostics %+v", d)
	}
	if _, err := render(t, browser.Request{URL: closed}); errors.As(err, &de) {
		t.Errorf("diagnostics without Request.Diagnostics: %v", err)
	}
}

func TestDownloadStartedByThePage(t *testing.T) {
	t.Parallel()
	s := captureSite(t)
	// The page starts its download after its load event: networkidle waits
	// for it to begin.
	res, err := render(t, browser.Request{URL: s.URL + "/autodownload", WaitUntil: "networkidle"})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("row of file b\n", 1000)
	if len(res.Downloads) != 1 || res.Downloads[0].Filename != "report-b.csv" || string(res.Downloads[0].Data) != want ||
		res.Downloads[0].MIMEType != "text/csv" {
		t.Errorf("downloads %+v", res.Downloads)
	}
}

func TestDownloadInAPopup(t *testing.T) {
	t.Parallel()
	s := captureSite(t)
	res, err := render(t, browser.Request{URL: s.URL + "/files",
		Actions: []spec.Action{{Type: spec.ActClick, Selector: "#pop-c"}, {Type: spec.ActWait, Ms: 1000}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Downloads) != 1 || res.Downloads[0].Filename != "report-c.csv" || len(res.Downloads[0].Data) == 0 {
		t.Errorf("downloads %+v", res.Downloads)
	}
}

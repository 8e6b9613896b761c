package client_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/proctest"
	"github.com/pagefleet/pagefleet/internal/redistest"
)

// What the examples talk to: a real api and worker (built from ./cmd) on a
// real redis-server, started by TestMain, and a local fixture site.
var (
	baseURL       string // the API, http://127.0.0.1:port
	apiKey        string // tenant "example", plan enterprise
	webhookSecret string // that tenant's webhook secret
	siteURL       string // the fixture site
	freeAPIKey    string // tenant "example-free", plan free
)

const (
	exampleKey    = "pf_example_key_0123456789"
	exampleSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	freeKey       = "pf_example_free_key"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pagefleet-client-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	stop, err := startServers(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client tests:", err)
		return 1
	}
	code := m.Run()
	stop(code != 0)
	return code
}

// startServers builds and starts redis-server, the api and one worker and
// the fixture site, and returns the func that stops them all (the worker
// first, Redis last).
func startServers(dir string) (stop func(dump bool), err error) {
	if err := proctest.Build(dir); err != nil {
		return nil, err
	}
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stopAll()
		}
	}()

	rdir := filepath.Join(dir, "redis")
	os.MkdirAll(rdir, 0o755)
	rs, err := redistest.StartDir(rdir)
	if err != nil {
		return nil, err
	}
	stops = append(stops, rs.Stop)

	site := httptest.NewServer(fixtureSite())
	stops = append(stops, site.Close)
	siteURL = site.URL

	tenants := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(tenants, []byte(fmt.Sprintf(`tenants:
  - id: example
    plan: enterprise
    api_keys: [%q]
    webhook_secret: %q
  - id: example-free
    plan: free
    api_keys: [%q]
`, exampleKey, exampleSecret, freeKey)), 0o600); err != nil {
		return nil, err
	}
	env := []string{
		"PAGEFLEET_REDIS_URL=" + rs.URL(0),
		"PAGEFLEET_TENANTS_FILE=" + tenants,
		"PAGEFLEET_ALLOW_PRIVATE_NETWORKS=true",
		"PAGEFLEET_WORKER_CONCURRENCY=2",
		"PAGEFLEET_BROWSERS=1",
		"PAGEFLEET_LOG_FORMAT=json",
		"PAGEFLEET_SHUTDOWN_TIMEOUT=5s",
		// One artifact store for the API and the worker, whose TMPDIR
		// differs (the default store is under TMPDIR).
		"PAGEFLEET_ARTIFACTS_URL=file://" + filepath.Join(dir, "artifacts"),
		"PAGEFLEET_WEBHOOK_RETRY_SCHEDULE=200ms,500ms,1s",
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
	}
	start := func(name string, env ...string) (*proctest.Proc, error) {
		addr, err := proctest.FreeAddr()
		if err != nil {
			return nil, err
		}
		key := "PAGEFLEET_WORKER_ADDR="
		if name == "api" {
			key = "PAGEFLEET_API_ADDR="
		}
		p, err := proctest.Start(proctest.Options{Name: name, Bin: filepath.Join(dir, name), Env: append(env, key+addr),
			Addr: addr, KillWithParent: true})
		if err != nil {
			return nil, err
		}
		stops = append(stops, func() { _ = p.Stop(syscall.SIGTERM, 20*time.Second) })
		return p, nil
	}
	api, err := start("api", env...)
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "worker-tmp")
	os.MkdirAll(tmp, 0o755)
	worker, err := start("worker", append(env, "TMPDIR="+tmp)...)
	if err != nil {
		return nil, err
	}
	baseURL, apiKey, webhookSecret, freeAPIKey = "http://"+api.Addr, exampleKey, exampleSecret, freeKey
	return func(dump bool) {
		if dump {
			fmt.Fprintf(os.Stderr, "api log (tail):\n%s\nworker log (tail):\n%s\n", api.Tail(3000), worker.Tail(4000))
		}
		stopAll()
	}, nil
}

// fixtureSite serves the pages the examples fetch.
func fixtureSite() http.Handler {
	page := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, body)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/article", page(`<!doctype html><html lang="en"><head><title>Fixture Article</title></head><body>
<main><h1>Hello from the fixture</h1><p>pagefleet fetched this page.</p></main></body></html>`))
	mux.Handle("/counter", page(`<!doctype html><html lang="en"><head><title>Counter</title></head><body>
<p>Count: <span id="count">0</span></p><button id="add" onclick="count.textContent = +count.textContent + 1">Add</button>
</body></html>`))
	mux.Handle("/login", page(`<!doctype html><html lang="en"><head><title>Login</title></head><body>
<form onsubmit="event.preventDefault(); document.cookie = 'sid=s3cret; path=/'; localStorage.setItem('user', 'ada'); done.hidden = false">
<input id="user" name="user"><button id="go">Log in</button></form><p id="done" hidden>Welcome</p></body></html>`))
	mux.Handle("/account", page(`<!doctype html><html lang="en"><head><title>Account</title></head><body>
<p id="who"></p><script>who.textContent = document.cookie.includes('sid=s3cret') ? 'Signed in as ' + localStorage.getItem('user') : 'Signed out'</script></body></html>`))
	mux.Handle("/prices", page(`<!doctype html><html lang="en"><head><title>Prices</title></head><body><ul id="prices"></ul>
<script>console.log('loading prices');
fetch('/api/prices').then(r => r.json()).then(d => { prices.innerHTML = d.map(p => '<li>' + p.sku + '</li>').join(''); });</script></body></html>`))
	mux.HandleFunc("/api/prices", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"sku":"A-1","eur":12.5}]`)
	})
	for i := 1; i <= 3; i++ {
		mux.Handle(fmt.Sprintf("/page/%d", i), page(fmt.Sprintf(`<!doctype html><html><head><title>Page %d</title></head><body><h1>Page %d</h1></body></html>`, i, i)))
	}
	return mux
}

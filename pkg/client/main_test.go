package client_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
	for _, b := range []string{"api", "worker"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "../../cmd/"+b)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build %s: %w", b, err)
		}
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
		"PAGEFLEET_WEBHOOK_RETRY_SCHEDULE=200ms,500ms,1s",
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
	}
	api, err := startProc(dir, "api", append(env, "PAGEFLEET_API_ADDR="+freeAddr()))
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { api.stop() })
	tmp := filepath.Join(dir, "worker-tmp")
	os.MkdirAll(tmp, 0o755)
	worker, err := startProc(dir, "worker", append(env, "PAGEFLEET_WORKER_ADDR="+freeAddr(), "TMPDIR="+tmp))
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { worker.stop() })
	baseURL, apiKey, webhookSecret, freeAPIKey = "http://"+api.addr, exampleKey, exampleSecret, freeKey
	return func(dump bool) {
		if dump {
			fmt.Fprintf(os.Stderr, "api log (tail):\n%s\nworker log (tail):\n%s\n", api.tail(3000), worker.tail(4000))
		}
		stopAll()
	}, nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a running api or worker binary.
type proc struct {
	name string
	addr string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *proc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.log.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

func startProc(dir, name string, env []string) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{})}
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == "PAGEFLEET_API_ADDR" || k == "PAGEFLEET_WORKER_ADDR" {
			p.addr = v
		}
	}
	p.cmd = exec.Command(filepath.Join(dir, name))
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start:\n%s", name, p.tail(3000))
		default:
		}
		if resp, err := http.Get("http://" + p.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("%s not ready within 30s:\n%s", name, p.tail(3000))
}

// stop sends SIGTERM and, after 20 s, kills the process group.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
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
	for i := 1; i <= 3; i++ {
		mux.Handle(fmt.Sprintf("/page/%d", i), page(fmt.Sprintf(`<!doctype html><html><head><title>Page %d</title></head><body><h1>Page %d</h1></body></html>`, i, i)))
	}
	return mux
}

package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/css"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// browserProc is one Chrome process of the pool.
type browserProc struct {
	pool *Pool
	id   int64
	dir  string // temporary --user-data-dir, removed on shutdown
	pid  int

	allocCancel context.CancelFunc
	ctx         context.Context // the chromedp context that owns the browser
	cancel      context.CancelFunc
	browser     *chromedp.Browser
	lost        <-chan struct{} // closed when the connection to Chrome drops
	userAgent   string          // Chrome's own user agent

	stop     chan struct{} // closed by shutdown
	stopOnce sync.Once
	spares   chan *tab     // warm, unused contexts with their tab
	refill   chan struct{} // a job ended: time to make a warm tab

	// Guarded by pool.mu.
	active   int  // jobs running
	jobs     int  // jobs started in total
	draining bool // takes no new job
	closed   bool // out of the pool
	making   int  // warm tabs being created
	waiters  int  // jobs waiting for a warm tab being created
}

// tab is a fresh browser context with one tab in it, used by one job.
type tab struct {
	ctx    context.Context // the chromedp context of the tab
	cancel context.CancelFunc
	target *chromedp.Target
	bctx   cdp.BrowserContextID
}

// allocatorOptions are the exec allocator options of a browser with the
// user data directory dir.
func (p *Pool) allocatorOptions(dir string) []chromedp.ExecAllocatorOption {
	disable := []string{"Translate", "BlinkGenPropertyTrees", "OptimizationHints", "MediaRouter",
		"DialMediaRouteProvider", "InterestFeedContentSuggestions", "AutofillServerCommunication",
		"CertificateTransparencyComponentUpdater", "PrivacySandboxSettings4",
		// Chrome 15x gives every new window, and so every job's browser
		// context, two hidden WebUI omnibox popups, each in a renderer
		// process of its own: three renderers per job instead of one.
		// Headless has no omnibox. Turning them off makes a fresh context
		// about 2× cheaper (BENCHMARKS.md).
		"WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "WebUIOmniboxFullPopup",
		// After a navigation Chrome starts a spare renderer for the next
		// one; a job's context never navigates to another site, so the
		// spare is thrown away with the context (≈ 10% of the CPU of a job).
		"SpareRendererForSitePerProcess"}
	if p.cfg.AllowPrivate {
		disable = append(disable, "LocalNetworkAccessChecks")
	}
	flags := []struct {
		name  string
		value any
	}{
		{"headless", true},
		{"no-sandbox", true}, // we run as root, and Chrome's sandbox needs a user namespace
		{"disable-dev-shm-usage", true},
		{"disable-background-networking", true},
		{"disable-component-update", true},
		{"no-first-run", true},
		{"no-default-browser-check", true},
		{"disable-sync", true},
		{"disable-gpu", true},
		// Software compositing in the browser process rather than in a GPU
		// process of its own: ≈ 7% less CPU per job (BENCHMARKS.md).
		{"in-process-gpu", true},
		{"disable-quic", true},
		{"mute-audio", true},
		{"hide-scrollbars", true},
		{"disable-background-timer-throttling", true},
		{"disable-backgrounding-occluded-windows", true},
		{"disable-renderer-backgrounding", true},
		{"disable-ipc-flooding-protection", true},
		{"disable-hang-monitor", true},
		{"disable-breakpad", true},
		{"disable-crash-reporter", true},
		{"disable-client-side-phishing-detection", true},
		{"disable-default-apps", true},
		{"disable-extensions", true},
		{"disable-domain-reliability", true},
		{"disable-prompt-on-repost", true},
		{"metrics-recording-only", true},
		{"safebrowsing-disable-auto-update", true},
		{"password-store", "basic"},
		{"use-mock-keychain", true},
		{"force-color-profile", "srgb"},
		{"window-size", "1280,800"}, // a desktop viewport of 1280×713
		// No navigator.webdriver: pages that hide from automation would
		// show a fetch service something other than what users see.
		{"disable-blink-features", "AutomationControlled"},
		{"enable-features", "NetworkService,NetworkServiceInProcess"},
		{"disable-features", strings.Join(disable, ",")},
	}
	if p.cfg.ProxyURL != "" {
		flags = append(flags,
			struct {
				name  string
				value any
			}{"proxy-server", p.cfg.ProxyURL},
			struct {
				name  string
				value any
			}{"proxy-bypass-list", "<-loopback>"})
	}
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(p.cfg.ChromePath)}
	for _, f := range flags {
		opts = append(opts, chromedp.Flag(f.name, f.value))
	}
	names := make([]string, 0, len(p.cfg.ExtraFlags))
	for name := range p.cfg.ExtraFlags {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		opts = append(opts, chromedp.Flag(strings.TrimPrefix(name, "--"), p.cfg.ExtraFlags[name]))
	}
	return append(opts,
		chromedp.UserDataDir(dir),
		// Chrome's crash handler detaches from the process group; with its
		// database in dir, the clean-up that looks for dir finds it too.
		chromedp.Env("XDG_CONFIG_HOME="+filepath.Join(dir, "config")),
		chromedp.ModifyCmdFunc(setProcAttr),
	)
}

// launch starts one browser. ctx bounds the start; the browser lives until
// shutdown.
func (p *Pool) launch(ctx context.Context) (*browserProc, error) {
	dir, err := os.MkdirTemp("", dataDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("create user data dir: %w", err)
	}
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	p.dirs = append(p.dirs, dir)
	if len(p.dirs) > maxDirsKept {
		p.dirs = p.dirs[len(p.dirs)-maxDirsKept:]
	}
	p.mu.Unlock()

	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), p.allocatorOptions(dir)...)
	logf := func(format string, args ...any) {
		p.log.Debug("chromedp: "+fmt.Sprintf(format, args...), "browser", id)
	}
	bctx, bcancel := chromedp.NewContext(allocCtx, chromedp.WithBrowserOption(
		chromedp.WithBrowserLogf(logf), chromedp.WithBrowserErrorf(logf)))
	b := &browserProc{
		pool: p, id: id, dir: dir,
		allocCancel: allocCancel, ctx: bctx, cancel: bcancel,
		stop:   make(chan struct{}),
		spares: make(chan *tab, p.cfg.WarmTabs),
		refill: make(chan struct{}, 1),
	}

	start := time.Now()
	started := make(chan error, 1)
	go func() {
		// The first run binds the browser's life to bctx, which has no
		// deadline; ctx only bounds the wait.
		started <- chromedp.Do(bctx)
	}()
	select {
	case err = <-started:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		c := chromedp.FromContext(bctx)
		b.browser = c.Browser
		b.lost = c.Browser.LostConnection
		if proc := c.Browser.Process(); proc != nil {
			b.pid = proc.Pid
		}
		var v cdpbrowser.GetVersionResult
		v, err = cdp.Call(ctx, c.Browser, cdpbrowser.GetVersion, cdp.Empty{})
		b.userAgent = v.UserAgent
	}
	if err != nil {
		b.shutdown()
		return nil, fmt.Errorf("start chrome %s: %w", p.cfg.ChromePath, err)
	}
	p.log.Info("browser started", "browser", id, "pid", b.pid, "duration_ms", time.Since(start).Milliseconds())
	return b, nil
}

// shutdown kills the browser's process group and every process that still
// uses its user data directory, then removes the directory. It is safe to
// call more than once.
func (b *browserProc) shutdown() {
	b.stopOnce.Do(func() {
		close(b.stop)
		if b.pid > 0 {
			killGroup(b.pid)
		}
		// The crash handler leaves the group but holds Chrome's output pipe,
		// which chromedp waits for.
		processesUsing(b.dir, true)
		// The kill makes chromedp see the lost connection; the cancels free
		// its goroutines.
		b.cancel()
		b.allocCancel()
		killUsing(b.dir)
		for {
			select {
			case t := <-b.spares:
				t.cancel()
				continue
			default:
			}
			break
		}
		if err := removeAll(b.dir); err != nil {
			b.pool.log.Warn("remove user data dir", "dir", b.dir, "err", err)
		}
	})
}

// isLost reports whether the connection to the browser dropped.
func (b *browserProc) isLost() bool {
	if b.lost == nil {
		return false
	}
	select {
	case <-b.lost:
		return true
	default:
		return false
	}
}

// warm returns the number of warm tabs ready now.
func (b *browserProc) warm() int {
	return len(b.spares)
}

// newTab creates a fresh browser context and a tab in it; proxyServer,
// when set, is the context's own proxy (every request of its pages goes
// there, loopback included).
func (b *browserProc) newTab(proxyServer string) (*tab, error) {
	opt := chromedp.WithNewBrowserContext()
	if proxyServer != "" {
		opt = chromedp.WithNewBrowserContext(func(p *target.CreateBrowserContextParams) {
			p.ProxyServer = proxyServer
			// A context's own proxy brings back Chrome's implicit bypass
			// of loopback: turn it off again, or loopback destinations
			// would skip the guard.
			p.ProxyBypassList = "<-loopback>"
		})
	}
	tctx, cancel := chromedp.NewContext(b.ctx, opt)
	// The first run binds the tab's life to tctx, which has no deadline: a
	// job's deadline lives on the contexts derived for its calls. A
	// watchdog bounds it instead: a tab whose renderer died while it was
	// made can leave the first run waiting for ever.
	first := make(chan error, 1)
	go func() { first <- chromedp.Do(tctx) }()
	select {
	case err := <-first:
		if err != nil {
			cancel()
			return nil, err
		}
	case <-time.After(tabOpenTimeout):
		cancel() // the first run ends with it (first is buffered)
		return nil, errTabOpenTimeout
	}
	b.pool.metrics.contexts.Inc()
	c := chromedp.FromContext(tctx)
	t := &tab{ctx: tctx, cancel: cancel, target: c.Target, bctx: c.BrowserContextID}
	// The jobs find elements with scripts, not with chromedp's DOM mirror:
	// turn off the domains that mirror the DOM and the style sheets, which
	// would cost a message for every change of every page. A tab that is
	// not focused gets no focus events: emulate the focus.
	err := parallel(tctx,
		func(ctx context.Context) error {
			_, err := cdp.Call(ctx, t.target, dom.Disable, cdp.Empty{})
			return err
		},
		func(ctx context.Context) error {
			_, err := cdp.Call(ctx, t.target, css.Disable, cdp.Empty{})
			return err
		},
		func(ctx context.Context) error {
			_, err := cdp.Call(ctx, t.target, cdplog.Disable, cdp.Empty{})
			return err
		},
		func(ctx context.Context) error {
			_, err := cdp.Call(ctx, t.target, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
			return err
		},
	)
	if err != nil {
		cancel()
		return nil, err
	}
	return t, nil
}

// startSpares keeps WarmTabs fresh contexts ready until the browser drains or
// stops. It makes them while no job runs on the browser, or right after a job
// ended, so that making one does not slow down the job that took the last.
func (b *browserProc) startSpares() {
	warm := b.pool.cfg.WarmTabs
	if warm == 0 {
		return
	}
	b.pool.bg.Go(func() {
		delay := 100 * time.Millisecond
		triggered := true // the first fill
		for {
			b.pool.mu.Lock()
			over := b.draining || b.closed
			room := len(b.spares) < warm
			calm := b.active == 0
			if !over && room && (calm || triggered) {
				b.making++
			}
			b.pool.mu.Unlock()
			if over || b.isLost() {
				return
			}
			if !room || !(calm || triggered) {
				select {
				case <-b.refill:
					triggered = true
				case <-b.stop:
					return
				}
				continue
			}
			triggered = false
			t, err := b.newTab("")
			if err == nil {
				b.spares <- t // only this goroutine adds: there is room
			}
			b.pool.mu.Lock()
			b.making--
			b.pool.broadcastLocked() // wake the jobs that wait for this tab
			b.pool.mu.Unlock()
			if err != nil {
				select {
				case <-b.stop:
					return
				case <-time.After(delay):
				}
				delay = min(2*delay, 5*time.Second)
				triggered = true
				continue
			}
			delay = 100 * time.Millisecond
		}
	})
}

// jobEnded tells the warm-tab maker that a job ended.
func (b *browserProc) jobEnded() {
	select {
	case b.refill <- struct{}{}:
	default:
	}
}

// takeTab returns a warm tab, or waits for the one being made when no other
// job waits for it (it started earlier, so it is ready sooner than a new
// one), or creates one; all while honouring ctx.
func (b *browserProc) takeTab(ctx context.Context, proxyServer string) (*tab, error) {
	for proxyServer == "" {
		select {
		case t := <-b.spares:
			if t.usable() {
				return t, nil
			}
			b.pool.bg.Go(t.cancel)
			continue
		default:
		}
		b.pool.mu.Lock()
		wait := b.making > b.waiters && !b.closed
		changed := b.pool.changed
		if wait {
			b.waiters++
		}
		b.pool.mu.Unlock()
		if !wait {
			break
		}
		var t *tab
		gaveUp := false
		select {
		case t = <-b.spares:
		case <-changed: // the maker may have failed: look again
		case <-ctx.Done():
		case <-b.stop:
		case <-time.After(makerWait):
			gaveUp = true // the maker is stuck or slow: make a tab of its own
		}
		b.pool.mu.Lock()
		b.waiters--
		b.pool.mu.Unlock()
		if gaveUp {
			break
		}
		switch {
		case t != nil && t.usable():
			return t, nil
		case t != nil:
			b.pool.bg.Go(t.cancel)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
	}
	type made struct {
		t   *tab
		err error
	}
	ch := make(chan made, 1)
	go func() {
		t, err := b.newTab(proxyServer)
		ch <- made{t, err}
	}()
	select {
	case m := <-ch:
		return m.t, m.err
	case <-ctx.Done():
		// Dispose of the tab when it is ready.
		b.pool.bg.Go(func() {
			if m := <-ch; m.t != nil {
				m.t.cancel()
			}
		})
		return nil, ctx.Err()
	}
}

// disposeTab closes the tab and its browser context in the background.
func (b *browserProc) disposeTab(t *tab) {
	b.pool.bg.Go(t.cancel)
}

// usable reports whether the tab is still attached.
func (t *tab) usable() bool {
	if t.ctx.Err() != nil {
		return false
	}
	ch, err := chromedp.Detached(t.ctx)
	if err != nil {
		return false
	}
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// removeAll removes dir, retrying for a moment while late writers finish.
func removeAll(dir string) error {
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := os.RemoveAll(dir)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tabOpenTimeout bounds the making of one tab (a fresh context and its
// first run); makerWait is the longest a job waits for the tab the warm-tab
// maker is making before it makes its own.
const (
	tabOpenTimeout = 15 * time.Second
	makerWait      = 2 * time.Second
)

var errTabOpenTimeout = errors.New("opening a tab timed out")

// dataDirPrefix starts the name of every user data directory of a pool.
const dataDirPrefix = "pagefleet-chrome-"

// maxDirsKept bounds the list of user data directories a pool remembers for
// its checks of leftover processes.
const maxDirsKept = 64

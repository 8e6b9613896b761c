package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// bareChrome is the baseline: the Chrome a plain chromedp program starts
// (chromedp's default options, plus --no-sandbox as root), driven by a loop
// that opens one incognito browser context per page, navigates, reads the
// DOM and closes the context.
type bareChrome struct {
	pid         int
	dir         string
	allocCancel context.CancelFunc
	ctx         context.Context
	cancel      context.CancelFunc
}

// fullChromePath finds full Chromium: the binary a chromedp program
// starts by default, and the bare loop's first baseline.
func fullChromePath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no full Chromium on PATH (apt install chromium)")
}

// shellPath is Debian's chromium-headless-shell binary (the package's
// /usr/bin script does not exec it, so its process would not be Chrome's):
// the fastest binary for the bare loop, and pagefleet's default.
const shellPath = "/usr/lib/chromium/chromium-headless-shell"

func shellChromePath() (string, error) {
	if _, err := os.Stat(shellPath); err != nil {
		return "", errors.New("no chromium-headless-shell (apt install chromium-headless-shell)")
	}
	return shellPath, nil
}

// startBare starts the bare loop's Chrome: path, or full Chromium.
func startBare(path string, extra ...chromedp.ExecAllocatorOption) (*bareChrome, error) {
	if path == "" {
		var err error
		if path, err = fullChromePath(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "pagefleet-bench-bare-")
	if err != nil {
		return nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.UserDataDir(dir))
	opts = append(opts, extra...)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	c := &bareChrome{dir: dir, allocCancel: acancel, ctx: bctx, cancel: bcancel}
	if err := chromedp.Do(bctx); err != nil {
		c.stop()
		return nil, fmt.Errorf("start bare chrome: %w", err)
	}
	if p := chromedp.FromContext(bctx).Browser.Process(); p != nil {
		c.pid = p.Pid
	}
	return c, nil
}

func (c *bareChrome) stop() {
	c.cancel()
	c.allocCancel()
	os.RemoveAll(c.dir)
}

// page renders one URL in a fresh incognito context and returns its DOM.
func (c *bareChrome) page(ctx context.Context, url string) (string, error) {
	tctx, cancel := chromedp.NewContext(c.ctx, chromedp.WithNewBrowserContext())
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	if err := chromedp.Do(tctx, chromedp.Navigate(url)); err != nil {
		return "", err
	}
	return chromedp.Run(tctx, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
}

// run renders n pages with conc goroutines and returns the elapsed time.
// With reuse, each goroutine keeps one incognito context and cleans it
// between pages (cookies, the origin's storage, a blank page): the
// alternative to fresh contexts that BENCHMARKS.md compares. The time
// includes making those contexts.
func (c *bareChrome) run(ctx context.Context, n, conc int, url func(int) string, mark string, reuse bool) (time.Duration, error) {
	start := time.Now()
	var kept contextPool
	if reuse {
		anchors, stop, err := c.anchors(conc)
		if err != nil {
			return 0, err
		}
		defer stop()
		kept = newContextPool(anchors)
	}
	_, err := loop(n, conc, func(i int) error {
		if ctx.Err() != nil {
			return nil
		}
		u := url(i)
		var html string
		var err error
		if reuse {
			err = kept.use(func(tctx context.Context) (err error) {
				html, err = reusePage(tctx, u)
				return err
			})
		} else {
			html, err = c.page(ctx, u)
		}
		if err == nil && !strings.Contains(html, mark) {
			err = fmt.Errorf("%s: the DOM lacks %q", u, mark)
		}
		return err
	})
	return time.Since(start), err
}

// reusePage renders url in a context used before, then cleans the context.
func reusePage(tctx context.Context, url string) (string, error) {
	if err := chromedp.Do(tctx, chromedp.Navigate(url)); err != nil {
		return "", err
	}
	html, err := chromedp.Run(tctx, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
	if err != nil {
		return "", err
	}
	origin := url
	if i := strings.Index(url[len("http://"):], "/"); i >= 0 {
		origin = url[:len("http://")+i]
	}
	err = chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, storage.ClearDataForOrigin, storage.ClearDataForOriginParams{Origin: origin, StorageTypes: "all"})
		return err
	}), chromedp.Navigate("about:blank"))
	return html, err
}

// anchors opens n contexts with a window each, kept until stop: the
// contexts that the reuse variant of BenchmarkContextCost keeps.
func (c *bareChrome) anchors(n int) (anchors []context.Context, stop func(), err error) {
	var cancels []context.CancelFunc
	stop = func() {
		for _, cancel := range cancels {
			cancel()
		}
	}
	for range n {
		actx, cancel := chromedp.NewContext(c.ctx, chromedp.WithNewBrowserContext())
		cancels = append(cancels, cancel)
		if err := chromedp.Do(actx); err != nil {
			stop()
			return nil, nil, err
		}
		anchors = append(anchors, actx)
	}
	return anchors, stop, nil
}

// contexts makes and disposes n contexts with mk from len(anchors)
// goroutines; each call gets an anchor that no other call uses meanwhile.
func (c *bareChrome) contexts(n int, anchors []context.Context, mk func(anchor context.Context) error) (time.Duration, error) {
	free := newContextPool(anchors)
	return loop(n, len(anchors), func(int) error { return free.use(mk) })
}

// contextPool hands out kept chromedp contexts, one caller at a time each.
type contextPool chan context.Context

func newContextPool(ctxs []context.Context) contextPool {
	p := make(contextPool, len(ctxs))
	for _, c := range ctxs {
		p <- c
	}
	return p
}

// use runs fn with a context of the pool that no other call uses meanwhile.
func (p contextPool) use(fn func(context.Context) error) error {
	c := <-p
	defer func() { p <- c }()
	return fn(c)
}

// inNewContext creates an off-the-record browser context, runs fn in it
// and disposes of it.
func (c *bareChrome) inNewContext(fn func(br *chromedp.Browser, id cdp.BrowserContextID) error) error {
	br := chromedp.FromContext(c.ctx).Browser
	res, err := cdp.Call(c.ctx, br, target.CreateBrowserContext, target.CreateBrowserContextParams{})
	if err != nil {
		return err
	}
	err = fn(br, res.BrowserContextID)
	_, derr := cdp.Call(c.ctx, br, target.DisposeBrowserContext, target.DisposeBrowserContextParams{BrowserContextID: res.BrowserContextID})
	return errors.Join(err, derr)
}

func (c *bareChrome) contextOnly(context.Context) error {
	return c.inNewContext(func(*chromedp.Browser, cdp.BrowserContextID) error { return nil })
}

func (c *bareChrome) contextWindow(context.Context) error {
	tctx, cancel := chromedp.NewContext(c.ctx, chromedp.WithNewBrowserContext())
	defer cancel()
	return chromedp.Do(tctx)
}

func (c *bareChrome) keptContextTab(anchor context.Context) error {
	tctx, cancel := chromedp.NewContext(anchor, chromedp.WithNewWindow(false))
	defer cancel()
	return chromedp.Do(tctx)
}

func (c *bareChrome) contextHiddenTab(context.Context) error {
	return c.inNewContext(func(br *chromedp.Browser, id cdp.BrowserContextID) error {
		yes := true
		tab, err := cdp.Call(c.ctx, br, target.CreateTarget, target.CreateTargetParams{
			URL: "about:blank", BrowserContextID: id, Hidden: &yes, Background: &yes})
		if err != nil {
			return err
		}
		tctx, cancel := chromedp.NewContext(c.ctx, chromedp.WithTargetID(tab.TargetID))
		defer cancel()
		return chromedp.Do(tctx)
	})
}

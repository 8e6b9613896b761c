package browser

import (
	"context"
	"strings"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

func init() {
	// A job whose URL asks for it crashes its renderer after the navigation.
	testHookAfterNavigate = func(ctx context.Context, t *chromedp.Target, url string) {
		if strings.Contains(url, "crash-renderer") {
			go cdp.Call(ctx, t, page.Crash, cdp.Empty{})
		}
	}
}

// LeftoverProcesses returns the pids of processes that still use the user
// data directory of a browser the pool started.
func (p *Pool) LeftoverProcesses() []int {
	p.mu.Lock()
	dirs := append([]string(nil), p.dirs...)
	p.mu.Unlock()
	var pids []int
	for _, d := range dirs {
		pids = append(pids, processesUsing(d, false)...)
	}
	return pids
}

// DataDirs returns the user data directories of every browser the pool
// started.
func (p *Pool) DataDirs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.dirs...)
}

// TimeNewTab creates a fresh browser context and tab on the first browser,
// disposes of it, and returns how long the creation took.
func (p *Pool) TimeNewTab() (time.Duration, error) {
	p.mu.Lock()
	if len(p.browsers) == 0 {
		p.mu.Unlock()
		return 0, errPoolStopped
	}
	b := p.browsers[0]
	p.mu.Unlock()
	start := time.Now()
	t, err := b.newTab("")
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	b.disposeTab(t)
	return took, nil
}

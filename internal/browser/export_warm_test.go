package browser

import (
	"context"
	"strings"
	"sync"

	"github.com/chromedp/chromedp"
)

// navigatedTargets records the target of every job whose URL contains
// "isolation-probe", so that a test can tell which tab a job ran in.
var navigatedTargets sync.Map // url → target id

func init() {
	prev := testHookAfterNavigate
	testHookAfterNavigate = func(ctx context.Context, t *chromedp.Target, url string) {
		if prev != nil {
			prev(ctx, t, url)
		}
		if strings.Contains(url, "isolation-probe") {
			navigatedTargets.Store(url, string(t.TargetID))
		}
	}
}

// TargetOf returns the id of the tab the job for url ran in ("" if none).
func TargetOf(url string) string {
	v, _ := navigatedTargets.Load(url)
	s, _ := v.(string)
	return s
}

// SpareTargets returns the tab ids of the warm (pre-created) contexts that
// are ready now. Call it only while no job runs.
func (p *Pool) SpareTargets() []string {
	p.mu.Lock()
	browsers := append([]*browserProc(nil), p.browsers...)
	p.mu.Unlock()
	var ids []string
	for _, b := range browsers {
		var tabs []*tab
		for len(b.spares) > 0 {
			tabs = append(tabs, <-b.spares)
		}
		for _, t := range tabs {
			ids = append(ids, string(t.target.TargetID))
			b.spares <- t
		}
	}
	return ids
}

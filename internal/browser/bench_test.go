package browser_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/pagefleet/pagefleet/internal/browser"
)

// BenchmarkRender renders a trivial page on the shared pool, one job at a
// time.
func BenchmarkRender(b *testing.B) {
	for b.Loop() {
		res, err := pool.Render(context.Background(), browser.Request{URL: ts.URL + "/js"})
		if err != nil || !strings.Contains(res.HTML, "rendered by javascript") {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderParallel renders a trivial page on the shared pool from
// several goroutines at once.
func BenchmarkRenderParallel(b *testing.B) {
	b.SetParallelism(2) // 2 × GOMAXPROCS goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := pool.Render(context.Background(), browser.Request{URL: ts.URL + "/js"})
			if err != nil || !strings.Contains(res.HTML, "rendered by javascript") {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBareChromedp is the baseline: a plain chromedp loop that makes one
// incognito browser context per page, navigates, and reads the DOM.
func BenchmarkBareChromedp(b *testing.B) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.NoSandbox)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(bctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		tctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
		if err := chromedp.Do(tctx, chromedp.Navigate(ts.URL+"/js")); err != nil {
			b.Fatal(err)
		}
		html, err := chromedp.Run(tctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil || !strings.Contains(html, "rendered by javascript") {
			b.Fatal(err)
		}
		cancel()
	}
}

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/internal/config"
)

// partPages is the number of pages one iteration of a part benchmark renders.
var partPages = envInt("PAGEFLEET_BENCH_PART_PAGES", 12)

// partConcurrency is the worker's default concurrency on this machine.
func partConcurrency(b *testing.B) int {
	cfg, err := config.FromEnv()
	if err != nil {
		b.Fatal(err)
	}
	return cfg.Concurrency
}

var partKinds = []struct {
	name string
	url  func(int) string
	mark string
}{
	{"rich", richURL, renderedMark},
	{"trivial", trivialURL, trivialMark},
}

// BenchmarkRenderBare is the bare chromedp loop alone: a fresh incognito
// context per page, and the alternative of one context per goroutine reused
// and cleaned between pages.
func BenchmarkRenderBare(b *testing.B) {
	bare := needBare(b)
	conc := partConcurrency(b)
	for _, k := range partKinds {
		for _, reuse := range []bool{false, true} {
			name := k.name + "/fresh"
			if reuse {
				name = k.name + "/reused-cleaned"
			}
			b.Run(name, func(b *testing.B) {
				ctx := benchCtx(b, 10*time.Minute)
				measurePart(b, "page", partPages, func() []int { return []int{bare.pid} }, func(int) (time.Duration, error) {
					return bare.run(ctx, partPages, conc, k.url, k.mark, reuse)
				})
			})
		}
	}
}

// BenchmarkRenderPool is internal/browser's pool alone (no API, Redis or worker),
// as the worker configures it, with and without warm (pre-created) contexts,
// and with and without resource blocking.
func BenchmarkRenderPool(b *testing.B) {
	conc := partConcurrency(b)
	for _, k := range partKinds {
		for _, v := range []struct {
			name  string
			warm  int
			block bool
		}{
			{"warm1-block", 1, true},
			{"warm0-block", -1, true},
			{"warm2-block", 2, true},
			{"warm1-load", 1, false},
		} {
			b.Run(k.name+"/"+v.name, func(b *testing.B) {
				ctx := benchCtx(b, 10*time.Minute)
				pool, err := browser.New(browser.Config{
					Browsers: 1, ContextsPerBrowser: conc, WarmTabs: v.warm, AllowPrivate: true,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				})
				if err != nil {
					b.Fatal(err)
				}
				if err := pool.Start(ctx); err != nil {
					b.Fatal(err)
				}
				defer func() {
					sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					pool.Stop(sctx)
				}()
				render := func(n, offset int) (time.Duration, error) {
					return loop(n, conc, func(i int) error {
						res, err := pool.Render(ctx, browser.Request{URL: k.url(offset + i), BlockResources: v.block})
						if err == nil && !strings.Contains(res.HTML, k.mark) {
							err = fmt.Errorf("the DOM lacks %q", k.mark)
						}
						return err
					})
				}
				if _, err := render(conc, 0); err != nil { // warm up
					b.Fatal(err)
				}
				time.Sleep(500 * time.Millisecond) // let warm contexts be made
				measurePart(b, "page", partPages, pool.PIDs, func(it int) (time.Duration, error) {
					return render(partPages, 100*it)
				})
			})
		}
	}
}

// BenchmarkContextCost splits what a job's fresh context costs Chrome, with
// no page loaded: an off-the-record browser context alone; a context with a
// tab in a window of its own (what a job gets, and what the bare loop makes);
// a tab opened in the existing window of a context that is kept (the reuse
// alternative); and a hidden tab in a fresh context (Target.createTarget
// hidden: no window, but also no frames: no requestAnimationFrame, no
// IntersectionObserver, no screenshot). Each on chromedp's default flags and
// with the flags of pagefleet's pool that change this cost (internal/browser,
// allocatorOptions).
func BenchmarkContextCost(b *testing.B) {
	conc := partConcurrency(b)
	for _, fl := range []struct {
		name string
		opts []chromedp.ExecAllocatorOption
	}{
		{"default-flags", nil},
		{"pool-flags", []chromedp.ExecAllocatorOption{
			chromedp.Flag("disable-features", "WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIOmniboxFullPopup,SpareRendererForSitePerProcess"),
			chromedp.Flag("in-process-gpu", true),
		}},
	} {
		b.Run(fl.name, func(b *testing.B) {
			c, err := startBare("", fl.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer c.stop()
			anchors, stopAnchors, err := c.anchors(conc)
			if err != nil {
				b.Fatal(err)
			}
			defer stopAnchors()
			for _, v := range []struct {
				name string
				mk   func(anchor context.Context) error
			}{
				{"context-only", c.contextOnly},
				{"context+window", c.contextWindow},
				{"kept-context+new-tab", c.keptContextTab},
				{"context+hidden-tab", c.contextHiddenTab},
			} {
				b.Run(v.name, func(b *testing.B) {
					n := 2 * partPages
					measurePart(b, "context", n, func() []int { return []int{c.pid} }, func(int) (time.Duration, error) {
						return c.contexts(n, anchors, v.mk)
					})
				})
			}
		})
	}
}

// measurePart runs run (given the iteration's number) once per benchmark
// iteration, each doing n units, and reports units/s over the time run
// returns and CPU per unit of the process trees of pids plus this process.
func measurePart(b *testing.B, unit string, n int, pids func() []int, run func(it int) (time.Duration, error)) {
	var total, cpu time.Duration
	it := 0
	for b.Loop() {
		c0 := treeCPU(pids()...) + selfCPU()
		d, err := run(it)
		if err != nil {
			b.Fatal(err)
		}
		cpu += treeCPU(pids()...) + selfCPU() - c0
		total += d
		it++
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), unit+"s/s")
	b.ReportMetric(cpu.Seconds()*1000/float64(n*b.N), "cpu-ms/"+unit)
}

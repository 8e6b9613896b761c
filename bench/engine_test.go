package bench

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

var (
	fullOnce sync.Once
	theFull  *env
	fullErr  error
)

// needEnvFull starts a second pagefleet whose worker runs full Chromium
// (PAGEFLEET_CHROME_PATH=/usr/bin/chromium), for BenchmarkEngines.
func needEnvFull(b *testing.B) *env {
	b.Helper()
	fullOnce.Do(func() {
		path, err := fullChromePath()
		if err != nil {
			fullErr = err
			return
		}
		theFull, fullErr = startEnv("PAGEFLEET_CHROME_PATH=" + path)
	})
	if fullErr != nil {
		b.Fatal(fullErr)
	}
	return theFull
}

// BenchmarkEngines: the same jobs through pagefleet on its default browser
// (chromium-headless-shell) and on full Chromium, for each rendered output
// and for an interact job, alternating rounds in one run. The ratio is the
// shell's pages/s over full Chromium's.
func BenchmarkEngines(b *testing.B) {
	shell := needEnv(b)
	full := needEnvFull(b)
	for _, k := range []struct {
		name string
		req  func(i int) map[string]any
		ok   func(*spec.Job) error
	}{
		{"html", func(i int) map[string]any {
			return map[string]any{"url": shapeURL(i), "render_js": true, "output": []string{"html"}}
		}, hasHTML(shapeMark)},
		{"markdown+links+metadata", func(i int) map[string]any {
			return map[string]any{"url": richURL(i), "render_js": true, "output": []string{"markdown", "links", "metadata"}}
		}, func(j *spec.Job) error {
			if j.Result == nil || j.Result.Markdown == nil || !strings.Contains(*j.Result.Markdown, "Item") {
				return fmt.Errorf("no rendered markdown")
			}
			return nil
		}},
		{"screenshot", func(i int) map[string]any {
			return map[string]any{"url": shapeURL(i), "render_js": true, "output": []string{"screenshot"}}
		}, func(j *spec.Job) error {
			if j.Result == nil || len(j.Result.Screenshot) < 1000 {
				return fmt.Errorf("no screenshot")
			}
			return nil
		}},
		{"interact", func(i int) map[string]any {
			return map[string]any{"url": shapeURL(i), "output": []string{"html"}, "actions": []map[string]any{
				{"type": "wait_for", "selector": "[data-shape=yes]"},
				{"type": "click", "selector": "h1"},
				{"type": "evaluate", "script": "document.title"},
			}}
		}, hasHTML(shapeMark)},
	} {
		b.Run(k.name, func(b *testing.B) {
			ctx := benchCtx(b, 10*time.Minute)
			conc := shell.Concurrency
			for _, e := range []*env{shell, full} {
				if _, err := e.runJobs(ctx, conc, k.req, k.ok); err != nil {
					b.Fatal("warm-up:", err)
				}
			}
			var tShell, tFull, cShell, cFull time.Duration
			for r := 0; r < rounds; r++ {
				req := func(i int) map[string]any { return k.req(r*pagesPerRound + i) }
				for _, m := range []struct {
					e    *env
					t, c *time.Duration
				}{{shell, &tShell, &cShell}, {full, &tFull, &cFull}} {
					c0 := treeCPU(m.e.pids()...)
					d, err := m.e.runJobs(ctx, pagesPerRound, req, k.ok)
					if err != nil {
						b.Fatal(err)
					}
					*m.t += d
					*m.c += treeCPU(m.e.pids()...) - c0
				}
			}
			n := float64(pagesPerRound * rounds)
			ps, pf := n/tShell.Seconds(), n/tFull.Seconds()
			b.ReportMetric(ps, "shell-pages/s")
			b.ReportMetric(pf, "full-pages/s")
			record(figure{
				name:     fmt.Sprintf("pagefleet on the shell vs full Chromium, %s, concurrency %d", k.name, conc),
				value:    fmt.Sprintf("%.2f pages/s, %s CPU/page", ps, cpuPerPage(cShell, n)),
				baseline: fmt.Sprintf("%.2f pages/s, %s CPU/page", pf, cpuPerPage(cFull, n)),
				ratio:    fmt.Sprintf("%.2f×", ps/pf),
				target:   "",
			})
		})
	}
}

func hasHTML(mark string) func(*spec.Job) error {
	return func(j *spec.Job) error {
		if j.Result == nil || j.Result.HTML == nil || !strings.Contains(*j.Result.HTML, mark) {
			return fmt.Errorf("the rendered HTML lacks %q", mark)
		}
		return nil
	}
}

// cpuPerPage is CPU time per page, or "n/a" when a browser recycled during
// the round took its processes' time out of the tree's sum.
func cpuPerPage(c time.Duration, n float64) string {
	if c <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f ms", c.Seconds()*1000/n)
}

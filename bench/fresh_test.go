package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// docsSite is a site of n documentation pages /p/0 … /p/{n-1} that link to
// their children 2i+1 and 2i+2 in a binary tree, to their parent and to
// the first pages. A light page is about 21 KB of HTML and 200 elements:
// a style block, a navigation of 30 links, six sections of text, a table,
// a footer. A typical page is what a documentation site built with a
// JavaScript framework serves, about 135 KB and 1 700 elements: the same,
// plus a larger style block, an inline SVG icon sprite, a sidebar of 120
// entries (each an icon and a label) and a table of contents, a
// syntax-highlighted code example per section (a span per token), and the
// page's data as inline JSON for the framework's scripts.
// Every page has an ETag and answers 304 to a request that names it; the
// site counts its answers of each kind.
type docsSite struct {
	srv          *http.Server
	URL          string
	n            int
	typical      bool
	full, notMod atomic.Int64
	bytes        atomic.Int64 // of the full answers
}

func newDocsSite(n int, typical bool) (*docsSite, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &docsSite{URL: "http://" + ln.Addr().String(), n: n, typical: typical}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /p/{n}", s.page)
	s.srv = &http.Server{Handler: mux}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *docsSite) Close() { s.srv.Close() }

const docsStyle = `body{font-family:system-ui,sans-serif;margin:0;color:#222}nav{background:#f5f5f5;padding:8px}nav a{margin:0 6px;color:#05c}
main{max-width:60em;margin:auto;padding:1em}h1{font-size:2em}h2{border-bottom:1px solid #ddd}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px}footer{font-size:.8em;color:#666;padding:2em}code{background:#eee;padding:0 3px}`

func (s *docsSite) page(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || i < 0 || i >= s.n {
		http.NotFound(w, r)
		return
	}
	etag := fmt.Sprintf(`"doc-%d-v1"`, i)
	w.Header().Set("ETag", etag)
	w.Header().Set("Last-Modified", "Mon, 04 May 2026 10:00:00 GMT")
	if r.Header.Get("If-None-Match") == etag {
		s.notMod.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.full.Add(1)
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	var b strings.Builder
	style := strings.Repeat(docsStyle, 4)
	if s.typical {
		style = strings.Repeat(docsStyle, 24)
	}
	fmt.Fprintf(&b, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Guide %d</title>
<meta name="description" content="Part %d of the guide"><style>%s %s</style></head><body>`, i, i, docsStyle, style)
	if s.typical {
		b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" style="display:none">`)
		for k := 0; k < 40; k++ {
			fmt.Fprintf(&b, `<symbol id="icon-%d" viewBox="0 0 24 24"><path d="M%d 2L%d 7v10l10 5 10-5V7L12 2zm0 2.2l7.8 3.9L12 12 4.2 8.1 12 4.2zM4 9.7l7 3.5v7.6l-7-3.5V9.7zm9 11.1v-7.6l7-3.5v7.6l-7 3.5z"/></symbol>`, k, 10+k%3, 2+k%5)
		}
		b.WriteString(`</svg>`)
	}
	b.WriteString("<nav>")
	if s.typical {
		b.WriteString(`<aside class="sidebar"><ul class="menu">`)
		for g := 0; g < 12; g++ {
			fmt.Fprintf(&b, `<li class="menu__group"><span class="menu__title">%s</span><ul class="menu__list">`, lorem(rng, 2))
			for k := 0; k < 10; k++ {
				fmt.Fprintf(&b, `<li class="menu__item"><a class="menu__link" href="/p/%d"><svg class="icon" aria-hidden="true"><use href="#icon-%d"></use></svg><span class="menu__label">%s</span></a></li>`,
					(g*10+k)%40%s.n, k, lorem(rng, 3))
			}
			b.WriteString(`</ul></li>`)
		}
		b.WriteString(`</ul></aside><div class="toc"><ul>`)
		for k := 0; k < 24; k++ {
			fmt.Fprintf(&b, `<li><a href="#s%d">%s</a></li>`, k, lorem(rng, 3))
		}
		b.WriteString(`</ul></div>`)
	}
	for k := 0; k < 30; k++ {
		fmt.Fprintf(&b, `<a href="/p/%d">Chapter %d</a>`, k%s.n, k)
	}
	fmt.Fprintf(&b, `</nav><main><article><h1>Guide, part %d</h1>`, i)
	for sec := 0; sec < 6; sec++ {
		fmt.Fprintf(&b, "<h2>Section %d.%d</h2>", i, sec+1)
		for p := 0; p < 4; p++ {
			fmt.Fprintf(&b, "<p>%s <code>%s</code> %s.</p>\n", lorem(rng, 70), words[rng.IntN(len(words))], lorem(rng, 20))
		}
		if s.typical {
			b.WriteString(`<div class="code-block"><pre class="language-go"><code>`)
			for line := 0; line < 15; line++ {
				for tok := 0; tok < 8; tok++ {
					fmt.Fprintf(&b, `<span class="token %s">%s</span> `, []string{"keyword", "function", "string", "punctuation"}[tok%4], words[rng.IntN(len(words))])
				}
				b.WriteString("\n")
			}
			b.WriteString(`</code></pre></div>`)
		}
	}
	b.WriteString("<table><tr><th>Option</th><th>Default</th><th>Meaning</th></tr>")
	for k := 0; k < 20; k++ {
		fmt.Fprintf(&b, "<tr><td>opt_%d</td><td>%d</td><td>%s</td></tr>", k, rng.IntN(1000), lorem(rng, 8))
	}
	b.WriteString("</table><p>Next: ")
	for _, c := range []int{2*i + 1, 2*i + 2} {
		if c < s.n {
			fmt.Fprintf(&b, `<a href="/p/%d">part %d</a> `, c, c)
		}
	}
	fmt.Fprintf(&b, `</p><p>Up: <a href="/p/%d">part %d</a></p></article></main><footer>`, max(0, (i-1)/2), max(0, (i-1)/2))
	for k := 0; k < 20; k++ {
		fmt.Fprintf(&b, `<a href="/p/%d#top">%s</a> `, k%s.n, lorem(rng, 2))
	}
	b.WriteString("</footer>")
	if s.typical {
		b.WriteString(`<script id="__PAGE_DATA__" type="application/json">{"props":{"page":{"sections":[`)
		for k := 0; k < 120; k++ {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":"s-%d-%d","title":%q,"anchor":"#s%d","words":%d,"excerpt":%q}`, i, k, lorem(rng, 4), k, rng.IntN(900), lorem(rng, 40))
		}
		b.WriteString(`]}},"buildId":"b-20260504","locale":"en"}</script><script>window.__analytics=function(){var q=[];return {push:function(e){q.push(e)}}}();</script>`)
	}
	b.WriteString("</body></html>")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	s.bytes.Add(int64(b.Len()))
	w.Write([]byte(b.String()))
}

// crawlOnce runs one crawl of the site to completion and returns the CPU
// time the worker (with its Chrome, idle here) and the api with Redis took
// during it, and how long it took.
func (e *env) crawlOnce(ctx context.Context, body []byte) (worker, rest, took time.Duration, b spec.Batch, err error) {
	if err := e.drain(ctx); err != nil {
		return 0, 0, 0, b, err
	}
	w0, r0 := treeCPU(e.worker.PID()), treeCPU(e.api.PID(), e.redis.Process.Pid)
	start := time.Now()
	var acc spec.BatchAccepted
	if _, err := e.do(ctx, "POST", "/v1/batches", body, &acc); err != nil {
		return 0, 0, 0, b, err
	}
	for {
		b = spec.Batch{}
		if _, err := e.do(ctx, "GET", "/v1/batches/"+acc.ID, nil, &b); err != nil {
			return 0, 0, 0, b, err
		}
		if b.Done() {
			break
		}
		select {
		case <-ctx.Done():
			return 0, 0, 0, b, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	took = time.Since(start)
	if err := e.drain(ctx); err != nil {
		return 0, 0, 0, b, err
	}
	return treeCPU(e.worker.PID()) - w0, treeCPU(e.api.PID(), e.redis.Process.Pid) - r0, took, b, nil
}

// BenchmarkRevalidation: the worker CPU of a second crawl of an unchanged
// 1 000-page site (plain fetches, markdown and links) that revalidates its
// cached results (max_age_ms 0: every page is sent If-None-Match, and the
// site answers 304), against the first crawl of the same site in the same
// run, which fetched, converted and cached every page: on typical pages
// (about 135 KB of HTML) and on light ones (about 21 KB).
func BenchmarkRevalidation(b *testing.B) {
	for _, typical := range []bool{true, false} {
		name := "light"
		if typical {
			name = "typical"
		}
		b.Run(name, func(b *testing.B) { benchRevalidation(b, typical) })
	}
}

func benchRevalidation(b *testing.B, typical bool) {
	e := needEnv(b)
	ctx := benchCtx(b, 15*time.Minute)
	const pages = 1000
	site, err := newDocsSite(pages, typical)
	if err != nil {
		b.Fatal(err)
	}
	defer site.Close()
	kind := "light"
	if typical {
		kind = "typical"
	}
	body, _ := json.Marshal(map[string]any{
		"crawl":    map[string]any{"start_url": site.URL + "/p/0", "max_depth": 12, "max_pages": pages, "sitemap": "skip"},
		"template": map[string]any{"output": []string{"markdown", "links"}, "max_age_ms": 0},
	})
	w1, r1, t1, b1, err := e.crawlOnce(ctx, body)
	if err != nil {
		b.Fatal("first crawl:", err)
	}
	full1, nm1 := site.full.Load(), site.notMod.Load()
	var wait []func()
	if profileDir != "" {
		wait = append(wait, e.worker.profile(profileDir, "revalidation-"+kind, 5*time.Second))
	}
	w2, r2, t2, b2, err := e.crawlOnce(ctx, body)
	for _, w := range wait {
		w()
	}
	if err != nil {
		b.Fatal("second crawl:", err)
	}
	full2, nm2 := site.full.Load()-full1, site.notMod.Load()-nm1
	if b1.Succeeded != pages || b2.Succeeded != pages {
		b.Fatalf("crawls: %d and %d pages succeeded, want %d", b1.Succeeded, b2.Succeeded, pages)
	}
	ratio := w2.Seconds() / w1.Seconds()
	b.ReportMetric(ratio, "cpu-ratio")
	b.ReportMetric(float64(nm2)/float64(full2+nm2), "304-share")
	target := "≤ 0.20×"
	if !typical {
		target = ""
	}
	record(figure{
		name: fmt.Sprintf("worker CPU, second crawl of an unchanged 1 000-page site (revalidated), %s pages (%.0f KB HTML)",
			kind, float64(site.bytes.Load())/float64(full1)/1000),
		value:    fmt.Sprintf("%.2f s (%.2f ms/page)", w2.Seconds(), w2.Seconds()*1000/pages),
		baseline: fmt.Sprintf("%.2f s first crawl (%.2f ms/page)", w1.Seconds(), w1.Seconds()*1000/pages),
		ratio:    fmt.Sprintf("%.2f×", ratio),
		target:   target,
	})
	record(figure{
		name:     fmt.Sprintf("site answers during the second crawl, %s pages: 304 / all", kind),
		value:    fmt.Sprintf("%d / %d", nm2, full2+nm2),
		baseline: fmt.Sprintf("first crawl: %d full, %d 304", full1, nm1),
	})
	note("revalidation, %s pages: api+redis CPU %.2f s first crawl, %.2f s second; wall %.1f s and %.1f s",
		kind, r1.Seconds(), r2.Seconds(), t1.Seconds(), t2.Seconds())
}

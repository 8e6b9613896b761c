package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Site is a local fixture site that records what it served.
type Site struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
	log  []Hit
}

// Hit is one request the site saw.
type Hit struct {
	Path   string
	Cookie string
	At     time.Time
	End    time.Time
	Header http.Header
}

func (s *Site) record(r *http.Request) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits[r.URL.Path]++
	s.log = append(s.log, Hit{Path: r.URL.Path + "?" + r.URL.RawQuery, Cookie: r.Header.Get("Cookie"), At: time.Now(), Header: r.Header.Clone()})
	return len(s.log) - 1
}

// Hits is how often path was requested.
func (s *Site) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// Log returns a copy of every request seen.
func (s *Site) Log() []Hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Hit(nil), s.log...)
}

// NewSite serves the fixture pages; extra handlers override by path.
func NewSite(t testing.TB, extra map[string]http.HandlerFunc) *Site {
	s := &Site{hits: map[string]int{}}
	mux := http.NewServeMux()
	for p, h := range pages {
		mux.HandleFunc(p, h)
	}
	for p, h := range extra {
		mux.HandleFunc(p, h)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.record(r)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func html(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, body)
	}
}

var pages = map[string]http.HandlerFunc{
	"/js": html(`<!doctype html><html lang="en"><head><title>JS page</title></head><body>
<h1>Static heading</h1><div id="out"></div>
<script>document.getElementById('out').textContent = 'rendered-by-' + 'javascript';</script>
</body></html>`),
	"/article": html(`<!doctype html><html lang="en"><head><title>The Article</title>
<meta name="description" content="An article about fixtures.">
<link rel="canonical" href="/article">
<meta property="og:title" content="OG Article"></head><body>
<nav><a href="/nav-only">nav</a></nav>
<main><article>
<h1>Fixture Article</h1>
<p>Intro with a <a href="/docs/page?x=1#frag">relative link</a> and <a href="https://other.example/abs">absolute</a>.</p>
<h2>Data</h2>
<table><thead><tr><th>Name</th><th>Qty</th></tr></thead><tbody><tr><td>Apple</td><td>3</td></tr><tr><td>Pear</td><td>5</td></tr></tbody></table>
<p>Again <a href="/docs/page?x=1">relative link</a>.</p>
</article></main><footer>footer text</footer></body></html>`),
	"/missing": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(404)
		fmt.Fprint(w, `<html><body><h1>Not here</h1></body></html>`)
	},
	"/slow": func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		if d == 0 {
			d = 3 * time.Second
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		html(`<html><body><p id="slow">slow page done</p></body></html>`)(w, r)
	},
	"/plain": html(`<html><head><title>plain</title></head><body><p>plain body</p></body></html>`),
}

func contains(s *string, sub string) bool { return s != nil && strings.Contains(*s, sub) }

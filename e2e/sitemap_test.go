package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// sitemapSite is a site whose robots.txt names a sitemap index, which lists
// a gzip sitemap of two pages: one the start page links to, one nothing
// links to. The start page also links to a page no sitemap lists, and to
// an alias whose canonical URL is a page the alias links to.
type sitemapSite struct {
	*Site
}

func newSitemapSite(t *testing.T) *sitemapSite {
	s := &sitemapSite{}
	gzipped := func(body string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(body))
		zw.Close()
		return b.Bytes()
	}
	s.Site = NewSite(t, map[string]http.HandlerFunc{
		"/robots.txt": func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "User-agent: *\nAllow: /\nSitemap: %s/sitemap-index.xml\n", s.URL)
		},
		"/sitemap-index.xml": func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>%s/sm/pages.xml.gz</loc></sitemap></sitemapindex>`, s.URL)
		},
		"/sm/pages.xml.gz": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-gzip")
			w.Write(gzipped(fmt.Sprintf(`<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">`+
				`<url><loc>%[1]s/only-in-sitemap</loc><lastmod>2026-11-20</lastmod></url><url><loc>%[1]s/linked</loc></url></urlset>`, s.URL)))
		},
		"/home":            html(`<html><body><a href="/linked">linked</a> <a href="/link-only">link only</a> <a href="/alias">alias</a></body></html>`),
		"/linked":          html(`<html><body><p>linked</p></body></html>`),
		"/link-only":       html(`<html><body><p>link only</p></body></html>`),
		"/only-in-sitemap": html(`<html><body><p>only in the sitemap</p></body></html>`),
		"/alias":           html(`<html><head><link rel="canonical" href="/canon"></head><body><a href="/canon">the canonical page</a></body></html>`),
		"/canon":           html(`<html><body><p>canonical</p></body></html>`),
	})
	return s
}

// TestCrawlSitemaps: a crawl with sitemap "include" visits a page that only
// the sitemap lists (gzip, inside an index, named by robots.txt), with its
// discovered_by and lastmod; "only" visits no linked page; "skip" no
// sitemap page. A page's canonical URL counts as visited.
func TestCrawlSitemaps(t *testing.T) {
	t.Parallel()
	e := Start(t, Options{Workers: 1, Concurrency: 4})
	for _, tt := range []struct {
		sitemap string
		want    []string
	}{
		{"include", []string{"/home", "/linked", "/link-only", "/alias", "/only-in-sitemap"}},
		{"only", []string{"/home", "/linked", "/only-in-sitemap"}},
		{"skip", []string{"/home", "/linked", "/link-only", "/alias"}},
	} {
		t.Run(tt.sitemap, func(t *testing.T) {
			site := newSitemapSite(t)
			acc, _ := e.SubmitBatch(keyA, map[string]any{"crawl": map[string]any{"start_url": site.URL + "/home", "max_depth": 2, "sitemap": tt.sitemap}})
			b, _ := e.WaitBatch(keyA, acc.ID, 50*time.Millisecond, time.Minute)
			e.Drain(t, time.Minute)
			jobs := e.BatchJobs(keyA, acc.ID, 100)
			got := map[string]spec.Job{}
			for _, j := range jobs {
				got[strings.TrimPrefix(j.URL, site.URL)] = j
			}
			if b.Succeeded != len(tt.want) || len(got) != len(tt.want) {
				t.Errorf("crawl visited %v (%+v), want %v", keys(got), b, tt.want)
			}
			for _, p := range tt.want {
				if _, ok := got[p]; !ok {
					t.Errorf("%s not visited", p)
				}
				if n := site.Hits(p); n != 1 {
					t.Errorf("%s fetched %d times, want once", p, n)
				}
			}
			if site.Hits("/canon") != 0 {
				t.Errorf("/canon fetched, but /alias names it canonical")
			}
			if j := got["/home"]; j.DiscoveredBy != spec.DiscoveredStart {
				t.Errorf("start page discovered_by %q", j.DiscoveredBy)
			}
			if j, ok := got["/only-in-sitemap"]; ok && (j.DiscoveredBy != spec.DiscoveredSitemap || j.Lastmod != "2026-11-20") {
				t.Errorf("sitemap page: discovered_by %q lastmod %q", j.DiscoveredBy, j.Lastmod)
			}
			if j, ok := got["/link-only"]; ok && j.DiscoveredBy != spec.DiscoveredLink {
				t.Errorf("linked page: discovered_by %q", j.DiscoveredBy)
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestMap: POST /v1/map lists a site's URLs from its sitemaps and its start
// page with plain HTTP only (no job, no browser), filtered, searched and
// limited; a sitemap of 60 000 URLs is cut at the protocol's 50 000.
func TestMap(t *testing.T) {
	t.Parallel()
	e := Start(t, Options{Workers: 1, Concurrency: 2})
	site := newSitemapSite(t)
	var res spec.MapResult
	resp := e.Do("POST", "/v1/map", keyA, []byte(fmt.Sprintf(`{"url":%q}`, site.URL+"/home")), &res)
	if resp.StatusCode != 200 {
		t.Fatalf("map: %d", resp.StatusCode)
	}
	sources := map[string]string{}
	for _, u := range res.URLs {
		sources[strings.TrimPrefix(u.URL, site.URL)] = u.Source
	}
	want := map[string]string{"/only-in-sitemap": "sitemap", "/linked": "sitemap", "/home": "page", "/link-only": "page", "/alias": "page"}
	for p, src := range want {
		if sources[p] != src {
			t.Errorf("%s: source %q, want %q (all: %v)", p, sources[p], src, sources)
		}
	}
	if len(res.URLs) != len(want) || res.Truncated {
		t.Errorf("map: %+v", res)
	}
	// Search, limit and filters.
	e.Do("POST", "/v1/map", keyA, []byte(fmt.Sprintf(`{"url":%q,"search":"ONLY sitemap"}`, site.URL+"/home")), &res)
	if len(res.URLs) != 1 || !strings.HasSuffix(res.URLs[0].URL, "/only-in-sitemap") || res.URLs[0].Lastmod != "2026-11-20" {
		t.Errorf("search: %+v", res)
	}
	e.Do("POST", "/v1/map", keyA, []byte(fmt.Sprintf(`{"url":%q,"limit":2,"exclude":["^/alias$"]}`, site.URL+"/home")), &res)
	if len(res.URLs) != 2 || !res.Truncated {
		t.Errorf("limit 2: %+v", res)
	}
	// Bad input names its field.
	var p spec.Problem
	resp = e.Do("POST", "/v1/map", keyA, []byte(`{"url":"ftp://x","limit":100001,"sitemap":"all","include":["("]}`), &p)
	fields := map[string]bool{}
	for _, f := range p.Errors {
		fields[f.Field] = true
	}
	if resp.StatusCode != 422 || !fields["url"] || !fields["limit"] || !fields["sitemap"] || !fields["include[0]"] {
		t.Errorf("bad map: %d %+v", resp.StatusCode, p)
	}
	// A sitemap of 60 000 URLs gives the first 50 000: the file is cut at
	// the protocol's bound, not read whole.
	big := NewSite(t, map[string]http.HandlerFunc{"/sitemap.xml": func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">`)
		for i := range 60000 {
			fmt.Fprintf(w, "<url><loc>http://%s/many/%d</loc></url>\n", r.Host, i)
		}
		fmt.Fprint(w, `</urlset>`)
	}})
	resp = e.Do("POST", "/v1/map", keyA, []byte(fmt.Sprintf(`{"url":%q,"limit":100000,"sitemap":"only"}`, big.URL+"/")), &res)
	if resp.StatusCode != 200 || len(res.URLs) != 50000 || !res.Truncated {
		t.Errorf("60 000-URL sitemap: %d, %d URLs, truncated %v; want the first 50 000, truncated", resp.StatusCode, len(res.URLs), res.Truncated)
	}
	// No job ran: the worker did nothing.
	if v, err := e.workerMetric(0, "pagefleet_job_run_seconds_count"); err == nil && v != 0 {
		t.Errorf("the worker ran %v jobs for maps", v)
	}
}

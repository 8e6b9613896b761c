package crawl

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/fetch"
)

func urlset(n int, base string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">`)
	for i := range n {
		fmt.Fprintf(&b, "<url><loc>%s/p/%d</loc><lastmod>2026-11-%02d</lastmod></url>\n", base, i, 1+i%28)
	}
	b.WriteString(`</urlset>`)
	return b.String()
}

func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func TestParseSitemap(t *testing.T) {
	e, index, cut, err := ParseSitemap(strings.NewReader(urlset(3, "http://s.test")), MaxSitemapBytes, MaxSitemapURLs)
	if err != nil || index || cut || len(e) != 3 || e[2].URL != "http://s.test/p/2" || e[2].Lastmod != "2026-11-03" {
		t.Fatalf("urlset: %v %v %v %v", e, index, cut, err)
	}
	idx := `<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc> http://s.test/a.xml.gz </loc></sitemap></sitemapindex>`
	e, index, _, err = ParseSitemap(bytes.NewReader(gz(idx)), MaxSitemapBytes, MaxSitemapURLs)
	if err != nil || !index || len(e) != 1 || e[0].URL != "http://s.test/a.xml.gz" {
		t.Fatalf("gzip index: %v %v %v", e, index, err)
	}
	// Cut at the URL bound without reading the rest.
	e, _, cut, err = ParseSitemap(strings.NewReader(urlset(60000, "http://s.test")), MaxSitemapBytes, MaxSitemapURLs)
	if err != nil || !cut || len(e) != MaxSitemapURLs {
		t.Fatalf("60 000 URLs: %d entries, cut %v, %v", len(e), cut, err)
	}
	// Cut at the byte bound.
	big := urlset(20000, "http://s.test/"+strings.Repeat("x", 2000))
	e, _, cut, err = ParseSitemap(strings.NewReader(big), 5<<20, MaxSitemapURLs)
	if err != nil || !cut || len(e) == 0 || len(e) >= 20000 {
		t.Fatalf("byte bound: %d entries, cut %v, %v", len(e), cut, err)
	}
	// Prefixed names, Latin-1.
	latin := "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><sm:urlset xmlns:sm=\"http://www.sitemaps.org/schemas/sitemap/0.9\"><sm:url><sm:loc>http://s.test/caf\xe9</sm:loc></sm:url></sm:urlset>"
	e, _, _, err = ParseSitemap(strings.NewReader(latin), MaxSitemapBytes, MaxSitemapURLs)
	if err != nil || len(e) != 1 || e[0].URL != "http://s.test/café" {
		t.Fatalf("latin-1, prefixed: %v %v", e, err)
	}
}

// Sitemaps follows robots.txt's Sitemap: lines through an index to gzip
// files, over real HTTP.
func TestSitemaps(t *testing.T) {
	mux := http.NewServeMux()
	var base string
	mux.HandleFunc("/index.xml", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<sitemapindex><sitemap><loc>%s/a.xml.gz</loc></sitemap><sitemap><loc>%s/b.xml</loc></sitemap><sitemap><loc>%s/missing.xml</loc></sitemap></sitemapindex>`, base, base, base)
	})
	mux.HandleFunc("/a.xml.gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-gzip")
		w.Write(gz(urlset(3, base+"/a")))
	})
	mux.HandleFunc("/b.xml", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, urlset(2, base+"/b")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	base = srv.URL
	fc := fetch.New(fetch.Config{Policy: &egress.Policy{AllowPrivate: true}})
	pages, cut := Sitemaps(context.Background(), fc, srv.URL, []string{srv.URL + "/index.xml"}, 100)
	if cut || len(pages) != 5 || pages[0].URL != base+"/a/p/0" || pages[4].URL != base+"/b/p/1" {
		t.Fatalf("pages %v, cut %v", pages, cut)
	}
	pages, cut = Sitemaps(context.Background(), fc, srv.URL, []string{srv.URL + "/index.xml"}, 4)
	if !cut || len(pages) != 4 {
		t.Fatalf("limit 4: %d pages, cut %v", len(pages), cut)
	}
	// No Sitemap: line: /sitemap.xml, which is missing here.
	if pages, _ := Sitemaps(context.Background(), fc, srv.URL, nil, 100); len(pages) != 0 {
		t.Fatalf("no sitemap: %v", pages)
	}
}

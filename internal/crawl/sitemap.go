package crawl

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/net/html/charset"

	"github.com/pagefleet/pagefleet/internal/fetch"
)

// Bounds of sitemaps, per file as the sitemaps protocol sets them, and per
// crawl or map.
const (
	MaxSitemapURLs  = 50000
	MaxSitemapBytes = 50 << 20
	// MaxSitemapFiles bounds the sitemap files one crawl or map reads
	// (indexes included).
	MaxSitemapFiles = 100
	// maxSitemapDepth bounds the nesting of sitemap indexes.
	maxSitemapDepth = 3
	sitemapTimeout  = 60 * time.Second
)

// SitemapEntry is a <url> of a sitemap (or a <sitemap> of an index).
type SitemapEntry struct {
	URL     string
	Lastmod string
}

// ErrSitemapTooLarge is set on a sitemap cut at its bound.
var ErrSitemapTooLarge = errors.New("sitemap cut at its bound")

// ParseSitemap reads a sitemap or a sitemap index from r, gzip-compressed
// or not (told by its first bytes), streaming: at most maxBytes of XML and
// maxURLs entries are read, the rest is left (cut reports it). index says
// the entries are sitemaps, not pages.
func ParseSitemap(r io.Reader, maxBytes int64, maxURLs int) (entries []SitemapEntry, index, cut bool, err error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, false, false, fmt.Errorf("sitemap gzip: %w", err)
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	lr := &io.LimitedReader{R: r, N: maxBytes + 1}
	dec := xml.NewDecoder(lr)
	dec.Strict = false
	dec.CharsetReader = charset.NewReaderLabel
	var cur *SitemapEntry
	var field string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			if lr.N <= 0 {
				return entries, index, true, nil // cut mid-element at the byte bound
			}
			if len(entries) > 0 {
				return entries, index, true, nil // what came before the damage stands
			}
			return nil, false, false, fmt.Errorf("sitemap XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "sitemapindex":
				index = true
			case "url", "sitemap":
				cur = &SitemapEntry{}
			case "loc", "lastmod":
				field = t.Name.Local
			}
		case xml.CharData:
			if cur != nil {
				switch field {
				case "loc":
					cur.URL += string(t)
				case "lastmod":
					cur.Lastmod += string(t)
				}
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "loc", "lastmod":
				field = ""
			case "url", "sitemap":
				if cur != nil {
					cur.URL, cur.Lastmod = strings.TrimSpace(cur.URL), strings.TrimSpace(cur.Lastmod)
					if cur.URL != "" {
						entries = append(entries, *cur)
						if len(entries) >= maxURLs {
							return entries, index, true, nil
						}
					}
				}
				cur = nil
			}
		}
		if lr.N <= 0 {
			return entries, index, true, nil
		}
	}
	return entries, index, false, nil
}

// Opener fetches a file whose body the caller reads (fetch.Client.Open).
type Opener interface {
	Open(ctx context.Context, req fetch.Request) (*fetch.Stream, error)
}

// Sitemaps reads the sitemaps of a site: the files listed (robots.txt's
// Sitemap: lines), else origin's /sitemap.xml, following indexes (at most
// 3 deep, MaxSitemapFiles files in all), each file bounded to
// MaxSitemapURLs entries and MaxSitemapBytes, and returns at most limit
// page entries, in the files' order; cut reports that more were left
// unread. A file that cannot be read is skipped.
func Sitemaps(ctx context.Context, o Opener, origin string, listed []string, limit int) (pages []SitemapEntry, cut bool) {
	type file struct {
		url   string
		depth int
	}
	var queue []file
	for _, u := range listed {
		queue = append(queue, file{url: u})
	}
	if len(queue) == 0 {
		queue = append(queue, file{url: origin + "/sitemap.xml"})
	}
	seen := map[string]bool{}
	read := 0
	for len(queue) > 0 && len(pages) < limit {
		f := queue[0]
		queue = queue[1:]
		if seen[f.url] {
			continue
		}
		seen[f.url] = true
		if read == MaxSitemapFiles {
			return pages, true
		}
		read++
		entries, index, fileCut, err := readSitemap(ctx, o, f.url, min(MaxSitemapURLs, limit-len(pages)+1))
		if err != nil {
			continue
		}
		cut = cut || fileCut
		if index {
			if f.depth+1 < maxSitemapDepth {
				for _, e := range entries {
					queue = append(queue, file{url: e.URL, depth: f.depth + 1})
				}
			}
			continue
		}
		for _, e := range entries {
			if len(pages) == limit {
				return pages, true
			}
			pages = append(pages, e)
		}
	}
	return pages, cut || len(queue) > 0
}

func readSitemap(ctx context.Context, o Opener, url string, maxURLs int) ([]SitemapEntry, bool, bool, error) {
	st, err := o.Open(ctx, fetch.Request{URL: url, Timeout: sitemapTimeout})
	if err != nil {
		return nil, false, false, err
	}
	defer st.Body.Close()
	if st.StatusCode < 200 || st.StatusCode > 299 {
		return nil, false, false, fmt.Errorf("sitemap %s: status %d", url, st.StatusCode)
	}
	return ParseSitemap(st.Body, MaxSitemapBytes, maxURLs)
}

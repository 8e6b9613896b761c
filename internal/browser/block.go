package browser

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
)

// How a job blocks images, media and fonts (Request.BlockResources).
//
// Pausing each request in the browser (the Fetch domain, by resource type)
// costs a round trip to the worker per blocked request, and routes every
// request of the page through the browser's interceptor: ≈ 10 % of the CPU
// of a page with a few images and fonts (BENCHMARKS.md). So a job first
// blocks by name: Network.setBlockedURLs fails, in the renderer and before
// any request is made, the URLs whose path ends with a file extension of an
// image, font or media file. A resource whose URL has no such extension
// (an image service's /image?id=…) is not recognised by name; the job sees
// it load in the main frame (Network.responseReceived of type Image, Font
// or Media; SVG images aside), and the pool remembers the page's host for
// typeHostsTTL: the tenant's later jobs on that host, on this worker, also
// block by resource type through the Fetch domain. A job that has the
// Fetch domain on anyway (it moves session state) always blocks by type
// too.

// blockedExtensions are the extensions blockByName recognises. SVG is left
// out: a sprite that <use> references is not an image request.
var blockedExtensions = []string{
	"png", "jpg", "jpeg", "jfif", "pjpeg", "pjp", "gif", "webp", "avif", "apng", "bmp", "ico", "cur",
	"tif", "tiff", "heic", "heif", "jxl",
	"woff", "woff2", "ttf", "otf", "eot",
	"mp4", "m4v", "webm", "mov", "ogv", "ogg", "oga", "mp3", "m4a", "aac", "wav", "flac", "opus", "mkv",
}

// blockPatterns are the Network.setBlockedURLs patterns of blockByName, in
// lower and upper case (URL patterns are case-sensitive).
var blockPatterns = func() []*network.BlockPattern {
	out := make([]*network.BlockPattern, 0, 2*len(blockedExtensions))
	for _, ext := range blockedExtensions {
		out = append(out,
			&network.BlockPattern{URLPattern: "*://*:*/*." + ext, Block: true},
			&network.BlockPattern{URLPattern: "*://*:*/*." + strings.ToUpper(ext), Block: true})
	}
	return out
}()

// blockByName makes the tab fail requests whose URL path ends with one of
// blockedExtensions. A main-frame navigation is not affected (Chrome applies
// the blocked URLs to subresources), so a page at /photo.png still loads.
func (j *job) blockByName(ctx context.Context) error {
	_, err := cdp.Call(ctx, j.t, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: blockPatterns})
	return err
}

// blockedTypes are the resource types that BlockResources blocks.
var blockedTypes = []network.ResourceType{network.ResourceTypeImage, network.ResourceTypeMedia, network.ResourceTypeFont}

// isBlockedType reports whether t is one of blockedTypes.
func isBlockedType(t network.ResourceType) bool { return slices.Contains(blockedTypes, t) }

// missedByName reports whether r, the response of an image, font or media
// request of a job that blocks them, is one that blockByName should have
// blocked and could not: an http(s) URL without a recognised extension. An
// SVG image is left to load on purpose (see blockedExtensions) and does not
// count.
func missedByName(r *network.Response) bool {
	if r == nil || !(strings.HasPrefix(r.URL, "http://") || strings.HasPrefix(r.URL, "https://")) {
		return false
	}
	if strings.HasPrefix(strings.ToLower(r.MimeType), "image/svg") {
		return false
	}
	u, err := url.Parse(r.URL)
	return err == nil && !strings.HasSuffix(strings.ToLower(u.Path), ".svg")
}

// typeHostsTTL is how long the pool remembers a host whose pages load
// images, fonts or media that blockByName does not recognise.
const typeHostsTTL = time.Hour

// maxTypeHosts bounds the hosts remembered.
const maxTypeHosts = 10000

// typeHosts are the hosts whose jobs block by resource type, keyed by
// tenant and host.
type typeHosts struct {
	mu    sync.Mutex
	hosts map[string]time.Time // host → when it was last seen loading one
}

// needs reports whether jobs on host block by type.
func (h *typeHosts) needs(host string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.hosts[host]
	if ok && time.Since(at) > typeHostsTTL {
		delete(h.hosts, host)
		return false
	}
	return ok
}

// note remembers host.
func (h *typeHosts) note(host string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hosts == nil {
		h.hosts = map[string]time.Time{}
	}
	if _, ok := h.hosts[host]; !ok && len(h.hosts) >= maxTypeHosts {
		// Full: drop what expired, else the entry seen longest ago. Losing
		// an entry costs speed, not correctness: that host's next job
		// blocks by name first again.
		var oldest string
		var oldestAt time.Time
		for k, at := range h.hosts {
			if time.Since(at) > typeHostsTTL {
				delete(h.hosts, k)
			} else if oldest == "" || at.Before(oldestAt) {
				oldest, oldestAt = k, at
			}
		}
		if len(h.hosts) >= maxTypeHosts {
			delete(h.hosts, oldest)
		}
	}
	h.hosts[host] = time.Now()
}

// hostOf returns the lower-case host (with port) of raw, or "".
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}

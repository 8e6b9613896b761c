package bench

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Delays of the fixture site: what a real origin and its CDN take to answer,
// small enough to keep the benchmark short.
const (
	docDelay     = 10 * time.Millisecond // HTML of rich pages
	staticDelay  = 15 * time.Millisecond // CSS and scripts
	imageDelay   = 60 * time.Millisecond
	fontDelay    = 80 * time.Millisecond
	articleDelay = 50 * time.Millisecond // time to first byte of a static article
	richImages   = 6                     // images a rich page's script adds
	renderedMark = `data-rendered="yes"` // set by the rich page's script
	shapeMark    = `data-shape="yes"`    // set by the shape page's script
	shapeDelay   = 50 * time.Millisecond // a shape page's images
	trivialMark  = "rendered by javascript"
)

// site is the fixture site: a loopback server with
//
//	/rich/{n}      a product page: a style sheet with two web fonts and a
//	               background image, two deferred scripts, a logo, and a body
//	               that the script renders from inline JSON with six images
//	/trivial       a tiny page whose inline script writes its text
//	/article/{n}   a plain static article (headings, a table, links), served
//	               after articleDelay (?d=D: after D)
//	/tiny          a few bytes, at once (submit-latency jobs)
//	/robots.txt    names /sitemap-index.xml
//	/sitemap-index.xml, /sitemaps/{0,1}.xml.gz
//	               an index of two gzip sitemaps of 50 000 article URLs each
//
// ?slow=D on a rich page holds its images for D (a Go duration), so that
// jobs overlap for the memory measurement.
type site struct {
	srv  *http.Server
	ln   net.Listener
	URL  string
	png  []byte
	font []byte
}

func newSite() (*site, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &site{ln: ln, URL: "http://" + ln.Addr().String(), png: fixturePNG(), font: fixtureFont()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rich/{n}", s.rich)
	mux.HandleFunc("GET /trivial", s.trivial)
	mux.HandleFunc("GET /shape/{n}", s.shape)
	mux.HandleFunc("GET /shape/{n}/{img}", func(w http.ResponseWriter, r *http.Request) {
		sleep(r, shapeDelay)
		w.Header().Set("Content-Type", "image/png")
		w.Write(s.png)
	})
	mux.HandleFunc("GET /static/shape.css", s.static("text/css", "body{font-family:sans-serif;margin:2em} img{width:240px;height:160px}"))
	mux.HandleFunc("GET /static/shape.js", s.static("text/javascript", shapeJS))
	mux.HandleFunc("GET /article/{n}", s.article)
	mux.HandleFunc("GET /tiny", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte("<!doctype html><title>tiny</title><p>tiny</p>"))
	})
	mux.HandleFunc("GET /static/site.css", s.static("text/css", siteCSS))
	mux.HandleFunc("GET /static/vendor.js", s.static("text/javascript", vendorJS))
	mux.HandleFunc("GET /static/app.js", s.static("text/javascript", appJS))
	mux.HandleFunc("GET /img/{name}", s.image)
	mux.HandleFunc("GET /font/{name}", s.fontFile)
	mux.HandleFunc("GET /robots.txt", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "User-agent: *\nAllow: /\nSitemap: %s/sitemap-index.xml\n", s.URL)
	})
	mux.HandleFunc("GET /sitemap-index.xml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">`+
			`<sitemap><loc>%[1]s/sitemaps/0.xml.gz</loc></sitemap><sitemap><loc>%[1]s/sitemaps/1.xml.gz</loc></sitemap></sitemapindex>`, s.URL)
	})
	mux.HandleFunc("GET /sitemaps/{file}", s.sitemap)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *site) Close() { s.srv.Close() }

// sleep waits d, or less when the client went away.
func sleep(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

func (s *site) static(ctype, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sleep(r, staticDelay)
		w.Header().Set("Content-Type", ctype+"; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write([]byte(body))
	}
}

func (s *site) image(w http.ResponseWriter, r *http.Request) {
	d := imageDelay
	if v, err := time.ParseDuration(r.URL.Query().Get("slow")); err == nil {
		d = v
	}
	sleep(r, d)
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(s.png)
}

func (s *site) fontFile(w http.ResponseWriter, r *http.Request) {
	sleep(r, fontDelay)
	w.Header().Set("Content-Type", "font/woff2")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Write(s.font)
}

// shapeJS renders a shape page's body and its two images.
const shapeJS = `(function(){var m=document.getElementById("m");var n=m.dataset.n;` +
	`m.innerHTML="<h1>Shape "+n+"</h1><p>rendered by script</p><img src='/shape/"+n+"/a.png'><img src='/shape/"+n+"/b.png'>";` +
	`m.setAttribute("data-shape","yes");})();`

// shape is the page of issue #22's figures: one stylesheet, one script that
// renders the body with two PNG images, each served after shapeDelay.
func (s *site) shape(w http.ResponseWriter, r *http.Request) {
	n := r.PathValue("n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>Shape %s</title>`+
		`<link rel="stylesheet" href="/static/shape.css"></head><body><main id="m" data-n="%s">loading</main>`+
		`<script src="/static/shape.js"></script></body></html>`, html.EscapeString(n), html.EscapeString(n))
}

func (s *site) trivial(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(`<!doctype html><html><head><title>trivial</title></head><body><p id="x">static text</p>` +
		`<script>document.getElementById("x").textContent = "` + trivialMark + `";</script></body></html>`))
}

func (s *site) rich(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.PathValue("n"))
	slow := ""
	if v := r.URL.Query().Get("slow"); v != "" {
		slow = "?slow=" + v
	}
	sleep(r, docDelay)
	type item struct {
		Name  string  `json:"name"`
		Price float64 `json:"price"`
		Text  string  `json:"text"`
		Image string  `json:"image"`
	}
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	items := make([]item, richImages)
	for i := range items {
		items[i] = item{
			Name:  fmt.Sprintf("Item %d-%d", n, i),
			Price: float64(rng.IntN(10000)) / 100,
			Text:  lorem(rng, 25),
			Image: fmt.Sprintf("/img/p%d-%d.png%s", n, i, slow),
		}
	}
	data, _ := json.Marshal(items)
	var b strings.Builder
	fmt.Fprintf(&b, `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Product %d — Fixture Store</title>
<meta name="description" content="Fixture product page %d">
<meta property="og:title" content="Product %d">
<link rel="stylesheet" href="/static/site.css">
<script src="/static/vendor.js" defer></script>
<script src="/static/app.js" defer></script>
</head><body>
<header><img class="logo" src="/img/logo.png%s" alt="Fixture Store" width="120" height="40">
<nav>`, n, n, n, slow)
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&b, `<a href="/rich/%d">Product %d</a> `, (n+i+1)%1000, (n+i+1)%1000)
	}
	fmt.Fprintf(&b, `</nav></header>
<main id="app"><p class="loading">Loading…</p></main>
<footer><p>%s</p></footer>
<script type="application/json" id="data">%s</script>
</body></html>`, html.EscapeString(lorem(rng, 40)), data)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write([]byte(b.String()))
}

func (s *site) article(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.PathValue("n"))
	d := articleDelay
	if v, err := time.ParseDuration(r.URL.Query().Get("d")); err == nil {
		d = v // ?d=0s: a fast origin
	}
	if d > 0 {
		sleep(r, d)
	}
	rng := rand.New(rand.NewPCG(uint64(n), 11))
	var b strings.Builder
	fmt.Fprintf(&b, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Article %d</title>
<meta name="description" content="A static fixture article"></head><body><article><h1>Article %d</h1>`, n, n)
	for sec := 0; sec < 4; sec++ {
		fmt.Fprintf(&b, "<h2>Section %d</h2>", sec+1)
		for p := 0; p < 3; p++ {
			fmt.Fprintf(&b, "<p>%s <a href=\"/article/%d\">related</a>.</p>", lorem(rng, 60), rng.IntN(1000))
		}
	}
	b.WriteString("<table><tr><th>Name</th><th>Value</th></tr>")
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&b, "<tr><td>row %d</td><td>%d</td></tr>", i, rng.IntN(1000))
	}
	b.WriteString("</table></article></body></html>")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(b.String()))
}

var words = strings.Fields(`lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor
incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris
nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat`)

func lorem(rng *rand.Rand, n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = words[rng.IntN(len(words))]
	}
	return strings.Join(out, " ")
}

// fixturePNG is a 240×160 gradient, about the weight of a product thumbnail.
func fixturePNG() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 240, 160))
	rng := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < 160; y++ {
		for x := 0; x < 240; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(rng.IntN(64)), 255})
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}

// fixtureFont is 24 KiB that stand for a WOFF2 file: Chrome fetches it,
// rejects it and falls back, which costs what a font download costs.
func fixtureFont() []byte {
	b := make([]byte, 24<<10)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	copy(b, "wOF2")
	return b
}

const siteCSS = `@font-face { font-family: "Fixture Sans"; src: url("/font/sans.woff2") format("woff2"); font-display: block; }
@font-face { font-family: "Fixture Serif"; src: url("/font/serif.woff2") format("woff2"); font-display: block; }
body { font-family: "Fixture Sans", sans-serif; margin: 0; color: #222; background: #fafafa url("/img/bg.png") repeat-x; }
h1, h2 { font-family: "Fixture Serif", serif; }
header { display: flex; gap: 1rem; align-items: center; padding: 1rem; border-bottom: 1px solid #ddd; }
nav a { margin-right: .5rem; color: #06c; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 1rem; padding: 1rem; }
.card { background: #fff; border: 1px solid #eee; border-radius: 6px; padding: .5rem; }
.card img { width: 100%; height: auto; }
.price { font-weight: bold; color: #080; }
footer { padding: 1rem; color: #777; font-size: .8rem; }
`

// vendorJS stands for a library: some work at load, a helper for app.js.
const vendorJS = `window.fx = (function () {
  var cache = {};
  function fmt(n) { return "$" + n.toFixed(2); }
  function hash(s) { var h = 0; for (var i = 0; i < s.length; i++) { h = (h * 31 + s.charCodeAt(i)) | 0; } return h; }
  for (var i = 0; i < 2000; i++) { cache["k" + i] = hash("key" + i); }
  return { fmt: fmt, hash: hash, el: function (tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text) e.textContent = text; return e; } };
})();`

// appJS renders the page body from the inline JSON.
const appJS = `(function () {
  var items = JSON.parse(document.getElementById("data").textContent);
  var app = document.getElementById("app");
  app.textContent = "";
  var h = fx.el("h1", "", "Products"); app.appendChild(h);
  items.forEach(function (it) {
    var card = fx.el("section", "card");
    card.appendChild(fx.el("h2", "", it.name));
    var img = document.createElement("img"); img.src = it.image; img.alt = it.name; img.width = 240; img.height = 160;
    card.appendChild(img);
    card.appendChild(fx.el("p", "price", fx.fmt(it.price)));
    card.appendChild(fx.el("p", "", it.text));
    app.appendChild(card);
  });
  app.setAttribute("data-rendered", "yes");
})();`

// sitemapFiles holds the two gzip sitemaps, made once.
var (
	sitemapOnce  sync.Once
	sitemapFiles [2][]byte
)

// sitemap serves /sitemaps/{n}.xml.gz: 50 000 article URLs with lastmod.
func (s *site) sitemap(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(strings.TrimSuffix(r.PathValue("file"), ".xml.gz"))
	if err != nil || n < 0 || n > 1 {
		http.NotFound(w, r)
		return
	}
	sitemapOnce.Do(func() {
		for f := range sitemapFiles {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			fmt.Fprint(zw, `<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">`)
			for i := range 50000 {
				fmt.Fprintf(zw, "<url><loc>%s/article/%d</loc><lastmod>2026-11-%02d</lastmod></url>\n", s.URL, f*50000+i, 1+i%28)
			}
			fmt.Fprint(zw, `</urlset>`)
			zw.Close()
			sitemapFiles[f] = b.Bytes()
		}
	})
	w.Header().Set("Content-Type", "application/gzip")
	w.Write(sitemapFiles[n])
}

package convert

import (
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const articleURL = "https://example.com/posts/2024/widgets?ref=home"

func loadArticle(t testing.TB) *Document {
	t.Helper()
	b, err := os.ReadFile("testdata/article.html")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(string(b), articleURL)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMarkdownArticle(t *testing.T) {
	md, err := loadArticle(t).Markdown()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"# Widget Review\n",
		"\n## Prices\n",
		"\n## Notes\n",
		// Relative links resolve against <base href="/blog/">.
		"[alpha widget](https://example.com/blog/widgets/alpha)",
		"[beta widget](https://other.example.org/beta?x=1#specs)",
		// GFM table: header row, delimiter row, cells.
		"| Name | Price |\n|---|---|\n| Alpha | 9.99 |\n| Beta | 19.50 |\n",
		"- Small\n- Fast & cheap\n",
		"```\ngo run ./cmd/widget\n```",
		"[Ada](mailto:ada@example.com)",
		"or click.", // a javascript: link keeps only its text
	}
	for _, w := range want {
		if !strings.Contains(md, w) {
			t.Errorf("markdown lacks %q\n%s", w, md)
		}
	}
	if !strings.HasPrefix(md, "# Widget Review") {
		t.Errorf("markdown does not start with the article title:\n%s", md)
	}
	for _, bad := range []string{
		"Site home", "About us", // page header and nav
		"FOOTER-TEXT", "Privacy", // page footer
		"related post",                   // aside
		"SCRIPT-SECRET", "INLINE-SCRIPT", // scripts
		"NOSCRIPT-TEXT", "SVG-TEXT", "color", // noscript, svg, style
		"HIDDEN-TEXT", "STYLE-HIDDEN", // hidden elements
		"javascript:",
	} {
		if strings.Contains(md, bad) {
			t.Errorf("markdown contains %q\n%s", bad, md)
		}
	}
}

func TestMarkdownContentChoice(t *testing.T) {
	tests := []struct {
		name      string
		html      string
		want, not []string
	}{
		{
			name: "no main or article keeps the whole body",
			html: `<body><nav><a href="/a">Menu</a></nav><h1>Title</h1><footer>Foot</footer></body>`,
			want: []string{"[Menu](https://example.com/a)", "# Title", "Foot"},
		},
		{
			name: "several articles drop the chrome around them",
			html: `<body><header>Logo</header><nav>Menu</nav>
				<article><header><h2>One</h2></header><p>first</p></article>
				<article><h2>Two</h2><p>second</p><footer>by Ada</footer></article>
				<aside>Ads</aside><footer>Foot</footer></body>`,
			want: []string{"## One", "first", "## Two", "second", "by Ada"},
			not:  []string{"Logo", "Menu", "Ads", "Foot"},
		},
		{
			name: "role=main counts as main",
			html: `<body><div role="navigation">Menu</div><div role="main"><h1>Body</h1><nav>Toc</nav></div><div>Outside</div></body>`,
			want: []string{"# Body"},
			not:  []string{"Menu", "Toc", "Outside"},
		},
		{
			name: "table without th promotes its first row",
			html: `<main><table><tr><td>a</td><td>b</td></tr><tr><td>1</td><td>2</td></tr></table></main>`,
			want: []string{"| a | b |\n|---|---|\n| 1 | 2 |"},
		},
		{
			name: "an empty main falls back to the body",
			html: `<body><nav>Menu</nav><main> </main><div id="app"><h1>Rendered</h1></div></body>`,
			want: []string{"Menu", "# Rendered"},
		},
		{
			name: "anchors without a target stay text",
			html: `<main><a id="top">Top</a> <a href=" javascript:go()">Go</a></main>`,
			want: []string{"Top Go"},
			not:  []string{"]("},
		},
		{
			name: "inline data images are dropped, others absolute",
			html: `<main><img src="data:image/png;base64,AAAA" alt="pixel"><img src="/i.png" alt="pic"></main>`,
			want: []string{"![pic](https://example.com/i.png)"},
			not:  []string{"data:", "pixel"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(tc.html, "https://example.com/x")
			if err != nil {
				t.Fatal(err)
			}
			md, err := d.Markdown()
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(md, w) {
					t.Errorf("markdown lacks %q\n%s", w, md)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(md, w) {
					t.Errorf("markdown contains %q\n%s", w, md)
				}
			}
		})
	}
}

func TestLinks(t *testing.T) {
	got := loadArticle(t).Links()
	want := []string{
		"https://example.com/", // "/" against the base
		"https://example.com/about",
		"https://example.com/contact", // fragment removed
		"https://example.com/blog/widgets/alpha",
		"https://other.example.org/beta?x=1",
		// alpha#price is a duplicate once the fragment is gone;
		// mailto:, tel:, javascript: and ftp: are left out.
		"https://cdn.example.com/protocol-relative",
		"https://example.com/related",
		"https://example.com/privacy",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Links()\n got %q\nwant %q", got, want)
	}
}

func TestLinksWithoutPageURL(t *testing.T) {
	d, err := Parse(`<a href="/rel">r</a><a href="https://abs.example/p#f">a</a>`, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Links(), []string{"https://abs.example/p"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Links() = %q, want %q", got, want)
	}
}

func TestText(t *testing.T) {
	got := loadArticle(t).Text()
	want := strings.Join([]string{
		"Site home",
		"About us Contact",
		"Widget Review",
		"Our alpha widget beats the beta widget and the alpha again.",
		"Prices",
		"Name\tPrice",
		"Alpha\t9.99",
		"Beta\t19.50",
		"Notes",
		"Small",
		"Fast & cheap",
		"go run ./cmd/widget",
		"Write to Ada, call us, or click. FTP CDN",
		"Related: related post",
		"Copyright FOOTER-TEXT Privacy",
	}, "\n")
	if got != want {
		t.Errorf("Text()\n got %q\nwant %q", got, want)
	}
}

func TestTextLineBreaksAndPre(t *testing.T) {
	d, err := Parse("<p>one<br>two</p><pre>  keep\n    this</pre><div>a  <span>b</span>\n c</div>", "")
	if err != nil {
		t.Fatal(err)
	}
	want := "one\ntwo\n  keep\n    this\na b c"
	if got := d.Text(); got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
}

func TestNodeText(t *testing.T) {
	d, err := Parse("<div id=x> <p>Hello,\n  <b>world</b></p><p>again</p><script>no</script></div>", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := NodeText(d.body), "Hello, world again"; got != want {
		t.Errorf("NodeText = %q, want %q", got, want)
	}
	if NodeText(nil) != "" {
		t.Error("NodeText(nil) not empty")
	}
}

func TestMetadata(t *testing.T) {
	got := loadArticle(t).Metadata()
	want := Metadata{
		Title:       "Widgets & Gadgets Review",
		Description: "A close look at this year's widgets.",
		Language:    "en-GB",
		Canonical:   "https://example.com/blog/widgets",
		Keywords:    "widgets, gadgets",
		Author:      "Ada Lovelace",
		Favicon:     "https://example.com/favicon.ico",
		OpenGraph: map[string]string{
			"title": "Widgets and Gadgets",
			"type":  "article",
			"image": "https://cdn.example.com/widgets.png",
		},
		Twitter: map[string]string{"card": "summary_large_image"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Metadata()\n got %+v\nwant %+v", got, want)
	}
}

func TestMetadataFallbacks(t *testing.T) {
	d, err := Parse(`<head><meta http-equiv="Content-Language" content="de">
		<meta property="og:title" content="OG Title"><meta property="og:description" content="OG desc">
		<link rel="canonical" href="/c"></head><svg><title>not the title</title></svg>`, "https://example.com/a/b")
	if err != nil {
		t.Fatal(err)
	}
	m := d.Metadata()
	if m.Title != "OG Title" || m.Description != "OG desc" || m.Language != "de" || m.Canonical != "https://example.com/c" {
		t.Errorf("Metadata() = %+v", m)
	}
}

func TestParseRejectsBadPageURL(t *testing.T) {
	if _, err := Parse("<p>x</p>", "http://[::1"); err == nil {
		t.Error("Parse accepted an unparseable page URL")
	}
}

// The outputs leave the Document intact and may run at the same time.
func TestOutputsConcurrent(t *testing.T) {
	d := loadArticle(t)
	md0, _ := d.Markdown()
	text0, links0, meta0 := d.Text(), d.Links(), d.Metadata()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			md, err := d.Markdown()
			if err != nil || md != md0 {
				t.Errorf("Markdown changed between calls: %v", err)
			}
			if d.Text() != text0 || !reflect.DeepEqual(d.Links(), links0) || !reflect.DeepEqual(d.Metadata(), meta0) {
				t.Error("outputs changed between calls")
			}
		})
	}
	wg.Wait()
}

func BenchmarkParse(b *testing.B) {
	src, err := os.ReadFile("testdata/article.html")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(string(src), articleURL); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarkdown(b *testing.B) {
	d := loadArticle(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Markdown(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkText(b *testing.B) {
	d := loadArticle(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = d.Text()
	}
}

func BenchmarkLinksMetadata(b *testing.B) {
	d := loadArticle(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = d.Links()
		_ = d.Metadata()
	}
}

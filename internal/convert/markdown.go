package convert

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/JohannesKaufmann/html-to-markdown/v2/converter"
	"github.com/JohannesKaufmann/html-to-markdown/v2/plugin/base"
	"github.com/JohannesKaufmann/html-to-markdown/v2/plugin/commonmark"
	"github.com/JohannesKaufmann/html-to-markdown/v2/plugin/strikethrough"
	"github.com/JohannesKaufmann/html-to-markdown/v2/plugin/table"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// markdownConverter is built once: registering plugins is not free, and a
// Converter keeps no per-call state.
var markdownConverter = sync.OnceValue(func() *converter.Converter {
	return converter.NewConverter(converter.WithPlugins(
		base.NewBasePlugin(),
		commonmark.NewCommonmarkPlugin(
			commonmark.WithHeadingStyle(commonmark.HeadingStyleATX),
			commonmark.WithLinkEmptyContentBehavior(commonmark.LinkBehaviorSkip),
		),
		table.NewTablePlugin(
			table.WithHeaderPromotion(true),
			table.WithSkipEmptyRows(true),
			table.WithCellPaddingBehavior(table.CellPaddingBehaviorMinimal),
			table.WithNewlineBehavior(table.NewlineBehaviorPreserve),
		),
		strikethrough.NewStrikethroughPlugin(),
	))
})

// Markdown renders the page's main content as GitHub-flavoured Markdown:
// ATX headings, links and images with absolute URLs, lists, code and tables.
//
// The main content is the first <main> (or role="main") element; without one,
// a single outermost <article>; without that, the <body>. Navigation, page
// headers and footers and asides outside the content are left out when the
// page marks its content with <main> or <article> (an empty <main> gives way
// to the whole body). Scripts, styles, SVG,
// templates, embedded frames, form controls and hidden elements never appear.
func (d *Document) Markdown() (string, error) {
	content, mode := d.contentRoot()
	md, err := d.markdown(content, mode)
	if err == nil && md == "" && mode != keepChrome && d.body != nil {
		// An empty <main> (a placeholder the page never filled): fall back
		// to the whole body rather than answer nothing.
		return d.markdown(d.body, keepChrome)
	}
	return md, err
}

func (d *Document) markdown(content *html.Node, mode chromeMode) (string, error) {
	// The converter rewrites the tree it is given, so it gets a filtered copy
	// of the content; the Document stays intact for the other outputs.
	c := cloner{mode: mode}
	clone := c.clone(content, false)
	if clone == nil {
		return "", nil
	}
	var opts []converter.ConvertOptionFunc
	if d.base != nil {
		opts = append(opts, converter.WithDomain(d.base.String()))
	}
	out, err := markdownConverter().ConvertNode(clone, opts...)
	if err != nil {
		return "", fmt.Errorf("convert to markdown: %w", err)
	}
	return string(out), nil
}

// chromeMode says which page chrome Markdown leaves out.
type chromeMode int

const (
	keepChrome     chromeMode = iota // no <main>/<article>: all of <body>
	contentChrome                    // inside <main> or the <article>: drop nav and asides
	articlesChrome                   // <body> with several articles: drop nav, header, footer, aside outside them
)

// contentRoot picks the element holding the main content.
func (d *Document) contentRoot() (*html.Node, chromeMode) {
	switch {
	case d.main != nil:
		return d.main, contentChrome
	case len(d.articles) == 1:
		return d.articles[0], contentChrome
	case len(d.articles) > 1 && d.body != nil:
		return d.body, articlesChrome
	case d.body != nil:
		return d.body, keepChrome
	}
	return d.root, keepChrome
}

// cloner copies the content tree, leaving out what Markdown never shows.
type cloner struct {
	mode chromeMode
}

func (c *cloner) clone(n *html.Node, inArticle bool) *html.Node {
	switch n.Type {
	case html.TextNode:
		return &html.Node{Type: html.TextNode, Data: n.Data}
	case html.ElementNode:
	case html.DocumentNode:
	default:
		return nil // comments, doctypes
	}
	if n.Type == html.ElementNode {
		if skipped(n) || c.dropped(n, inArticle) {
			return nil
		}
		if n.DataAtom == atom.Article {
			inArticle = true
		}
	}
	cp := &html.Node{Type: n.Type, DataAtom: n.DataAtom, Data: n.Data, Namespace: n.Namespace}
	if len(n.Attr) > 0 {
		cp.Attr = slices.Clone(n.Attr)
	}
	switch n.DataAtom {
	case atom.A:
		// An anchor without a target, or with a javascript: one, is no link
		// in Markdown (the converter would point it at the page); keep its
		// text.
		if href := strings.TrimSpace(attr(n, "href")); href == "" || isJavascript(href) {
			cp.DataAtom, cp.Data, cp.Attr = atom.Span, "span", nil
		}
	case atom.Img:
		// Inline data images bloat the Markdown and say nothing.
		if strings.HasPrefix(strings.TrimSpace(attr(n, "src")), "data:") {
			return nil
		}
	}
	for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
		if cc := c.clone(ch, inArticle); cc != nil {
			cp.AppendChild(cc)
		}
	}
	return cp
}

// dropped reports whether element n is page chrome to leave out.
func (c *cloner) dropped(n *html.Node, inArticle bool) bool {
	if n.Namespace != "" {
		return false
	}
	if n.DataAtom == atom.Button {
		return true
	}
	if c.mode == keepChrome || (c.mode == articlesChrome && inArticle) {
		return false
	}
	switch n.DataAtom {
	case atom.Nav, atom.Aside:
		return true
	case atom.Header, atom.Footer:
		// The content's own header holds its title; keep it.
		return c.mode == articlesChrome
	}
	switch attr(n, "role") {
	case "navigation", "complementary", "search":
		return true
	case "banner", "contentinfo":
		return c.mode == articlesChrome
	}
	return false
}

func isJavascript(href string) bool {
	href = strings.TrimSpace(href)
	return len(href) >= 11 && strings.EqualFold(href[:11], "javascript:")
}

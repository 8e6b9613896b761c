package convert

import (
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Document is a page parsed once and reused by every output.
type Document struct {
	root *html.Node
	// base resolves relative references: the page URL, or the <base href>
	// resolved against it. Nil when neither is known.
	base *url.URL

	// Elements of interest, collected in one walk by Parse, in document order.
	htmlEl   *html.Node
	body     *html.Node
	title    *html.Node
	main     *html.Node
	metas    []*html.Node
	links    []*html.Node // <link>
	anchors  []*html.Node // <a> and <area> with href
	articles []*html.Node // outermost <article> elements
}

// Parse parses src once. pageURL is the page's final URL; relative links are
// resolved against it, or against the document's <base href> when there is
// one. An empty pageURL leaves relative links unresolved (and out of Links).
func Parse(src string, pageURL string) (*Document, error) {
	var page *url.URL
	if pageURL != "" {
		u, err := url.Parse(pageURL)
		if err != nil {
			return nil, fmt.Errorf("parse page url: %w", err)
		}
		if u.IsAbs() {
			page = u
		}
	}
	root, err := html.Parse(strings.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("parse html: %w", err)
	}
	d := &Document{root: root, base: page}
	var baseHref *html.Node
	d.index(root, &baseHref, false)
	if baseHref != nil {
		if u, ok := parseRef(attr(baseHref, "href")); ok {
			if page != nil {
				u = page.ResolveReference(u)
			}
			if u.IsAbs() && (u.Scheme == "http" || u.Scheme == "https") {
				d.base = u
			}
		}
	}
	return d, nil
}

// index records the elements the outputs need, in one walk of the tree.
func (d *Document) index(n *html.Node, baseHref **html.Node, inArticle bool) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode {
			continue
		}
		article := inArticle
		if c.Namespace == "" {
			switch c.DataAtom {
			case atom.Html:
				if d.htmlEl == nil {
					d.htmlEl = c
				}
			case atom.Body:
				if d.body == nil {
					d.body = c
				}
			case atom.Title:
				if d.title == nil {
					d.title = c
				}
			case atom.Base:
				if *baseHref == nil && hasAttr(c, "href") {
					*baseHref = c
				}
			case atom.Meta:
				d.metas = append(d.metas, c)
			case atom.Link:
				d.links = append(d.links, c)
			case atom.A, atom.Area:
				if hasAttr(c, "href") {
					d.anchors = append(d.anchors, c)
				}
			case atom.Main:
				if d.main == nil && !hidden(c) {
					d.main = c
				}
			case atom.Article:
				if !inArticle && !hidden(c) {
					d.articles = append(d.articles, c)
				}
				article = true
			case atom.Template:
				continue // inert content
			}
			if d.main == nil && c.DataAtom != atom.Main && attr(c, "role") == "main" && !hidden(c) {
				d.main = c
			}
		}
		d.index(c, baseHref, article)
	}
}

// Root returns the parsed document node. Callers must not modify the tree.
func (d *Document) Root() *html.Node { return d.root }

// BaseURL returns the URL relative references resolve against (the <base
// href> or the page URL), or nil when none is known.
func (d *Document) BaseURL() *url.URL {
	if d.base == nil {
		return nil
	}
	u := *d.base
	return &u
}

// ResolveReference resolves ref (an href or src value) against the
// document's base URL. It returns ref trimmed but otherwise unchanged when it
// cannot be resolved.
func (d *Document) ResolveReference(ref string) string {
	u, ok := d.resolve(ref)
	if !ok {
		return strings.TrimSpace(ref)
	}
	return u.String()
}

// resolve resolves ref against the base; ok is false when ref does not parse
// or stays relative.
func (d *Document) resolve(ref string) (*url.URL, bool) {
	u, ok := parseRef(ref)
	if !ok {
		return nil, false
	}
	if d.base != nil {
		u = d.base.ResolveReference(u)
	}
	if !u.IsAbs() {
		return nil, false
	}
	return u, true
}

// parseRef parses an attribute URL the way browsers read it: surrounding
// whitespace ignored, tabs and newlines inside removed.
func parseRef(ref string) (*url.URL, bool) {
	ref = strings.TrimSpace(ref)
	if strings.ContainsAny(ref, "\t\n\r") {
		ref = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, ref)
	}
	u, err := url.Parse(ref)
	if err != nil {
		return nil, false
	}
	return u, true
}

// attr returns the value of attribute key of n ("" when absent).
func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return true
		}
	}
	return false
}

// hidden reports whether element n is hidden by its own markup: the hidden
// attribute, or an inline style with display:none or visibility:hidden.
func hidden(n *html.Node) bool {
	for _, a := range n.Attr {
		if a.Namespace != "" {
			continue
		}
		switch a.Key {
		case "hidden":
			return true
		case "style":
			if styleHides(a.Val) {
				return true
			}
		}
	}
	return false
}

func styleHides(style string) bool {
	if !strings.Contains(style, "none") && !strings.Contains(style, "hidden") {
		return false
	}
	s := strings.ToLower(strings.Join(strings.Fields(style), ""))
	return strings.Contains(s, "display:none") || strings.Contains(s, "visibility:hidden")
}

// skipped reports whether element n never contributes visible content.
func skipped(n *html.Node) bool {
	if n.Namespace != "" {
		return n.Data == "svg" // inline SVG; MathML keeps its text
	}
	switch n.DataAtom {
	case atom.Script, atom.Style, atom.Noscript, atom.Template, atom.Svg,
		atom.Iframe, atom.Object, atom.Embed, atom.Canvas, atom.Head,
		atom.Link, atom.Meta, atom.Base, atom.Title, atom.Audio, atom.Video,
		atom.Select, atom.Datalist, atom.Textarea, atom.Input:
		return true
	}
	return hidden(n)
}

package convert

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Text returns the page's readable text: the text of the <body> as a reader
// sees it, block elements on lines of their own, runs of whitespace collapsed
// to one space (kept inside <pre>), table cells separated by tabs. Scripts,
// styles, templates and hidden elements contribute nothing.
func (d *Document) Text() string {
	n := d.body
	if n == nil {
		n = d.root
	}
	w := textWriter{lineStart: true}
	w.walk(n)
	return strings.TrimRight(w.b.String(), " \t\n")
}

// NodeText returns the visible text of n on one line: whitespace, line
// breaks and block boundaries collapsed to single spaces, trimmed. Scripts,
// styles and hidden elements contribute nothing.
func NodeText(n *html.Node) string {
	if n == nil {
		return ""
	}
	w := textWriter{lineStart: true, oneLine: true}
	if n.Type == html.TextNode {
		w.text(n.Data)
	} else {
		w.walk(n)
	}
	return strings.TrimRight(w.b.String(), " ")
}

// textWriter accumulates text with collapsed whitespace.
type textWriter struct {
	b         strings.Builder
	oneLine   bool // block boundaries become spaces
	lineStart bool // nothing written on the current line yet
	space     bool // whitespace seen since the last word
	tab       bool // a table cell ended since the last word
	pre       int  // depth of <pre> elements
}

func (w *textWriter) walk(n *html.Node) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		switch c.Type {
		case html.TextNode:
			w.text(c.Data)
		case html.ElementNode:
			w.element(c)
		}
	}
}

func (w *textWriter) element(n *html.Node) {
	if skipped(n) {
		return
	}
	if n.Namespace != "" {
		w.walk(n)
		return
	}
	switch n.DataAtom {
	case atom.Br:
		w.newline(true)
		return
	case atom.Hr:
		w.newline(false)
		return
	case atom.Img:
		return
	case atom.Td, atom.Th:
		w.walk(n)
		w.tab = true
		return
	case atom.Pre:
		w.newline(false)
		w.pre++
		w.walk(n)
		w.pre--
		w.newline(false)
		return
	}
	if isBlock(n.DataAtom) {
		w.newline(false)
		w.walk(n)
		w.newline(false)
		return
	}
	w.walk(n)
}

// newline ends the current line; hard forces an empty line too (<br><br>).
func (w *textWriter) newline(hard bool) {
	w.tab = false
	if w.oneLine {
		w.space = true
		return
	}
	if !w.lineStart || (hard && w.b.Len() > 0) {
		w.b.WriteByte('\n')
	}
	w.lineStart = true
	w.space = false
}

func (w *textWriter) text(s string) {
	if w.pre > 0 && !w.oneLine {
		w.preText(s)
		return
	}
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if isSpace(r) {
			w.space = true
			i += size
			continue
		}
		// Write the whole run of non-space characters at once.
		j := i + size
		for j < len(s) {
			r2, size2 := rune(s[j]), 1
			if r2 >= utf8.RuneSelf {
				r2, size2 = utf8.DecodeRuneInString(s[j:])
			}
			if isSpace(r2) {
				break
			}
			j += size2
		}
		w.word(s[i:j])
		i = j
	}
}

func (w *textWriter) word(s string) {
	if !w.lineStart {
		switch {
		case w.tab:
			w.b.WriteByte('\t')
		case w.space:
			w.b.WriteByte(' ')
		}
	}
	w.b.WriteString(s)
	w.lineStart, w.space, w.tab = false, false, false
}

func (w *textWriter) preText(s string) {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	if s == "" {
		return
	}
	if !w.lineStart && (w.space || w.tab) {
		w.b.WriteByte(' ')
	}
	w.b.WriteString(s)
	w.lineStart = strings.HasSuffix(s, "\n")
	w.space, w.tab = false, false
}

func isSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', '\f':
		return true
	}
	return r >= utf8.RuneSelf && unicode.IsSpace(r)
}

// isBlock reports whether elements named a start a new line of text.
func isBlock(a atom.Atom) bool {
	switch a {
	case atom.Address, atom.Article, atom.Aside, atom.Blockquote, atom.Body,
		atom.Caption, atom.Dd, atom.Details, atom.Dialog, atom.Div, atom.Dl,
		atom.Dt, atom.Fieldset, atom.Figcaption, atom.Figure, atom.Footer,
		atom.Form, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6,
		atom.Header, atom.Hgroup, atom.Legend, atom.Li, atom.Main, atom.Menu,
		atom.Nav, atom.Ol, atom.Option, atom.P, atom.Section, atom.Summary,
		atom.Table, atom.Tbody, atom.Tfoot, atom.Thead, atom.Tr, atom.Ul,
		atom.Html:
		return true
	}
	return false
}

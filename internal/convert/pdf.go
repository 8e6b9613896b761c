package convert

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/ledongthuc/pdf"
)

// PDF is the text of a PDF document.
type PDF struct {
	// Pages is the document's page count.
	Pages int
	// Text is each page's text, lines kept, pages apart by a blank line.
	Text string
	// Markdown is the text as Markdown: a paragraph per line, a rule
	// between pages.
	Markdown string
}

// ErrNotPDF means bytes are no PDF this reader can read.
var ErrNotPDF = errors.New("not a readable PDF")

// IsPDF reports whether a Content-Type (or the body's first bytes) says
// PDF.
func IsPDF(contentType string, body []byte) bool {
	ct, _, _ := strings.Cut(strings.ToLower(contentType), ";")
	ct = strings.TrimSpace(ct)
	return ct == "application/pdf" || ct == "application/x-pdf" || bytes.HasPrefix(body, []byte("%PDF-"))
}

// PDFPages counts the pages of a PDF document.
func PDFPages(data []byte) (n int, err error) {
	defer func() {
		if r := recover(); r != nil { // the reader panics on some broken files
			n, err = 0, fmt.Errorf("%w: %v", ErrNotPDF, r)
		}
	}()
	r, err := pdf.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotPDF, err)
	}
	return r.NumPage(), nil
}

// ParsePDF reads a PDF document's text with github.com/ledongthuc/pdf (a
// pure-Go reader of the text operators, fonts' encodings and ToUnicode
// maps). A scanned document without a text layer gives empty text.
func ParsePDF(data []byte) (out *PDF, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%w: %v", ErrNotPDF, r)
		}
	}()
	r, err := pdf.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotPDF, err)
	}
	out = &PDF{Pages: r.NumPage()}
	fonts := map[string]*pdf.Font{}
	var text, md []string
	for i := 1; i <= out.Pages; i++ {
		p := r.Page(i)
		if p.V.IsNull() {
			continue
		}
		for _, name := range p.Fonts() {
			if _, ok := fonts[name]; !ok {
				f := p.Font(name)
				fonts[name] = &f
			}
		}
		t, err := p.GetPlainText(fonts)
		if err != nil {
			return nil, fmt.Errorf("%w: page %d: %v", ErrNotPDF, i, err)
		}
		var lines []string
		for _, l := range strings.Split(t, "\n") {
			if l = strings.Join(strings.Fields(l), " "); l != "" {
				lines = append(lines, l)
			}
		}
		if len(lines) == 0 {
			continue
		}
		text = append(text, strings.Join(lines, "\n"))
		md = append(md, strings.Join(lines, "\n\n"))
	}
	out.Text = strings.Join(text, "\n\n")
	out.Markdown = strings.Join(md, "\n\n---\n\n")
	return out, nil
}

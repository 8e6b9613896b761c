package convert

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// testdata/report.pdf is Chromium's print of a page with a heading and
// two paragraphs.
func TestParsePDF(t *testing.T) {
	b, err := os.ReadFile("testdata/report.pdf")
	if err != nil {
		t.Fatal(err)
	}
	if !IsPDF("application/pdf; charset=binary", nil) || !IsPDF("", b) || IsPDF("text/html", []byte("<html>")) {
		t.Fatal("IsPDF")
	}
	p, err := ParsePDF(b)
	if err != nil {
		t.Fatal(err)
	}
	want := "Quarterly Widget Report\nSales of blue widgets grew by twelve percent.\nSecond paragraph here."
	if p.Pages != 1 || p.Text != want {
		t.Fatalf("pages %d text %q", p.Pages, p.Text)
	}
	if !strings.Contains(p.Markdown, "Quarterly Widget Report\n\nSales of blue widgets") {
		t.Fatalf("markdown %q", p.Markdown)
	}
	if n, err := PDFPages(b); n != 1 || err != nil {
		t.Fatalf("PDFPages = %d, %v", n, err)
	}
	for _, bad := range [][]byte{nil, []byte("%PDF-1.4 garbage"), b[:len(b)/2]} {
		if _, err := ParsePDF(bad); !errors.Is(err, ErrNotPDF) {
			t.Errorf("ParsePDF(%d bytes) = %v, want ErrNotPDF", len(bad), err)
		}
	}
}

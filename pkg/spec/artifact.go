package spec

import "time"

// Artifact is a file a job produced (a screenshot, a PDF, a download, a
// failure's DOM or HAR), kept in the artifact store rather than in Redis.
// URL is a signed link served by the API (GET /v1/artifacts/{id}) that
// needs no API key until ExpiresAt, when the artifact goes with its job.
type Artifact struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// OutPDF asks for the rendered page printed as PDF (result.pdf).
const OutPDF = "pdf"

// Where a job's screenshot and PDF go (Request.Artifacts).
const (
	// ArtifactsInline (the default) answers result.screenshot and
	// result.pdf.data as base64; the bytes still live in the artifact
	// store and the API embeds them when it answers.
	ArtifactsInline = "inline"
	// ArtifactsURL answers them only as links, in result.artifacts.
	ArtifactsURL = "url"
)

// Artifact names of the outputs that may be inlined (keys of
// Result.Artifacts).
const (
	ArtifactScreenshot = "screenshot"
	ArtifactPDF        = "pdf"
)

// ScreenshotOptions shape the screenshot output.
type ScreenshotOptions struct {
	// FullPage captures the whole page (default true), false the
	// viewport.
	FullPage *bool `json:"full_page,omitempty"`
	// Selector captures one element (the first match), at its size.
	Selector string `json:"selector,omitempty"`
	// Format is "png" (default) or "jpeg".
	Format string `json:"format,omitempty"`
	// Quality is JPEG's quality, 1-100 (default 80).
	Quality int `json:"quality,omitempty"`
}

// DefaultJPEGQuality is a JPEG screenshot's quality when none is given.
const DefaultJPEGQuality = 80

// CodeScreenshotFailed ends a job whose screenshot could not be taken as
// asked (screenshot.selector matches no element, or one with no size).
const CodeScreenshotFailed = "screenshot_failed"

// PDFOptions shape the pdf output.
type PDFOptions struct {
	// Format is the paper size: A3, A4 (default), A5, Letter, Legal or
	// Tabloid.
	Format string `json:"format,omitempty"`
	// Landscape turns the paper.
	Landscape bool `json:"landscape,omitempty"`
}

// PDFInfo is result.pdf: a PDF target's page count, or the pdf output (its
// pages, and its bytes when the job's artifacts are inline).
type PDFInfo struct {
	Pages int    `json:"pages"`
	Data  []byte `json:"data,omitempty"`
}

// PaperSizes are the paper formats of PDFOptions in inches (width, height).
var PaperSizes = map[string][2]float64{
	"A3":      {11.69, 16.54},
	"A4":      {8.27, 11.69},
	"A5":      {5.83, 8.27},
	"Letter":  {8.5, 11},
	"Legal":   {8.5, 14},
	"Tabloid": {11, 17},
}

// validateArtifacts checks the screenshot, pdf and artifacts fields.
func (r *Request) validateArtifacts(prefix string) []FieldError {
	var errs []FieldError
	add := func(f, m string) { errs = append(errs, FieldError{Field: prefix + f, Message: m}) }
	switch r.Artifacts {
	case "", ArtifactsInline, ArtifactsURL:
	default:
		add("artifacts", `must be "inline" or "url"`)
	}
	if s := r.Screenshot; s != nil {
		if !r.Wants(OutScreenshot) {
			add("screenshot", "needs screenshot in output")
		}
		switch s.Format {
		case "", "png", "jpeg":
		default:
			add("screenshot.format", `must be "png" or "jpeg"`)
		}
		if s.Quality != 0 && (s.Quality < 1 || s.Quality > 100) {
			add("screenshot.quality", "must be between 1 and 100")
		}
		if s.Quality != 0 && s.Format != "jpeg" {
			add("screenshot.quality", `is for format "jpeg" only`)
		}
		if s.FullPage != nil && *s.FullPage && s.Selector != "" {
			add("screenshot.full_page", "and selector exclude each other")
		}
		if len(s.Selector) > 1024 {
			add("screenshot.selector", "is longer than 1024 characters")
		}
	}
	if p := r.PDF; p != nil {
		if !r.Wants(OutPDF) {
			add("pdf", "needs pdf in output")
		}
		if _, ok := PaperSizes[p.Format]; p.Format != "" && !ok {
			add("pdf.format", "must be one of A3, A4, A5, Letter, Legal, Tabloid")
		}
	}
	return errs
}

// ArtifactMode is the job's artifacts mode, "inline" by default.
func (r *Request) ArtifactMode() string {
	if r.Artifacts == "" {
		return ArtifactsInline
	}
	return r.Artifacts
}

// PDFPaper is the pdf output's paper in inches, portrait, and whether
// Chrome is to turn it (landscape).
func (r *Request) PDFPaper() (w, h float64, landscape bool) {
	f := "A4"
	if r.PDF != nil {
		if r.PDF.Format != "" {
			f = r.PDF.Format
		}
		landscape = r.PDF.Landscape
	}
	s := PaperSizes[f]
	return s[0], s[1], landscape
}

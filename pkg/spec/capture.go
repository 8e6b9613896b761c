package spec

import (
	"fmt"
	"strings"
)

// Capture: what a rendered job keeps of the page besides its DOM — the
// responses of its own XHR and fetch calls (output network), a HAR of its
// requests (output har), the files it downloaded (result.downloads) and,
// when it fails, diagnostics of that moment (result.diagnostics). The
// fields of Request and Result that these types fill are marked "capture"
// where they are declared.

// Outputs of capture.
const (
	OutNetwork = "network"
	OutHAR     = "har"
)

// Limits of the capture fields.
const (
	MaxURLPatterns     = 20
	MaxURLPatternBytes = 2048
	// MaxInlineBytes bounds any value of a new output kept in the job
	// record: larger screenshots, PDFs, bodies, HARs, DOMs and files are
	// artifacts.
	MaxInlineBytes = 64 << 10
)

// NetworkCapture is the request's "network": which XHR and fetch responses
// the network output keeps.
type NetworkCapture struct {
	// URLPatterns match the whole URL of a response; "*" matches any run
	// of characters ("*/api/*").
	URLPatterns []string `json:"url_patterns"`
}

// NetworkEntry is one entry of result.network: a response to one of the
// page's XHR or fetch calls whose URL matched a pattern.
type NetworkEntry struct {
	URL      string `json:"url"`
	Method   string `json:"method"`
	Status   int    `json:"status"`
	MIMEType string `json:"mime_type"`
	// Body is the body as text. A body that is not UTF-8, or does not fit
	// in the 64 KiB the bodies of a job share in the record, is null and
	// stored in BodyArtifact instead.
	Body         *string   `json:"body"`
	BodyArtifact *Artifact `json:"body_artifact,omitempty"`
	// Truncated: the body was longer than the worker keeps (10 MiB).
	Truncated bool `json:"truncated,omitempty"`
}

// Download is one entry of result.downloads: a file the page or an action
// downloaded.
type Download struct {
	Filename string    `json:"filename"`
	MIMEType string    `json:"mime_type"`
	Size     int64     `json:"size"`
	Artifact *Artifact `json:"artifact,omitempty"`
	// Error says why the file was not kept (too large, not finished in
	// time, cancelled by the page).
	Error string `json:"error,omitempty"`
}

// ConsoleMessage is one line of the page's console (or an exception it did
// not catch, level "error").
type ConsoleMessage struct {
	Level string `json:"level"`
	Text  string `json:"text"`
}

// Diagnostics is result.diagnostics of a rendered job that failed: the page
// at the moment of the failure.
type Diagnostics struct {
	Screenshot *Artifact         `json:"screenshot,omitempty"` // PNG of the viewport
	DOM        *Artifact         `json:"dom,omitempty"`        // text/html
	Console    []ConsoleMessage  `json:"console"`
	HAR        *Artifact         `json:"har,omitempty"` // application/json, HAR 1.2
	Errors     map[string]string `json:"errors,omitempty"`
}

// WantsDiagnostics reports whether a failure of the job keeps diagnostics:
// rendered jobs do unless "diagnostics": false.
func (r *Request) WantsDiagnostics(kind string) bool {
	return r.Rendered(kind) && (r.Diagnostics == nil || *r.Diagnostics)
}

// validateCapture checks the capture fields of a job (or a template,
// prefix "template.").
func (r *Request) validateCapture(kind, prefix string) []FieldError {
	var errs []FieldError
	add := func(f, m string) { errs = append(errs, FieldError{Field: prefix + f, Message: m}) }
	for i, o := range r.Output {
		if (o == OutNetwork || o == OutHAR) && !r.Rendered(kind) {
			add(fmt.Sprintf("output[%d]", i), o+" needs render_js: true")
		}
	}
	switch {
	case r.Wants(OutNetwork) && r.Network == nil:
		add("network", `is required when output has network: {"url_patterns": ["*/api/*"]}`)
	case r.Network != nil && !r.Wants(OutNetwork):
		add("network", `needs "network" in output`)
	}
	if n := r.Network; n != nil {
		if len(n.URLPatterns) == 0 || len(n.URLPatterns) > MaxURLPatterns {
			add("network.url_patterns", fmt.Sprintf("must have 1 to %d patterns", MaxURLPatterns))
		}
		for i, p := range n.URLPatterns {
			switch {
			case strings.TrimSpace(p) == "":
				add(fmt.Sprintf("network.url_patterns[%d]", i), "must not be empty")
			case len(p) > MaxURLPatternBytes:
				add(fmt.Sprintf("network.url_patterns[%d]", i), fmt.Sprintf("must be at most %d bytes", MaxURLPatternBytes))
			}
		}
	}
	return errs
}

// EachArtifact calls f with every artifact the result links: those of its
// outputs (Artifacts: screenshot, pdf) and of its capture fields (network
// bodies, the HAR, the downloads, the diagnostics). f may change them (the
// API completes their links).
func (r *Result) EachArtifact(f func(*Artifact)) {
	for k, a := range r.Artifacts {
		f(&a)
		r.Artifacts[k] = a
	}
	visit := func(a *Artifact) {
		if a != nil {
			f(a)
		}
	}
	for i := range r.Network {
		visit(r.Network[i].BodyArtifact)
	}
	visit(r.HAR)
	for i := range r.Downloads {
		visit(r.Downloads[i].Artifact)
	}
	if d := r.Diagnostics; d != nil {
		visit(d.Screenshot)
		visit(d.DOM)
		visit(d.HAR)
	}
}

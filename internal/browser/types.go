package browser

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Identity is the browser identity a job runs with. Empty fields keep
// Chrome's defaults.
type Identity struct {
	UserAgent      string
	Locale         string // such as "de-DE": Intl, navigator.language
	Timezone       string // IANA name, such as "Europe/Berlin"
	AcceptLanguage string // Accept-Language header; default derived from Locale
	Width, Height  int    // viewport in CSS pixels
	Headers        map[string]string
}

// Request is one job for the browser.
type Request struct {
	URL string
	// WaitUntil is "load" (default), "domcontentloaded" or "networkidle" (no
	// network activity for 500 ms).
	WaitUntil string
	// Actions run after the navigation, in order.
	Actions []spec.Action
	// Screenshot asks for a screenshot of the final page: a full-page PNG,
	// or as ScreenshotOptions say.
	Screenshot bool
	// ScreenshotOptions shape the screenshot (nil: full page, PNG).
	ScreenshotOptions *spec.ScreenshotOptions
	// PDF, when set, asks for the final page printed as PDF.
	PDF *PDFOptions
	// State is restored before the page navigates (nil: a clean context).
	State *spec.State
	// CaptureState asks for the state after the job in Result.State.
	CaptureState bool
	// Identity is applied before the navigation (nil: Chrome's defaults).
	Identity *Identity
	// BlockResources makes requests for images, media and fonts fail at once:
	// by the file extension of their URL, and by resource type on hosts
	// where that missed some (block.go).
	BlockResources bool
	// Tenant keeps apart what the pool learns from a job for the jobs after
	// it (the hosts that need blocking by type): what one tenant's jobs
	// teach applies to that tenant's jobs only.
	Tenant string
	// ProxyServer, when set, is the proxy of the job's browser context
	// (an exit of package proxy: a local guard listener chained to an
	// upstream proxy); the job then takes a new context, not a warm one.
	ProxyServer string
	// EgressError, when set, replaces Config.EgressError for the job (the
	// guard listener at ProxyServer knows the job's egress errors).
	EgressError func(rawURL string) string
	// BeforeNavigate, when set, runs right before the page's navigation,
	// after the tab and its setup are ready: the worker's pacing of
	// requests to a host waits there.
	BeforeNavigate func(ctx context.Context) error
	// Sent, when set, is called when the browser sends the page's first
	// document request and again when its answer arrives, with the time
	// (politeness records when the request left). It must not block.
	Sent func(at time.Time)
	// Log is the job's logger (its lines carry the job and tenant); nil:
	// the pool's.
	Log *slog.Logger

	// NetworkPatterns, when not empty, keeps the XHR and fetch responses
	// whose URL matches one of these patterns ("*" matches any run of
	// characters) in Result.Network, with their bodies.
	NetworkPatterns []string
	// HAR asks for a HAR 1.2 log of the page's requests in Result.HAR.
	HAR bool
	// Diagnostics asks, when the job fails after its tab opened, for a
	// screenshot, the DOM, the console messages and a HAR of that moment
	// (Result.Diagnostics, or a *DiagnosedError when there is no result).
	Diagnostics bool
}

// PDFOptions shape Result.PDF: the paper's size in inches and orientation.
type PDFOptions struct {
	Width, Height float64
	Landscape     bool
}

// Action statuses.
const (
	StatusOK     = "ok"
	StatusFailed = "failed"
)

// ActionResult is the outcome of one action.
type ActionResult struct {
	Index      int             `json:"index"`
	Type       string          `json:"type"`
	Status     string          `json:"status"` // "ok" or "failed"
	DurationMs int64           `json:"duration_ms"`
	Result     json.RawMessage `json:"result,omitempty"`     // evaluate's value
	Screenshot []byte          `json:"screenshot,omitempty"` // screenshot's PNG
	Error      string          `json:"error,omitempty"`
}

// Result is what a job produced.
type Result struct {
	FinalURL   string
	StatusCode int               // of the main document response
	Headers    map[string]string // of the main document response, lower-case names
	// HTML is the final DOM with its doctype.
	HTML string
	// Screenshot is a full-page PNG (or as Request.ScreenshotOptions say)
	// when Request.Screenshot.
	Screenshot []byte
	// PDF is the page printed as PDF when Request.PDF is set.
	PDF []byte
	// Actions has one entry per action run, the failed one included.
	Actions []ActionResult
	// State is the session state after the job when Request.CaptureState
	// (also when an action failed).
	State *spec.State
	// Network holds the responses that matched Request.NetworkPatterns, in
	// the order they finished.
	Network []NetworkResponse
	// HAR is the HAR 1.2 log (JSON) when Request.HAR.
	HAR []byte
	// Downloads are the files the page downloaded, in the order they began.
	Downloads []Download
	// Diagnostics is what the page looked like when the job failed (with
	// Request.Diagnostics).
	Diagnostics *Diagnostics
}

// NetworkResponse is one XHR or fetch response the job kept.
type NetworkResponse struct {
	URL      string
	Method   string
	Status   int
	MIMEType string
	// Body is the response body as Chrome decoded it. Truncated is set
	// when it was longer than MaxNetworkBody and was cut there.
	Body      []byte
	Truncated bool
}

// Download is one file the page downloaded.
type Download struct {
	// Filename is the name the page suggested (the server's
	// Content-Disposition, or the link's download attribute).
	Filename string
	MIMEType string
	URL      string
	Size     int64
	// Data holds the file; nil when it failed (Error says why).
	Data  []byte
	Error string
}

// ConsoleMessage is one line the page logged to its console, or an
// exception it did not catch (level "error").
type ConsoleMessage struct {
	Level string `json:"level"`
	Text  string `json:"text"`
}

// Diagnostics is the state of the page at the moment a job failed.
type Diagnostics struct {
	Screenshot []byte // PNG of the viewport
	DOM        string // the DOM with its doctype
	Console    []ConsoleMessage
	HAR        []byte // HAR 1.2 (JSON) of the requests up to then
}

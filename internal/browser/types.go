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
}

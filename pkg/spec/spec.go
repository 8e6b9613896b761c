package spec

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

// Kinds of job.
const (
	KindFetch    = "fetch"
	KindInteract = "interact"
)

// Outputs a job may ask for.
const (
	OutHTML       = "html"
	OutMarkdown   = "markdown"
	OutText       = "text"
	OutLinks      = "links"
	OutScreenshot = "screenshot"
	OutMetadata   = "metadata"
	OutJSON       = "json"
)

// Limits of a request.
const (
	MaxActions       = 50
	MaxTimeoutMs     = 300000
	DefaultTimeoutMs = 30000
	DefaultActionMs  = 10000
	MaxURLLength     = 8192
)

// Request is the body of POST /v1/fetch and POST /v1/interact, and a batch's
// template.
type Request struct {
	URL       string      `json:"url"`
	RenderJS  *bool       `json:"render_js,omitempty"`
	Session   *SessionRef `json:"session,omitempty"`
	Identity  string      `json:"identity,omitempty"`
	Actions   []Action    `json:"actions,omitempty"`
	Output    []string    `json:"output,omitempty"`
	Extract   *Extract    `json:"extract,omitempty"`
	Webhook   *Webhook    `json:"webhook,omitempty"`
	WaitUntil string      `json:"wait_until,omitempty"`
	TimeoutMs int         `json:"timeout_ms,omitempty"`
	// LoadResources keeps images, media and fonts loading in rendered jobs
	// that take no screenshot (they are blocked by default to save time).
	LoadResources bool `json:"load_resources,omitempty"`
	// Politeness bounds how hard the job's tenant presses the job's host
	// (nil: the tenant's settings, then the operator's).
	Politeness *Politeness `json:"politeness,omitempty"`
	// Proxy sends the job through a pool of the tenant's upstream proxies,
	// or directly ("none"); nil: the identity's pool, then the tenant's
	// default pool, then directly.
	Proxy *ProxyChoice `json:"proxy,omitempty"`
	// RetryOnBlock is how many more times a blocked job is tried at once,
	// each time through another proxy of its pool (0-5).
	RetryOnBlock int `json:"retry_on_block,omitempty"`

	// freshness (see fresh.go)

	// MaxAgeMs serves a fetch from the tenant's result cache when it holds
	// a result of the same request younger than this (0: never, but a
	// plain fetch still revalidates the cached result).
	MaxAgeMs *int64 `json:"max_age_ms,omitempty"`
	// StoreInCache false keeps the job's result out of the cache.
	StoreInCache *bool `json:"store_in_cache,omitempty"`
	// ChangeTracking compares the result with the last tracked one.
	ChangeTracking *ChangeTracking `json:"change_tracking,omitempty"`

	// artifacts (see artifact.go)

	// Screenshot shapes the screenshot output (nil: the viewport, PNG).
	Screenshot *ScreenshotOptions `json:"screenshot,omitempty"`
	// PDF shapes the pdf output (nil: A4, portrait).
	PDF *PDFOptions `json:"pdf,omitempty"`
	// Artifacts is "inline" (default) or "url": whether result.screenshot
	// and result.pdf.data carry the bytes or only result.artifacts links.
	Artifacts string `json:"artifacts,omitempty"`

	// capture (see capture.go)

	// Network says which XHR and fetch responses the network output keeps.
	Network *NetworkCapture `json:"network,omitempty"`
	// Diagnostics false keeps no diagnostics when a rendered job fails
	// (default true).
	Diagnostics *bool `json:"diagnostics,omitempty"`
}

// Politeness is how a tenant's jobs treat one host (the URL's host, and its
// port when it is not the scheme's default), across every worker. A field
// left out takes the tenant's setting, then the operator's.
type Politeness struct {
	// MaxConcurrencyPerHost bounds the tenant's jobs running against the
	// host at once (the operator's PAGEFLEET_HOST_CONCURRENCY is a ceiling).
	MaxConcurrencyPerHost int `json:"max_concurrency_per_host,omitempty" yaml:"max_concurrency_per_host"`
	// DelayMs is the least time between the starts of two of the tenant's
	// jobs against the host.
	DelayMs *int `json:"delay_ms,omitempty" yaml:"delay_ms"`
	// RespectCrawlDelay makes a crawl honour robots.txt's Crawl-delay
	// (default true for crawls).
	RespectCrawlDelay *bool `json:"respect_crawl_delay,omitempty" yaml:"respect_crawl_delay"`
	// Adaptive pauses the tenant's jobs to a host that answers 429 or 503
	// (for its Retry-After, else 5 s doubling up to 5 min) and runs them one
	// at a time until its answers are good again (default true).
	Adaptive *bool `json:"adaptive,omitempty" yaml:"adaptive"`
}

// Limits of politeness settings.
const (
	MaxHostConcurrency = 1000
	MaxHostDelayMs     = 3600000
)

// Validate checks the settings; path names the field ("politeness").
func (p *Politeness) Validate(path string) []FieldError {
	var errs []FieldError
	if p.MaxConcurrencyPerHost < 0 || p.MaxConcurrencyPerHost > MaxHostConcurrency {
		errs = append(errs, FieldError{path + ".max_concurrency_per_host", fmt.Sprintf("must be between 1 and %d", MaxHostConcurrency)})
	}
	if p.DelayMs != nil && (*p.DelayMs < 0 || *p.DelayMs > MaxHostDelayMs) {
		errs = append(errs, FieldError{path + ".delay_ms", fmt.Sprintf("must be between 0 and %d", MaxHostDelayMs)})
	}
	return errs
}

// SessionRef names a session.
type SessionRef struct {
	ID string `json:"id"`
}

// Action is one step of an interact job (or of a rendered fetch).
type Action struct {
	Type      string `json:"type"`
	Selector  string `json:"selector,omitempty"`
	Value     string `json:"value,omitempty"`
	Key       string `json:"key,omitempty"`
	Ms        int    `json:"ms,omitempty"`
	To        string `json:"to,omitempty"`
	Script    string `json:"script,omitempty"`
	URL       string `json:"url,omitempty"`
	State     string `json:"state,omitempty"`
	TimeoutMs int    `json:"timeout_ms,omitempty"`
}

// Extract asks for structured data in result.json.
type Extract struct {
	Mode      string          `json:"mode"`
	Schema    json.RawMessage `json:"schema,omitempty"`
	Selectors json.RawMessage `json:"selectors,omitempty"`
}

// Webhook asks for event deliveries.
type Webhook struct {
	URL      string          `json:"url"`
	Events   []string        `json:"events,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// OnlyChanged (freshness; a batch's webhook) sends batch.page only for
	// pages whose change status is new or changed.
	OnlyChanged bool `json:"only_changed,omitempty"`
}

// FieldError names one invalid field by its JSON path.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error implements error.
func (e FieldError) Error() string { return e.Field + ": " + e.Message }

// Webhook events.
const (
	EventJobSucceeded   = "job.succeeded"
	EventJobFailed      = "job.failed"
	EventBatchPage      = "batch.page"
	EventBatchCompleted = "batch.completed"
)

var sessionIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// ValidSessionID reports whether id is 1–128 characters of [A-Za-z0-9._:-].
func ValidSessionID(id string) bool { return sessionIDRe.MatchString(id) }

var nameRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidName reports whether n is a valid identity name.
func ValidName(n string) bool { return nameRe.MatchString(n) }

// Rendered reports whether the request runs in Chrome.
func (r *Request) Rendered(kind string) bool {
	if kind == KindInteract {
		return true
	}
	return r.RenderJS != nil && *r.RenderJS
}

// Wants reports whether output o was asked for.
func (r *Request) Wants(o string) bool {
	for _, x := range r.Output {
		if x == o {
			return true
		}
	}
	return false
}

// Normalize fills defaults in place: output ["html"], timeout, wait_until.
func (r *Request) Normalize(kind string) {
	if len(r.Output) == 0 {
		r.Output = []string{OutHTML}
	}
	if r.TimeoutMs == 0 {
		r.TimeoutMs = DefaultTimeoutMs
	}
	if r.WaitUntil == "" {
		r.WaitUntil = "load"
	}
	if kind == KindInteract {
		t := true
		r.RenderJS = &t
	}
}

// CheckURL validates a target URL: absolute http(s), a host, no credentials.
func CheckURL(raw string) string {
	if raw == "" {
		return "is required"
	}
	if len(raw) > MaxURLLength {
		return fmt.Sprintf("is longer than %d characters", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "is not a valid URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "must be an http or https URL"
	}
	if u.Host == "" || u.Hostname() == "" {
		return "must have a host"
	}
	if u.User != nil {
		return "must not contain credentials"
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return "has an invalid port"
		}
	}
	return ""
}

// Validate checks the request for kind ("fetch" or "interact") and returns
// every invalid field. prefix is prepended to field paths ("template." for a
// batch template).
func (r *Request) Validate(kind, prefix string) []FieldError {
	var errs []FieldError
	add := func(f, m string) { errs = append(errs, FieldError{Field: prefix + f, Message: m}) }
	if kind != KindFetch && kind != KindInteract {
		add("kind", "unknown kind")
		return errs
	}
	if prefix == "" || r.URL != "" {
		if m := CheckURL(r.URL); m != "" {
			add("url", m)
		}
	}
	if kind == KindInteract && r.RenderJS != nil && !*r.RenderJS {
		add("render_js", "is always true for interact")
	}
	if r.Session != nil && !ValidSessionID(r.Session.ID) {
		add("session.id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	if r.Identity != "" && !ValidName(r.Identity) {
		add("identity", "must be 1-64 characters of A-Z a-z 0-9 . _ -")
	}
	switch {
	case kind == KindInteract && len(r.Actions) == 0:
		add("actions", "is required and must not be empty for interact")
	case kind == KindFetch && len(r.Actions) > 0 && !r.Rendered(kind):
		add("actions", "needs render_js: true on fetch")
	}
	if len(r.Actions) > MaxActions {
		add("actions", fmt.Sprintf("must have at most %d actions", MaxActions))
	} else {
		for i, a := range r.Actions {
			for _, e := range a.Validate() {
				add(fmt.Sprintf("actions[%d].%s", i, e.Field), e.Message)
			}
		}
	}
	seen := map[string]bool{}
	for i, o := range r.Output {
		switch o {
		case OutHTML, OutMarkdown, OutText, OutLinks, OutScreenshot, OutMetadata, OutJSON, OutPDF,
			OutNetwork, OutHAR:
		default:
			add(fmt.Sprintf("output[%d]", i), "unknown output "+quote(o)+"; one of html, markdown, text, links, screenshot, metadata, json, pdf, network, har")
			continue
		}
		if seen[o] {
			add(fmt.Sprintf("output[%d]", i), "is listed twice")
		}
		seen[o] = true
		if o == OutScreenshot && !r.Rendered(kind) {
			add(fmt.Sprintf("output[%d]", i), "screenshot needs render_js: true")
		}
		if o == OutPDF && !r.Rendered(kind) {
			add(fmt.Sprintf("output[%d]", i), "pdf needs render_js: true")
		}
	}
	if seen[OutJSON] && r.Extract == nil {
		add("extract", "is required when output has json")
	}
	if r.Extract != nil {
		errs = append(errs, r.Extract.validate(prefix+"extract")...)
	}
	if r.Webhook != nil {
		errs = append(errs, r.Webhook.Validate(prefix+"webhook", []string{EventJobSucceeded, EventJobFailed})...)
	}
	switch r.WaitUntil {
	case "", "load", "domcontentloaded", "networkidle":
	default:
		add("wait_until", "must be one of load, domcontentloaded, networkidle")
	}
	if r.TimeoutMs < 0 || r.TimeoutMs > MaxTimeoutMs {
		add("timeout_ms", fmt.Sprintf("must be between 1 and %d", MaxTimeoutMs))
	}
	if r.Politeness != nil {
		errs = append(errs, r.Politeness.Validate(prefix+"politeness")...)
	}
	if r.RetryOnBlock < 0 || r.RetryOnBlock > MaxRetryOnBlock {
		add("retry_on_block", fmt.Sprintf("must be between 0 and %d", MaxRetryOnBlock))
	}
	errs = append(errs, r.validateFreshness(kind, prefix)...)
	errs = append(errs, r.validateArtifacts(prefix)...)
	errs = append(errs, r.validateCapture(kind, prefix)...)
	return errs
}

func (e *Extract) validate(path string) []FieldError {
	var errs []FieldError
	switch e.Mode {
	case "schema":
		var m map[string]any
		if len(e.Schema) == 0 || json.Unmarshal(e.Schema, &m) != nil || len(m) == 0 {
			errs = append(errs, FieldError{path + ".schema", "must be a non-empty object of field descriptions"})
		}
	case "selectors":
		var m map[string]any
		if len(e.Selectors) == 0 || json.Unmarshal(e.Selectors, &m) != nil || len(m) == 0 {
			errs = append(errs, FieldError{path + ".selectors", "must be a non-empty object of field selectors"})
		} else {
			errs = append(errs, checkSelectors(path+".selectors", m, 0)...)
		}
	default:
		errs = append(errs, FieldError{path + ".mode", `must be "schema" or "selectors"`})
	}
	return errs
}

func checkSelectors(path string, m map[string]any, depth int) []FieldError {
	var errs []FieldError
	if depth > 8 {
		return []FieldError{{path, "is nested too deeply"}}
	}
	for k, v := range m {
		p := path + "." + k
		switch x := v.(type) {
		case string:
			if strings.TrimSpace(x) == "" {
				errs = append(errs, FieldError{p, "must be a CSS selector"})
			}
		case map[string]any:
			if sel, ok := x["selector"]; ok {
				if s, ok := sel.(string); !ok || strings.TrimSpace(s) == "" {
					errs = append(errs, FieldError{p + ".selector", "must be a CSS selector"})
				}
				if a, ok := x["attr"]; ok {
					if _, ok := a.(string); !ok {
						errs = append(errs, FieldError{p + ".attr", "must be a string"})
					}
				}
				if a, ok := x["all"]; ok {
					if _, ok := a.(bool); !ok {
						errs = append(errs, FieldError{p + ".all", "must be a boolean"})
					}
				}
				if f, ok := x["fields"]; ok {
					if fm, ok := f.(map[string]any); ok {
						errs = append(errs, checkSelectors(p+".fields", fm, depth+1)...)
					} else {
						errs = append(errs, FieldError{p + ".fields", "must be an object"})
					}
				}
			} else {
				errs = append(errs, checkSelectors(p, x, depth+1)...)
			}
		default:
			errs = append(errs, FieldError{p, "must be a CSS selector or an object"})
		}
	}
	return errs
}

// Validate checks a webhook; allowed lists the events that may be named.
func (w *Webhook) Validate(path string, allowed []string) []FieldError {
	var errs []FieldError
	if m := CheckURL(w.URL); m != "" {
		errs = append(errs, FieldError{path + ".url", m})
	}
	for i, ev := range w.Events {
		ok := false
		for _, a := range allowed {
			ok = ok || a == ev
		}
		if !ok {
			errs = append(errs, FieldError{fmt.Sprintf("%s.events[%d]", path, i), "unknown event " + quote(ev) + "; one of " + strings.Join(allowed, ", ")})
		}
	}
	if len(w.Metadata) > 0 {
		var m map[string]any
		if json.Unmarshal(w.Metadata, &m) != nil {
			errs = append(errs, FieldError{path + ".metadata", "must be an object"})
		}
	}
	return errs
}

// WantsEvent reports whether the webhook asked for ev (all when none named).
func (w *Webhook) WantsEvent(ev string) bool {
	if w == nil {
		return false
	}
	if len(w.Events) == 0 {
		return true
	}
	for _, e := range w.Events {
		if e == ev {
			return true
		}
	}
	return false
}

// Action types.
const (
	ActType       = "type"
	ActClick      = "click"
	ActWaitFor    = "wait_for"
	ActWait       = "wait"
	ActPress      = "press"
	ActScroll     = "scroll"
	ActSelect     = "select"
	ActHover      = "hover"
	ActEvaluate   = "evaluate"
	ActScreenshot = "screenshot"
	ActNavigate   = "navigate"
)

// Validate checks one action; field names are relative to the action.
func (a *Action) Validate() []FieldError {
	var errs []FieldError
	need := func(f, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, FieldError{f, "is required for " + a.Type})
		}
	}
	switch a.Type {
	case ActType:
		need("selector", a.Selector)
		if a.Value == "" {
			errs = append(errs, FieldError{"value", "is required for type"})
		}
	case ActClick, ActHover:
		need("selector", a.Selector)
	case ActWaitFor:
		need("selector", a.Selector)
		switch a.State {
		case "", "visible", "attached", "hidden", "detached":
		default:
			errs = append(errs, FieldError{"state", "must be one of visible, attached, hidden, detached"})
		}
	case ActWait:
		if a.Ms <= 0 || a.Ms > 60000 {
			errs = append(errs, FieldError{"ms", "must be between 1 and 60000"})
		}
	case ActPress:
		need("key", a.Key)
	case ActScroll:
		if a.Selector == "" && a.To == "" {
			errs = append(errs, FieldError{"selector", `scroll needs selector or to: "bottom"`})
		}
		if a.To != "" && a.To != "bottom" && a.To != "top" {
			errs = append(errs, FieldError{"to", `must be "bottom" or "top"`})
		}
	case ActSelect:
		need("selector", a.Selector)
	case ActEvaluate:
		need("script", a.Script)
	case ActScreenshot:
	case ActNavigate:
		if m := CheckURL(a.URL); m != "" {
			errs = append(errs, FieldError{"url", m})
		}
	case "":
		errs = append(errs, FieldError{"type", "is required"})
	default:
		errs = append(errs, FieldError{"type", "unknown action type " + quote(a.Type)})
	}
	if a.TimeoutMs < 0 || a.TimeoutMs > MaxTimeoutMs {
		errs = append(errs, FieldError{"timeout_ms", fmt.Sprintf("must be between 1 and %d", MaxTimeoutMs)})
	}
	return errs
}

func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// Error is the "error" object of a failed job. Code names the cause
// (navigation_timeout, dns_failure, connection_refused, blocked_address,
// action_failed, browser_crashed, session_too_large, …).
type Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
	// Action is the index of the failing action for action_failed.
	Action *int `json:"action,omitempty"`
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes shared by the fetcher, the browser and the worker.
const (
	CodeNavigationTimeout = "navigation_timeout"
	CodeTimeout           = "timeout"
	CodeDNSFailure        = "dns_failure"
	CodeConnectionRefused = "connection_refused"
	CodeConnectionFailed  = "connection_failed"
	CodeTLSFailure        = "tls_failure"
	CodeBlockedAddress    = "blocked_address"
	CodeTooManyRedirects  = "too_many_redirects"
	CodeResponseTooLarge  = "response_too_large"
	CodeActionFailed      = "action_failed"
	CodeBrowserCrashed    = "browser_crashed"
	CodeNavigationFailed  = "navigation_failed"
	CodeSessionTooLarge   = "session_too_large"
	CodeCancelled         = "cancelled"
	CodeExtractionFailed  = "extraction_failed"
	CodeInternal          = "internal_error"
	// CodeBlocked ends a job whose response matched a block rule on every
	// try (result.blocked says which).
	CodeBlocked = "blocked"
	// CodeProxyFailed: no proxy of the job's pool could be reached or took
	// the credentials.
	CodeProxyFailed = "proxy_failed"
	// CodeRetriesExhausted ends a job whose last attempt left no outcome
	// (its worker died during it, or it could not reach Redis).
	CodeRetriesExhausted = "retries_exhausted"
)

// Errorf builds an *Error.
func Errorf(code string, retryable bool, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Retryable: retryable}
}

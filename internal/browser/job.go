package browser

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/inspector"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// testHookAfterNavigate, when set by a test, runs after the first navigation
// of every job.
var testHookAfterNavigate func(ctx context.Context, t *chromedp.Target, url string)

// httpErrorText is the error Page.navigate reports for an HTTP error status
// with an empty body: Chrome shows its own error page, but the target did
// answer, so it is no navigation error.
const httpErrorText = "net::ERR_HTTP_RESPONSE_CODE_FAILURE"

// emptyHTML stands for the DOM of a Chrome error page.
const emptyHTML = "<html><head></head><body></body></html>"

// maxScreenshotHeight bounds full-page screenshots (CSS pixels).
const maxScreenshotHeight = 16384

// job is one Render call on its tab. It follows the tab's events to know the
// state of the main frame's navigations and of the network.
type job struct {
	p   *Pool
	b   *browserProc
	tab *tab
	t   *chromedp.Target
	req Request
	log *slog.Logger // the job's (its lines carry the job and tenant)

	caller context.Context // the caller's context: the job's deadline
	// ctx ends with caller, or when the tab or the browser goes away, or
	// when the renderer crashes (see context.Cause).
	ctx       context.Context
	cancel    context.CancelCauseFunc
	stopAfter func() bool
	unlisten  context.CancelFunc
	wg        sync.WaitGroup

	main   cdp.FrameID // the main frame, whose id is the target's
	events string      // lifecycle event that ends a navigation
	host   string      // the tenant and the host of the job's URL (block.go)
	byType bool        // BlockResources blocks by resource type too (block.go)

	rec   *recorder // requests, console and downloads (capture.go)
	dlDir string    // the job's download directory ("" until setup)

	mu             sync.Mutex
	changed        chan struct{} // closed and replaced on every tracked event
	lifecycle      map[cdp.LoaderID]map[string]bool
	docRequests    map[network.RequestID]cdp.LoaderID
	sent           int // calls of req.Sent: 1 on the first document request, 2 on its answer
	responses      map[cdp.LoaderID]*network.Response
	docFailed      map[cdp.LoaderID]string
	commits        map[cdp.LoaderID]int // commit order of main-frame documents
	commitSeq      int
	committed      cdp.LoaderID // the main frame's current document
	url            string
	errorPage      bool
	origins        []string // http(s) origins of main-frame documents, in order
	navStarts      int      // cross-document main-frame navigations started
	startedLoader  cdp.LoaderID
	stoppedLoading int
	contexts       int // execution contexts created
	inflight       map[network.RequestID]bool
	lastNet        time.Time
	crashed        bool
	unnamed        bool // an image, font or media file loaded that was to be blocked
}

// newJob starts following the tab's events for req.
func newJob(p *Pool, b *browserProc, t *tab, caller context.Context, req Request) *job {
	ev, _ := lifecycleName(req.WaitUntil)
	j := &job{
		p: p, b: b, tab: t, t: t.target, req: req, log: req.Log,
		caller:      caller,
		main:        cdp.FrameID(t.target.TargetID),
		events:      ev,
		changed:     make(chan struct{}),
		lifecycle:   map[cdp.LoaderID]map[string]bool{},
		docRequests: map[network.RequestID]cdp.LoaderID{},
		responses:   map[cdp.LoaderID]*network.Response{},
		docFailed:   map[cdp.LoaderID]string{},
		commits:     map[cdp.LoaderID]int{},
		inflight:    map[network.RequestID]bool{},
		host:        req.Tenant + " " + hostOf(req.URL),
	}
	if j.log == nil {
		j.log = p.log
	}
	j.byType = req.BlockResources && p.typeHosts.needs(j.host)
	j.rec = newRecorder(req, j.main)
	j.ctx, j.cancel = context.WithCancelCause(caller)
	j.stopAfter = context.AfterFunc(t.ctx, func() { j.cancel(errBrowserGone) })
	lctx, unlisten := context.WithCancel(t.ctx)
	j.unlisten = unlisten
	if err := chromedp.Listen(lctx, j.onEvent); err != nil {
		j.cancel(err)
	}
	j.followDownloads()
	dialogs := cdp.Events(j.ctx, j.t, page.JavascriptDialogOpening)
	j.wg.Go(func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			// An alert blocks the page and every script: accept at once.
			_, _ = cdp.Call(j.ctx, j.t, page.HandleJavaScriptDialog,
				page.HandleJavaScriptDialogParams{Accept: true, PromptText: ev.DefaultPrompt})
		}
	})
	if j.intercepts() {
		paused := cdp.Events(j.ctx, j.t, fetch.RequestPaused)
		j.wg.Go(func() {
			for ev, err := range paused {
				if err != nil {
					return
				}
				// Answer the requests of a page at once, not one by one.
				j.wg.Go(func() { j.onRequestPaused(&ev) })
			}
		})
	}
	return j
}

// close stops following the tab.
func (j *job) close() {
	j.rec.mu.Lock()
	j.rec.closed = true // no more body reads start: wg.Wait below sees them all
	j.rec.mu.Unlock()
	j.cancel(context.Canceled)
	j.stopAfter()
	j.unlisten()
	j.wg.Wait()
	if j.dlDir != "" {
		if err := os.RemoveAll(j.dlDir); err != nil {
			j.log.Warn("remove the download directory", "dir", j.dlDir, "err", err)
		}
	}
}

// lifecycleName maps a wait_until value to Chrome's lifecycle event.
func lifecycleName(waitUntil string) (string, bool) {
	switch strings.ToLower(waitUntil) {
	case "", "load":
		return "load", true
	case "domcontentloaded":
		return "DOMContentLoaded", true
	case "networkidle":
		return "networkIdle", true
	}
	return "", false
}

// onEvent records an event of the tab. It runs on the tab's event loop, so it
// only updates state.
func (j *job) onEvent(ev any) {
	if id := j.rec.onEvent(ev); id != "" {
		j.rec.mu.Lock()
		if j.rec.closed {
			j.rec.reading--
		} else {
			j.wg.Go(func() { j.readBody(id) })
		}
		j.rec.mu.Unlock()
	}
	crashed := false
	j.mu.Lock()
	switch e := ev.(type) {
	case *page.EventFrameNavigated:
		if e.Frame.ParentID != "" {
			j.mu.Unlock()
			return
		}
		j.commitSeq++
		j.commits[e.Frame.LoaderID] = j.commitSeq
		j.committed = e.Frame.LoaderID
		j.errorPage = e.Frame.UnreachableURL != ""
		if j.errorPage {
			j.url = e.Frame.UnreachableURL
		} else {
			j.url = e.Frame.URL + e.Frame.URLFragment
			j.addOriginLocked(e.Frame.SecurityOrigin)
		}
	case *page.EventNavigatedWithinDocument:
		if e.FrameID != j.main {
			j.mu.Unlock()
			return
		}
		j.url = e.URL
	case *page.EventFrameStartedNavigating:
		if e.FrameID != j.main || e.NavigationType == page.FrameStartedNavigatingNavigationTypeSameDocument ||
			e.NavigationType == page.FrameStartedNavigatingNavigationTypeHistorySameDocument {
			j.mu.Unlock()
			return
		}
		j.navStarts++
		j.startedLoader = e.LoaderID
	case *page.EventFrameStoppedLoading:
		if e.FrameID != j.main {
			j.mu.Unlock()
			return
		}
		j.stoppedLoading++
	case *page.EventLifecycleEvent:
		if e.FrameID != j.main {
			j.mu.Unlock()
			return
		}
		m := j.lifecycle[e.LoaderID]
		if m == nil {
			m = map[string]bool{}
			j.lifecycle[e.LoaderID] = m
		}
		m[e.Name] = true
	case *network.EventRequestWillBeSent:
		if e.Type != network.ResourceTypeEventSource && e.Type != network.ResourceTypeWebSocket {
			j.inflight[e.RequestID] = true
		}
		j.lastNet = time.Now()
		if e.Type == network.ResourceTypeDocument && e.FrameID == j.main {
			j.docRequests[e.RequestID] = e.LoaderID
			if f := j.req.Sent; f != nil && j.sent == 0 {
				j.sent = 1
				f(time.Now())
			}
		}
	case *network.EventResponseReceived:
		if j.req.BlockResources && isBlockedType(e.Type) && !j.unnamed && e.FrameID == j.main && missedByName(e.Response) {
			// A resource that blockByName did not recognise: block by type
			// on this host from now on.
			j.unnamed = true
			j.p.typeHosts.note(j.host)
			j.log.Debug("resource not blocked by name; the host's next jobs block by type", "host", j.host, "url", e.Response.URL)
		}
		if e.Type != network.ResourceTypeDocument || e.FrameID != j.main {
			j.mu.Unlock()
			return
		}
		if f := j.req.Sent; f != nil && j.sent == 1 {
			j.sent = 2
			f(time.Now())
		}
		j.responses[e.LoaderID] = e.Response
	case *network.EventLoadingFinished:
		delete(j.inflight, e.RequestID)
		j.lastNet = time.Now()
	case *network.EventLoadingFailed:
		delete(j.inflight, e.RequestID)
		j.lastNet = time.Now()
		if loader, ok := j.docRequests[e.RequestID]; ok {
			j.docFailed[loader] = e.ErrorText
		}
	case *runtime.EventExecutionContextCreated:
		j.contexts++
	case *inspector.EventTargetCrashed:
		j.crashed = true
		crashed = true
	default:
		j.mu.Unlock()
		return
	}
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
	if crashed {
		j.cancel(errRendererCrashed)
	}
}

// addOriginLocked records an http(s) origin the job touched.
func (j *job) addOriginLocked(origin string) {
	if !strings.HasPrefix(origin, "http://") && !strings.HasPrefix(origin, "https://") {
		return
	}
	for _, o := range j.origins {
		if o == origin {
			return
		}
	}
	j.origins = append(j.origins, origin)
}

// waitUntil blocks until cond, called with j.mu held, reports done or an
// error, or until ctx ends.
func (j *job) waitUntil(ctx context.Context, cond func() (bool, error)) error {
	for {
		j.mu.Lock()
		ok, err := cond()
		ch := j.changed
		j.mu.Unlock()
		if ok || err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run does the job.
func (j *job) run() (*Result, error) {
	if err := j.setup(); err != nil {
		return nil, err
	}
	if f := j.req.BeforeNavigate; f != nil {
		if err := f(j.ctx); err != nil {
			return nil, j.navError(err, j.req.URL)
		}
	}
	if err := j.navigate(j.ctx, j.req.URL); err != nil {
		if res := j.documentNotShown(err); res != nil {
			return res, nil
		}
		return nil, j.failed(j.navError(err, j.req.URL))
	}
	if testHookAfterNavigate != nil {
		testHookAfterNavigate(j.ctx, j.t, j.req.URL)
	}

	res := &Result{}
	var failed error
	res.Actions, failed = j.runActions()
	if failed != nil {
		if ce := j.crashError(); ce != nil {
			return nil, ce
		}
		res.Diagnostics = j.diagnose()
	}
	if j.ctx.Err() != nil {
		// The deadline passed during the actions: report what ran, capture
		// nothing more.
		if failed != nil {
			return res, failed
		}
		return nil, j.failed(j.ctxError("after the actions"))
	}
	res.Downloads = j.collectDownloads(mayDownload(j.req.Actions))
	if err := j.capture(res); err != nil {
		var je *spec.Error
		if errors.As(err, &je) && j.ctx.Err() == nil {
			return nil, j.failed(je) // the job's own mistake (a screenshot selector that matches nothing)
		}
		return nil, j.failed(j.stepError(err, "capture the page"))
	}
	if j.req.CaptureState {
		st, err := j.captureState(j.ctx)
		if err != nil {
			return nil, j.stepError(err, "capture the session state")
		}
		res.State = st
	}
	return res, failed
}

// setup prepares the tab before the navigation: interception, identity,
// session state.
func (j *job) setup() error {
	var steps []func(context.Context) error
	if j.intercepts() {
		steps = append(steps, j.enableFetch)
	}
	if j.req.BlockResources {
		steps = append(steps, j.blockByName)
	}
	steps = append(steps, j.identitySteps()...)
	if j.req.State != nil && len(j.req.State.Cookies) > 0 {
		steps = append(steps, j.restoreCookies)
	}
	steps = append(steps, j.enableDownloads)
	if err := parallel(j.ctx, steps...); err != nil {
		return j.stepError(err, "prepare the tab")
	}
	if err := j.restoreStorage(j.ctx); err != nil {
		return j.stepError(err, "restore the session state")
	}
	return nil
}

// parallel runs the steps at once and returns the first error.
func parallel(ctx context.Context, steps ...func(context.Context) error) error {
	if len(steps) == 0 {
		return nil
	}
	if len(steps) == 1 {
		return steps[0](ctx)
	}
	errs := make([]error, len(steps))
	var wg sync.WaitGroup
	for i, step := range steps {
		wg.Go(func() { errs[i] = step(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// navError is a navigation that Chrome reported as failed.
type navError struct{ text string }

func (e *navError) Error() string { return e.text }

// egressError is a main document that the egress proxy answered with its
// error header.
type egressError struct{ code string }

func (e *egressError) Error() string { return "egress proxy refused the request: " + e.code }

// navigate loads rawURL in the main frame and waits for the job's lifecycle
// event.
func (j *job) navigate(ctx context.Context, rawURL string) error {
	res, err := cdp.Call(ctx, j.t, page.Navigate, page.NavigateParams{URL: rawURL})
	if err != nil {
		return err
	}
	if res.ErrorText != "" && res.ErrorText != httpErrorText {
		return &navError{text: res.ErrorText}
	}
	if res.LoaderID == "" {
		return nil // a navigation within the document
	}
	if err := j.waitLoaded(ctx, res.LoaderID, j.events); err != nil {
		return err
	}
	return j.egressCheck()
}

// waitLoaded waits until the document of loader, or a document that replaced
// it since (a client-side redirect), fired event.
func (j *job) waitLoaded(ctx context.Context, loader cdp.LoaderID, event string) error {
	return j.waitUntil(ctx, func() (bool, error) {
		seq := j.commits[loader]
		if seq == 0 {
			// An HTTP error without a body still commits (Chrome's error
			// page, with the same loader): wait for it.
			if text, ok := j.docFailed[loader]; ok && text != httpErrorText {
				return true, &navError{text: text}
			}
			return false, nil
		}
		cur := loader
		if j.commitSeq > seq {
			cur = j.committed
		}
		return j.lifecycle[cur][event], nil
	})
}

// egressCheck returns an *egressError when the current main document is an
// error response of the egress proxy.
func (j *job) egressCheck() error {
	j.mu.Lock()
	resp := j.responses[j.committed]
	j.mu.Unlock()
	if resp == nil {
		return nil
	}
	for k, v := range resp.Headers {
		if strings.EqualFold(k, EgressErrorHeader) {
			if code := strings.TrimSpace(fmt.Sprint(v)); code != "" {
				return &egressError{code: code}
			}
		}
	}
	return nil
}

// crashError returns browser_crashed when the renderer crashed or the
// browser went away while the caller still waits, and nil otherwise.
func (j *job) crashError() error {
	if j.caller.Err() != nil {
		return nil
	}
	j.mu.Lock()
	crashed := j.crashed
	j.mu.Unlock()
	cause := context.Cause(j.ctx)
	switch {
	case crashed || errors.Is(cause, errRendererCrashed):
		return wrap(spec.Errorf(spec.CodeBrowserCrashed, true, "the page's renderer process crashed"), errRendererCrashed)
	case j.b.isLost() || errors.Is(cause, errBrowserGone):
		return wrap(spec.Errorf(spec.CodeBrowserCrashed, true, "the browser process exited during the job"), errBrowserGone)
	}
	return nil
}

// ctxError describes the end of the caller's context during what.
func (j *job) ctxError(what string) error {
	err := j.caller.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return wrap(spec.Errorf(spec.CodeTimeout, true, "job timed out %s", what), err)
	}
	if err == nil {
		err = context.Canceled
	}
	return wrap(spec.Errorf(spec.CodeCancelled, false, "job cancelled %s", what), err)
}

// navError turns an error of the first navigation into a *spec.Error.
func (j *job) navError(err error, rawURL string) error {
	if ce := j.crashError(); ce != nil {
		return ce
	}
	if cerr := j.caller.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return wrap(spec.Errorf(spec.CodeNavigationTimeout, true, "%s did not finish loading (wait_until %s) before the job's deadline", rawURL, j.events), cerr)
		}
		return j.ctxError("during the navigation")
	}
	var ee *egressError
	if errors.As(err, &ee) {
		return spec.Errorf(ee.code, egressRetryable(ee.code), "the egress proxy refused %s: %s", rawURL, ee.code)
	}
	var ne *navError
	if errors.As(err, &ne) {
		f := j.p.cfg.EgressError
		if j.req.EgressError != nil {
			f = j.req.EgressError
		}
		if f != nil {
			if code := f(rawURL); code != "" {
				return spec.Errorf(code, egressRetryable(code), "the egress proxy refused %s: %s (%s)", rawURL, code, ne.text)
			}
		}
		code, retryable := netError(ne.text)
		return spec.Errorf(code, retryable, "navigate to %s: %s", rawURL, ne.text)
	}
	return wrap(spec.Errorf(spec.CodeNavigationFailed, false, "navigate to %s: %v", rawURL, err), err)
}

// stepError turns an error of a step other than the navigation and the
// actions into a *spec.Error.
func (j *job) stepError(err error, what string) error {
	if ce := j.crashError(); ce != nil {
		return ce
	}
	if j.caller.Err() != nil {
		if errors.Is(j.caller.Err(), context.DeadlineExceeded) && strings.HasPrefix(what, "prepare") {
			return wrap(spec.Errorf(spec.CodeNavigationTimeout, true, "job timed out before the navigation"), j.caller.Err())
		}
		return j.ctxError("during " + what)
	}
	return wrap(spec.Errorf(spec.CodeInternal, false, "%s: %v", what, err), err)
}

// evaluate runs a JavaScript expression in the main frame, awaiting a
// promise, and returns the result by value. An exception gives a *jsError.
func (j *job) evaluate(ctx context.Context, expr string) (*runtime.RemoteObject, error) {
	res, err := cdp.Call(ctx, j.t, runtime.Evaluate, runtime.EvaluateParams{
		Expression:    expr,
		ReturnByValue: new(true),
		AwaitPromise:  new(true),
		UserGesture:   new(true),
		Silent:        new(true),
	})
	if err != nil {
		return nil, err
	}
	if res.ExceptionDetails != nil {
		return nil, newJSError(res.ExceptionDetails)
	}
	return res.Result, nil
}

// evaluateInto runs expr and decodes its JSON value into v.
func (j *job) evaluateInto(ctx context.Context, expr string, v any) error {
	obj, err := j.evaluate(ctx, expr)
	if err != nil {
		return err
	}
	if len(obj.Value) == 0 {
		return fmt.Errorf("script returned %s, not a value", obj.Type)
	}
	return json.Unmarshal(obj.Value, v)
}

// jsError is an exception thrown by a script.
type jsError struct{ text string }

func (e *jsError) Error() string { return e.text }

func newJSError(d *runtime.ExceptionDetails) *jsError {
	text := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		text = d.Exception.Description
		if i := strings.Index(text, "\n    at "); i > 0 {
			text = text[:i]
		}
	}
	return &jsError{text: text}
}

// htmlScript reads the final URL and the DOM with its doctype.
const htmlScript = `(() => {
  const d = document;
  const doctype = d.doctype ? new XMLSerializer().serializeToString(d.doctype) + "\n" : "";
  return [location.href, doctype + (d.documentElement ? d.documentElement.outerHTML : "")];
})()`

// documentNotShown is the result of a first navigation that Chrome ended
// without a document because the response is a PDF: full Chromium shows it
// in its viewer, chromium-headless-shell has no viewer and aborts the
// navigation (net::ERR_ABORTED). The response's status and headers say
// what it was, so the worker reads the PDF itself (run.go). nil when err
// is anything else.
func (j *job) documentNotShown(err error) *Result {
	var ne *navError
	if !errors.As(err, &ne) || ne.text != "net::ERR_ABORTED" || j.caller.Err() != nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, resp := range j.responses {
		if resp == nil || !strings.EqualFold(strings.TrimSpace(strings.Split(resp.MimeType, ";")[0]), "application/pdf") {
			continue
		}
		res := &Result{FinalURL: resp.URL, StatusCode: int(resp.Status), Headers: make(map[string]string, len(resp.Headers))}
		for k, v := range resp.Headers {
			res.Headers[strings.ToLower(k)] = fmt.Sprint(v)
		}
		if res.Headers["content-type"] == "" {
			res.Headers["content-type"] = resp.MimeType
		}
		return res
	}
	return nil
}

// capture fills the page's URL, response, DOM and screenshot into res.
func (j *job) capture(res *Result) error {
	j.mu.Lock()
	resp := j.responses[j.committed]
	res.FinalURL = j.url
	errorPage := j.errorPage
	j.mu.Unlock()
	if resp != nil {
		res.StatusCode = int(resp.Status)
		res.Headers = make(map[string]string, len(resp.Headers))
		for k, v := range resp.Headers {
			res.Headers[strings.ToLower(k)] = fmt.Sprint(v)
		}
	}
	if errorPage {
		res.HTML = emptyHTML
	} else {
		var out [2]string
		if err := j.evaluateInto(j.ctx, htmlScript, &out); err != nil {
			return fmt.Errorf("read the DOM: %w", err)
		}
		res.FinalURL, res.HTML = out[0], out[1]
	}
	if j.req.Screenshot {
		var img []byte
		var err error
		if o := j.req.ScreenshotOptions; o != nil && (o.Selector != "" || o.Format == "jpeg" || (o.FullPage != nil && !*o.FullPage)) {
			img, err = j.screenshotWith(j.ctx, o)
		} else {
			img, err = j.screenshot(j.ctx)
		}
		if err != nil {
			return fmt.Errorf("screenshot: %w", err)
		}
		res.Screenshot = img
	}
	if o := j.req.PDF; o != nil {
		r, err := cdp.Call(j.ctx, j.t, page.PrintToPDF, page.PrintToPDFParams{
			Landscape: new(o.Landscape), PrintBackground: new(true),
			PaperWidth: o.Width, PaperHeight: o.Height,
		})
		if err != nil {
			return fmt.Errorf("print to PDF: %w", err)
		}
		res.PDF = r.Data
	}
	if len(j.req.NetworkPatterns) > 0 {
		res.Network = j.networkResponses()
	}
	if j.req.HAR {
		b, err := j.harLog()
		if err != nil {
			return fmt.Errorf("HAR: %w", err)
		}
		res.HAR = b
	}
	return nil
}

// elementBoxScript finds an element (its selector is %s, quoted) and
// returns its box in page coordinates, or null.
const elementBoxScript = `(() => {
  const e = document.querySelector(%s);
  if (!e) return null;
  e.scrollIntoView({block: "nearest", inline: "nearest"});
  const r = e.getBoundingClientRect();
  return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];
})()`

// screenshotWith takes the screenshot options ask for: the viewport, the
// full page or one element, as PNG or JPEG.
func (j *job) screenshotWith(ctx context.Context, o *spec.ScreenshotOptions) ([]byte, error) {
	p := page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatPng}
	if o.Format == "jpeg" {
		q := int64(o.Quality)
		if q == 0 {
			q = spec.DefaultJPEGQuality
		}
		p.Format, p.Quality = page.CaptureScreenshotFormatJpeg, &q
	}
	switch {
	case o.Selector != "":
		sel, _ := json.Marshal(o.Selector)
		var box []float64
		if err := j.evaluateInto(ctx, fmt.Sprintf(elementBoxScript, sel), &box); err != nil {
			if _, ok := err.(*jsError); ok {
				return nil, spec.Errorf(spec.CodeScreenshotFailed, false, "screenshot.selector %q: %v", o.Selector, err)
			}
			return nil, err
		}
		if box == nil {
			return nil, spec.Errorf(spec.CodeScreenshotFailed, false, "screenshot.selector %q matches no element", o.Selector)
		}
		if len(box) != 4 || box[2] < 1 || box[3] < 1 {
			return nil, spec.Errorf(spec.CodeScreenshotFailed, false, "screenshot.selector %q matches an element with no size", o.Selector)
		}
		p.CaptureBeyondViewport, p.FromSurface = new(true), new(true)
		p.Clip = &page.Viewport{X: box[0], Y: box[1], Width: box[2], Height: min(box[3], maxScreenshotHeight), Scale: 1}
	case o.FullPage == nil || *o.FullPage:
		m, err := cdp.Call(ctx, j.t, page.GetLayoutMetrics, cdp.Empty{})
		if err != nil {
			return nil, err
		}
		if c := m.CSSContentSize; c != nil && c.Width > 0 && c.Height > 0 {
			p.CaptureBeyondViewport, p.FromSurface = new(true), new(true)
			p.Clip = &page.Viewport{X: 0, Y: 0, Width: c.Width, Height: min(c.Height, maxScreenshotHeight), Scale: 1}
		}
	}
	r, err := cdp.Call(ctx, j.t, page.CaptureScreenshot, p)
	return r.Data, err
}

// screenshot takes a full-page PNG, at most maxScreenshotHeight high.
func (j *job) screenshot(ctx context.Context) ([]byte, error) {
	m, err := cdp.Call(ctx, j.t, page.GetLayoutMetrics, cdp.Empty{})
	if err != nil {
		return nil, err
	}
	var w, h float64
	if m.CSSLayoutViewport != nil {
		w, h = float64(m.CSSLayoutViewport.ClientWidth), float64(m.CSSLayoutViewport.ClientHeight)
	}
	if c := m.CSSContentSize; c != nil {
		w, h = max(w, c.Width), max(h, c.Height)
	}
	if w <= 0 || h <= 0 {
		res, err := cdp.Call(ctx, j.t, page.CaptureScreenshot, page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatPng})
		return res.Data, err
	}
	res, err := cdp.Call(ctx, j.t, page.CaptureScreenshot, page.CaptureScreenshotParams{
		Format:                page.CaptureScreenshotFormatPng,
		CaptureBeyondViewport: new(true),
		FromSurface:           new(true),
		Clip:                  &page.Viewport{X: 0, Y: 0, Width: w, Height: min(h, maxScreenshotHeight), Scale: 1},
	})
	return res.Data, err
}

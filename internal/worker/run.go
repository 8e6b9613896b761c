package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/internal/convert"
	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/extract"
	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/identity"
	"github.com/pagefleet/pagefleet/internal/proxy"
	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

type runOutcome struct {
	result  *spec.Result
	err     *spec.Error
	updated bool
	saved   bool
	// cached: the result is a cached one, reused (fresh.go): result
	// holds its head, cached its core as the job's record keeps it.
	cached *cachedResult
}

// run executes the job and derives its outputs. It tries the job once
// directly, or through a proxy of its pool; a proxy that fails is replaced
// at once by another of the pool, and a blocked answer is tried again
// through another proxy up to retry_on_block times.
func (w *Worker) run(ctx context.Context, p *jobs.RunPayload, lease *session.Lease, log *slog.Logger, pace *pacer) runOutcome {
	req := &p.Request
	ident, ierr := w.loadIdentity(ctx, p.Tenant, req)
	if ierr != nil {
		w.touchSession(ctx, lease)
		return runOutcome{err: ierr}
	}
	var prev *spec.State
	var meta *session.Meta
	if lease != nil {
		st, m, err := w.Sessions.Load(ctx, p.Tenant, lease.SID)
		switch {
		case errors.Is(err, session.ErrNotFound):
		case err != nil:
			return runOutcome{err: spec.Errorf(spec.CodeInternal, true, "load session: %v", err)}
		default:
			prev, meta = st, m
		}
	}
	rt, rerr := w.routeOf(p.Tenant, req, ident, meta)
	if rerr != nil {
		w.touchSession(ctx, lease)
		return runOutcome{err: rerr}
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var t tryOutcome
	var log2 []spec.Try
	var up *egress.Upstream
	blockRetries := req.RetryOnBlock
	for {
		var ok bool
		up, ok = rt.next(runCtx, log)
		if !ok {
			break // every proxy of the pool was tried: t is the last try's
		}
		t = w.try(runCtx, p, prev, lease != nil, ident, up, log, pace)
		if t.reused != nil {
			return *t.reused
		}
		entry := spec.Try{}
		if up != nil {
			entry.ProxyID = up.ID
		}
		if t.err != nil && t.res == nil {
			entry.ErrorCode = t.err.Code
			log2 = append(log2, entry)
			if up != nil && t.err.Code == spec.CodeProxyFailed && runCtx.Err() == nil {
				log.Warn("proxy failed; trying another of the pool", "pool", up.Pool, "proxy", up.ID, "err", t.err.Message)
				rt.left(up, spec.CodeProxyFailed, lease != nil)
				if rt.untried() {
					continue
				}
			}
			break
		}
		entry.StatusCode = t.res.StatusCode
		t.blocked = proxy.Detect(t.res.StatusCode, t.res.Headers, t.html, w.blockRules(p.Tenant))
		entry.BlockReason = t.blocked
		log2 = append(log2, entry)
		if up != nil {
			w.Proxies.Picker.Worked(context.WithoutCancel(ctx), up)
		}
		if t.blocked == "" {
			break
		}
		if up != nil {
			w.Proxies.Picker.Blocked(context.WithoutCancel(ctx), up, rt.host)
			rt.left(up, "blocked", lease != nil)
		}
		log.Info("blocked", "reason", t.blocked, "proxy", entry.ProxyID, "status_code", t.res.StatusCode, "retries_left", blockRetries)
		if blockRetries == 0 || rt.pool == nil || !rt.untried() || runCtx.Err() != nil {
			break
		}
		blockRetries--
	}

	res, jerr := t.res, t.err
	if res == nil {
		w.touchSession(ctx, lease) // a failed job used the session too
		if jerr == nil {
			jerr = spec.Errorf(spec.CodeInternal, true, "no try ran")
		}
		if t.diag != nil {
			// A rendered job that failed before it had a page to show
			// still keeps what the browser saw at its last try
			// (capture.go).
			return runOutcome{result: &spec.Result{URL: req.URL, Diagnostics: w.keeper(ctx, p).diagnostics(t.diag)}, err: jerr}
		}
		return runOutcome{err: jerr}
	}
	if up != nil {
		res.Proxy = &spec.ProxyRef{Pool: up.Pool, ID: up.ID}
	}
	if up != nil || len(log2) > 1 {
		res.AttemptsLog = log2
	}
	if t.blocked != "" {
		res.Blocked = &spec.Blocked{Reason: t.blocked}
		if jerr == nil {
			tries := "once"
			if n := len(log2); n > 1 {
				tries = fmt.Sprintf("on each of %d tries", n)
			}
			jerr = spec.Errorf(spec.CodeBlocked, false, "the site blocked the request %s (%s)", tries, t.blocked)
		}
	}

	if t.doc != nil {
		if err := pdfOutputs(req, res, t.doc); err != nil && jerr == nil {
			jerr = err
		}
	} else if err := w.outputs(runCtx, req, res, t.html, p.Crawl); err != nil && jerr == nil {
		jerr = err
	}
	if err := w.keepArtifacts(ctx, p, res, t.pdf); err != nil && jerr == nil {
		jerr = err
	}

	out := runOutcome{result: res, err: jerr}
	next := t.next
	if lease != nil && next != nil && (jerr == nil || jerr.Code == spec.CodeActionFailed) {
		changed, err := w.Sessions.Save(context.WithoutCancel(ctx), lease, next)
		switch {
		case errors.Is(err, session.ErrTooLarge):
			out.err = spec.Errorf(spec.CodeSessionTooLarge, false, "the session state would exceed the size cap; the stored state is unchanged")
			w.touchSession(ctx, lease)
		case errors.Is(err, session.ErrDeleted):
			// The user deleted the session while the job ran (DELETE waits
			// only so long): the job's result stands, nothing is saved.
			w.Logger.Info("session deleted while its job ran; state not saved", "job", p.JobID, "tenant", p.Tenant, "session", lease.SID)
		case errors.Is(err, session.ErrStaleFence):
			return runOutcome{err: spec.Errorf(spec.CodeInternal, true, "session lease lost")}
		case err != nil:
			return runOutcome{err: spec.Errorf(spec.CodeInternal, true, "save session: %v", err)}
		default:
			out.updated, out.saved = changed, true
		}
	} else {
		w.touchSession(ctx, lease)
	}
	w.recordSessionProxy(ctx, lease, rt, up, meta)
	return out
}

// tryOutcome is one try of a job.
type tryOutcome struct {
	res     *spec.Result // nil when the try got no response
	html    string
	next    *spec.State // the session's state after the try
	err     *spec.Error
	blocked string
	// diag is the diagnostics of a rendered try that failed without a
	// result, not stored yet: only the last try's are (capture.go).
	diag *browser.Diagnostics
	// reused is the whole outcome when a revalidation got 304: the
	// cached result, as it was (fresh.go).
	reused *runOutcome
	// pdf is the pdf output: the page printed by Chrome.
	pdf []byte
	// doc is the target's body when it is a PDF document (artifacts.go).
	doc []byte
}

// try runs the job once, directly (up nil) or through up.
// pace (may be nil) waits for the host right before the request and
// records when the request left.
func (w *Worker) try(ctx context.Context, p *jobs.RunPayload, prev *spec.State, inSession bool, ident *identity.Profile, up *egress.Upstream, log *slog.Logger, pace *pacer) tryOutcome {
	req := &p.Request
	res := &spec.Result{URL: req.URL}
	if req.Rendered(p.Kind) {
		shot := req.Wants(spec.OutScreenshot)
		breq := browser.Request{
			URL: req.URL, WaitUntil: req.WaitUntil, Actions: req.Actions, Screenshot: shot,
			State: prev, CaptureState: inSession, Identity: browserIdentity(ident),
			BlockResources: !shot && !shotAction(req.Actions) && !req.LoadResources && !req.Wants(spec.OutPDF), Tenant: p.Tenant, Log: log,
			ScreenshotOptions: req.Screenshot,
		}
		if req.Wants(spec.OutPDF) {
			pw, ph, landscape := req.PDFPaper()
			breq.PDF = &browser.PDFOptions{Width: pw, Height: ph, Landscape: landscape}
		}
		captureRequest(&breq, p)
		if pace != nil {
			breq.BeforeNavigate, breq.Sent = pace.wait, pace.sent
		}
		if up != nil {
			var xerr *spec.Error
			breq.ProxyServer, breq.EgressError, xerr = w.exitFor(ctx, up)
			if xerr != nil {
				return tryOutcome{err: xerr}
			}
		}
		br, err := w.Browser.Render(ctx, breq)
		var jerr *spec.Error
		if err != nil {
			jerr = asJobError(err, ctx)
		}
		if br == nil {
			return tryOutcome{err: jerr, diag: diagnosedError(err)}
		}
		res.FinalURL, res.StatusCode, res.Headers = br.FinalURL, br.StatusCode, br.Headers
		if shot {
			res.Screenshot = br.Screenshot
		}
		for _, a := range br.Actions {
			res.Actions = append(res.Actions, spec.ActionResult{Index: a.Index, Type: a.Type, Status: a.Status,
				DurationMs: a.DurationMs, Result: a.Result, Screenshot: a.Screenshot, Error: a.Error})
		}
		w.keeper(ctx, p).keepCapture(res, br)
		t := tryOutcome{res: res, html: br.HTML, next: br.State, err: jerr, pdf: br.PDF}
		if jerr == nil && convert.IsPDF(br.Headers["content-type"], nil) {
			// Chrome shows a PDF in its viewer: the document's bytes come
			// from a plain fetch of the same URL, through the same exit.
			t.doc, t.err = w.fetchPDF(ctx, req, res.FinalURL, ident, up)
		}
		return t
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	freq := fetch.Request{URL: req.URL, Timeout: timeout, Headers: identity.RequestHeaders(ident), Via: up}
	if prev != nil {
		freq.Cookies = prev.Cookies
	}
	rv := revalidationOf(ctx) // freshness: a stale cache entry's validators
	rv.conditional(&freq)
	if pace != nil {
		if err := pace.wait(ctx); err != nil {
			return tryOutcome{err: asJobError(err, ctx)}
		}
		freq.Sent = pace.sent
	}
	fr, err := w.Fetcher.Do(ctx, freq)
	if err != nil {
		return tryOutcome{err: asJobError(err, ctx)}
	}
	if out, ok := rv.notModified(fr); ok {
		return tryOutcome{reused: &out} // 304: the cached result, as it was
	}
	res.FinalURL, res.StatusCode, res.Headers = fr.FinalURL, fr.StatusCode, fr.Headers
	t := tryOutcome{res: res, html: fr.Body}
	if fr.Binary && convert.IsPDF(fr.ContentType, []byte(fr.Body[:min(len(fr.Body), 5)])) {
		t.doc, t.html = []byte(fr.Body), ""
	}
	if inSession {
		t.next = spec.CloneState(prev)
		t.next.Cookies = fr.Cookies
	}
	return t
}

// recordSessionProxy records the proxy the session's last try left
// through, and its move when it moved.
func (w *Worker) recordSessionProxy(ctx context.Context, lease *session.Lease, rt *route, up *egress.Upstream, meta *session.Meta) {
	if lease == nil || rt == nil || up == nil {
		return
	}
	ref := spec.ProxyRef{Pool: up.Pool, ID: up.ID}
	move := rt.move
	if move != nil {
		move.To = up.ID
		if move.From == move.To {
			move = nil
		}
	}
	if move == nil && meta != nil && meta.Proxy != nil && *meta.Proxy == ref {
		return // it stayed
	}
	if err := w.Sessions.SetProxy(context.WithoutCancel(ctx), lease, ref, move); err != nil {
		w.Logger.Warn("record the session's proxy", "tenant", lease.Tenant, "session", lease.SID, "err", err)
	}
	if move != nil {
		w.Logger.Info("session moved to another proxy", "tenant", lease.Tenant, "session", lease.SID,
			"from", move.From, "to", move.To, "reason", move.Reason)
	}
}

// touchSession restarts the expiry clock of the session of lease (if any)
// after a job that did not save its state: every job of a session counts as
// a use, whatever its outcome.
func (w *Worker) touchSession(ctx context.Context, lease *session.Lease) {
	if lease != nil {
		_ = w.Sessions.Touch(context.WithoutCancel(ctx), lease)
	}
}

// outputs fills the requested outputs from the page's HTML (and, for a
// crawl page, its canonical URL).
func (w *Worker) outputs(ctx context.Context, req *spec.Request, res *spec.Result, html string, crawl bool) *spec.Error {
	if req.Wants(spec.OutHTML) {
		res.HTML = &html
	}
	needDoc := req.Wants(spec.OutMarkdown) || req.Wants(spec.OutText) || req.Wants(spec.OutLinks) || req.Wants(spec.OutMetadata) || req.Extract != nil
	if !needDoc {
		return nil
	}
	base := res.FinalURL
	if base == "" {
		base = req.URL
	}
	doc, err := convert.Parse(html, base)
	if err != nil {
		return spec.Errorf(spec.CodeInternal, false, "parse page: %v", err)
	}
	var md string
	if req.Wants(spec.OutMarkdown) || (req.Extract != nil && req.Extract.Mode == "schema") {
		md, err = doc.Markdown()
		if err != nil {
			return spec.Errorf(spec.CodeInternal, false, "markdown: %v", err)
		}
		if req.Wants(spec.OutMarkdown) {
			res.Markdown = &md
		}
	}
	if req.Wants(spec.OutText) {
		t := doc.Text()
		res.Text = &t
	}
	if req.Wants(spec.OutLinks) {
		res.Links = doc.Links()
		if res.Links == nil {
			res.Links = []string{}
		}
	}
	if req.Wants(spec.OutMetadata) || crawl {
		m := doc.Metadata()
		if req.Wants(spec.OutMetadata) {
			res.Metadata, _ = json.Marshal(m)
		}
		if crawl && m.Canonical != "" && m.Canonical != res.FinalURL && m.Canonical != req.URL {
			res.Canonical = m.Canonical
		}
	}
	if req.Extract != nil && req.Wants(spec.OutJSON) {
		var v map[string]any
		switch req.Extract.Mode {
		case "selectors":
			v, err = extract.Selectors(doc, req.Extract.Selectors)
			if err != nil {
				return asJobError(err, ctx)
			}
		case "schema":
			var usage extract.Usage
			v, usage, err = extract.Schema(ctx, w.LLM, req.Extract.Schema, md, base)
			res.Usage, _ = json.Marshal(usage)
			if err != nil {
				return asJobError(err, ctx)
			}
		}
		res.JSON, _ = json.Marshal(v)
	}
	return nil
}

// asJobError turns any error into a job error.
func asJobError(err error, ctx context.Context) *spec.Error {
	var je *spec.Error
	if errors.As(err, &je) {
		return je
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return spec.Errorf(spec.CodeTimeout, true, "the job ran out of time")
	}
	return spec.Errorf(spec.CodeInternal, true, "%v", err)
}

// shotAction reports whether actions take a screenshot: the page then loads
// its images, media and fonts, as for a screenshot output.
func shotAction(actions []spec.Action) bool {
	for _, a := range actions {
		if a.Type == spec.ActScreenshot {
			return true
		}
	}
	return false
}

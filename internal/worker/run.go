package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/internal/convert"
	"github.com/pagefleet/pagefleet/internal/extract"
	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/identity"
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

// run executes the job and derives its outputs.
func (w *Worker) run(ctx context.Context, p *jobs.RunPayload, lease *session.Lease, log *slog.Logger) runOutcome {
	req := &p.Request
	ident, ierr := w.loadIdentity(ctx, p.Tenant, req)
	if ierr != nil {
		w.touchSession(ctx, lease)
		return runOutcome{err: ierr}
	}
	var prev *spec.State
	if lease != nil {
		st, _, err := w.Sessions.Load(ctx, p.Tenant, lease.SID)
		switch {
		case errors.Is(err, session.ErrNotFound):
		case err != nil:
			return runOutcome{err: spec.Errorf(spec.CodeInternal, true, "load session: %v", err)}
		default:
			prev = st
		}
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	res := &spec.Result{URL: req.URL}
	var html string
	var next *spec.State
	var jerr *spec.Error
	if req.Rendered(p.Kind) {
		shot := req.Wants(spec.OutScreenshot)
		br, err := w.Browser.Render(runCtx, browser.Request{
			URL: req.URL, WaitUntil: req.WaitUntil, Actions: req.Actions, Screenshot: shot,
			State: prev, CaptureState: lease != nil, Identity: browserIdentity(ident),
			BlockResources: !shot && !shotAction(req.Actions) && !req.LoadResources, Tenant: p.Tenant, Log: log,
		})
		if err != nil {
			jerr = asJobError(err, runCtx)
		}
		if br != nil {
			res.FinalURL, res.StatusCode, res.Headers = br.FinalURL, br.StatusCode, br.Headers
			html = br.HTML
			if shot {
				res.Screenshot = br.Screenshot
			}
			for _, a := range br.Actions {
				res.Actions = append(res.Actions, spec.ActionResult{Index: a.Index, Type: a.Type, Status: a.Status,
					DurationMs: a.DurationMs, Result: a.Result, Screenshot: a.Screenshot, Error: a.Error})
			}
			next = br.State
		}
		if jerr != nil && br == nil {
			w.touchSession(ctx, lease) // a failed job used the session too
			return runOutcome{err: jerr}
		}
	} else {
		freq := fetch.Request{URL: req.URL, Timeout: timeout, Headers: identity.RequestHeaders(ident)}
		if prev != nil {
			freq.Cookies = prev.Cookies
		}
		rv := revalidationOf(ctx) // freshness: a stale cache entry's validators
		rv.conditional(&freq)
		fr, err := w.Fetcher.Do(runCtx, freq)
		if err != nil {
			w.touchSession(ctx, lease) // a failed job used the session too
			return runOutcome{err: asJobError(err, runCtx)}
		}
		if out, ok := rv.notModified(fr); ok {
			return out // 304: the cached result, as it was
		}
		res.FinalURL, res.StatusCode, res.Headers = fr.FinalURL, fr.StatusCode, fr.Headers
		html = fr.Body
		if lease != nil {
			next = spec.CloneState(prev)
			next.Cookies = fr.Cookies
		}
	}

	if err := w.outputs(runCtx, req, res, html, p.Crawl); err != nil && jerr == nil {
		jerr = err
	}

	out := runOutcome{result: res, err: jerr}
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
	return out
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

package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// ArtifactStore keeps the files of a job (internal/artifact's Store): HARs,
// DOMs, screenshots, downloads and large response bodies never go into
// Redis.
type ArtifactStore interface {
	// Put stores data as the file name of the job and returns its
	// artifact, with a signed URL (internal/artifact's Store).
	Put(ctx context.Context, jobID, name, contentType string, data []byte) (spec.Artifact, error)
}

// storeTimeout bounds the storing of a job's artifacts, which may run
// after the job's deadline (diagnostics of a job that timed out).
const storeTimeout = 30 * time.Second

// captureRequest sets what the browser records of the page for req.
func captureRequest(breq *browser.Request, p *jobs.RunPayload) {
	req := &p.Request
	if req.Wants(spec.OutNetwork) && req.Network != nil {
		breq.NetworkPatterns = req.Network.URLPatterns
	}
	breq.HAR = req.Wants(spec.OutHAR)
	breq.Diagnostics = req.WantsDiagnostics(p.Kind)
}

// keeper stores the capture outputs of one try as artifacts of its job.
type keeper struct {
	w     *Worker
	store ArtifactStore // nil: none
	p     *jobs.RunPayload
	ctx   context.Context
	tag   string // makes the names of this try's files unique in the job
	n     int    // files stored so far
}

func (w *Worker) keeper(ctx context.Context, p *jobs.RunPayload) *keeper {
	k := &keeper{w: w, p: p, ctx: context.WithoutCancel(ctx), tag: strconv.FormatInt(time.Now().UnixMilli()%1e8, 36)}
	if w.Artifacts != nil {
		k.store = w.Artifacts
	}
	return k
}

// put stores one file; it returns nil and the reason when there is no
// store or storing failed.
func (k *keeper) put(name, contentType string, data []byte) (*spec.Artifact, string) {
	if k.store == nil {
		return nil, "no artifact store is configured"
	}
	k.n++
	ctx, cancel := context.WithTimeout(k.ctx, storeTimeout)
	defer cancel()
	a, err := k.store.Put(ctx, k.p.JobID, fmt.Sprintf("%s-%02d-%s", k.tag, k.n, name), contentType, data)
	if err != nil {
		k.w.Logger.Warn("store an artifact", "job", k.p.JobID, "tenant", k.p.Tenant, "name", name, "err", err)
		return nil, "storing the file failed"
	}
	return &a, ""
}

// keepCapture fills the capture outputs of a rendered try into res.
func (k *keeper) keepCapture(res *spec.Result, br *browser.Result) {
	if br.Network != nil || k.p.Request.Wants(spec.OutNetwork) {
		res.Network = k.network(br.Network)
	}
	if br.HAR != nil {
		res.HAR, _ = k.put("page.har", "application/json", br.HAR)
	}
	for _, d := range br.Downloads {
		out := spec.Download{Filename: d.Filename, MIMEType: d.MIMEType, Size: d.Size, Error: d.Error}
		if d.Error == "" {
			out.Artifact, out.Error = k.put("download-"+d.Filename, d.MIMEType, d.Data)
		}
		res.Downloads = append(res.Downloads, out)
	}
	if br.Diagnostics != nil {
		res.Diagnostics = k.diagnostics(br.Diagnostics)
	}
}

// network keeps the bodies inline while they fit in MaxInlineBytes
// together, and stores the others as artifacts.
func (k *keeper) network(in []browser.NetworkResponse) []spec.NetworkEntry {
	out := make([]spec.NetworkEntry, 0, len(in))
	budget := spec.MaxInlineBytes
	for _, r := range in {
		e := spec.NetworkEntry{URL: r.URL, Method: r.Method, Status: r.Status, MIMEType: r.MIMEType, Truncated: r.Truncated}
		body := string(r.Body)
		if utf8.Valid(r.Body) && len(body) <= budget {
			budget -= len(body)
			e.Body = &body
		} else {
			ct := r.MIMEType
			if ct == "" {
				ct = "application/octet-stream"
			}
			e.BodyArtifact, _ = k.put("response-body", ct, r.Body)
		}
		out = append(out, e)
	}
	return out
}

// diagnostics stores the screenshot, the DOM and the HAR of a failure.
func (k *keeper) diagnostics(d *browser.Diagnostics) *spec.Diagnostics {
	out := &spec.Diagnostics{Console: make([]spec.ConsoleMessage, 0, len(d.Console))}
	for _, m := range d.Console {
		out.Console = append(out.Console, spec.ConsoleMessage{Level: m.Level, Text: m.Text})
	}
	note := func(what, why string) {
		if why == "" {
			return
		}
		if out.Errors == nil {
			out.Errors = map[string]string{}
		}
		out.Errors[what] = why
	}
	var why string
	if d.Screenshot != nil {
		out.Screenshot, why = k.put("failure.png", "image/png", d.Screenshot)
		note("screenshot", why)
	} else {
		note("screenshot", "the page could not be captured")
	}
	if d.DOM != "" {
		out.DOM, why = k.put("failure.html", "text/html; charset=utf-8", []byte(d.DOM))
		note("dom", why)
	} else {
		note("dom", "the page could not be read")
	}
	if d.HAR != nil {
		out.HAR, why = k.put("failure.har", "application/json", d.HAR)
		note("har", why)
	}
	return out
}

// diagnosedError returns the diagnostics a failed render without a result
// carries (nil: none).
func diagnosedError(err error) *browser.Diagnostics {
	var de *browser.DiagnosedError
	if errors.As(err, &de) {
		return de.Diagnostics
	}
	return nil
}

package worker

import (
	"context"
	"time"

	"github.com/pagefleet/pagefleet/internal/convert"
	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/identity"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// MaxInlineBytes is the most of a new output's bytes that may go into
// Redis: above it they go to the artifact store or the job fails (the
// same bound as the capture fields').
const MaxInlineBytes = spec.MaxInlineBytes

// keepArtifacts moves the screenshot and the pdf output into the artifact
// store: the result keeps their links (result.artifacts) and, for an
// "inline" job, their names in result.embed, which the API reads back
// when it answers. Without a store, or should the store fail, a file of at
// most MaxInlineBytes stays in the result; a larger one fails the job.
func (w *Worker) keepArtifacts(ctx context.Context, p *jobs.RunPayload, res *spec.Result, pdf []byte) *spec.Error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	inline := p.Request.ArtifactMode() == spec.ArtifactsInline
	keep := func(name, file, ctype string, data []byte) (bool, *spec.Error) {
		if w.Artifacts == nil {
			if len(data) > MaxInlineBytes {
				return false, spec.Errorf(spec.CodeInternal, false, "the %s is larger than %d bytes and the worker has no artifact store", name, MaxInlineBytes)
			}
			return false, nil
		}
		a, err := w.Artifacts.Put(ctx, p.JobID, file, ctype, data)
		if err != nil {
			w.Logger.Warn("store artifact", "job", p.JobID, "tenant", p.Tenant, "artifact", file, "err", err)
			if len(data) > MaxInlineBytes {
				return false, spec.Errorf(spec.CodeInternal, true, "store the %s: %v", name, err)
			}
			return false, nil
		}
		if res.Artifacts == nil {
			res.Artifacts = map[string]spec.Artifact{}
		}
		res.Artifacts[name] = a
		if inline {
			res.Embed = append(res.Embed, name)
		}
		return true, nil
	}
	if res.Screenshot != nil {
		file, ctype := "screenshot.png", "image/png"
		if o := p.Request.Screenshot; o != nil && o.Format == "jpeg" {
			file, ctype = "screenshot.jpg", "image/jpeg"
		}
		stored, jerr := keep(spec.ArtifactScreenshot, file, ctype, res.Screenshot)
		if jerr != nil {
			res.Screenshot = nil
			return jerr
		}
		if stored {
			res.Screenshot = nil
		}
	}
	if pdf != nil {
		n, err := convert.PDFPages(pdf)
		if err != nil {
			w.Logger.Warn("count the pages of the printed PDF", "job", p.JobID, "err", err)
		}
		res.PDF = &spec.PDFInfo{Pages: n}
		stored, jerr := keep(spec.ArtifactPDF, "page.pdf", "application/pdf", pdf)
		if jerr != nil {
			return jerr
		}
		if !stored && inline {
			res.PDF.Data = pdf
		}
	}
	return nil
}

// pdfOutputs fills the outputs of a target that is a PDF document: its
// text in text and markdown, its page count in result.pdf. html, links
// and metadata have nothing to show; extraction reads the markdown.
func pdfOutputs(req *spec.Request, res *spec.Result, doc []byte) *spec.Error {
	d, err := convert.ParsePDF(doc)
	if err != nil {
		return spec.Errorf(spec.CodeExtractionFailed, false, "read the PDF document: %v", err)
	}
	if res.PDF == nil {
		res.PDF = &spec.PDFInfo{}
	}
	res.PDF.Pages = d.Pages
	if req.Wants(spec.OutText) {
		res.Text = &d.Text
	}
	if req.Wants(spec.OutMarkdown) {
		res.Markdown = &d.Markdown
	}
	if req.Wants(spec.OutLinks) {
		res.Links = []string{}
	}
	return nil
}

// fetchPDF reads the PDF document a rendered job's page showed, with a
// plain fetch through the same exit (up) as the browser.
func (w *Worker) fetchPDF(ctx context.Context, req *spec.Request, u string, ident *identity.Profile, up *egress.Upstream) ([]byte, *spec.Error) {
	if u == "" {
		u = req.URL
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	fr, err := w.Fetcher.Do(ctx, fetch.Request{URL: u, Timeout: timeout, Headers: identity.RequestHeaders(ident), Via: up})
	if err != nil {
		return nil, asJobError(err, ctx)
	}
	if !convert.IsPDF(fr.ContentType, []byte(fr.Body[:min(len(fr.Body), 5)])) {
		return nil, spec.Errorf(spec.CodeNavigationFailed, true, "the page showed a PDF, but %s answered %s", u, fr.ContentType)
	}
	return []byte(fr.Body), nil
}

package api

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pagefleet/pagefleet/internal/artifact"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// getArtifact serves GET /v1/artifacts/{id}?expires=…&sig=… without an
// API key: the signature is the authorisation. A signature that is
// missing or not the server's answers 403 (signature_invalid), a link past
// its time 410 (link_expired), an artifact whose job is gone (its
// retention passed) or that the store does not hold 404.
func (s *Server) getArtifact(c echo.Context) error {
	if s.artifacts == nil {
		return problem(http.StatusServiceUnavailable, "unavailable", "this API has no artifact store")
	}
	id := c.Param("id")
	jobID, name, err := artifact.ParseID(id)
	if err != nil {
		return notFound("artifact")
	}
	switch err := s.artifacts.Signer().Verify(id, c.QueryParam("expires"), c.QueryParam("sig")); {
	case errors.Is(err, artifact.ErrBadSignature):
		return problem(http.StatusForbidden, "signature_invalid", "the artifact link's signature is missing or wrong; use the url of the job's result")
	case errors.Is(err, artifact.ErrLinkExpired):
		return problem(http.StatusGone, "link_expired", "the artifact link has expired, and the artifact with its job")
	}
	ctx := c.Request().Context()
	st, err := s.jobs.Status(ctx, jobID)
	if err != nil {
		return unavailable(err)
	}
	if st == "" {
		return notFound("artifact") // the job's retention passed: its artifacts go with it
	}
	rc, o, err := s.artifacts.Get(ctx, id)
	if errors.Is(err, artifact.ErrNotFound) {
		return notFound("artifact")
	}
	if err != nil {
		s.log.Warn("read artifact", "artifact", id, "err", err)
		return unavailable(err)
	}
	defer rc.Close()
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, o.ContentType)
	h.Set(echo.HeaderContentLength, strconv.FormatInt(o.Size, 10))
	h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": name}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	h.Set("Cache-Control", "private, max-age=3600")
	if o.SHA256 != "" {
		h.Set("ETag", `"`+o.SHA256+`"`)
		h.Set("Digest", "sha-256="+o.SHA256)
	}
	c.Response().WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, _ = io.Copy(c.Response(), rc)
	return nil
}

// present readies a job for an answer: its artifact links are made
// absolute (from the request's Host when PAGEFLEET_PUBLIC_URL is unset),
// and the artifacts of an "inline" job are read from the store into
// result.screenshot and result.pdf.data.
func (s *Server) present(c echo.Context, j *spec.Job) {
	r := j.Result
	if r == nil {
		return
	}
	base := c.Scheme() + "://" + c.Request().Host
	r.EachArtifact(func(a *spec.Artifact) {
		if strings.HasPrefix(a.URL, "/") {
			a.URL = base + a.URL
		}
	})
	embed := r.Embed
	r.Embed = nil
	if len(embed) == 0 || s.artifacts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 30*time.Second)
	defer cancel()
	for _, name := range embed {
		a, ok := r.Artifacts[name]
		if !ok {
			continue
		}
		b, err := s.artifacts.Bytes(ctx, a.ID)
		if err != nil {
			s.log.Warn("embed artifact", "job", j.ID, "artifact", a.ID, "err", err)
			continue
		}
		switch name {
		case spec.ArtifactScreenshot:
			r.Screenshot = b
		case spec.ArtifactPDF:
			if r.PDF == nil {
				r.PDF = &spec.PDFInfo{}
			}
			r.PDF.Data = b
		}
	}
}

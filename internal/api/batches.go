package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pagefleet/pagefleet/internal/batch"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// batchBody is the body of POST /v1/batches: spec.BatchRequest, whose
// template is decoded on its own so that its unknown fields are named
// template.….
type batchBody struct {
	spec.BatchRequest
	Template json.RawMessage `json:"template"`
}

// decodeTemplate decodes a batch's template like a job's body; its field
// errors are named under "template.".
func decodeTemplate(raw json.RawMessage) (spec.Request, []spec.FieldError) {
	var t spec.Request
	if len(raw) == 0 || string(raw) == "null" {
		return t, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		errs, ok := decodeFields(raw, &t, "template.")
		if !ok {
			return t, []spec.FieldError{{Field: "template", Message: "must be an object"}}
		}
		return t, errs
	}
	return t, nil
}

// validateBatch checks the whole request before anything is written.
func (s *Server) validateBatch(ctx context.Context, t *tenant.Tenant, body *batchBody, bodyErrs []spec.FieldError) (batch.Kind, *spec.Request, error) {
	limit := min(batch.MaxURLs, t.Limits.BatchSize)
	if limit <= 0 {
		limit = batch.MaxURLs
	}
	if len(body.URLs) > limit {
		return nil, nil, problem(http.StatusUnprocessableEntity, "batch_too_large",
			fmt.Sprintf("the batch has %d URLs; at most %d are allowed for this tenant", len(body.URLs), limit),
			spec.FieldError{Field: "urls", Message: fmt.Sprintf("must have at most %d URLs", limit)})
	}
	tmpl, decodeErrs := decodeTemplate(body.Template)
	decodeErrs = append(bodyErrs, decodeErrs...)
	req := &body.BatchRequest
	kind, errs := batch.KindOf(req)
	if kind != nil {
		errs = kind.Check(req, limit)
	}
	errs = append(errs, batch.ValidateTemplate(&tmpl)...)
	if body.Webhook != nil {
		errs = append(errs, body.Webhook.Validate("webhook", batch.Events)...)
	}
	errs = append(errs, spec.ValidateBatchFreshness(body.Webhook, &tmpl)...)
	if errs = mergeFieldErrors(decodeErrs, errs); len(errs) > 0 {
		return nil, nil, invalid(errs)
	}
	if p := s.checkFeatures(t, &tmpl); p != nil {
		return nil, nil, p
	}
	if err := s.checkIdentity(ctx, t, &tmpl, "template."); err != nil {
		return nil, nil, err
	}
	if err := s.checkProxy(t, &tmpl, "template."); err != nil {
		return nil, nil, err
	}
	tmpl.Normalize(spec.KindFetch)
	tmpl.NormalizeFreshness()
	kind.Template(&tmpl)
	return kind, &tmpl, nil
}

func (s *Server) createBatch(c echo.Context) error {
	t := tenantOf(c)
	ctx := c.Request().Context()
	var body batchBody
	bodyErrs, err := decodeJSON(c, s.cfg.MaxBatchBytes, &body)
	if err != nil {
		return err
	}
	kind, tmpl, err := s.validateBatch(ctx, t, &body, bodyErrs)
	if err != nil {
		return err
	}
	idem, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	b := &rdb.Batch{Kind: kind.Name(), Template: *tmpl, Webhook: body.Webhook, Crawl: body.Crawl}
	if tmpl.ChangeTracking != nil {
		b.TrackScope = rdb.TrackScope("", tmpl.ChangeTracking.Tag)
	}
	acc, err := s.submitter.Batch(ctx, t, b, kind.Seeds(&body.BatchRequest), idem)
	if err != nil {
		return submitProblem(err)
	}
	c.Response().Header().Set("Location", "/v1/batches/"+acc.ID)
	if acc.Replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	} else {
		s.batchesIn.WithLabelValues(b.Kind).Inc()
		s.log.Info("batch accepted", "batch", acc.ID, "tenant", t.ID, "kind", b.Kind, "total", acc.Total)
	}
	return c.JSON(http.StatusAccepted, acc.BatchAccepted)
}

// batchOf reads the batch named in the path, 404 for another tenant's.
func (s *Server) batchOf(c echo.Context) (*rdb.BatchView, error) {
	id := c.Param("id")
	if !validID(id, "bat_") {
		return nil, notFound("batch")
	}
	v, err := s.batches.Get(c.Request().Context(), tenantOf(c).ID, id)
	if errors.Is(err, rdb.ErrBatchNotFound) {
		return nil, notFound("batch")
	}
	return v, err
}

func (s *Server) getBatch(c echo.Context) error {
	v, err := s.batchOf(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) listBatches(c echo.Context) error {
	cur, limit, err := page(c)
	if err != nil {
		return err
	}
	if cur != "" {
		if _, err := strconv.ParseInt(cur, 10, 64); err != nil {
			return invalid([]spec.FieldError{{Field: "cursor", Message: "is not a cursor this API gave"}})
		}
	}
	out, next, err := s.batches.List(c.Request().Context(), tenantOf(c).ID, cur, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, spec.List[rdb.BatchView]{Data: out, NextCursor: next})
}

// cancelBatch cancels what has not run: the queued jobs become cancelled,
// running ones finish, and the batch ends as cancelled.
func (s *Server) cancelBatch(c echo.Context) error {
	t := tenantOf(c)
	v, err := s.batchOf(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	switch err := s.batches.Cancel(ctx, t.ID, v.ID); {
	case errors.Is(err, rdb.ErrBatchNotFound):
		return notFound("batch")
	case errors.Is(err, rdb.ErrBatchCompleted):
		return problem(http.StatusConflict, "batch_ended", "the batch already completed")
	case err != nil:
		return err
	}
	bg := context.WithoutCancel(ctx)
	if _, now, err := s.batches.Settle(bg, v.ID); err == nil && now {
		if err := s.batchCompleted(bg, v.ID); err != nil {
			s.log.Error("enqueue batch.completed", "batch", v.ID, "err", err)
		}
	}
	s.log.Info("batch cancelled", "batch", v.ID, "tenant", t.ID)
	if v, err = s.batches.Get(ctx, t.ID, v.ID); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// batchCompleted enqueues the batch's batch.completed event (once).
func (s *Server) batchCompleted(ctx context.Context, id string) error {
	m, err := s.batches.Meta(ctx, id)
	if err != nil {
		return err
	}
	if !m.Webhook.WantsEvent(spec.EventBatchCompleted) {
		return nil
	}
	v, err := s.batches.Get(ctx, "", id)
	if err != nil {
		return err
	}
	return webhook.EnqueueOnce(ctx, s.queue, m.Webhook, m.Tenant, id, spec.EventBatchCompleted, v, s.cfg.WebhookSchedule)
}

// ndjsonChunk is how many jobs one round trip of the NDJSON stream reads.
const ndjsonChunk = 250

// streamChunkTimeout is how long the NDJSON stream may take to write one
// chunk to the client.
const streamChunkTimeout = time.Minute

// batchJobs pages through the batch's jobs in order (the cursor is an
// index), or streams them all as NDJSON when asked with Accept:
// application/x-ndjson. Both include results.
func (s *Server) batchJobs(c echo.Context) error {
	v, err := s.batchOf(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if strings.Contains(c.Request().Header.Get("Accept"), "application/x-ndjson") {
		return s.streamBatchJobs(c, v)
	}
	cur, limit, err := page(c)
	if err != nil {
		return err
	}
	start := int64(0)
	if cur != "" {
		if start, err = strconv.ParseInt(cur, 10, 64); err != nil || start < 0 {
			return invalid([]spec.FieldError{{Field: "cursor", Message: "is not a cursor this API gave"}})
		}
	}
	ids, err := s.batches.JobIDs(ctx, v.ID, start, int64(limit))
	if err != nil {
		return err
	}
	infos, err := s.jobs.GetMany(ctx, v.Tenant(), ids, true)
	if err != nil {
		return err
	}
	out := make([]spec.Job, 0, len(infos))
	for _, in := range infos {
		s.present(c, &in.Job)
		out = append(out, in.Job)
	}
	next := ""
	if n, err := s.batches.JobCount(ctx, v.ID); err == nil && start+int64(len(ids)) < n {
		next = strconv.FormatInt(start+int64(len(ids)), 10)
	}
	return c.JSON(http.StatusOK, spec.List[spec.Job]{Data: out, NextCursor: next})
}

// streamBatchJobs writes every job of the batch, one JSON object per line,
// reading and flushing a chunk at a time.
func (s *Server) streamBatchJobs(c echo.Context, v *rdb.BatchView) error {
	ctx := c.Request().Context()
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w.Writer)
	for start := int64(0); ; start += ndjsonChunk {
		// The server's write timeout bounds a whole answer; a stream of
		// 100 000 jobs takes longer, so each chunk gets its own deadline.
		_ = rc.SetWriteDeadline(time.Now().Add(streamChunkTimeout))
		ids, err := s.batches.JobIDs(ctx, v.ID, start, ndjsonChunk)
		if err != nil {
			s.log.Warn("batch jobs stream cut short", "batch", v.ID, "err", err)
			return nil // the status line is sent: the client sees a short stream
		}
		infos, err := s.jobs.GetMany(ctx, v.Tenant(), ids, true)
		if err != nil {
			s.log.Warn("batch jobs stream cut short", "batch", v.ID, "err", err)
			return nil
		}
		for _, in := range infos {
			s.present(c, &in.Job)
			if err := enc.Encode(&in.Job); err != nil {
				return nil // the client went away
			}
		}
		w.Flush()
		if len(ids) < ndjsonChunk {
			return nil
		}
	}
}

func (s *Server) batchDeliveries(c echo.Context) error {
	v, err := s.batchOf(c)
	if err != nil {
		return err
	}
	att, err := s.deliv.List(c.Request().Context(), v.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, spec.List[spec.Delivery]{Data: att})
}

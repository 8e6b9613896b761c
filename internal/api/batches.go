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

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/pagefleet/pagefleet/internal/batch"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// batchAPI is the batch part of the server.
type batchAPI struct {
	store   *batch.Store
	created *prometheus.CounterVec
}

// batchRoutes registers the /v1/batches routes.
func (s *Server) batchRoutes(g *echo.Group) {
	s.bat = &batchAPI{
		store: batch.NewStore(s.rdb, s.jobs),
		created: promauto.With(s.reg).NewCounterVec(prometheus.CounterOpts{Name: "pagefleet_batches_total",
			Help: "Batches accepted by kind (urls, crawl)."}, []string{"kind"}),
	}
	g.POST("/batches", s.createBatch)
	g.GET("/batches", s.listBatches)
	g.GET("/batches/:id", s.getBatch)
	g.DELETE("/batches/:id", s.cancelBatch)
	g.GET("/batches/:id/jobs", s.batchJobs)
	g.GET("/batches/:id/deliveries", s.batchDeliveries)
}

// batchBody is the body of POST /v1/batches. The template is decoded on its
// own so that its unknown fields are named template.….
type batchBody struct {
	URLs     []string        `json:"urls"`
	Crawl    *spec.Crawl     `json:"crawl"`
	Template json.RawMessage `json:"template"`
	Webhook  *spec.Webhook   `json:"webhook"`
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
func (s *Server) validateBatch(ctx context.Context, t *tenant.Tenant, body *batchBody, bodyErrs []spec.FieldError) (*spec.Request, error) {
	limit := min(batch.MaxURLs, t.Limits.BatchSize)
	if limit <= 0 {
		limit = batch.MaxURLs
	}
	if len(body.URLs) > limit {
		return nil, problem(http.StatusUnprocessableEntity, "batch_too_large",
			fmt.Sprintf("the batch has %d URLs; at most %d are allowed for this tenant", len(body.URLs), limit),
			spec.FieldError{Field: "urls", Message: fmt.Sprintf("must have at most %d URLs", limit)})
	}
	tmpl, decodeErrs := decodeTemplate(body.Template)
	decodeErrs = append(bodyErrs, decodeErrs...)
	var errs []spec.FieldError
	switch {
	case body.Crawl != nil && body.URLs != nil:
		errs = append(errs, spec.FieldError{Field: "crawl", Message: "give either urls or crawl, not both"})
	case body.Crawl != nil:
		errs = append(errs, batch.ValidateCrawl(body.Crawl, limit)...)
	case len(body.URLs) == 0:
		errs = append(errs, spec.FieldError{Field: "urls", Message: "is required (1 to " + strconv.Itoa(limit) + " URLs), or give a crawl"})
	default:
		errs = append(errs, batch.ValidateURLs(body.URLs)...)
	}
	errs = append(errs, batch.ValidateTemplate(&tmpl)...)
	if body.Webhook != nil {
		errs = append(errs, body.Webhook.Validate("webhook", batch.Events)...)
	}
	if errs = mergeFieldErrors(decodeErrs, errs); len(errs) > 0 {
		return nil, invalid(errs)
	}
	if p := s.checkFeatures(t, &tmpl); p != nil {
		return nil, p
	}
	if err := s.checkIdentity(ctx, t, &tmpl, "template."); err != nil {
		return nil, err
	}
	tmpl.Normalize(spec.KindFetch)
	if body.Crawl != nil && !tmpl.Wants(spec.OutLinks) {
		tmpl.Output = append(tmpl.Output, spec.OutLinks) // a crawl follows them
	}
	return &tmpl, nil
}

func (s *Server) createBatch(c echo.Context) error {
	t := tenantOf(c)
	ctx := c.Request().Context()
	var body batchBody
	bodyErrs, err := decodeJSON(c, s.cfg.MaxBatchBytes, &body)
	if err != nil {
		return err
	}
	tmpl, err := s.validateBatch(ctx, t, &body, bodyErrs)
	if err != nil {
		return err
	}
	idem := c.Request().Header.Get("Idempotency-Key")
	if len(idem) > 255 {
		return invalid([]spec.FieldError{{Field: "Idempotency-Key", Message: "must be at most 255 characters"}})
	}
	b := &batch.Batch{ID: batch.NewID(), Tenant: t.ID, Kind: spec.BatchKindURLs, CreatedAt: time.Now().UTC(),
		Template: *tmpl, Webhook: body.Webhook, Crawl: body.Crawl}
	n := len(body.URLs)
	if body.Crawl != nil {
		b.Kind, n = spec.BatchKindCrawl, 1
	}
	bg := context.WithoutCancel(ctx)
	if idem != "" {
		prev, err := s.claimIdempotency(ctx, t.ID, "batch\x00"+idem, b.ID)
		if err != nil {
			return err
		}
		if prev != "" {
			return s.answerExistingBatch(c, t, "batch\x00"+idem, prev)
		}
	}
	undoIdem := func() {
		if idem != "" {
			s.rdb.Del(bg, idemKey(t.ID, "batch\x00"+idem))
		}
	}
	if err := s.gate(ctx, t, n); err != nil {
		undoIdem()
		return err
	}
	if err := s.startBatch(ctx, b, body.URLs); err != nil {
		s.jobs.Release(bg, t.ID, n)
		undoIdem()
		return err
	}
	s.bat.created.WithLabelValues(b.Kind).Inc()
	s.log.Info("batch accepted", "batch", b.ID, "tenant", t.ID, "kind", b.Kind, "total", n)
	c.Response().Header().Set("Location", "/v1/batches/"+b.ID)
	return c.JSON(http.StatusAccepted, spec.BatchAccepted{ID: b.ID, Kind: b.Kind, Status: spec.BatchRunning, Total: n, CreatedAt: b.CreatedAt})
}

// startBatch writes the batch and enqueues its first task: the expansion of
// a URL list (one task, whatever the size), or a crawl's start page. A
// failure to enqueue removes what was written.
func (s *Server) startBatch(ctx context.Context, b *batch.Batch, urls []string) error {
	var err error
	if b.Kind == spec.BatchKindCrawl {
		var id string
		if id, err = s.bat.store.CreateCrawl(ctx, b); err != nil {
			return err
		}
		req := b.Template
		req.URL = b.Crawl.StartURL
		err = s.enqueueTask(ctx, func() (*asynq.Task, error) {
			return jobs.NewRunTask(&jobs.RunPayload{JobID: id, Tenant: b.Tenant, Kind: spec.KindFetch, BatchID: b.ID,
				AcceptedAt: b.CreatedAt, Request: req})
		})
	} else {
		if err = s.bat.store.CreateURLs(ctx, b, urls); err != nil {
			return err
		}
		err = s.enqueueTask(ctx, func() (*asynq.Task, error) {
			return jobs.NewExpandTask(&jobs.ExpandPayload{BatchID: b.ID, Tenant: b.Tenant})
		})
	}
	if err != nil {
		_ = s.bat.store.Remove(context.WithoutCancel(ctx), b)
		return fmt.Errorf("start batch %s: %w", b.ID, err)
	}
	return nil
}

func (s *Server) enqueueTask(ctx context.Context, build func() (*asynq.Task, error)) error {
	t, err := build()
	if err != nil {
		return err
	}
	_, err = s.queue.EnqueueContext(ctx, t)
	return err
}

// answerExistingBatch answers a repeated Idempotency-Key with the batch the
// first request created.
func (s *Server) answerExistingBatch(c echo.Context, t *tenant.Tenant, idem, id string) error {
	ctx := c.Request().Context()
	var v *batch.View
	var err error
	for i := 0; i < 50; i++ { // the first request may still be writing it
		v, err = s.bat.store.Get(ctx, t.ID, id)
		if !errors.Is(err, batch.ErrNotFound) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if errors.Is(err, batch.ErrNotFound) {
		return s.missingForIdem(ctx, t.ID, idem)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/v1/batches/"+id)
	c.Response().Header().Set("Idempotent-Replayed", "true")
	return c.JSON(http.StatusAccepted, spec.BatchAccepted{ID: v.ID, Kind: v.Kind, Status: v.Status, Total: int(v.Total), CreatedAt: v.CreatedAt})
}

// batchOf reads the batch named in the path, 404 for another tenant's.
func (s *Server) batchOf(c echo.Context) (*batch.View, error) {
	id := c.Param("id")
	if !validID(id, "bat_") {
		return nil, notFound("batch")
	}
	v, err := s.bat.store.Get(c.Request().Context(), tenantOf(c).ID, id)
	if errors.Is(err, batch.ErrNotFound) {
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
	out, next, err := s.bat.store.List(c.Request().Context(), tenantOf(c).ID, cur, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, spec.List[batch.View]{Data: out, NextCursor: next})
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
	switch err := s.bat.store.Cancel(ctx, t.ID, v.ID); {
	case errors.Is(err, batch.ErrNotFound):
		return notFound("batch")
	case errors.Is(err, batch.ErrCompleted):
		return problem(http.StatusConflict, "batch_ended", "the batch already completed")
	case err != nil:
		return err
	}
	bg := context.WithoutCancel(ctx)
	if _, now, err := s.bat.store.Settle(bg, v.ID); err == nil && now {
		if err := s.batchCompleted(bg, v.ID); err != nil {
			s.log.Error("enqueue batch.completed", "batch", v.ID, "err", err)
		}
	}
	s.log.Info("batch cancelled", "batch", v.ID, "tenant", t.ID)
	if v, err = s.bat.store.Get(ctx, t.ID, v.ID); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// batchCompleted enqueues the batch's batch.completed event (once).
func (s *Server) batchCompleted(ctx context.Context, id string) error {
	m, err := s.bat.store.Meta(ctx, id)
	if err != nil {
		return err
	}
	if !m.Webhook.WantsEvent(spec.EventBatchCompleted) {
		return nil
	}
	v, err := s.bat.store.Get(ctx, "", id)
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
	ids, err := s.bat.store.JobIDs(ctx, v.ID, start, int64(limit))
	if err != nil {
		return err
	}
	infos, err := s.jobs.GetMany(ctx, v.Tenant(), ids, true)
	if err != nil {
		return err
	}
	out := make([]spec.Job, 0, len(infos))
	for _, in := range infos {
		out = append(out, in.Job)
	}
	next := ""
	if n, err := s.bat.store.JobCount(ctx, v.ID); err == nil && start+int64(len(ids)) < n {
		next = strconv.FormatInt(start+int64(len(ids)), 10)
	}
	return c.JSON(http.StatusOK, spec.List[spec.Job]{Data: out, NextCursor: next})
}

// streamBatchJobs writes every job of the batch, one JSON object per line,
// reading and flushing a chunk at a time.
func (s *Server) streamBatchJobs(c echo.Context, v *batch.View) error {
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
		ids, err := s.bat.store.JobIDs(ctx, v.ID, start, ndjsonChunk)
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
	att, err := webhook.Deliveries(c.Request().Context(), s.rdb, v.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, spec.List[spec.Delivery]{Data: att})
}

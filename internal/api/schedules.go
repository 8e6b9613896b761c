package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/schedule"
	"github.com/pagefleet/pagefleet/internal/submit"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Schedules: POST /v1/schedules stores a cron expression with its time
// zone and the batch (or fetch job) each due time creates, validated as
// POST /v1/batches (or /v1/fetch) validates it, at creation; the schedule
// Runners of every process create the runs (package schedule).

// scheduleScope keeps the Idempotency-Keys of schedules apart.
const scheduleScope = "schedule\x00"

// decodeObject decodes raw strictly into v; its field errors are named
// under prefix.
func decodeObject(raw json.RawMessage, v any, prefix string) []spec.FieldError {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		errs, ok := decodeFields(raw, v, prefix)
		if !ok {
			return []spec.FieldError{{Field: strings.TrimSuffix(prefix, "."), Message: "must be an object"}}
		}
		return errs
	}
	return nil
}

// prefixed names the field errors of a 422 problem under prefix.
func prefixed(err error, prefix string) error {
	var p *Problem
	if !errors.As(err, &p) || len(p.Errors) == 0 {
		return err
	}
	q := *p
	q.Errors = make([]spec.FieldError, len(p.Errors))
	names := make([]string, len(p.Errors))
	for i, e := range p.Errors {
		q.Errors[i] = spec.FieldError{Field: prefix + e.Field, Message: e.Message}
		names[i] = q.Errors[i].Field
	}
	if q.Code == "validation_failed" {
		q.Detail = "invalid fields: " + strings.Join(names, ", ")
	}
	return &q
}

// cronErrors checks a cron expression in a time zone.
func cronErrors(expr, tz string) (*schedule.Spec, []spec.FieldError) {
	if tz == "" {
		tz = "UTC"
	}
	if tz == "Local" || tz != strings.TrimSpace(tz) {
		return nil, []spec.FieldError{{Field: "timezone", Message: "must be an IANA time zone name such as Europe/Berlin"}}
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return nil, []spec.FieldError{{Field: "timezone", Message: "must be an IANA time zone name such as Europe/Berlin"}}
	}
	sp, err := schedule.Parse(expr, tz)
	if err != nil {
		return nil, []spec.FieldError{{Field: "cron", Message: "is not a cron expression of 5 fields, 6 (seconds first) or a descriptor: " + err.Error()}}
	}
	return sp, nil
}

// validateScheduled checks what a schedule creates and returns its kind
// and body as stored: the batch or fetch request, validated and
// normalised.
func (s *Server) validateScheduled(ctx context.Context, t *tenant.Tenant, req *spec.ScheduleRequest) (string, json.RawMessage, error) {
	switch {
	case len(req.Batch) > 0 && len(req.Fetch) > 0:
		return "", nil, invalid([]spec.FieldError{{Field: "fetch", Message: "give one of batch, fetch, not both"}})
	case len(req.Fetch) > 0:
		var f spec.Request
		errs := decodeObject(req.Fetch, &f, "fetch.")
		if errs = mergeFieldErrors(errs, f.Validate(spec.KindFetch, "fetch.")); len(errs) > 0 {
			return "", nil, invalid(errs)
		}
		if err := s.checkFeatures(t, &f); err != nil {
			return "", nil, prefixed(err, "fetch.")
		}
		if err := s.checkIdentity(ctx, t, &f, "fetch."); err != nil {
			return "", nil, err
		}
		f.Normalize(spec.KindFetch)
		f.NormalizeFreshness()
		b, err := json.Marshal(&f)
		return schedule.KindFetch, b, err
	case len(req.Batch) > 0:
		var body batchBody
		errs := decodeObject(req.Batch, &body, "batch.")
		_, tmpl, err := s.validateBatch(ctx, t, &body, nil)
		if len(errs) > 0 {
			var p *Problem
			if err != nil && errors.As(prefixed(err, "batch."), &p) && len(p.Errors) > 0 {
				errs = mergeFieldErrors(errs, p.Errors)
			}
			return "", nil, invalid(errs)
		}
		if err != nil {
			return "", nil, prefixed(err, "batch.")
		}
		stored := body.BatchRequest
		stored.Template = tmpl
		b, err := json.Marshal(&stored)
		return schedule.KindBatch, b, err
	}
	return "", nil, invalid([]spec.FieldError{{Field: "batch", Message: "is required: give one of batch, fetch"}})
}

func (s *Server) createSchedule(c echo.Context) error {
	t := tenantOf(c)
	ctx := c.Request().Context()
	var req spec.ScheduleRequest
	decodeErrs, err := decodeJSON(c, s.cfg.MaxBatchBytes, &req)
	if err != nil {
		return err
	}
	sp, errs := cronErrors(req.Cron, req.Timezone)
	if req.Webhook != nil {
		errs = append(errs, req.Webhook.Validate("webhook", []string{spec.EventScheduleRun})...)
	}
	if errs = mergeFieldErrors(decodeErrs, errs); len(errs) > 0 {
		return invalid(errs)
	}
	kind, body, err := s.validateScheduled(ctx, t, &req)
	if err != nil {
		return err
	}
	idem, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	st := &rdb.StoredSchedule{ID: rdb.NewScheduleID(), Tenant: t.ID, Cron: strings.TrimSpace(req.Cron), Timezone: req.Timezone,
		Kind: kind, Body: body, Webhook: req.Webhook, Paused: req.Paused, CreatedAt: now, UpdatedAt: now}
	if st.Timezone == "" {
		st.Timezone = "UTC"
	}
	if !st.Paused {
		next := sp.Next(now)
		st.Next = &next
	}
	if idem != "" {
		prev, err := s.idem.Claim(ctx, t.ID, scheduleScope, idem, st.ID, submit.IdemTTL)
		if err != nil {
			return err
		}
		if prev != "" {
			got, err := s.schedules.Get(ctx, t.ID, prev)
			if errors.Is(err, rdb.ErrScheduleNotFound) {
				return problem(http.StatusConflict, "idempotency_conflict", "a request with this Idempotency-Key is still being processed, or created a schedule since deleted")
			}
			if err != nil {
				return err
			}
			c.Response().Header().Set("Location", "/v1/schedules/"+got.ID)
			c.Response().Header().Set("Idempotent-Replayed", "true")
			return c.JSON(http.StatusCreated, got.View())
		}
	}
	if err := s.schedules.Create(ctx, st); err != nil {
		if idem != "" {
			_ = s.idem.Release(context.WithoutCancel(ctx), t.ID, scheduleScope, idem)
		}
		if errors.Is(err, rdb.ErrScheduleLimit) {
			return problem(http.StatusUnprocessableEntity, "schedule_limit",
				"the tenant has as many schedules as it may keep; delete one first")
		}
		return err
	}
	s.log.Info("schedule created", "schedule", st.ID, "tenant", t.ID, "cron", st.Cron, "timezone", st.Timezone, "kind", kind)
	c.Response().Header().Set("Location", "/v1/schedules/"+st.ID)
	return c.JSON(http.StatusCreated, st.View())
}

// scheduleOf reads the schedule named in the path, 404 for another
// tenant's.
func (s *Server) scheduleOf(c echo.Context) (*rdb.StoredSchedule, error) {
	id := c.Param("id")
	if !validID(id, "sch_") {
		return nil, notFound("schedule")
	}
	st, err := s.schedules.Get(c.Request().Context(), tenantOf(c).ID, id)
	if errors.Is(err, rdb.ErrScheduleNotFound) {
		return nil, notFound("schedule")
	}
	return st, err
}

func (s *Server) getSchedule(c echo.Context) error {
	st, err := s.scheduleOf(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st.View())
}

func (s *Server) listSchedules(c echo.Context) error {
	cur, limit, err := page(c)
	if err != nil {
		return err
	}
	list, next, err := s.schedules.List(c.Request().Context(), tenantOf(c).ID, cur, limit)
	if errors.Is(err, rdb.ErrInvalidCursor) {
		return invalid([]spec.FieldError{{Field: "cursor", Message: "is not a cursor this API gave"}})
	}
	if err != nil {
		return err
	}
	out := make([]spec.Schedule, len(list))
	for i, st := range list {
		out[i] = st.View()
	}
	return c.JSON(http.StatusOK, spec.List[spec.Schedule]{Data: out, NextCursor: next})
}

// updateSchedule changes paused, cron and timezone; a schedule resumed or
// given another cron or time zone is next due after now.
func (s *Server) updateSchedule(c echo.Context) error {
	st, err := s.scheduleOf(c)
	if err != nil {
		return err
	}
	var req spec.ScheduleUpdate
	decodeErrs, err := decodeJSON(c, s.cfg.MaxBodyBytes, &req)
	if err != nil {
		return err
	}
	if len(decodeErrs) > 0 {
		return invalid(decodeErrs)
	}
	ctx := c.Request().Context()
	for try := 0; ; try++ {
		cron, tz := st.Cron, st.Timezone
		if req.Cron != nil {
			cron = strings.TrimSpace(*req.Cron)
		}
		if req.Timezone != nil {
			tz = *req.Timezone
			if tz == "" {
				tz = "UTC"
			}
		}
		sp, errs := cronErrors(cron, tz)
		if len(errs) > 0 {
			return invalid(errs)
		}
		moved := cron != st.Cron || tz != st.Timezone || (req.Paused != nil && !*req.Paused && st.Paused)
		st.Cron, st.Timezone = cron, tz
		if req.Paused != nil {
			st.Paused = *req.Paused
		}
		switch {
		case st.Paused:
			st.Next = nil
		case moved || st.Next == nil:
			next := sp.Next(time.Now())
			st.Next = &next
		}
		st.UpdatedAt = time.Now().UTC()
		err := s.schedules.Update(ctx, st)
		switch {
		case errors.Is(err, rdb.ErrScheduleNotFound):
			return notFound("schedule")
		case errors.Is(err, rdb.ErrScheduleChanged) && try < 5:
			// A run moved its next due time on meanwhile: read it again.
			if st, err = s.scheduleOf(c); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		s.log.Info("schedule updated", "schedule", st.ID, "tenant", st.Tenant, "cron", st.Cron, "paused", st.Paused)
		return c.JSON(http.StatusOK, st.View())
	}
}

func (s *Server) deleteSchedule(c echo.Context) error {
	st, err := s.scheduleOf(c)
	if err != nil {
		return err
	}
	if err := s.schedules.Delete(c.Request().Context(), st.Tenant, st.ID); err != nil {
		if errors.Is(err, rdb.ErrScheduleNotFound) {
			return notFound("schedule")
		}
		return err
	}
	s.log.Info("schedule deleted", "schedule", st.ID, "tenant", st.Tenant)
	return c.NoContent(http.StatusNoContent)
}

// scheduleRuns lists the schedule's runs, newest first: each names the
// batch (or job) it created, which carries the schedule_id too.
func (s *Server) scheduleRuns(c echo.Context) error {
	st, err := s.scheduleOf(c)
	if err != nil {
		return err
	}
	cur, limit, err := page(c)
	if err != nil {
		return err
	}
	runs, next, err := s.schedules.Runs(c.Request().Context(), st.ID, cur, limit)
	if errors.Is(err, rdb.ErrInvalidCursor) {
		return invalid([]spec.FieldError{{Field: "cursor", Message: "is not a cursor this API gave"}})
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, spec.List[spec.ScheduleRun]{Data: runs, NextCursor: next})
}

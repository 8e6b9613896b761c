package api

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/submit"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

const maxWait = 60 * time.Second

// parseWait reads ?wait= (a Go duration or seconds), capped at 60 s.
func parseWait(c echo.Context) (time.Duration, error) {
	v := c.QueryParam("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, err2 := strconv.ParseFloat(v, 64)
		if err2 != nil || math.IsNaN(n) || n < 0 {
			return 0, invalid([]spec.FieldError{{Field: "wait", Message: "must be a duration such as 30s (at most 60s)"}})
		}
		// Capped before converting: a huge number of seconds overflows.
		d = time.Duration(min(n, maxWait.Seconds()) * float64(time.Second))
	}
	if d < 0 {
		return 0, invalid([]spec.FieldError{{Field: "wait", Message: "must not be negative"}})
	}
	return min(d, maxWait), nil
}

func (s *Server) submit(kind string) echo.HandlerFunc {
	return func(c echo.Context) error {
		t := tenantOf(c)
		ctx := c.Request().Context()
		wait, err := parseWait(c)
		if err != nil {
			return err
		}
		var req spec.Request
		decodeErrs, err := decodeJSON(c, s.cfg.MaxBodyBytes, &req)
		if err != nil {
			return err
		}
		if errs := mergeFieldErrors(decodeErrs, req.Validate(kind, "")); len(errs) > 0 {
			return invalid(errs)
		}
		if p := s.checkFeatures(t, &req); p != nil {
			return p
		}
		if err := s.checkIdentity(ctx, t, &req, ""); err != nil {
			return err
		}
		if err := s.checkProxy(t, &req, ""); err != nil {
			return err
		}
		req.Normalize(kind)
		req.NormalizeFreshness()

		idem, err := idempotencyKey(c)
		if err != nil {
			return err
		}
		acc, err := s.submitter.Job(ctx, t, kind, req, idem)
		if err != nil {
			return submitProblem(err)
		}
		c.Response().Header().Set("Location", "/v1/jobs/"+acc.ID)
		if acc.Replayed {
			c.Response().Header().Set("Idempotent-Replayed", "true")
		} else {
			s.jobsIn.WithLabelValues(kind).Inc()
			s.log.Info("job accepted", "job", acc.ID, "tenant", t.ID, "kind", kind)
		}
		if acc.Done != nil {
			// Served from the result cache: the job has ended already.
			return c.JSON(http.StatusOK, acc.Done)
		}
		if wait > 0 {
			return s.waitAndAnswer(c, t, acc.ID, wait)
		}
		if acc.Replayed {
			j := acc.Stored.Job
			return c.JSON(http.StatusAccepted, spec.Accepted{ID: j.ID, Kind: j.Kind, Status: j.Status, CreatedAt: j.CreatedAt, Session: j.Session})
		}
		ans := spec.Accepted{ID: acc.ID, Kind: kind, Status: spec.StatusQueued, CreatedAt: acc.CreatedAt}
		if req.Session != nil {
			ans.Session = &spec.SessionInfo{ID: req.Session.ID}
		}
		return c.JSON(http.StatusAccepted, ans)
	}
}

// idempotencyKey reads the Idempotency-Key header ("" for none).
func idempotencyKey(c echo.Context) (string, error) {
	idem := c.Request().Header.Get("Idempotency-Key")
	if len(idem) > 255 {
		return "", invalid([]spec.FieldError{{Field: "Idempotency-Key", Message: "must be at most 255 characters"}})
	}
	return idem, nil
}

// submitProblem turns an error of the submit service into its problem.
func submitProblem(err error) error {
	var le *submit.LimitError
	switch {
	case errors.As(err, &le):
		return tooMany(le.Detail, le.RetryAfter)
	case errors.Is(err, submit.ErrIdempotencyExpired):
		return problem(http.StatusGone, "idempotency_expired",
			"the object this Idempotency-Key created has expired (results are kept for PAGEFLEET_RESULT_TTL); the key stays used for 24 h")
	case errors.Is(err, submit.ErrIdempotencyPending):
		return problem(http.StatusConflict, "idempotency_conflict", "a request with this Idempotency-Key is still being processed")
	}
	return err
}

// waitAndAnswer holds the answer until the job ends or wait runs out.
func (s *Server) waitAndAnswer(c echo.Context, t *tenant.Tenant, id string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), wait)
	defer cancel()
	done, stop := s.notifier.Watch(id)
	defer stop()
	for {
		in, err := s.jobs.Get(c.Request().Context(), t.ID, id, true)
		if err != nil {
			if errors.Is(err, rdb.ErrJobNotFound) {
				return notFound("job")
			}
			return err
		}
		if spec.Terminal(in.Job.Status) {
			s.present(c, &in.Job)
			return c.JSON(http.StatusOK, in.Job)
		}
		select {
		case <-done:
			done, stop = s.notifier.Watch(id)
			defer stop()
		case <-time.After(2 * time.Second): // a safety net should a notification be lost
		case <-ctx.Done():
			in, err := s.jobs.Get(c.Request().Context(), t.ID, id, true)
			if err != nil {
				return err
			}
			s.present(c, &in.Job)
			return c.JSON(http.StatusOK, in.Job)
		}
	}
}

func (s *Server) getJob(c echo.Context) error {
	t := tenantOf(c)
	wait, err := parseWait(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	if !validID(id, "job_") {
		return notFound("job")
	}
	if wait > 0 {
		return s.waitAndAnswer(c, t, id, wait)
	}
	in, err := s.jobs.Get(c.Request().Context(), t.ID, id, true)
	if err != nil {
		if errors.Is(err, rdb.ErrJobNotFound) {
			return notFound("job")
		}
		return err
	}
	s.present(c, &in.Job)
	return c.JSON(http.StatusOK, in.Job)
}

func validID(id, prefix string) bool {
	if !strings.HasPrefix(id, prefix) || len(id) > 64 {
		return false
	}
	for _, r := range id[len(prefix):] {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z') {
			return false
		}
	}
	return true
}

// page reads ?limit= and ?cursor=.
func page(c echo.Context) (string, int, error) {
	limit := 50
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return "", 0, invalid([]spec.FieldError{{Field: "limit", Message: "must be a whole number from 1 to 1000"}})
		}
		limit = n
	}
	cur := c.QueryParam("cursor")
	if len(cur) > 200 {
		return "", 0, invalid([]spec.FieldError{{Field: "cursor", Message: "is not a cursor this API gave"}})
	}
	return cur, limit, nil
}

func (s *Server) listJobs(c echo.Context) error {
	t := tenantOf(c)
	cur, limit, err := page(c)
	if err != nil {
		return err
	}
	st := c.QueryParam("status")
	switch st {
	case "", spec.StatusQueued, spec.StatusRunning, spec.StatusSucceeded, spec.StatusFailed, spec.StatusCancelled:
	default:
		return invalid([]spec.FieldError{{Field: "status", Message: "must be one of queued, running, succeeded, failed, cancelled"}})
	}
	out, next, err := s.jobs.List(c.Request().Context(), t.ID, st, cur, limit)
	if errors.Is(err, rdb.ErrInvalidCursor) {
		return invalid([]spec.FieldError{{Field: "cursor", Message: "is not a cursor this API gave"}})
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, spec.List[spec.Job]{Data: out, NextCursor: next})
}

func (s *Server) cancelJob(c echo.Context) error {
	t := tenantOf(c)
	id := c.Param("id")
	if !validID(id, "job_") {
		return notFound("job")
	}
	ctx := c.Request().Context()
	_, err := s.jobs.Cancel(ctx, t.ID, id)
	switch {
	case errors.Is(err, rdb.ErrJobNotFound):
		return notFound("job")
	case errors.Is(err, rdb.ErrJobEnded):
		return problem(http.StatusConflict, "job_ended", "the job already ended")
	case err != nil:
		return err
	}
	in, err := s.jobs.Get(ctx, t.ID, id, true)
	if err != nil {
		return err
	}
	// The session line must not wait for a cancelled job.
	if in.SessionID != "" {
		if next, err := s.sessions.Remove(ctx, t.ID, in.SessionID, id); err == nil && next != "" {
			s.wake(next)
		}
	}
	s.log.Info("job cancelled", "job", id, "tenant", t.ID)
	s.present(c, &in.Job)
	return c.JSON(http.StatusOK, in.Job)
}

// wake moves a waiting session task to pending so it runs at once.
func (s *Server) wake(jobID string) {
	insp := asynqInspector(s)
	for _, q := range []string{jobs.QueueInteractive, jobs.QueueBulk} {
		if err := insp.RunTask(q, jobID); err == nil {
			return
		}
	}
}

func (s *Server) jobDeliveries(c echo.Context) error {
	t := tenantOf(c)
	id := c.Param("id")
	if !validID(id, "job_") {
		return notFound("job")
	}
	ctx := c.Request().Context()
	if _, err := s.jobs.Get(ctx, t.ID, id, false); err != nil {
		if errors.Is(err, rdb.ErrJobNotFound) {
			return notFound("job")
		}
		return err
	}
	att, err := s.deliv.List(ctx, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, spec.List[spec.Delivery]{Data: att})
}

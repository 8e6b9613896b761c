package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/jobstore"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/internal/webhook"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

const maxWait = 60 * time.Second

func idemKey(tenantID, key string) string {
	h := sha256.Sum256([]byte(key))
	return "{pf}:t:" + tenantID + ":idem:" + hex.EncodeToString(h[:16])
}

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
		req.Normalize(kind)

		idem := c.Request().Header.Get("Idempotency-Key")
		if len(idem) > 255 {
			return invalid([]spec.FieldError{{Field: "Idempotency-Key", Message: "must be at most 255 characters"}})
		}
		id := jobstore.NewID("job")
		if idem != "" {
			prev, err := s.claimIdempotency(ctx, t.ID, idem, id)
			if err != nil {
				return err
			}
			if prev != "" {
				return s.answerExisting(c, t, idem, prev, wait)
			}
		}
		now := time.Now().UTC()
		p := &jobs.RunPayload{JobID: id, Tenant: t.ID, Kind: kind, AcceptedAt: now, Request: req}
		if err := s.enqueue(ctx, t, p); err != nil {
			if idem != "" {
				// Kept, the key would answer 409 to the client's retry for 24 h.
				k := idemKey(t.ID, idem)
				s.untilDone("release an Idempotency-Key", id, func(ctx context.Context) error { return s.rdb.Del(ctx, k).Err() })
			}
			return err
		}
		s.jobsIn.WithLabelValues(kind).Inc()
		s.log.Info("job accepted", "job", id, "tenant", t.ID, "kind", kind)
		c.Response().Header().Set("Location", "/v1/jobs/"+id)
		if wait > 0 {
			return s.waitAndAnswer(c, t, id, wait)
		}
		ans := spec.Accepted{ID: id, Kind: kind, Status: spec.StatusQueued, CreatedAt: now}
		if req.Session != nil {
			ans.Session = &spec.SessionInfo{ID: req.Session.ID}
		}
		return c.JSON(http.StatusAccepted, ans)
	}
}

// enqueue admits the job under its tenant's limits, writes its record (and
// its place in its session's line), then enqueues the task: two round trips
// for a job without a session, whose admission and record are one script;
// three with a session, whose record and line entry follow the gate in one
// transaction. A failure undoes what was written and gives the place back.
func (s *Server) enqueue(ctx context.Context, t *tenant.Tenant, p *jobs.RunPayload) error {
	task, err := jobs.NewRunTask(p)
	if err != nil {
		return err
	}
	bg := context.WithoutCancel(ctx)
	rec := jobstore.Record{ID: p.JobID, Tenant: p.Tenant, Kind: p.Kind, URL: p.Request.URL, CreatedAt: p.AcceptedAt, Webhook: p.Request.Webhook, Counted: true}
	sid := ""
	if p.Request.Session == nil {
		err := s.jobs.CreateGated(ctx, rec, int(t.Limits.RequestsPerSecond), t.Limits.QueuedJobs)
		if err != nil {
			return gateProblem(t, err)
		}
	} else {
		if err := s.gate(ctx, t, 1); err != nil {
			return err
		}
		sid = p.Request.Session.ID
		rec.SessionID = sid
		_, err = s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			s.jobs.Create(ctx, pipe, rec)
			return s.sessions.Append(ctx, pipe, p.Tenant, sid, p.JobID)
		})
		if err != nil {
			s.jobs.Release(bg, t.ID, 1)
			return err
		}
	}
	if _, err := s.queue.EnqueueContext(ctx, task); err != nil {
		// Take the job back. Left behind, its record would be a queued job
		// that never runs, holding a place in the tenant's active count and,
		// for a session job, the session's later jobs back.
		s.untilDone("take back a job that was not enqueued", p.JobID, func(ctx context.Context) error {
			if sid != "" {
				if _, err := s.sessions.Remove(ctx, p.Tenant, sid, p.JobID); err != nil {
					return err
				}
			}
			return s.jobs.Discard(ctx, p.Tenant, p.JobID)
		})
		return err
	}
	return nil
}

// untilDoneFor bounds the retries of untilDone.
const untilDoneFor = 5 * time.Minute

// untilDone runs undo, an idempotent clean-up after a failed request, and
// when it fails keeps retrying it in the background for a while: the
// failure was most often Redis going away, which it usually does briefly.
func (s *Server) untilDone(what, job string, undo func(context.Context) error) {
	try := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return undo(ctx)
	}
	if try() == nil {
		return
	}
	go func() {
		deadline := time.Now().Add(untilDoneFor)
		for delay := 250 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
			time.Sleep(delay)
			err := try()
			if err == nil {
				s.log.Info("clean-up after a failed request done", "what", what, "job", job)
				return
			}
			if time.Now().After(deadline) {
				s.log.Error("clean-up after a failed request given up", "what", what, "job", job, "err", err)
				return
			}
		}
	}()
}

// idemTTL is how long an Idempotency-Key is remembered.
const idemTTL = 24 * time.Hour

// missingForIdem answers a repeated Idempotency-Key whose object cannot be
// read: 409 while the first request may still be writing it, 410 once the
// key is older than that (the object expired: PAGEFLEET_RESULT_TTL is under
// 24 h). Either way nothing is created.
func (s *Server) missingForIdem(ctx context.Context, tenantID, key string) error {
	left, err := s.rdb.PTTL(ctx, idemKey(tenantID, key)).Result()
	if err == nil && left > 0 && left < idemTTL-30*time.Second {
		return problem(http.StatusGone, "idempotency_expired",
			"the object this Idempotency-Key created has expired (results are kept for PAGEFLEET_RESULT_TTL); the key stays used for 24 h")
	}
	return problem(http.StatusConflict, "idempotency_conflict", "a request with this Idempotency-Key is still being processed")
}

// claimIdempotency records key → id for 24 h; when the key was used before,
// it returns the earlier job id.
func (s *Server) claimIdempotency(ctx context.Context, tenantID, key, id string) (string, error) {
	k := idemKey(tenantID, key)
	ok, err := s.rdb.SetNX(ctx, k, id, idemTTL).Result()
	if err != nil {
		return "", err
	}
	if ok {
		return "", nil
	}
	prev, err := s.rdb.Get(ctx, k).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return prev, err
}

// answerExisting answers a repeated Idempotency-Key with the earlier object.
func (s *Server) answerExisting(c echo.Context, t *tenant.Tenant, idem, id string, wait time.Duration) error {
	ctx := c.Request().Context()
	var in *jobstore.Info
	var err error
	for i := 0; i < 50; i++ { // the first request may still be writing it
		in, err = s.jobs.Get(ctx, t.ID, id, false)
		if err == nil || !errors.Is(err, jobstore.ErrNotFound) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		if errors.Is(err, jobstore.ErrNotFound) {
			return s.missingForIdem(ctx, t.ID, idem)
		}
		return err
	}
	c.Response().Header().Set("Location", "/v1/jobs/"+id)
	c.Response().Header().Set("Idempotent-Replayed", "true")
	if wait > 0 {
		return s.waitAndAnswer(c, t, id, wait)
	}
	j := in.Job
	return c.JSON(http.StatusAccepted, spec.Accepted{ID: j.ID, Kind: j.Kind, Status: j.Status, CreatedAt: j.CreatedAt, Session: j.Session})
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
			if errors.Is(err, jobstore.ErrNotFound) {
				return notFound("job")
			}
			return err
		}
		if spec.Terminal(in.Job.Status) {
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
		if errors.Is(err, jobstore.ErrNotFound) {
			return notFound("job")
		}
		return err
	}
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
	if errors.Is(err, jobstore.ErrInvalidCursor) {
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
	case errors.Is(err, jobstore.ErrNotFound):
		return notFound("job")
	case errors.Is(err, jobstore.ErrConflict):
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

// gate applies the tenant's request rate and queued-job limits to n new jobs.
func (s *Server) gate(ctx context.Context, t *tenant.Tenant, n int) error {
	return gateProblem(t, s.jobs.Gate(ctx, t.ID, int(t.Limits.RequestsPerSecond), t.Limits.QueuedJobs, n))
}

// gateProblem turns an over-limit error of the gate into its 429 problem.
func gateProblem(t *tenant.Tenant, err error) error {
	switch {
	case errors.Is(err, jobstore.ErrRateLimited):
		return tooMany(fmt.Sprintf("over %g requests per second for this tenant", t.Limits.RequestsPerSecond), time.Second)
	case errors.Is(err, jobstore.ErrQueueFull):
		return tooMany(fmt.Sprintf("the tenant has %d jobs that have not ended, its limit", t.Limits.QueuedJobs), 5*time.Second)
	}
	return err
}

func (s *Server) jobDeliveries(c echo.Context) error {
	t := tenantOf(c)
	id := c.Param("id")
	if !validID(id, "job_") {
		return notFound("job")
	}
	ctx := c.Request().Context()
	if _, err := s.jobs.Get(ctx, t.ID, id, false); err != nil {
		if errors.Is(err, jobstore.ErrNotFound) {
			return notFound("job")
		}
		return err
	}
	att, err := webhook.Deliveries(ctx, s.rdb, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, spec.List[spec.Delivery]{Data: att})
}

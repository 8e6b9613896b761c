package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"

	"github.com/pagefleet/pagefleet/internal/session"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func asynqInspector(s *Server) *asynq.Inspector {
	s.inspOnce.Do(func() { s.insp = asynq.NewInspectorFromRedisClient(s.rc) })
	return s.insp
}

// checkFeatures applies plan gating and availability checks that need more
// than the request itself.
func (s *Server) checkFeatures(t *tenant.Tenant, req *spec.Request) error {
	if req.Identity != "" {
		if err := identityPlanRequired(t); err != nil {
			return err
		}
	}
	if req.Extract != nil && req.Extract.Mode == "schema" && !s.cfg.LLMEnabled {
		return problem(http.StatusUnprocessableEntity, "extraction_unavailable",
			"schema extraction needs a language model: set PAGEFLEET_LLM_BASE_URL and PAGEFLEET_LLM_MODEL",
			spec.FieldError{Field: "extract.mode", Message: "schema extraction is not configured on this server"})
	}
	return nil
}

func (s *Server) getSession(c echo.Context) error {
	t := tenantOf(c)
	id := c.Param("id")
	if !spec.ValidSessionID(id) {
		return notFound("session")
	}
	with := c.QueryParam("include") == "state"
	m, st, err := s.sessions.Get(c.Request().Context(), t.ID, id, with)
	if errors.Is(err, session.ErrNotFound) {
		return notFound("session")
	}
	if err != nil {
		return err
	}
	if with {
		if st == nil {
			st = &spec.State{Cookies: []spec.Cookie{}, Origins: []spec.OriginState{}}
		}
		m.State = st
	}
	return c.JSON(http.StatusOK, m)
}

func (s *Server) listSessions(c echo.Context) error {
	t := tenantOf(c)
	cur, limit, err := page(c)
	if err != nil {
		return err
	}
	out, next, err := s.sessions.List(c.Request().Context(), t.ID, cur, limit)
	if errors.Is(err, session.ErrInvalidCursor) {
		return invalid([]spec.FieldError{{Field: "cursor", Message: "is not a cursor this API gave"}})
	}
	if err != nil {
		return err
	}
	if out == nil {
		out = []spec.Session{}
	}
	return c.JSON(http.StatusOK, spec.List[spec.Session]{Data: out, NextCursor: next})
}

func (s *Server) deleteSession(c echo.Context) error {
	t := tenantOf(c)
	id := c.Param("id")
	if !spec.ValidSessionID(id) {
		return notFound("session")
	}
	err := s.sessions.Delete(c.Request().Context(), t.ID, id, 45*time.Second)
	if errors.Is(err, session.ErrNotFound) {
		return notFound("session")
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

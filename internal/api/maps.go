package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pagefleet/pagefleet/internal/crawl"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// mapSite answers POST /v1/map: a site's URLs from its sitemaps and the
// links of its start page, fetched by this process with plain HTTP through
// the egress guard (no browser, no queue), counted against the tenant's
// requests per second.
func (s *Server) mapSite(c echo.Context) error {
	t := tenantOf(c)
	ctx := c.Request().Context()
	var req spec.MapRequest
	decodeErrs, err := decodeJSON(c, s.cfg.MaxBodyBytes, &req)
	if err != nil {
		return err
	}
	if errs := mergeFieldErrors(decodeErrs, crawl.CheckMap(&req)); len(errs) > 0 {
		return invalid(errs)
	}
	if s.fetcher == nil {
		return problem(http.StatusServiceUnavailable, "unavailable", "this API process cannot fetch (no egress configured)")
	}
	if err := s.submitter.Admit(ctx, t); err != nil {
		return submitProblem(err)
	}
	res, err := crawl.Map(ctx, s.fetcher, req)
	var je *spec.Error
	switch {
	case errors.As(err, &je) && je.Code == spec.CodeBlockedAddress:
		return invalid([]spec.FieldError{{Field: "url", Message: "is an address this server may not reach: " + je.Message}})
	case errors.As(err, &je):
		return problem(http.StatusBadGateway, je.Code, "the site could not be read: "+je.Message)
	case err != nil:
		return err
	}
	s.log.Info("site mapped", "tenant", t.ID, "urls", len(res.URLs), "truncated", res.Truncated)
	return c.JSON(http.StatusOK, res)
}

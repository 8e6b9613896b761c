package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pagefleet/pagefleet/internal/identity"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// maxIdentityBytes bounds the body of PUT /v1/identities/{name}.
const maxIdentityBytes = 64 << 10

// identityPlans are the plans that may use identity profiles.
var identityPlans = []string{tenant.PlanPro, tenant.PlanEnterprise}

func identityPlanRequired(t *tenant.Tenant) error {
	if t.HasPlan(identityPlans...) {
		return nil
	}
	return problem(http.StatusForbidden, "plan_required",
		"identity profiles need the pro or enterprise plan; this tenant is on the "+t.Plan+" plan")
}

// checkIdentity gates a job that names an identity: the plan must allow
// identities (403 plan_required) and the tenant must have one of that name
// (422 naming prefix+"identity").
func (s *Server) checkIdentity(ctx context.Context, t *tenant.Tenant, req *spec.Request, prefix string) error {
	if req.Identity == "" {
		return nil
	}
	if err := identityPlanRequired(t); err != nil {
		return err
	}
	_, err := s.idents.Get(ctx, t.ID, req.Identity)
	if errors.Is(err, rdb.ErrIdentityNotFound) {
		return invalid([]spec.FieldError{{Field: prefix + "identity", Message: "no identity named " + quoteName(req.Identity) + "; create it with PUT /v1/identities/" + req.Identity}})
	}
	return err
}

// checkProxy refuses a job that names a proxy pool its tenant does not
// have (422 naming prefix+"proxy.pool").
func (s *Server) checkProxy(t *tenant.Tenant, req *spec.Request, prefix string) error {
	if req.Proxy == nil || req.Proxy.None {
		return nil
	}
	if msg := s.unknownPool(t, req.Proxy.Pool); msg != "" {
		return invalid([]spec.FieldError{{Field: prefix + "proxy.pool", Message: msg}})
	}
	return nil
}

// unknownPool describes why pool is not one of the tenant's pools ("":
// it is).
func (s *Server) unknownPool(t *tenant.Tenant, pool string) string {
	set := s.proxies.For(t.ID)
	if set.Pool(pool) != nil {
		return ""
	}
	names := set.Names()
	if len(names) == 0 {
		return "no proxy pool named " + quoteName(pool) + ": this server has no proxy pools configured"
	}
	return "no proxy pool named " + quoteName(pool) + "; pools: " + strings.Join(names, ", ")
}

func quoteName(n string) string { b, _ := json.Marshal(n); return string(b) }

// identityBody is the body of PUT /v1/identities/{name}: spec.Identity,
// whose name, created_at and updated_at are accepted (so that an object
// read with GET can be sent back) but not taken: name must match the path
// and the times, whatever their form, are ignored.
type identityBody struct {
	spec.Identity
	Name      *string         `json:"name"`
	CreatedAt json.RawMessage `json:"created_at"`
	UpdatedAt json.RawMessage `json:"updated_at"`
}

func (s *Server) putIdentity(c echo.Context) error {
	t := tenantOf(c)
	if err := identityPlanRequired(t); err != nil {
		return err
	}
	name := c.Param("name")
	var body identityBody
	decodeErrs, err := decodeJSON(c, maxIdentityBytes, &body)
	if err != nil {
		return err
	}
	p := &body.Identity
	p.Name, p.CreatedAt, p.UpdatedAt = name, time.Time{}, time.Time{}
	errs := identity.Validate(p)
	if p.ProxyPool != "" {
		if msg := s.unknownPool(t, p.ProxyPool); msg != "" {
			errs = append(errs, spec.FieldError{Field: "proxy_pool", Message: msg})
		}
	}
	if body.Name != nil && *body.Name != name {
		errs = append(errs, spec.FieldError{Field: "name", Message: "must match the name in the path, " + quoteName(name)})
	}
	errs = mergeFieldErrors(decodeErrs, errs)
	if len(errs) > 0 {
		return invalid(errs)
	}
	identity.Normalize(p)
	created, err := s.idents.Put(c.Request().Context(), t.ID, p)
	if errors.Is(err, rdb.ErrIdentityLimit) {
		return problem(http.StatusConflict, "identity_limit", "the tenant has the most identities it may keep; delete one first")
	}
	if err != nil {
		return err
	}
	s.log.Info("identity saved", "tenant", t.ID, "identity", name, "created", created)
	return c.JSON(http.StatusOK, p)
}

func (s *Server) getIdentity(c echo.Context) error {
	t := tenantOf(c)
	if err := identityPlanRequired(t); err != nil {
		return err
	}
	p, err := s.idents.Get(c.Request().Context(), t.ID, c.Param("name"))
	if errors.Is(err, rdb.ErrIdentityNotFound) {
		return notFound("identity")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) listIdentities(c echo.Context) error {
	t := tenantOf(c)
	if err := identityPlanRequired(t); err != nil {
		return err
	}
	cur, limit, err := page(c)
	if err != nil {
		return err
	}
	out, next, err := s.idents.List(c.Request().Context(), t.ID, cur, limit)
	if errors.Is(err, rdb.ErrInvalidCursor) {
		return invalid([]spec.FieldError{{Field: "cursor", Message: "is not a cursor this API gave"}})
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, spec.List[identity.Profile]{Data: out, NextCursor: next})
}

func (s *Server) deleteIdentity(c echo.Context) error {
	t := tenantOf(c)
	if err := identityPlanRequired(t); err != nil {
		return err
	}
	err := s.idents.Delete(c.Request().Context(), t.ID, c.Param("name"))
	if errors.Is(err, rdb.ErrIdentityNotFound) {
		return notFound("identity")
	}
	if err != nil {
		return err
	}
	s.log.Info("identity deleted", "tenant", t.ID, "identity", c.Param("name"))
	return c.NoContent(http.StatusNoContent)
}

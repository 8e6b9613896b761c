package api

import (
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// access says what a route needs.
type access int

const (
	public access = iota // no key (health, metrics, docs, console)
	keyed                // a tenant's API key (/v1)
	admin                // the admin token; only with one configured
)

// route is one entry of the route table: method, path in Echo's form
// (":id"), who may call it, and the handler it gets from a server.
type route struct {
	methods []string
	path    string
	access  access
	handler func(s *Server) echo.HandlerFunc
}

func on(method, path string, a access, h func(s *Server) echo.HandlerFunc) route {
	return route{methods: []string{method}, path: path, access: a, handler: h}
}

// adminMethods are the methods asynqmon's pages and JSON API answer.
var adminMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// routeTable is every route the API serves. A new endpoint is one line
// here and its handler.
var routeTable = []route{
	on(http.MethodGet, "/healthz", public, func(s *Server) echo.HandlerFunc { return s.healthz }),
	on(http.MethodGet, "/readyz", public, func(s *Server) echo.HandlerFunc { return s.readyz }),
	on(http.MethodGet, "/metrics", public, func(s *Server) echo.HandlerFunc {
		return echo.WrapHandler(promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	}),
	on(http.MethodGet, "/openapi.json", public, func(s *Server) echo.HandlerFunc { return serveOpenAPI }),
	on(http.MethodGet, "/", public, func(s *Server) echo.HandlerFunc { return serveConsoleIndex }),
	on(http.MethodGet, "/console/:file", public, func(s *Server) echo.HandlerFunc { return serveConsoleFile }),

	on(http.MethodPost, "/v1/fetch", keyed, func(s *Server) echo.HandlerFunc { return s.submit("fetch") }),
	on(http.MethodPost, "/v1/interact", keyed, func(s *Server) echo.HandlerFunc { return s.submit("interact") }),
	on(http.MethodGet, "/v1/jobs", keyed, func(s *Server) echo.HandlerFunc { return s.listJobs }),
	on(http.MethodGet, "/v1/jobs/:id", keyed, func(s *Server) echo.HandlerFunc { return s.getJob }),
	on(http.MethodDelete, "/v1/jobs/:id", keyed, func(s *Server) echo.HandlerFunc { return s.cancelJob }),
	on(http.MethodGet, "/v1/jobs/:id/deliveries", keyed, func(s *Server) echo.HandlerFunc { return s.jobDeliveries }),
	on(http.MethodGet, "/v1/sessions", keyed, func(s *Server) echo.HandlerFunc { return s.listSessions }),
	on(http.MethodGet, "/v1/sessions/:id", keyed, func(s *Server) echo.HandlerFunc { return s.getSession }),
	on(http.MethodDelete, "/v1/sessions/:id", keyed, func(s *Server) echo.HandlerFunc { return s.deleteSession }),
	on(http.MethodGet, "/v1/identities", keyed, func(s *Server) echo.HandlerFunc { return s.listIdentities }),
	on(http.MethodGet, "/v1/identities/:name", keyed, func(s *Server) echo.HandlerFunc { return s.getIdentity }),
	on(http.MethodPut, "/v1/identities/:name", keyed, func(s *Server) echo.HandlerFunc { return s.putIdentity }),
	on(http.MethodDelete, "/v1/identities/:name", keyed, func(s *Server) echo.HandlerFunc { return s.deleteIdentity }),
	on(http.MethodPost, "/v1/batches", keyed, func(s *Server) echo.HandlerFunc { return s.createBatch }),
	on(http.MethodGet, "/v1/batches", keyed, func(s *Server) echo.HandlerFunc { return s.listBatches }),
	on(http.MethodGet, "/v1/batches/:id", keyed, func(s *Server) echo.HandlerFunc { return s.getBatch }),
	on(http.MethodDelete, "/v1/batches/:id", keyed, func(s *Server) echo.HandlerFunc { return s.cancelBatch }),
	on(http.MethodGet, "/v1/batches/:id/jobs", keyed, func(s *Server) echo.HandlerFunc { return s.batchJobs }),
	on(http.MethodGet, "/v1/batches/:id/deliveries", keyed, func(s *Server) echo.HandlerFunc { return s.batchDeliveries }),
	on(http.MethodPost, "/v1/map", keyed, func(s *Server) echo.HandlerFunc { return s.mapSite }),
	on(http.MethodPost, "/v1/schedules", keyed, func(s *Server) echo.HandlerFunc { return s.createSchedule }),
	on(http.MethodGet, "/v1/schedules", keyed, func(s *Server) echo.HandlerFunc { return s.listSchedules }),
	on(http.MethodGet, "/v1/schedules/:id", keyed, func(s *Server) echo.HandlerFunc { return s.getSchedule }),
	on(http.MethodPatch, "/v1/schedules/:id", keyed, func(s *Server) echo.HandlerFunc { return s.updateSchedule }),
	on(http.MethodDelete, "/v1/schedules/:id", keyed, func(s *Server) echo.HandlerFunc { return s.deleteSchedule }),
	on(http.MethodGet, "/v1/schedules/:id/runs", keyed, func(s *Server) echo.HandlerFunc { return s.scheduleRuns }),
	// An artifact link's signature is its key.
	on(http.MethodGet, "/v1/artifacts/:id", public, func(s *Server) echo.HandlerFunc { return s.getArtifact }),

	{methods: adminMethods, path: AdminQueuesPath, access: admin, handler: (*Server).queueDashboard},
	{methods: adminMethods, path: AdminQueuesPath + "/*", access: admin, handler: (*Server).queueDashboard},
}

// routes registers the route table on the server's Echo.
func (s *Server) routes() {
	e := s.echo
	for _, r := range routeTable {
		var mw []echo.MiddlewareFunc
		switch r.access {
		case keyed:
			mw = append(mw, s.auth)
		case admin:
			if s.cfg.AdminToken == "" {
				continue // without a token the admin routes do not exist (404)
			}
			mw = append(mw, s.adminAuth)
		}
		e.Match(r.methods, r.path, r.handler(s), mw...)
	}
	e.RouteNotFound("/*", func(c echo.Context) error { return notFound("route") })
}

// Route is one method and path the API serves, the path written as in
// OpenAPI ("/v1/jobs/{id}"; a trailing "*" matches any rest of the path).
type Route struct {
	Method string
	Path   string
}

// Routes lists every route of the route table (the admin routes too),
// sorted by path and method. The OpenAPI test checks the file against it.
func Routes() []Route {
	var out []Route
	for _, r := range routeTable {
		segs := strings.Split(r.path, "/")
		for i, seg := range segs {
			if strings.HasPrefix(seg, ":") {
				segs[i] = "{" + seg[1:] + "}"
			}
		}
		for _, m := range r.methods {
			out = append(out, Route{Method: m, Path: strings.Join(segs, "/")})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

package api

import (
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

// Route is one method and path the API serves, the path written as in
// OpenAPI ("/v1/jobs/{id}"; a trailing "*" matches any rest of the path).
type Route struct {
	Method string
	Path   string
}

// Routes lists every route of a server configured with an admin token (so
// that the admin routes are there), sorted by path and method. The catch-all
// 404 handlers are left out. The OpenAPI test checks the file against it.
func Routes() []Route {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:0"}) // never dialled
	defer rdb.Close()
	s := New(Config{AdminToken: "routes"}, Deps{Redis: rdb})
	defer s.queue.Close()
	return s.Routes()
}

// Routes lists the routes this server registered (see the package-level
// Routes).
func (s *Server) Routes() []Route {
	var out []Route
	for _, r := range s.echo.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		segs := strings.Split(r.Path, "/")
		for i, seg := range segs {
			if strings.HasPrefix(seg, ":") {
				segs[i] = "{" + seg[1:] + "}"
			}
		}
		out = append(out, Route{Method: r.Method, Path: strings.Join(segs, "/")})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynqmon"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

// AdminQueuesPath is where the queue dashboard (asynqmon: its UI and its
// JSON API under AdminQueuesPath+"/api") is mounted when an admin token is
// configured.
const AdminQueuesPath = "/admin/queues"

// AdminCookie is the cookie that carries the admin token for a browser,
// set by visiting AdminQueuesPath?token=<token> once.
const AdminCookie = "pagefleet_admin"

// queueDashboard is the queue dashboard (asynqmon), mounted behind the
// admin token. Without a token the routes do not exist: /admin/… answers
// 404 like any unknown path.
func (s *Server) queueDashboard() echo.HandlerFunc {
	s.monOnce.Do(func() {
		mon := asynqmon.New(asynqmon.Options{
			RootPath:         AdminQueuesPath,
			RedisConnOpt:     sharedRedis{s.rc},
			PayloadFormatter: asynqmon.PayloadFormatterFunc(summarizePayload),
			ResultFormatter: asynqmon.ResultFormatterFunc(func(_ string, b []byte) string {
				return fmt.Sprintf("(%d bytes)", len(b))
			}),
		})
		// mon is never closed: its inspector and Redis client are the
		// server's own client (sharedRedis), closed by main.
		s.mon = echo.WrapHandler(mon)
	})
	return s.mon
}

// sharedRedis hands asynqmon the server's Redis client instead of letting
// it dial its own (so Sentinel and Cluster URLs work the same way).
type sharedRedis struct{ c redis.UniversalClient }

// MakeRedisClient implements asynq.RedisConnOpt.
func (r sharedRedis) MakeRedisClient() any { return r.c }

// adminAuth accepts the admin token as a bearer token or as the AdminCookie.
// A GET with ?token=<token> sets the cookie and redirects to the same URL
// without the token, so a browser (and the dashboard's own XHRs) can use it.
func (s *Server) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	match := func(tok string) bool {
		got := sha256.Sum256([]byte(tok))
		return tok != "" && subtle.ConstantTimeCompare(got[:], want[:]) == 1
	}
	return func(c echo.Context) error {
		req := c.Request()
		if tok := req.URL.Query().Get("token"); tok != "" && req.Method == http.MethodGet {
			if !match(tok) {
				return adminUnauthorized(c, "wrong admin token")
			}
			c.SetCookie(&http.Cookie{
				Name: AdminCookie, Value: s.cfg.AdminToken, Path: "/admin",
				MaxAge: int((12 * time.Hour).Seconds()), HttpOnly: true,
				Secure:   req.TLS != nil || strings.EqualFold(req.Header.Get("X-Forwarded-Proto"), "https"),
				SameSite: http.SameSiteStrictMode,
			})
			u := *req.URL
			q := u.Query()
			q.Del("token")
			u.RawQuery = q.Encode()
			c.Response().Header().Set("Cache-Control", "no-store")
			return c.Redirect(http.StatusSeeOther, u.RequestURI())
		}
		h := req.Header.Get("Authorization")
		if tok, ok := cutBearer(h); ok {
			if !match(tok) {
				return adminUnauthorized(c, "wrong admin token")
			}
			return next(c)
		}
		if ck, err := req.Cookie(AdminCookie); err == nil && match(ck.Value) {
			// The cookie is SameSite=Strict; refusing a cross-origin unsafe
			// request as well keeps the dashboard's buttons (delete, run,
			// pause) out of reach of other sites.
			if !safeMethod(req.Method) && !sameOrigin(req) {
				return problem(http.StatusForbidden, "cross_origin", "cross-origin admin request refused")
			}
			return next(c)
		}
		if h == "" {
			return adminUnauthorized(c, "missing admin token: send Authorization: Bearer <PAGEFLEET_ADMIN_TOKEN>, or visit "+AdminQueuesPath+"?token=<token> once in a browser")
		}
		return adminUnauthorized(c, "wrong admin token")
	}
}

func cutBearer(h string) (string, bool) {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

func adminUnauthorized(c echo.Context, detail string) error {
	c.Response().Header().Set("WWW-Authenticate", `Bearer realm="pagefleet-admin"`)
	return problem(http.StatusUnauthorized, "unauthorized", detail)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin reports whether the request's Origin (or, without one, its
// Referer) names the host it was sent to.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return true // not sent by a browser page
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// summarizePayload is what the dashboard shows of a task's payload: ids,
// kind and URL, never the request's action values, scripts, webhook bodies
// or metadata (which may hold credentials).
func summarizePayload(_ string, b []byte) string {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return fmt.Sprintf("(%d bytes)", len(b))
	}
	out := map[string]any{}
	for _, k := range []string{"job_id", "tenant", "kind", "batch_id", "depth", "accepted_at", "webhook_id", "owner", "type", "url"} {
		if v, ok := top[k]; ok {
			out[k] = v
		}
	}
	if raw, ok := top["request"]; ok {
		var r struct {
			URL      string            `json:"url"`
			RenderJS *bool             `json:"render_js"`
			Session  *struct{ ID any } `json:"session"`
			Actions  []json.RawMessage `json:"actions"`
		}
		if json.Unmarshal(raw, &r) == nil {
			req := map[string]any{"url": r.URL}
			if r.RenderJS != nil {
				req["render_js"] = *r.RenderJS
			}
			if r.Session != nil {
				req["session"] = r.Session.ID
			}
			if len(r.Actions) > 0 {
				req["actions"] = len(r.Actions)
			}
			out["request"] = req
		}
	}
	if body, ok := top["body"]; ok {
		out["body"] = fmt.Sprintf("(%d bytes)", len(body))
	}
	s, _ := json.Marshal(out)
	return string(s)
}

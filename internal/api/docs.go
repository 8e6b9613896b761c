package api

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
)

// OpenAPI is the OpenAPI 3.1 description of the API, served at
// GET /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

//go:embed console
var consoleFS embed.FS

// consoleCSP keeps the console page to its own scripts, styles and API:
// no inline script, no other origin; screenshots are data: images.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// serveOpenAPI serves the OpenAPI file; it needs no key.
func serveOpenAPI(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("Access-Control-Allow-Origin", "*") // so that API tools on other origins can load it
	return c.Blob(http.StatusOK, "application/json", OpenAPI)
}

// serveConsoleIndex and serveConsoleFile serve the console page; it needs
// no key (it asks for one and sends it with its API calls).
func serveConsoleIndex(c echo.Context) error { return serveConsole(c, "index.html") }
func serveConsoleFile(c echo.Context) error  { return serveConsole(c, c.Param("file")) }

var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

func serveConsole(c echo.Context, name string) error {
	ct, ok := consoleTypes[path.Ext(name)]
	if !ok || strings.ContainsAny(name, "/\\") {
		return notFound("file")
	}
	b, err := fs.ReadFile(consoleFS, "console/"+name)
	if err != nil {
		return notFound("file")
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if name == "index.html" {
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Frame-Options", "DENY")
	}
	return c.Blob(http.StatusOK, ct, b)
}

package api_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/pagefleet/pagefleet/internal/api"
)

// LoadOpenAPI loads and validates the embedded OpenAPI document.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// notInSpec are routes the server registers that the OpenAPI file leaves
// out on purpose, with the reason.
var notInSpec = map[string]string{
	"/admin/queues/*": "asynqmon's own pages and JSON API, mounted as a whole",
}

// TestOpenAPIRoutes checks the document against the routes Echo registers,
// both ways: every route is documented, every documented operation exists.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	registered := map[string]bool{}
	for _, r := range api.Routes() {
		if _, skip := notInSpec[r.Path]; skip {
			continue
		}
		if r.Path == api.AdminQueuesPath && r.Method != http.MethodGet {
			continue // mounted with Any for asynqmon; only GET is the dashboard
		}
		registered[r.Method+" "+r.Path] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for r := range registered {
		if !documented[r] {
			t.Errorf("route %s is registered but not in openapi.json", r)
		}
	}
	for d := range documented {
		if !registered[d] {
			t.Errorf("openapi.json documents %s, which the server does not register", d)
		}
	}
	if len(registered) < 20 {
		t.Errorf("only %d routes registered: %v", len(registered), slices.Sorted(mapsKeys(registered)))
	}
	// Every /v1 operation documents the errors every /v1 call may get.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !strings.HasPrefix(path, "/v1/") {
				continue
			}
			for _, code := range []int{401, 500, 503} {
				if code == 401 && op.Security != nil && len(*op.Security) == 0 {
					continue // a keyless route (an artifact's signed link)
				}
				if op.Responses.Status(code) == nil {
					t.Errorf("%s %s does not document %d", method, path, code)
				}
			}
		}
	}
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

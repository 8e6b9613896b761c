package batch

import (
	"fmt"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// urlsKind is a batch of the URLs the request lists, each fetched once per
// listing (a URL listed twice is fetched twice).
type urlsKind struct{}

func (urlsKind) Name() string                          { return spec.BatchKindURLs }
func (urlsKind) Asked(req *spec.BatchRequest) bool     { return req.URLs != nil }
func (urlsKind) Seeds(req *spec.BatchRequest) []string { return req.URLs }
func (urlsKind) Template(*spec.Request)                {}

// Check checks every URL of the list; it lists at most 100 errors.
func (urlsKind) Check(req *spec.BatchRequest, limit int) []spec.FieldError {
	if len(req.URLs) == 0 {
		return []spec.FieldError{{Field: "urls", Message: fmt.Sprintf("must have 1 to %d URLs", limit)}}
	}
	var errs []spec.FieldError
	for i, u := range req.URLs {
		if m := spec.CheckURL(u); m != "" {
			errs = append(errs, spec.FieldError{Field: fmt.Sprintf("urls[%d]", i), Message: m})
			if len(errs) == maxFieldErrors {
				break
			}
		}
	}
	return errs
}

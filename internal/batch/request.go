package batch

import (
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Limits of a batch request.
const (
	// MaxURLs is the most URLs (or crawl pages) one batch may have; a
	// tenant's batch_size limit may be lower.
	MaxURLs = 100000
	// MaxDepth bounds crawl.max_depth.
	MaxDepth = 100
	// DefaultMaxDepth is crawl.max_depth when it is not given.
	DefaultMaxDepth = 3
	// DefaultMaxPages is crawl.max_pages when it is not given (or the
	// tenant's batch_size when that is lower).
	DefaultMaxPages = 1000
	// maxFieldErrors bounds the errors one answer lists.
	maxFieldErrors = 100
)

// Webhook events a batch's webhook may ask for.
var Events = []string{spec.EventBatchPage, spec.EventBatchCompleted}

// sortErrors orders errors by field so that answers are stable.
func sortErrors(errs []spec.FieldError) {
	for i := 1; i < len(errs); i++ {
		for j := i; j > 0 && errs[j].Field < errs[j-1].Field; j-- {
			errs[j], errs[j-1] = errs[j-1], errs[j]
		}
	}
}

// ValidateTemplate checks a batch's template: a fetch request without url,
// session or webhook (the batch has its own webhook), its fields named
// "template.…".
func ValidateTemplate(t *spec.Request) []spec.FieldError {
	var errs []spec.FieldError
	if t.URL != "" {
		errs = append(errs, spec.FieldError{Field: "template.url", Message: "must not be set: each job takes its URL from urls or the crawl"})
	}
	if t.Session != nil {
		errs = append(errs, spec.FieldError{Field: "template.session", Message: "is not allowed in a batch: batch jobs run in parallel"})
	}
	if t.Webhook != nil {
		errs = append(errs, spec.FieldError{Field: "template.webhook", Message: "is not allowed: give the batch a webhook (events batch.page, batch.completed)"})
	}
	saved := *t
	saved.URL, saved.Session, saved.Webhook = "", nil, nil
	return append(errs, saved.Validate(spec.KindFetch, "template.")...)
}

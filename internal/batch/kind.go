package batch

import (
	"strings"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Kind is one way a batch finds its pages: a list of URLs, a crawl. A kind
// checks its part of the request, adjusts the template its jobs run with,
// and names the batch's first URLs; everything else about a batch (its
// expansion into jobs, its counts, its events) is the same for all kinds.
// A kind whose pages find more pages (a crawl) also has a follower on the
// worker (see package crawl).
//
// A new kind is its field in spec.BatchRequest, a file here with its Kind,
// and its line in kinds.
type Kind interface {
	// Name is the batch object's "kind".
	Name() string
	// Asked reports whether req asks for this kind (its field is set).
	Asked(req *spec.BatchRequest) bool
	// Check validates the kind's fields of req and fills their defaults;
	// limit is the most pages the tenant allows in one batch.
	Check(req *spec.BatchRequest, limit int) []spec.FieldError
	// Template adjusts the fetch request every job of the batch runs.
	Template(t *spec.Request)
	// Seeds are the batch's first URLs, each a job.
	Seeds(req *spec.BatchRequest) []string
}

// kinds are the batch kinds, in the order their fields are named.
var kinds = []Kind{urlsKind{}, crawlKind{}}

// KindOf returns the one kind req asks for, or the field errors that say
// it asks for none or several.
func KindOf(req *spec.BatchRequest) (Kind, []spec.FieldError) {
	var asked []Kind
	for _, k := range kinds {
		if k.Asked(req) {
			asked = append(asked, k)
		}
	}
	switch len(asked) {
	case 1:
		return asked[0], nil
	case 0:
		return nil, []spec.FieldError{{Field: kinds[0].Name(), Message: "is required: give one of " + kindNames(kinds)}}
	}
	return nil, []spec.FieldError{{Field: asked[1].Name(), Message: "give one of " + kindNames(asked) + ", not several"}}
}

func kindNames(ks []Kind) string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.Name()
	}
	return strings.Join(names, ", ")
}

package batch

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Limits of a batch request.
const (
	// MaxURLs is the most URLs (or crawl pages) one batch may have; a
	// tenant's batch_size limit may be lower.
	MaxURLs = 100000
	// MaxPatterns bounds crawl.include and crawl.exclude each.
	MaxPatterns = 50
	// MaxPatternLength bounds one include or exclude regular expression.
	MaxPatternLength = 1000
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

// ValidateCrawl checks the crawl against maxPages (the tenant's batch
// size) and fills its defaults: the start URL normalised, max_depth 3,
// max_pages 1000 (at most maxPages), same_origin true.
func ValidateCrawl(c *spec.Crawl, maxPages int) []spec.FieldError {
	var errs []spec.FieldError
	add := func(f, m string) { errs = append(errs, spec.FieldError{Field: "crawl." + f, Message: m}) }
	if m := spec.CheckURL(c.StartURL); m != "" {
		add("start_url", m)
	} else if n, err := Normalize(c.StartURL); err != nil {
		add("start_url", "is not a URL a crawl can start from")
	} else {
		c.StartURL = n
	}
	if c.MaxDepth == nil {
		d := DefaultMaxDepth
		c.MaxDepth = &d
	} else if *c.MaxDepth < 0 || *c.MaxDepth > MaxDepth {
		add("max_depth", fmt.Sprintf("must be between 0 and %d", MaxDepth))
	}
	switch {
	case c.MaxPages == 0:
		c.MaxPages = min(DefaultMaxPages, maxPages)
	case c.MaxPages < 0 || c.MaxPages > maxPages:
		add("max_pages", fmt.Sprintf("must be between 1 and %d (the tenant's batch size)", maxPages))
	}
	for name, list := range map[string][]string{"include": c.Include, "exclude": c.Exclude} {
		if len(list) > MaxPatterns {
			add(name, fmt.Sprintf("must have at most %d patterns", MaxPatterns))
			continue
		}
		for i, p := range list {
			if len(p) > MaxPatternLength {
				add(fmt.Sprintf("%s[%d]", name, i), fmt.Sprintf("is longer than %d characters", MaxPatternLength))
			} else if _, err := regexp.Compile(p); err != nil {
				add(fmt.Sprintf("%s[%d]", name, i), "is not a valid regular expression: "+strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			}
		}
	}
	if c.SameOrigin == nil {
		t := true
		c.SameOrigin = &t
	}
	sortErrors(errs)
	return errs
}

// sortErrors orders errors by field so that answers are stable.
func sortErrors(errs []spec.FieldError) {
	for i := 1; i < len(errs); i++ {
		for j := i; j > 0 && errs[j].Field < errs[j-1].Field; j-- {
			errs[j], errs[j-1] = errs[j-1], errs[j]
		}
	}
}

// ValidateURLs checks every URL of a list batch; it lists at most 100
// errors.
func ValidateURLs(urls []string) []spec.FieldError {
	var errs []spec.FieldError
	for i, u := range urls {
		if m := spec.CheckURL(u); m != "" {
			errs = append(errs, spec.FieldError{Field: fmt.Sprintf("urls[%d]", i), Message: m})
			if len(errs) == maxFieldErrors {
				break
			}
		}
	}
	return errs
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

// Filter decides which discovered links a crawl follows.
type Filter struct {
	origin     string
	sameOrigin bool
	include    []*regexp.Regexp
	exclude    []*regexp.Regexp
}

// NewFilter compiles the crawl's rules (validated before).
func NewFilter(c *spec.Crawl) (*Filter, error) {
	f := &Filter{origin: Origin(c.StartURL), sameOrigin: c.SameOrigin == nil || *c.SameOrigin}
	for _, p := range c.Include {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("crawl include %q: %w", p, err)
		}
		f.include = append(f.include, re)
	}
	for _, p := range c.Exclude {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("crawl exclude %q: %w", p, err)
		}
		f.exclude = append(f.exclude, re)
	}
	return f, nil
}

// Follow normalises a discovered link and reports whether the crawl
// follows it: same origin as the start URL (when same_origin), its path
// matching an include pattern (when there are any) and no exclude pattern.
func (f *Filter) Follow(link string) (normalized string, u *url.URL, ok bool) {
	n, err := Normalize(link)
	if err != nil {
		return "", nil, false
	}
	u, err = url.Parse(n)
	if err != nil {
		return "", nil, false
	}
	if f.sameOrigin && u.Scheme+"://"+u.Host != f.origin {
		return "", nil, false
	}
	path := u.Path
	if len(f.include) > 0 {
		match := false
		for _, re := range f.include {
			if re.MatchString(path) {
				match = true
				break
			}
		}
		if !match {
			return "", nil, false
		}
	}
	for _, re := range f.exclude {
		if re.MatchString(path) {
			return "", nil, false
		}
	}
	return n, u, true
}

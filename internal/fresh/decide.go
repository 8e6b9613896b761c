package fresh

import (
	"net/http"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Entry is what a decision needs of a cache entry: when its result was
// produced (or last revalidated) and the validators its site sent.
type Entry struct {
	At           time.Time
	ETag         string
	LastModified string
	// Markdown: the cached result has markdown (a tracked job needs it).
	Markdown bool
}

// Use is what a job does with the cache entry of its request.
type Use int

const (
	// Fetch: no usable entry; the job runs as usual.
	Fetch Use = iota
	// Hit: the entry is younger than max_age_ms; the job ends with its
	// result, nothing is fetched.
	Hit
	// Revalidate: the entry is too old, but the site gave validators: a
	// plain fetch asks with If-None-Match / If-Modified-Since, and a 304
	// reuses the entry's result.
	Revalidate
)

func (u Use) String() string { return [...]string{"fetch", "hit", "revalidate"}[u] }

// Decide is what a job does with e (nil: no entry) at now: maxAgeMs is
// the request's max_age_ms (nil: the job does not read the cache), plain
// whether it is a plain fetch (only those revalidate), tracked whether it
// tracks changes (it then needs the entry's markdown).
func Decide(maxAgeMs *int64, e *Entry, now time.Time, plain, tracked bool) Use {
	if maxAgeMs == nil || e == nil || (tracked && !e.Markdown) {
		return Fetch
	}
	if Age(e, now) < time.Duration(*maxAgeMs)*time.Millisecond {
		return Hit
	}
	if plain && (e.ETag != "" || e.LastModified != "") {
		return Revalidate
	}
	return Fetch
}

// Age is how old e's result is at now (never negative: a clock behind
// another process's counts as no age).
func Age(e *Entry, now time.Time) time.Duration {
	return max(0, now.Sub(e.At))
}

// Validators are the conditional request headers that revalidate e.
func Validators(e *Entry) map[string]string {
	h := map[string]string{}
	if e.ETag != "" {
		h["If-None-Match"] = e.ETag
	}
	if e.LastModified != "" {
		h["If-Modified-Since"] = e.LastModified
	}
	return h
}

// Storable reports whether a result goes into the cache: a page the site
// served (2xx, or 3xx left unfollowed) or said is gone (404, 410), not
// blocked and without artifacts. Other errors (429, 5xx, …) are passing
// states that a later fetch should not be served.
func Storable(res *spec.Result) bool {
	// A result the block rules flagged (result.blocked) is not a page of
	// the site.
	if res == nil || res.Blocked != nil {
		return false
	}
	// A result that links artifacts (a screenshot or pdf, a HAR, downloads,
	// large response bodies, diagnostics) links files that go with its job:
	// a later job would serve links that die before the cache entry does.
	// A download over the limit, listed without a file, counts too.
	links := len(res.Downloads) > 0
	res.EachArtifact(func(*spec.Artifact) { links = true })
	if links {
		return false
	}
	c := res.StatusCode
	return (c >= 200 && c < 400) || c == http.StatusNotFound || c == http.StatusGone
}

// EntryOf returns the validators of a result's response headers (the
// fetcher lower-cases their names).
func EntryOf(res *spec.Result, at time.Time) Entry {
	return Entry{At: at, ETag: res.Headers["etag"], LastModified: res.Headers["last-modified"], Markdown: res.Markdown != nil}
}

package fresh

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/pagefleet/pagefleet/internal/crawl"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// keyFields are what a cache key digests: the normalised URL and every
// field of the request that shapes its result. A field is read from the
// request's JSON by its wire name, so that a field added to spec.Request
// later is keyed on as soon as it exists.
type keyFields struct {
	URL           string          `json:"url"`
	RenderJS      bool            `json:"render_js"`
	Output        []string        `json:"output"`
	Actions       json.RawMessage `json:"actions,omitempty"`
	Identity      string          `json:"identity,omitempty"`
	Extract       json.RawMessage `json:"extract,omitempty"`
	WaitUntil     string          `json:"wait_until,omitempty"`
	LoadResources bool            `json:"load_resources,omitempty"`
	// Proxy is the request's "proxy" field (spec.Request.Proxy) as
	// JSON, when the request has one.
	Proxy json.RawMessage `json:"proxy,omitempty"`
	// Crawl: a crawl page's result also names its canonical URL.
	Crawl bool `json:"crawl,omitempty"`
}

// Key is the cache key of a fetch request (normalised: spec.Request.Normalize
// ran): the hex digest of its normalised URL, the effective render_js, its
// outputs (in any order), actions, identity, extract, wait_until,
// load_resources and proxy. crawl marks a page of a crawl, whose result
// carries its canonical URL. Two requests with the same key produce the
// same kind of result; the tenant is not part of it (the store keeps each
// tenant's entries apart).
func Key(req *spec.Request, crawlPage bool) (string, error) {
	u, err := crawl.Normalize(req.URL)
	if err != nil {
		return "", fmt.Errorf("cache key of %q: %w", req.URL, err)
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", err
	}
	k := keyFields{URL: u, RenderJS: req.Rendered(spec.KindFetch), Output: slices.Clone(req.Output),
		Identity: req.Identity, WaitUntil: req.WaitUntil, LoadResources: req.LoadResources, Crawl: crawlPage}
	slices.Sort(k.Output)
	k.Output = slices.Compact(k.Output)
	if len(req.Actions) > 0 {
		k.Actions = m["actions"]
	}
	if k.Extract, err = canonical(m["extract"]); err != nil {
		return "", err
	}
	// The job's proxy choice (spec.Request.Proxy), keyed on its JSON.
	if k.Proxy, err = canonical(m["proxy"]); err != nil {
		return "", err
	}
	b, err := json.Marshal(&k)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16]), nil
}

// canonical rewrites JSON with its object keys sorted and no spaces, so
// that two spellings of one value key the same ("" and null: none).
func canonical(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

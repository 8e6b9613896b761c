package fresh

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

func req(mod func(r *spec.Request)) *spec.Request {
	r := &spec.Request{URL: "https://Example.com:443/a?x=1#frag", Output: []string{"markdown", "html"}}
	if mod != nil {
		mod(r)
	}
	r.Normalize(spec.KindFetch)
	return r
}

func TestKey(t *testing.T) {
	yes := true
	base, err := Key(req(nil), false)
	if err != nil {
		t.Fatal(err)
	}
	same := map[string]*spec.Request{
		"normalised URL":           req(func(r *spec.Request) { r.URL = "https://example.com/a?x=1" }),
		"outputs in another order": req(func(r *spec.Request) { r.Output = []string{"html", "markdown"} }),
		"fields that do not shape the result": req(func(r *spec.Request) {
			r.TimeoutMs, r.Webhook = 1000, &spec.Webhook{URL: "https://h.example"}
			age := int64(5)
			r.MaxAgeMs, r.ChangeTracking = &age, &spec.ChangeTracking{Tag: "x"}
		}),
	}
	for name, r := range same {
		if k, err := Key(r, false); err != nil || k != base {
			t.Errorf("%s: key %s (%v), want %s", name, k, err, base)
		}
	}
	differ := map[string]*spec.Request{
		"path":      req(func(r *spec.Request) { r.URL = "https://example.com/b?x=1" }),
		"query":     req(func(r *spec.Request) { r.URL = "https://example.com/a?x=2" }),
		"render_js": req(func(r *spec.Request) { r.RenderJS = &yes }),
		"output":    req(func(r *spec.Request) { r.Output = []string{"html"} }),
		"identity":  req(func(r *spec.Request) { r.Identity = "de" }),
		"actions": req(func(r *spec.Request) {
			r.RenderJS, r.Actions = &yes, []spec.Action{{Type: "click", Selector: "#a"}}
		}),
		"extract": req(func(r *spec.Request) {
			r.Extract = &spec.Extract{Mode: "selectors", Selectors: json.RawMessage(`{"a":"h1"}`)}
		}),
		"wait_until":     req(func(r *spec.Request) { r.WaitUntil = "networkidle" }),
		"load_resources": req(func(r *spec.Request) { r.LoadResources = true }),
	}
	seen := map[string]string{base: "base"}
	for name, r := range differ {
		k, err := Key(r, false)
		if err != nil {
			t.Fatal(name, err)
		}
		if prev, dup := seen[k]; dup {
			t.Errorf("%s keys like %s", name, prev)
		}
		seen[k] = name
	}
	if k, _ := Key(req(nil), true); k == base {
		t.Error("a crawl page keys like a plain fetch")
	}
	// Extract spelled two ways keys once.
	a := req(func(r *spec.Request) {
		r.Extract = &spec.Extract{Mode: "selectors", Selectors: json.RawMessage(`{"a":"h1","b":"p"}`)}
	})
	b := req(func(r *spec.Request) {
		r.Extract = &spec.Extract{Mode: "selectors", Selectors: json.RawMessage(`{ "b" : "p", "a":"h1" }`)}
	})
	ka, _ := Key(a, false)
	kb, _ := Key(b, false)
	if ka != kb {
		t.Error("the same selectors spelled twice key differently")
	}
	if _, err := Key(req(func(r *spec.Request) { r.URL = "ftp://x" }), false); err == nil {
		t.Error("no error for a URL that does not normalise")
	}
}

func TestCanonical(t *testing.T) {
	// The proxy field (#18) is keyed through canonical: spellings of one
	// value are one key, other values are others.
	x, _ := canonical(json.RawMessage(`{ "pool" : "resi" }`))
	y, _ := canonical(json.RawMessage(`{"pool":"resi"}`))
	z, _ := canonical(json.RawMessage(`"none"`))
	n, _ := canonical(json.RawMessage(`null`))
	if string(x) != string(y) || string(x) == string(z) || n != nil {
		t.Errorf("canonical: %s %s %s %s", x, y, z, n)
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ms := func(n int64) *int64 { return &n }
	old := &Entry{At: now.Add(-10 * time.Second), ETag: `"v1"`, Markdown: true}
	noValidators := &Entry{At: now.Add(-10 * time.Second), Markdown: true}
	noMD := &Entry{At: now.Add(-time.Second), ETag: `"v1"`}
	future := &Entry{At: now.Add(time.Minute), Markdown: true}
	for _, c := range []struct {
		name    string
		maxAge  *int64
		e       *Entry
		plain   bool
		tracked bool
		want    Use
	}{
		{"no max_age_ms", nil, old, true, false, Fetch},
		{"no entry", ms(60000), nil, true, false, Fetch},
		{"young enough", ms(60000), old, true, false, Hit},
		{"young enough, rendered", ms(60000), old, false, false, Hit},
		{"exactly max_age_ms old", ms(10000), old, true, false, Revalidate},
		{"too old, plain, validators", ms(5000), old, true, false, Revalidate},
		{"too old, rendered", ms(5000), old, false, false, Fetch},
		{"too old, no validators", ms(5000), noValidators, true, false, Fetch},
		{"max_age_ms 0 revalidates", ms(0), old, true, false, Revalidate},
		{"tracked, entry without markdown", ms(60000), noMD, true, true, Fetch},
		{"untracked, entry without markdown", ms(60000), noMD, true, false, Hit},
		{"entry from a clock ahead", ms(1), future, true, false, Hit},
	} {
		if got := Decide(c.maxAge, c.e, now, c.plain, c.tracked); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestStorable(t *testing.T) {
	for code, want := range map[int]bool{200: true, 204: true, 301: true, 404: true, 410: true, 403: false, 429: false, 500: false, 503: false} {
		if got := Storable(&spec.Result{StatusCode: code}); got != want {
			t.Errorf("status %d: storable %v, want %v", code, got, want)
		}
	}
	if Storable(nil) {
		t.Error("a nil result is storable")
	}
	a := &spec.Artifact{ID: "job_x~page.har"}
	for name, res := range map[string]*spec.Result{
		"har":           {StatusCode: 200, HAR: a},
		"downloads":     {StatusCode: 200, Downloads: []spec.Download{{Filename: "f.csv", Artifact: a}}},
		"body artifact": {StatusCode: 200, Network: []spec.NetworkEntry{{URL: "u", BodyArtifact: a}}},
	} {
		if Storable(res) {
			t.Errorf("a result with a %s is storable: its artifacts go with its job", name)
		}
	}
	body := "{}"
	if !Storable(&spec.Result{StatusCode: 200, Network: []spec.NetworkEntry{{URL: "u", Body: &body}}}) {
		t.Error("a result with inline network bodies is not storable")
	}
}

func TestCompare(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	prevMD := "# Title\n\nline 1\nline 2\nline 3\nline 4\nline 5\nline 6\n"
	prev := &Tracked{Job: "job_a", At: at, Digest: Digest(prevMD), Markdown: prevMD, HasMarkdown: true}
	if c := Compare(nil, "job_b", prevMD); c.Status != spec.ChangeNew || c.PreviousJob != "" {
		t.Errorf("nothing before: %+v", c)
	}
	if c := Compare(prev, "job_b", prevMD); c.Status != spec.ChangeSame || c.PreviousJob != "job_a" || !c.PreviousAt.Equal(at) || c.Diff != "" {
		t.Errorf("same: %+v", c)
	}
	next := strings.Replace(prevMD, "line 5", "line five", 1)
	c := Compare(prev, "job_b", next)
	want := "--- a/job_a\n+++ b/job_b\n@@ -4,5 +4,5 @@\n line 2\n line 3\n line 4\n-line 5\n+line five\n line 6\n"
	if c.Status != spec.ChangeChanged || c.Diff != want {
		t.Errorf("changed: %s, diff\n%s\nwant\n%s", c.Status, c.Diff, want)
	}
	// Without the previous markdown: changed, no diff.
	blind := *prev
	blind.HasMarkdown, blind.Markdown = false, ""
	if c := Compare(&blind, "job_b", next); c.Status != spec.ChangeChanged || c.Diff != "" {
		t.Errorf("changed without markdown: %+v", c)
	}
	// No newline at the end.
	if d := Diff("a\nb", "a\nc", "x", "y"); d != "--- a/x\n+++ b/y\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n" {
		t.Errorf("diff without final newline:\n%s", d)
	}
	// A huge diff is cut at a line.
	var big strings.Builder
	for i := 0; i < 20000; i++ {
		big.WriteString("some line of text ")
		big.WriteString(strings.Repeat("x", i%7))
		big.WriteString("\n")
	}
	d := Diff("", big.String(), "x", "y")
	if len(d) > MaxDiffBytes+len(DiffTruncated) || !strings.HasSuffix(d, "\n"+DiffTruncated) {
		t.Errorf("a big diff: %d bytes, ends %q", len(d), d[len(d)-40:])
	}
}

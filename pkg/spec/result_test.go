package spec

import (
	"encoding/json"
	"strings"
	"testing"
)

// A job that asked for links on a page that has none answers "links": [],
// not nothing; a job that did not ask has no links key. Both survive the
// round trip through the stored record.
func TestLinksKeyWhenAskedFor(t *testing.T) {
	for _, tt := range []struct {
		links []string
		want  string
	}{{[]string{}, `"links":[]`}, {nil, ""}, {[]string{"https://example.com/"}, `"links":["https://example.com/"]`}} {
		b, err := json.Marshal(Job{ID: "job_x", Result: &Result{URL: "https://example.com/", Links: tt.links}})
		if err != nil {
			t.Fatal(err)
		}
		if tt.want == "" && strings.Contains(string(b), `"links"`) || tt.want != "" && !strings.Contains(string(b), tt.want) {
			t.Errorf("links %#v: %s", tt.links, b)
		}
		var back Job
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(b) {
			t.Errorf("round trip: %s, then %s", b, again)
		}
	}
}

// A job's timestamps are always keys of its object: null until set, as the
// contract lists them.
func TestTimestampsAlwaysPresent(t *testing.T) {
	b, _ := json.Marshal(Job{ID: "job_x", Kind: KindFetch, Status: StatusQueued})
	for _, k := range []string{`"started_at":null`, `"finished_at":null`, `"created_at":`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("queued job %s lacks %s", b, k)
		}
	}
}

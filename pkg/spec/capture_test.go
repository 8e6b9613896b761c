package spec

import (
	"slices"
	"strings"
	"testing"
)

func TestValidateCapture(t *testing.T) {
	yes, no := true, false
	api := &NetworkCapture{URLPatterns: []string{"*/api/*"}}
	wait := []Action{{Type: ActWait, Ms: 1}}
	for _, c := range []struct {
		name string
		kind string
		r    Request
		want []string
	}{
		{"rendered fetch with network and har", KindFetch, Request{RenderJS: &yes, Output: []string{OutNetwork, OutHAR}, Network: api}, nil},
		{"interact with network", KindInteract, Request{Actions: wait, Output: []string{OutNetwork}, Network: api}, nil},
		{"plain fetch with network", KindFetch, Request{Output: []string{OutNetwork}, Network: api}, []string{"output[0]"}},
		{"plain fetch with har", KindFetch, Request{Output: []string{OutHTML, OutHAR}}, []string{"output[1]"}},
		{"network output without patterns", KindFetch, Request{RenderJS: &yes, Output: []string{OutNetwork}}, []string{"network"}},
		{"patterns without the output", KindInteract, Request{Actions: wait, Network: api}, []string{"network"}},
		{"no patterns", KindInteract, Request{Actions: wait, Output: []string{OutNetwork}, Network: &NetworkCapture{}},
			[]string{"network.url_patterns"}},
		{"blank and long patterns", KindInteract, Request{Actions: wait, Output: []string{OutNetwork},
			Network: &NetworkCapture{URLPatterns: []string{"*", " ", strings.Repeat("a", MaxURLPatternBytes+1)}}},
			[]string{"network.url_patterns[1]", "network.url_patterns[2]"}},
		{"too many patterns", KindInteract, Request{Actions: wait, Output: []string{OutNetwork},
			Network: &NetworkCapture{URLPatterns: slices.Repeat([]string{"*"}, MaxURLPatterns+1)}}, []string{"network.url_patterns"}},
		{"diagnostics off", KindInteract, Request{Actions: wait, Diagnostics: &no}, nil},
	} {
		c.r.URL = "https://example.com/"
		var got []string
		for _, e := range c.r.Validate(c.kind, "") {
			got = append(got, e.Field)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: errors on %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWantsDiagnostics(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		kind string
		r    Request
		want bool
	}{
		{KindInteract, Request{}, true},
		{KindFetch, Request{RenderJS: &yes}, true},
		{KindFetch, Request{}, false}, // a plain fetch has no page to show
		{KindInteract, Request{Diagnostics: &no}, false},
		{KindInteract, Request{Diagnostics: &yes}, true},
	} {
		if got := c.r.WantsDiagnostics(c.kind); got != c.want {
			t.Errorf("%s %+v: %v, want %v", c.kind, c.r, got, c.want)
		}
	}
}

package proxy

import (
	"testing"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

func TestDetect(t *testing.T) {
	rules := []spec.BlockRule{{Status: 403, BodyContains: "You have been blocked"}, {BodyContains: "unusual traffic"}}
	cases := []struct {
		status  int
		headers map[string]string
		body    string
		want    string
	}{
		{200, nil, "<html>hello</html>", ""},
		{403, nil, "<html>Forbidden</html>", ""},
		{404, nil, "please solve the captcha", ""},
		{503, nil, "Service Unavailable", ""},
		{403, map[string]string{"cf-mitigated": "challenge"}, "", "cf-mitigated: challenge"},
		{200, map[string]string{"cf-mitigated": "Challenge"}, "", "cf-mitigated: challenge"},
		{503, nil, `<html><head><title>Just a moment...</title>`, "503 cloudflare challenge"},
		{403, nil, `<div class="g-recaptcha" data-sitekey="x">`, "403 captcha (recaptcha)"},
		{429, nil, `<script src="https://js.hcaptcha.com/1/api.js">`, "429 captcha (hcaptcha)"},
		{403, nil, `<script src="https://ct.captcha-delivery.com/c.js">`, "403 captcha (datadome)"},
		{403, nil, "Sorry, You have been blocked", "block_rules[0]: status 403: body contains \"You have been blocked\""},
		{200, nil, "Our systems have detected unusual traffic", "block_rules[1]: body contains \"unusual traffic\""},
		{500, nil, "You have been blocked", ""},
	}
	for _, c := range cases {
		if got := Detect(c.status, c.headers, c.body, rules); got != c.want {
			t.Errorf("Detect(%d, %v, %q) = %q, want %q", c.status, c.headers, c.body, got, c.want)
		}
	}
}

package proxy

import (
	"strconv"
	"strings"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// marker is a sign of a challenge or captcha page in a response body.
type marker struct {
	needle string // lower case
	reason string
}

// markers are the built-in signs, checked on 403, 429 and 503 answers.
var markers = []marker{
	{"/cdn-cgi/challenge-platform/", "cloudflare challenge"},
	{"cf-chl-", "cloudflare challenge"},
	{"<title>just a moment...</title>", "cloudflare challenge"},
	{"attention required! | cloudflare", "cloudflare block"},
	{"g-recaptcha", "captcha (recaptcha)"},
	{"www.google.com/recaptcha/", "captcha (recaptcha)"},
	{"h-captcha", "captcha (hcaptcha)"},
	{"hcaptcha.com/1/api.js", "captcha (hcaptcha)"},
	{"captcha-delivery.com", "captcha (datadome)"},
	{"px-captcha", "captcha (perimeterx)"},
	{"_incapsula_resource", "incapsula block"},
	{"request unsuccessful. incapsula incident id", "incapsula block"},
	{"errors.edgesuite.net", "akamai block"},
	{"you don't have permission to access", "access denied"},
	{"captcha", "captcha"},
}

// maxScan bounds how much of a body the rules read.
const maxScan = 256 << 10

// Detect returns why a response is blocked, or "" when it is not: the
// tenant's rules first, then the built-in ones (cf-mitigated: challenge
// on any answer; a challenge or captcha page on a 403, 429 or 503).
// headers have lower-case names.
func Detect(status int, headers map[string]string, body string, rules []spec.BlockRule) string {
	if len(body) > maxScan {
		body = body[:maxScan]
	}
	for i, r := range rules {
		if r.Status != 0 && r.Status != status {
			continue
		}
		if r.BodyContains != "" && !strings.Contains(body, r.BodyContains) {
			continue
		}
		reason := "block_rules[" + strconv.Itoa(i) + "]"
		if r.Status != 0 {
			reason += ": status " + strconv.Itoa(status)
		}
		if r.BodyContains != "" {
			reason += ": body contains " + strconv.Quote(r.BodyContains)
		}
		return reason
	}
	if v := headers["cf-mitigated"]; strings.EqualFold(strings.TrimSpace(v), "challenge") {
		return "cf-mitigated: challenge"
	}
	switch status {
	case 403, 429, 503:
	default:
		return ""
	}
	lower := strings.ToLower(body)
	for _, m := range markers {
		if strings.Contains(lower, m.needle) {
			return strconv.Itoa(status) + " " + m.reason
		}
	}
	return ""
}

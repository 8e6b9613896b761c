package identity

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones also on images without /usr/share/zoneinfo

	"golang.org/x/net/http/httpguts"
	"golang.org/x/text/language"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Limits of a profile.
const (
	MaxUserAgent      = 512
	MaxAcceptLanguage = 256
	MaxHeaders        = 30
	MaxHeaderName     = 128
	MaxHeaderValue    = 4096
	MinWidth          = 320
	MaxWidth          = 3840
	MinHeight         = 240
	MaxHeight         = 2160
)

// Profile is one identity profile, the object of /v1/identities/{name}
// (the wire type; validation and normalisation are here).
type Profile = spec.Identity

// Viewport is a window size in CSS pixels.
type Viewport = spec.Viewport

// forbiddenHeaders may not be set as extra headers: connection-level and
// framing headers, Host, Cookie (sessions own cookies), and the headers the
// profile's own fields produce.
var forbiddenHeaders = map[string]string{
	"Connection":          "is a hop-by-hop header",
	"Keep-Alive":          "is a hop-by-hop header",
	"Te":                  "is a hop-by-hop header",
	"Trailer":             "is a hop-by-hop header",
	"Transfer-Encoding":   "is a hop-by-hop header",
	"Upgrade":             "is a hop-by-hop header",
	"Host":                "is set from the URL",
	"Content-Length":      "is set by the client",
	"Accept-Encoding":     "is set by the client, which decodes the body",
	"Cookie":              "may not be set; use a session for cookies",
	"Cookie2":             "may not be set; use a session for cookies",
	"User-Agent":          "is set by user_agent",
	"Accept-Language":     "is set by accept_language",
	"Sec-Ch-Ua":           "is derived from user_agent",
	"Sec-Ch-Ua-Mobile":    "is derived from user_agent",
	"Sec-Ch-Ua-Platform":  "is derived from user_agent",
	"Sec-Ch-Ua-Full-List": "is derived from user_agent",
}

var zoneRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`)

// notZones are names time.LoadLocation may accept from a system zoneinfo
// directory that are no IANA zone a browser knows.
var notZones = map[string]bool{"Local": true, "localtime": true, "posixrules": true, "Factory": true}

// ValidTimezone reports whether tz names an IANA time zone.
func ValidTimezone(tz string) bool {
	if len(tz) > 64 || !zoneRe.MatchString(tz) || notZones[tz] ||
		strings.HasPrefix(tz, "posix/") || strings.HasPrefix(tz, "right/") {
		return false
	}
	_, err := time.LoadLocation(tz)
	return err == nil
}

// parseLocale parses a BCP 47 tag; "_" is not accepted as a separator.
func parseLocale(s string) (language.Tag, error) {
	if s == "" || len(s) > 64 || strings.ContainsAny(s, "_ ") {
		return language.Und, fmt.Errorf("not a BCP 47 tag")
	}
	t, err := language.Parse(s)
	if err != nil {
		return language.Und, err
	}
	if _, conf := t.Base(); conf != language.Exact {
		return language.Und, fmt.Errorf("names no language")
	}
	return t, nil
}

// Validate checks every field of p and names each invalid one by its JSON path.
func Validate(p *Profile) []spec.FieldError {
	var errs []spec.FieldError
	add := func(f, m string) { errs = append(errs, spec.FieldError{Field: f, Message: m}) }
	if !spec.ValidName(p.Name) {
		add("name", "must be 1-64 characters of A-Z a-z 0-9 . _ -")
	}
	if p.ProxyPool != "" && !spec.ValidName(p.ProxyPool) {
		add("proxy_pool", "must be 1-64 characters of A-Z a-z 0-9 . _ -")
	}
	if len(p.UserAgent) > MaxUserAgent {
		add("user_agent", fmt.Sprintf("must be at most %d characters", MaxUserAgent))
	} else if !printable(p.UserAgent) || p.UserAgent != strings.TrimSpace(p.UserAgent) {
		add("user_agent", "must be printable ASCII without leading or trailing spaces")
	}
	if p.Locale != "" {
		if _, err := parseLocale(p.Locale); err != nil {
			add("locale", "must be a BCP 47 language tag such as de-DE")
		}
	}
	if p.Timezone != "" && !ValidTimezone(p.Timezone) {
		add("timezone", "must be an IANA time zone such as Europe/Berlin")
	}
	if p.AcceptLanguage != "" {
		if m := checkAcceptLanguage(p.AcceptLanguage); m != "" {
			add("accept_language", m)
		}
	}
	if v := p.Viewport; v != nil {
		if v.Width < MinWidth || v.Width > MaxWidth {
			add("viewport.width", fmt.Sprintf("must be between %d and %d", MinWidth, MaxWidth))
		}
		if v.Height < MinHeight || v.Height > MaxHeight {
			add("viewport.height", fmt.Sprintf("must be between %d and %d", MinHeight, MaxHeight))
		}
	}
	if len(p.Headers) > MaxHeaders {
		add("headers", fmt.Sprintf("must have at most %d headers", MaxHeaders))
		return errs
	}
	names := make([]string, 0, len(p.Headers))
	for k := range p.Headers {
		names = append(names, k)
	}
	sort.Strings(names) // errors in a stable order
	seen := map[string]string{}
	for _, k := range names {
		v := p.Headers[k]
		f := "headers." + k
		ck := http.CanonicalHeaderKey(k)
		switch {
		case k == "" || len(k) > MaxHeaderName || !httpguts.ValidHeaderFieldName(k):
			add(f, fmt.Sprintf("is not a valid header name (a token of at most %d characters)", MaxHeaderName))
			continue
		case strings.HasPrefix(ck, "Proxy-"):
			add(f, "may not be set: Proxy-* headers are for proxies")
			continue
		case forbiddenHeaders[ck] != "":
			add(f, forbiddenHeaders[ck])
			continue
		}
		if other, dup := seen[ck]; dup {
			add(f, "is the same header as "+strconv.Quote(other))
			continue
		}
		seen[ck] = k
		if len(v) > MaxHeaderValue || !httpguts.ValidHeaderFieldValue(v) || !printable(v) {
			add(f, fmt.Sprintf("must be a header value of at most %d printable ASCII characters", MaxHeaderValue))
		}
	}
	return errs
}

// Normalize puts a valid profile p in canonical form: the locale's canonical
// tag, Accept-Language derived from it when empty, canonical header names,
// an empty (not nil) header map.
func Normalize(p *Profile) {
	if t, err := parseLocale(p.Locale); err == nil {
		p.Locale = t.String()
		if p.AcceptLanguage == "" {
			p.AcceptLanguage = AcceptLanguageFor(t)
		}
	}
	p.AcceptLanguage = strings.TrimSpace(p.AcceptLanguage)
	h := make(map[string]string, len(p.Headers))
	for k, v := range p.Headers {
		h[http.CanonicalHeaderKey(k)] = strings.TrimSpace(v)
	}
	p.Headers = h
}

// AcceptLanguageFor is the Accept-Language a browser set to locale t sends:
// "de-DE" gives "de-DE,de;q=0.9", "de" gives "de". Extensions of the tag
// (such as -u-co-phonebk) are left out.
func AcceptLanguageFor(t language.Tag) string {
	b, s, r := t.Raw()
	full, err := language.Compose(b, s, r)
	if err != nil || full.String() == b.String() {
		return b.String()
	}
	return full.String() + "," + b.String() + ";q=0.9"
}

// checkAcceptLanguage validates an Accept-Language list of BCP 47 tags with
// optional q-values ("de-DE,de;q=0.9,en;q=0.5"); "" means valid.
func checkAcceptLanguage(s string) string {
	if len(s) > MaxAcceptLanguage {
		return fmt.Sprintf("must be at most %d characters", MaxAcceptLanguage)
	}
	if !printable(s) {
		return "must be printable ASCII"
	}
	for i, part := range strings.Split(s, ",") {
		tag, params, hasParams := strings.Cut(part, ";")
		tag = strings.TrimSpace(tag)
		if _, err := parseLocale(tag); err != nil {
			return fmt.Sprintf("entry %d (%q) is not a BCP 47 language tag", i+1, strings.TrimSpace(part))
		}
		if hasParams {
			q, ok := strings.CutPrefix(strings.TrimSpace(params), "q=")
			if !ok || !validQ(q) {
				return fmt.Sprintf("entry %d (%q) has an invalid q-value (q=0 to q=1, at most 3 decimals)", i+1, strings.TrimSpace(part))
			}
		}
	}
	return ""
}

// validQ checks an RFC 9110 qvalue.
func validQ(q string) bool {
	whole, frac, _ := strings.Cut(q, ".")
	if (whole != "0" && whole != "1") || len(frac) > 3 {
		return false
	}
	for _, c := range frac {
		if c < '0' || c > '9' || (whole == "1" && c != '0') {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// RequestHeaders are the headers a plain fetch sends for p: User-Agent and
// Accept-Language when set, and the extra headers. A nil profile has none.
func RequestHeaders(p *Profile) map[string]string {
	if p == nil {
		return nil
	}
	h := make(map[string]string, len(p.Headers)+2)
	for k, v := range p.Headers {
		h[k] = v
	}
	if p.UserAgent != "" {
		h["User-Agent"] = p.UserAgent
	}
	if p.AcceptLanguage != "" {
		h["Accept-Language"] = p.AcceptLanguage
	}
	return h
}

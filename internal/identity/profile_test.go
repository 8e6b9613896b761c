package identity_test

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/text/language"

	"github.com/pagefleet/pagefleet/internal/identity"
)

func fields(p identity.Profile) []string {
	var out []string
	for _, e := range identity.Validate(&p) {
		out = append(out, e.Field)
	}
	sort.Strings(out)
	return out
}

func TestValidate(t *testing.T) {
	ok := identity.Profile{Name: "de-desktop", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/150.0.0.0", Locale: "de-DE",
		Timezone: "Europe/Berlin", AcceptLanguage: "de-DE,de;q=0.9,en;q=0.5", Viewport: &identity.Viewport{Width: 1280, Height: 800},
		Headers: map[string]string{"X-Team": "blue", "Authorization": "Bearer x"}}
	tests := []struct {
		name   string
		change func(p *identity.Profile)
		want   []string
	}{
		{"valid", func(p *identity.Profile) {}, nil},
		{"empty profile", func(p *identity.Profile) { *p = identity.Profile{Name: "x"} }, nil},
		{"bad name", func(p *identity.Profile) { p.Name = "a b" }, []string{"name"}},
		{"long name", func(p *identity.Profile) { p.Name = strings.Repeat("a", 65) }, []string{"name"}},
		{"zone", func(p *identity.Profile) { p.Timezone = "Mars/Base" }, []string{"timezone"}},
		{"zone Local", func(p *identity.Profile) { p.Timezone = "Local" }, []string{"timezone"}},
		{"zone path", func(p *identity.Profile) { p.Timezone = "../../etc/passwd" }, []string{"timezone"}},
		{"zone posix", func(p *identity.Profile) { p.Timezone = "posix/Europe/Berlin" }, []string{"timezone"}},
		{"zone UTC", func(p *identity.Profile) { p.Timezone = "UTC" }, nil},
		{"zone offset", func(p *identity.Profile) { p.Timezone = "Etc/GMT+5" }, nil},
		{"locale", func(p *identity.Profile) { p.Locale = "xx_YY_ZZ!" }, []string{"locale"}},
		{"locale unknown", func(p *identity.Profile) { p.Locale = "xx-YY" }, []string{"locale"}},
		{"locale und", func(p *identity.Profile) { p.Locale = "und" }, []string{"locale"}},
		{"locale underscore", func(p *identity.Profile) { p.Locale = "de_DE" }, []string{"locale"}},
		{"viewport", func(p *identity.Profile) { p.Viewport = &identity.Viewport{Width: 10, Height: 10} }, []string{"viewport.height", "viewport.width"}},
		{"viewport max", func(p *identity.Profile) { p.Viewport = &identity.Viewport{Width: 3840, Height: 2160} }, nil},
		{"viewport over", func(p *identity.Profile) { p.Viewport = &identity.Viewport{Width: 3841, Height: 240} }, []string{"viewport.width"}},
		{"ua long", func(p *identity.Profile) { p.UserAgent = strings.Repeat("a", 513) }, []string{"user_agent"}},
		{"ua control", func(p *identity.Profile) { p.UserAgent = "a\r\nX-Evil: 1" }, []string{"user_agent"}},
		{"ua unicode", func(p *identity.Profile) { p.UserAgent = "Mozilla/5.0 ü" }, []string{"user_agent"}},
		{"accept-language q", func(p *identity.Profile) { p.AcceptLanguage = "de;q=2" }, []string{"accept_language"}},
		{"accept-language tag", func(p *identity.Profile) { p.AcceptLanguage = "de,!!" }, []string{"accept_language"}},
		{"accept-language star", func(p *identity.Profile) { p.AcceptLanguage = "de, *;q=0.1" }, []string{"accept_language"}},
		{"accept-language ok", func(p *identity.Profile) {
			p.AcceptLanguage = "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, en-GB;q=1.000, it;q=0."
		}, nil},
		{"header hop", func(p *identity.Profile) {
			p.Headers = map[string]string{"Connection": "close", "transfer-encoding": "x"}
		}, []string{"headers.Connection", "headers.transfer-encoding"}},
		{"header host cookie", func(p *identity.Profile) {
			p.Headers = map[string]string{"Host": "x", "cookie": "a=b", "Content-Length": "1"}
		}, []string{"headers.Content-Length", "headers.Host", "headers.cookie"}},
		{"header proxy", func(p *identity.Profile) { p.Headers = map[string]string{"Proxy-Authorization": "x", "proxy-foo": "y"} }, []string{"headers.Proxy-Authorization", "headers.proxy-foo"}},
		{"header ua", func(p *identity.Profile) { p.Headers = map[string]string{"User-Agent": "x", "Accept-Language": "de"} }, []string{"headers.Accept-Language", "headers.User-Agent"}},
		{"header name", func(p *identity.Profile) { p.Headers = map[string]string{"Bad Name": "x", "": "y"} }, []string{"headers.", "headers.Bad Name"}},
		{"header value", func(p *identity.Profile) { p.Headers = map[string]string{"X-A": "a\nb"} }, []string{"headers.X-A"}},
		{"header duplicate", func(p *identity.Profile) { p.Headers = map[string]string{"X-A": "1", "x-a": "2"} }, []string{"headers.x-a"}},
		{"too many headers", func(p *identity.Profile) {
			p.Headers = map[string]string{}
			for i := 0; i < 31; i++ {
				p.Headers["X-H"+strings.Repeat("i", i+1)] = "v"
			}
		}, []string{"headers"}},
		{"every field", func(p *identity.Profile) {
			*p = identity.Profile{Name: "ok", Timezone: "Mars/Base", Locale: "xx_YY_ZZ!", Viewport: &identity.Viewport{Width: 10, Height: 10}}
		}, []string{"locale", "timezone", "viewport.height", "viewport.width"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			p.Headers = map[string]string{}
			for k, v := range ok.Headers {
				p.Headers[k] = v
			}
			tt.change(&p)
			if got := fields(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("invalid fields %v, want %v (%v)", got, tt.want, identity.Validate(&p))
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	p := identity.Profile{Name: "x", Locale: "de-de", Headers: map[string]string{"x-team": " blue "}}
	if errs := identity.Validate(&p); len(errs) > 0 {
		t.Fatal(errs)
	}
	identity.Normalize(&p)
	if p.Locale != "de-DE" || p.AcceptLanguage != "de-DE,de;q=0.9" || !reflect.DeepEqual(p.Headers, map[string]string{"X-Team": "blue"}) {
		t.Errorf("normalized: %+v", p)
	}
	q := identity.Profile{Name: "x", Locale: "fr-CA", AcceptLanguage: "fr-CA,en;q=0.5"}
	identity.Normalize(&q)
	if q.AcceptLanguage != "fr-CA,en;q=0.5" || q.Headers == nil {
		t.Errorf("kept accept_language: %+v", q)
	}
	for in, want := range map[string]string{"de": "de", "zh-Hant-TW": "zh-Hant-TW,zh;q=0.9", "de-DE-u-co-phonebk": "de-DE,de;q=0.9"} {
		if got := identity.AcceptLanguageFor(language.MustParse(in)); got != want {
			t.Errorf("AcceptLanguageFor(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestRequestHeaders(t *testing.T) {
	var none *identity.Profile
	if identity.RequestHeaders(none) != nil {
		t.Error("nil profile has headers")
	}
	p := &identity.Profile{UserAgent: "UA/1", AcceptLanguage: "de-DE,de;q=0.9", Headers: map[string]string{"X-A": "1"}}
	want := map[string]string{"User-Agent": "UA/1", "Accept-Language": "de-DE,de;q=0.9", "X-A": "1"}
	if got := identity.RequestHeaders(p); !reflect.DeepEqual(got, want) {
		t.Errorf("headers %v, want %v", got, want)
	}
}

package browser

import (
	"context"
	"regexp"
	"strings"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
)

// identitySteps returns the calls that apply the job's identity to the tab.
func (j *job) identitySteps() []func(context.Context) error {
	id := j.req.Identity
	if id == nil {
		return nil
	}
	var steps []func(context.Context) error
	ua := id.UserAgent
	if ua == "" {
		ua = j.b.userAgent
	}
	// Chrome adds the q-values itself: it takes a plain list of languages.
	acceptLanguage := languageList(id.AcceptLanguage)
	if acceptLanguage == "" && id.Locale != "" {
		acceptLanguage = acceptLanguageFor(id.Locale)
	}
	meta := userAgentMetadata(ua)
	if id.UserAgent != "" || acceptLanguage != "" {
		params := emulation.SetUserAgentOverrideParams{
			UserAgent:         ua,
			AcceptLanguage:    acceptLanguage,
			Platform:          navigatorPlatform(ua),
			UserAgentMetadata: meta,
		}
		steps = append(steps, func(ctx context.Context) error {
			_, err := cdp.Call(ctx, j.t, emulation.SetUserAgentOverride, params)
			return err
		})
	}
	if id.Locale != "" {
		steps = append(steps, func(ctx context.Context) error {
			_, err := cdp.Call(ctx, j.t, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: id.Locale})
			return err
		})
	}
	if id.Timezone != "" {
		steps = append(steps, func(ctx context.Context) error {
			_, err := cdp.Call(ctx, j.t, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: id.Timezone})
			return err
		})
	}
	if id.Width > 0 && id.Height > 0 {
		mobile := meta != nil && meta.Mobile
		steps = append(steps, func(ctx context.Context) error {
			_, err := cdp.Call(ctx, j.t, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
				Width: int64(id.Width), Height: int64(id.Height), DeviceScaleFactor: 1, Mobile: mobile,
			})
			return err
		})
	}
	if len(id.Headers) > 0 {
		h := make(network.Headers, len(id.Headers))
		for k, v := range id.Headers {
			h[k] = v
		}
		steps = append(steps, func(ctx context.Context) error {
			_, err := cdp.Call(ctx, j.t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: h})
			return err
		})
	}
	return steps
}

// acceptLanguageFor derives the languages of a locale: "de-DE" gives
// "de-DE,de", which Chrome sends as "de-DE,de;q=0.9".
func acceptLanguageFor(locale string) string {
	l := strings.ReplaceAll(locale, "_", "-")
	if lang, _, ok := strings.Cut(l, "-"); ok && lang != "" {
		return l + "," + lang
	}
	return l
}

// languageList turns an Accept-Language value into the plain list of
// languages that Chrome takes: "de-DE,de;q=0.9" gives "de-DE,de".
func languageList(accept string) string {
	var langs []string
	for _, part := range strings.Split(accept, ",") {
		lang, _, _ := strings.Cut(part, ";")
		if lang = strings.TrimSpace(lang); lang != "" {
			langs = append(langs, lang)
		}
	}
	return strings.Join(langs, ",")
}

var (
	chromeVersionRe  = regexp.MustCompile(`(HeadlessChrome|Chrome|CriOS)/(\d+)((?:\.\d+)*)`)
	edgeVersionRe    = regexp.MustCompile(`Edg(?:A|iOS)?/(\d+)((?:\.\d+)*)`)
	androidVersionRe = regexp.MustCompile(`Android (\d+(?:\.\d+)*)`)
	windowsVersionRe = regexp.MustCompile(`Windows NT (\d+\.\d+)`)
	macVersionRe     = regexp.MustCompile(`Mac OS X (\d+[_.]\d+(?:[_.]\d+)?)`)
)

// userAgentMetadata builds the client hints (Sec-CH-UA-*, navigator.userAgentData)
// that match a Chromium user agent, so that they do not contradict it. It
// returns nil for other browsers' user agents.
func userAgentMetadata(ua string) *emulation.UserAgentMetadata {
	m := chromeVersionRe.FindStringSubmatch(ua)
	if m == nil || m[1] == "CriOS" {
		return nil
	}
	major, full := m[2], m[2]+m[3]
	brand := "Google Chrome"
	if m[1] == "HeadlessChrome" {
		brand = "HeadlessChrome"
	}
	if e := edgeVersionRe.FindStringSubmatch(ua); e != nil {
		brand = "Microsoft Edge"
		major, full = e[1], e[1]+e[2]
	}
	md := &emulation.UserAgentMetadata{
		Brands: []*emulation.UserAgentBrandVersion{
			{Brand: "Not)A;Brand", Version: "8"},
			{Brand: "Chromium", Version: m[2]},
			{Brand: brand, Version: major},
		},
		FullVersionList: []*emulation.UserAgentBrandVersion{
			{Brand: "Not)A;Brand", Version: "8.0.0.0"},
			{Brand: "Chromium", Version: m[2] + m[3]},
			{Brand: brand, Version: full},
		},
		Architecture: "x86",
		Bitness:      "64",
	}
	switch {
	case strings.Contains(ua, "Android"):
		md.Platform, md.Mobile = "Android", strings.Contains(ua, "Mobile")
		md.Architecture, md.Bitness = "", ""
		if v := androidVersionRe.FindStringSubmatch(ua); v != nil {
			md.PlatformVersion = v[1]
		}
	case strings.Contains(ua, "Windows"):
		md.Platform, md.PlatformVersion = "Windows", "10.0.0"
		if v := windowsVersionRe.FindStringSubmatch(ua); v != nil && v[1] != "10.0" {
			md.PlatformVersion = v[1] + ".0"
		}
	case strings.Contains(ua, "Macintosh"):
		md.Platform, md.Architecture = "macOS", "arm"
		if v := macVersionRe.FindStringSubmatch(ua); v != nil {
			md.PlatformVersion = strings.ReplaceAll(v[1], "_", ".")
		}
	case strings.Contains(ua, "CrOS"):
		md.Platform = "Chrome OS"
	default:
		md.Platform = "Linux"
	}
	return md
}

// navigatorPlatform is the navigator.platform value that matches ua, or ""
// to keep Chrome's.
func navigatorPlatform(ua string) string {
	switch {
	case strings.Contains(ua, "Android"):
		return "Linux armv81"
	case strings.Contains(ua, "iPhone"):
		return "iPhone"
	case strings.Contains(ua, "iPad"):
		return "iPad"
	case strings.Contains(ua, "Windows"):
		return "Win32"
	case strings.Contains(ua, "Macintosh"):
		return "MacIntel"
	case strings.Contains(ua, "Linux"), strings.Contains(ua, "X11"):
		return "Linux x86_64"
	}
	return ""
}

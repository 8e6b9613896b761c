package spec

import "time"

// Identity is a named identity profile, the object of
// /v1/identities/{name}: a job that names it runs with its user agent,
// locale, time zone, Accept-Language, viewport and extra headers. Empty
// fields keep the browser's (or the plain fetcher's) defaults.
type Identity struct {
	// Name is set by the server from the URL; a body may leave it out.
	Name      string `json:"name,omitempty"`
	UserAgent string `json:"user_agent"`
	// Locale is a BCP 47 tag such as "de-DE": navigator.language and Intl.
	Locale string `json:"locale"`
	// Timezone is an IANA zone such as "Europe/Berlin".
	Timezone string `json:"timezone"`
	// AcceptLanguage is the Accept-Language header; the server derives it
	// from Locale when empty ("de-DE" gives "de-DE,de;q=0.9").
	AcceptLanguage string `json:"accept_language"`
	// Viewport is the window size in CSS pixels (nil: the browser's).
	Viewport *Viewport `json:"viewport"`
	// Headers are extra request headers sent with every request.
	Headers map[string]string `json:"headers,omitzero"`
	// ProxyPool sends the identity's jobs through this pool of the
	// tenant's proxies unless a job names its own "proxy".
	ProxyPool string    `json:"proxy_pool,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Viewport is a window size in CSS pixels.
type Viewport struct {
	Width  int `json:"width"`
	Height int `json:"height"`
}

package spec

import "time"

// Session is the object of GET /v1/sessions/{id}: a persistent session's
// times, version and what it holds.
type Session struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Version starts at 1 when the session is created and grows by one with
	// every save that changed its content.
	Version int64    `json:"version"`
	Cookies int      `json:"cookies"`
	Origins []string `json:"origins"`
	// Bytes is the encoded (stored) size of the state.
	Bytes int `json:"bytes"`
	// Proxy is the upstream proxy the session's jobs leave through (nil:
	// none yet, or direct).
	Proxy *ProxyRef `json:"proxy,omitempty"`
	// ProxyMoves are the session's last moves from one proxy to another
	// (oldest first, at most 10).
	ProxyMoves []ProxyMove `json:"proxy_moves,omitempty"`
	// State is the session's browser state in Playwright's storageState
	// shape, only with ?include=state.
	State *State `json:"state,omitempty"`
}

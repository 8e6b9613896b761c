package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Session describes a persistent session: when it was created and last
// used, when it expires, its version, how many cookies it holds and the
// origins whose storage it keeps; State only from Session with
// includeState.
type Session = spec.Session

// Sessions returns a page of the tenant's sessions.
func (c *Client) Sessions(ctx context.Context, opts ListOptions) (*Page[Session], error) {
	var p Page[Session]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/sessions", query: opts.query()}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Session returns a session; includeState adds its cookies and storage.
func (c *Client) Session(ctx context.Context, id string, includeState bool) (*Session, error) {
	var q url.Values
	if includeState {
		q = url.Values{"include": {"state"}}
	}
	var s Session
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/sessions/%s", id), query: q}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// DeleteSession removes a session, once a running job of it has ended.
func (c *Client) DeleteSession(ctx context.Context, id string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: pathf("/v1/sessions/%s", id)}, nil)
	return err
}

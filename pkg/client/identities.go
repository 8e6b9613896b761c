package client

import (
	"context"
	"net/http"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Identity is a named browser identity profile: a job that names it runs
// with its user agent, locale, time zone, Accept-Language, viewport and
// extra headers. Plans pro and enterprise only (others get 403
// plan_required).
type Identity = spec.Identity

// Viewport is a browser window size in CSS pixels.
type Viewport = spec.Viewport

// PutIdentity creates or replaces the identity name and returns it.
func (c *Client) PutIdentity(ctx context.Context, name string, id Identity) (*Identity, error) {
	id.Name, id.CreatedAt, id.UpdatedAt = "", time.Time{}, time.Time{}
	var out Identity
	if _, err := c.do(ctx, request{method: http.MethodPut, path: pathf("/v1/identities/%s", name), body: id}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Identity returns the identity name.
func (c *Client) Identity(ctx context.Context, name string) (*Identity, error) {
	var out Identity
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/identities/%s", name)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Identities returns a page of the tenant's identities.
func (c *Client) Identities(ctx context.Context, opts ListOptions) (*Page[Identity], error) {
	var p Page[Identity]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/identities", query: opts.query()}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// DeleteIdentity removes the identity name.
func (c *Client) DeleteIdentity(ctx context.Context, name string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: pathf("/v1/identities/%s", name)}, nil)
	return err
}

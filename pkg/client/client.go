package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Client calls one pagefleet API as one tenant. It is safe for concurrent
// use.
type Client struct {
	base      string
	key       string
	hc        *http.Client
	userAgent string
}

// Option configures a [Client].
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc (default: a
// client without an overall timeout; bound each call with its context).
// Wait asks the server to hold each long poll for less than hc.Timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client of the API at baseURL (such as
// "http://localhost:8080") that authenticates with apiKey.
func New(baseURL, apiKey string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), key: apiKey, hc: &http.Client{}, userAgent: "pagefleet-go-client"}
	for _, o := range opts {
		o(c)
	}
	return c
}

// CallOption is an optional per-call setting of a create call.
type CallOption func(*call)

type call struct {
	idempotencyKey string
}

// IdempotencyKey sends an Idempotency-Key header: a repeat of the call with
// the same key within 24 h returns the object the first call created and
// creates nothing.
func IdempotencyKey(key string) CallOption { return func(c *call) { c.idempotencyKey = key } }

// Page is one page of a list: pass NextCursor as [ListOptions].Cursor to
// read the next one; it is empty on the last page.
type Page[T any] = spec.List[T]

// ListOptions select a page of a list. Zero values take the server's
// defaults (the first page, 50 items).
type ListOptions struct {
	Cursor string
	Limit  int
	// Status filters jobs by status (Jobs only).
	Status string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Limit > 0 {
		q.Set("limit", fmt.Sprint(o.Limit))
	}
	if o.Status != "" {
		q.Set("status", o.Status)
	}
	return q
}

// request is one API call.
type request struct {
	method string
	path   string // escaped path below the base URL
	query  url.Values
	body   any
	header http.Header
	accept string
}

// send performs r and returns the response when its status is 2xx; any
// other answer becomes an *Error. The caller closes the body.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	u := c.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", r.method, r.path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if r.accept == "" {
		r.accept = "application/json"
	}
	req.Header.Set("Accept", r.accept)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, errorFrom(resp)
	}
	return resp, nil
}

// do performs r and decodes a 2xx JSON answer into out (unless nil).
func (c *Client) do(ctx context.Context, r request, out any) (*http.Response, error) {
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp, fmt.Errorf("decode %s %s answer: %w", r.method, r.path, err)
	}
	return resp, nil
}

// createHeader builds the headers of a create call from its options.
func createHeader(opts []CallOption) http.Header {
	var c call
	for _, o := range opts {
		o(&c)
	}
	h := http.Header{}
	if c.idempotencyKey != "" {
		h.Set("Idempotency-Key", c.idempotencyKey)
	}
	return h
}

// pathf escapes each argument as one path segment.
func pathf(format string, segs ...string) string {
	args := make([]any, len(segs))
	for i, s := range segs {
		args[i] = url.PathEscape(s)
	}
	return fmt.Sprintf(format, args...)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

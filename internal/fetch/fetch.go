package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Defaults of Config.
const (
	DefaultMaxRedirects = 10
	DefaultMaxBodyBytes = 10 << 20
	DefaultUserAgent    = "pagefleet/1 (+https://github.com/pagefleet/pagefleet)"
	DefaultAccept       = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	DefaultLanguage     = "en-US,en;q=0.9"
	acceptEncoding      = "gzip, deflate, br"
	redirectDrainBytes  = 64 << 10
)

// Config are the settings of a Client; zero values take defaults.
type Config struct {
	// Policy every hop is dialed through; nil means the default policy
	// (no private addresses, any port).
	Policy *egress.Policy
	// MaxRedirects is how many redirects one fetch follows (default 10).
	MaxRedirects int
	// MaxBodyBytes caps the decoded body; a larger one fails the fetch with
	// response_too_large (default 10 MiB).
	MaxBodyBytes int64
	// UserAgent is sent unless the request names its own.
	UserAgent string
	// Registerer, when set, gets pagefleet_egress_blocked_total{via="fetch"}.
	Registerer prometheus.Registerer
}

// Client fetches pages over plain HTTP. It holds one transport, so
// connections are reused per host across fetches; it is safe for concurrent
// use.
type Client struct {
	cfg       Config
	transport *http.Transport
	blocked   prometheus.Counter
	vias      sync.Map // *egress.Upstream → *egress.UpstreamTransport
}

// New returns a Client for cfg.
func New(cfg Config) *Client {
	if cfg.Policy == nil {
		cfg.Policy = &egress.Policy{}
	}
	if cfg.MaxRedirects <= 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	tr := cfg.Policy.Transport()
	tr.DisableCompression = true // Accept-Encoding is ours and so is decoding
	return &Client{
		cfg:       cfg,
		transport: tr,
		blocked:   egress.BlockedCounter(cfg.Registerer).WithLabelValues("fetch"),
	}
}

// CloseIdleConnections closes the transport's idle connections.
func (c *Client) CloseIdleConnections() {
	c.transport.CloseIdleConnections()
	c.vias.Range(func(_, v any) bool {
		v.(*egress.UpstreamTransport).CloseIdleConnections()
		return true
	})
}

// transportFor is the transport of a fetch through via (nil: directly).
func (c *Client) transportFor(via *egress.Upstream) http.RoundTripper {
	if via == nil {
		return c.transport
	}
	if t, ok := c.vias.Load(via); ok {
		return t.(*egress.UpstreamTransport)
	}
	t, _ := c.vias.LoadOrStore(via, c.cfg.Policy.UpstreamTransport(via))
	return t.(*egress.UpstreamTransport)
}

// Request is one fetch.
type Request struct {
	URL string
	// Headers are sent on every hop, after the defaults (User-Agent, Accept,
	// Accept-Language), which they override. Authorization and Cookie are
	// dropped on a redirect to another host that is not a subdomain of the
	// first one. Host, Accept-Encoding and connection-level headers are
	// ignored.
	Headers map[string]string
	// Cookies is the session's cookie jar.
	Cookies []spec.Cookie
	// Timeout bounds the whole fetch, redirects and body included
	// (default 30 s).
	Timeout time.Duration
	// Via sends every hop through this upstream proxy (nil: directly);
	// the policy checks each hop's destination before the proxy hears of
	// it.
	Via *egress.Upstream
	// Sent, when set, is called when the first request's headers are
	// written and again when its answer's first byte arrives, with the
	// time (politeness records when the request left). It must not block.
	Sent func(at time.Time)
}

// Response is the outcome of a fetch.
type Response struct {
	URL        string
	FinalURL   string
	StatusCode int
	// Headers of the final response: lower-case names, multiple values
	// joined with ", ". Content-Encoding and Content-Length describe the
	// body as sent, before decoding.
	Headers map[string]string
	// Body is the decoded body: UTF-8 text, or the raw bytes when Binary.
	Body string
	// Binary reports a non-textual body (image, PDF, …) returned as is.
	Binary bool
	// ContentType is the Content-Type header, or the sniffed type when none.
	ContentType string
	// Cookies is the session's jar after the fetch: the input updated with
	// every Set-Cookie seen (redirects included), expired ones removed.
	Cookies []spec.Cookie
	// CookiesChanged reports whether Cookies differs from the input.
	CookiesChanged bool
}

// errFetchTimeout is the cause of an expired fetch deadline.
var errFetchTimeout = errors.New("fetch timed out")

// ignoredHeaders are request headers a caller may not set.
var ignoredHeaders = map[string]bool{
	"Host": true, "Accept-Encoding": true, "Connection": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Proxy-Authorization": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

// sensitiveHeaders are dropped on a redirect that leaves the first host.
var sensitiveHeaders = map[string]bool{"Authorization": true, "Cookie": true, "Www-Authenticate": true}

// Do fetches req.URL with GET, following redirects. The error, when not
// nil, is a *spec.Error.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = spec.DefaultTimeoutMs * time.Millisecond
	}
	fctx, cancel := context.WithTimeoutCause(ctx, timeout, errFetchTimeout)
	defer cancel()
	resp, cur, jar, err := c.get(ctx, fctx, timeout, req)
	if err != nil {
		return nil, err
	}
	out, err := c.read(resp)
	_ = resp.Body.Close()
	if err != nil {
		return nil, c.fail(ctx, fctx, timeout, cur, err)
	}
	out.URL = req.URL
	out.FinalURL = cur.String()
	out.Cookies = jar.export(time.Now())
	out.CookiesChanged = !spec.EqualStates(&spec.State{Cookies: req.Cookies}, &spec.State{Cookies: out.Cookies})
	return out, nil
}

// Stream is a fetched response whose body is read by the caller (a big
// file read with bounds of its own: a sitemap).
type Stream struct {
	FinalURL   string
	StatusCode int
	// Headers of the response, lower-case names.
	Headers map[string]string
	// Body is the body decoded of its Content-Encoding; Close it.
	Body io.ReadCloser
}

// Open fetches req.URL with GET, following redirects, and hands over the
// final response's body, decoded of its Content-Encoding, unread. The
// request's timeout bounds the reading too. The error, when not nil, is a
// *spec.Error.
func (c *Client) Open(ctx context.Context, req Request) (*Stream, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = spec.DefaultTimeoutMs * time.Millisecond
	}
	fctx, cancel := context.WithTimeoutCause(ctx, timeout, errFetchTimeout)
	resp, cur, _, err := c.get(ctx, fctx, timeout, req)
	if err != nil {
		cancel()
		return nil, err
	}
	r, err := decompress(resp.Body, resp.Header.Get("Content-Encoding"))
	if err != nil {
		resp.Body.Close()
		cancel()
		return nil, spec.Errorf(spec.CodeNavigationFailed, false, "decode body: %v", err)
	}
	st := &Stream{FinalURL: cur.String(), StatusCode: resp.StatusCode, Headers: make(map[string]string, len(resp.Header)),
		Body: &streamBody{Reader: r, close: func() error { defer cancel(); return resp.Body.Close() }}}
	for k, vs := range resp.Header {
		st.Headers[strings.ToLower(k)] = strings.Join(vs, ", ")
	}
	return st, nil
}

type streamBody struct {
	io.Reader
	close func() error
}

func (b *streamBody) Close() error { return b.close() }

// get sends the request, following redirects, and returns the final
// response (its body unread), the final URL and the cookie jar.
func (c *Client) get(ctx, fctx context.Context, timeout time.Duration, req Request) (*http.Response, *url.URL, *jar, error) {
	start, err := url.Parse(req.URL)
	if err != nil || (start.Scheme != "http" && start.Scheme != "https") || start.Host == "" {
		return nil, nil, nil, spec.Errorf(spec.CodeNavigationFailed, false, "invalid url %q: must be absolute http(s)", req.URL)
	}
	jar := newJar(req.Cookies)
	firstHost := canonicalHost(start)
	rt := c.transportFor(req.Via)
	cur := start
	for hop := 0; ; hop++ {
		hreq, err := http.NewRequestWithContext(fctx, http.MethodGet, cur.String(), nil)
		if err != nil {
			return nil, nil, nil, spec.Errorf(spec.CodeNavigationFailed, false, "build request for %s: %v", cur, err)
		}
		c.setHeaders(hreq, req.Headers, jar, cur, firstHost)
		if hop == 0 && req.Sent != nil {
			sent := req.Sent
			hreq = hreq.WithContext(httptrace.WithClientTrace(hreq.Context(), &httptrace.ClientTrace{
				WroteHeaders:         func() { sent(time.Now()) },
				GotFirstResponseByte: func() { sent(time.Now()) },
			}))
		}
		resp, err := rt.RoundTrip(hreq)
		if err != nil {
			return nil, nil, nil, c.fail(ctx, fctx, timeout, cur, err)
		}
		now := time.Now()
		for _, sc := range resp.Cookies() {
			jar.set(cur, sc, now)
		}
		if loc := resp.Header.Get("Location"); loc != "" && isRedirect(resp.StatusCode) {
			_, _ = io.CopyN(io.Discard, resp.Body, redirectDrainBytes)
			_ = resp.Body.Close()
			if hop >= c.cfg.MaxRedirects {
				return nil, nil, nil, spec.Errorf(spec.CodeTooManyRedirects, false, "more than %d redirects (last to %s)", c.cfg.MaxRedirects, loc)
			}
			next, err := cur.Parse(loc)
			if err != nil || (next.Scheme != "http" && next.Scheme != "https") || next.Host == "" {
				return nil, nil, nil, spec.Errorf(spec.CodeNavigationFailed, false, "redirect from %s to unusable location %q", cur, loc)
			}
			if next.Fragment == "" && cur.Fragment != "" {
				next.Fragment = cur.Fragment
			}
			cur = next
			continue
		}
		return resp, cur, jar, nil
	}
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

func (c *Client) setHeaders(r *http.Request, extra map[string]string, jar *jar, u *url.URL, firstHost string) {
	h := r.Header
	h.Set("User-Agent", c.cfg.UserAgent)
	h.Set("Accept", DefaultAccept)
	h.Set("Accept-Language", DefaultLanguage)
	host := canonicalHost(u)
	sameHost := host == firstHost || strings.HasSuffix(host, "."+firstHost)
	var userCookie string
	for k, v := range extra {
		k = http.CanonicalHeaderKey(strings.TrimSpace(k))
		if k == "" || ignoredHeaders[k] || (sensitiveHeaders[k] && !sameHost) {
			continue
		}
		if k == "Cookie" {
			userCookie = v
			continue
		}
		h.Set(k, v)
	}
	h.Set("Accept-Encoding", acceptEncoding)
	cookie := jar.header(u, time.Now())
	if userCookie != "" {
		if cookie != "" {
			cookie += "; "
		}
		cookie += userCookie
	}
	if cookie != "" {
		h.Set("Cookie", cookie)
	}
}

// bodyReader records whether reading the wire failed, to tell transport
// errors from decoding errors.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// read reads, decompresses, caps and decodes the final response's body.
func (c *Client) read(resp *http.Response) (*Response, error) {
	limit := c.cfg.MaxBodyBytes
	enc := resp.Header.Get("Content-Encoding")
	if resp.ContentLength > limit {
		return nil, spec.Errorf(spec.CodeResponseTooLarge, false, "body of %d bytes exceeds the %d byte limit", resp.ContentLength, limit)
	}
	wire := &bodyReader{r: resp.Body}
	r, err := decompress(wire, enc)
	if err != nil {
		if wire.err != nil {
			return nil, wire.err
		}
		return nil, spec.Errorf(spec.CodeNavigationFailed, false, "decode body: %v", err)
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		if wire.err != nil {
			return nil, wire.err
		}
		return nil, spec.Errorf(spec.CodeNavigationFailed, false, "decode %s body: %v", enc, err)
	}
	if int64(len(data)) > limit {
		return nil, spec.Errorf(spec.CodeResponseTooLarge, false, "body exceeds the %d byte limit", limit)
	}
	out := &Response{StatusCode: resp.StatusCode, Headers: make(map[string]string, len(resp.Header))}
	for k, vs := range resp.Header {
		out.Headers[strings.ToLower(k)] = strings.Join(vs, ", ")
	}
	out.ContentType = resp.Header.Get("Content-Type")
	if out.ContentType == "" && len(data) > 0 {
		out.ContentType = http.DetectContentType(data)
	}
	mt, _, _ := mime.ParseMediaType(out.ContentType)
	if resp.Header.Get("Content-Type") == "" {
		mt = "" // sniff in textual
	}
	if textual(mt, data) {
		out.Body = toUTF8(data, resp.Header.Get("Content-Type"))
	} else {
		out.Body, out.Binary = string(data), true
	}
	return out, nil
}

// fail turns an error into a *spec.Error: the caller's context ending is
// cancelled (or its own deadline's timeout), the fetch's deadline is
// navigation_timeout, the rest is egress.Classify's.
func (c *Client) fail(parent, fctx context.Context, timeout time.Duration, u *url.URL, err error) error {
	var se *spec.Error
	if errors.As(err, &se) {
		return se
	}
	switch {
	case parent.Err() != nil && errors.Is(parent.Err(), context.DeadlineExceeded):
		return spec.Errorf(spec.CodeNavigationTimeout, true, "fetch of %s did not finish before the deadline", u.Redacted())
	case parent.Err() != nil:
		return spec.Errorf(spec.CodeCancelled, false, "fetch of %s cancelled", u.Redacted())
	case errors.Is(context.Cause(fctx), errFetchTimeout):
		return spec.Errorf(spec.CodeNavigationTimeout, true, "fetch of %s did not finish within %v", u.Redacted(), timeout)
	}
	se = egress.Classify(err)
	if se.Code == spec.CodeBlockedAddress {
		c.blocked.Inc()
	}
	se.Message = fmt.Sprintf("fetch %s: %s", u.Redacted(), se.Message)
	return se
}

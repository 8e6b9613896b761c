package browser

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/storage"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

//go:embed js/state.js
var stateJS string

// statePath is the path of the empty page that stands for an origin while the
// job imports or exports its storage. Requests to it are answered by the
// browser (Fetch.fulfillRequest) and never reach the network.
const statePath = "/__pagefleet_state__"

// statePage is the body of the page at statePath.
const statePage = "<!doctype html><html><head><title></title></head><body></body></html>"

// intercepts reports whether the job needs the Fetch domain: to block
// resources by type (see block.go), or to open origins for their storage.
func (j *job) intercepts() bool {
	return (j.req.BlockResources && j.byType) || j.req.CaptureState || len(j.storedOrigins()) > 0
}

// enableFetch turns on request interception for the job's patterns.
func (j *job) enableFetch(ctx context.Context) error {
	var patterns []*fetch.RequestPattern
	if j.req.BlockResources { // by type too, as the domain is on anyway
		for _, t := range blockedTypes {
			patterns = append(patterns, &fetch.RequestPattern{ResourceType: t, RequestStage: fetch.RequestStageRequest})
		}
	}
	if j.req.CaptureState || len(j.storedOrigins()) > 0 {
		patterns = append(patterns, &fetch.RequestPattern{
			URLPattern: "*" + statePath, ResourceType: network.ResourceTypeDocument, RequestStage: fetch.RequestStageRequest,
		})
	}
	_, err := cdp.Call(ctx, j.t, fetch.Enable, fetch.EnableParams{Patterns: patterns})
	return err
}

// onRequestPaused answers an intercepted request.
func (j *job) onRequestPaused(ev *fetch.EventRequestPaused) {
	var err error
	switch {
	case isStateURL(ev.Request.URL):
		_, err = cdp.Call(j.ctx, j.t, fetch.FulfillRequest, fetch.FulfillRequestParams{
			RequestID:    ev.RequestID,
			ResponseCode: 200,
			ResponseHeaders: []*fetch.HeaderEntry{
				{Name: "Content-Type", Value: "text/html; charset=utf-8"},
				{Name: "Cache-Control", Value: "no-store"},
			},
			Body: []byte(statePage),
		})
	case j.req.BlockResources && isBlockedType(ev.ResourceType):
		_, err = cdp.Call(j.ctx, j.t, fetch.FailRequest, fetch.FailRequestParams{
			RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient,
		})
	default:
		_, err = cdp.Call(j.ctx, j.t, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
	}
	if err != nil && j.ctx.Err() == nil {
		j.log.Debug("answer intercepted request", "url", ev.Request.URL, "err", err)
	}
}

// isStateURL reports whether raw is the state page of an origin.
func isStateURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Path == statePath && (u.Scheme == "http" || u.Scheme == "https")
}

// storedOrigins returns the origins of the input state that hold storage.
func (j *job) storedOrigins() []spec.OriginState {
	if j.req.State == nil {
		return nil
	}
	var out []spec.OriginState
	for _, o := range j.req.State.Origins {
		if len(o.LocalStorage) > 0 || len(o.SessionStorage) > 0 || len(o.IndexedDB) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// restoreCookies sets the input state's cookies in the job's browser context.
func (j *job) restoreCookies(ctx context.Context) error {
	params := make([]*network.CookieParam, 0, len(j.req.State.Cookies))
	for _, c := range j.req.State.Cookies {
		p := &network.CookieParam{
			Name: c.Name, Value: c.Value, Path: c.Path, Secure: c.Secure, HTTPOnly: c.HTTPOnly,
			SameSite: network.CookieSameSite(c.SameSite),
		}
		if p.Path == "" {
			p.Path = "/"
		}
		if strings.HasPrefix(c.Domain, ".") {
			p.Domain = c.Domain
		} else {
			// A host-only cookie: set it through a URL of its host.
			host := c.Domain
			if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
				host = "[" + host + "]"
			}
			scheme := "http"
			if c.Secure {
				scheme = "https"
			}
			p.URL = scheme + "://" + host + p.Path
		}
		if c.Expires > 0 {
			p.Expires = cdp.TimeSinceEpoch(c.Expires)
		}
		params = append(params, p)
	}
	_, err := cdp.Call(ctx, j.b.browser, storage.SetCookies, storage.SetCookiesParams{
		Cookies: params, BrowserContextID: j.tab.bctx,
	})
	if err == nil || ctx.Err() != nil {
		return err
	}
	// Chrome refuses the whole list for one cookie it will not take (such
	// as SameSite=None without Secure): set the others one by one.
	for _, p := range params {
		_, err := cdp.Call(ctx, j.b.browser, storage.SetCookies, storage.SetCookiesParams{
			Cookies: []*network.CookieParam{p}, BrowserContextID: j.tab.bctx,
		})
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			j.log.Debug("skip a cookie Chrome refuses", "name", p.Name, "domain", p.Domain, "url", p.URL, "err", err)
		}
	}
	return nil
}

// openOrigin navigates the tab to the state page of origin, so that scripts
// run in that origin.
func (j *job) openOrigin(ctx context.Context, origin string) error {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid origin %q", origin)
	}
	res, err := cdp.Call(ctx, j.t, page.Navigate, page.NavigateParams{URL: u.Scheme + "://" + u.Host + statePath})
	if err != nil {
		return err
	}
	if res.ErrorText != "" {
		return fmt.Errorf("open %s: %s", origin, res.ErrorText)
	}
	return j.waitLoaded(ctx, res.LoaderID, "DOMContentLoaded")
}

// restoreStorage imports the localStorage, sessionStorage and IndexedDB of
// the input state, each origin in its own origin, before the job navigates.
func (j *job) restoreStorage(ctx context.Context) error {
	for _, o := range j.storedOrigins() {
		if err := j.openOrigin(ctx, o.Origin); err != nil {
			return err
		}
		data, err := json.Marshal(o)
		if err != nil {
			return err
		}
		if _, err := j.evaluate(ctx, "("+stateJS+").import("+string(data)+")"); err != nil {
			return fmt.Errorf("import the storage of %s: %w", o.Origin, err)
		}
	}
	return nil
}

// exportStorage reads the storage of the origin of the current document.
func (j *job) exportStorage(ctx context.Context) (spec.OriginState, error) {
	var o spec.OriginState
	err := j.evaluateInto(ctx, "("+stateJS+").export()", &o)
	return o, err
}

// captureState reads the cookies of the job's browser context and the storage
// of every origin the job touched: the input state's and those of its
// main-frame documents.
func (j *job) captureState(ctx context.Context) (*spec.State, error) {
	st := &spec.State{}
	cookies, err := cdp.Call(ctx, j.b.browser, storage.GetCookies, storage.GetCookiesParams{BrowserContextID: j.tab.bctx})
	if err != nil {
		return nil, fmt.Errorf("read cookies: %w", err)
	}
	for _, c := range cookies.Cookies {
		expires := c.Expires
		if c.Session || expires <= 0 {
			expires = -1
		}
		st.Cookies = append(st.Cookies, spec.Cookie{
			Name: c.Name, Value: c.Value, Domain: c.Domain, Path: c.Path, Expires: expires,
			HTTPOnly: c.HTTPOnly, Secure: c.Secure, SameSite: string(c.SameSite),
		})
	}

	input := map[string]spec.OriginState{}
	var origins []string
	if j.req.State != nil {
		for _, o := range j.req.State.Origins {
			input[o.Origin] = o
			origins = append(origins, o.Origin)
		}
	}
	j.mu.Lock()
	origins = append(origins, j.origins...)
	errorPage := j.errorPage
	j.mu.Unlock()

	done := map[string]bool{}
	if !errorPage {
		// The current document first: no navigation needed.
		if o, err := j.exportStorage(ctx); err == nil && strings.HasPrefix(o.Origin, "http") {
			st.Origins = append(st.Origins, o)
			done[o.Origin] = true
		} else if err != nil && ctx.Err() != nil {
			return nil, err
		}
	}
	for _, origin := range origins {
		if done[origin] {
			continue
		}
		done[origin] = true
		o, err := j.exportOrigin(ctx, origin)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			j.log.Debug("export origin storage", "origin", origin, "err", err)
			if in, ok := input[origin]; ok {
				st.Origins = append(st.Origins, in) // keep what we had
			}
			continue
		}
		o.Origin = origin
		st.Origins = append(st.Origins, o)
	}
	st.Normalize()
	return st, nil
}

// exportOrigin opens origin in the tab and reads its storage.
func (j *job) exportOrigin(ctx context.Context, origin string) (spec.OriginState, error) {
	if err := j.openOrigin(ctx, origin); err != nil {
		return spec.OriginState{}, err
	}
	return j.exportStorage(ctx)
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/pagefleet/pagefleet/internal/api"
	"github.com/pagefleet/pagefleet/pkg/client"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func init() {
	// Bodies the validator reads as strings (it knows JSON and text/plain).
	for _, ct := range []string{"text/html", "text/css", "text/javascript"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", ndjsonDecoder)
	// Artifacts' bytes (GET /v1/artifacts/{id}).
	for _, ct := range []string{"image/png", "image/jpeg", "application/pdf"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
	}
}

// ndjsonDecoder validates every line of an NDJSON stream against the media
// type's schema, which describes one line (as OpenAPI 3.2's itemSchema
// would), and hands the validator the last line.
func ndjsonDecoder(body io.Reader, _ http.Header, schema *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	dec := json.NewDecoder(body)
	var last any
	n := 0
	for {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("NDJSON line %d: %w", n+1, err)
		}
		n++
		if err := schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			return nil, fmt.Errorf("NDJSON line %d: %w", n, err)
		}
		last = v
	}
	if n == 0 {
		return nil, errors.New("an empty NDJSON stream")
	}
	return last, nil
}

// specCheck is an http.RoundTripper that validates every exchange against
// the OpenAPI document: the response always (its status must be documented),
// the request when the server accepted it (2xx), so the request schemas
// cannot be stricter than the server. It records the statuses each
// operation answered.
type specCheck struct {
	t      *testing.T
	router routers.Router
	mu     sync.Mutex
	seen   map[string][]int // "GET /v1/jobs/{id}" → statuses
}

func newSpecCheck(t *testing.T, apiURL string) (*specCheck, *openapi3.T) {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: apiURL}} // the document names localhost:8080
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &specCheck{t: t, router: r, seen: map[string][]int{}}, doc
}

func (sc *specCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))

	name := req.Method + " " + req.URL.Path
	check := req.Clone(context.Background())
	check.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := sc.router.FindRoute(check)
	if err != nil {
		sc.t.Errorf("%s: not in openapi.json: %v", name, err)
		return resp, nil
	}
	op := req.Method + " " + route.Path
	in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, SkipSettingDefaults: true,
			IncludeResponseStatus: true, MultiError: true}}
	if resp.StatusCode < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			sc.t.Errorf("%s accepted (%d) a request openapi.json refuses: %v\nbody: %.300s", op, resp.StatusCode, err, reqBody)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: in.Options}
	out.SetBodyBytes(body)
	if resp.StatusCode == http.StatusInternalServerError {
		sc.t.Errorf("%s answered 500: %.300s", op, body)
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		sc.t.Errorf("%s answered %d, which openapi.json does not describe: %v\nbody: %.500s", op, resp.StatusCode, err, body)
	}
	sc.mu.Lock()
	if !slices.Contains(sc.seen[op], resp.StatusCode) {
		sc.seen[op] = append(sc.seen[op], resp.StatusCode)
	}
	sc.mu.Unlock()
	return resp, nil
}

// raw sends one request through the checker and returns status and body.
func (sc *specCheck) raw(method, u, key, body string, hdr ...string) (int, http.Header, string) {
	sc.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	hc := &http.Client{Transport: sc, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		sc.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestOpenAPIResponses drives every route of the real api (with a worker)
// through success and error answers and validates each request and answer
// against internal/api/openapi.json with kin-openapi; it fails when a documented
// operation was never exercised, or lacks a success or an error answer.
func TestOpenAPIResponses(t *testing.T) {
	const adminToken = "admin-token-for-openapi"
	e := Start(t, Options{Workers: 1, Concurrency: 3, Env: []string{
		"PAGEFLEET_ADMIN_TOKEN=" + adminToken, "PAGEFLEET_WEBHOOK_RETRY_SCHEDULE=200ms",
		"PAGEFLEET_ARTIFACTS_SECRET=" + artifactSecret}})
	site := NewSite(t, nil)
	rcv := newReceiver(t, secretA, 0)
	sc, doc := newSpecCheck(t, e.APIURL)
	hc := &http.Client{Transport: sc}
	c := client.New(e.APIURL, keyA, client.WithHTTPClient(hc))
	free := client.New(e.APIURL, keyF, client.WithHTTPClient(hc))
	ctx := waitCtx(t, 3*time.Minute)
	render := true
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	wantErr := func(err error, status int) {
		t.Helper()
		var perr *client.Error
		if !errors.As(err, &perr) || perr.Status != status {
			t.Errorf("want a %d problem, got %v", status, err)
		}
	}

	t.Run("operations", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json", "/", "/console/console.js", "/console/console.css", "/console/nope.txt"} {
			sc.raw("GET", e.APIURL+p, "", "")
		}
		sc.raw("GET", e.APIURL+api.AdminQueuesPath, "", "")
		sc.raw("GET", e.APIURL+api.AdminQueuesPath, "", "", "Authorization", "Bearer wrong")
		sc.raw("GET", e.APIURL+api.AdminQueuesPath, "", "", "Authorization", "Bearer "+adminToken)
		sc.raw("GET", e.APIURL+api.AdminQueuesPath+"?token="+adminToken, "", "")
	})

	t.Run("jobs", func(t *testing.T) {
		// A rendered job with every output and an evaluate, screenshot and wait_for step.
		acc, err := c.Interact(ctx, client.Request{URL: site.URL + "/article", Session: &client.SessionRef{ID: "openapi-s1"},
			Output:  []string{"html", "markdown", "text", "links", "screenshot", "metadata", "json"},
			Extract: &client.Extract{Mode: "selectors", Selectors: []byte(`{"title":"h1","cells":{"selector":"td","all":true}}`)},
			Actions: []client.Action{{Type: "wait_for", Selector: "h1"}, {Type: "evaluate", Script: "document.title"}, {Type: "screenshot"},
				{Type: "scroll", To: "bottom"}}})
		must(err)
		j, err := c.Wait(ctx, acc.ID)
		must(err)
		if j.Status != spec.StatusSucceeded {
			t.Fatalf("interact: %+v", j.Error)
		}
		// ?wait= on submit answers 200 with the job; a plain fetch of a 404 page.
		sc.raw("POST", e.APIURL+"/v1/fetch?wait=30s", keyA, fmt.Sprintf(`{"url":%q,"output":["html","text","links","metadata"]}`, site.URL+"/missing"))
		// The capture outputs: network (the page's own requests: any URL)
		// and har; the failed action below keeps diagnostics.
		sc.raw("POST", e.APIURL+"/v1/fetch?wait=30s", keyA, fmt.Sprintf(`{"url":%q,"render_js":true,"output":["html","network","har"],"network":{"url_patterns":["*"]}}`, site.URL+"/js"))
		// A failed job (timeout) and a failed action.
		sc.raw("POST", e.APIURL+"/v1/fetch?wait=30s", keyA, fmt.Sprintf(`{"url":%q,"timeout_ms":1000}`, site.URL+"/slow?d=5s"))
		_, _, failedBody := sc.raw("POST", e.APIURL+"/v1/interact?wait=30s", keyA, fmt.Sprintf(`{"url":%q,"actions":[{"type":"click","selector":"#nope","timeout_ms":300}]}`, site.URL+"/plain"))
		// Its diagnostics' screenshot through the signed link (no key), and
		// with a wrong signature: the capture fields' links are complete.
		var failedJob spec.Job
		must(json.Unmarshal([]byte(failedBody), &failedJob))
		if failedJob.Result == nil || failedJob.Result.Diagnostics == nil || failedJob.Result.Diagnostics.Screenshot == nil {
			t.Fatalf("failed interact job without diagnostics: %.500s", failedBody)
		}
		shot := failedJob.Result.Diagnostics.Screenshot.URL
		sc.raw("GET", shot, "", "")
		sc.raw("GET", strings.Replace(shot, "sig=", "sig=x", 1), "", "")
		// Idempotent replay, with and without wait.
		a1, err := c.Fetch(ctx, client.Request{URL: site.URL + "/plain"}, client.IdempotencyKey("openapi-1"))
		must(err)
		a2, err := c.Fetch(ctx, client.Request{URL: site.URL + "/plain"}, client.IdempotencyKey("openapi-1"))
		must(err)
		if a1.ID != a2.ID || !a2.Replayed {
			t.Errorf("idempotency: %+v %+v", a1, a2)
		}
		sc.raw("POST", e.APIURL+"/v1/fetch?wait=10s", keyA, fmt.Sprintf(`{"url":%q}`, site.URL+"/plain"), "Idempotency-Key", "openapi-1")
		// Errors of submit.
		for _, kind := range []string{"fetch", "interact"} {
			sc.raw("POST", e.APIURL+"/v1/"+kind, keyA, `{"url":`)                                  // 400
			sc.raw("POST", e.APIURL+"/v1/"+kind, keyA, `{"url":"ftp://x","output":["pdf"]}`)       // 422
			sc.raw("POST", e.APIURL+"/v1/"+kind, keyA, `{"url":"https://example.com","bogus":1}`)  // 422
			sc.raw("POST", e.APIURL+"/v1/"+kind, keyA, `{"url":"`+strings.Repeat("a", 1<<20)+`"}`) // 413
			sc.raw("POST", e.APIURL+"/v1/"+kind, keyF, `{"url":"https://example.com","identity":"x","render_js":true,"actions":[{"type":"wait","ms":1}]}`)
		}
		// 429: the free plan allows 5 requests a second.
		limited := false
		for i := 0; i < 30 && !limited; i++ {
			_, err := free.Fetch(ctx, client.Request{URL: site.URL + "/plain"})
			var perr *client.Error
			limited = errors.As(err, &perr) && perr.Status == http.StatusTooManyRequests
		}
		if !limited {
			t.Error("no 429 for the free tenant after 30 quick submissions")
		}

		_, err = c.Job(ctx, "job_doesnotexist")
		wantErr(err, 404)
		sc.raw("GET", e.APIURL+"/v1/jobs/"+acc.ID+"?wait=abc", keyA, "")
		sc.raw("GET", e.APIURL+"/v1/jobs/"+acc.ID+"?wait=1s", keyA, "")
		_, err = c.Jobs(ctx, client.ListOptions{Limit: 3, Status: "succeeded"})
		must(err)
		p, err := c.Jobs(ctx, client.ListOptions{Limit: 2})
		must(err)
		_, err = c.Jobs(ctx, client.ListOptions{Cursor: p.NextCursor})
		must(err)
		_, err = c.Jobs(ctx, client.ListOptions{Status: "done"})
		wantErr(err, 422)
		sc.raw("GET", e.APIURL+"/v1/jobs?limit=0", keyA, "")

		// Cancel a running job, then again (409), and an unknown one.
		slow, err := c.Fetch(ctx, client.Request{URL: site.URL + "/slow?d=20s", RenderJS: &render})
		must(err)
		_, err = c.Cancel(ctx, slow.ID)
		must(err)
		_, err = c.Cancel(ctx, slow.ID)
		wantErr(err, 409)
		_, err = c.Cancel(ctx, "job_doesnotexist")
		wantErr(err, 404)

		// Deliveries of a job with a webhook.
		hooked, err := c.Fetch(ctx, client.Request{URL: site.URL + "/plain", Webhook: &client.WebhookConfig{URL: rcv.URL + "/hook"}})
		must(err)
		_, err = c.Wait(ctx, hooked.ID)
		must(err)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			d, err := c.JobDeliveries(ctx, hooked.ID)
			must(err)
			if len(d) > 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, err = c.JobDeliveries(ctx, "job_doesnotexist")
		wantErr(err, 404)
	})

	t.Run("batches", func(t *testing.T) {
		b, err := c.CreateBatch(ctx, client.BatchRequest{
			URLs:     []string{site.URL + "/plain", site.URL + "/missing", site.URL + "/article"},
			Template: &client.Request{Output: []string{"markdown", "links"}},
			Webhook:  &client.WebhookConfig{URL: rcv.URL + "/batch", Metadata: []byte(`{"run":"openapi"}`)},
		}, client.IdempotencyKey("openapi-batch"))
		must(err)
		again, err := c.CreateBatch(ctx, client.BatchRequest{URLs: []string{site.URL + "/plain"}}, client.IdempotencyKey("openapi-batch"))
		must(err)
		if again.ID != b.ID {
			t.Errorf("idempotent batch: %s != %s", again.ID, b.ID)
		}
		done, err := c.WaitBatch(ctx, b.ID)
		must(err)
		if done.Status != client.BatchCompleted || done.Succeeded != 3 || done.Total != 3 {
			t.Errorf("batch: %+v", done)
		}
		p, err := c.BatchJobs(ctx, b.ID, client.ListOptions{Limit: 2})
		must(err)
		_, err = c.BatchJobs(ctx, b.ID, client.ListOptions{Cursor: p.NextCursor})
		must(err)
		sc.raw("GET", e.APIURL+"/v1/batches/"+b.ID+"/jobs?cursor=x", keyA, "")
		n := 0
		for j, err := range c.BatchResults(ctx, b.ID) {
			must(err)
			if j.BatchID != b.ID || j.Result == nil {
				t.Errorf("streamed job: %+v", j)
			}
			n++
		}
		if n != 3 {
			t.Errorf("streamed %d jobs, want 3", n)
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			d, err := c.BatchDeliveries(ctx, b.ID)
			must(err)
			if len(d) >= 4 { // three batch.page, one batch.completed
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, err = c.CancelBatch(ctx, b.ID)
		wantErr(err, 409)

		// A crawl, and a batch cancelled while it runs.
		depth := 1
		crawl, err := c.CreateBatch(ctx, client.BatchRequest{Crawl: &client.Crawl{StartURL: site.URL + "/article", MaxDepth: &depth, MaxPages: 3,
			Include: []string{"^/"}, Exclude: []string{"^/nav"}}})
		must(err)
		slow, err := c.CreateBatch(ctx, client.BatchRequest{URLs: []string{site.URL + "/slow?d=10s&n=1", site.URL + "/slow?d=10s&n=2", site.URL + "/slow?d=10s&n=3",
			site.URL + "/slow?d=10s&n=4", site.URL + "/slow?d=10s&n=5"}})
		must(err)
		_, err = c.CancelBatch(ctx, slow.ID)
		must(err)
		_, err = c.WaitBatch(ctx, crawl.ID)
		must(err)
		_, err = c.Batch(ctx, crawl.ID)
		must(err)
		_, err = c.Batches(ctx, client.ListOptions{Limit: 2})
		must(err)
		sc.raw("GET", e.APIURL+"/v1/batches?cursor=abc", keyA, "")
		sc.raw("GET", e.APIURL+"/v1/batches?limit=0", keyA, "")

		// Errors.
		for _, id := range []string{"bat_nope", "job_1"} {
			_, err = c.Batch(ctx, id)
			wantErr(err, 404)
			_, err = c.CancelBatch(ctx, id)
			wantErr(err, 404)
			_, err = c.BatchJobs(ctx, id, client.ListOptions{})
			wantErr(err, 404)
			_, err = c.BatchDeliveries(ctx, id)
			wantErr(err, 404)
		}
		sc.raw("POST", e.APIURL+"/v1/batches", keyA, `{"urls":[`)
		sc.raw("POST", e.APIURL+"/v1/batches", keyA, fmt.Sprintf(`{"urls":[%q],"crawl":{"start_url":%q}}`, site.URL, site.URL))
		sc.raw("POST", e.APIURL+"/v1/batches", keyA, fmt.Sprintf(`{"urls":[%q],"template":{"url":"https://x.example","session":{"id":"s"}}}`, site.URL))
		sc.raw("POST", e.APIURL+"/v1/batches", keyF, fmt.Sprintf(`{"urls":[%q],"template":{"identity":"de-desktop"}}`, site.URL))
		sc.raw("POST", e.APIURL+"/v1/batches", keyA, `{"urls":["`+strings.Repeat("a", 33<<20)+`"]}`)
		limited := false
		for i := 0; i < 30 && !limited; i++ {
			_, err := free.CreateBatch(ctx, client.BatchRequest{URLs: []string{site.URL + "/plain?free=" + fmt.Sprint(i)}})
			var perr *client.Error
			limited = errors.As(err, &perr) && perr.Status == http.StatusTooManyRequests
		}
		if !limited {
			t.Error("no 429 for the free tenant after 30 quick batches")
		}
	})

	t.Run("sessions", func(t *testing.T) {
		_, err := c.Sessions(ctx, client.ListOptions{Limit: 10})
		must(err)
		sc.raw("GET", e.APIURL+"/v1/sessions?limit=5000", keyA, "")
		_, err = c.Session(ctx, "openapi-s1", true)
		must(err)
		_, err = c.Session(ctx, "openapi-s1", false)
		must(err)
		_, err = c.Session(ctx, "no-such-session", false)
		wantErr(err, 404)
		must(c.DeleteSession(ctx, "openapi-s1"))
		wantErr(c.DeleteSession(ctx, "openapi-s1"), 404)
	})

	t.Run("identities", func(t *testing.T) {
		id, err := c.PutIdentity(ctx, "de-desktop", client.Identity{UserAgent: "Mozilla/5.0 (X11; Linux x86_64) openapi", Locale: "de-DE",
			Timezone: "Europe/Berlin", Viewport: &client.Viewport{Width: 1280, Height: 800}, Headers: map[string]string{"x-test": "1"}})
		must(err)
		if id.AcceptLanguage == "" || id.Name != "de-desktop" {
			t.Errorf("identity: %+v", id)
		}
		_, err = c.PutIdentity(ctx, "bare", client.Identity{})
		must(err)
		_, err = c.PutIdentity(ctx, "bad", client.Identity{Timezone: "Mars/Olympus", Viewport: &client.Viewport{Width: 1}})
		wantErr(err, 422)
		sc.raw("PUT", e.APIURL+"/v1/identities/bad", keyA, `{"locale":`)
		sc.raw("PUT", e.APIURL+"/v1/identities/bad", keyA, `{"user_agent":"`+strings.Repeat("a", 100<<10)+`"}`)
		_, err = free.PutIdentity(ctx, "x", client.Identity{})
		wantErr(err, 403)
		_, err = c.Identity(ctx, "de-desktop")
		must(err)
		_, err = c.Identity(ctx, "nope")
		wantErr(err, 404)
		_, err = free.Identity(ctx, "nope")
		wantErr(err, 403)
		_, err = c.Identities(ctx, client.ListOptions{Limit: 1})
		must(err)
		_, err = free.Identities(ctx, client.ListOptions{})
		wantErr(err, 403)
		sc.raw("GET", e.APIURL+"/v1/identities?limit=-1", keyA, "")
		sc.raw("POST", e.APIURL+"/v1/fetch?wait=30s", keyA, fmt.Sprintf(`{"url":%q,"identity":"de-desktop","render_js":true}`, site.URL+"/plain"))
		sc.raw("POST", e.APIURL+"/v1/fetch", keyA, fmt.Sprintf(`{"url":%q,"identity":"nope"}`, site.URL+"/plain"))
		must(c.DeleteIdentity(ctx, "bare"))
		wantErr(c.DeleteIdentity(ctx, "bare"), 404)
		wantErr(free.DeleteIdentity(ctx, "bare"), 403)
	})

	t.Run("map", func(t *testing.T) {
		m, err := c.Map(ctx, client.MapRequest{URL: site.URL + "/article", Sitemap: "skip", Limit: 10})
		must(err)
		if len(m.URLs) == 0 {
			t.Errorf("map of the article: %+v", m)
		}
		_, err = c.Map(ctx, client.MapRequest{URL: "ftp://nope"})
		wantErr(err, 422)
		_, err = c.Map(ctx, client.MapRequest{URL: "http://" + freeAddr(t) + "/"}) // nothing listens
		wantErr(err, 502)
		sc.raw("POST", e.APIURL+"/v1/map", keyA, `{"url":`)
		sc.raw("POST", e.APIURL+"/v1/map", keyA, `{"url":"`+strings.Repeat("a", 2<<20)+`"}`)
	})

	t.Run("freshness", func(t *testing.T) {
		// A cache hit answers 200 with the job; tracked results carry
		// result.change; a tracked batch its changes.
		hour := int64(3600000)
		req := client.Request{URL: site.URL + "/article?openapi-cache=1", Output: []string{"markdown"}, MaxAgeMs: &hour,
			ChangeTracking: &client.ChangeTracking{Tag: "openapi"}}
		a, err := c.Fetch(ctx, req)
		must(err)
		_, err = c.Wait(ctx, a.ID)
		must(err)
		hit, err := c.Fetch(ctx, req)
		must(err)
		if hit.Job == nil || hit.Job.Result.Cache == nil || !hit.Job.Result.Cache.Hit || hit.Job.Result.Change == nil {
			t.Errorf("cache hit: %+v", hit)
		}
		zero := int64(0)
		sc.raw("POST", e.APIURL+"/v1/fetch?wait=30s", keyA, fmt.Sprintf(`{"url":%q,"max_age_ms":0,"store_in_cache":true}`, site.URL+"/plain"))
		sc.raw("POST", e.APIURL+"/v1/fetch", keyA, fmt.Sprintf(`{"url":%q,"max_age_ms":-1}`, site.URL+"/plain"))
		b, err := c.CreateBatch(ctx, client.BatchRequest{URLs: []string{site.URL + "/plain", site.URL + "/article"},
			Template: &client.Request{MaxAgeMs: &zero, ChangeTracking: &client.ChangeTracking{Tag: "openapi-batch"}},
			Webhook:  &client.WebhookConfig{URL: rcv.URL + "/changed", OnlyChanged: true}})
		must(err)
		done, err := c.WaitBatch(ctx, b.ID)
		must(err)
		if done.Changes == nil || done.Changes.New != 2 {
			t.Errorf("tracked batch: %+v", done.Changes)
		}
		sc.raw("POST", e.APIURL+"/v1/batches", keyA, fmt.Sprintf(`{"urls":[%q],"webhook":{"url":%q,"only_changed":true}}`, site.URL, rcv.URL))
	})

	t.Run("schedules", func(t *testing.T) {
		s, err := c.CreateSchedule(ctx, client.ScheduleRequest{Cron: "*/2 * * * * *", Timezone: "Europe/Berlin",
			Batch:   &client.BatchRequest{URLs: []string{site.URL + "/plain"}},
			Webhook: &client.WebhookConfig{URL: rcv.URL + "/schedule", Metadata: []byte(`{"k":"v"}`)}}, client.IdempotencyKey("openapi-schedule"))
		must(err)
		again, err := c.CreateSchedule(ctx, client.ScheduleRequest{Cron: "* * * * *", Fetch: &client.Request{URL: site.URL}}, client.IdempotencyKey("openapi-schedule"))
		must(err)
		if again.ID != s.ID {
			t.Errorf("idempotent schedule: %s != %s", again.ID, s.ID)
		}
		f, err := c.CreateSchedule(ctx, client.ScheduleRequest{Cron: "@hourly", Fetch: &client.Request{URL: site.URL + "/plain"}, Paused: true})
		must(err)
		_, err = c.Schedule(ctx, s.ID)
		must(err)
		p, err := c.Schedules(ctx, client.ListOptions{Limit: 1})
		must(err)
		_, err = c.Schedules(ctx, client.ListOptions{Cursor: p.NextCursor})
		must(err)
		sc.raw("GET", e.APIURL+"/v1/schedules?cursor=abc", keyA, "")
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			runs, err := c.ScheduleRuns(ctx, s.ID, client.ListOptions{Limit: 1})
			must(err)
			if len(runs.Data) > 0 {
				if runs.Data[0].BatchID != "" {
					_, err := c.Batch(ctx, runs.Data[0].BatchID)
					must(err)
				}
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		sc.raw("GET", e.APIURL+"/v1/schedules/"+s.ID+"/runs?cursor=x", keyA, "")
		paused := true
		_, err = c.UpdateSchedule(ctx, s.ID, client.ScheduleUpdate{Paused: &paused})
		must(err)
		cron := "0 9 * * 1-5"
		_, err = c.UpdateSchedule(ctx, f.ID, client.ScheduleUpdate{Cron: &cron, Paused: new(bool)})
		must(err)
		bad := "every day"
		_, err = c.UpdateSchedule(ctx, s.ID, client.ScheduleUpdate{Cron: &bad})
		wantErr(err, 422)
		sc.raw("PATCH", e.APIURL+"/v1/schedules/"+s.ID, keyA, `{"paused":`)
		sc.raw("PATCH", e.APIURL+"/v1/schedules/"+s.ID, keyA, `{"bogus":1}`)
		sc.raw("PATCH", e.APIURL+"/v1/schedules/"+s.ID, keyA, `{"timezone":"`+strings.Repeat("a", 2<<20)+`"}`)
		// Errors of create.
		sc.raw("POST", e.APIURL+"/v1/schedules", keyA, `{"cron":`)
		sc.raw("POST", e.APIURL+"/v1/schedules", keyA, `{"cron":"* * * * *"}`)
		sc.raw("POST", e.APIURL+"/v1/schedules", keyA, fmt.Sprintf(`{"cron":"CRON_TZ=UTC * * * * *","timezone":"Mars/Base","fetch":{"url":%q}}`, site.URL))
		sc.raw("POST", e.APIURL+"/v1/schedules", keyA, fmt.Sprintf(`{"cron":"* * * * *","fetch":{"url":%q,"bogus":1},"batch":{"urls":[]}}`, site.URL))
		sc.raw("POST", e.APIURL+"/v1/schedules", keyA, `{"cron":"* * * * *","batch":{"urls":["ftp://x"],"template":{"output":["pdf"]}}}`)
		sc.raw("POST", e.APIURL+"/v1/schedules", keyF, fmt.Sprintf(`{"cron":"* * * * *","fetch":{"url":%q,"identity":"de-desktop"}}`, site.URL))
		sc.raw("POST", e.APIURL+"/v1/schedules", keyA, `{"cron":"`+strings.Repeat("a", 33<<20)+`"}`)
		for _, id := range []string{"sch_nope", "job_1"} {
			_, err = c.Schedule(ctx, id)
			wantErr(err, 404)
			_, err = c.UpdateSchedule(ctx, id, client.ScheduleUpdate{Paused: &paused})
			wantErr(err, 404)
			_, err = c.ScheduleRuns(ctx, id, client.ListOptions{})
			wantErr(err, 404)
			wantErr(c.DeleteSchedule(ctx, id), 404)
		}
		must(c.DeleteSchedule(ctx, s.ID))
		must(c.DeleteSchedule(ctx, f.ID))
	})

	t.Run("artifacts", func(t *testing.T) {
		acc, err := c.Fetch(ctx, client.Request{URL: site.URL + "/article", RenderJS: &render, Output: []string{"screenshot", "pdf"},
			Screenshot: &client.ScreenshotOptions{Selector: "h1", Format: "jpeg", Quality: 50}, PDF: &client.PDFOptions{Format: "Letter", Landscape: true},
			Artifacts: client.ArtifactsURL})
		must(err)
		j, err := c.Wait(ctx, acc.ID)
		must(err)
		if j.Status != spec.StatusSucceeded {
			t.Fatalf("artifacts job: %+v", j.Error)
		}
		sc.raw("GET", e.APIURL+"/v1/jobs/"+acc.ID, keyA, "")
		for _, a := range j.Result.Artifacts {
			if code, _, _ := sc.raw("GET", a.URL, "", ""); code != 200 {
				t.Errorf("GET %s: %d", a.URL, code)
			}
			b, err := c.DownloadArtifact(ctx, a)
			if err != nil || hexSum(b) != a.SHA256 {
				t.Errorf("DownloadArtifact %s: %d bytes, %v", a.ID, len(b), err)
			}
		}
		a := j.Result.Artifacts[spec.ArtifactPDF]
		sc.raw("GET", strings.Replace(a.URL, "sig=", "sig=x", 1), "", "")              // 403
		sc.raw("GET", relink(t, a.URL, time.Now().Add(-time.Minute)), "", "")          // 410
		sc.raw("GET", e.APIURL+"/v1/artifacts/job_nope~x.png?expires=1&sig=x", "", "") // 403
		sc.raw("GET", e.APIURL+"/v1/artifacts/nothing", "", "")                        // 404
		_, err = c.DownloadArtifact(ctx, client.Artifact{ID: a.ID, URL: relink(t, a.URL, time.Now().Add(-time.Minute))})
		wantErr(err, http.StatusGone)
	})

	t.Run("unauthorized", func(t *testing.T) {
		// Every /v1 operation answers 401 without a key, and with a wrong one.
		for path, item := range doc.Paths.Map() {
			if !strings.HasPrefix(path, "/v1/") {
				continue
			}
			p := strings.NewReplacer("{id}", "x1", "{name}", "x1").Replace(path)
			if strings.HasPrefix(path, "/v1/jobs/{id}") {
				p = strings.Replace(path, "{id}", "job_x1", 1)
			}
			for method := range item.Operations() {
				body := ""
				if method == "POST" || method == "PUT" || method == "PATCH" {
					body = "{}"
				}
				sc.raw(method, e.APIURL+p, "", body)
				sc.raw(method, e.APIURL+p, "wrong-key", body)
			}
		}
	})

	t.Run("coverage", func(t *testing.T) {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		for path, item := range doc.Paths.Map() {
			for method, op := range item.Operations() {
				name := method + " " + path
				got := sc.seen[name]
				ok, bad := false, false
				for _, s := range got {
					ok = ok || s < 400
					bad = bad || s >= 400
				}
				hasErrors := false
				for code := range op.Responses.Map() {
					hasErrors = hasErrors || (code >= "4" && code != "500" && code != "503")
				}
				switch {
				case len(got) == 0:
					t.Errorf("%s was never called", name)
				case !ok:
					t.Errorf("%s never answered a success (%v)", name, got)
				case hasErrors && !bad:
					t.Errorf("%s never answered an error (%v)", name, got)
				}
				var missing []string
				for code := range op.Responses.Map() {
					if code != "500" && code != "503" && !slices.ContainsFunc(got, func(s int) bool { return fmt.Sprint(s) == code }) {
						missing = append(missing, code)
					}
				}
				slices.Sort(missing)
				t.Logf("%-36s answered %v; documented, not produced: %v", name, got, missing)
			}
		}
	})

	t.Run("validator is live", func(t *testing.T) {
		// A drifted answer must fail validation: a job without its status.
		req, _ := http.NewRequest("GET", e.APIURL+"/v1/jobs/job_1", nil)
		route, params, err := sc.router.FindRoute(req)
		must(err)
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: 200,
			Header: http.Header{"Content-Type": {"application/json"}}, Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		out.SetBodyBytes([]byte(`{"id":"job_1","kind":"fetch","created_at":"2026-01-01T00:00:00Z","attempts":1}`))
		if openapi3filter.ValidateResponse(context.Background(), out) == nil {
			t.Error("a job without status passed validation")
		}
		out.Status = 418
		out.SetBodyBytes([]byte(`{}`))
		if openapi3filter.ValidateResponse(context.Background(), out) == nil {
			t.Error("an undocumented status passed validation")
		}
	})
}

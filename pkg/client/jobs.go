package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// The request and job types are those of package spec, named here so that
// a program needs to import only this package.
type (
	// Request is the body of Fetch and Interact, and a batch's template.
	Request = spec.Request
	// SessionRef names a persistent session.
	SessionRef = spec.SessionRef
	// Action is one step of an interact job.
	Action = spec.Action
	// Extract asks for structured data in the result's json.
	Extract = spec.Extract
	// WebhookConfig asks for event deliveries to a URL.
	WebhookConfig = spec.Webhook
	// Job is a job's record: status, timestamps, result or error.
	Job = spec.Job
	// Result is what a job produced.
	Result = spec.Result
	// JobError is the error of a failed job.
	JobError = spec.Error
	// FieldError names one invalid field of a request.
	FieldError = spec.FieldError
	// Delivery is one attempt to deliver a webhook event.
	Delivery = spec.Delivery
)

// Accepted is the answer to a job submission (id, kind, status, created_at
// and, for a session job, its session), with what its headers said.
type Accepted struct {
	spec.Accepted
	// Location is the job's URL path, /v1/jobs/{id}.
	Location string `json:"-"`
	// Replayed is true when an Idempotency-Key repeated an earlier call:
	// the job is the one that call created.
	Replayed bool `json:"-"`
	// Job is the whole job when it ended at submission: a fetch with
	// MaxAgeMs served from the result cache (Job.Result.Cache.Hit).
	Job *Job `json:"-"`
}

// Fetch submits a fetch job: a plain HTTP fetch, or a page rendered in
// Chrome with RenderJS.
func (c *Client) Fetch(ctx context.Context, req Request, opts ...CallOption) (*Accepted, error) {
	return c.submit(ctx, spec.KindFetch, req, opts)
}

// Interact submits an interact job: a page driven through req.Actions.
func (c *Client) Interact(ctx context.Context, req Request, opts ...CallOption) (*Accepted, error) {
	return c.submit(ctx, spec.KindInteract, req, opts)
}

func (c *Client) submit(ctx context.Context, kind string, req Request, opts []CallOption) (*Accepted, error) {
	var j Job
	resp, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/" + kind, body: req, header: createHeader(opts)}, &j)
	if err != nil {
		return nil, err
	}
	a := Accepted{Accepted: spec.Accepted{ID: j.ID, Kind: j.Kind, Status: j.Status, CreatedAt: j.CreatedAt, Session: j.Session}}
	if resp.StatusCode == http.StatusOK {
		a.Job = &j
	}
	a.Location = resp.Header.Get("Location")
	a.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	return &a, nil
}

// Job returns the job with its result (or error).
func (c *Client) Job(ctx context.Context, id string) (*Job, error) {
	var j Job
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/jobs/%s", id)}, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// Jobs returns a page of the tenant's jobs, newest first; opts.Status
// filters by status.
func (c *Client) Jobs(ctx context.Context, opts ListOptions) (*Page[Job], error) {
	var p Page[Job]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs", query: opts.query()}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Cancel cancels a queued or running job and returns it. A job that already
// ended answers 409 (an *Error with Code "job_ended").
func (c *Client) Cancel(ctx context.Context, id string) (*Job, error) {
	var j Job
	if _, err := c.do(ctx, request{method: http.MethodDelete, path: pathf("/v1/jobs/%s", id)}, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// JobDeliveries lists the webhook delivery attempts of a job.
func (c *Client) JobDeliveries(ctx context.Context, id string) ([]Delivery, error) {
	var p Page[Delivery]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/jobs/%s/deliveries", id)}, &p); err != nil {
		return nil, err
	}
	return p.Data, nil
}

// maxPoll is the longest ?wait= one request of Wait asks for; the server
// holds an answer for at most 60 s.
const maxPoll = 50 * time.Second

// Wait returns the job once it has ended (succeeded, failed or cancelled).
// It long-polls GET /v1/jobs/{id}?wait=, so it learns of the end at once,
// and keeps asking until the job ends or ctx is done; then it returns the
// job as last seen (nil if never) with ctx's error. An answer of 429 or 503
// is retried after its Retry-After; other errors end the wait.
func (c *Client) Wait(ctx context.Context, id string) (*Job, error) {
	var last *Job
	for {
		if err := ctx.Err(); err != nil {
			return last, err
		}
		q := url.Values{"wait": {c.pollFor(ctx).String()}}
		var j Job
		_, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/jobs/%s", id), query: q}, &j)
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			var e *Error
			if errors.As(err, &e) && e.Temporary() {
				if err := sleep(ctx, max(e.RetryAfter, 250*time.Millisecond)); err != nil {
					return last, err
				}
				continue
			}
			return last, err
		}
		last = &j
		if spec.Terminal(j.Status) {
			return last, nil
		}
	}
}

// pollFor is how long one long-poll asks the server to hold the answer:
// maxPoll, or less when ctx ends sooner or the HTTP client has a shorter
// timeout (at least a second).
func (c *Client) pollFor(ctx context.Context) time.Duration {
	d := maxPoll
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl).Truncate(time.Second))
	}
	if t := c.hc.Timeout; t > 0 {
		d = min(d, (t - 2*time.Second).Truncate(time.Second))
	}
	return max(d, time.Second)
}

// Proxy types of a job and its result.
type (
	// ProxyChoice is a job's "proxy": a pool of the tenant's upstream
	// proxies, or none.
	ProxyChoice = spec.ProxyChoice
	// ProxyRef names the proxy a job or session used.
	ProxyRef = spec.ProxyRef
	// Try is one entry of Result.AttemptsLog.
	Try = spec.Try
	// Blocked is Result.Blocked.
	Blocked = spec.Blocked
)

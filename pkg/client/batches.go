package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"time"
)

// Batch statuses.
const (
	BatchRunning   = "running"
	BatchCompleted = "completed"
	BatchCancelled = "cancelled"
)

// Batch kinds.
const (
	BatchKindURLs  = "urls"
	BatchKindCrawl = "crawl"
)

// BatchRequest is the body of CreateBatch: a list of URLs (at most 100 000,
// or the tenant's batch size) or a crawl, each page fetched with the
// template's settings.
type BatchRequest struct {
	URLs  []string `json:"urls,omitempty"`
	Crawl *Crawl   `json:"crawl,omitempty"`
	// Template holds the fetch fields every job of the batch uses. Its URL,
	// Session and Webhook must be left empty: each job takes its URL from
	// the batch, batch jobs run in parallel, and the batch has its own
	// webhook.
	Template *Request `json:"template,omitempty"`
	// Webhook receives batch.page for each job and batch.completed.
	Webhook *WebhookConfig `json:"webhook,omitempty"`
}

// Crawl discovers the pages of a batch by following links from StartURL
// (depth 0), each normalised URL once.
type Crawl struct {
	StartURL string `json:"start_url"`
	// MaxDepth is how many links away from the start page the crawl goes:
	// 0 fetches the start page only; nil takes the default (3).
	MaxDepth *int `json:"max_depth,omitempty"`
	// MaxPages bounds the pages, the start page included (default 1000).
	MaxPages int `json:"max_pages,omitempty"`
	// Include: when given, a URL's path must match one of these regular
	// expressions; Exclude: it must match none.
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// SameOrigin keeps the crawl on the start URL's origin (nil: true).
	SameOrigin *bool `json:"same_origin,omitempty"`
	// RespectRobotsTxt skips the paths robots.txt disallows for "*".
	RespectRobotsTxt bool `json:"respect_robots_txt,omitempty"`
}

// Batch is a batch's progress; the counts add up to Total, which grows while
// a crawl discovers pages.
type Batch struct {
	ID string `json:"id"`
	// Kind is "urls" or "crawl".
	Kind       string     `json:"kind"`
	Status     string     `json:"status"`
	Total      int        `json:"total"`
	Queued     int        `json:"queued"`
	Running    int        `json:"running"`
	Succeeded  int        `json:"succeeded"`
	Failed     int        `json:"failed"`
	Cancelled  int        `json:"cancelled"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// Crawl is the crawl's settings, defaults filled in (crawls only).
	Crawl *Crawl `json:"crawl,omitempty"`
}

// Done reports whether the batch has ended (completed or cancelled).
func (b *Batch) Done() bool { return b.Status == BatchCompleted || b.Status == BatchCancelled }

// CreateBatch submits a batch. The answer holds its id, kind, status
// "running", the total known so far (1 for a crawl, which grows as it
// discovers pages) and its creation time.
func (c *Client) CreateBatch(ctx context.Context, req BatchRequest, opts ...CallOption) (*Batch, error) {
	var b Batch
	if _, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/batches", body: req, header: createHeader(opts)}, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// Batch returns a batch's progress.
func (c *Client) Batch(ctx context.Context, id string) (*Batch, error) {
	var b Batch
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/batches/%s", id)}, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// Batches returns a page of the tenant's batches.
func (c *Client) Batches(ctx context.Context, opts ListOptions) (*Page[Batch], error) {
	var p Page[Batch]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/batches", query: opts.query()}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// BatchJobs returns a page of a batch's jobs.
func (c *Client) BatchJobs(ctx context.Context, id string, opts ListOptions) (*Page[Job], error) {
	var p Page[Job]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/batches/%s/jobs", id), query: opts.query()}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// BatchResults streams every job of a batch, as they are at the time of the
// call, in one request (the NDJSON form of the batch's job list). It yields
// a non-nil error once, last, when the call or the stream fails; breaking
// out of the loop closes the stream.
//
//	for job, err := range c.BatchResults(ctx, id) {
//		if err != nil { return err }
//		…
//	}
func (c *Client) BatchResults(ctx context.Context, id string) iter.Seq2[Job, error] {
	return func(yield func(Job, error) bool) {
		resp, err := c.send(ctx, request{method: http.MethodGet, path: pathf("/v1/batches/%s/jobs", id), accept: "application/x-ndjson"})
		if err != nil {
			yield(Job{}, err)
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 256<<20) // a line holds a whole result
		for sc.Scan() {
			line := sc.Bytes()
			if len(line) == 0 {
				continue
			}
			var j Job
			if err := json.Unmarshal(line, &j); err != nil {
				yield(Job{}, fmt.Errorf("batch %s jobs: %w", id, err))
				return
			}
			if !yield(j, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(Job{}, fmt.Errorf("batch %s jobs: %w", id, err))
		}
	}
}

// CancelBatch cancels the jobs of a batch that have not run and returns the
// batch.
func (c *Client) CancelBatch(ctx context.Context, id string) (*Batch, error) {
	var b Batch
	if _, err := c.do(ctx, request{method: http.MethodDelete, path: pathf("/v1/batches/%s", id)}, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// BatchDeliveries lists the webhook delivery attempts of a batch.
func (c *Client) BatchDeliveries(ctx context.Context, id string) ([]Delivery, error) {
	var p Page[Delivery]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/batches/%s/deliveries", id)}, &p); err != nil {
		return nil, err
	}
	return p.Data, nil
}

// WaitBatch returns the batch once it has ended (completed or cancelled),
// polling its progress with growing pauses (up to 2 s), or the batch as
// last seen with ctx's error when ctx is done first.
func (c *Client) WaitBatch(ctx context.Context, id string) (*Batch, error) {
	var last *Batch
	pause := 100 * time.Millisecond
	for {
		b, err := c.Batch(ctx, id)
		switch {
		case err == nil:
			last = b
			if b.Done() {
				return b, nil
			}
		case ctx.Err() != nil:
			return last, ctx.Err()
		default:
			var e *Error
			if !errors.As(err, &e) || !e.Temporary() {
				return last, err
			}
			pause = max(pause, e.RetryAfter)
		}
		if err := sleep(ctx, pause); err != nil {
			return last, err
		}
		pause = min(pause*3/2, 2*time.Second)
	}
}

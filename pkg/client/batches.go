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

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Batch statuses.
const (
	BatchRunning   = spec.BatchRunning
	BatchCompleted = spec.BatchCompleted
	BatchCancelled = spec.BatchCancelled
)

// Batch kinds.
const (
	BatchKindURLs  = spec.BatchKindURLs
	BatchKindCrawl = spec.BatchKindCrawl
)

// The batch types are those of package spec.
type (
	// BatchRequest is the body of CreateBatch: a list of URLs (at most
	// 100 000, or the tenant's batch size) or a crawl, each page fetched
	// with the template's settings.
	BatchRequest = spec.BatchRequest
	// Crawl discovers the pages of a batch by following links.
	Crawl = spec.Crawl
	// Batch is a batch's progress; the counts add up to Total, which grows
	// while a crawl discovers pages.
	Batch = spec.Batch
)

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

// MapRequest is the body of POST /v1/map.
type MapRequest = spec.MapRequest

// MapResult is the answer of POST /v1/map.
type MapResult = spec.MapResult

// MapURL is one URL of a MapResult.
type MapURL = spec.MapURL

// Map lists a site's URLs from its sitemaps and start page, without
// fetching the pages (POST /v1/map). It answers within the request.
func (c *Client) Map(ctx context.Context, req MapRequest) (*MapResult, error) {
	var m MapResult
	if _, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/map", body: req}, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

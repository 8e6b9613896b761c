package client

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Error is an error answer of the API: its RFC 9457 problem document, with
// the HTTP status. Get it with errors.As:
//
//	var perr *client.Error
//	if errors.As(err, &perr) && perr.Status == http.StatusUnprocessableEntity {
//		for _, f := range perr.Errors { fmt.Println(f.Field, f.Message) }
//	}
type Error struct {
	// Problem is the problem document: Type, Title, Status, Detail, Code
	// and Errors (each invalid field by its JSON path, for 422).
	spec.Problem
	// RetryAfter is the Retry-After header of a 429 or 503 answer.
	RetryAfter time.Duration `json:"-"`
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pagefleet: %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

// Temporary reports whether the same call may succeed later (429, 503).
func (e *Error) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

// errorFrom reads a non-2xx answer into an *Error. An answer that is not a
// problem document (a proxy's error page) keeps its status and a short
// excerpt of its body as Detail.
func errorFrom(resp *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &Error{}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/problem+json" || mt == "application/json" {
		_ = json.Unmarshal(body, e)
	}
	if e.Status == 0 {
		e.Status = resp.StatusCode
	}
	if e.Title == "" {
		e.Title = http.StatusText(resp.StatusCode)
	}
	if e.Code == "" && e.Detail == "" {
		d := strings.TrimSpace(string(body))
		if len(d) > 200 {
			d = d[:200] + "…"
		}
		e.Detail = d
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			e.RetryAfter = max(time.Until(t), 0)
		}
	}
	return e
}

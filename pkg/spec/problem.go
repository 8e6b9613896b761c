package spec

import "time"

// Problem is an RFC 9457 problem document, the body of every error answer
// (application/problem+json).
type Problem struct {
	// Type is the problem type URI.
	Type string `json:"type"`
	// Title is the HTTP status text.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
	// Code names the problem: unauthorized, not_found, validation_failed,
	// malformed_json, body_too_large, rate_limited, plan_required,
	// job_ended, extraction_unavailable, unavailable, …
	Code string `json:"code"`
	// Errors names each invalid field by its JSON path (422).
	Errors []FieldError `json:"errors,omitempty"`
}

// Accepted is the 202 answer to a job submission.
type Accepted struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	// Session is the job's session, for a job that names one (updated is
	// false until the job ran).
	Session *SessionInfo `json:"session,omitempty"`
}

// List is one page of a list: {"data":[…],"next_cursor":"…"}, next_cursor
// empty on the last page.
type List[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor"`
}

package spec

import (
	"encoding/json"
	"time"
)

// Job statuses.
const (
	StatusQueued    = "queued"
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Terminal reports whether a status is final.
func Terminal(status string) bool {
	return status == StatusSucceeded || status == StatusFailed || status == StatusCancelled
}

// Job is the job object of GET /v1/jobs/{id}.
type Job struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`  // null until it runs
	FinishedAt *time.Time `json:"finished_at"` // null until it ends
	Attempts   int        `json:"attempts"`
	URL        string     `json:"url,omitempty"`
	BatchID    string     `json:"batch_id,omitempty"`
	// DiscoveredBy says how a crawl found the page: "start", "link" or
	// "sitemap".
	DiscoveredBy string `json:"discovered_by,omitempty"`
	// Lastmod is the page's <lastmod> in the sitemap that listed it.
	Lastmod string       `json:"lastmod,omitempty"`
	Session *SessionInfo `json:"session,omitempty"`
	Result  *Result      `json:"result,omitempty"`
	Error   *Error       `json:"error,omitempty"`

	// ScheduleID and ScheduledAt (freshness) name the schedule run that
	// created the job.
	ScheduleID  string     `json:"schedule_id,omitempty"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
}

// SessionInfo is the job's "session" field.
type SessionInfo struct {
	ID      string `json:"id"`
	Updated bool   `json:"updated"`
}

// Result is what a job produced.
type Result struct {
	URL        string            `json:"url"`
	FinalURL   string            `json:"final_url,omitempty"`
	StatusCode int               `json:"status_code,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	HTML       *string           `json:"html,omitempty"`
	Markdown   *string           `json:"markdown,omitempty"`
	Text       *string           `json:"text,omitempty"`
	Links      []string          `json:"links,omitzero"` // [] when asked for and the page has none
	// Canonical is a crawl page's <link rel=canonical>, when it names
	// another URL than the page's.
	Canonical  string          `json:"canonical_url,omitempty"`
	Screenshot []byte          `json:"screenshot,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	JSON       json.RawMessage `json:"json,omitempty"`
	Usage      json.RawMessage `json:"usage,omitempty"`
	Actions    []ActionResult  `json:"actions,omitempty"`
	// Proxy is the upstream proxy of the job's last try (nil: direct).
	Proxy *ProxyRef `json:"proxy,omitempty"`
	// Blocked is set when the last try's response matched a block rule.
	Blocked *Blocked `json:"blocked,omitempty"`
	// AttemptsLog lists the job's tries, in order, when it went through
	// a proxy or was tried more than once.
	AttemptsLog []Try   `json:"attempts_log,omitempty"`
	Timings     Timings `json:"timings"`

	// Cache and Change (freshness) say where the result came from and how
	// it compares with the last tracked one.
	Cache  *CacheInfo `json:"cache,omitempty"`
	Change *Change    `json:"change,omitempty"`

	// PDF is a PDF target's page count, or the pdf output.
	PDF *PDFInfo `json:"pdf,omitempty"`
	// Artifacts links the job's screenshot and pdf outputs in the
	// artifact store, by name ("screenshot", "pdf").
	Artifacts map[string]Artifact `json:"artifacts,omitempty"`
	// Embed names the entries of Artifacts whose bytes the API puts
	// inline (result.screenshot, result.pdf.data) when it answers; it is
	// how a stored result remembers "artifacts": "inline", and is never
	// part of an answer.
	Embed []string `json:"embed,omitempty"`

	// capture (see capture.go)

	// Network lists the kept XHR and fetch responses (output network).
	Network []NetworkEntry `json:"network,omitzero"`
	// HAR is the HAR 1.2 log of the page's requests (output har).
	HAR *Artifact `json:"har,omitempty"`
	// Downloads are the files the page or an action downloaded.
	Downloads []Download `json:"downloads,omitempty"`
	// Diagnostics is the page at the moment a rendered job failed.
	Diagnostics *Diagnostics `json:"diagnostics,omitempty"`
}

// ActionResult is one entry of result.actions.
type ActionResult struct {
	Index      int             `json:"index"`
	Type       string          `json:"type"`
	Status     string          `json:"status"`
	DurationMs int64           `json:"duration_ms"`
	Result     json.RawMessage `json:"result,omitempty"`
	Screenshot []byte          `json:"screenshot,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// Timings of a job in milliseconds.
type Timings struct {
	QueuedMs int64 `json:"queued_ms"`
	RunMs    int64 `json:"run_ms"`
	// HostWaitMs is how long the job waited for its host (politeness),
	// part of QueuedMs.
	HostWaitMs int64 `json:"host_wait_ms"`
}

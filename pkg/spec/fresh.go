package spec

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// Freshness: the result cache (max_age_ms, store_in_cache), change
// tracking (change_tracking, result.change, a batch's changes) and
// schedules. The fields of Request, Webhook, Result, Job and Batch that
// these types fill are marked "freshness" where they are declared.

// Limits of the freshness fields.
const (
	// MaxAgeLimitMs bounds max_age_ms (a year); the cache keeps entries
	// for the operator's PAGEFLEET_CACHE_TTL anyway.
	MaxAgeLimitMs = 365 * 24 * 3600 * 1000
	// MaxTagLength bounds change_tracking.tag.
	MaxTagLength = 128
)

// Change statuses of result.change.
const (
	ChangeNew     = "new"
	ChangeSame    = "same"
	ChangeChanged = "changed"
)

// EventScheduleRun is the webhook event of a schedule's run.
const EventScheduleRun = "schedule.run"

// ChangeTracking asks a job (or every job of a batch) to compare its
// result with the last tracked result of the same tenant, normalised URL
// and tag.
type ChangeTracking struct {
	// Tag names a line of comparisons: results are compared only with
	// results of the same tag ("" is a tag too).
	Tag string `json:"tag,omitempty"`
}

// CacheInfo is result.cache: where the result came from.
type CacheInfo struct {
	// Hit: the result is a cached one, no page was fetched.
	Hit bool `json:"hit"`
	// AgeMs is the cached result's age when it was served (hits only).
	AgeMs int64 `json:"age_ms,omitempty"`
	// SourceJob is the job that produced the cached result (hits only).
	SourceJob string `json:"source_job,omitempty"`
	// Revalidated: the cached result was older than max_age_ms, the site
	// answered 304 Not Modified to a conditional request, and the stored
	// result was reused.
	Revalidated bool `json:"revalidated,omitempty"`
}

// Change is result.change: how the result compares with the last tracked
// one (see ChangeTracking).
type Change struct {
	// Status is "new" (nothing tracked before), "same" or "changed".
	Status string `json:"status"`
	// PreviousJob and PreviousAt name the result compared with.
	PreviousJob string     `json:"previous_job,omitempty"`
	PreviousAt  *time.Time `json:"previous_at,omitempty"`
	// Diff is the unified diff of the previous markdown to this one
	// ("changed" only).
	Diff string `json:"diff,omitempty"`
}

// Changes is a tracked batch's "changes": how many of its pages are new,
// the same or changed, and how many URLs of the previous run of the same
// schedule (or tag) this run did not see. Removed and RemovedURLs are known
// once the batch completed.
type Changes struct {
	New     int64 `json:"new"`
	Same    int64 `json:"same"`
	Changed int64 `json:"changed"`
	Removed int64 `json:"removed"`
	// RemovedURLs lists the removed URLs (at most MaxRemovedURLs).
	RemovedURLs []string `json:"removed_urls,omitempty"`
}

// MaxRemovedURLs bounds Changes.RemovedURLs.
const MaxRemovedURLs = 1000

var tagRe = regexp.MustCompile(`^[A-Za-z0-9._:-]*$`)

// Cacheable reports whether the job may be served from the result cache
// and stored in it: a fetch without a session.
func (r *Request) Cacheable(kind string) bool {
	return kind == KindFetch && r.Session == nil
}

// Stores reports whether a result of the job goes into the cache
// (store_in_cache is true unless set to false).
func (r *Request) Stores(kind string) bool {
	return r.Cacheable(kind) && (r.StoreInCache == nil || *r.StoreInCache)
}

// NormalizeFreshness fills what the freshness fields imply: a tracked job
// compares markdown, so its outputs include markdown.
func (r *Request) NormalizeFreshness() {
	if r.ChangeTracking != nil && !r.Wants(OutMarkdown) {
		r.Output = append(r.Output, OutMarkdown)
	}
}

// validateFreshness checks the freshness fields of a job (or a template,
// prefix "template.").
func (r *Request) validateFreshness(kind, prefix string) []FieldError {
	var errs []FieldError
	add := func(f, m string) { errs = append(errs, FieldError{Field: prefix + f, Message: m}) }
	if r.MaxAgeMs != nil {
		switch {
		case kind != KindFetch:
			add("max_age_ms", "is for fetch jobs only")
		case *r.MaxAgeMs < 0 || *r.MaxAgeMs > MaxAgeLimitMs:
			add("max_age_ms", fmt.Sprintf("must be between 0 and %d", MaxAgeLimitMs))
		}
	}
	if r.StoreInCache != nil && kind != KindFetch {
		add("store_in_cache", "is for fetch jobs only")
	}
	if c := r.ChangeTracking; c != nil && (len(c.Tag) > MaxTagLength || !tagRe.MatchString(c.Tag)) {
		add("change_tracking.tag", fmt.Sprintf("must be at most %d characters of A-Z a-z 0-9 . _ : -", MaxTagLength))
	}
	if r.Webhook != nil && r.Webhook.OnlyChanged {
		add("webhook.only_changed", "is for a batch's webhook (batch.page events)")
	}
	return errs
}

// ValidateBatchFreshness checks what a batch's webhook asks of its
// template: only_changed needs change tracking.
func ValidateBatchFreshness(w *Webhook, template *Request) []FieldError {
	if w != nil && w.OnlyChanged && (template == nil || template.ChangeTracking == nil) {
		return []FieldError{{Field: "webhook.only_changed", Message: "needs template.change_tracking"}}
	}
	return nil
}

// WantsPage reports whether a batch's webhook wants batch.page for job:
// with only_changed, only for a page whose change status is new or
// changed.
func (w *Webhook) WantsPage(job *Job) bool {
	if !w.WantsEvent(EventBatchPage) {
		return false
	}
	if !w.OnlyChanged {
		return true
	}
	if job.Result == nil || job.Result.Change == nil {
		return false
	}
	return job.Result.Change.Status == ChangeNew || job.Result.Change.Status == ChangeChanged
}

// ScheduleRequest is the body of POST /v1/schedules: a cron expression
// with its time zone, and the batch (or fetch job) each due time creates.
type ScheduleRequest struct {
	// Cron is a cron expression of 5 fields (minute hour day-of-month
	// month day-of-week) or 6 (seconds first), or a descriptor such as
	// @hourly or @every 10m.
	Cron string `json:"cron"`
	// Timezone is an IANA time zone name (default "UTC").
	Timezone string `json:"timezone,omitempty"`
	// Batch is a batch body (as POST /v1/batches takes); Fetch a fetch
	// job's. Exactly one is given.
	Batch json.RawMessage `json:"batch,omitempty"`
	Fetch json.RawMessage `json:"fetch,omitempty"`
	// Webhook receives schedule.run for every run.
	Webhook *Webhook `json:"webhook,omitempty"`
	// Paused creates the schedule paused.
	Paused bool `json:"paused,omitempty"`
}

// ScheduleUpdate is the body of PATCH /v1/schedules/{id}: the fields
// given change.
type ScheduleUpdate struct {
	Paused   *bool   `json:"paused,omitempty"`
	Cron     *string `json:"cron,omitempty"`
	Timezone *string `json:"timezone,omitempty"`
}

// Schedule is the schedule object.
type Schedule struct {
	ID       string `json:"id"`
	Cron     string `json:"cron"`
	Timezone string `json:"timezone"`
	// Kind is "batch" or "fetch": what each run creates.
	Kind string `json:"kind"`
	// NextRunAt is the next due time (null while paused).
	NextRunAt *time.Time `json:"next_run_at"`
	Paused    bool       `json:"paused"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	// LastRunAt is the due time of the last run created (null before one).
	LastRunAt *time.Time      `json:"last_run_at"`
	Batch     json.RawMessage `json:"batch,omitempty"`
	Fetch     json.RawMessage `json:"fetch,omitempty"`
	Webhook   *Webhook        `json:"webhook,omitempty"`
}

// Schedule run statuses.
const (
	// RunCreated: the run's batch or job was created.
	RunCreated = "created"
	// RunSkipped: the run was refused by a tenant limit (or its tenant is
	// gone); Error says why.
	RunSkipped = "skipped"
)

// ScheduleRun is one run of a schedule: an entry of GET
// /v1/schedules/{id}/runs and the data of a schedule.run event.
type ScheduleRun struct {
	ScheduleID string `json:"schedule_id"`
	// ScheduledAt is the due time the run is for.
	ScheduledAt time.Time `json:"scheduled_at"`
	// Status is "created" or "skipped".
	Status string `json:"status"`
	// BatchID or JobID is what the run created.
	BatchID   string    `json:"batch_id,omitempty"`
	JobID     string    `json:"job_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Error     string    `json:"error,omitempty"`
}

// ScheduleRun decodes the run of a schedule.run event.
func (e *Event) ScheduleRun() (*ScheduleRun, error) {
	var r ScheduleRun
	if err := json.Unmarshal(e.Data, &r); err != nil {
		return nil, fmt.Errorf("event %s data: %w", e.Type, err)
	}
	return &r, nil
}

package spec

import "time"

// MaxBatchURLs is the most URLs (or crawl pages) one batch may have; a
// tenant's batch_size limit may be lower.
const MaxBatchURLs = 100000

// Batch kinds.
const (
	BatchKindURLs  = "urls"
	BatchKindCrawl = "crawl"
)

// Batch statuses.
const (
	BatchRunning   = "running"
	BatchCompleted = "completed"
	BatchCancelled = "cancelled"
)

// BatchRequest is the body of POST /v1/batches: a list of URLs or a crawl,
// each page fetched with the template's settings.
type BatchRequest struct {
	URLs  []string `json:"urls,omitempty"`
	Crawl *Crawl   `json:"crawl,omitempty"`
	// Template holds the fetch fields every job of the batch uses. Its URL,
	// Session and Webhook must be left empty: each job takes its URL from
	// the batch, batch jobs run in parallel, and the batch has its own
	// webhook.
	Template *Request `json:"template,omitempty"`
	// Webhook receives batch.page for each job and batch.completed.
	Webhook *Webhook `json:"webhook,omitempty"`
}

// Crawl asks a batch to discover its pages by following links from
// StartURL (depth 0), each normalised URL once.
type Crawl struct {
	StartURL string `json:"start_url"`
	// MaxDepth is how many links away from the start page the crawl goes
	// (0: the start page only; nil: the default, 3).
	MaxDepth *int `json:"max_depth,omitempty"`
	// MaxPages bounds the pages of the crawl, the start page included
	// (default 1000, at most the tenant's batch size).
	MaxPages int `json:"max_pages,omitempty"`
	// Include: when given, a URL's path must match at least one of these
	// regular expressions; Exclude: it must match none.
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// SameOrigin keeps the crawl on the start URL's origin (nil: true).
	SameOrigin *bool `json:"same_origin,omitempty"`
	// RespectRobotsTxt skips the paths robots.txt disallows for user-agent
	// "*" (each origin's robots.txt is fetched once per batch).
	RespectRobotsTxt bool `json:"respect_robots_txt,omitempty"`
	// Sitemap is "include" (default: the pages the site's sitemaps list,
	// besides the links), "only" (the sitemaps' pages, no links followed)
	// or "skip".
	Sitemap string `json:"sitemap,omitempty"`
	// AllowSubdomains lets a crawl (and a map) reach the start host's
	// subdomains.
	AllowSubdomains bool `json:"allow_subdomains,omitempty"`
	// IgnoreQuery drops the query of every URL: pages that differ only by
	// their query are one page.
	IgnoreQuery bool `json:"ignore_query,omitempty"`
}

// Sitemap settings of a crawl or map.
const (
	SitemapInclude = "include"
	SitemapOnly    = "only"
	SitemapSkip    = "skip"
)

// How a crawl found a page (Job.DiscoveredBy).
const (
	DiscoveredStart   = "start"
	DiscoveredLink    = "link"
	DiscoveredSitemap = "sitemap"
)

// MapRequest is the body of POST /v1/map: list a site's URLs from its
// sitemaps and the links of its start page, plain HTTP only.
type MapRequest struct {
	URL string `json:"url"`
	// Limit bounds the URLs answered (default 5000, at most 100 000).
	Limit   int      `json:"limit,omitempty"`
	Sitemap string   `json:"sitemap,omitempty"`
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// AllowSubdomains lets the map list the start host's subdomains.
	AllowSubdomains bool `json:"allow_subdomains,omitempty"`
	// Search keeps the URLs that contain every word of it (any case).
	Search string `json:"search,omitempty"`
}

// Limits of a map.
const (
	DefaultMapLimit = 5000
	MaxMapLimit     = 100000
)

// MapURL is one URL a map found.
type MapURL struct {
	URL     string `json:"url"`
	Lastmod string `json:"lastmod,omitempty"`
	// Source is "sitemap" or "page" (a link of the start page).
	Source string `json:"source"`
}

// MapResult is the answer to POST /v1/map.
type MapResult struct {
	URLs []MapURL `json:"urls"`
	// Truncated: the site had more URLs than the limit.
	Truncated bool `json:"truncated"`
}

// Batch is the object of GET /v1/batches/{id}: a batch's progress. The
// counts always add up to Total, which grows while a crawl discovers pages.
type Batch struct {
	ID string `json:"id"`
	// Kind is "urls" or "crawl".
	Kind      string    `json:"kind"`
	Status    string    `json:"status"`
	Total     int64     `json:"total"`
	Queued    int64     `json:"queued"`
	Running   int64     `json:"running"`
	Succeeded int64     `json:"succeeded"`
	Failed    int64     `json:"failed"`
	Cancelled int64     `json:"cancelled"`
	CreatedAt time.Time `json:"created_at"`
	// FinishedAt is null while the batch runs.
	FinishedAt *time.Time `json:"finished_at"`
	// Crawl is the crawl's settings, defaults filled in (crawls only).
	Crawl *Crawl `json:"crawl,omitempty"`
	// ScheduleID and ScheduledAt (freshness) name the schedule run that
	// created the batch.
	ScheduleID  string     `json:"schedule_id,omitempty"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
	// Changes (freshness) counts the pages of a batch with change
	// tracking by change status.
	Changes *Changes `json:"changes,omitempty"`
}

// Done reports whether the batch has ended: completed, or cancelled (a
// cancelled batch's running jobs may still finish; its counts say so).
func (b *Batch) Done() bool { return b.Status == BatchCompleted || b.Status == BatchCancelled }

// BatchAccepted is the 202 answer to POST /v1/batches.
type BatchAccepted struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Status    string    `json:"status"`
	Total     int       `json:"total"`
	CreatedAt time.Time `json:"created_at"`
}

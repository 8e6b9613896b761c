// Package polite decides how hard a tenant's jobs may press one host: the
// settings that apply to a job (the job's, the tenant's, the operator's),
// the pause after a 429 or 503 answer, and when a job that waits for its
// host should come back. It is pure policy: the counts live in Redis
// (rdb.Hosts), and the worker's turn asks them.
package polite

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Host is what politeness counts by: the URL's lower-case host, and its
// port when it is not the scheme's default ("" for a URL without a host).
func Host(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	h := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" || (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		return h
	}
	return net.JoinHostPort(h, port)
}

// Operator is the operator's settings: every tenant's defaults, and the
// ceiling over all tenants together.
type Operator struct {
	Concurrency int           // PAGEFLEET_HOST_CONCURRENCY
	Delay       time.Duration // PAGEFLEET_HOST_DELAY
}

// Settings are what applies to one job.
type Settings struct {
	// Limit is how many of the tenant's jobs may run against the host at
	// once; never above the operator's concurrency.
	Limit int
	// Delay is the least time between two of the tenant's starts there.
	Delay time.Duration
	// Adaptive pauses the host after a 429 or 503 and runs one job at a
	// time until the answers are good again.
	Adaptive bool
	// RespectCrawlDelay makes a crawl's Delay at least the host's
	// robots.txt Crawl-delay.
	RespectCrawlDelay bool
}

// Resolve gives the settings of a job: each field from the job's settings
// when set, else the tenant's, else the operator's (adaptive defaults to
// on; respecting Crawl-delay to on for crawls, off otherwise). The
// operator's concurrency caps the result.
func Resolve(job *spec.Politeness, tenant spec.Politeness, op Operator, crawl bool) Settings {
	s := Settings{Limit: op.Concurrency, Delay: op.Delay, Adaptive: true, RespectCrawlDelay: crawl}
	for _, p := range []*spec.Politeness{&tenant, job} {
		if p == nil {
			continue
		}
		if p.MaxConcurrencyPerHost > 0 {
			s.Limit = p.MaxConcurrencyPerHost
		}
		if p.DelayMs != nil {
			s.Delay = time.Duration(*p.DelayMs) * time.Millisecond
		}
		if p.Adaptive != nil {
			s.Adaptive = *p.Adaptive
		}
		if p.RespectCrawlDelay != nil {
			s.RespectCrawlDelay = *p.RespectCrawlDelay
		}
	}
	s.Limit = max(1, min(s.Limit, op.Concurrency))
	return s
}

// Spaced is the time the gate keeps between two starts for a delay: the
// delay and a tenth more (at most 100 ms more), for the moments between a
// job's start and its request, which vary with the machine's load — so
// that requests, not only starts, are the delay apart.
func Spaced(delay time.Duration) time.Duration {
	if delay <= 0 {
		return 0
	}
	return delay + min(delay/10, 100*time.Millisecond)
}

// Back-off after a 429 or 503 answer without Retry-After: FirstPause,
// doubling with each step, at most MaxPause.
const (
	FirstPause = 5 * time.Second
	MaxPause   = 5 * time.Minute
	// MaxLevel is the most back-off steps counted (5 s << 6 > 5 min).
	MaxLevel = 7
)

// Throttles reports whether an answer's status makes an adaptive host
// pause: 429 Too Many Requests and 503 Service Unavailable.
func Throttles(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// Pause is how long a host that answered 429 or 503 is left alone: its
// Retry-After when it sent one (at most MaxPause), else FirstPause doubled
// for each back-off step already taken (level), at most MaxPause.
func Pause(level int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, MaxPause)
	}
	return min(FirstPause<<min(max(level, 0), MaxLevel), MaxPause)
}

// ParseRetryAfter reads a Retry-After value, delay-seconds or an HTTP
// date, as a wait from now, at most limit; 0 when absent, invalid or past.
func ParseRetryAfter(v string, now time.Time, limit time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(limit/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), limit)
	}
	return 0
}

// Longest and shortest wait of a job handed back for its host. Besides
// this fallback, whoever frees a place or is admitted wakes the job first
// in line at once (or when the delay is over).
const (
	minComeBack = 200 * time.Millisecond
	maxComeBack = 30 * time.Second
)

// ComeBack is when a job the gate told to wait should ask again: when the
// host is free for it if that is known (a delay, a pause), else a little
// later for each job ahead of it in line; with jitter, so that waiting jobs
// do not all come back at once.
func ComeBack(a rdb.HostAnswer, s Settings) time.Duration {
	per := max(s.Delay, time.Second)
	var d time.Duration
	switch a.Reason {
	case rdb.HostPaused:
		d = a.Wait + time.Duration(a.Rank)*s.Delay
	case rdb.HostDelay:
		d = a.Wait
	default:
		d = time.Duration(a.Rank+1) * per
	}
	d = min(max(d, minComeBack), maxComeBack)
	return d + time.Duration(rand.Int64N(int64(d/10)+1))
}

package polite

import (
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func TestHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://Example.COM/a":        "example.com",
		"https://example.com:443/a":    "example.com",
		"http://example.com:80/":       "example.com",
		"http://example.com:8080/":     "example.com:8080",
		"https://example.com:80/":      "example.com:80",
		"http://127.0.0.1:41234/p?q=1": "127.0.0.1:41234",
		"http://[::1]:9000/":           "[::1]:9000",
		"not a url":                    "",
	} {
		if got := Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", in, got, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestResolve(t *testing.T) {
	op := Operator{Concurrency: 8, Delay: 100 * time.Millisecond}
	for _, tt := range []struct {
		name   string
		job    *spec.Politeness
		tenant spec.Politeness
		crawl  bool
		want   Settings
	}{
		{"operator's defaults", nil, spec.Politeness{}, false, Settings{Limit: 8, Delay: 100 * time.Millisecond, Adaptive: true}},
		{"a crawl respects Crawl-delay", nil, spec.Politeness{}, true, Settings{Limit: 8, Delay: 100 * time.Millisecond, Adaptive: true, RespectCrawlDelay: true}},
		{"tenant's", nil, spec.Politeness{MaxConcurrencyPerHost: 2, DelayMs: ptr(500), Adaptive: ptr(false)}, false,
			Settings{Limit: 2, Delay: 500 * time.Millisecond}},
		{"job's over tenant's", &spec.Politeness{MaxConcurrencyPerHost: 3, DelayMs: ptr(0)}, spec.Politeness{MaxConcurrencyPerHost: 2, DelayMs: ptr(500)}, false,
			Settings{Limit: 3, Delay: 0, Adaptive: true}},
		{"operator's ceiling", &spec.Politeness{MaxConcurrencyPerHost: 50}, spec.Politeness{}, false, Settings{Limit: 8, Delay: 100 * time.Millisecond, Adaptive: true}},
		{"a crawl may ignore Crawl-delay", &spec.Politeness{RespectCrawlDelay: ptr(false)}, spec.Politeness{}, true, Settings{Limit: 8, Delay: 100 * time.Millisecond, Adaptive: true}},
	} {
		if got := Resolve(tt.job, tt.tenant, op, tt.crawl); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestPause(t *testing.T) {
	for _, tt := range []struct {
		level      int
		retryAfter time.Duration
		want       time.Duration
	}{
		{0, 0, 5 * time.Second},
		{1, 0, 10 * time.Second},
		{3, 0, 40 * time.Second},
		{6, 0, 5 * time.Minute},
		{20, 0, 5 * time.Minute},
		{3, 2 * time.Second, 2 * time.Second},
		{0, time.Hour, 5 * time.Minute},
	} {
		if got := Pause(tt.level, tt.retryAfter); got != tt.want {
			t.Errorf("Pause(%d, %v) = %v, want %v", tt.level, tt.retryAfter, got, tt.want)
		}
	}
	if !Throttles(429) || !Throttles(503) || Throttles(500) || Throttles(200) {
		t.Error("Throttles")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"2", 2 * time.Second}, {" 30 ", 30 * time.Second}, {"0", 0}, {"-5", 0}, {"soon", 0},
		{"99999999", time.Hour},
		{"Tue, 01 Dec 2026 12:00:10 GMT", 10 * time.Second},
		{"Tue, 01 Dec 2026 11:00:00 GMT", 0},
	} {
		if got := ParseRetryAfter(tt.v, now, time.Hour); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestComeBack(t *testing.T) {
	s := Settings{Limit: 2, Delay: 200 * time.Millisecond}
	in := func(d, lo, hi time.Duration) bool { return d >= lo && d <= hi+hi/10 }
	for _, tt := range []struct {
		a      rdb.HostAnswer
		lo, hi time.Duration
	}{
		{rdb.HostAnswer{Reason: rdb.HostDelay, Wait: 150 * time.Millisecond}, 200 * time.Millisecond, 200 * time.Millisecond},
		{rdb.HostAnswer{Reason: rdb.HostDelay, Wait: 900 * time.Millisecond}, 900 * time.Millisecond, 900 * time.Millisecond},
		{rdb.HostAnswer{Reason: rdb.HostPaused, Wait: 2 * time.Second, Rank: 5}, 3 * time.Second, 3 * time.Second},
		{rdb.HostAnswer{Reason: rdb.HostQueue, Rank: 3}, 4 * time.Second, 4 * time.Second},
		{rdb.HostAnswer{Reason: rdb.HostConcurrency, Rank: 1000}, 30 * time.Second, 30 * time.Second},
	} {
		if d := ComeBack(tt.a, s); !in(d, tt.lo, tt.hi) {
			t.Errorf("ComeBack(%+v) = %v, want %v..%v (+10%%)", tt.a, d, tt.lo, tt.hi)
		}
	}
}

func TestSpaced(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{0: 0, 200 * time.Millisecond: 220 * time.Millisecond,
		time.Second: 1100 * time.Millisecond, 10 * time.Millisecond: 11 * time.Millisecond, 5 * time.Second: 5100 * time.Millisecond} {
		if got := Spaced(in); got != want {
			t.Errorf("Spaced(%v) = %v, want %v", in, got, want)
		}
	}
}

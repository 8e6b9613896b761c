package fresh

import (
	"context"
	"time"

	"github.com/pagefleet/pagefleet/internal/crawl"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// TrackURL is the URL a result is tracked under: the normalised one (the
// URL as given when it does not normalise).
func TrackURL(raw string) string {
	if u, err := crawl.Normalize(raw); err == nil {
		return u
	}
	return raw
}

// Track makes the result of job (its markdown md, produced at at) the
// last tracked one of tenant's URL and tag, and returns how it compares
// with the one before (result.change).
func Track(ctx context.Context, tr *rdb.Tracker, tenant, url, tag, job string, at time.Time, md string) (*spec.Change, error) {
	d := Digest(md)
	prev, err := tr.Swap(ctx, tenant, TrackURL(url), tag, rdb.Tracked{Job: job, At: at, Digest: d, Markdown: md, HasMarkdown: true})
	if err != nil {
		return nil, err
	}
	return Compare(prev, job, md), nil
}

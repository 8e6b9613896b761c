package worker

import (
	"context"
	"maps"
	"time"

	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/fresh"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// The freshness side of a turn (see package fresh): before the job runs,
// its cache entry is read; a young enough one ends the job with its result
// (no host place, no fetch, no browser: a batch job's hit, or a job that
// missed at submit while another filled the cache); a stale one with
// validators makes a plain fetch conditional (revalidation, in run.go);
// after it ran, a tracked job's result is compared with the last tracked
// one; after its outcome is written, its result goes into the cache.

// freshTurn is what a turn knows of its job's cache entry.
type freshTurn struct {
	key   string // the job's cache key ("": the job neither reads nor feeds the cache)
	entry *rdb.CacheEntry
	use   fresh.Use
	// revalidated: the site answered 304 and the entry's result was reused.
	revalidated bool
	// change is the result's change status ("": not tracked).
	change string
}

// lookupCache reads the job's cache entry and decides what the job does
// with it.
func (tn *turn) lookupCache() {
	w, p := tn.w, tn.p
	if w.Cache == nil || !p.Request.Cacheable(p.Kind) || (p.Request.MaxAgeMs == nil && !p.Request.Stores(p.Kind)) {
		return
	}
	key, err := fresh.Key(&p.Request, p.Crawl)
	if err != nil {
		return
	}
	tn.fresh.key = key
	if p.Request.MaxAgeMs == nil {
		return // the job only feeds the cache
	}
	e, err := w.Cache.Get(tn.ctx, p.Tenant, key)
	if err != nil {
		tn.log.Warn("read the result cache; the job runs", "err", err)
		return
	}
	var fe *fresh.Entry
	if e != nil {
		fe = &fresh.Entry{At: e.At, ETag: e.ETag, LastModified: e.LastModified, Markdown: e.Markdown}
	}
	tn.fresh.entry = e
	tn.fresh.use = fresh.Decide(p.Request.MaxAgeMs, fe, time.Now(), !p.Request.Rendered(p.Kind), p.Request.ChangeTracking != nil)
	w.Fresh.Lookup(fresh.LookupOutcome(tn.fresh.use, e != nil))
}

// hit reports whether the job ends with its cached result.
func (tn *turn) hit() bool { return tn.fresh.use == fresh.Hit }

// runFresh runs the job: from its cache entry on a hit, else as usual,
// with its entry's validators when it revalidates.
func (tn *turn) runFresh() runOutcome {
	w, p := tn.w, tn.p
	if tn.hit() {
		res, err := tn.fresh.entry.Result()
		if err == nil {
			e := tn.fresh.entry
			res.URL = p.Request.URL
			res.Cache = &spec.CacheInfo{Hit: true, SourceJob: e.Job,
				AgeMs: fresh.Age(&fresh.Entry{At: e.At}, time.Now()).Milliseconds()}
			return runOutcome{result: res}
		}
		tn.log.Warn("decode a cached result; the job runs", "err", err)
	}
	ctx := tn.jobCtx
	if tn.fresh.use == fresh.Revalidate {
		ctx = context.WithValue(ctx, revalidationKey{}, &revalidation{tn: tn})
	}
	return w.run(ctx, p, tn.lease, tn.log)
}

// revalidation makes a plain fetch conditional on the job's stale cache
// entry (run.go asks for it with revalidationOf).
type revalidation struct {
	tn *turn
}

type revalidationKey struct{}

// revalidationOf is the job's revalidation (nil: none).
func revalidationOf(ctx context.Context) *revalidation {
	rv, _ := ctx.Value(revalidationKey{}).(*revalidation)
	return rv
}

// conditional adds the entry's validators to the fetch's headers.
func (rv *revalidation) conditional(req *fetch.Request) {
	if rv == nil {
		return
	}
	e := rv.tn.fresh.entry
	h := maps.Clone(req.Headers)
	if h == nil {
		h = map[string]string{}
	}
	maps.Copy(h, fresh.Validators(&fresh.Entry{ETag: e.ETag, LastModified: e.LastModified}))
	req.Headers = h
}

// notModified returns the entry's result when the site answered 304 Not
// Modified (nil otherwise: the fetch goes on with the page it got).
func (rv *revalidation) notModified(fr *fetch.Response) *spec.Result {
	if rv == nil {
		return nil
	}
	tn := rv.tn
	if fr.StatusCode != 304 {
		tn.w.Fresh.Revalidation(fresh.Modified)
		return nil
	}
	res, err := tn.fresh.entry.Result()
	if err != nil {
		tn.log.Warn("decode a cached result after a 304", "err", err)
		return nil
	}
	tn.w.Fresh.Revalidation(fresh.NotModified)
	tn.fresh.revalidated = true
	res.URL = tn.p.Request.URL
	res.Cache = &spec.CacheInfo{Revalidated: true}
	return res
}

// track compares a tracked job's result with the last tracked one of its
// URL and tag (result.change). A failure to reach the tracker fails the
// attempt, retryably: the result would lack its change.
func (tn *turn) track(out *runOutcome) {
	p := tn.p
	if p.Request.ChangeTracking == nil || out.err != nil || out.result == nil || tn.w.Tracker == nil {
		return
	}
	md := ""
	if out.result.Markdown != nil {
		md = *out.result.Markdown
	}
	ch, err := fresh.Track(context.WithoutCancel(tn.ctx), tn.w.Tracker, p.Tenant, p.Request.URL, p.Request.ChangeTracking.Tag,
		p.JobID, time.Now(), md)
	if err != nil {
		out.err = spec.Errorf(spec.CodeInternal, true, "track changes: %v", err)
		return
	}
	out.result.Change = ch
	tn.fresh.change = ch.Status
	tn.w.Fresh.Change(ch.Status)
}

// trackOutcome adds to o what a tracked batch counts: the result's change
// status and the URL its run saw (see rdb.Outcome).
func (tn *turn) trackOutcome(o *rdb.Outcome) {
	p := tn.p
	if p.BatchID == "" || p.Request.ChangeTracking == nil {
		return
	}
	o.Change, o.TrackURL = tn.fresh.change, fresh.TrackURL(p.Request.URL)
}

// storeResult puts a succeeded job's result into the cache, or, after a
// 304, records that the entry was revalidated. A failure is only logged:
// the job succeeded.
func (tn *turn) storeResult(o *rdb.Outcome) {
	w, p := tn.w, tn.p
	if tn.fresh.key == "" || tn.hit() || o.Status != spec.StatusSucceeded || !p.Request.Stores(p.Kind) || !fresh.Storable(o.Result) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(tn.ctx), 5*time.Second)
	defer cancel()
	var err error
	if tn.fresh.revalidated {
		err = w.Cache.Touch(ctx, p.Tenant, tn.fresh.key, p.JobID, time.Now())
	} else {
		err = w.Cache.Put(ctx, p.Tenant, tn.fresh.key, p.JobID, time.Now(), o.Result)
	}
	if err != nil && err != rdb.ErrCacheEntryTooLarge {
		tn.log.Warn("keep the result in the cache", "err", err)
	}
}

package worker

import (
	"context"
	"maps"
	"time"

	"github.com/pagefleet/pagefleet/internal/fetch"
	"github.com/pagefleet/pagefleet/internal/fresh"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/jobs"
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
	// written is the result this attempt wrote into the job's record.
	written *spec.Result
	// cached: written is the head of a cached result (cachedResult).
	cached bool
}

// cachedResult is a cached result a job reuses without decoding it all:
// the job's result holds the head (rdb.CacheEntry.Head), and its record
// gets the entry's core as it is, with its own fields.
type cachedResult struct {
	core []byte
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

// reuse is the outcome of a job that reuses its cached result, with info
// as its result.cache.
func (tn *turn) reuse(info *spec.CacheInfo) (runOutcome, bool) {
	e := tn.fresh.entry
	res, err := e.Head()
	if err != nil {
		tn.log.Warn("decode a cached result; the job runs", "err", err)
		return runOutcome{}, false
	}
	res.URL, res.Cache = tn.p.Request.URL, info
	return runOutcome{result: res, cached: &cachedResult{core: e.Core()}}, true
}

// runFresh runs the job: from its cache entry on a hit, else as usual,
// with its entry's validators when it revalidates.
func (tn *turn) runFresh() runOutcome {
	w, p := tn.w, tn.p
	if tn.hit() {
		e := tn.fresh.entry
		info := &spec.CacheInfo{Hit: true, SourceJob: e.Job, AgeMs: fresh.Age(&fresh.Entry{At: e.At}, time.Now()).Milliseconds()}
		if out, ok := tn.reuse(info); ok {
			return out
		}
	}
	ctx := tn.jobCtx
	if tn.fresh.use == fresh.Revalidate {
		ctx = context.WithValue(ctx, revalidationKey{}, &revalidation{tn: tn})
	}
	return w.run(ctx, p, tn.lease, tn.log, tn.pacerOf())
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

// notModified is the outcome that reuses the entry's result when the site
// answered 304 Not Modified (false otherwise: the fetch goes on with the
// page it got).
func (rv *revalidation) notModified(fr *fetch.Response) (runOutcome, bool) {
	if rv == nil {
		return runOutcome{}, false
	}
	tn := rv.tn
	if fr.StatusCode != 304 {
		tn.w.Fresh.Revalidation(fresh.Modified)
		return runOutcome{}, false
	}
	out, ok := tn.reuse(&spec.CacheInfo{Revalidated: true})
	if ok {
		tn.w.Fresh.Revalidation(fresh.NotModified)
		tn.fresh.revalidated = true
	}
	return out, ok
}

// track compares a tracked job's result with the last tracked one of its
// URL and tag (result.change). A failure to reach the tracker fails the
// attempt, retryably: the result would lack its change.
func (tn *turn) track(out *runOutcome) {
	p := tn.p
	if p.Request.ChangeTracking == nil || out.err != nil || out.result == nil || tn.w.Tracker == nil {
		return
	}
	if out.cached != nil {
		// The cached result's markdown is compared: decode it all.
		full, err := tn.fresh.entry.Result()
		if err != nil {
			out.err = spec.Errorf(spec.CodeInternal, true, "decode a cached result: %v", err)
			return
		}
		full.URL, full.Cache = out.result.URL, out.result.Cache
		out.result = full
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
// 304, records that the entry was revalidated, before the outcome is
// written: once a client learns the job succeeded, a request of the same
// page finds the result (should the outcome then be refused, the entry
// still holds what the site served). A failure is only logged: the job
// succeeds.
func (tn *turn) storeResult(o *rdb.Outcome) {
	w, p := tn.w, tn.p
	if tn.fresh.key == "" || tn.hit() || o.Status != spec.StatusSucceeded || !p.Request.Stores(p.Kind) || !fresh.Storable(o.Result) ||
		(o.Core == nil && !tn.fresh.revalidated) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(tn.ctx), 5*time.Second)
	defer cancel()
	var err error
	if tn.fresh.revalidated {
		err = w.Cache.Touch(ctx, p.Tenant, tn.fresh.key, p.JobID, time.Now())
	} else {
		err = w.Cache.PutCore(ctx, p.Tenant, tn.fresh.key, p.JobID, time.Now(), o.Result, o.Core)
	}
	if err != nil && err != rdb.ErrCacheEntryTooLarge {
		tn.log.Warn("keep the result in the cache", "err", err)
	}
}

// encodeResult splits the attempt's result into its core and its own
// fields for the job's record (rdb.EncodeResult): a reused cached result's
// core is the entry's, as it is. Should encoding fail, Finish encodes the
// result whole.
func (tn *turn) encodeResult(o *rdb.Outcome, out *runOutcome) {
	if out.result == nil {
		return
	}
	if out.cached != nil {
		own, err := rdb.EncodeOwn(out.result)
		if err == nil {
			o.Core, o.Own = out.cached.core, own
			tn.fresh.cached = true
		}
		return
	}
	if core, own, err := rdb.EncodeResult(out.result); err == nil {
		o.Core, o.Own = core, own
	}
}

// written is the result the attempt wrote, for the finish hooks, so that
// they need not read it back (nil: they read the record). A reused cached
// result is known by its head only: the hooks read it when one needs all
// of it (a webhook's event carries it).
func (tn *turn) written() *spec.Result {
	res := tn.fresh.written
	if res == nil || (tn.fresh.cached && tn.w.needsResult(tn.ctx, tn.p)) {
		return nil
	}
	return res
}

// needsResult reports whether a finish hook needs the whole result of p:
// its job's webhook events, or its batch's batch.page, carry it.
func (w *Worker) needsResult(ctx context.Context, p *jobs.RunPayload) bool {
	return p.Request.Webhook != nil || (p.BatchID != "" && (w.PageEvents == nil || w.PageEvents(ctx, p)))
}

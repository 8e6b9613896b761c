// Package fresh holds the decisions of pagefleet's freshness features,
// pure (but Track) and shared by the API (which serves cache hits at submit time) and
// the worker (which revalidates, serves the hits of batch jobs and tracks
// changes):
//
//   - Key: the cache key of a fetch, a digest of its normalised URL and
//     the fields that shape its result;
//   - Decide: what a job does with the cache entry of its request (serve
//     it, revalidate it, or fetch);
//   - Storable: which results go into the cache;
//   - Compare: how a result compares with the last tracked one, with the
//     unified diff of their markdown; Track swaps it in (rdb.Tracker).
//
// The storage is rdb.Cache and rdb.Tracker; the metrics are Metrics.
package fresh

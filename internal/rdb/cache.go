package rdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// The result cache keeps, per tenant and cache key (fresh.Key: the
// normalised URL and the fields that shape a result), the last result a
// job produced, with when and by which job, and its site's validators
// (ETag, Last-Modified) for revalidation.

// Defaults of CacheConfig.
const (
	// DefaultCacheTTL is how long an entry is kept after it was written or
	// revalidated (PAGEFLEET_CACHE_TTL).
	DefaultCacheTTL = 48 * time.Hour
	// DefaultMaxCacheEntries bounds the entries of one tenant; past it the
	// oldest go.
	DefaultMaxCacheEntries = 10000
	// DefaultMaxCacheEntryBytes bounds one entry's compressed result; a
	// larger result is not cached.
	DefaultMaxCacheEntryBytes = 256 << 10
)

// CacheConfig holds the cache's settings; zero values take defaults.
type CacheConfig struct {
	TTL           time.Duration
	MaxEntries    int
	MaxEntryBytes int
}

// Cache is the result cache.
type Cache struct {
	rdb redis.UniversalClient
	cfg CacheConfig
}

// NewCache returns the cache on c.
func NewCache(c redis.UniversalClient, cfg CacheConfig) *Cache {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultCacheTTL
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxCacheEntries
	}
	if cfg.MaxEntryBytes <= 0 {
		cfg.MaxEntryBytes = DefaultMaxCacheEntryBytes
	}
	return &Cache{rdb: c, cfg: cfg}
}

// TTL is how long entries are kept.
func (c *Cache) TTL() time.Duration { return c.cfg.TTL }

func cachePrefix(tenant string) string { return "{pf}:t:" + tenant + ":cache:" }

func cacheIndexKey(tenant string) string { return "{pf}:t:" + tenant + ":cache" }

// CacheEntry is a cached result.
type CacheEntry struct {
	// Job produced the result (or last revalidated it), At is when.
	Job          string
	At           time.Time
	ETag         string
	LastModified string
	// Markdown: the result has markdown.
	Markdown bool
	core     []byte // the result's core (EncodeResult)
	head     []byte // headOf the result
}

// Result decodes the cached result.
func (e *CacheEntry) Result() (*spec.Result, error) {
	b, err := decompress(e.core)
	if err != nil {
		return nil, fmt.Errorf("cached result: %w", err)
	}
	var r spec.Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("cached result: %w", err)
	}
	return &r, nil
}

// Core is the cached result's core as a job record keeps it
// (Outcome.Core): a job that reuses the result writes it as it is.
func (e *CacheEntry) Core() []byte { return e.core }

// Head decodes the part of the cached result a job that reuses it needs
// to know (its status, final URL, headers, links and canonical URL),
// without the cost of decoding its outputs.
func (e *CacheEntry) Head() (*spec.Result, error) {
	if len(e.head) == 0 {
		return e.Result()
	}
	var r spec.Result
	if err := json.Unmarshal(e.head, &r); err != nil {
		return nil, fmt.Errorf("cached result head: %w", err)
	}
	return &r, nil
}

// Get returns tenant's entry for key (nil when there is none).
func (c *Cache) Get(ctx context.Context, tenant, key string) (*CacheEntry, error) {
	vals, err := c.rdb.HMGet(ctx, cachePrefix(tenant)+key, "res", "job", "at", "etag", "lm", "md", "head").Result()
	if err != nil {
		return nil, err
	}
	str := func(i int) string { s, _ := vals[i].(string); return s }
	if str(0) == "" || str(2) == "" {
		return nil, nil
	}
	ms, err := strconv.ParseInt(str(2), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("cache entry of %s: bad time %q", tenant, str(2))
	}
	return &CacheEntry{Job: str(1), At: time.UnixMilli(ms).UTC(), ETag: str(3), LastModified: str(4), Markdown: str(5) == "1",
		core: []byte(str(0)), head: []byte(str(6))}, nil
}

// cachePutScript writes an entry unless a newer one is there, and keeps
// the tenant's index of entries by time within the TTL and the cap.
// KEYS: entry, index. ARGV: member, job, at (ms), ttl (ms), max entries,
// result, etag, last-modified, markdown (1/0), entry prefix, trim-below
// (ms), head.
var cachePutScript = redis.NewScript(`
local at = redis.call('HGET', KEYS[1], 'at')
if at and tonumber(at) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'res', ARGV[6], 'job', ARGV[2], 'at', ARGV[3], 'etag', ARGV[7], 'lm', ARGV[8], 'md', ARGV[9], 'head', ARGV[12])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[11])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #old, 2 do redis.call('DEL', ARGV[10] .. old[i]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
`)

// ErrCacheEntryTooLarge means a result is larger than an entry may be.
var ErrCacheEntryTooLarge = errors.New("result larger than a cache entry may be")

// Put keeps res, produced by job at at, as tenant's entry for key (an
// entry written later by another job stays). The result is kept without
// its timings, cache and change fields, which belong to the job. A result
// larger than the entry cap is not kept: ErrCacheEntryTooLarge.
func (c *Cache) Put(ctx context.Context, tenant, key, job string, at time.Time, res *spec.Result) error {
	core, _, err := EncodeResult(res)
	if err != nil {
		return err
	}
	return c.PutCore(ctx, tenant, key, job, at, res, core)
}

// PutCore is Put of a result whose core (EncodeResult) is at hand: the
// job wrote it into its record.
func (c *Cache) PutCore(ctx context.Context, tenant, key, job string, at time.Time, res *spec.Result, core []byte) error {
	if len(core) > c.cfg.MaxEntryBytes {
		return ErrCacheEntryTooLarge
	}
	head, err := headOf(res)
	if err != nil {
		return err
	}
	md := "0"
	if res.Markdown != nil {
		md = "1"
	}
	now := time.Now()
	return cachePutScript.Run(ctx, c.rdb, []string{cachePrefix(tenant) + key, cacheIndexKey(tenant)},
		key, job, at.UnixMilli(), c.cfg.TTL.Milliseconds(), c.cfg.MaxEntries, core, res.Headers["etag"], res.Headers["last-modified"], md,
		cachePrefix(tenant), now.Add(-c.cfg.TTL).UnixMilli(), head).Err()
}

// cacheTouchScript records a revalidation: the entry's result is as fresh
// as at, vouched for by job. KEYS: entry, index. ARGV: member, job, at
// (ms), ttl (ms).
var cacheTouchScript = redis.NewScript(`
local at = redis.call('HGET', KEYS[1], 'at')
if not at or tonumber(at) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'job', ARGV[2], 'at', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
`)

// Touch records that job revalidated tenant's entry for key at at (its
// site answered 304): the entry counts as produced then.
func (c *Cache) Touch(ctx context.Context, tenant, key, job string, at time.Time) error {
	return cacheTouchScript.Run(ctx, c.rdb, []string{cachePrefix(tenant) + key, cacheIndexKey(tenant)},
		key, job, at.UnixMilli(), c.cfg.TTL.Milliseconds()).Err()
}

// createEndedScript admits a job under its tenant's requests per second
// and writes it as already succeeded (a cache hit: it takes no place among
// the jobs that have not ended). KEYS: rps counter, record, tenant index.
// ARGV: rps, ttl (ms), score, trim-below score, id, events channel, then
// the record's field/value pairs.
var createEndedScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 2000) end
if tonumber(ARGV[1]) > 0 and n > tonumber(ARGV[1]) then return -1 end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[6], KEYS[2])
return 1
`)

// CreateSucceeded writes job r as succeeded at its creation with res (a
// job served from the cache), under its tenant's requests per second
// (ErrRateLimited); it is not counted among the jobs that have not ended.
func (s *Jobs) CreateSucceeded(ctx context.Context, r JobRecord, res *spec.Result, rps int) error {
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	r.Counted = false
	fields := r.fields()
	at := r.CreatedAt.UTC().Format(time.RFC3339Nano)
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == "status" {
			fields[i+1] = spec.StatusSucceeded
		}
	}
	fields = append(fields, "started_at", at, "finished_at", at, "result", compress(b))
	now := time.Now()
	args := append([]any{rps, s.ttl.Milliseconds(), r.CreatedAt.UnixMicro(), now.Add(-s.ttl).UnixMicro(), r.ID, EventsChannel}, fields...)
	sec := strconv.FormatInt(now.Unix(), 10)
	res2, err := createEndedScript.Run(ctx, s.rdb, []string{"{pf}:t:" + r.Tenant + ":rps:" + sec, JobKey(r.ID), jobIndexKey(r.Tenant)}, args...).Int64()
	if err != nil {
		return err
	}
	if res2 == -1 {
		return ErrRateLimited
	}
	return nil
}

// ownFields are the fields of a result that belong to its job: two jobs
// with one result (a revalidation, a cache hit) differ only in them.
type ownFields struct {
	Timings spec.Timings    `json:"timings"`
	Cache   *spec.CacheInfo `json:"cache,omitempty"`
	Change  *spec.Change    `json:"change,omitempty"`
}

// EncodeResult splits res into its core — the result without its own
// fields, JSON compressed as job records keep results, the bytes a cache
// entry keeps — and its own fields (timings, cache, change) as JSON. A job
// record written with both (Outcome.Core, Outcome.Own) reads back as res;
// a job that reuses a cached result writes the entry's core as it is.
func EncodeResult(res *spec.Result) (core, own []byte, err error) {
	r := *res
	r.Timings, r.Cache, r.Change = spec.Timings{}, nil, nil
	b, err := json.Marshal(&r)
	if err != nil {
		return nil, nil, fmt.Errorf("encode result: %w", err)
	}
	if own, err = EncodeOwn(res); err != nil {
		return nil, nil, err
	}
	return compress(b), own, nil
}

// EncodeOwn is the own fields of res (see EncodeResult).
func EncodeOwn(res *spec.Result) ([]byte, error) {
	own, err := json.Marshal(ownFields{Timings: res.Timings, Cache: res.Cache, Change: res.Change})
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return own, nil
}

// headOf is what a job that reuses a cached result needs to know of it
// without decoding it all: the answer's status, URL and headers, and the
// page's links and canonical URL (a crawl follows them).
func headOf(res *spec.Result) ([]byte, error) {
	return json.Marshal(&spec.Result{FinalURL: res.FinalURL, StatusCode: res.StatusCode, Headers: res.Headers,
		Links: res.Links, Canonical: res.Canonical})
}

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
	raw      []byte
}

// Result decodes the cached result.
func (e *CacheEntry) Result() (*spec.Result, error) {
	b, err := decompress(e.raw)
	if err != nil {
		return nil, fmt.Errorf("cached result: %w", err)
	}
	var r spec.Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("cached result: %w", err)
	}
	return &r, nil
}

// Get returns tenant's entry for key (nil when there is none).
func (c *Cache) Get(ctx context.Context, tenant, key string) (*CacheEntry, error) {
	vals, err := c.rdb.HMGet(ctx, cachePrefix(tenant)+key, "res", "job", "at", "etag", "lm", "md").Result()
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
		raw: []byte(str(0))}, nil
}

// cachePutScript writes an entry unless a newer one is there, and keeps
// the tenant's index of entries by time within the TTL and the cap.
// KEYS: entry, index. ARGV: member, job, at (ms), ttl (ms), max entries,
// result, etag, last-modified, markdown (1/0), entry prefix, trim-below
// (ms).
var cachePutScript = redis.NewScript(`
local at = redis.call('HGET', KEYS[1], 'at')
if at and tonumber(at) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'res', ARGV[6], 'job', ARGV[2], 'at', ARGV[3], 'etag', ARGV[7], 'lm', ARGV[8], 'md', ARGV[9])
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
	r := *res
	r.Timings, r.Cache, r.Change = spec.Timings{}, nil, nil
	b, err := json.Marshal(&r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	z := compress(b)
	if len(z) > c.cfg.MaxEntryBytes {
		return ErrCacheEntryTooLarge
	}
	md := "0"
	if res.Markdown != nil {
		md = "1"
	}
	now := time.Now()
	return cachePutScript.Run(ctx, c.rdb, []string{cachePrefix(tenant) + key, cacheIndexKey(tenant)},
		key, job, at.UnixMilli(), c.cfg.TTL.Milliseconds(), c.cfg.MaxEntries, z, res.Headers["etag"], res.Headers["last-modified"], md,
		cachePrefix(tenant), now.Add(-c.cfg.TTL).UnixMilli()).Err()
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

package rdb

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
	"github.com/redis/go-redis/v9"
)

// Child is a page a crawl job discovered: the job that fetches it.
type Child struct {
	JobID string
	URL   string
}

// Found is a page a crawl job found: its URL (normalised and filtered),
// how (spec.DiscoveredLink or spec.DiscoveredSitemap) and, from a sitemap,
// its lastmod.
type Found struct {
	URL, By, Lastmod string
}

// discoverScript adds the links a crawl job found (already normalised and
// filtered) as jobs of its batch, each URL once per batch and at most
// max_pages jobs in all. A URL is claimed in the seen hash, and total and
// queued rise with the job record, in one step. It runs only while the
// parent's discovery is pending, and it also returns the children the
// parent created in an earlier run (a redelivery after a crash), so that
// their tasks can be enqueued again. The job records carry the fields
// Create writes, plus parent and depth.
//
// KEYS: batch, seen, jobs list, parent job, tenant's active count,
// tenant's job list.
// ARGV: parent id, max pages, created_at, ttl ms, job id prefix, tenant,
// depth, created_at in µs (the job list's score, plus the job's index),
// trim-below score of the job list, then for each page its URL, how it
// was found and its lastmod.
var discoverScript = redis.NewScript(`
if redis.call('HGET', KEYS[4], 'disc') ~= 'pending' then return {} end
local h = redis.call('HMGET', KEYS[1], 'status', 'cancel', 'total')
if h[1] ~= 'running' or h[2] == '1' then return {} end
local batch = string.sub(KEYS[1], 12) -- after '{pf}:batch:'
local max = tonumber(ARGV[2])
local total = tonumber(h[3])
local out = {}
for i = 10, #ARGV, 3 do
  local u = ARGV[i]
  local id = redis.call('HGET', KEYS[2], u)
  if id then
    if redis.call('HGET', '{pf}:job:' .. id, 'parent') == ARGV[1] then
      table.insert(out, id)
      table.insert(out, u)
    end
  elseif total < max then
    id = ARGV[5] .. string.format('%d', total)
    total = total + 1
    redis.call('HSET', KEYS[2], u, id)
    redis.call('HINCRBY', KEYS[1], 'total', 1)
    redis.call('HINCRBY', KEYS[1], 'queued', 1)
    local jk = '{pf}:job:' .. id
    redis.call('HSET', jk, 'tenant', ARGV[6], 'kind', 'fetch', 'status', 'queued', 'created_at', ARGV[3],
      'url', u, 'attempts', 0, 'batch_id', batch, 'counted', 1, 'parent', ARGV[1], 'depth', ARGV[7], 'disc_by', ARGV[i + 1])
    if ARGV[i + 2] ~= '' then redis.call('HSET', jk, 'lastmod', ARGV[i + 2]) end
    redis.call('PEXPIRE', jk, ARGV[4])
    redis.call('RPUSH', KEYS[3], id)
    redis.call('INCR', KEYS[5])
    redis.call('ZADD', KEYS[6], tonumber(ARGV[8]) + total - 1, id)
    table.insert(out, id)
    table.insert(out, u)
  end
end
for k = 1, 3 do redis.call('PEXPIRE', KEYS[k], ARGV[4]) end
if #out > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[9])
  redis.call('PEXPIRE', KEYS[6], ARGV[4])
end
return out
`)

// Discover adds the pages (normalised, filtered, at depth) that the crawl
// job parent found, and returns the jobs to enqueue. It may be run again
// for the same parent (it returns the same children); it adds nothing once
// the parent's discovery is done or the batch is cancelled.
func (s *Batches) Discover(ctx context.Context, b *Batch, parent string, depth int, pages []Found) ([]Child, error) {
	maxPages := spec.MaxBatchURLs
	if b.Crawl != nil && b.Crawl.MaxPages > 0 {
		maxPages = b.Crawl.MaxPages
	}
	now := time.Now()
	args := []any{parent, maxPages, now.UTC().Format(time.RFC3339Nano), s.ttl.Milliseconds(), jobPrefix(b.ID), b.Tenant, depth,
		now.UnixMicro(), now.Add(-s.ttl).UnixMicro()}
	seen := make(map[string]bool, len(pages))
	for _, f := range pages {
		if !seen[f.URL] {
			seen[f.URL] = true
			args = append(args, f.URL, f.By, f.Lastmod)
		}
	}
	keys := []string{BatchKey(b.ID), seenKey(b.ID), jobsKey(b.ID), JobKey(parent), ActiveKey(b.Tenant), JobIndexKey(b.Tenant)}
	vals, err := discoverScript.Run(ctx, s.rdb, keys, args...).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]Child, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		out = append(out, Child{JobID: vals[i], URL: vals[i+1]})
	}
	return out, nil
}

var discoveryDoneScript = redis.NewScript(`
if redis.call('HGET', KEYS[2], 'disc') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[2], 'disc', 'done')
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'open', -1) end
return 1
`)

// DiscoveryDone closes the link discovery of a crawl job (once), after its
// children's tasks were enqueued.
func (s *Batches) DiscoveryDone(ctx context.Context, batchID, parent string) error {
	return discoveryDoneScript.Run(ctx, s.rdb, []string{BatchKey(batchID), JobKey(parent)}).Err()
}

// DiscoveryPending reports whether the crawl job's link discovery is still
// to be done.
func (s *Batches) DiscoveryPending(ctx context.Context, jobID string) (bool, error) {
	v, err := s.rdb.HGet(ctx, JobKey(jobID), "disc").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return v == "pending", err
}

// RobotsFile is what a crawl learned of an origin's robots.txt: its text,
// or that everything is allowed (no file) or denied (the site failed).
type RobotsFile struct {
	Text     string
	AllowAll bool
	DenyAll  bool
}

// Robots returns the stored robots.txt of origin for the batch; ok is
// false when none was stored yet.
func (s *Batches) Robots(ctx context.Context, id, origin string) (f RobotsFile, ok bool, err error) {
	v, err := s.rdb.HGet(ctx, robotsKey(id), origin).Result()
	if errors.Is(err, redis.Nil) {
		return f, false, nil
	}
	if err != nil {
		return f, false, err
	}
	switch v {
	case "allow":
		return RobotsFile{AllowAll: true}, true, nil
	case "deny":
		return RobotsFile{DenyAll: true}, true, nil
	}
	return RobotsFile{Text: v[min(len(v), 5):]}, true, nil
}

// SetRobots stores the robots.txt of origin for the batch.
func (s *Batches) SetRobots(ctx context.Context, id, origin string, f RobotsFile) error {
	v := "text:" + f.Text
	switch {
	case f.AllowAll:
		v = "allow"
	case f.DenyAll:
		v = "deny"
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, robotsKey(id), origin, v)
		p.PExpire(ctx, robotsKey(id), s.ttl)
		return nil
	})
	return err
}

// LockRobots claims the fetch of origin's robots.txt for the batch for
// ttl; only the caller that gets true fetches it.
func (s *Batches) LockRobots(ctx context.Context, id, origin string, ttl time.Duration) (bool, error) {
	return s.rdb.SetNX(ctx, robotsKey(id)+":lock:"+strconv.Itoa(int(hash32(origin))), 1, ttl).Result()
}

func hash32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// ClaimURL claims url for the crawl batch as fetched by job (a page's
// canonical URL counts as visited): a later link to it adds no job. It
// reports whether it was not claimed before.
func (s *Batches) ClaimURL(ctx context.Context, batchID, url, job string) (bool, error) {
	return s.rdb.HSetNX(ctx, seenKey(batchID), url, job).Result()
}

package rdb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Change tracking keeps, per tenant, normalised URL and tag, the last
// tracked result of the URL (its job, time, markdown digest and markdown),
// and per tracked batch the URLs its run saw, so that the batch's
// completion can name the URLs of the previous run of its schedule (or
// tag) it did not see.

// Defaults of TrackerConfig.
const (
	// DefaultTrackTTL is how long a tracked result is kept after the last
	// job that compared with it, and a run's URL set after the run: change
	// tracking lines up runs of schedules up to a month apart.
	DefaultTrackTTL = 30 * 24 * time.Hour
	// DefaultMaxTracked bounds the tracked URL and tag pairs of one tenant;
	// past it the least recently tracked go.
	DefaultMaxTracked = 20000
	// DefaultMaxTrackedMarkdown bounds the compressed markdown kept of a
	// tracked result; a larger one is kept as its digest only (a change is
	// still seen, without its diff).
	DefaultMaxTrackedMarkdown = 128 << 10
)

// TrackerConfig holds the tracker's settings; zero values take defaults.
type TrackerConfig struct {
	TTL              time.Duration
	MaxEntries       int
	MaxMarkdownBytes int
}

// Tracker keeps the last tracked result of each tenant, URL and tag.
type Tracker struct {
	rdb redis.UniversalClient
	cfg TrackerConfig
}

// NewTracker returns the tracker on c.
func NewTracker(c redis.UniversalClient, cfg TrackerConfig) *Tracker {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTrackTTL
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxTracked
	}
	if cfg.MaxMarkdownBytes <= 0 {
		cfg.MaxMarkdownBytes = DefaultMaxTrackedMarkdown
	}
	return &Tracker{rdb: c, cfg: cfg}
}

func trackPrefix(tenant string) string { return "{pf}:t:" + tenant + ":chg:" }

func trackIndexKey(tenant string) string { return "{pf}:t:" + tenant + ":chg" }

func digest16(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Tracked is a tracked result.
type Tracked struct {
	Job    string
	At     time.Time
	Digest string
	// Markdown is the result's markdown when HasMarkdown.
	Markdown    string
	HasMarkdown bool
}

// swapScript makes a result the last tracked one of its URL and tag and
// returns the one it replaces. A later attempt of the job that is the last
// tracked one (its first attempt wrote it, then lost its outcome) is
// compared with the result before it, whose markdown is not kept: it gets
// the status of a comparison, without a diff.
// KEYS: entry, index. ARGV: job, at (ms), digest, markdown ("" when not
// kept), has markdown, ttl (ms), max entries, member, entry prefix,
// trim-below (ms).
var swapScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'job', 'at', 'dig', 'md', 'hasmd', 'pjob', 'pat', 'pdig')
local out
if f[1] and f[1] == ARGV[1] then
  out = {f[6] or '', f[7] or '', f[8] or '', '', '0'}
else
  out = {f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '0'}
  if f[1] then redis.call('HSET', KEYS[1], 'pjob', f[1], 'pat', f[2], 'pdig', f[3]) end
end
redis.call('HSET', KEYS[1], 'job', ARGV[1], 'at', ARGV[2], 'dig', ARGV[3], 'md', ARGV[4], 'hasmd', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[10])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[7])
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #old, 2 do redis.call('DEL', ARGV[9] .. old[i]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return out
`)

// Swap makes cur the last tracked result of tenant's url (normalised) and
// tag, and returns the one it replaces (nil: none), in one step, so that
// two jobs of one URL each compare with a different result.
func (t *Tracker) Swap(ctx context.Context, tenant, url, tag string, cur Tracked) (*Tracked, error) {
	member := digest16(tag, url)
	md, has := "", "0"
	if cur.HasMarkdown {
		if z := compress([]byte(cur.Markdown)); len(z) <= t.cfg.MaxMarkdownBytes {
			md, has = string(z), "1"
		}
	}
	now := time.Now()
	vals, err := swapScript.Run(ctx, t.rdb, []string{trackPrefix(tenant) + member, trackIndexKey(tenant)},
		cur.Job, cur.At.UnixMilli(), cur.Digest, md, has, t.cfg.TTL.Milliseconds(), t.cfg.MaxEntries, member,
		trackPrefix(tenant), now.Add(-t.cfg.TTL).UnixMilli()).StringSlice()
	if err != nil {
		return nil, err
	}
	if len(vals) < 5 || vals[0] == "" {
		return nil, nil
	}
	prev := &Tracked{Job: vals[0], Digest: vals[2]}
	if ms, err := strconv.ParseInt(vals[1], 10, 64); err == nil {
		prev.At = time.UnixMilli(ms).UTC()
	}
	if vals[4] == "1" && vals[3] != "" {
		b, err := decompress([]byte(vals[3]))
		if err == nil {
			prev.Markdown, prev.HasMarkdown = string(b), true
		}
	}
	return prev, nil
}

// TrackScope is the line of runs a tracked batch belongs to: its
// schedule's, else its tag's.
func TrackScope(scheduleID, tag string) string {
	if scheduleID != "" {
		return "s:" + scheduleID
	}
	return "t:" + tag
}

// trackRunKey is the set of URLs the last completed run of a tenant's
// scope saw.
func trackRunKey(tenant, scope string) string {
	return "{pf}:t:" + tenant + ":chgrun:" + digest16(scope)
}

// trackedKey is the set of URLs a tracked batch's run saw so far.
func trackedKey(batchID string) string { return BatchKey(batchID) + ":tracked" }

// batchTrackLua counts a finished job of a tracked batch: its change
// status among the batch's changes, its URL among those its run saw.
const batchTrackLua = `
local function batch_track(b, status, url)
  local bk = '{pf}:batch:' .. b
  if url == '' or not redis.call('HGET', bk, 'track') then return end
  if status ~= '' then redis.call('HINCRBY', bk, 'chg_' .. status, 1) end
  redis.call('SADD', bk .. ':tracked', url)
  redis.call('PEXPIRE', bk .. ':tracked', redis.call('PTTL', bk))
end
`

// settleTrackLua runs when a tracked batch completes (settleLua): the URLs
// of the previous run of its scope that it did not see are its removed
// ones (at most 1000 named: spec.MaxRemovedURLs), and its URLs become the
// previous run of the next. ARGV[3] is how long a run's URLs are kept (ms).
const settleTrackLua = `
local function settle_track(bk)
  local tk = redis.call('HGET', bk, 'track')
  if not tk then return end
  local run = bk .. ':tracked'
  local gone = redis.call('SDIFF', tk, run)
  redis.call('HSET', bk, 'chg_removed', #gone)
  if #gone > 0 then
    table.sort(gone)
    local keep = {}
    for i = 1, math.min(#gone, 1000) do keep[i] = gone[i] end
    redis.call('HSET', bk, 'chg_removed_urls', cjson.encode(keep))
  end
  if redis.call('EXISTS', run) == 1 then
    redis.call('RENAME', run, tk)
    redis.call('PEXPIRE', tk, ARGV[3])
  else
    redis.call('DEL', tk)
  end
end
`

// changesOf decodes a tracked batch's changes from its hash fields (the
// track, chg_new, chg_same, chg_changed, chg_removed and
// chg_removed_urls of viewFields).
func changesOf(track, nw, same, changed, removed, urls string) *spec.Changes {
	if track == "" {
		return nil
	}
	num := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	c := &spec.Changes{New: num(nw), Same: num(same), Changed: num(changed), Removed: num(removed)}
	if urls != "" {
		_ = json.Unmarshal([]byte(urls), &c.RemovedURLs)
	}
	return c
}

package rdb

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hosts is the politeness gate: how many of a tenant's jobs run against one
// host, how far apart they start, whether the host asked for a pause, and
// the same for the whole fleet. Keys, per tenant and host (the fleet's are
// those of tenant ""):
//
//	{pf}:h:<tenant>|<host>:run    zset    running jobs by lease end (ms)
//	{pf}:h:<tenant>|<host>:wait   zset    waiting tasks (queue:task id) by first arrival (ms)
//	{pf}:h:<tenant>|<host>:seen   hash    waiting task → when it last asked (ms)
//	{pf}:h:<tenant>|<host>:st     hash    next (earliest next start, ms), pause (until, ms),
//	                                      level (adaptive back-off steps)
//
// Times are Redis's clock. A job takes a place (Acquire) before it runs and
// gives it back (Release) when it ends; its lease is renewed while it runs,
// so a dead worker's places lapse.
type Hosts struct {
	rdb redis.UniversalClient
}

// NewHosts returns the politeness gate on c.
func NewHosts(c redis.UniversalClient) *Hosts { return &Hosts{rdb: c} }

type hostKeys struct{ run, wait, seen, st string }

func hostKeysOf(tenant, host string) hostKeys {
	p := "{pf}:h:" + tenantEscaper.Replace(tenant) + "|" + host + ":"
	return hostKeys{run: p + "run", wait: p + "wait", seen: p + "seen", st: p + "st"}
}

// HostAsk is one job asking its host for a place.
type HostAsk struct {
	Tenant, Host, Job string
	// Member names the job's task in the wait line, "queue:task id", so
	// that whoever frees a place can wake it.
	Member     string
	Limit      int           // the tenant's jobs at once on the host
	Delay      time.Duration // between two of the tenant's starts
	Fleet      int           // all tenants' jobs at once on the host
	FleetDelay time.Duration
	Lease      time.Duration
}

// Reasons a job is told to wait.
const (
	HostPaused      = "paused"      // the host asked for a pause (429, 503)
	HostConcurrency = "concurrency" // the tenant runs as many jobs there as it may
	HostQueue       = "queue"       // other jobs wait ahead of it
	HostFleet       = "fleet"       // all tenants together run as many as the operator allows
	HostDelay       = "delay"       // too soon after the last start
	HostEnded       = "ended"       // the job ended meanwhile: drop the task
)

// HostAnswer is the gate's answer.
type HostAnswer struct {
	// Reason is "" when the job has its place, else why it waits.
	Reason string
	// Waited is how long the job has been waiting (since its first ask).
	Waited time.Duration
	// Wait is how long until the host is free for it, when known (a delay,
	// a pause); 0 when it waits for a place to free.
	Wait time.Duration
	// Rank is how many waiters that asked lately are ahead of the job in
	// the wait line (0: none); for a job given its place, how many jobs
	// wait in line after it.
	Rank int
	// Level is the host's adaptive back-off steps (0: none): the job runs
	// one at a time, and a good answer takes a step back (Good).
	Level int
}

// staleWaiter is how long a waiting task may stay silent before it no
// longer holds its place in line (its longest fallback retry is 30 s).
const staleWaiter = 90 * time.Second

// activeWaiter is how long after its last ask (beyond the host's delay) a
// waiter still holds newcomers back: a waiter that asked longer ago sleeps
// until it is woken, and a newcomer may take a free place meanwhile (the
// queue delivers a woken task behind every task pending before it, so
// waiting for it would leave the place empty).
const activeWaiter = 2 * time.Second

// hostTTL is how long a host's keys live after their last use.
const hostTTL = time.Hour

var acquireHostScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local st = redis.call('HGET', KEYS[7], 'status')
if not st or st == 'succeeded' or st == 'failed' or st == 'cancelled' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
  return {'ended', 0, 0, 0, 0}
end
local lease, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local fleetMember = ARGV[9] .. ':' .. ARGV[1]
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  -- a place this job holds already (another attempt of it)
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('ZADD', KEYS[5], now + lease, fleetMember)
  return {'', 0, 0, 0, tonumber(redis.call('HGET', KEYS[4], 'level') or '0')}
end
-- waiters that went silent give up their place
for _ = 1, 10 do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not head or head == ARGV[2] then break end
  local seen = tonumber(redis.call('HGET', KEYS[3], head) or '0')
  if seen >= now - tonumber(ARGV[10]) then break end
  redis.call('ZREM', KEYS[2], head)
  redis.call('HDEL', KEYS[3], head)
end
local s = redis.call('HMGET', KEYS[4], 'next', 'pause', 'level')
local nextStart, pause, level = tonumber(s[1] or '0'), tonumber(s[2] or '0'), tonumber(s[3] or '0')
local limit = tonumber(ARGV[3])
if level > 0 then limit = 1 end
local first = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not first then
  redis.call('ZADD', KEYS[2], now, ARGV[2])
  first = now
end
first = tonumber(first)
redis.call('HSET', KEYS[3], ARGV[2], now)
-- Only the waiters ahead that asked lately hold a newcomer back: one
-- that sleeps until it is woken (or until its come-back time) does not
-- keep a free place empty. The scan is bounded.
local rank = redis.call('ZRANK', KEYS[2], ARGV[2])
if rank > 0 then
  local fresh = now - (tonumber(ARGV[4]) + tonumber(ARGV[11]))
  local ahead = redis.call('ZRANGE', KEYS[2], 0, math.min(rank, 64) - 1)
  local seen = redis.call('HMGET', KEYS[3], unpack(ahead))
  rank = 0
  for i = 1, #ahead do
    if tonumber(seen[i] or '0') >= fresh then rank = rank + 1 end
  end
end
local free = limit - redis.call('ZCARD', KEYS[1])
local fleetFree = tonumber(ARGV[5]) - redis.call('ZCARD', KEYS[5])
local fleetNext = tonumber(redis.call('HGET', KEYS[6], 'next') or '0')
local reason, wait = '', 0
if pause > now then
  reason, wait = 'paused', pause - now
elseif free <= 0 then
  reason = 'concurrency'
elseif rank >= free then
  reason = 'queue'
elseif fleetFree <= 0 then
  reason = 'fleet'
elseif now < nextStart or now < fleetNext then
  reason, wait = 'delay', math.max(nextStart, fleetNext) - now
end
for _, k in ipairs({KEYS[2], KEYS[3], KEYS[4]}) do redis.call('PEXPIRE', k, ttl) end
if reason ~= '' then
  return {reason, now - first, wait, rank, level}
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZADD', KEYS[5], now + lease, fleetMember)
redis.call('HSET', KEYS[4], 'next', now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[6], 'next', now + tonumber(ARGV[6]))
for _, k in ipairs({KEYS[1], KEYS[5], KEYS[6]}) do redis.call('PEXPIRE', k, ttl) end
return {'', now - first, 0, redis.call('ZCARD', KEYS[2]), level}
`)

// Acquire asks for a place for a.Job on its host: Reason "" is a place
// (renew it with Renew while the job runs, give it back with Release);
// otherwise the job waits in line (its task is to come back later).
func (s *Hosts) Acquire(ctx context.Context, a HostAsk) (HostAnswer, error) {
	k, g := hostKeysOf(a.Tenant, a.Host), hostKeysOf("", a.Host)
	res, err := acquireHostScript.Run(ctx, s.rdb,
		[]string{k.run, k.wait, k.seen, k.st, g.run, g.st, JobKey(a.Job)},
		a.Job, a.Member, a.Limit, a.Delay.Milliseconds(), a.Fleet, a.FleetDelay.Milliseconds(),
		a.Lease.Milliseconds(), hostTTL.Milliseconds(), tenantEscaper.Replace(a.Tenant), staleWaiter.Milliseconds(),
		activeWaiter.Milliseconds()).Slice()
	if err != nil {
		return HostAnswer{}, err
	}
	if len(res) != 5 {
		return HostAnswer{}, fmt.Errorf("host gate: unexpected reply %v", res)
	}
	reason, _ := res[0].(string)
	waited, _ := res[1].(int64)
	wait, _ := res[2].(int64)
	rank, _ := res[3].(int64)
	level, _ := res[4].(int64)
	return HostAnswer{Reason: reason, Waited: time.Duration(waited) * time.Millisecond,
		Wait: time.Duration(wait) * time.Millisecond, Rank: int(rank), Level: int(level)}, nil
}

var paceHostScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local d1, d2 = tonumber(ARGV[1]), tonumber(ARGV[2])
local s1 = tonumber(redis.call('HGET', KEYS[1], 'sent') or '0')
local s2 = tonumber(redis.call('HGET', KEYS[2], 'sent') or '0')
local wait = 0
if d1 > 0 then wait = math.max(wait, s1 + d1 - now) end
if d2 > 0 then wait = math.max(wait, s2 + d2 - now) end
if wait > 0 then return wait end
if d1 > 0 then
  redis.call('HSET', KEYS[1], 'sent', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if d2 > 0 then
  redis.call('HSET', KEYS[2], 'sent', now)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 0
`)

// Pace is asked right before a job's request to its host: it answers how
// long to wait so that the request leaves at least delay after the
// tenant's last one (and fleetDelay after the fleet's), or 0 after
// recording this request's time. Acquire spaces the jobs' starts already;
// Pace takes out what the moments between a start and its request add.
func (s *Hosts) Pace(ctx context.Context, tenant, host string, delay, fleetDelay time.Duration) (time.Duration, error) {
	k, g := hostKeysOf(tenant, host), hostKeysOf("", host)
	ms, err := paceHostScript.Run(ctx, s.rdb, []string{k.st, g.st}, delay.Milliseconds(), fleetDelay.Milliseconds(),
		hostTTL.Milliseconds()).Int64()
	return time.Duration(ms) * time.Millisecond, err
}

var sentHostScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = now - tonumber(ARGV[4])
for i = 1, 2 do
  if tonumber(ARGV[i]) > 0 then
    local s = tonumber(redis.call('HGET', KEYS[i], 'sent') or '0')
    if at > s then
      redis.call('HSET', KEYS[i], 'sent', at)
      redis.call('PEXPIRE', KEYS[i], ARGV[3])
    end
  end
end
return 0
`)

// Sent is told when a paced request really left (its headers are written,
// or the browser sends it) or its answer began, ago before now: the host's
// last request time moves up to then (never back), so that the moments
// between Pace and the site's start on the request — which grow on a
// loaded machine — do not shorten the next request's delay. A next request
// still waiting in Pace's loop sees the later time.
func (s *Hosts) Sent(ctx context.Context, tenant, host string, delay, fleetDelay, ago time.Duration) error {
	k, g := hostKeysOf(tenant, host), hostKeysOf("", host)
	return sentHostScript.Run(ctx, s.rdb, []string{k.st, g.st}, delay.Milliseconds(), fleetDelay.Milliseconds(),
		hostTTL.Milliseconds(), max(ago, 0).Milliseconds()).Err()
}

var renewHostScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
end
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
end
return 1
`)

// Renew extends a running job's place on its host for lease.
func (s *Hosts) Renew(ctx context.Context, tenant, host, job string, lease time.Duration) error {
	k, g := hostKeysOf(tenant, host), hostKeysOf("", host)
	return renewHostScript.Run(ctx, s.rdb, []string{k.run, g.run}, job,
		tenantEscaper.Replace(tenant)+":"+job, lease.Milliseconds()).Err()
}

var releaseHostScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('ZRANGE', KEYS[3], 0, 0)[1] or ''
`)

// Release gives a job's place on its host back and returns the task first
// in line ("queue:task id", "" for none), for the caller to wake.
func (s *Hosts) Release(ctx context.Context, tenant, host, job string) (string, error) {
	k, g := hostKeysOf(tenant, host), hostKeysOf("", host)
	return releaseHostScript.Run(ctx, s.rdb, []string{k.run, g.run, k.wait}, job, tenantEscaper.Replace(tenant)+":"+job).Text()
}

// Head returns the task first in the tenant's line for host ("" for none).
func (s *Hosts) Head(ctx context.Context, tenant, host string) (string, error) {
	v, err := s.rdb.ZRange(ctx, hostKeysOf(tenant, host).wait, 0, 0).Result()
	if err != nil || len(v) == 0 {
		return "", err
	}
	return v[0], nil
}

var pauseHostScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pauseEnd = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'pause') or '0')
if pauseEnd > cur then redis.call('HSET', KEYS[1], 'pause', pauseEnd) end
local level = redis.call('HINCRBY', KEYS[1], 'level', 1)
if level > tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], 'level', ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[3]), tonumber(ARGV[1]) * 2))
return level - 1
`)

// Level is how many back-off steps a tenant's host took (0: none).
func (s *Hosts) Level(ctx context.Context, tenant, host string) (int, error) {
	n, err := s.rdb.HGet(ctx, hostKeysOf(tenant, host).st, "level").Int()
	if err == redis.Nil {
		return 0, nil
	}
	return n, err
}

// Pause stops the tenant's jobs to host for d and takes one more back-off
// step (at most maxLevel); it returns the steps before this one.
func (s *Hosts) Pause(ctx context.Context, tenant, host string, d time.Duration, maxLevel int) (int, error) {
	return pauseHostScript.Run(ctx, s.rdb, []string{hostKeysOf(tenant, host).st}, d.Milliseconds(), maxLevel, hostTTL.Milliseconds()).Int()
}

var goodHostScript = redis.NewScript(`
local level = tonumber(redis.call('HGET', KEYS[1], 'level') or '0')
if level <= 0 then return 0 end
redis.call('HSET', KEYS[1], 'level', level - 1)
return level - 1
`)

// Good takes one back-off step back after a good answer from host; it
// returns the steps left.
func (s *Hosts) Good(ctx context.Context, tenant, host string) (int, error) {
	return goodHostScript.Run(ctx, s.rdb, []string{hostKeysOf(tenant, host).st}).Int()
}

package rdb

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Proxies keeps, for the whole fleet, which upstream proxies work and which
// one a job takes. Keys (a proxy is named by its egress key, a hash of its
// URL that reveals nothing of it):
//
//	{pf}:px:<key>                      hash    fails, window (ms), aside (until, ms), streak,
//	                                           trial (until, ms): the proxy's health
//	{pf}:px:<key>:host:<host>          string  the proxy was blocked by host          block TTL
//	{pf}:pxr:<tenant>|<pool>:rr        string  round-robin counter                    1 day
//	{pf}:pxr:<tenant>|<pool>:used      hash    place in pool → jobs sent (least_used)  1 hour idle
//
// Times are the callers' clocks (ms), passed in.
type Proxies struct {
	rdb redis.UniversalClient
}

// NewProxies returns the proxy state on c.
func NewProxies(c redis.UniversalClient) *Proxies { return &Proxies{rdb: c} }

func pxKey(key string) string { return "{pf}:px:" + key }

func pxHostKey(key, host string) string { return "{pf}:px:" + key + ":host:" + host }

func pxPoolKey(tenant, pool string) string {
	return "{pf}:pxr:" + tenantEscaper.Replace(tenant) + "|" + pool
}

// PickArgs asks for one proxy of a pool.
type PickArgs struct {
	Tenant, Pool string
	// Keys are the pool's proxies, in the pool's order.
	Keys []string
	// Rotation is round_robin, random or least_used.
	Rotation string
	// Order is the order to try for random (0-based places).
	Order []int
	// Host is the job's host: proxies it blocked lately come last.
	Host string
	// Exclude marks places the job already tried.
	Exclude []bool
	Now     time.Time
	// Trial is how long one test of a proxy whose pause ended may take
	// before another job may test it.
	Trial time.Duration
}

// Pick kinds.
const (
	PickHealthy  = 0 // a working proxy
	PickTrial    = 1 // a proxy back from a pause, tested by this job
	PickFallback = 2 // every candidate is set aside or was blocked by the host: the least bad one
)

// Pick returns the place (0-based) of the proxy a job takes and how it
// was picked; -1 when every place is excluded.
func (p *Proxies) Pick(ctx context.Context, a PickArgs) (int, int, error) {
	n := len(a.Keys)
	if n == 0 {
		return -1, 0, nil
	}
	base := pxPoolKey(a.Tenant, a.Pool)
	keys := make([]string, 0, 2+2*n)
	keys = append(keys, base+":rr", base+":used")
	for _, k := range a.Keys {
		keys = append(keys, pxKey(k))
	}
	for _, k := range a.Keys {
		keys = append(keys, pxHostKey(k, a.Host))
	}
	var excl strings.Builder
	for i := 0; i < n; i++ {
		if i < len(a.Exclude) && a.Exclude[i] {
			excl.WriteByte('1')
		} else {
			excl.WriteByte('0')
		}
	}
	order := make([]string, len(a.Order))
	for i, o := range a.Order {
		order[i] = strconv.Itoa(o + 1)
	}
	res, err := pickScript.Run(ctx, p.rdb, keys, a.Now.UnixMilli(), a.Rotation, n, excl.String(),
		strings.Join(order, ","), a.Trial.Milliseconds()).Int64Slice()
	if err != nil {
		return -1, 0, err
	}
	if res[0] <= 0 {
		return -1, 0, nil
	}
	return int(res[0] - 1), int(res[1]), nil
}

var pickScript = redis.NewScript(`
local now, mode, n, excl, trialTTL = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[6])
local order = {}
if mode == 'round_robin' then
  local start = redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], 86400000)
  for i = 0, n - 1 do order[#order + 1] = ((start - 1 + i) % n) + 1 end
elseif mode == 'least_used' then
  local used = {}
  for i = 1, n do
    used[i] = tonumber(redis.call('HGET', KEYS[2], tostring(i)) or '0')
    order[i] = i
  end
  table.sort(order, function(a, b)
    if used[a] == used[b] then return a < b end
    return used[a] < used[b]
  end)
else
  for s in string.gmatch(ARGV[5], '%d+') do order[#order + 1] = tonumber(s) end
end
local aside_fb, blocked_fb = nil, nil
local chosen, kind = nil, 0
for _, i in ipairs(order) do
  if string.sub(excl, i, i) ~= '1' then
    local st = KEYS[2 + i]
    local aside = tonumber(redis.call('HGET', st, 'aside') or '0')
    local blocked = redis.call('EXISTS', KEYS[2 + n + i]) == 1
    if blocked then
      blocked_fb = blocked_fb or i
    elseif aside == 0 then
      chosen, kind = i, 0
      break
    elseif aside <= now and tonumber(redis.call('HGET', st, 'trial') or '0') <= now then
      redis.call('HSET', st, 'trial', now + trialTTL)
      chosen, kind = i, 1
      break
    else
      aside_fb = aside_fb or i
    end
  end
end
if not chosen then
  chosen = aside_fb or blocked_fb
  kind = 2
end
if not chosen then return {0, 0} end
if mode == 'least_used' then
  redis.call('HINCRBY', KEYS[2], tostring(chosen), 1)
  redis.call('PEXPIRE', KEYS[2], 3600000)
end
return {chosen, kind}
`)

// Health bounds a proxy's failures.
type Health struct {
	// Threshold failures within Window set the proxy aside.
	Threshold int
	Window    time.Duration
	// Aside is the first pause; each failed test doubles it, up to MaxAside.
	Aside, MaxAside time.Duration
}

// Fail records a failure of the proxy (it could not be reached or refused
// the credentials). It returns when the proxy is set aside until, zero
// when it is not (or was already).
func (p *Proxies) Fail(ctx context.Context, key string, now time.Time, h Health) (time.Time, error) {
	until, err := failScript.Run(ctx, p.rdb, []string{pxKey(key)}, now.UnixMilli(), h.Threshold,
		h.Window.Milliseconds(), h.Aside.Milliseconds(), h.MaxAside.Milliseconds()).Int64()
	if err != nil || until == 0 {
		return time.Time{}, err
	}
	return time.UnixMilli(until), nil
}

var failScript = redis.NewScript(`
local now, threshold, window, base, maxp = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'fails', 'window', 'aside', 'streak', 'trial')
local fails, ws, aside, streak, trial = tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0'), tonumber(h[4] or '0'), tonumber(h[5] or '0')
local function setAside()
  streak = streak + 1
  local d = base
  for _ = 2, streak do d = d * 2 end
  if d > maxp then d = maxp end
  aside = now + d
  redis.call('HSET', KEYS[1], 'aside', aside, 'streak', streak, 'trial', 0, 'fails', 0, 'window', now)
  redis.call('PEXPIRE', KEYS[1], maxp + 3600000)
  return aside
end
if aside > now then return 0 end
if trial > 0 then return setAside() end
if now - ws > window then ws, fails = now, 0 end
fails = fails + 1
if fails >= threshold then return setAside() end
redis.call('HSET', KEYS[1], 'fails', fails, 'window', ws)
redis.call('PEXPIRE', KEYS[1], maxp + 3600000)
return 0
`)

// OK records a request the proxy carried: a proxy under test is back, and
// its count of failures starts again. It reports whether a test passed.
func (p *Proxies) OK(ctx context.Context, key string) (bool, error) {
	n, err := okScript.Run(ctx, p.rdb, []string{pxKey(key)}).Int64()
	return n == 1, err
}

var okScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'fails', 'trial')
if tonumber(h[2] or '0') > 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
if tonumber(h[1] or '0') > 0 then redis.call('HSET', KEYS[1], 'fails', 0) end
return 0
`)

// BlockedBy records that host blocked the proxy: jobs to host take the
// pool's other proxies first for ttl.
func (p *Proxies) BlockedBy(ctx context.Context, key, host string, ttl time.Duration) error {
	return p.rdb.Set(ctx, pxHostKey(key, host), 1, ttl).Err()
}

// Aside reports, for each key, until when the proxy is set aside (zero:
// in use).
func (p *Proxies) Aside(ctx context.Context, keys []string) ([]time.Time, error) {
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HGet(ctx, pxKey(k), "aside")
	}
	_, _ = pipe.Exec(ctx)
	out := make([]time.Time, len(keys))
	for i, c := range cmds {
		ms, err := c.Int64()
		if err == nil && ms > 0 {
			out[i] = time.UnixMilli(ms)
		} else if err != nil && err != redis.Nil {
			return nil, err
		}
	}
	return out, nil
}

// Usable reports whether the proxy is set aside now, and whether host
// blocked it lately.
func (p *Proxies) Usable(ctx context.Context, key, host string, now time.Time) (aside, blocked bool, err error) {
	pipe := p.rdb.Pipeline()
	a := pipe.HGet(ctx, pxKey(key), "aside")
	b := pipe.Exists(ctx, pxHostKey(key, host))
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return false, false, err
	}
	ms, _ := a.Int64()
	return ms > now.UnixMilli(), b.Val() == 1, nil
}

package rdb

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bulk slots: each tenant has a sorted set of its running bulk (batch) jobs,
// scored by the expiry of their lease. A worker takes a slot before it runs a
// batch job, renews it while the job runs and gives it back at the end; the
// slots of a worker that dies lapse with their lease (the job itself runs
// again at once: see Workers).

func slotsKey(tenant string) string { return "{pf}:t:" + tenant + ":bulk" }

// Results of AcquireSlot.
const (
	SlotTaken = "ok"    // the job holds a slot
	SlotHeld  = "held"  // another attempt of this job holds a slot and runs it
	SlotEnded = "ended" // the job ended (or is gone): run nothing, take nothing
)

var acquireSlotScript = redis.NewScript(ownerAliveLua + `
local f = redis.call('HMGET', KEYS[2], 'status', 'owner')
local st = f[1]
if not st or st == 'succeeded' or st == 'failed' or st == 'cancelled' then return 'ended' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if held and tonumber(held) > now then
  -- a live slot of this job: another attempt runs it, unless the job is
  -- not running (a slot an earlier attempt failed to give back) or its
  -- owner's worker died: take it
  if st == 'running' and not owner_dead(f[2]) then return 'held' end
elseif ARGV[4] ~= '1' and redis.call('ZCOUNT', KEYS[1], now, '+inf') >= tonumber(ARGV[2]) then
  return 'busy'
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 4)
return 'ok'
`)

// AcquireSlot takes a slot for the tenant's bulk job jobID for lease when
// fewer than cap unexpired slots are held (force takes one regardless: a
// job on its last attempt must run rather than be dropped).
func (s *Batches) AcquireSlot(ctx context.Context, tenant, jobID string, cap int, lease time.Duration, force bool) (string, error) {
	f := "0"
	if force {
		f = "1"
	}
	return acquireSlotScript.Run(ctx, s.rdb, []string{slotsKey(tenant), JobKey(jobID)},
		jobID, cap, lease.Milliseconds(), f).Text()
}

var renewSlotScript = redis.NewScript(`
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return 1
`)

// RenewSlot extends the job's slot; false means it was reaped.
func (s *Batches) RenewSlot(ctx context.Context, tenant, jobID string, lease time.Duration) (bool, error) {
	n, err := renewSlotScript.Run(ctx, s.rdb, []string{slotsKey(tenant)}, jobID, lease.Milliseconds()).Int()
	return n == 1, err
}

// ReleaseSlot gives the job's slot back.
func (s *Batches) ReleaseSlot(ctx context.Context, tenant, jobID string) error {
	return s.rdb.ZRem(ctx, slotsKey(tenant), jobID).Err()
}

// RunningBulk is how many unexpired bulk slots the tenant holds.
func (s *Batches) RunningBulk(ctx context.Context, tenant string) (int64, error) {
	return s.rdb.ZCount(ctx, slotsKey(tenant), strconv.FormatInt(time.Now().UnixMilli(), 10), "+inf").Result()
}

package rdb

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bulk slots: each tenant has a sorted set of its running bulk (batch) jobs,
// scored by the expiry of their lease. A worker takes a slot before it runs a
// batch job, renews it while the job runs and gives it back at the end; a
// worker that dies leaves slots that lapse with their lease, and the reaper
// puts their jobs back in the queue.

func slotsKey(tenant string) string { return "{pf}:t:" + tenant + ":bulk" }

// slotTenantsKey lists the tenants that have (or had) bulk slots, for the
// reaper.
const slotTenantsKey = "{pf}:bulk:tenants"

// Results of AcquireSlot.
const (
	SlotTaken = "ok"    // the job holds a slot
	SlotHeld  = "held"  // another attempt of this job holds a slot and runs it
	SlotEnded = "ended" // the job ended (or is gone): run nothing, take nothing
)

var acquireSlotScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[2], 'status')
if not st or st == 'succeeded' or st == 'failed' or st == 'cancelled' then return 'ended' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if held and tonumber(held) > now then
  -- a live slot of this job: another attempt runs it, unless the job is
  -- not running (a slot an earlier attempt failed to give back: take it)
  if st == 'running' then return 'held' end
elseif ARGV[4] ~= '1' and redis.call('ZCOUNT', KEYS[1], now, '+inf') >= tonumber(ARGV[2]) then
  return 'busy'
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 4)
redis.call('SADD', KEYS[3], ARGV[5])
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
	return acquireSlotScript.Run(ctx, s.rdb, []string{slotsKey(tenant), JobKey(jobID), slotTenantsKey},
		jobID, cap, lease.Milliseconds(), f, tenant).Text()
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

var reapScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 200)
for _, id in ipairs(ids) do redis.call('ZREM', KEYS[1], id) end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return ids
`)

// ReapSlots removes the tenant's lapsed slots and returns their job ids:
// each one's worker stopped renewing it (it died), so exactly one caller
// gets to put the job back in the queue.
func (s *Batches) ReapSlots(ctx context.Context, tenant string) ([]string, error) {
	return reapScript.Run(ctx, s.rdb, []string{slotsKey(tenant), slotTenantsKey}, tenant).StringSlice()
}

// SlotTenants lists the tenants that hold bulk slots.
func (s *Batches) SlotTenants(ctx context.Context) ([]string, error) {
	return s.rdb.SMembers(ctx, slotTenantsKey).Result()
}

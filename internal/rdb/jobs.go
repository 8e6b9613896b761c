// Package jobstore keeps job records and results in Redis: one hash per job
// with a retention TTL, a per-tenant index for listing, and compare-and-set
// scripts for every state change so that a cancelled or finished job is never
// overwritten. Terminal changes are published so that waiting API calls wake
// at once.
package rdb

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Channels used for notifications.
const (
	EventsChannel = "{pf}:events"
	CancelChannel = "{pf}:cancel"
)

// ErrJobNotFound means no such job for that tenant (or it expired).
var ErrJobNotFound = errors.New("job not found")

// ErrJobEnded means the job already ended.
var ErrJobEnded = errors.New("job already ended")

// Jobs reads and writes job records.
type Jobs struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// NewJobs returns a store whose records live for ttl.
func NewJobs(rdb redis.UniversalClient, ttl time.Duration) *Jobs {
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	return &Jobs{rdb: rdb, ttl: ttl}
}

// TTL is the retention of records.
func (s *Jobs) TTL() time.Duration { return s.ttl }

// JobKey is the Redis key of a job record.
func JobKey(id string) string { return "{pf}:job:" + id }

func jobIndexKey(tenant string) string { return "{pf}:t:" + tenant + ":jobs" }

var idEnc = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewID returns a new time-ordered job id with the given prefix ("job").
func NewID(prefix string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return prefix + "_" + idEnc.EncodeToString(b[:])
}

// JobRecord is what Create writes.
type JobRecord struct {
	ID        string
	Tenant    string
	Kind      string
	URL       string
	CreatedAt time.Time
	SessionID string
	BatchID   string
	Webhook   *spec.Webhook
	// Counted marks a job that holds a place in the tenant's active-job
	// count (see Gate); finishing or cancelling it gives the place back.
	Counted bool
	// ListOrder is added, in microseconds, to the creation time that orders
	// the tenant's job list: the jobs of a batch share the batch's creation
	// time, and their index in the batch keeps their places distinct.
	ListOrder int
	// ScheduleID and ScheduledAt name the schedule run that created the
	// job (a fetch schedule's).
	ScheduleID  string
	ScheduledAt time.Time
}

// fields are the field/value pairs of r's queued record.
func (r *JobRecord) fields() []any {
	fields := []any{"tenant", r.Tenant, "kind", r.Kind, "status", spec.StatusQueued,
		"created_at", r.CreatedAt.UTC().Format(time.RFC3339Nano), "url", r.URL, "attempts", 0}
	if r.SessionID != "" {
		fields = append(fields, "session_id", r.SessionID)
	}
	if r.BatchID != "" {
		fields = append(fields, "batch_id", r.BatchID)
	}
	if r.Counted {
		fields = append(fields, "counted", 1)
	}
	if r.Webhook != nil {
		b, _ := json.Marshal(r.Webhook)
		fields = append(fields, "webhook", b)
	}
	if r.ScheduleID != "" {
		fields = append(fields, "schedule_id", r.ScheduleID, "scheduled_at", r.ScheduledAt.UTC().Format(time.RFC3339Nano))
	}
	return fields
}

// Create writes a new queued record into pipe (the caller executes it, with
// other writes such as the session line, in one round trip).
func (s *Jobs) Create(ctx context.Context, pipe redis.Pipeliner, r JobRecord) {
	pipe.HSet(ctx, JobKey(r.ID), r.fields()...)
	pipe.PExpire(ctx, JobKey(r.ID), s.ttl)
	pipe.ZAdd(ctx, jobIndexKey(r.Tenant), redis.Z{Score: float64(r.CreatedAt.UnixMicro() + int64(r.ListOrder)), Member: r.ID})
	if r.BatchID == "" {
		s.TrimIndex(ctx, pipe, r.Tenant)
	}
}

// TrimIndex drops from the tenant's job list the entries older than the
// records' lifetime and renews the list's own expiry, in pipe. Create does
// it for a job outside batches; a batch does it once per chunk of jobs.
func (s *Jobs) TrimIndex(ctx context.Context, pipe redis.Pipeliner, tenant string) {
	pipe.ZRemRangeByScore(ctx, jobIndexKey(tenant), "-inf", strconv.FormatInt(time.Now().Add(-s.ttl).UnixMicro(), 10))
	pipe.PExpire(ctx, jobIndexKey(tenant), s.ttl)
}

// JobIndexKey is the sorted set that lists the tenant's jobs for GET /v1/jobs,
// scored by creation time in microseconds (plus JobRecord.ListOrder). Scripts
// that create jobs themselves (a crawl's discovered pages) add to it.
func JobIndexKey(tenant string) string { return jobIndexKey(tenant) }

// ActiveKey counts the tenant's jobs that have not ended.
func ActiveKey(tenant string) string { return "{pf}:t:" + tenant + ":active" }

var gateScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 2000) end
if tonumber(ARGV[1]) > 0 and n > tonumber(ARGV[1]) then return -1 end
local active = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > 0 and active + tonumber(ARGV[3]) > tonumber(ARGV[2]) then return -2 end
redis.call('INCRBY', KEYS[2], ARGV[3])
return active + tonumber(ARGV[3])
`)

// Gate errors.
var (
	ErrRateLimited = errors.New("over the tenant's requests per second")
	ErrQueueFull   = errors.New("over the tenant's queued jobs")
)

// Gate admits n new jobs for tenant: at most rps requests in the current
// second and at most maxActive jobs not yet ended. On success the jobs hold
// places in the active count until Release or their end.
func (s *Jobs) Gate(ctx context.Context, tenant string, rps, maxActive, n int) error {
	sec := strconv.FormatInt(time.Now().Unix(), 10)
	r, err := gateScript.Run(ctx, s.rdb, []string{"{pf}:t:" + tenant + ":rps:" + sec, ActiveKey(tenant)}, rps, maxActive, n).Int64()
	if err != nil {
		return err
	}
	switch r {
	case -1:
		return ErrRateLimited
	case -2:
		return ErrQueueFull
	}
	return nil
}

// createGatedScript is gateScript for one job followed by what Create
// writes and, for a session job, the job's place at the end of its
// session's line: one round trip and no MULTI/EXEC. KEYS: rps counter,
// active count, record, tenant index[, session line]. ARGV: rps,
// maxActive, ttl (ms), score, trim-below score, id, line ttl (ms), only
// new ("1": a record that exists already is left as it is, -3), then the
// record's field/value pairs.
var createGatedScript = redis.NewScript(`
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then return -3 end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 2000) end
if tonumber(ARGV[1]) > 0 and n > tonumber(ARGV[1]) then return -1 end
local active = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > 0 and active + 1 > tonumber(ARGV[2]) then return -2 end
redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], unpack(ARGV, 9))
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[5])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
if KEYS[5] then
  redis.call('RPUSH', KEYS[5], ARGV[6])
  redis.call('PEXPIRE', KEYS[5], ARGV[7])
end
return 1
`)

// CreateGated admits one new job as Gate does (at most rps requests in the
// current second, at most maxActive jobs not yet ended) and writes its queued
// record as Create does, in one script; a job with a SessionID also takes
// its place at the end of its session's line, whose expiry restarts at
// lineTTL. r must have no BatchID. It returns ErrRateLimited or
// ErrQueueFull when the job is not admitted; on success the job holds a
// place in the active count (r.Counted is implied).
func (s *Jobs) CreateGated(ctx context.Context, r JobRecord, rps, maxActive int, lineTTL time.Duration) error {
	return s.createGated(ctx, r, rps, maxActive, lineTTL, false)
}

// ErrJobExists means CreateNew found the job's record written already.
var ErrJobExists = errors.New("job exists")

// CreateNew is CreateGated for a job whose id is derived (a schedule's
// run): when its record exists already it writes and counts nothing and
// returns ErrJobExists.
func (s *Jobs) CreateNew(ctx context.Context, r JobRecord, rps, maxActive int, lineTTL time.Duration) error {
	return s.createGated(ctx, r, rps, maxActive, lineTTL, true)
}

func (s *Jobs) createGated(ctx context.Context, r JobRecord, rps, maxActive int, lineTTL time.Duration, onlyNew bool) error {
	if r.BatchID != "" {
		return errors.New("rdb: CreateGated is for jobs outside batches")
	}
	r.Counted = true
	fields := r.fields()
	sec := strconv.FormatInt(time.Now().Unix(), 10)
	args := make([]any, 0, 8+len(fields))
	args = append(args, rps, maxActive, s.ttl.Milliseconds(), r.CreatedAt.UnixMicro(),
		time.Now().Add(-s.ttl).UnixMicro(), r.ID, lineTTL.Milliseconds(), onlyNew)
	args = append(args, fields...)
	keys := []string{"{pf}:t:" + r.Tenant + ":rps:" + sec, ActiveKey(r.Tenant), JobKey(r.ID), jobIndexKey(r.Tenant)}
	if r.SessionID != "" {
		keys = append(keys, sessionKeys(r.Tenant, r.SessionID).Line)
	}
	res, err := createGatedScript.Run(ctx, s.rdb, keys, args...).Int64()
	if err != nil {
		return err
	}
	switch res {
	case -1:
		return ErrRateLimited
	case -2:
		return ErrQueueFull
	case -3:
		return ErrJobExists
	}
	return nil
}

// Release gives back n places taken by Gate for jobs that were not created.
func (s *Jobs) Release(ctx context.Context, tenant string, n int) {
	s.rdb.DecrBy(ctx, ActiveKey(tenant), int64(n))
}

// Delete removes a record (used when enqueueing failed after Create).
func (s *Jobs) Delete(ctx context.Context, tenant, id string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, JobKey(id))
		p.ZRem(ctx, jobIndexKey(tenant), id)
		return nil
	})
	return err
}

var discardScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
if redis.call('HGET', KEYS[1], 'counted') == '1' then redis.call('DECR', KEYS[3]) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`)

// Discard takes back a job whose task was not enqueued: it removes the
// record and gives back the job's place in the tenant's active count, in
// one step, and only while the job is still queued (a job a worker started
// did get its task). Repeating it is harmless.
func (s *Jobs) Discard(ctx context.Context, tenant, id string) error {
	return discardScript.Run(ctx, s.rdb, []string{JobKey(id), jobIndexKey(tenant), ActiveKey(tenant)}, id).Err()
}

// BatchKey is the Redis hash of a batch (see internal/batch). Its counters —
// queued, running, succeeded, failed, cancelled — are moved by the scripts
// below in the same step that changes the status of one of its jobs, so
// that they always add up to its total.
func BatchKey(id string) string { return "{pf}:batch:" + id }

// batchMoveLua moves a batch job from one status bucket of its batch to
// another. A succeeded job of a crawl batch also opens its link discovery
// (the batch's open counter; see internal/batch), so that the batch cannot
// complete before its links were followed.
const batchMoveLua = `
local function batch_move(jk, from, to)
  if from == to then return end
  local b = redis.call('HGET', jk, 'batch_id')
  if not b then return end
  local bk = '{pf}:batch:' .. b
  if redis.call('EXISTS', bk) == 0 then return end
  redis.call('HINCRBY', bk, from, -1)
  redis.call('HINCRBY', bk, to, 1)
  if to == 'succeeded' and redis.call('HGET', bk, 'kind') == 'crawl' and not redis.call('HGET', jk, 'disc') then
    redis.call('HSET', jk, 'disc', 'pending')
    redis.call('HINCRBY', bk, 'open', 1)
  end
end
`

// The scripts read the fields they need with one HMGET and write with one
// HSET: a plain job's start costs Redis three commands, its finish five.
//
// startScript ARGV: 1 now, 2 attempt, 3 the error of a cancelled batch's
// job, 4 events channel, 5 running_jobs limit, 6 lease (ms), 7 job id,
// 8 owner token ("": no fencing), 9 task id, 10 claim ("": none), 11 the
// owner's claims hash, 12 most attempts (0: no bound), 13 the error of a
// job whose last attempt was lost.
var startScript = redis.NewScript(batchMoveLua + ownerAliveLua + `
local f = redis.call('HMGET', KEYS[1], 'status', 'batch_id', 'started_at', 'owner', 'attempts')
local st, b = f[1], f[2]
local n = tonumber(ARGV[2])
if not st then return 'missing' end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' then return st end
if b and st == 'queued' and redis.call('HGET', '{pf}:batch:' .. b, 'cancel') == '1' then
  -- a queued job of a cancelled batch never starts
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1], 'error', ARGV[3])
  if redis.call('HGET', KEYS[1], 'counted') == '1' then redis.call('DECR', '{pf}:t:' .. redis.call('HGET', KEYS[1], 'tenant') .. ':active') end
  batch_move(KEYS[1], st, 'cancelled')
  redis.call('PUBLISH', ARGV[4], KEYS[1])
  return 'cancelled'
end
if st == 'running' and ARGV[8] ~= '' and f[4] and f[4] ~= ARGV[8] then
  -- another attempt, on a worker that is alive, runs the job
  if not owner_dead(f[4]) then return 'held' end
  -- its worker died: this attempt takes over, and counts after it
  n = math.max(n, (tonumber(f[5]) or 0) + 1)
  if tonumber(ARGV[12]) > 0 and n > tonumber(ARGV[12]) then
    -- the worker died during the job's last attempt: the job ends here
    redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[1], 'error', ARGV[13])
    redis.call('HDEL', KEYS[1], 'owner')
    if redis.call('HGET', KEYS[1], 'counted') == '1' then redis.call('DECR', '{pf}:t:' .. redis.call('HGET', KEYS[1], 'tenant') .. ':active') end
    if b then batch_move(KEYS[1], st, 'failed') end
    redis.call('PUBLISH', ARGV[4], KEYS[1])
    return 'failed'
  end
end
if KEYS[2] then
  -- a place among the tenant's running jobs (a lease; see RunSlot)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local lease = tonumber(ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if not redis.call('ZSCORE', KEYS[2], ARGV[7]) and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
    return 'busy'
  end
  redis.call('ZADD', KEYS[2], now + lease, ARGV[7])
  redis.call('PEXPIRE', KEYS[2], lease * 2)
end
if f[3] then
  redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', n)
else
  redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', n, 'started_at', ARGV[1])
end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'owner', ARGV[8]) end
if ARGV[9] ~= '' and ARGV[9] ~= ARGV[7] then redis.call('HSET', KEYS[1], 'task', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', ARGV[11], 'job:' .. ARGV[7], ARGV[10]) end
if b then batch_move(KEYS[1], st, 'running') end
return 'ok:' .. n
`)

// errBatchCancelled is the error of a batch job cancelled before it ran.
var errBatchCancelled, _ = json.Marshal(&spec.Error{Code: spec.CodeCancelled, Message: "the batch was cancelled"})

// Start marks the job running for attempt n, without fencing (see
// Attempt). It returns the status that stopped it ("cancelled",
// "succeeded", "failed", "missing") or "" when the job may run. A queued
// job of a cancelled batch is cancelled instead.
func (s *Jobs) Start(ctx context.Context, id string, attempt int) (string, error) {
	return s.StartIn(ctx, id, Attempt{N: attempt}, RunSlot{})
}

// Answers of StartIn besides a job's status.
const (
	// Busy: the job's running_jobs set is full.
	Busy = "busy"
	// Held: another attempt runs the job, on a worker that is alive.
	Held = "held"
)

// Attempt is one run of a job by one worker.
type Attempt struct {
	// N is the attempt's number, 1 for the first.
	N int
	// Owner is the attempt's owner token (OwnerToken). The job records it
	// when it starts; the outcome and the hand-back of an attempt that is
	// no longer the owner are refused. A job another live owner runs does
	// not start; one whose owner's worker died is taken over. "": none of
	// this (tests, tools).
	Owner string
	// TaskID is the asynq task that runs the attempt; a task other than
	// the job's own (a replacement) is recorded in the job's task field.
	TaskID string
	// Claim is what the owner's worker keeps while the attempt runs, so
	// that its job runs again at once if the worker dies (jobs.Claim).
	Claim []byte
	// MaxAttempts bounds the attempts of a job taken over from a dead
	// owner: one past it ends the job as failed, retries_exhausted, instead
	// of running (0: no bound).
	MaxAttempts int
}

// errAttemptsLost is the error of a job whose last attempt died with its
// worker.
var errAttemptsLost, _ = json.Marshal(spec.Errorf(spec.CodeRetriesExhausted, true,
	"the job's worker died during its last attempt; submit it again"))

// RunSlot is a place among a tenant's running jobs: a sorted set of job ids
// scored by the end of their lease (Unix ms, Redis clock). StartIn takes the
// place in the same script that starts the job, Finish gives it back in the
// one that ends it; the worker renews the lease while the job runs, so the
// places of a dead worker free themselves.
type RunSlot struct {
	Tenant string // "" or Limit 0: no slot
	Limit  int
	Lease  time.Duration
}

func runningKey(tenant string) string { return "{pf}:t:" + tenant + ":running" }

// renewRunningScript extends a running job's lease (a lapsed one is taken
// again: the job runs either way).
var renewRunningScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
`)

// RenewRunning extends job id's place among tenant's running jobs.
func (s *Jobs) RenewRunning(ctx context.Context, tenant, id string, lease time.Duration) error {
	return renewRunningScript.Run(ctx, s.rdb, []string{runningKey(tenant)}, id, lease.Milliseconds()).Err()
}

// LeaveRunning gives job id's place among tenant's running jobs back.
func (s *Jobs) LeaveRunning(ctx context.Context, tenant, id string) error {
	return s.rdb.ZRem(ctx, runningKey(tenant), id).Err()
}

// StartIn starts attempt a of job id and takes its place in slot; when the
// set holds Limit live places already it changes nothing and returns Busy,
// and when another live owner runs the job it returns Held (a job that
// ended returns its status first).
func (s *Jobs) StartIn(ctx context.Context, id string, a Attempt, slot RunSlot) (string, error) {
	st, _, err := s.StartCounted(ctx, id, a, slot)
	return st, err
}

// StartCounted is StartIn that also returns, when the attempt started, its
// number as the record counts it: a.N, or one more than the attempts of a
// dead worker's attempt it took over.
func (s *Jobs) StartCounted(ctx context.Context, id string, a Attempt, slot RunSlot) (string, int, error) {
	keys := []string{JobKey(id)}
	if slot.Tenant != "" && slot.Limit > 0 {
		keys = append(keys, runningKey(slot.Tenant))
	}
	res, err := startScript.Run(ctx, s.rdb, keys, time.Now().UTC().Format(time.RFC3339Nano), a.N,
		errBatchCancelled, EventsChannel, slot.Limit, slot.Lease.Milliseconds(), id,
		a.Owner, a.TaskID, a.Claim, claimsKey(WorkerOf(a.Owner)), a.MaxAttempts, errAttemptsLost).Text()
	if err != nil {
		return "", 0, err
	}
	if n, ok := strings.CutPrefix(res, "ok:"); ok {
		c, _ := strconv.Atoi(n)
		return "", c, nil
	}
	return res, 0, nil
}

// requeueScript ARGV: 1 job id, 2 owner ("": any), 3 the owner's claims
// hash.
var requeueScript = redis.NewScript(batchMoveLua + `
if ARGV[2] ~= '' then redis.call('HDEL', ARGV[3], 'job:' .. ARGV[1]) end
local f = redis.call('HMGET', KEYS[1], 'status', 'owner')
local st = f[1]
if st == 'running' and (ARGV[2] == '' or not f[2] or f[2] == ARGV[2]) then
  redis.call('HSET', KEYS[1], 'status', 'queued')
  redis.call('HDEL', KEYS[1], 'owner')
  batch_move(KEYS[1], st, 'queued')
end
return st
`)

// Requeue puts a running job back to queued (a retry is coming), unless
// owner ("": any) is no longer its owner, and ends the owner's claim.
func (s *Jobs) Requeue(ctx context.Context, id, owner string) error {
	return requeueScript.Run(ctx, s.rdb, []string{JobKey(id)}, id, owner, claimsKey(WorkerOf(owner))).Err()
}

// finishScript ARGV: 1 status, 2 now, 3 result, 4 error, 5 session
// updated, 6 events channel, 7 job id, 8 owner ("": any), 9 the owner's
// claims hash, 10 the result's change status ("": not tracked), 11 the
// normalised URL a tracked batch's run saw, 12 the result's own fields
// ("": none; see EncodeResult).
var finishScript = redis.NewScript(batchMoveLua + batchTrackLua + `
if ARGV[8] ~= '' then redis.call('HDEL', ARGV[9], 'job:' .. ARGV[7]) end
local f = redis.call('HMGET', KEYS[1], 'status', 'counted', 'tenant', 'batch_id', 'owner')
local st = f[1]
if ARGV[8] ~= '' and f[5] and f[5] ~= ARGV[8] then return 'stale' end
if KEYS[2] then redis.call('ZREM', KEYS[2], ARGV[7]) end
if not st then return 'missing' end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' then return st end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'result', ARGV[3], 'error', ARGV[4], 'session_updated', ARGV[5])
if ARGV[12] ~= '' then redis.call('HSET', KEYS[1], 'rx', ARGV[12]) end
if f[2] == '1' then redis.call('DECR', '{pf}:t:' .. f[3] .. ':active') end
if f[4] then
  batch_move(KEYS[1], st, ARGV[1])
  batch_track(f[4], ARGV[10], ARGV[11])
end
redis.call('PUBLISH', ARGV[6], KEYS[1])
return 'ok'
`)

// Outcome is what a finished attempt writes.
type Outcome struct {
	Status         string // succeeded or failed
	Result         *spec.Result
	Error          *spec.Error
	SessionUpdated bool
	// LeaveRunning is the tenant whose running-jobs set the job leaves (the
	// RunSlot StartIn took; "" for none), even when it had ended already.
	LeaveRunning string
	// Owner is the attempt's owner token ("": write whoever runs the job).
	Owner string
	// Change is the result's change status ("": not tracked); a batch
	// job's counts in its batch's changes (see Batches.Get).
	Change string
	// TrackURL is the normalised URL of a tracked batch job: the batch's
	// run saw it (see batchTrackLua).
	TrackURL string
	// Core and Own are Result split by EncodeResult (Core may come from
	// the result cache as it is); when Core is set, they are written
	// instead of Result.
	Core, Own []byte
}

// ErrStaleAttempt means another attempt owns the job now (its worker was
// presumed dead and the job taken over): this attempt's outcome is not
// written.
var ErrStaleAttempt = errors.New("another attempt owns the job")

// Finish writes the outcome unless the job already ended (then it returns
// ErrJobEnded and the stored outcome stays) or another attempt owns it
// (ErrStaleAttempt). It ends the owner's claim either way.
func (s *Jobs) Finish(ctx context.Context, id string, o Outcome) error {
	res, own := o.Core, o.Own
	if res == nil && o.Result != nil {
		b, err := json.Marshal(o.Result)
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		res = compress(b)
	}
	var eb []byte
	if o.Error != nil {
		eb, _ = json.Marshal(o.Error)
	}
	upd := "0"
	if o.SessionUpdated {
		upd = "1"
	}
	keys := []string{JobKey(id)}
	if o.LeaveRunning != "" {
		keys = append(keys, runningKey(o.LeaveRunning))
	}
	r, err := finishScript.Run(ctx, s.rdb, keys, o.Status, time.Now().UTC().Format(time.RFC3339Nano),
		res, eb, upd, EventsChannel, id, o.Owner, claimsKey(WorkerOf(o.Owner)), o.Change, o.TrackURL, own).Text()
	switch {
	case err != nil:
		return err
	case r == "stale":
		return ErrStaleAttempt
	case r != "ok":
		return ErrJobEnded
	}
	return nil
}

var cancelJobScript = redis.NewScript(batchMoveLua + `
local st = redis.call('HGET', KEYS[1], 'status')
if not st or redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[1] then return 'missing' end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' then return st end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2], 'error', ARGV[3])
if redis.call('HGET', KEYS[1], 'counted') == '1' then redis.call('DECR', '{pf}:t:' .. ARGV[1] .. ':active') end
batch_move(KEYS[1], st, 'cancelled')
redis.call('PUBLISH', ARGV[4], KEYS[1])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 'ok:' .. st
`)

// Cancel cancels a queued or running job of tenant. It returns the status the
// job had, ErrJobNotFound, or ErrJobEnded when it already ended.
func (s *Jobs) Cancel(ctx context.Context, tenant, id string) (string, error) {
	eb, _ := json.Marshal(&spec.Error{Code: spec.CodeCancelled, Message: "cancelled by request"})
	r, err := cancelJobScript.Run(ctx, s.rdb, []string{JobKey(id)}, tenant, time.Now().UTC().Format(time.RFC3339Nano), eb,
		EventsChannel, CancelChannel, id).Text()
	if err != nil {
		return "", err
	}
	switch {
	case r == "missing":
		return "", ErrJobNotFound
	case strings.HasPrefix(r, "ok:"):
		return r[3:], nil
	}
	return r, ErrJobEnded
}

// JobInfo is a stored record.
type JobInfo struct {
	Job       spec.Job
	Tenant    string
	SessionID string
	Webhook   *spec.Webhook
	// Depth is a crawl page's distance in links from the start page.
	Depth int
}

// Get reads a job of tenant (tenant "" skips the check). withResult decodes
// the result too.
func (s *Jobs) Get(ctx context.Context, tenant, id string, withResult bool) (*JobInfo, error) {
	var m map[string]string
	var err error
	if withResult {
		m, err = s.rdb.HGetAll(ctx, JobKey(id)).Result()
	} else {
		m, err = s.hgetNoResult(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	return decodeJob(id, tenant, m)
}

var fieldsNoResult = []string{"tenant", "kind", "status", "created_at", "started_at", "finished_at", "attempts", "url", "session_id", "session_updated", "batch_id", "error", "webhook", "depth", "disc_by", "lastmod",
	"schedule_id", "scheduled_at"}

func (s *Jobs) hgetNoResult(ctx context.Context, id string) (map[string]string, error) {
	vals, err := s.rdb.HMGet(ctx, JobKey(id), fieldsNoResult...).Result()
	if err != nil {
		return nil, err
	}
	return toMap(vals), nil
}

func toMap(vals []any) map[string]string {
	m := map[string]string{}
	for i, v := range vals {
		if sv, ok := v.(string); ok {
			m[fieldsNoResult[i]] = sv
		}
	}
	return m
}

// Status returns the job's status, or "" when the record is gone.
func (s *Jobs) Status(ctx context.Context, id string) (string, error) {
	st, err := s.rdb.HGet(ctx, JobKey(id), "status").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return st, err
}

func decodeJob(id, tenant string, m map[string]string) (*JobInfo, error) {
	if len(m) == 0 || m["status"] == "" || (tenant != "" && m["tenant"] != tenant) {
		return nil, ErrJobNotFound
	}
	in := &JobInfo{Tenant: m["tenant"], SessionID: m["session_id"]}
	in.Depth, _ = strconv.Atoi(m["depth"])
	j := &in.Job
	j.ID, j.Kind, j.Status, j.URL, j.BatchID = id, m["kind"], m["status"], m["url"], m["batch_id"]
	j.DiscoveredBy, j.Lastmod = m["disc_by"], m["lastmod"]
	j.CreatedAt, _ = time.Parse(time.RFC3339Nano, m["created_at"])
	if t, err := time.Parse(time.RFC3339Nano, m["started_at"]); err == nil {
		j.StartedAt = &t
	}
	if t, err := time.Parse(time.RFC3339Nano, m["finished_at"]); err == nil {
		j.FinishedAt = &t
	}
	j.Attempts, _ = strconv.Atoi(m["attempts"])
	j.ScheduleID = m["schedule_id"]
	if t, err := time.Parse(time.RFC3339Nano, m["scheduled_at"]); err == nil {
		j.ScheduledAt = &t
	}
	if in.SessionID != "" {
		j.Session = &spec.SessionInfo{ID: in.SessionID, Updated: m["session_updated"] == "1"}
	}
	if e := m["error"]; e != "" {
		j.Error = &spec.Error{}
		_ = json.Unmarshal([]byte(e), j.Error)
	}
	if r := m["result"]; r != "" {
		b, err := decompress([]byte(r))
		if err != nil {
			return nil, fmt.Errorf("decodeJob result of %s: %w", id, err)
		}
		j.Result = &spec.Result{}
		if err := json.Unmarshal(b, j.Result); err != nil {
			return nil, fmt.Errorf("decodeJob result of %s: %w", id, err)
		}
		if own := m["rx"]; own != "" {
			if err := json.Unmarshal([]byte(own), j.Result); err != nil {
				return nil, fmt.Errorf("decodeJob result of %s: %w", id, err)
			}
		}
	}
	if w := m["webhook"]; w != "" {
		in.Webhook = &spec.Webhook{}
		_ = json.Unmarshal([]byte(w), in.Webhook)
	}
	return in, nil
}

// List returns the tenant's jobs newest first, filtered by status ("" =
// all). cursor is the opaque next_cursor of the previous page: the score
// and id of the last job it listed, so that jobs with equal scores are
// neither skipped nor repeated. Another cursor is ErrInvalidCursor.
func (s *Jobs) List(ctx context.Context, tenant, status, cursor string, limit int) ([]spec.Job, string, error) {
	var after *listPos
	if cursor != "" {
		p, err := parseListCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		after = &p
	}
	out := []spec.Job{}
	var last *listPos
	more := true
	for round := 0; round < 20 && len(out) < limit && more; round++ {
		count := int64(limit * 2)
		max := "+inf"
		if after != nil {
			max = strconv.FormatInt(after.score, 10) // inclusive: ties are skipped below
		}
		// Entries with the cursor's score come first, in descending id order;
		// those not after the cursor were listed already. offset skips them
		// when there are more ties than one read returns.
		var offset int64
		var zs []redis.Z
		for {
			got, err := s.rdb.ZRevRangeByScoreWithScores(ctx, jobIndexKey(tenant), &redis.ZRangeBy{Max: max, Min: "-inf", Offset: offset, Count: count}).Result()
			if err != nil {
				return nil, "", err
			}
			more = int64(len(got)) == count
			i := 0
			for after != nil && i < len(got) && int64(got[i].Score) == after.score && got[i].Member.(string) >= after.id {
				i++
			}
			zs = got[i:]
			if len(zs) > 0 || !more {
				break
			}
			offset += count
		}
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(zs))
		for i, z := range zs {
			cmds[i] = pipe.HMGet(ctx, JobKey(z.Member.(string)), fieldsNoResult...)
		}
		if len(zs) > 0 {
			_, _ = pipe.Exec(ctx)
		}
		var stale []any
		for i, z := range zs {
			id := z.Member.(string)
			last = &listPos{score: int64(z.Score), id: id}
			in, err := decodeJob(id, tenant, toMap(cmds[i].Val()))
			if err != nil {
				stale = append(stale, id)
				continue
			}
			if status == "" || in.Job.Status == status {
				out = append(out, in.Job)
			}
			if len(out) == limit {
				more = more || i < len(zs)-1
				break
			}
		}
		if len(stale) > 0 {
			s.rdb.ZRem(ctx, jobIndexKey(tenant), stale...)
		}
		after = last
	}
	if !more || last == nil {
		return out, "", nil
	}
	return out, last.String(), nil
}

// listPos is a place in the tenant's job list: a score and a job id.
type listPos struct {
	score int64
	id    string
}

func (p listPos) String() string { return strconv.FormatInt(p.score, 10) + "." + p.id }

// ErrInvalidCursor is a list cursor that the list did not give.
var ErrInvalidCursor = errors.New("rdb: invalid cursor")

// parseListCursor reads a cursor of List. A bare score is the cursor of an
// earlier version: everything below that score.
func parseListCursor(c string) (listPos, error) {
	num, id, _ := strings.Cut(c, ".")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || (id == "" && strings.Contains(c, ".")) || (id != "" && !strings.HasPrefix(id, "job_")) {
		return listPos{}, ErrInvalidCursor
	}
	if id == "" {
		return listPos{score: n - 1, id: "\xff"}, nil
	}
	return listPos{score: n, id: id}, nil
}

const compressAbove = 4096

// gzipWriters keeps gzip writers between results: a new one allocates
// about 1 MB of compressor state, which cost a fifth of the worker's CPU on
// plain fetches.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

// gzipReaders keeps gzip readers between reads of results.
var gzipReaders sync.Pool

func compress(b []byte) []byte {
	if len(b) < compressAbove {
		return append([]byte{'j'}, b...)
	}
	var buf bytes.Buffer
	buf.Grow(len(b)/3 + 64)
	buf.WriteByte('z')
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	zw.Write(b)
	zw.Close()
	zw.Reset(io.Discard) // drop the reference to buf
	gzipWriters.Put(zw)
	return buf.Bytes()
}

func decompress(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	switch b[0] {
	case 'j':
		return b[1:], nil
	case 'z':
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(b[1:]))
		} else {
			err = zr.Reset(bytes.NewReader(b[1:]))
		}
		if err != nil {
			return nil, err
		}
		out, err := io.ReadAll(zr)
		if err == nil {
			gzipReaders.Put(zr)
		}
		return out, err
	}
	return b, nil
}

// Notifier wakes waiters when jobs end, from one Redis subscription per
// process.
type Notifier struct {
	rdb     redis.UniversalClient
	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

// NewNotifier returns a notifier; call Run to start listening.
func NewNotifier(rdb redis.UniversalClient) *Notifier {
	return &Notifier{rdb: rdb, waiters: map[string][]chan struct{}{}}
}

// Run listens until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	listen(ctx, n.rdb, EventsChannel, func(payload string) {
		id := strings.TrimPrefix(payload, "{pf}:job:")
		n.mu.Lock()
		for _, c := range n.waiters[id] {
			close(c)
		}
		delete(n.waiters, id)
		n.mu.Unlock()
	})
}

// listen calls fn with every message published on channel until ctx ends.
func listen(ctx context.Context, c redis.UniversalClient, channel string, fn func(payload string)) {
	sub := c.Subscribe(ctx, channel)
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			fn(m.Payload)
		}
	}
}

// Watch returns a channel closed when job id ends (or an event for it
// arrives), and a func to stop watching.
func (n *Notifier) Watch(id string) (<-chan struct{}, func()) {
	c := make(chan struct{})
	n.mu.Lock()
	n.waiters[id] = append(n.waiters[id], c)
	n.mu.Unlock()
	return c, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		ws := n.waiters[id]
		for i, w := range ws {
			if w == c {
				n.waiters[id] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(n.waiters[id]) == 0 {
			delete(n.waiters, id)
		}
	}
}

// WatchCancels calls fn with the id of every job cancelled while it ran
// (the API publishes them), until ctx ends.
func (s *Jobs) WatchCancels(ctx context.Context, fn func(jobID string)) {
	listen(ctx, s.rdb, CancelChannel, fn)
}

// CountRerun counts one more rerun of task (an archived batch expansion
// the sweep puts back) and returns how many there were; the count is kept
// for ttl after the last one.
func (s *Jobs) CountRerun(ctx context.Context, task string, ttl time.Duration) (int64, error) {
	key := "{pf}:sweep:" + task
	var n *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.Incr(ctx, key)
		p.Expire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n.Val(), nil
}

// taskField holds the id of the asynq task that now runs a job when it is
// not the job id: a replacement task put in for a job whose worker died.
const taskField = "task"

// SetTask records that task now runs job id (see TaskOf).
func (s *Jobs) SetTask(ctx context.Context, id, task string) error {
	return s.rdb.HSet(ctx, JobKey(id), taskField, task).Err()
}

// TaskOf returns the id of the asynq task that runs job id: the job id
// unless a replacement was put in (see SetTask).
func (s *Jobs) TaskOf(ctx context.Context, id string) (string, error) {
	t, err := s.rdb.HGet(ctx, JobKey(id), taskField).Result()
	if errors.Is(err, redis.Nil) || t == "" {
		return id, nil
	}
	return t, err
}

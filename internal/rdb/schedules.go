package rdb

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Schedules keep a tenant's schedules and their runs. Every process that
// runs a scheduler (package schedule) reads the same two sorted sets: the
// schedules by next due time, and the runs claimed but not yet created by
// the end of their claim's lease. A due time is claimed by one
// compare-and-set script (the schedule's next due time moves on only if
// it still is the one claimed), and a claimed run creates a batch or job
// whose id is derived from the schedule and the due time, so that a run
// created twice (its claimer died, or Redis lost the claim in a failover)
// is the same batch, written once.

// Errors of the schedule store.
var (
	// ErrScheduleNotFound means no such schedule for that tenant.
	ErrScheduleNotFound = errors.New("schedule not found")
	// ErrScheduleLimit means the tenant has as many schedules as it may.
	ErrScheduleLimit = errors.New("too many schedules")
	// ErrScheduleChanged means the schedule changed since it was read.
	ErrScheduleChanged = errors.New("schedule changed meanwhile")
)

// DefaultMaxSchedules is how many schedules a tenant may keep.
const DefaultMaxSchedules = 1000

// MaxScheduleRuns is how many runs of a schedule GET /v1/schedules/{id}/runs
// can list; older ones are forgotten.
const MaxScheduleRuns = 1000

const (
	dueKey     = "{pf}:schedules:due"
	pendingKey = "{pf}:schedules:pending"
)

func scheduleKey(id string) string { return "{pf}:sched:" + id }

func scheduleRunsKey(id string) string { return scheduleKey(id) + ":runs" }

func scheduleRunKey(id string) string { return scheduleKey(id) + ":run" }

func scheduleIndexKey(tenant string) string { return "{pf}:t:" + tenant + ":schedules" }

// NewScheduleID returns a new schedule id, "sch_" and 26 characters.
func NewScheduleID() string { return NewID("sch") }

// RunID is the id of what the run of schedule due at due creates (prefix
// "bat" or "job"): derived, time-ordered like other ids, the same in every
// process that creates the run.
func RunID(prefix, scheduleID string, due time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(due.UnixNano()))
	h := sha256.Sum256([]byte(scheduleID + "\x00" + strconv.FormatInt(due.UnixMilli(), 10)))
	copy(b[8:], h[:8])
	return prefix + "_" + idEnc.EncodeToString(b[:])
}

// StoredSchedule is a schedule as stored.
type StoredSchedule struct {
	ID       string
	Tenant   string
	Cron     string
	Timezone string
	// Kind is "batch" or "fetch"; Body the request each run submits.
	Kind      string
	Body      json.RawMessage
	Webhook   *spec.Webhook
	Paused    bool
	Next      *time.Time
	LastRun   *time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
	// Version counts the schedule's changes (Update compares it).
	Version int64
}

// View is the schedule object of the API.
func (s *StoredSchedule) View() spec.Schedule {
	v := spec.Schedule{ID: s.ID, Cron: s.Cron, Timezone: s.Timezone, Kind: s.Kind, NextRunAt: s.Next, Paused: s.Paused,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, LastRunAt: s.LastRun, Webhook: s.Webhook}
	if s.Kind == "fetch" {
		v.Fetch = s.Body
	} else {
		v.Batch = s.Body
	}
	return v
}

// Schedules stores schedules.
type Schedules struct {
	rdb redis.UniversalClient
	max int
}

// NewSchedules returns the store on c; a tenant may keep max schedules
// (0: DefaultMaxSchedules).
func NewSchedules(c redis.UniversalClient, max int) *Schedules {
	if max <= 0 {
		max = DefaultMaxSchedules
	}
	return &Schedules{rdb: c, max: max}
}

func msOf(t *time.Time) string {
	if t == nil {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func (s *StoredSchedule) fields() []any {
	w := ""
	if s.Webhook != nil {
		b, _ := json.Marshal(s.Webhook)
		w = string(b)
	}
	paused := "0"
	if s.Paused {
		paused = "1"
	}
	return []any{"tenant", s.Tenant, "cron", s.Cron, "tz", s.Timezone, "kind", s.Kind, "body", []byte(s.Body), "webhook", w,
		"paused", paused, "next", msOf(s.Next), "created_at", s.CreatedAt.UTC().Format(time.RFC3339Nano),
		"updated_at", s.UpdatedAt.UTC().Format(time.RFC3339Nano)}
}

// createScheduleScript KEYS: schedule, index, due. ARGV: id, max, score,
// next ("": none), then the fields.
var createScheduleScript = redis.NewScript(`
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[1], 'version', 1, unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1]) end
return 1
`)

// Create stores a new schedule (its ID, Tenant, times and Next set by the
// caller); ErrScheduleLimit past the tenant's limit.
func (st *Schedules) Create(ctx context.Context, s *StoredSchedule) error {
	args := append([]any{s.ID, st.max, s.CreatedAt.UnixMicro(), msOf(s.Next)}, s.fields()...)
	n, err := createScheduleScript.Run(ctx, st.rdb, []string{scheduleKey(s.ID), scheduleIndexKey(s.Tenant), dueKey}, args...).Int64()
	if err != nil {
		return err
	}
	if n < 0 {
		return ErrScheduleLimit
	}
	s.Version = 1
	return nil
}

var scheduleFields = []string{"tenant", "cron", "tz", "kind", "body", "webhook", "paused", "next", "created_at", "updated_at", "last_run", "version"}

func decodeSchedule(id, tenant string, vals []any) (*StoredSchedule, error) {
	str := func(i int) string { s, _ := vals[i].(string); return s }
	if str(0) == "" || (tenant != "" && str(0) != tenant) {
		return nil, ErrScheduleNotFound
	}
	s := &StoredSchedule{ID: id, Tenant: str(0), Cron: str(1), Timezone: str(2), Kind: str(3), Body: json.RawMessage(str(4)),
		Paused: str(6) == "1"}
	if w := str(5); w != "" {
		s.Webhook = &spec.Webhook{}
		if err := json.Unmarshal([]byte(w), s.Webhook); err != nil {
			return nil, fmt.Errorf("decode webhook of schedule %s: %w", id, err)
		}
	}
	ms := func(i int) *time.Time {
		n, err := strconv.ParseInt(str(i), 10, 64)
		if err != nil {
			return nil
		}
		t := time.UnixMilli(n).UTC()
		return &t
	}
	s.Next, s.LastRun = ms(7), ms(10)
	s.CreatedAt, _ = time.Parse(time.RFC3339Nano, str(8))
	s.UpdatedAt, _ = time.Parse(time.RFC3339Nano, str(9))
	s.Version, _ = strconv.ParseInt(str(11), 10, 64)
	return s, nil
}

// Get reads a schedule of tenant ("": any tenant's).
func (st *Schedules) Get(ctx context.Context, tenant, id string) (*StoredSchedule, error) {
	vals, err := st.rdb.HMGet(ctx, scheduleKey(id), scheduleFields...).Result()
	if err != nil {
		return nil, err
	}
	return decodeSchedule(id, tenant, vals)
}

// olderThan is the ZRANGEBYSCORE bound of a newest-first page after
// cursor (a score the previous page gave; "" for the first page).
func olderThan(cursor string) (string, error) {
	if cursor == "" {
		return "+inf", nil
	}
	n, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil {
		return "", ErrInvalidCursor
	}
	return "(" + strconv.FormatInt(n, 10), nil
}

// List returns the tenant's schedules newest first; cursor is the
// next_cursor of the previous page ("" for the first).
func (st *Schedules) List(ctx context.Context, tenant, cursor string, limit int) ([]*StoredSchedule, string, error) {
	max, err := olderThan(cursor)
	if err != nil {
		return nil, "", err
	}
	zs, err := st.rdb.ZRevRangeByScoreWithScores(ctx, scheduleIndexKey(tenant), &redis.ZRangeBy{Max: max, Min: "-inf", Count: int64(limit) + 1}).Result()
	if err != nil {
		return nil, "", err
	}
	more := len(zs) > limit
	if more {
		zs = zs[:limit]
	}
	pipe := st.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(zs))
	for i, z := range zs {
		cmds[i] = pipe.HMGet(ctx, scheduleKey(z.Member.(string)), scheduleFields...)
	}
	if len(zs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", err
		}
	}
	out := []*StoredSchedule{}
	next := ""
	for i, z := range zs {
		next = strconv.FormatInt(int64(z.Score), 10)
		s, err := decodeSchedule(z.Member.(string), tenant, cmds[i].Val())
		if err != nil {
			continue
		}
		out = append(out, s)
	}
	if !more {
		next = ""
	}
	return out, next, nil
}

// updateScheduleScript KEYS: schedule, due. ARGV: id, version, tenant,
// cron, tz, paused, next ("": none), updated_at.
var updateScheduleScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'tenant', 'version')
if not f[1] or f[1] ~= ARGV[3] then return -1 end
if f[2] ~= ARGV[2] then return -2 end
redis.call('HSET', KEYS[1], 'cron', ARGV[4], 'tz', ARGV[5], 'paused', ARGV[6], 'next', ARGV[7], 'updated_at', ARGV[8])
redis.call('HINCRBY', KEYS[1], 'version', 1)
if ARGV[7] == '' then redis.call('ZREM', KEYS[2], ARGV[1]) else redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1]) end
return 1
`)

// Update writes s's cron, time zone, paused and next due time, unless the
// schedule changed since s was read (ErrScheduleChanged) or is gone.
func (st *Schedules) Update(ctx context.Context, s *StoredSchedule) error {
	paused := "0"
	if s.Paused {
		paused = "1"
	}
	n, err := updateScheduleScript.Run(ctx, st.rdb, []string{scheduleKey(s.ID), dueKey}, s.ID, s.Version, s.Tenant, s.Cron, s.Timezone,
		paused, msOf(s.Next), s.UpdatedAt.UTC().Format(time.RFC3339Nano)).Int64()
	switch {
	case err != nil:
		return err
	case n == -1:
		return ErrScheduleNotFound
	case n == -2:
		return ErrScheduleChanged
	}
	s.Version++
	return nil
}

// deleteScheduleScript KEYS: schedule, index, due, runs, run, pending.
// ARGV: id, tenant.
var deleteScheduleScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
for _, m in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  if string.sub(m, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then redis.call('ZREM', KEYS[6], m) end
end
return 1
`)

// Delete removes a schedule of tenant with its runs' records (the batches
// and jobs they created stay); ErrScheduleNotFound when there is none.
func (st *Schedules) Delete(ctx context.Context, tenant, id string) error {
	n, err := deleteScheduleScript.Run(ctx, st.rdb, []string{scheduleKey(id), scheduleIndexKey(tenant), dueKey,
		scheduleRunsKey(id), scheduleRunKey(id), pendingKey}, id, tenant).Int64()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrScheduleNotFound
	}
	return nil
}

// Due is a schedule's due time.
type Due struct {
	ID string
	At time.Time
}

// DueBy lists up to n schedules due at or before now, earliest first.
func (st *Schedules) DueBy(ctx context.Context, now time.Time, n int) ([]Due, error) {
	zs, err := st.rdb.ZRangeByScoreWithScores(ctx, dueKey, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10),
		Count: int64(n)}).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Due, len(zs))
	for i, z := range zs {
		out[i] = Due{ID: z.Member.(string), At: time.UnixMilli(int64(z.Score)).UTC()}
	}
	return out, nil
}

// NextDue is the earliest next due time of any schedule (false: none).
func (st *Schedules) NextDue(ctx context.Context) (time.Time, bool, error) {
	zs, err := st.rdb.ZRangeWithScores(ctx, dueKey, 0, 0).Result()
	if err != nil || len(zs) == 0 {
		return time.Time{}, false, err
	}
	return time.UnixMilli(int64(zs[0].Score)).UTC(), true, nil
}

func runMember(id string, due time.Time) string {
	return id + "|" + strconv.FormatInt(due.UnixMilli(), 10)
}

// claimScript moves a schedule's next due time from the one claimed to
// the next, only while the claimed one is still its next (and it is not
// paused), and, when the run is to be created, records it as pending
// until the lease ends. KEYS: schedule, due, pending. ARGV: id, due (ms),
// next (ms, "": none), lease end (ms), member, run ("1"/"0").
var claimScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'next', 'paused')
if not f[1] or f[1] ~= ARGV[2] or f[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'next', ARGV[3])
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[1]) else redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
if ARGV[6] == '1' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5]) end
return 1
`)

// Claim claims the run of schedule id due at due: the schedule's next due
// time becomes next (nil: none), and, when run, the run is pending until
// leaseEnd, when another process may take it over (Relet). It reports
// false when another process claimed that due time first, or the schedule
// changed, was paused or deleted. A claim with run false skips the due
// time (it was missed for too long).
func (st *Schedules) Claim(ctx context.Context, id string, due time.Time, next *time.Time, leaseEnd time.Time, run bool) (bool, error) {
	r := "0"
	if run {
		r = "1"
	}
	n, err := claimScript.Run(ctx, st.rdb, []string{scheduleKey(id), dueKey, pendingKey}, id, due.UnixMilli(), msOf(next),
		leaseEnd.UnixMilli(), runMember(id, due), r).Int64()
	return n == 1, err
}

// Pending is a claimed run whose batch or job may not be created yet.
type Pending struct {
	ID  string
	Due time.Time
}

// Lapsed lists up to n pending runs whose claim's lease ended by now.
func (st *Schedules) Lapsed(ctx context.Context, now time.Time, n int) ([]Pending, error) {
	ms, err := st.rdb.ZRangeByScore(ctx, pendingKey, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10),
		Count: int64(n)}).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Pending, 0, len(ms))
	for _, m := range ms {
		id, at, ok := strings.Cut(m, "|")
		n, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil {
			continue
		}
		out = append(out, Pending{ID: id, Due: time.UnixMilli(n).UTC()})
	}
	return out, nil
}

// reletScript takes over a pending run whose lease ended (one process
// does), or drops it when its schedule is gone. KEYS: pending, schedule.
// ARGV: member, now (ms), lease end (ms).
var reletScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) > tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
`)

// Relet takes over the pending run p until leaseEnd when its lease ended
// by now; it reports false when another process took it first (or it was
// created meanwhile, or its schedule deleted).
func (st *Schedules) Relet(ctx context.Context, p Pending, now, leaseEnd time.Time) (bool, error) {
	n, err := reletScript.Run(ctx, st.rdb, []string{pendingKey, scheduleKey(p.ID)}, runMember(p.ID, p.Due), now.UnixMilli(),
		leaseEnd.UnixMilli()).Int64()
	return n == 1, err
}

// Postpone moves the end of a pending run's lease to until (a run that a
// rate limit refused comes back then); a run no longer pending stays so.
func (st *Schedules) Postpone(ctx context.Context, p Pending, until time.Time) error {
	return st.rdb.ZAddXX(ctx, pendingKey, redis.Z{Score: float64(until.UnixMilli()), Member: runMember(p.ID, p.Due)}).Err()
}

// completeScript records a run and takes it out of the pending ones.
// KEYS: pending, schedule, runs, run. ARGV: member, due (ms), run JSON,
// max runs kept.
var completeScript = redis.NewScript(`
local was = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 0 then return was end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
local last = redis.call('HGET', KEYS[2], 'last_run')
if not last or tonumber(last) < tonumber(ARGV[2]) then redis.call('HSET', KEYS[2], 'last_run', ARGV[2]) end
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if over > 0 then
  for _, m in ipairs(redis.call('ZPOPMIN', KEYS[3], over)) do redis.call('HDEL', KEYS[4], m) end
end
return was
`)

// Complete records run (created or skipped) and ends its pending state;
// it reports whether the run was still pending (false: another process
// completed it first).
func (st *Schedules) Complete(ctx context.Context, run spec.ScheduleRun) (bool, error) {
	b, err := json.Marshal(&run)
	if err != nil {
		return false, err
	}
	id := run.ScheduleID
	n, err := completeScript.Run(ctx, st.rdb, []string{pendingKey, scheduleKey(id), scheduleRunsKey(id), scheduleRunKey(id)},
		runMember(id, run.ScheduledAt), run.ScheduledAt.UnixMilli(), b, MaxScheduleRuns).Int64()
	return n == 1, err
}

// Runs lists the recorded runs of a schedule newest first; cursor is the
// next_cursor of the previous page.
func (st *Schedules) Runs(ctx context.Context, id, cursor string, limit int) ([]spec.ScheduleRun, string, error) {
	max, err := olderThan(cursor)
	if err != nil {
		return nil, "", err
	}
	ms, err := st.rdb.ZRevRangeByScore(ctx, scheduleRunsKey(id), &redis.ZRangeBy{Max: max, Min: "-inf", Count: int64(limit) + 1}).Result()
	if err != nil {
		return nil, "", err
	}
	more := len(ms) > limit
	if more {
		ms = ms[:limit]
	}
	out := []spec.ScheduleRun{}
	if len(ms) == 0 {
		return out, "", nil
	}
	vals, err := st.rdb.HMGet(ctx, scheduleRunKey(id), ms...).Result()
	if err != nil {
		return nil, "", err
	}
	for _, v := range vals {
		s, _ := v.(string)
		var r spec.ScheduleRun
		if s != "" && json.Unmarshal([]byte(s), &r) == nil {
			out = append(out, r)
		}
	}
	next := ""
	if more {
		next = ms[len(ms)-1]
	}
	return out, next, nil
}

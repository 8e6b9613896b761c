package rdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Errors of the store.
var (
	// ErrBatchNotFound means no such batch for that tenant (or it expired).
	ErrBatchNotFound = errors.New("batch not found")
	// ErrBatchCompleted means the batch already completed.
	ErrBatchCompleted = errors.New("batch already completed")
)

func urlsKey(id string) string   { return BatchKey(id) + ":urls" }
func markKey(id string) string   { return BatchKey(id) + ":expanded" }
func jobsKey(id string) string   { return BatchKey(id) + ":jobs" }
func seenKey(id string) string   { return BatchKey(id) + ":seen" }
func robotsKey(id string) string { return BatchKey(id) + ":robots" }
func batchIndexKey(tenant string) string {
	return "{pf}:t:" + tenant + ":batches"
}

// NewBatchID returns a new time-ordered batch id, "bat_" and 26 characters.
func NewBatchID() string { return NewID("bat") }

// BatchJobID is the id of the job at index of a batch: derived, so that an
// expansion that runs again after a crash writes the same jobs.
func BatchJobID(batchID string, index int) string { return jobPrefix(batchID) + strconv.Itoa(index) }

func jobPrefix(batchID string) string { return "job_" + strings.TrimPrefix(batchID, "bat_") }

// Batch is what a batch was created with.
type Batch struct {
	ID        string
	Tenant    string
	Kind      string
	CreatedAt time.Time
	// Template is the fetch request of every job, without its URL (for a
	// crawl, with links among its outputs).
	Template spec.Request
	Webhook  *spec.Webhook
	Crawl    *spec.Crawl

	// ScheduleID and ScheduledAt name the schedule run that created the
	// batch.
	ScheduleID  string
	ScheduledAt time.Time
	// TrackScope (TrackScope) is the line of runs a batch with change
	// tracking belongs to ("": not tracked).
	TrackScope string
}

// BatchView is the batch object of GET /v1/batches/{id} with the tenant it
// belongs to. The counts always add up to Total.
type BatchView struct {
	spec.Batch
	tenant string
}

// Tenant is the batch's tenant.
func (v *BatchView) Tenant() string { return v.tenant }

// Batches reads and writes batches.
type Batches struct {
	rdb  redis.UniversalClient
	jobs *Jobs
	ttl  time.Duration
}

// NewBatches returns a store whose batches live as long as jobs' records.
func NewBatches(rdb redis.UniversalClient, jobs *Jobs) *Batches {
	return &Batches{rdb: rdb, jobs: jobs, ttl: jobs.TTL()}
}

// batchChunk is how many URLs or jobs one Redis command or pipeline handles.
const batchChunk = 1000

func (s *Batches) fields(b *Batch, total, open int) ([]any, error) {
	tmpl, err := json.Marshal(&b.Template)
	if err != nil {
		return nil, fmt.Errorf("encode template: %w", err)
	}
	f := []any{"tenant", b.Tenant, "kind", b.Kind, "status", spec.BatchRunning,
		"created_at", b.CreatedAt.UTC().Format(time.RFC3339Nano), "template", tmpl,
		"total", total, "queued", total, "running", 0, "succeeded", 0, "failed", 0, "cancelled", 0, "open", open}
	if b.Webhook != nil {
		w, err := json.Marshal(b.Webhook)
		if err != nil {
			return nil, fmt.Errorf("encode webhook: %w", err)
		}
		f = append(f, "webhook", w)
	}
	if b.Crawl != nil {
		c, err := json.Marshal(b.Crawl)
		if err != nil {
			return nil, fmt.Errorf("encode crawl: %w", err)
		}
		f = append(f, "crawl", c)
	}
	if b.ScheduleID != "" {
		f = append(f, "schedule_id", b.ScheduleID, "scheduled_at", b.ScheduledAt.UTC().Format(time.RFC3339Nano))
	}
	if b.TrackScope != "" {
		f = append(f, "track", trackRunKey(b.Tenant, b.TrackScope))
	}
	return f, nil
}

func (s *Batches) index(ctx context.Context, p redis.Pipeliner, b *Batch) {
	k := batchIndexKey(b.Tenant)
	p.ZAdd(ctx, k, redis.Z{Score: float64(b.CreatedAt.UnixMicro()), Member: b.ID})
	p.ZRemRangeByScore(ctx, k, "-inf", strconv.FormatInt(time.Now().Add(-s.ttl).UnixMicro(), 10))
	p.PExpire(ctx, k, s.ttl)
}

// CreateURLs writes a batch: its hash (total and queued = len(urls), one
// open step: the expansion) and its first URLs (a list's URLs, a crawl's
// start page), in one transaction of pipelined commands. The batch:expand
// task then turns the list into jobs.
func (s *Batches) CreateURLs(ctx context.Context, b *Batch, urls []string) error {
	f, err := s.fields(b, len(urls), 1)
	if err != nil {
		return err
	}
	args := anys(urls)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		s.writeURLs(ctx, p, b, f, args)
		return nil
	})
	return err
}

// anys is urls as command arguments.
func anys(urls []string) []any {
	args := make([]any, len(urls))
	for i, u := range urls {
		args[i] = u
	}
	return args
}

func (s *Batches) writeURLs(ctx context.Context, p redis.Pipeliner, b *Batch, f, urls []any) {
	p.HSet(ctx, BatchKey(b.ID), f...)
	p.PExpire(ctx, BatchKey(b.ID), s.ttl)
	for i := 0; i < len(urls); i += batchChunk {
		p.RPush(ctx, urlsKey(b.ID), urls[i:min(i+batchChunk, len(urls))]...)
	}
	p.PExpire(ctx, urlsKey(b.ID), s.ttl)
	s.index(ctx, p, b)
}

// ErrBatchExists means CreateURLsNew found the batch written already.
var ErrBatchExists = errors.New("batch exists")

// CreateURLsNew is CreateURLs for a batch whose id is derived (a
// schedule's run): when the batch exists already it writes nothing and
// returns ErrBatchExists.
func (s *Batches) CreateURLsNew(ctx context.Context, b *Batch, urls []string) error {
	f, err := s.fields(b, len(urls), 1)
	if err != nil {
		return err
	}
	args := anys(urls)
	err = s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		n, err := tx.Exists(ctx, BatchKey(b.ID)).Result()
		if err != nil {
			return err
		}
		if n > 0 {
			return ErrBatchExists
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			s.writeURLs(ctx, p, b, f, args)
			return nil
		})
		return err
	}, BatchKey(b.ID))
	if errors.Is(err, redis.TxFailedErr) {
		return ErrBatchExists // written meanwhile by another run of the same
	}
	return err
}

// Exists reports whether the batch exists.
func (s *Batches) Exists(ctx context.Context, id string) (bool, error) {
	n, err := s.rdb.Exists(ctx, BatchKey(id)).Result()
	return n > 0, err
}

// Remove deletes a batch that could not be started (its first task could
// not be enqueued), with the jobs it has.
func (s *Batches) Remove(ctx context.Context, b *Batch) error {
	ids, err := s.rdb.LRange(ctx, jobsKey(b.ID), 0, -1).Result()
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.Del(ctx, JobKey(id))
		}
		if len(ids) > 0 {
			members := make([]any, len(ids))
			for i, id := range ids {
				members[i] = id
			}
			p.ZRem(ctx, JobIndexKey(b.Tenant), members...)
		}
		p.Del(ctx, BatchKey(b.ID), urlsKey(b.ID), markKey(b.ID), jobsKey(b.ID), seenKey(b.ID), robotsKey(b.ID), trackedKey(b.ID))
		p.ZRem(ctx, batchIndexKey(b.Tenant), b.ID)
		return nil
	})
	return err
}

var viewFields = []string{"tenant", "kind", "status", "created_at", "finished_at", "total", "queued", "running",
	"succeeded", "failed", "cancelled", "cancel", "crawl",
	"schedule_id", "scheduled_at", "track", "chg_new", "chg_same", "chg_changed", "chg_removed", "chg_removed_urls"}

func decodeView(id, tenant string, vals []any) (*BatchView, error) {
	str := func(i int) string { s, _ := vals[i].(string); return s }
	num := func(i int) int64 { n, _ := strconv.ParseInt(str(i), 10, 64); return n }
	if str(0) == "" || str(2) == "" || (tenant != "" && str(0) != tenant) {
		return nil, ErrBatchNotFound
	}
	v := &BatchView{Batch: spec.Batch{ID: id, Kind: str(1), Status: str(2), Total: num(5), Queued: num(6), Running: num(7),
		Succeeded: num(8), Failed: num(9), Cancelled: num(10)}, tenant: str(0)}
	v.CreatedAt, _ = time.Parse(time.RFC3339Nano, str(3))
	if t, err := time.Parse(time.RFC3339Nano, str(4)); err == nil {
		v.FinishedAt = &t
	}
	if v.Status == spec.BatchRunning && str(11) == "1" {
		v.Status = spec.BatchCancelled // cancelled; its running jobs still finish
	}
	if c := str(12); c != "" {
		v.Crawl = &spec.Crawl{}
		if err := json.Unmarshal([]byte(c), v.Crawl); err != nil {
			return nil, fmt.Errorf("decode crawl of %s: %w", id, err)
		}
	}
	v.ScheduleID = str(13)
	if t, err := time.Parse(time.RFC3339Nano, str(14)); err == nil {
		v.ScheduledAt = &t
	}
	v.Changes = changesOf(str(15), str(16), str(17), str(18), str(19), str(20))
	return v, nil
}

// Get returns the batch's progress, read in one command so that its counts
// add up. tenant "" skips the tenant check.
func (s *Batches) Get(ctx context.Context, tenant, id string) (*BatchView, error) {
	vals, err := s.rdb.HMGet(ctx, BatchKey(id), viewFields...).Result()
	if err != nil {
		return nil, err
	}
	return decodeView(id, tenant, vals)
}

// Meta returns what the batch was created with.
func (s *Batches) Meta(ctx context.Context, id string) (*Batch, error) {
	vals, err := s.rdb.HMGet(ctx, BatchKey(id), "tenant", "kind", "created_at", "template", "webhook", "crawl", "schedule_id", "track").Result()
	if err != nil {
		return nil, err
	}
	str := func(i int) string { s, _ := vals[i].(string); return s }
	if str(0) == "" {
		return nil, ErrBatchNotFound
	}
	b := &Batch{ID: id, Tenant: str(0), Kind: str(1)}
	b.CreatedAt, _ = time.Parse(time.RFC3339Nano, str(2))
	if err := json.Unmarshal([]byte(str(3)), &b.Template); err != nil {
		return nil, fmt.Errorf("decode template of %s: %w", id, err)
	}
	if w := str(4); w != "" {
		b.Webhook = &spec.Webhook{}
		if err := json.Unmarshal([]byte(w), b.Webhook); err != nil {
			return nil, fmt.Errorf("decode webhook of %s: %w", id, err)
		}
	}
	if c := str(5); c != "" {
		b.Crawl = &spec.Crawl{}
		if err := json.Unmarshal([]byte(c), b.Crawl); err != nil {
			return nil, fmt.Errorf("decode crawl of %s: %w", id, err)
		}
	}
	b.ScheduleID = str(6)
	if str(7) != "" && b.Template.ChangeTracking != nil {
		b.TrackScope = TrackScope(b.ScheduleID, b.Template.ChangeTracking.Tag)
	}
	return b, nil
}

// List returns the tenant's batches newest first; cursor is the
// next_cursor of the previous page.
func (s *Batches) List(ctx context.Context, tenant, cursor string, limit int) ([]BatchView, string, error) {
	max := "+inf"
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("bad cursor")
		}
		max = "(" + strconv.FormatInt(n, 10)
	}
	zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, batchIndexKey(tenant), &redis.ZRangeBy{Max: max, Min: "-inf", Count: int64(limit) + 1}).Result()
	if err != nil {
		return nil, "", err
	}
	more := len(zs) > limit
	if more {
		zs = zs[:limit]
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(zs))
	for i, z := range zs {
		cmds[i] = pipe.HMGet(ctx, BatchKey(z.Member.(string)), viewFields...)
	}
	if len(zs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", err
		}
	}
	out := []BatchView{}
	var stale []any
	next := ""
	for i, z := range zs {
		next = strconv.FormatInt(int64(z.Score), 10)
		v, err := decodeView(z.Member.(string), tenant, cmds[i].Val())
		if errors.Is(err, ErrBatchNotFound) {
			stale = append(stale, z.Member)
			continue
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, *v)
	}
	if len(stale) > 0 {
		s.rdb.ZRem(ctx, batchIndexKey(tenant), stale...)
	}
	if !more {
		next = ""
	}
	return out, next, nil
}

// JobIDs returns up to n job ids of the batch from index start, in order.
func (s *Batches) JobIDs(ctx context.Context, id string, start, n int64) ([]string, error) {
	return s.rdb.LRange(ctx, jobsKey(id), start, start+n-1).Result()
}

// JobCount is how many jobs the batch has so far.
func (s *Batches) JobCount(ctx context.Context, id string) (int64, error) {
	return s.rdb.LLen(ctx, jobsKey(id)).Result()
}

var cancelBatchScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'tenant', 'status', 'cancel')
if not h[1] or h[1] ~= ARGV[1] then return 'missing' end
if h[2] ~= 'running' then return h[2] end
redis.call('HSET', KEYS[1], 'cancel', '1')
return 'ok'
`)

// Cancel cancels the batch: from now on no job of it starts, the queued
// ones are cancelled (this call cancels those that exist; the expansion and
// the workers the rest), and the batch ends as cancelled once its running
// jobs ended. It returns ErrBatchNotFound, ErrBatchCompleted, or nil (also for a
// batch cancelled before).
func (s *Batches) Cancel(ctx context.Context, tenant, id string) error {
	r, err := cancelBatchScript.Run(ctx, s.rdb, []string{BatchKey(id)}, tenant).Text()
	if err != nil {
		return err
	}
	switch r {
	case "missing":
		return ErrBatchNotFound
	case spec.BatchCompleted:
		return ErrBatchCompleted
	case "ok":
		_, err := s.Sweep(ctx, tenant, id, 0)
		return err
	}
	return nil
}

// Sweep cancels the queued jobs of the batch from index start on, a batchChunk
// per round trip, and returns how many it cancelled.
func (s *Batches) Sweep(ctx context.Context, tenant, id string, start int64) (int, error) {
	n := 0
	for {
		ids, err := s.JobIDs(ctx, id, start, batchChunk)
		if err != nil {
			return n, err
		}
		c, err := s.jobs.CancelQueued(ctx, tenant, ids)
		n += c
		if err != nil {
			return n, err
		}
		if len(ids) < batchChunk {
			return n, nil
		}
		start += batchChunk
	}
}

// settleLua completes the batch KEYS[1] when nothing of it is queued,
// running or open (ARGV[1]: the time); a tracked batch that completes
// settles its changes (settleTrackLua; ARGV[3]: how long its URLs are
// kept).
const settleLua = settleTrackLua + `
local h = redis.call('HMGET', KEYS[1], 'status', 'queued', 'running', 'open', 'cancel')
if not h[1] then return 'missing' end
if h[1] ~= 'running' then return h[1] end
if tonumber(h[2]) == 0 and tonumber(h[3]) == 0 and tonumber(h[4]) <= 0 then
  local st = 'completed'
  if h[5] == '1' then st = 'cancelled' end
  redis.call('HSET', KEYS[1], 'status', st, 'finished_at', ARGV[1])
  if st == 'completed' then settle_track(KEYS[1]) end
  return 'now:' .. st
end
return 'running'
`

var settleScript = redis.NewScript(settleLua)

// Settle completes the batch when nothing of it is queued, running or
// open, exactly once. It returns the batch's status (running, completed,
// cancelled) and whether this call ended it.
func (s *Batches) Settle(ctx context.Context, id string) (status string, now bool, err error) {
	return settled(settleScript.Run(ctx, s.rdb, []string{BatchKey(id)}, time.Now().UTC().Format(time.RFC3339Nano), "",
		DefaultTrackTTL.Milliseconds()).Text())
}

var releaseSettleScript = redis.NewScript(`redis.call('ZREM', KEYS[2], ARGV[2])` + settleLua)

// ReleaseSlotAndSettle gives a batch job's bulk slot back and settles its
// batch (see Settle), in one round trip.
func (s *Batches) ReleaseSlotAndSettle(ctx context.Context, tenant, jobID, batchID string) (status string, now bool, err error) {
	return settled(releaseSettleScript.Run(ctx, s.rdb, []string{BatchKey(batchID), slotsKey(tenant)},
		time.Now().UTC().Format(time.RFC3339Nano), jobID, DefaultTrackTTL.Milliseconds()).Text())
}

func settled(r string, err error) (string, bool, error) {
	if err != nil {
		return "", false, err
	}
	if r == "missing" {
		return "", false, ErrBatchNotFound
	}
	if st, ok := strings.CutPrefix(r, "now:"); ok {
		return st, true, nil
	}
	return r, false, nil
}

package rdb

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// GetMany reads the jobs ids of tenant in one round trip, in order. A job
// that is gone (expired) or belongs to another tenant is left out.
// withResult decodes the results too.
func (s *Jobs) GetMany(ctx context.Context, tenant string, ids []string, withResult bool) ([]*JobInfo, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	all := make([]*redis.MapStringStringCmd, len(ids))
	some := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		if withResult {
			all[i] = pipe.HGetAll(ctx, JobKey(id))
		} else {
			some[i] = pipe.HMGet(ctx, JobKey(id), fieldsNoResult...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]*JobInfo, 0, len(ids))
	for i, id := range ids {
		var m map[string]string
		if withResult {
			m = all[i].Val()
		} else {
			m = toMap(some[i].Val())
		}
		in, err := decodeJob(id, tenant, m)
		if errors.Is(err, ErrJobNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

var cancelQueuedScript = redis.NewScript(batchMoveLua + `
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' or redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2], 'error', ARGV[3])
if redis.call('HGET', KEYS[1], 'counted') == '1' then redis.call('DECR', '{pf}:t:' .. ARGV[1] .. ':active') end
batch_move(KEYS[1], st, 'cancelled')
redis.call('PUBLISH', ARGV[4], KEYS[1])
return 1
`)

// CancelQueued cancels those of the jobs ids of tenant that are still
// queued (a job that runs or ended is left alone), in one round trip, and
// returns how many it cancelled. It is how a cancelled batch cancels what has
// not run. The jobs' tasks stay queued; a worker drops them when it sees the
// job ended.
func (s *Jobs) CancelQueued(ctx context.Context, tenant string, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if err := cancelQueuedScript.Load(ctx, s.rdb).Err(); err != nil {
		return 0, err
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(ids))
	for i, id := range ids {
		cmds[i] = cancelQueuedScript.EvalSha(ctx, pipe, []string{JobKey(id)}, tenant, now, errBatchCancelled, EventsChannel)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			n++
		}
	}
	return n, nil
}

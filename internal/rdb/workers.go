package rdb

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Workers keeps which worker processes are alive and what each runs:
//
//	{pf}:w:<worker>          string  heartbeat, expires when the worker stops beating
//	{pf}:w:<worker>:claims   hash    claim key → the task to run again (jobs.Claim)
//	{pf}:workers             zset    worker ids by their last heartbeat (ms)
//
// A claim key is job:<id> for a fetch or interact job (written and removed
// by the job scripts, with the job's owner), or the kind and id of another
// task (a webhook delivery, a batch expansion).
//
// An owner token is "<worker id>/<nonce>": the scripts that fence a job or
// a session against a dead holder read the worker id from it and look for
// its heartbeat.
type Workers struct {
	rdb redis.UniversalClient
}

// NewWorkers returns the store of worker liveness on c.
func NewWorkers(c redis.UniversalClient) *Workers { return &Workers{rdb: c} }

const workersKey = "{pf}:workers"

func heartbeatKey(worker string) string { return "{pf}:w:" + worker }
func claimsKey(worker string) string    { return "{pf}:w:" + worker + ":claims" }

// OwnerToken returns the owner token of an attempt of worker.
func OwnerToken(worker string) string { return worker + "/" + NewID("a")[2:] }

// WorkerOf is the worker id of an owner token ("" for a token of another
// form, such as those of earlier versions).
func WorkerOf(token string) string {
	w, _, ok := strings.Cut(token, "/")
	if !ok {
		return ""
	}
	return w
}

// ownerAliveLua defines owner_dead(token): true when token names a worker
// whose heartbeat is gone. A token of another form is never dead: its
// holder's lease or asynq's recovery decides.
const ownerAliveLua = `
local function owner_dead(token)
  if not token then return false end
  local w = string.match(token, '^(.-)/')
  if not w or w == '' then return false end
  return redis.call('EXISTS', '{pf}:w:' .. w) == 0
end
`

// Beat records that worker is alive for ttl.
func (s *Workers) Beat(ctx context.Context, worker string, ttl time.Duration) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, heartbeatKey(worker), 1, ttl)
		p.ZAdd(ctx, workersKey, redis.Z{Score: float64(time.Now().UnixMilli()), Member: worker})
		return nil
	})
	return err
}

// Claim records that worker runs task under key.
func (s *Workers) Claim(ctx context.Context, worker, key string, task []byte) error {
	return s.rdb.HSet(ctx, claimsKey(worker), key, task).Err()
}

// Unclaim records that worker no longer runs key.
func (s *Workers) Unclaim(ctx context.Context, worker, key string) error {
	return s.rdb.HDel(ctx, claimsKey(worker), key).Err()
}

// Claims returns what worker runs (for tests and the admin view).
func (s *Workers) Claims(ctx context.Context, worker string) (map[string]string, error) {
	return s.rdb.HGetAll(ctx, claimsKey(worker)).Result()
}

// Quiet lists the workers whose last heartbeat is older than since.
func (s *Workers) Quiet(ctx context.Context, since time.Time) ([]string, error) {
	return s.rdb.ZRangeByScore(ctx, workersKey, &redis.ZRangeBy{Min: "-inf",
		Max: "(" + strconv.FormatInt(since.UnixMilli(), 10), Count: 100}).Result()
}

var reapWorkerScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return {0} end
local claims = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[2])
table.insert(claims, 1, 1)
return claims
`)

// Reap takes the claims of worker when its heartbeat is gone (it died),
// exactly once whoever calls it: one caller gets them, and the worker is
// forgotten. dead is false when the worker is alive after all.
func (s *Workers) Reap(ctx context.Context, worker string) (claims map[string]string, dead bool, err error) {
	res, err := reapWorkerScript.Run(ctx, s.rdb, []string{heartbeatKey(worker), claimsKey(worker), workersKey}, worker).Slice()
	if err != nil || len(res) == 0 {
		return nil, false, err
	}
	if n, _ := res[0].(int64); n != 1 {
		return nil, false, nil
	}
	claims = map[string]string{}
	for i := 1; i+1 < len(res); i += 2 {
		k, _ := res[i].(string)
		v, _ := res[i+1].(string)
		claims[k] = v
	}
	return claims, true, nil
}

var leaveScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('ZREM', KEYS[3], ARGV[1]) end
return 1
`)

// Leave forgets a worker that stops: its heartbeat, and its entry unless
// claims are left (the reaper then takes them).
func (s *Workers) Leave(ctx context.Context, worker string) error {
	return leaveScript.Run(ctx, s.rdb, []string{heartbeatKey(worker), claimsKey(worker), workersKey}, worker).Err()
}

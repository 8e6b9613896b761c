package rdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sessions holds the Redis side of sessions: each session's line of job
// ids, its lease (lock token), fence, encoded state and meta, and each
// tenant's index of sessions by last use. It runs one script or command
// per call; the policy (whose turn it is, renewing a lease, sealing state)
// is package session's.
type Sessions struct {
	rdb redis.UniversalClient
}

// NewSessions returns the session store on c.
func NewSessions(c redis.UniversalClient) *Sessions { return &Sessions{rdb: c} }

// SessionKeys are the keys of one session.
type SessionKeys struct {
	// Tag is s:<tenant>:<sid>, escaped: the session's identity, also the
	// additional data of sealed state.
	Tag                            string
	Line, Lock, Fence, State, Meta string
	// Deleted holds the fence value a deletion moved the fence to, for as
	// long as a job may run: a holder whose write is refused learns from it
	// that the user deleted the session rather than that it lost its lease.
	Deleted string
	// Index is the tenant's sorted set of sessions by last use.
	Index string
}

var (
	tenantEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D", ":", "%3A")
	sidEscaper    = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")
)

func sessionIndexKey(tenant string) string {
	return "{pf}:t:" + tenantEscaper.Replace(tenant) + ":sessions"
}

// KeysOf returns the keys of a session.
func (s *Sessions) KeysOf(tenant, sid string) SessionKeys { return sessionKeys(tenant, sid) }

func sessionKeys(tenant, sid string) SessionKeys {
	tag := "s:" + tenantEscaper.Replace(tenant) + ":" + sidEscaper.Replace(sid)
	p := "{pf}:{" + tag + "}:"
	return SessionKeys{
		Tag:     tag,
		Line:    p + "line",
		Lock:    p + "lock",
		Fence:   p + "fence",
		State:   p + "state",
		Meta:    p + "meta",
		Deleted: p + "deleted",
		Index:   sessionIndexKey(tenant),
	}
}

// Append queues on c (a pipeline or transaction the caller runs, or nil to
// run at once) the commands that add jobID to the end of its session's
// line and restart the line's expiry.
func (s *Sessions) Append(ctx context.Context, c redis.Cmdable, tenant, sid, jobID string, lineTTL time.Duration) error {
	k := sessionKeys(tenant, sid)
	queue := func(p redis.Cmdable) {
		p.RPush(ctx, k.Line, jobID)
		p.PExpire(ctx, k.Line, lineTTL)
	}
	if p, ok := c.(redis.Pipeliner); ok {
		queue(p)
		return nil
	}
	if c == nil {
		c = s.rdb
	}
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error { queue(p); return nil }); err != nil {
		return fmt.Errorf("append job %s to session %q: %w", jobID, sid, err)
	}
	return nil
}

// Turn is the answer of Acquire.
type Turn struct {
	// Code: 1 acquired (Fence set), 0 not the job's turn (Head is the job
	// ahead), -1 locked by another holder, 2 the line is empty.
	Code  int64
	Fence int64
	Head  string
}

// Acquire runs one attempt to take the session for jobID: at the head of
// the line and with the lock free it sets the lock to token for lease and
// moves the fence on (starting it at firstFence when it expired). rejoin
// lets a job whose entry is gone join an empty line.
func (s *Sessions) Acquire(ctx context.Context, tenant, sid, jobID, token string, lease, lineTTL time.Duration, firstFence int64, rejoin bool) (Turn, error) {
	k := sessionKeys(tenant, sid)
	rj := "0"
	if rejoin {
		rj = "1"
	}
	res, err := acquireScript.Run(ctx, s.rdb, []string{k.Line, k.Lock, k.Fence},
		jobID, token, lease.Milliseconds(), lineTTL.Milliseconds(), firstFence, rj).Slice()
	if err != nil {
		return Turn{}, err
	}
	if len(res) != 2 {
		return Turn{}, fmt.Errorf("unexpected reply %v", res)
	}
	t := Turn{}
	t.Code, _ = res[0].(int64)
	switch t.Code {
	case 1:
		t.Fence, _ = res[1].(int64)
	case 0:
		t.Head, _ = res[1].(string)
	}
	return t, nil
}

// PopHead pops the head of the session's line if it is still head.
func (s *Sessions) PopHead(ctx context.Context, tenant, sid, head string) error {
	return popHeadScript.Run(ctx, s.rdb, []string{sessionKeys(tenant, sid).Line}, head).Err()
}

// Renew extends the session's lock for lease when it still holds token.
func (s *Sessions) Renew(ctx context.Context, tenant, sid, token string, lease time.Duration) (bool, error) {
	n, err := renewScript.Run(ctx, s.rdb, []string{sessionKeys(tenant, sid).Lock}, token, lease.Milliseconds()).Int64()
	return n == 1, err
}

// Unlock deletes the session's lock when it still holds token.
func (s *Sessions) Unlock(ctx context.Context, tenant, sid, token string) error {
	return unlockScript.Run(ctx, s.rdb, []string{sessionKeys(tenant, sid).Lock}, token).Err()
}

// Release takes jobID out of the line, frees the lock if it still holds
// token, and returns the new head ("" for none).
func (s *Sessions) Release(ctx context.Context, tenant, sid, jobID, token string) (string, error) {
	k := sessionKeys(tenant, sid)
	return releaseScript.Run(ctx, s.rdb, []string{k.Line, k.Lock}, jobID, token).Text()
}

// Remove takes jobID out of the line without a lease and returns the new
// head when the head changed ("" otherwise).
func (s *Sessions) Remove(ctx context.Context, tenant, sid, jobID string) (string, error) {
	return removeScript.Run(ctx, s.rdb, []string{sessionKeys(tenant, sid).Line}, jobID).Text()
}

// Head returns the job at the head of the session's line ("" for none).
func (s *Sessions) Head(ctx context.Context, tenant, sid string) (string, error) {
	head, err := s.rdb.LIndex(ctx, sessionKeys(tenant, sid).Line, 0).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return head, err
}

// StateWrite is one write of a session's state under a fence.
type StateWrite struct {
	Fence   int64
	Blob    []byte // the encoded (maybe sealed) state
	Digest  string // fingerprint of the normalised state
	Now     time.Time
	TTL     time.Duration // the session's sliding expiry
	LineTTL time.Duration
	Cookies int
	Origins []byte // JSON list of origins
	Empty   bool   // the state holds nothing
}

// Write answers of SaveState and Touch.
const (
	WriteOK      = 1
	WriteStale   = -1 // a newer holder exists
	WriteDeleted = -2 // the session was deleted under this holder
	WriteNone    = 0  // Touch: no session stored
)

// SaveState writes w under its fence and returns WriteOK (with whether the
// content changed and the session's version), WriteStale or WriteDeleted.
func (s *Sessions) SaveState(ctx context.Context, tenant, sid string, w StateWrite) (code int64, changed bool, version int64, err error) {
	k := sessionKeys(tenant, sid)
	empty := "0"
	if w.Empty {
		empty = "1"
	}
	res, err := saveScript.Run(ctx, s.rdb, []string{k.State, k.Meta, k.Fence, k.Line, k.Deleted},
		strconv.FormatInt(w.Fence, 10), w.Blob, w.Digest, w.Now.UnixMilli(), w.TTL.Milliseconds(),
		w.LineTTL.Milliseconds(), w.Cookies, w.Origins, len(w.Blob), empty).Slice()
	if err != nil {
		return 0, false, 0, err
	}
	code, _ = res[0].(int64)
	if code == WriteOK && len(res) > 2 {
		changed = res[1] == int64(1)
		version, _ = res[2].(int64)
	}
	return code, changed, version, nil
}

// Touch restarts the session's expiry under fence: WriteOK, WriteNone (no
// session stored), WriteStale or WriteDeleted.
func (s *Sessions) Touch(ctx context.Context, tenant, sid string, fence int64, now time.Time, ttl, lineTTL time.Duration) (int64, error) {
	k := sessionKeys(tenant, sid)
	return touchScript.Run(ctx, s.rdb, []string{k.State, k.Meta, k.Fence, k.Line, k.Deleted},
		strconv.FormatInt(fence, 10), now.UnixMilli(), ttl.Milliseconds(), lineTTL.Milliseconds()).Int64()
}

// Index records the session's last use in the tenant's index and drops
// entries older than ttl. A failure only delays the session's appearance
// in a list, so it is not reported.
func (s *Sessions) Index(ctx context.Context, tenant, sid string, now time.Time, ttl time.Duration) {
	key := sessionIndexKey(tenant)
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(now.UnixMilli()), Member: sid})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.Add(-ttl).UnixMilli(), 10))
		p.PExpire(ctx, key, ttl)
		return nil
	})
}

// Get reads the session's meta hash and, with withState, its encoded
// state (nil when gone).
func (s *Sessions) Get(ctx context.Context, tenant, sid string, withState bool) (map[string]string, []byte, error) {
	k := sessionKeys(tenant, sid)
	var hget *redis.MapStringStringCmd
	var sget *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		hget = p.HGetAll(ctx, k.Meta)
		if withState {
			sget = p.Get(ctx, k.State)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	if !withState {
		return hget.Val(), nil, nil
	}
	blob, err := sget.Bytes()
	if errors.Is(err, redis.Nil) {
		return hget.Val(), nil, nil
	}
	return hget.Val(), blob, err
}

// Locked reports whether a holder has the session's lease.
func (s *Sessions) Locked(ctx context.Context, tenant, sid string) (bool, error) {
	n, err := s.rdb.Exists(ctx, sessionKeys(tenant, sid).Lock).Result()
	return n == 1, err
}

// Delete removes the session's state and meta and its index entry, and
// when there was a session moves the fence on, remembering the deletion
// for remember. It returns whether there was a session.
func (s *Sessions) Delete(ctx context.Context, tenant, sid string, remember time.Duration) (bool, error) {
	k := sessionKeys(tenant, sid)
	n, err := deleteScript.Run(ctx, s.rdb, []string{k.State, k.Meta, k.Fence, k.Deleted}, remember.Milliseconds()).Int64()
	if err != nil {
		return false, err
	}
	_ = s.rdb.ZRem(ctx, k.Index, sid).Err()
	return n > 0, nil
}

// IndexPage reads up to count entries of the tenant's session index,
// newest first, from score top down, skipping offset entries.
func (s *Sessions) IndexPage(ctx context.Context, tenant, top string, offset, count int64) ([]redis.Z, error) {
	return s.rdb.ZRevRangeByScoreWithScores(ctx, sessionIndexKey(tenant), &redis.ZRangeBy{Max: top, Min: "-inf", Offset: offset, Count: count}).Result()
}

// Metas reads the meta hashes of sids in one round trip.
func (s *Sessions) Metas(ctx context.Context, tenant string, sids []string) ([]map[string]string, error) {
	cmds := make([]*redis.MapStringStringCmd, len(sids))
	if len(sids) == 0 {
		return nil, nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sid := range sids {
			cmds[i] = p.HGetAll(ctx, sessionKeys(tenant, sid).Meta)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]map[string]string, len(sids))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// Unindex removes stale entries from the tenant's session index, each only
// if its score is still the one seen; pairs is member, score, member, ….
func (s *Sessions) Unindex(ctx context.Context, tenant string, pairs []any) error {
	return unindexScript.Run(ctx, s.rdb, []string{sessionIndexKey(tenant)}, pairs...).Err()
}

// SetProxy records, under fence, the proxy ("pool/id") the session's jobs
// leave through, and move (a JSON object, "" for none) when the session
// moved to it: WriteOK, WriteNone (no session stored) or WriteStale. The
// meta fields are proxy and proxy_moves (a JSON array, the last 10).
func (s *Sessions) SetProxy(ctx context.Context, tenant, sid string, fence int64, proxy, move string) (int64, error) {
	k := sessionKeys(tenant, sid)
	return setProxyScript.Run(ctx, s.rdb, []string{k.Meta, k.Fence}, strconv.FormatInt(fence, 10), proxy, move).Int64()
}

package session

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
	"github.com/redis/go-redis/v9"
)

// Meta describes a stored session, as GET /v1/sessions/{id} shows it
// (State set only when asked for).
type Meta = spec.Session

// Save writes st as the session's state under l. It refuses a stale writer
// (ErrStaleFence: a newer lease exists or the session was deleted since l was
// acquired) and a state whose encoding is larger than Config.MaxBytes
// (ErrTooLarge); in both cases the stored state is unchanged. The first save
// creates the session. The content is only rewritten, and the version only
// bumped, when it differs from the stored state; every save restarts the
// session's expiry. changed reports whether cookies or storage differ from
// what was stored (for a new session: whether st holds anything).
func (s *Store) Save(ctx context.Context, l *Lease, st *spec.State) (changed bool, err error) {
	k := sessionKeys(l.Tenant, l.SID)
	norm := spec.CloneState(st)
	norm.Normalize()
	raw, err := json.Marshal(norm)
	if err != nil {
		return false, fmt.Errorf("save session %q: %w", l.SID, err)
	}
	blob, err := encodeJSON(raw, s.cfg.Key, k.tag)
	if err != nil {
		return false, fmt.Errorf("save session %q: %w", l.SID, err)
	}
	if len(blob) > s.cfg.MaxBytes {
		return false, fmt.Errorf("save session %q: %w: %d bytes encoded, at most %d", l.SID, ErrTooLarge, len(blob), s.cfg.MaxBytes)
	}
	origins := make([]string, 0, len(norm.Origins))
	for _, o := range norm.Origins {
		origins = append(origins, o.Origin)
	}
	originsJSON, _ := json.Marshal(origins)
	empty := "0"
	if norm.Empty() {
		empty = "1"
	}
	now := time.Now()
	res, err := saveScript.Run(ctx, s.rdb, []string{k.state, k.meta, k.fence, k.line, k.deleted},
		strconv.FormatInt(l.Fence, 10), blob, s.digest(raw), now.UnixMilli(), s.cfg.TTL.Milliseconds(),
		s.cfg.LineTTL.Milliseconds(), len(norm.Cookies), originsJSON, len(blob), empty).Slice()
	if err != nil {
		return false, fmt.Errorf("save session %q: %w", l.SID, err)
	}
	switch code, _ := res[0].(int64); code {
	case 1:
	case -2:
		return false, fmt.Errorf("save session %q (fence %d): %w", l.SID, l.Fence, ErrDeleted)
	default:
		s.m.stale.Inc()
		return false, fmt.Errorf("save session %q (fence %d): %w", l.SID, l.Fence, ErrStaleFence)
	}
	changed = len(res) > 1 && res[1] == int64(1)
	s.m.saved.WithLabelValues(strconv.FormatBool(changed)).Inc()
	if changed {
		s.m.stateBytes.Observe(float64(len(blob)))
	}
	s.index(ctx, l.Tenant, l.SID, now)
	return changed, nil
}

// Touch restarts the session's expiry under l without changing its state
// (a job that used the session but changed nothing, or failed). It returns
// ErrStaleFence like Save, and does nothing for a session never saved.
func (s *Store) Touch(ctx context.Context, l *Lease) error {
	k := sessionKeys(l.Tenant, l.SID)
	now := time.Now()
	n, err := touchScript.Run(ctx, s.rdb, []string{k.state, k.meta, k.fence, k.line, k.deleted},
		strconv.FormatInt(l.Fence, 10), now.UnixMilli(), s.cfg.TTL.Milliseconds(), s.cfg.LineTTL.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("touch session %q: %w", l.SID, err)
	}
	switch n {
	case -2:
		return fmt.Errorf("touch session %q (fence %d): %w", l.SID, l.Fence, ErrDeleted)
	case -1:
		s.m.stale.Inc()
		return fmt.Errorf("touch session %q (fence %d): %w", l.SID, l.Fence, ErrStaleFence)
	case 1:
		s.index(ctx, l.Tenant, l.SID, now)
	}
	return nil
}

// index records the session's last use in the tenant's index (a separate
// slot, hence a separate command) and drops entries that expired. A failure
// only delays the session's appearance in List, so it is not reported.
func (s *Store) index(ctx context.Context, tenant, sid string, now time.Time) {
	key := indexKey(tenant)
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(now.UnixMilli()), Member: sid})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.Add(-s.cfg.TTL).UnixMilli(), 10))
		p.PExpire(ctx, key, s.cfg.TTL)
		return nil
	})
}

// digest fingerprints a normalized state's JSON; keyed when state is sealed,
// so that the digest tells nothing about the content.
func (s *Store) digest(raw []byte) string {
	key := []byte("pagefleet session digest")
	if s.cfg.Key != nil {
		h := sha256.Sum256(append([]byte("pagefleet session digest\x00"), s.cfg.Key...))
		key = h[:]
	}
	m := hmac.New(sha256.New, key)
	m.Write(raw)
	return hex.EncodeToString(m.Sum(nil))
}

// Load returns the session's state and meta; ErrNotFound when there is no
// such session (a new one). State that cannot be decoded returns an error
// wrapping ErrCorrupt.
func (s *Store) Load(ctx context.Context, tenant, sid string) (*spec.State, *Meta, error) {
	m, st, err := s.Get(ctx, tenant, sid, true)
	if err != nil {
		return nil, nil, err
	}
	return st, m, nil
}

// Get returns the session's meta, and its state when withState is set;
// ErrNotFound when there is no such session.
func (s *Store) Get(ctx context.Context, tenant, sid string, withState bool) (*Meta, *spec.State, error) {
	k := sessionKeys(tenant, sid)
	var hget *redis.MapStringStringCmd
	var sget *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		hget = p.HGetAll(ctx, k.meta)
		if withState {
			sget = p.Get(ctx, k.state)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("get session %q: %w", sid, err)
	}
	m, ok := parseMeta(sid, hget.Val())
	if !ok {
		return nil, nil, fmt.Errorf("session %q: %w", sid, ErrNotFound)
	}
	if !withState {
		return m, nil, nil
	}
	blob, err := sget.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("session %q: %w", sid, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get session %q: %w", sid, err)
	}
	st, err := DecodeState(blob, s.cfg.Key, k.tag)
	if err != nil {
		return nil, nil, fmt.Errorf("load session %q: %w", sid, err)
	}
	return m, st, nil
}

func parseMeta(sid string, h map[string]string) (*Meta, bool) {
	if len(h) == 0 || h["created"] == "" {
		return nil, false
	}
	ms := func(f string) time.Time {
		n, _ := strconv.ParseInt(h[f], 10, 64)
		return time.UnixMilli(n).UTC()
	}
	m := &Meta{ID: sid, CreatedAt: ms("created"), LastUsedAt: ms("used"), ExpiresAt: ms("expires"), Origins: []string{}}
	m.Version, _ = strconv.ParseInt(h["version"], 10, 64)
	m.Cookies, _ = strconv.Atoi(h["cookies"])
	m.Bytes, _ = strconv.Atoi(h["bytes"])
	if o := h["origins"]; o != "" {
		_ = json.Unmarshal([]byte(o), &m.Origins)
		if m.Origins == nil {
			m.Origins = []string{}
		}
	}
	return m, true
}

// Delete removes the session's state and meta. It first waits, at most wait
// and while ctx lasts, for a job holding the session to end; after that it
// deletes anyway and moves the fence on, so a holder still running can write
// nothing (its Save and Touch return ErrDeleted). The line is kept: queued jobs of the session still run, and start
// clean. It returns ErrNotFound when there was no session.
func (s *Store) Delete(ctx context.Context, tenant, sid string, wait time.Duration) error {
	k := sessionKeys(tenant, sid)
	deadline := time.Now().Add(wait)
	poll := min(max(s.cfg.Lease/20, 10*time.Millisecond), 100*time.Millisecond)
	for {
		n, err := s.rdb.Exists(ctx, k.lock).Result()
		if err != nil {
			return fmt.Errorf("delete session %q: %w", sid, err)
		}
		if n == 0 || !time.Now().Before(deadline) {
			break
		}
		t := time.NewTimer(min(poll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("delete session %q: %w", sid, context.Cause(ctx))
		case <-t.C:
		}
	}
	n, err := deleteScript.Run(ctx, s.rdb, []string{k.state, k.meta, k.fence, k.deleted}, s.cfg.LineTTL.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("delete session %q: %w", sid, err)
	}
	_ = s.rdb.ZRem(ctx, k.index, sid).Err()
	if n == 0 {
		return fmt.Errorf("session %q: %w", sid, ErrNotFound)
	}
	return nil
}

// List returns the tenant's sessions, most recently used first, limit at a
// time (default 50, at most 1000), and the cursor of the next page ("" on the
// last one). Index entries whose session expired or was deleted are skipped
// and dropped from the index.
func (s *Store) List(ctx context.Context, tenant string, cursor string, limit int) ([]Meta, string, error) {
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	key := indexKey(tenant)
	top, afterSID := "+inf", ""
	var afterScore int64
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			return nil, "", ErrInvalidCursor
		}
		score, sid, ok := strings.Cut(string(b), ":")
		if !ok {
			return nil, "", ErrInvalidCursor
		}
		if afterScore, err = strconv.ParseInt(score, 10, 64); err != nil {
			return nil, "", ErrInvalidCursor
		}
		top, afterSID = score, sid
	}
	now := time.Now()
	stale := now.Add(-10 * time.Second).UnixMilli()
	out := make([]Meta, 0, limit)
	var last redis.Z
	var gone []any // member, score pairs, removed after the scan so that offsets stay right
	more := false
	for offset := int64(0); ; {
		batch := int64(limit + 1 - len(out))
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Max: top, Min: "-inf", Offset: offset, Count: batch}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list sessions: %w", err)
		}
		offset += int64(len(zs))
		// Entries tied with the cursor's score come in descending member
		// order; those not after the cursor were on earlier pages.
		cand := zs[:0:0]
		for _, z := range zs {
			sid, _ := z.Member.(string)
			if cursor != "" && int64(z.Score) == afterScore && sid >= afterSID {
				continue
			}
			cand = append(cand, z)
		}
		cmds := make([]*redis.MapStringStringCmd, len(cand))
		if len(cand) > 0 {
			_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, z := range cand {
					cmds[i] = p.HGetAll(ctx, sessionKeys(tenant, z.Member.(string)).meta)
				}
				return nil
			})
			if err != nil {
				return nil, "", fmt.Errorf("list sessions: %w", err)
			}
		}
		for i, z := range cand {
			sid := z.Member.(string)
			m, ok := parseMeta(sid, cmds[i].Val())
			if !ok || !m.ExpiresAt.After(now) {
				// Leave fresh entries alone: their session may be being
				// created right now.
				if int64(z.Score) < stale {
					gone = append(gone, sid, strconv.FormatInt(int64(z.Score), 10))
				}
				continue
			}
			if len(out) == limit {
				more = true
				break
			}
			out = append(out, *m)
			last = z
		}
		if more || int64(len(zs)) < batch {
			break
		}
	}
	if len(gone) > 0 {
		_ = unindexScript.Run(ctx, s.rdb, []string{key}, gone...).Err()
	}
	next := ""
	if more {
		next = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d:%s", int64(last.Score), last.Member))
	}
	return out, next, nil
}

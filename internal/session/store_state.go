package session

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
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
	tag := s.r.KeysOf(l.Tenant, l.SID).Tag
	norm := spec.CloneState(st)
	norm.Normalize()
	raw, err := json.Marshal(norm)
	if err != nil {
		return false, fmt.Errorf("save session %q: %w", l.SID, err)
	}
	blob, err := encodeJSON(raw, s.cfg.Key, tag)
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
	now := time.Now()
	code, changed, _, err := s.r.SaveState(ctx, l.Tenant, l.SID, rdb.StateWrite{Fence: l.Fence, Blob: blob, Digest: s.digest(raw),
		Now: now, TTL: s.cfg.TTL, LineTTL: s.cfg.LineTTL, Cookies: len(norm.Cookies), Origins: originsJSON, Empty: norm.Empty()})
	if err != nil {
		return false, fmt.Errorf("save session %q: %w", l.SID, err)
	}
	switch code {
	case rdb.WriteOK:
	case rdb.WriteDeleted:
		return false, fmt.Errorf("save session %q (fence %d): %w", l.SID, l.Fence, ErrDeleted)
	default:
		s.m.stale.Inc()
		return false, fmt.Errorf("save session %q (fence %d): %w", l.SID, l.Fence, ErrStaleFence)
	}
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
	now := time.Now()
	n, err := s.r.Touch(ctx, l.Tenant, l.SID, l.Fence, now, s.cfg.TTL, s.cfg.LineTTL)
	if err != nil {
		return fmt.Errorf("touch session %q: %w", l.SID, err)
	}
	switch n {
	case rdb.WriteDeleted:
		return fmt.Errorf("touch session %q (fence %d): %w", l.SID, l.Fence, ErrDeleted)
	case rdb.WriteStale:
		s.m.stale.Inc()
		return fmt.Errorf("touch session %q (fence %d): %w", l.SID, l.Fence, ErrStaleFence)
	case rdb.WriteOK:
		s.index(ctx, l.Tenant, l.SID, now)
	}
	return nil
}

// index records the session's last use in the tenant's index (a separate
// slot, hence a separate command) and drops entries that expired. A failure
// only delays the session's appearance in List, so it is not reported.
func (s *Store) index(ctx context.Context, tenant, sid string, now time.Time) {
	s.r.Index(ctx, tenant, sid, now, s.cfg.TTL)
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
	h, blob, err := s.r.Get(ctx, tenant, sid, withState)
	if err != nil {
		return nil, nil, fmt.Errorf("get session %q: %w", sid, err)
	}
	m, ok := parseMeta(sid, h)
	if !ok || (withState && blob == nil) {
		return nil, nil, fmt.Errorf("session %q: %w", sid, ErrNotFound)
	}
	if !withState {
		return m, nil, nil
	}
	st, err := DecodeState(blob, s.cfg.Key, s.r.KeysOf(tenant, sid).Tag)
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
	if pool, id, ok := strings.Cut(h["proxy"], "/"); ok {
		m.Proxy = &spec.ProxyRef{Pool: pool, ID: id}
	}
	if mv := h["proxy_moves"]; mv != "" {
		_ = json.Unmarshal([]byte(mv), &m.ProxyMoves)
	}
	return m, true
}

// SetProxy records under l the proxy the session's jobs leave through,
// and move when the session moved to it. A session never saved records
// nothing; a stale lease gets ErrStaleFence.
func (s *Store) SetProxy(ctx context.Context, l *Lease, ref spec.ProxyRef, move *spec.ProxyMove) error {
	var mv []byte
	if move != nil {
		mv, _ = json.Marshal(move)
	}
	n, err := s.r.SetProxy(ctx, l.Tenant, l.SID, l.Fence, ref.Pool+"/"+ref.ID, string(mv))
	if err != nil {
		return fmt.Errorf("session %q proxy: %w", l.SID, err)
	}
	if n == rdb.WriteStale {
		return fmt.Errorf("session %q proxy (fence %d): %w", l.SID, l.Fence, ErrStaleFence)
	}
	return nil
}

// Delete removes the session's state and meta. It first waits, at most wait
// and while ctx lasts, for a job holding the session to end; after that it
// deletes anyway and moves the fence on, so a holder still running can write
// nothing (its Save and Touch return ErrDeleted). The line is kept: queued jobs of the session still run, and start
// clean. It returns ErrNotFound when there was no session.
func (s *Store) Delete(ctx context.Context, tenant, sid string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	poll := min(max(s.cfg.Lease/20, 10*time.Millisecond), 100*time.Millisecond)
	for {
		locked, err := s.r.Locked(ctx, tenant, sid)
		if err != nil {
			return fmt.Errorf("delete session %q: %w", sid, err)
		}
		if !locked || !time.Now().Before(deadline) {
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
	existed, err := s.r.Delete(ctx, tenant, sid, s.cfg.LineTTL)
	if err != nil {
		return fmt.Errorf("delete session %q: %w", sid, err)
	}
	if !existed {
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
		zs, err := s.r.IndexPage(ctx, tenant, top, offset, batch)
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
		sids := make([]string, len(cand))
		for i, z := range cand {
			sids[i] = z.Member.(string)
		}
		metas, err := s.r.Metas(ctx, tenant, sids)
		if err != nil {
			return nil, "", fmt.Errorf("list sessions: %w", err)
		}
		for i, z := range cand {
			sid := z.Member.(string)
			m, ok := parseMeta(sid, metas[i])
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
		_ = s.r.Unindex(ctx, tenant, gone)
	}
	next := ""
	if more {
		next = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d:%s", int64(last.Score), last.Member))
	}
	return out, next, nil
}

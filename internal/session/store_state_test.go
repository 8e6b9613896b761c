package session

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
	"github.com/prometheus/client_golang/prometheus"
)

func richState() *spec.State {
	return &spec.State{
		Cookies: []spec.Cookie{
			{Name: "sid", Value: "abc", Domain: "app.example.com", Path: "/", Expires: -1, HTTPOnly: true, Secure: true, SameSite: "Lax"},
			{Name: "pref", Value: "dark", Domain: "example.com", Path: "/", Expires: 1893456000},
		},
		Origins: []spec.OriginState{{
			Origin:         "https://app.example.com",
			LocalStorage:   []spec.NameValue{{Name: "token", Value: "t0k"}},
			SessionStorage: []spec.NameValue{{Name: "step", Value: "2"}},
			IndexedDB: []spec.IDBDatabase{{Name: "db", Version: 3, Stores: []spec.IDBObjectStore{{
				Name: "orders", KeyPath: json.RawMessage(`"id"`),
				Records: []spec.IDBRecord{{Value: json.RawMessage(`{"id":1,"status":"shipped"}`)}},
			}}}},
		}},
	}
}

// bigState is a state whose JSON is about n bytes and compresses well.
func bigState(n int) *spec.State {
	st := &spec.State{}
	for i := 0; i*40 < n; i++ {
		st.Cookies = append(st.Cookies, spec.Cookie{Name: fmt.Sprintf("c%04d", i), Value: "value", Domain: "example.com", Path: "/", Expires: -1})
	}
	return st
}

// noiseState is a state of about n bytes that does not compress.
func noiseState(n int) *spec.State {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return cookieState("noise", hex.EncodeToString(b))
}

func saveAs(t *testing.T, s *Store, tenant, sid, job string, st *spec.State) bool {
	t.Helper()
	ctx := context.Background()
	appendJobs(t, s, tenant, sid, job)
	l := mustAcquire(t, s, tenant, sid, job, nil)
	defer func() {
		if _, err := s.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
	}()
	changed, err := s.Save(ctx, l, st)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	return changed
}

func TestSaveLoadRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	for _, tc := range []struct {
		name string
		key  []byte
		st   *spec.State
		gzip bool
	}{
		{"plain", nil, richState(), false},
		{"sealed", key, richState(), false},
		{"plain gzip", nil, bigState(8 << 10), true},
		{"sealed gzip", key, bigState(8 << 10), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rdb, _ := newStore(t, Config{Key: tc.key})
			ctx := context.Background()
			before := time.Now().Truncate(time.Millisecond)
			if !saveAs(t, s, "acme", "rt", "j1", tc.st) {
				t.Error("first save of a non-empty state reported no change")
			}
			st, m, err := s.Load(ctx, "acme", "rt")
			if err != nil {
				t.Fatal(err)
			}
			if !spec.EqualStates(st, tc.st) {
				t.Fatalf("round trip changed the state:\n got %+v\nwant %+v", st, tc.st)
			}
			if m.ID != "rt" || m.Version != 1 || m.Cookies != len(tc.st.Cookies) || m.Bytes == 0 {
				t.Errorf("meta %+v", m)
			}
			if m.CreatedAt.Before(before) || m.LastUsedAt.Before(m.CreatedAt) || !m.ExpiresAt.Equal(m.LastUsedAt.Add(DefaultTTL)) {
				t.Errorf("meta times %v %v %v", m.CreatedAt, m.LastUsedAt, m.ExpiresAt)
			}
			if len(tc.st.Origins) > 0 && (len(m.Origins) != 1 || m.Origins[0] != "https://app.example.com") {
				t.Errorf("origins %v", m.Origins)
			}
			raw, err := rdb.Get(ctx, sessionKeys("acme", "rt").State).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if got := raw[0]&flagGzip != 0; got != tc.gzip {
				t.Errorf("gzip %v, want %v", got, tc.gzip)
			}
			if got := raw[0]&flagSealed != 0; got != (tc.key != nil) {
				t.Errorf("sealed %v, want %v", got, tc.key != nil)
			}
			if tc.key != nil && bytes.Contains(raw, []byte("t0k")) {
				t.Error("sealed state shows its content")
			}
			if m.Bytes != len(raw) {
				t.Errorf("meta bytes %d, stored %d", m.Bytes, len(raw))
			}
			if tc.key == nil {
				return
			}
			// Another key, no key, another session: clean failures.
			other, _ := New(rdb, Config{Key: bytes.Repeat([]byte{8}, 32)})
			if _, _, err := other.Load(ctx, "acme", "rt"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Load with the wrong key = %v, want ErrCorrupt", err)
			}
			none, _ := New(rdb, Config{})
			if _, _, err := none.Load(ctx, "acme", "rt"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Load without a key = %v, want ErrCorrupt", err)
			}
			if meta, _, err := none.Get(ctx, "acme", "rt", false); err != nil || meta.Version != 1 {
				t.Errorf("Get meta without a key = %v, %v", meta, err)
			}
			moved := sessionKeys("acme", "moved")
			from := sessionKeys("acme", "rt")
			h, _ := rdb.HGetAll(ctx, from.Meta).Result()
			rdb.Set(ctx, moved.State, raw, 0)
			for f, v := range h {
				rdb.HSet(ctx, moved.Meta, f, v)
			}
			if _, _, err := s.Load(ctx, "acme", "moved"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Load of a blob moved to another session = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestPlaintextStaysReadableWithKey(t *testing.T) {
	s, rdb, _ := newStore(t, Config{})
	saveAs(t, s, "acme", "old", "j1", richState())
	sealed, err := New(rdb, Config{Key: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := sealed.Load(context.Background(), "acme", "old")
	if err != nil || !spec.EqualStates(st, richState()) {
		t.Fatalf("Load of plaintext state with a key = %v", err)
	}
}

func TestNewValidatesKey(t *testing.T) {
	s, rdb, _ := newStore(t, Config{})
	_ = s
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := New(rdb, Config{Key: make([]byte, n)}); err == nil {
			t.Errorf("New accepted a %d-byte key", n)
		}
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Error("New accepted a nil client")
	}
}

func TestChangedAndVersion(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, _, _ := newStore(t, Config{Registerer: reg})
	ctx := context.Background()
	reordered := richState()
	reordered.Cookies[0], reordered.Cookies[1] = reordered.Cookies[1], reordered.Cookies[0]
	different := richState()
	different.Origins[0].LocalStorage[0].Value = "new"
	withEmptyOrigin := richState()
	withEmptyOrigin.Origins = append(withEmptyOrigin.Origins, spec.OriginState{Origin: "https://empty.example"})

	steps := []struct {
		name    string
		st      *spec.State
		changed bool
		version int64
	}{
		{"first save, empty", &spec.State{}, false, 1},
		{"empty again (nil)", nil, false, 1},
		{"content", richState(), true, 2},
		{"same content", richState(), false, 2},
		{"reordered", reordered, false, 2},
		{"with an empty origin", withEmptyOrigin, false, 2},
		{"changed storage", different, true, 3},
		{"cleared", &spec.State{}, true, 4},
	}
	var prev *spec.State
	for i, step := range steps {
		changed := saveAs(t, s, "acme", "ver", fmt.Sprintf("j%d", i), step.st)
		if changed != step.changed {
			t.Errorf("%s: changed %v, want %v", step.name, changed, step.changed)
		}
		if i > 0 && changed == spec.EqualStates(prev, step.st) {
			t.Errorf("%s: changed %v disagrees with spec.EqualStates", step.name, changed)
		}
		prev = step.st
		m, _, err := s.Get(ctx, "acme", "ver", false)
		if err != nil {
			t.Fatal(err)
		}
		if m.Version != step.version {
			t.Errorf("%s: version %d, want %d", step.name, m.Version, step.version)
		}
	}
	if v := metricValue(t, reg, "pagefleet_sessions_saved_total", map[string]string{"changed": "true"}); v != 3 {
		t.Errorf("changed saves counted %v, want 3", v)
	}
	if v := metricValue(t, reg, "pagefleet_session_state_bytes", nil); v != 3 {
		t.Errorf("state sizes observed %v, want 3", v)
	}
}

func TestFirstSaveEmptyCreatesSession(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	ctx := context.Background()
	if _, _, err := s.Load(ctx, "acme", "new"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load of a new session = %v, want ErrNotFound", err)
	}
	saveAs(t, s, "acme", "new", "j1", nil)
	st, m, err := s.Load(ctx, "acme", "new")
	if err != nil || !st.Empty() || m.Version != 1 || m.Cookies != 0 || len(m.Origins) != 0 || m.Origins == nil {
		t.Fatalf("Load = %+v, %+v, %v", st, m, err)
	}
}

func TestTTLSlides(t *testing.T) {
	const ttl = 600 * time.Millisecond
	s, rdb, _ := newStore(t, Config{TTL: ttl, LineTTL: ttl})
	ctx := context.Background()
	k := sessionKeys("acme", "ttl")
	appendJobs(t, s, "acme", "ttl", "j1", "j2", "j3")
	l := mustAcquire(t, s, "acme", "ttl", "j1", nil)
	if _, err := s.Save(ctx, l, richState()); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{k.State, k.Meta, k.Fence, k.Line} {
		if d, _ := rdb.PTTL(ctx, key).Result(); d <= 0 || d > ttl {
			t.Errorf("%s expires in %v, want (0, %v]", key, d, ttl)
		}
	}
	if _, err := s.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	l = mustAcquire(t, s, "acme", "ttl", "j2", nil)
	time.Sleep(ttl * 2 / 3)
	m0, _, _ := s.Get(ctx, "acme", "ttl", false)
	if err := s.Touch(ctx, l); err != nil {
		t.Fatal(err)
	}
	m1, _, err := s.Get(ctx, "acme", "ttl", false)
	if err != nil {
		t.Fatal(err)
	}
	if !m1.LastUsedAt.After(m0.LastUsedAt) || !m1.ExpiresAt.After(m0.ExpiresAt) || m1.Version != 1 {
		t.Errorf("Touch: before %+v after %+v", m0, m1)
	}
	// The touch moved Redis's expiry of the state and meta, not only the
	// meta's expires field: read both expiries right after it (a sleep past
	// the first expiry would race with a slow machine).
	for _, key := range []string{k.State, k.Meta} {
		if d, _ := rdb.PTTL(ctx, key).Result(); d <= ttl/2 {
			t.Errorf("%s expires in %v after Touch, want close to %v", key, d, ttl)
		}
	}
	if _, err := s.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	if _, _, err := s.Load(ctx, "acme", "ttl"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after the TTL = %v, want ErrNotFound", err)
	}
	if list, _, _ := s.List(ctx, "acme", "", 10); len(list) != 0 {
		t.Errorf("List shows an expired session: %+v", list)
	}
	// Touch of a session that does not exist creates nothing.
	appendJobs(t, s, "acme", "ttl", "j4")
	l = mustAcquire(t, s, "acme", "ttl", "j4", nil)
	if err := s.Touch(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "acme", "ttl", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Touch created a session: %v", err)
	}
}

func TestSizeCapKeepsLastGoodState(t *testing.T) {
	s, _, _ := newStore(t, Config{MaxBytes: 4 << 10})
	ctx := context.Background()
	saveAs(t, s, "acme", "cap", "j1", richState())
	// Compressible state larger than the cap before encoding still fits.
	saveAs(t, s, "acme", "cap", "j2", bigState(16<<10))
	appendJobs(t, s, "acme", "cap", "j3")
	l := mustAcquire(t, s, "acme", "cap", "j3", nil)
	if _, err := s.Save(ctx, l, noiseState(8<<10)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Save of an oversized state = %v, want ErrTooLarge", err)
	}
	st, m, err := s.Load(ctx, "acme", "cap")
	if err != nil {
		t.Fatal(err)
	}
	if !spec.EqualStates(st, bigState(16<<10)) || m.Version != 2 {
		t.Fatalf("state after a refused save: version %d, %d cookies", m.Version, len(st.Cookies))
	}
}

func TestTenantIsolation(t *testing.T) {
	s, _, _ := newStore(t, Config{Key: bytes.Repeat([]byte{3}, 32)})
	ctx := context.Background()
	saveAs(t, s, "acme", "shared", "a1", cookieState("who", "acme"))
	saveAs(t, s, "globex", "shared", "g1", cookieState("who", "globex"))
	for _, tenant := range []string{"acme", "globex"} {
		st, _, err := s.Load(ctx, tenant, "shared")
		if err != nil || st.Cookies[0].Value != tenant {
			t.Errorf("tenant %s sees %+v, %v", tenant, st, err)
		}
	}
	if _, _, err := s.Load(ctx, "initech", "shared"); !errors.Is(err, ErrNotFound) {
		t.Errorf("third tenant: %v, want ErrNotFound", err)
	}
	// Tenant and session ids that could be confused in a key stay apart.
	saveAs(t, s, "a:b", "c", "x1", cookieState("who", "a:b/c"))
	if _, _, err := s.Load(ctx, "a", "b:c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tenant a, session b:c sees tenant a:b's session c: %v", err)
	}
	for _, tenant := range []string{"acme", "globex"} {
		list, _, err := s.List(ctx, tenant, "", 10)
		if err != nil || len(list) != 1 || list[0].ID != "shared" {
			t.Errorf("List %s = %+v, %v", tenant, list, err)
		}
	}
	if err := s.Delete(ctx, "acme", "shared", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, "globex", "shared"); err != nil {
		t.Errorf("deleting acme's session touched globex's: %v", err)
	}
}

func TestDelete(t *testing.T) {
	const lease = 2 * time.Second
	s, _, _ := newStore(t, Config{Lease: lease})
	ctx := context.Background()

	t.Run("waits for the running job", func(t *testing.T) {
		saveAs(t, s, "acme", "del", "j1", richState())
		appendJobs(t, s, "acme", "del", "j2", "j3")
		l := mustAcquire(t, s, "acme", "del", "j2", nil)
		const runFor = 300 * time.Millisecond
		released := make(chan time.Time, 1)
		go func() {
			time.Sleep(runFor)
			if _, err := s.Save(ctx, l, cookieState("late", "write")); err != nil {
				t.Errorf("Save of the running job: %v", err)
			}
			_, _ = s.Release(ctx, l)
			released <- time.Now()
		}()
		if err := s.Delete(ctx, "acme", "del", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		if r := <-released; deleted.Before(r) {
			t.Fatalf("Delete returned at %v, before the job released at %v", deleted, r)
		}
		if _, _, err := s.Get(ctx, "acme", "del", false); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete = %v", err)
		}
		if h, _ := s.Head(ctx, "acme", "del"); h != "j3" {
			t.Fatalf("Delete touched the line: head %q, want j3", h)
		}
		// The queued job still runs and starts clean.
		l3 := mustAcquire(t, s, "acme", "del", "j3", nil)
		if _, _, err := s.Load(ctx, "acme", "del"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("queued job after Delete sees %v", err)
		}
		if changed, err := s.Save(ctx, l3, cookieState("fresh", "1")); err != nil || !changed {
			t.Fatalf("Save after Delete = %v, %v", changed, err)
		}
		if m, _, _ := s.Get(ctx, "acme", "del", false); m.Version != 1 {
			t.Fatalf("recreated session version %d", m.Version)
		}
		_, _ = s.Release(ctx, l3)
	})

	t.Run("a holder that outlives the wait is fenced and told why", func(t *testing.T) {
		saveAs(t, s, "acme", "slow", "j1", richState())
		appendJobs(t, s, "acme", "slow", "j2")
		l := mustAcquire(t, s, "acme", "slow", "j2", nil)
		start := time.Now()
		if err := s.Delete(ctx, "acme", "slow", 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited < 200*time.Millisecond || waited > lease {
			t.Errorf("Delete waited %v", waited)
		}
		// A client that repeats the DELETE gets 404, and changes nothing.
		if err := s.Delete(ctx, "acme", "slow", 50*time.Millisecond); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second Delete = %v, want ErrNotFound", err)
		}
		// Its writes are refused, and it learns that the session was
		// deleted (its job's result stands) rather than that another job
		// took its lease.
		if _, err := s.Save(ctx, l, cookieState("zombie", "1")); !errors.Is(err, ErrDeleted) || errors.Is(err, ErrStaleFence) {
			t.Fatalf("Save after Delete = %v, want ErrDeleted", err)
		}
		if err := s.Touch(ctx, l); !errors.Is(err, ErrDeleted) {
			t.Fatalf("Touch after Delete = %v, want ErrDeleted", err)
		}
		if _, _, err := s.Get(ctx, "acme", "slow", false); !errors.Is(err, ErrNotFound) {
			t.Fatalf("fenced Save recreated the session: %v", err)
		}
		_, _ = s.Release(ctx, l)
	})

	t.Run("honours ctx", func(t *testing.T) {
		saveAs(t, s, "acme", "ctx", "j1", richState())
		appendJobs(t, s, "acme", "ctx", "j2")
		l := mustAcquire(t, s, "acme", "ctx", "j2", nil)
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := s.Delete(cctx, "acme", "ctx", 10*time.Second); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Delete = %v, want DeadlineExceeded", err)
		}
		if _, _, err := s.Get(ctx, "acme", "ctx", false); err != nil {
			t.Fatalf("cancelled Delete removed the session: %v", err)
		}
		_, _ = s.Release(ctx, l)
	})

	t.Run("missing session", func(t *testing.T) {
		if err := s.Delete(ctx, "acme", "nope", time.Second); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Delete = %v, want ErrNotFound", err)
		}
	})
}

func TestListPaging(t *testing.T) {
	s, rdb, _ := newStore(t, Config{})
	ctx := context.Background()
	var want []string // newest first
	for i := range 7 {
		sid := fmt.Sprintf("s%d", i)
		saveAs(t, s, "acme", sid, "j", cookieState("n", sid))
		want = append([]string{sid}, want...)
		time.Sleep(2 * time.Millisecond)
	}
	idx := sessionKeys("acme", "").Index
	// A stale entry (its session gone) older than the guard is skipped and dropped.
	rdb.ZAdd(ctx, idx, redisZ(float64(time.Now().Add(-time.Minute).UnixMilli()), "gone"))

	pages := func(limit int) [][]string {
		t.Helper()
		var out [][]string
		cursor := ""
		for range 20 {
			list, next, err := s.List(ctx, "acme", cursor, limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range list {
				if m.Version != 1 || m.Cookies != 1 {
					t.Errorf("meta %+v", m)
				}
				ids = append(ids, m.ID)
			}
			out = append(out, ids)
			if next == "" {
				return out
			}
			cursor = next
		}
		t.Fatal("List never ended")
		return nil
	}
	got := pages(3)
	if fmt.Sprint(got) != fmt.Sprint([][]string{want[0:3], want[3:6], want[6:7]}) {
		t.Fatalf("pages %v, want %v", got, want)
	}
	if n, _ := rdb.ZScore(ctx, idx, "gone").Result(); n != 0 {
		t.Error("stale index entry kept")
	}
	if got := pages(7); len(got) != 1 || len(got[0]) != 7 {
		t.Fatalf("one full page: %v", got)
	}

	// Sessions used in the same millisecond page without loss or repeats.
	now := float64(time.Now().UnixMilli())
	for i := range 7 {
		rdb.ZAdd(ctx, idx, redisZ(now, fmt.Sprintf("s%d", i)))
	}
	seen := map[string]int{}
	for _, p := range pages(2) {
		for _, id := range p {
			seen[id]++
		}
	}
	if len(seen) != 7 {
		t.Fatalf("tied sessions seen %v", seen)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s listed %d times", id, n)
		}
	}
	for _, c := range []string{"!!", "bm9jb2xvbg", "eDpz"} {
		if _, _, err := s.List(ctx, "acme", c, 2); !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("cursor %q: %v, want ErrInvalidCursor", c, err)
		}
	}
	if list, next, err := s.List(ctx, "nobody", "", 10); err != nil || len(list) != 0 || next != "" {
		t.Errorf("empty tenant: %v %q %v", list, next, err)
	}
	if !strings.HasPrefix(idx, "{pf}:t:acme:") {
		t.Errorf("index key %q", idx)
	}
}

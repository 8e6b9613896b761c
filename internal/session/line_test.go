package session

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/prometheus/client_golang/prometheus"
)

// TestOrderAndExclusion appends 20 jobs to one session and lets 8 workers,
// each with its own client, try random jobs that have not run yet, as asynq
// would hand them out. The jobs must run one at a time, in append order.
func TestOrderAndExclusion(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, client, _ := newStore(t, Config{Lease: 5 * time.Second, Registerer: reg})
	ctx := context.Background()
	ids := jobIDs(20)
	appendJobs(t, srv, "acme", "order", ids...)

	type run struct {
		job        string
		start, end time.Time
		next       string
	}
	var (
		mu       sync.Mutex
		runs     []run
		pending  = slices.Clone(ids)
		done     = newJobSet()
		inFlight atomic.Int32
		wg       sync.WaitGroup
		firstTry sync.Map // job -> time of its first busy attempt
	)
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			s, err := New(client, Config{Lease: 5 * time.Second, Registerer: reg})
			if err != nil {
				t.Error(err)
				return
			}
			for {
				mu.Lock()
				if len(pending) == 0 {
					mu.Unlock()
					return
				}
				job := pending[rng.IntN(len(pending))]
				mu.Unlock()

				l, err := s.Acquire(ctx, "acme", "order", job, done.isTerminal)
				if errors.Is(err, ErrNotInLine) {
					continue // picked before another worker ran it
				}
				if errors.Is(err, ErrBusy) {
					firstTry.LoadOrStore(job, time.Now())
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
					continue
				}
				if err != nil {
					t.Errorf("Acquire %s: %v", job, err)
					return
				}
				if first, ok := firstTry.Load(job); ok {
					s.ObserveWait(time.Since(first.(time.Time)))
				}
				hctx, stop := s.Hold(ctx, l)
				start := time.Now()
				if n := inFlight.Add(1); n != 1 {
					t.Errorf("%d jobs of one session running at once", n)
				}
				time.Sleep(time.Duration(1+rng.IntN(4)) * time.Millisecond)
				if _, err := s.Save(hctx, l, cookieState("last", job)); err != nil {
					t.Errorf("Save %s: %v", job, err)
				}
				inFlight.Add(-1)
				end := time.Now()
				stop()
				mu.Lock()
				pending = slices.DeleteFunc(pending, func(id string) bool { return id == job })
				mu.Unlock()
				done.add(job)
				next, err := s.Release(ctx, l)
				if err != nil {
					t.Errorf("Release %s: %v", job, err)
				}
				mu.Lock()
				runs = append(runs, run{job: job, start: start, end: end, next: next})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	if len(runs) != len(ids) {
		t.Fatalf("%d runs, want %d", len(runs), len(ids))
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].start.Before(runs[j].start) })
	for i, r := range runs {
		if r.job != ids[i] {
			t.Errorf("run %d was %s, want %s", i, r.job, ids[i])
		}
		if i > 0 && r.start.Before(runs[i-1].end) {
			t.Errorf("%s started at %v before %s ended at %v", r.job, r.start, runs[i-1].job, runs[i-1].end)
		}
		want := ""
		if i+1 < len(ids) {
			want = ids[i+1]
		}
		if r.next != want {
			t.Errorf("Release of %s named next %q, want %q", r.job, r.next, want)
		}
	}
	st, m, err := srv.Load(ctx, "acme", "order")
	if err != nil {
		t.Fatal(err)
	}
	if st.Cookies[0].Value != ids[len(ids)-1] {
		t.Errorf("final state from %s, want %s", st.Cookies[0].Value, ids[len(ids)-1])
	}
	if m.Version != int64(len(ids)) {
		t.Errorf("version %d, want %d", m.Version, len(ids))
	}
	if h, _ := srv.Head(ctx, "acme", "order"); h != "" {
		t.Errorf("line not empty, head %q", h)
	}
	if v := metricValue(t, reg, "pagefleet_session_busy_total", map[string]string{"reason": "turn"}); v == 0 {
		t.Error("no busy attempts counted")
	}
	if v := metricValue(t, reg, "pagefleet_session_lock_wait_seconds", nil); v == 0 {
		t.Error("no lock waits observed")
	}
}

func TestSessionsRunInParallel(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	appendJobs(t, s, "acme", "a", "a1")
	appendJobs(t, s, "acme", "b", "b1")
	appendJobs(t, s, "other", "a", "o1")
	la := mustAcquire(t, s, "acme", "a", "a1", nil)
	lb := mustAcquire(t, s, "acme", "b", "b1", nil)
	lo := mustAcquire(t, s, "other", "a", "o1", nil)
	for _, l := range []*Lease{la, lb, lo} {
		if _, err := s.Release(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSelfHealing(t *testing.T) {
	s, rdb, _ := newStore(t, Config{})
	ctx := context.Background()

	t.Run("terminal and unknown heads are popped", func(t *testing.T) {
		appendJobs(t, s, "acme", "heal", "done1", "ghost", "live", "after")
		finished := newJobSet("done1") // ghost: no record at all, so also terminal
		isTerminal := func(ctx context.Context, id string) (bool, error) {
			if id == "ghost" {
				return true, nil
			}
			return finished.isTerminal(ctx, id)
		}
		l := mustAcquire(t, s, "acme", "heal", "live", isTerminal)
		next, err := s.Release(ctx, l)
		if err != nil || next != "after" {
			t.Fatalf("Release = %q, %v; want after", next, err)
		}
		l = mustAcquire(t, s, "acme", "heal", "after", isTerminal)
		if next, err := s.Release(ctx, l); err != nil || next != "" {
			t.Fatalf("last Release = %q, %v; want empty", next, err)
		}
	})

	t.Run("a live head keeps its place", func(t *testing.T) {
		appendJobs(t, s, "acme", "live", "first", "second")
		_, err := s.Acquire(ctx, "acme", "live", "second", newJobSet().isTerminal)
		if !errors.Is(err, ErrBusy) {
			t.Fatalf("Acquire second = %v, want ErrBusy", err)
		}
		if _, err := s.Acquire(ctx, "acme", "live", "second", nil); !errors.Is(err, ErrBusy) {
			t.Fatalf("Acquire without isTerminal = %v, want ErrBusy", err)
		}
		if h, _ := s.Head(ctx, "acme", "live"); h != "first" {
			t.Fatalf("head %q, want first", h)
		}
		boom := errors.New("boom")
		_, err = s.Acquire(ctx, "acme", "live", "second", func(context.Context, string) (bool, error) { return false, boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Acquire with failing isTerminal = %v, want boom", err)
		}
	})

	t.Run("remove from the middle and the head", func(t *testing.T) {
		appendJobs(t, s, "acme", "rm", "a", "b", "c", "d")
		if next, err := s.Remove(ctx, "acme", "rm", "b"); err != nil || next != "" {
			t.Fatalf("Remove middle = %q, %v; want no new head", next, err)
		}
		if next, err := s.Remove(ctx, "acme", "rm", "a"); err != nil || next != "c" {
			t.Fatalf("Remove head = %q, %v; want c", next, err)
		}
		l := mustAcquire(t, s, "acme", "rm", "c", nil)
		if next, err := s.Release(ctx, l); err != nil || next != "d" {
			t.Fatalf("Release c = %q, %v; want d", next, err)
		}
		if next, err := s.Remove(ctx, "acme", "rm", "d"); err != nil || next != "" {
			t.Fatalf("Remove last = %q, %v; want empty", next, err)
		}
		if n, _ := rdb.Exists(ctx, sessionKeys("acme", "rm").Line).Result(); n != 0 {
			t.Fatal("empty line still exists")
		}
	})

	t.Run("unlock keeps a retried job at the head", func(t *testing.T) {
		appendJobs(t, s, "acme", "retry", "r1", "r2")
		l := mustAcquire(t, s, "acme", "retry", "r1", nil)
		if err := s.Unlock(ctx, l); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Acquire(ctx, "acme", "retry", "r2", newJobSet().isTerminal); !errors.Is(err, ErrBusy) {
			t.Fatalf("Acquire r2 after r1 unlocked = %v, want ErrBusy", err)
		}
		l = mustAcquire(t, s, "acme", "retry", "r1", nil)
		if next, err := s.Release(ctx, l); err != nil || next != "r2" {
			t.Fatalf("Release = %q, %v", next, err)
		}
		// A stale Unlock leaves the new holder's lock alone.
		l2 := mustAcquire(t, s, "acme", "retry", "r2", nil)
		if err := s.Unlock(ctx, l); err != nil {
			t.Fatal(err)
		}
		if n, _ := rdb.Exists(ctx, sessionKeys("acme", "retry").Lock).Result(); n != 1 {
			t.Fatal("stale Unlock deleted the holder's lock")
		}
		_, _ = s.Release(ctx, l2)
	})

	t.Run("the holder itself is busy while its lease lives", func(t *testing.T) {
		appendJobs(t, s, "acme", "again", "x")
		l := mustAcquire(t, s, "acme", "again", "x", nil)
		if _, err := s.Acquire(ctx, "acme", "again", "x", nil); !errors.Is(err, ErrBusy) {
			t.Fatalf("second Acquire of x = %v, want ErrBusy", err)
		}
		if _, err := s.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a finished job delivered again does not rejoin", func(t *testing.T) {
		appendJobs(t, s, "acme", "dup", "d1")
		l := mustAcquire(t, s, "acme", "dup", "d1", nil)
		if _, err := s.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Acquire(ctx, "acme", "dup", "d1", newJobSet("d1").isTerminal); !errors.Is(err, ErrNotInLine) {
			t.Fatalf("Acquire of a finished job = %v, want ErrNotInLine", err)
		}
		if h, _ := s.Head(ctx, "acme", "dup"); h != "" {
			t.Fatalf("finished job rejoined the line: head %q", h)
		}
	})

	t.Run("a job whose entry was lost rejoins an empty line", func(t *testing.T) {
		appendJobs(t, s, "acme", "lost", "other")
		if _, err := s.Acquire(ctx, "acme", "lost", "orphan", nil); !errors.Is(err, ErrBusy) {
			t.Fatalf("orphan behind a live job = %v, want ErrBusy", err)
		}
		if _, err := s.Remove(ctx, "acme", "lost", "other"); err != nil {
			t.Fatal(err)
		}
		l := mustAcquire(t, s, "acme", "lost", "orphan", nil)
		if next, err := s.Release(ctx, l); err != nil || next != "" {
			t.Fatalf("Release = %q, %v", next, err)
		}
	})

	t.Run("append in the caller's pipeline", func(t *testing.T) {
		pipe := rdb.TxPipeline()
		pipe.Set(ctx, "job:p1", "queued", 0)
		if err := s.Append(ctx, pipe, "acme", "pipe", "p1"); err != nil {
			t.Fatal(err)
		}
		if h, _ := s.Head(ctx, "acme", "pipe"); h != "" {
			t.Fatal("append ran before the pipeline's Exec")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if h, _ := s.Head(ctx, "acme", "pipe"); h != "p1" {
			t.Fatalf("head %q, want p1", h)
		}
		if ttl, _ := rdb.PTTL(ctx, sessionKeys("acme", "pipe").Line).Result(); ttl <= 0 {
			t.Fatalf("line has no expiry (%v)", ttl)
		}
	})
}

func TestLeaseExpiryAndFencing(t *testing.T) {
	reg := prometheus.NewRegistry()
	const lease = 300 * time.Millisecond
	s, rdb, _ := newStore(t, Config{Lease: lease, Registerer: reg})
	ctx := context.Background()

	t.Run("a dead holder's retry takes over and the old lease is fenced", func(t *testing.T) {
		appendJobs(t, s, "acme", "dead", "j1", "j2")
		l1 := mustAcquire(t, s, "acme", "dead", "j1", nil)
		if _, err := s.Save(ctx, l1, cookieState("sid", "one")); err != nil {
			t.Fatal(err)
		}
		// The holder dies: nobody renews. Its task comes back (asynq) and
		// tries again: busy until the lease lapses.
		if _, err := s.Acquire(ctx, "acme", "dead", "j1", nil); !errors.Is(err, ErrBusy) {
			t.Fatalf("Acquire during the lease = %v, want ErrBusy", err)
		}
		time.Sleep(lease + 50*time.Millisecond)
		l1b := mustAcquire(t, s, "acme", "dead", "j1", nil)
		if l1b.Fence <= l1.Fence {
			t.Fatalf("fence did not grow: %d then %d", l1.Fence, l1b.Fence)
		}
		if _, err := s.Save(ctx, l1, cookieState("sid", "stale")); !errors.Is(err, ErrStaleFence) {
			t.Fatalf("stale Save = %v, want ErrStaleFence", err)
		}
		if err := s.Touch(ctx, l1); !errors.Is(err, ErrStaleFence) {
			t.Fatalf("stale Touch = %v, want ErrStaleFence", err)
		}
		st, m, err := s.Load(ctx, "acme", "dead")
		if err != nil {
			t.Fatal(err)
		}
		if st.Cookies[0].Value != "one" || m.Version != 1 {
			t.Fatalf("state changed by a stale writer: %+v v%d", st.Cookies, m.Version)
		}
		// Releasing the old lease must not free the new holder's lock.
		if _, err := s.Release(ctx, l1); err != nil {
			t.Fatal(err)
		}
		if n, _ := rdb.Exists(ctx, sessionKeys("acme", "dead").Lock).Result(); n != 1 {
			t.Fatal("stale Release deleted the new holder's lock")
		}
		if _, err := s.Save(ctx, l1b, cookieState("sid", "two")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Release(ctx, l1b); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the next job takes over from a dead, archived head", func(t *testing.T) {
		appendJobs(t, s, "acme", "archived", "j1", "j2")
		l1 := mustAcquire(t, s, "acme", "archived", "j1", nil)
		finished := newJobSet("j1")
		if _, err := s.Acquire(ctx, "acme", "archived", "j2", finished.isTerminal); !errors.Is(err, ErrBusy) {
			t.Fatalf("Acquire j2 under j1's lease = %v, want ErrBusy", err)
		}
		time.Sleep(lease + 50*time.Millisecond)
		l2 := mustAcquire(t, s, "acme", "archived", "j2", finished.isTerminal)
		if _, err := s.Save(ctx, l1, cookieState("sid", "stale")); !errors.Is(err, ErrStaleFence) {
			t.Fatalf("stale Save = %v, want ErrStaleFence", err)
		}
		if _, _, err := s.Load(ctx, "acme", "archived"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Load after a refused first save = %v, want ErrNotFound", err)
		}
		if _, err := s.Release(ctx, l2); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("hold renews past several leases", func(t *testing.T) {
		appendJobs(t, s, "acme", "hold", "h1", "h2")
		l := mustAcquire(t, s, "acme", "hold", "h1", nil)
		hctx, stop := s.Hold(ctx, l)
		time.Sleep(4 * lease)
		if hctx.Err() != nil {
			t.Fatalf("hold context ended: %v", context.Cause(hctx))
		}
		if _, err := s.Acquire(ctx, "acme", "hold", "h1", nil); !errors.Is(err, ErrBusy) {
			t.Fatalf("Acquire while held = %v, want ErrBusy", err)
		}
		if _, err := s.Save(hctx, l, cookieState("k", "v")); err != nil {
			t.Fatal(err)
		}
		stop()
		stop() // idempotent
		if !errors.Is(context.Cause(hctx), context.Canceled) {
			t.Fatalf("cause after stop = %v", context.Cause(hctx))
		}
		if next, err := s.Release(ctx, l); err != nil || next != "h2" {
			t.Fatalf("Release = %q, %v", next, err)
		}
		mustAcquire(t, s, "acme", "hold", "h2", nil)
	})

	t.Run("hold cancels when the lock is taken away", func(t *testing.T) {
		appendJobs(t, s, "acme", "steal", "s1")
		l := mustAcquire(t, s, "acme", "steal", "s1", nil)
		hctx, stop := s.Hold(ctx, l)
		defer stop()
		if err := rdb.Del(ctx, sessionKeys("acme", "steal").Lock).Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-hctx.Done():
		case <-time.After(2 * lease):
			t.Fatal("hold context not cancelled after its lock was deleted")
		}
		if !errors.Is(context.Cause(hctx), ErrLeaseLost) {
			t.Fatalf("cause %v, want ErrLeaseLost", context.Cause(hctx))
		}
	})

	if v := metricValue(t, reg, "pagefleet_session_stale_writes_total", nil); v < 3 {
		t.Errorf("stale writes counted %v, want >= 3", v)
	}
}

func TestHoldCancelsWhenRedisIsUnreachable(t *testing.T) {
	const lease = 300 * time.Millisecond
	s, _, srv := newStore(t, Config{Lease: lease})
	appendJobs(t, s, "acme", "down", "d1")
	l := mustAcquire(t, s, "acme", "down", "d1", nil)
	hctx, stop := s.Hold(context.Background(), l)
	defer stop()
	time.Sleep(lease / 2)
	srv.Kill()
	select {
	case <-hctx.Done():
	case <-time.After(3 * lease):
		t.Fatal("hold context still alive with Redis gone for longer than the lease")
	}
	if !errors.Is(context.Cause(hctx), ErrLeaseLost) {
		t.Fatalf("cause %v, want ErrLeaseLost", context.Cause(hctx))
	}
}

// A lease whose holder's worker died (its heartbeat is gone) is taken over
// at once by the job at the head of the line, without waiting for the
// lease to lapse; the dead holder can write nothing afterwards.
func TestDeadHolderTakenOver(t *testing.T) {
	ctx := context.Background()
	s1, client, _ := newStore(t, Config{Lease: time.Hour, Worker: "w1"})
	s2, err := New(client, Config{Lease: time.Hour, Worker: "w2"})
	if err != nil {
		t.Fatal(err)
	}
	workers := rdb.NewWorkers(client)
	workers.Beat(ctx, "w1", time.Minute)
	workers.Beat(ctx, "w2", time.Minute)
	appendJobs(t, s1, "acme", "dead", "j1", "j2")
	l1 := mustAcquire(t, s1, "acme", "dead", "j1", nil)
	if _, err := s2.Acquire(ctx, "acme", "dead", "j1", nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("acquire while the holder's worker lives: %v", err)
	}
	if err := workers.Leave(ctx, "w1"); err != nil { // w1's heartbeat is gone
		t.Fatal(err)
	}
	l2, err := s2.Acquire(ctx, "acme", "dead", "j1", nil)
	if err != nil {
		t.Fatalf("acquire after the holder's worker died: %v", err)
	}
	if l2.Fence <= l1.Fence {
		t.Fatalf("fence %d after a takeover of fence %d", l2.Fence, l1.Fence)
	}
	if _, err := s1.Save(ctx, l1, cookieState("a", "1")); !errors.Is(err, ErrStaleFence) {
		t.Fatalf("save of the dead holder: %v", err)
	}
	if _, err := s2.Save(ctx, l2, cookieState("a", "2")); err != nil {
		t.Fatal(err)
	}
}

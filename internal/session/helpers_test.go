package session

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/pkg/spec"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// newStore starts a redis-server for t and returns a store on it.
func newStore(t *testing.T, cfg Config) (*Store, *redis.Client, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	rc := srv.Client(t, 0)
	s, err := New(rc, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, rc, srv
}

// jobSet is a set of finished jobs, the isTerminal of the tests.
type jobSet struct {
	mu   sync.Mutex
	done map[string]bool
}

func newJobSet(ids ...string) *jobSet {
	j := &jobSet{done: map[string]bool{}}
	for _, id := range ids {
		j.done[id] = true
	}
	return j
}

func (j *jobSet) add(id string) {
	j.mu.Lock()
	j.done[id] = true
	j.mu.Unlock()
}

func (j *jobSet) isTerminal(_ context.Context, id string) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.done[id], nil
}

func cookieState(name, value string) *spec.State {
	return &spec.State{Cookies: []spec.Cookie{{Name: name, Value: value, Domain: "example.com", Path: "/", Expires: -1}}}
}

func appendJobs(t *testing.T, s *Store, tenant, sid string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := s.Append(context.Background(), nil, tenant, sid, id); err != nil {
			t.Fatalf("Append %s: %v", id, err)
		}
	}
}

func mustAcquire(t *testing.T, s *Store, tenant, sid, job string, isTerminal func(context.Context, string) (bool, error)) *Lease {
	t.Helper()
	l, err := s.Acquire(context.Background(), tenant, sid, job, isTerminal)
	if err != nil {
		t.Fatalf("Acquire %s: %v", job, err)
	}
	return l
}

func jobIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "job_" + strconv.Itoa(i)
	}
	return ids
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricValue returns the value of a counter (or a histogram's sample
// count) with the given labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
		}
	}
	return 0
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }

// sessionKeys are the Redis keys of a session, for tests that look at them.
func sessionKeys(tenant, sid string) rdb.SessionKeys { return rdb.NewSessions(nil).KeysOf(tenant, sid) }

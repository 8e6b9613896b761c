package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Errors returned by the store. Callers test them with errors.Is.
var (
	// ErrBusy means it is not this job's turn: another job is ahead of it in
	// the line, or another holder has the session's lease.
	ErrBusy = errors.New("session busy")
	// ErrNotInLine means Acquire found the job neither in its session's line
	// nor unfinished: it already ran (or was cancelled), and must not run
	// again.
	ErrNotInLine = errors.New("job not in session line")
	// ErrTooLarge means the encoded state is larger than Config.MaxBytes; the
	// stored state is unchanged.
	ErrTooLarge = errors.New("session state too large")
	// ErrStaleFence means a newer lease holder exists: the write was
	// refused and nothing changed.
	ErrStaleFence = errors.New("stale session writer")
	// ErrDeleted means the session was deleted (DELETE /v1/sessions/{id})
	// while the writer held it: the write was refused, the session stays
	// deleted, and the writer's job has nothing to save.
	ErrDeleted = errors.New("session deleted while in use")
	// ErrNotFound means the session does not exist (never saved, expired or
	// deleted).
	ErrNotFound = errors.New("session not found")
	// ErrLeaseLost is the cause of a Hold context cancelled because the lease
	// could not be renewed.
	ErrLeaseLost = errors.New("session lease lost")
	// ErrCorrupt means stored state could not be decoded (damaged, or sealed
	// with another key).
	ErrCorrupt = errors.New("session state unreadable")
	// ErrInvalidCursor means a List cursor was not produced by List.
	ErrInvalidCursor = errors.New("invalid session cursor")
)

// Defaults for Config.
const (
	DefaultTTL      = 24 * time.Hour
	DefaultMaxBytes = 5 << 20
	DefaultLease    = 30 * time.Second
	DefaultLineTTL  = 24 * time.Hour
)

// Config holds the store's settings; zero values take the defaults.
type Config struct {
	// TTL is the sliding expiry of a session after its last use (default 24h).
	TTL time.Duration
	// MaxBytes caps the encoded (stored) size of a session's state
	// (default 5 MiB).
	MaxBytes int
	// Key is a 32-byte AES-256-GCM key that seals state at rest; nil stores
	// it in plaintext. Plaintext state written before a key was configured
	// stays readable.
	Key []byte
	// Lease is the lifetime of a session lock (default 30s); Hold renews it
	// every Lease/3.
	Lease time.Duration
	// LineTTL is how long a session's line and fence live after the last
	// activity on them (default 24h, never less than TTL). Keep it above the
	// longest time a session job may wait in the queue.
	LineTTL time.Duration
	// Registerer receives the store's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Worker is the id of the worker process whose jobs take leases (see
	// rdb.Workers). A lease's token names it, so that a lease whose holder's
	// worker died is taken over at once instead of when it lapses. Empty: a
	// dead holder's lease lapses after Lease.
	Worker string
}

func (c *Config) setDefaults() {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.LineTTL == 0 {
		c.LineTTL = DefaultLineTTL
	}
	if c.LineTTL < c.TTL {
		c.LineTTL = c.TTL
	}
}

func (c *Config) validate() error {
	if c.Key != nil && len(c.Key) != 32 {
		return fmt.Errorf("session key must be 32 bytes, got %d", len(c.Key))
	}
	if c.TTL < time.Millisecond {
		return fmt.Errorf("session TTL %v is too short", c.TTL)
	}
	if c.Lease < 3*time.Millisecond {
		return fmt.Errorf("session lease %v is too short", c.Lease)
	}
	if c.MaxBytes < 0 {
		return fmt.Errorf("session max bytes %d is negative", c.MaxBytes)
	}
	return nil
}

// Store keeps session state and the per-session line, lease and fence.
// It is safe for concurrent use.
type Store struct {
	r   *rdb.Sessions
	cfg Config
	m   metrics
}

// New returns a store on rc. It fails when cfg.Key is set but not 32 bytes.
func New(client redis.UniversalClient, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("session store needs a redis client")
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Key != nil {
		cfg.Key = append([]byte(nil), cfg.Key...)
	}
	return &Store{r: rdb.NewSessions(client), cfg: cfg, m: newMetrics(cfg.Registerer)}, nil
}

// LineTTL is how long a session's line lives after its last activity;
// whoever appends to a line restarts its expiry with it.
func (s *Store) LineTTL() time.Duration { return s.cfg.LineTTL }

// ObserveWait records how long a job waited for its session, from its first
// busy attempt to its acquisition (pagefleet_session_lock_wait_seconds).
func (s *Store) ObserveWait(d time.Duration) { s.m.lockWait.Observe(d.Seconds()) }

type metrics struct {
	lockWait   prometheus.Histogram
	busy       *prometheus.CounterVec
	stateBytes prometheus.Histogram
	saved      *prometheus.CounterVec
	stale      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pagefleet_session_lock_wait_seconds",
			Help:    "Time from a session job's first busy attempt to its acquisition of the session.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		busy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pagefleet_session_busy_total",
			Help: "Session acquisitions refused because it was not the job's turn (reason=turn) or another holder had the lease (reason=lease).",
		}, []string{"reason"}),
		stateBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pagefleet_session_state_bytes",
			Help:    "Encoded size of session state written.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}),
		saved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pagefleet_sessions_saved_total",
			Help: "Session saves, by whether the state changed.",
		}, []string{"changed"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pagefleet_session_stale_writes_total",
			Help: "Session writes refused because a newer lease holder exists.",
		}),
	}
	if reg != nil {
		m.lockWait = register(reg, m.lockWait)
		m.busy = register(reg, m.busy)
		m.stateBytes = register(reg, m.stateBytes)
		m.saved = register(reg, m.saved)
		m.stale = register(reg, m.stale)
	}
	for _, r := range []string{"turn", "lease"} {
		m.busy.WithLabelValues(r)
	}
	for _, c := range []string{"true", "false"} {
		m.saved.WithLabelValues(c)
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same name (several stores may share one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// Package schedule runs schedules: cron expressions in a time zone, each
// of whose due times creates one batch or fetch job (through
// internal/submit, so the tenant's limits hold), exactly once across every
// API and worker process, their restarts and a Redis failover.
//
// Every process runs a Runner. A Runner looks at the schedules due
// (rdb.Schedules keeps them by next due time) and claims a due time with a
// compare-and-set on the schedule's next due time: one claim wins, and it
// moves the schedule on to its following due time. The winner creates the
// run's batch or job, whose id is derived from the schedule and the due
// time (rdb.RunID), then records the run. Between its claim and its
// record the run is pending with a lease: a claimer that dies (or stops,
// or a Redis failover that lost the record) leaves it pending, and when
// the lease ends another Runner takes it over and creates it again — the
// same id, so the batch or job is written once (rdb's CreateURLsNew and
// CreateNew) and its first task enqueued once (derived task ids).
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser reads 5 fields (minute first), 6 (seconds first) and
// descriptors (@hourly, @every 10m).
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ErrNeverDue means an expression has no due time (February 30th).
var ErrNeverDue = errors.New("the expression is never due")

// Spec is a parsed cron expression in its time zone.
type Spec struct {
	s cron.Schedule
}

// Parse parses expr in the IANA time zone tz ("" is UTC). The time zone
// is given apart: a CRON_TZ= or TZ= prefix is refused.
func Parse(expr, tz string) (*Spec, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		return nil, errors.New("give the time zone in timezone, not in the expression")
	}
	if tz == "" {
		tz = "UTC"
	}
	if tz == "Local" {
		return nil, errors.New(`"Local" is not a time zone: name one, such as Europe/Berlin`)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", tz)
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return nil, err
	}
	if ss, ok := s.(*cron.SpecSchedule); ok {
		ss.Location = loc
	}
	sp := &Spec{s: s}
	if sp.Next(time.Now()).IsZero() {
		return nil, ErrNeverDue
	}
	return sp, nil
}

// Next is the first due time after t (zero: none). Due times are whole
// seconds; a daily time that a change to summer time skips is skipped, one
// that the change back repeats is due twice (robfig/cron's rules).
func (s *Spec) Next(t time.Time) time.Time {
	n := s.s.Next(t)
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// Plan is what a claim of the due time due does at now: Run it, or skip
// it (it was missed for longer than misfire), and move the schedule on to
// Next (zero: no more). A schedule whose processes were all down runs the
// due times missed within misfire, each once, and skips older ones.
type Plan struct {
	Run  bool
	Next time.Time
}

// PlanClaim decides the claim of due at now.
func PlanClaim(s *Spec, due, now time.Time, misfire time.Duration) Plan {
	horizon := now.Add(-misfire)
	p := Plan{Run: !due.Before(horizon), Next: s.Next(due)}
	if !p.Next.IsZero() && p.Next.Before(horizon) {
		p.Next = s.Next(horizon.Add(-time.Nanosecond))
	}
	return p
}

package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/redis/go-redis/v9"
)

// maxHeal bounds how many finished heads one Acquire pops before it gives up
// with ErrBusy (the next attempt carries on).
const maxHeal = 64

// Lease is a job's hold on its session, from Acquire to Release.
type Lease struct {
	Tenant, SID, JobID string
	// Token identifies this holder in the session's lock.
	Token string
	// Fence grows with every acquisition of the session; writes carry it and
	// are refused once a newer holder exists.
	Fence int64

	// sent is when the command that last set or renewed the lock was sent:
	// the lock lives at most until sent + lease.
	sent time.Time
}

// Append adds jobID to the end of its session's line. The API calls it when it
// accepts a session job, after the job record exists and before the task is
// enqueued. c may be a pipeline or transaction the caller runs (the commands
// are queued on it and their errors surface at its Exec), or nil to run them
// directly on the store's client. Each append restarts the line's expiry.
func (s *Store) Append(ctx context.Context, c redis.Cmdable, tenant, sid, jobID string) error {
	return s.r.Append(ctx, c, tenant, sid, jobID, s.cfg.LineTTL)
}

// Acquire gives jobID its session when the job is at the head of the line and
// no other holder has the lease: it sets the lock (a fresh token, expiring
// after Config.Lease) and moves the fence on, atomically. Otherwise it returns
// an error wrapping ErrBusy at once.
//
// isTerminal reports whether a job is finished (succeeded, failed, cancelled)
// or gone; a head for which it says true is popped (compare-and-pop, so
// concurrent callers are safe) and the head looked at again. nil turns this
// self-healing off. A job whose entry is missing from the line (it expired or
// was lost) joins it again once the line is empty, so a lost line delays but
// never strands its jobs; a missing job that isTerminal calls finished gets
// ErrNotInLine instead (a duplicate delivery: it must not run again).
func (s *Store) Acquire(ctx context.Context, tenant, sid, jobID string, isTerminal func(ctx context.Context, jobID string) (bool, error)) (*Lease, error) {
	token, err := s.newToken()
	if err != nil {
		return nil, err
	}
	rejoin := false
	for range maxHeal {
		sent := time.Now()
		turn, err := s.r.Acquire(ctx, tenant, sid, jobID, token, s.cfg.Lease, s.cfg.LineTTL, sent.UnixMicro(), rejoin)
		if err != nil {
			return nil, fmt.Errorf("acquire session %q for job %s: %w", sid, jobID, err)
		}
		switch turn.Code {
		case 1:
			return &Lease{Tenant: tenant, SID: sid, JobID: jobID, Token: token, Fence: turn.Fence, sent: sent}, nil
		case -1:
			s.m.busy.WithLabelValues("lease").Inc()
			return nil, fmt.Errorf("%w: session %q is held by another job", ErrBusy, sid)
		case 2:
			// The line is empty: this job's entry is gone. A finished job
			// must not run again; any other joins the line anew.
			if isTerminal != nil {
				done, err := isTerminal(ctx, jobID)
				if err != nil {
					return nil, fmt.Errorf("acquire session %q: check job %s: %w", sid, jobID, err)
				}
				if done {
					return nil, fmt.Errorf("%w: job %s of session %q", ErrNotInLine, jobID, sid)
				}
			}
			rejoin = true
			continue
		}
		head := turn.Head
		if isTerminal == nil {
			break
		}
		done, err := isTerminal(ctx, head)
		if err != nil {
			return nil, fmt.Errorf("acquire session %q: check head job %s: %w", sid, head, err)
		}
		if !done {
			break
		}
		if err := s.r.PopHead(ctx, tenant, sid, head); err != nil {
			return nil, fmt.Errorf("acquire session %q: pop finished head %s: %w", sid, head, err)
		}
	}
	s.m.busy.WithLabelValues("turn").Inc()
	return nil, fmt.Errorf("%w: job %s of session %q is not at the head of its line", ErrBusy, jobID, sid)
}

// Hold renews l every Config.Lease/3 until stop is called or ctx ends. The
// returned context is cancelled, with cause ErrLeaseLost, when a renewal finds
// the lock gone or taken, or when no renewal succeeded for a whole lease
// (Redis unreachable): from then on the job must write nothing. stop ends the
// renewals, waits for them and cancels the returned context; call it before
// Release, after the last Save.
func (s *Store) Hold(ctx context.Context, l *Lease) (context.Context, func()) {
	hctx, cancel := context.WithCancelCause(ctx)
	lease := s.cfg.Lease
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sent := l.sent
		if sent.IsZero() {
			sent = time.Now()
		}
		expiry := time.NewTimer(time.Until(sent.Add(lease)))
		defer expiry.Stop()
		tick := time.NewTicker(lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-hctx.Done():
				return
			case <-expiry.C:
				cancel(fmt.Errorf("%w: no renewal succeeded within %v", ErrLeaseLost, lease))
				return
			case <-tick.C:
			}
			at := time.Now()
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(hctx), lease/3)
			held, err := s.r.Renew(rctx, l.Tenant, l.SID, l.Token, lease)
			rcancel()
			switch {
			case err == nil && held:
				expiry.Reset(time.Until(at.Add(lease)))
			case err == nil:
				cancel(fmt.Errorf("%w: session %q is held by another job or released", ErrLeaseLost, l.SID))
				return
			}
			// A failed renewal is retried at the next tick until the lease
			// would have run out.
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			close(quit)
			<-done
			cancel(context.Canceled)
		})
	}
	return hctx, stop
}

// Release ends l for a job that is done for good (succeeded, failed without
// retry, cancelled): it takes the job out of the line, deletes the lock if l
// still holds it, and returns the job now at the head of the line ("" for
// none), so that the caller can wake it. A job that will be retried calls
// Unlock instead.
func (s *Store) Release(ctx context.Context, l *Lease) (next string, err error) {
	next, err = s.r.Release(ctx, l.Tenant, l.SID, l.JobID, l.Token)
	if err != nil {
		return "", fmt.Errorf("release session %q for job %s: %w", l.SID, l.JobID, err)
	}
	return next, nil
}

// Unlock frees the session's lock if l still holds it, but keeps the job in
// the line: for a job that will be retried (a transient failure, a lost
// lease), so that its retry keeps its place at the head and runs before the
// jobs behind it.
func (s *Store) Unlock(ctx context.Context, l *Lease) error {
	if err := s.r.Unlock(ctx, l.Tenant, l.SID, l.Token); err != nil {
		return fmt.Errorf("unlock session %q for job %s: %w", l.SID, l.JobID, err)
	}
	return nil
}

// Remove takes jobID out of its session's line without a lease (a job
// cancelled, deleted, failed for good before it ran, or archived). When the
// head changed it returns the new head, which the caller should wake; ""
// otherwise.
func (s *Store) Remove(ctx context.Context, tenant, sid, jobID string) (next string, err error) {
	next, err = s.r.Remove(ctx, tenant, sid, jobID)
	if err != nil {
		return "", fmt.Errorf("remove job %s from session %q: %w", jobID, sid, err)
	}
	return next, nil
}

// Head returns the job at the head of the session's line ("" for none).
func (s *Store) Head(ctx context.Context, tenant, sid string) (string, error) {
	head, err := s.r.Head(ctx, tenant, sid)
	if err != nil {
		return "", fmt.Errorf("session %q head: %w", sid, err)
	}
	return head, nil
}

// newToken is a new lease token: an owner token of the store's worker (see
// rdb.Workers), or random bytes without one.
func (s *Store) newToken() (string, error) {
	if s.cfg.Worker != "" {
		return rdb.OwnerToken(s.cfg.Worker), nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

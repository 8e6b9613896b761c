package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/internal/polite"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Politeness is the worker's side of the per-host limits (package polite
// decides, rdb.Hosts counts): before a job runs, its turn asks the job's
// host for a place; a job that must wait hands its task back at once
// (ErrHostBusy: no failure, no worker slot held) to come back when its
// host is free for it, and whoever frees a place, or starts a job after
// which a delay runs, wakes the task first in line then.
type Politeness struct {
	Hosts *rdb.Hosts
	// Operator is the operator's defaults and fleet-wide ceiling.
	Operator polite.Operator
	// Tenant returns a tenant's own settings (zero: the operator's).
	Tenant func(tenantID string) spec.Politeness
	// CrawlDelay returns the robots.txt Crawl-delay of a crawl page's host
	// (nil: none).
	CrawlDelay func(ctx context.Context, p *jobs.RunPayload) time.Duration
}

// ErrHostBusy is returned to asynq when the job's host is not free for it
// (see Politeness). Like ErrSessionBusy it is no failure: no retry is
// counted, and the task comes back after its HostBusyError's wait, or
// sooner when it is woken.
var ErrHostBusy = errors.New("host busy")

// HostBusyError is ErrHostBusy with when to come back.
type HostBusyError struct {
	Host   string
	Reason string
	Wait   time.Duration
}

func (e *HostBusyError) Error() string {
	return fmt.Sprintf("host %s busy (%s); back in %v", e.Host, e.Reason, e.Wait)
}

// Is makes errors.Is(err, ErrHostBusy) hold.
func (e *HostBusyError) Is(target error) bool { return target == ErrHostBusy }

// hostLease is the lease of a running job's place on its host; it is
// renewed every third of it.
const hostLease = 30 * time.Second

// inSlotWait is the longest a job first in line waits in its slot for its
// host's delay to pass, rather than handing its task back: shorter than a
// round trip through the queue.
const inSlotWait = 150 * time.Millisecond

// wakeLead is how much earlier than its host's delay ends the task first
// in line is woken, for the trip through the queue.
const wakeLead = 100 * time.Millisecond

// hostTurn is a job's place on its host.
type hostTurn struct {
	host     string
	settings polite.Settings
	waited   time.Duration
	level    int
	stop     func() // stops renewing the place
}

// takeHost asks the job's host for a place. It reports false, with the
// task's answer, when the job does not run now: ErrHostBusy to come back,
// nil when the job ended meanwhile.
func (tn *turn) takeHost() (bool, error) {
	w, p := tn.w, tn.p
	pol := w.Politeness
	if pol == nil || pol.Hosts == nil || tn.hit() { // a cache hit does not reach its host
		return true, nil
	}
	host := polite.Host(p.Request.URL)
	if host == "" {
		return true, nil
	}
	var tenantSettings spec.Politeness
	if pol.Tenant != nil {
		tenantSettings = pol.Tenant(p.Tenant)
	}
	s := polite.Resolve(p.Request.Politeness, tenantSettings, pol.Operator, p.BatchID != "" && p.Crawl)
	if s.RespectCrawlDelay && pol.CrawlDelay != nil {
		s.Delay = max(s.Delay, pol.CrawlDelay(tn.ctx, p))
	}
	queue, _ := asynq.GetQueueName(tn.ctx)
	ask := rdb.HostAsk{Tenant: p.Tenant, Host: host, Job: p.JobID, Member: queue + ":" + tn.task,
		Limit: s.Limit, Delay: polite.Spaced(s.Delay), Fleet: pol.Operator.Concurrency, FleetDelay: polite.Spaced(pol.Operator.Delay),
		Lease: hostLease}
	for try := 0; ; try++ {
		a, err := pol.Hosts.Acquire(tn.ctx, ask)
		if err != nil {
			return false, fmt.Errorf("host %s: %w", host, err)
		}
		switch {
		case a.Reason == "":
			tn.host = &hostTurn{host: host, settings: s, waited: a.Waited, level: a.Level}
			tn.host.stop = renewEvery(tn.ctx, hostLease/3, func(rctx context.Context) {
				if err := pol.Hosts.Renew(rctx, p.Tenant, host, p.JobID, hostLease); err != nil && !errors.Is(err, context.Canceled) {
					tn.log.Warn("renew host place", "host", host, "err", err)
				}
			})
			w.hostWait.Observe(a.Waited.Seconds())
			// The next job in line may start when the delay is over (or at
			// once, when the host allows more than one at a time).
			if a.Rank > 0 {
				w.wakeHostAfter(p.Tenant, host, max(s.Delay-wakeLead, 0))
			}
			return true, nil
		case a.Reason == rdb.HostEnded:
			return false, nil // Start would drop the task too
		case a.Reason == rdb.HostDelay && a.Rank == 0 && a.Wait <= inSlotWait && try == 0:
			select {
			case <-time.After(a.Wait):
				continue
			case <-tn.ctx.Done():
				return false, tn.ctx.Err()
			}
		}
		w.hostThrottled.WithLabelValues(a.Reason).Inc()
		return false, &HostBusyError{Host: host, Reason: a.Reason, Wait: polite.ComeBack(a, s)}
	}
}

// pacer spaces a job's request from the last one to its host: wait runs
// right before the request, sent once it has left.
type pacer struct {
	tn                *turn
	delay, fleetDelay time.Duration

	mu   sync.Mutex
	left time.Time // when the try's request left (zero: not yet)
}

// pacerOf is the job's pacer, or nil for jobs to a host without a delay:
// no Redis call.
func (tn *turn) pacerOf() *pacer {
	h := tn.host
	if h == nil {
		return nil
	}
	fleet := tn.w.Politeness.Operator.Delay
	if h.settings.Delay <= 0 && fleet <= 0 {
		return nil
	}
	return &pacer{tn: tn, delay: polite.Spaced(h.settings.Delay), fleetDelay: polite.Spaced(fleet)}
}

// wait waits until the request leaves at least the host's delay after the
// last one (see rdb.Hosts.Pace). It runs before each try's request (a job
// may try again through another proxy), so it starts the try's record.
func (pc *pacer) wait(ctx context.Context) error {
	tn := pc.tn
	pc.mu.Lock()
	pc.left = time.Time{}
	pc.mu.Unlock()
	for {
		wait, err := tn.w.Politeness.Hosts.Pace(ctx, tn.p.Tenant, tn.host.host, pc.delay, pc.fleetDelay)
		if err != nil || wait <= 0 {
			return nil // the gate spaced the start; a Redis hiccup does not fail the job
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sent records, without blocking the request, that it has left (first
// call) and that its answer began (second call): the next request to the
// host is spaced from then, not from when this one was paced
// (rdb.Hosts.Sent). A request's departure is what the worker sees; when the
// site starts on it can be later (a loaded machine, a new connection
// waiting to be accepted), so the moment the answer began — by which the
// site had surely started — counts too, up to the delay after departure
// (a slow answer does not hold the next request back further).
func (pc *pacer) sent(at time.Time) {
	tn := pc.tn
	pc.mu.Lock()
	if pc.left.IsZero() {
		pc.left = at
	} else if lim := pc.left.Add(max(pc.delay, pc.fleetDelay)); at.After(lim) {
		at = lim
	}
	pc.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(tn.ctx), 2*time.Second)
		defer cancel()
		_ = tn.w.Politeness.Hosts.Sent(ctx, tn.p.Tenant, tn.host.host, pc.delay, pc.fleetDelay, time.Since(at))
	}()
}

// hostAnswered tells the host's gate what the host answered: a 429 or 503
// pauses the tenant's jobs to it (adaptive hosts), a good answer takes a
// back-off step back.
func (tn *turn) hostAnswered(res *spec.Result) {
	h := tn.host
	if h == nil || res == nil || res.StatusCode == 0 || !h.settings.Adaptive {
		return
	}
	if res.Blocked != nil && res.Proxy != nil {
		return // the host blocked one exit: the next try takes another
	}
	w, p := tn.w, tn.p
	ctx, cancel := context.WithTimeout(context.WithoutCancel(tn.ctx), 5*time.Second)
	defer cancel()
	switch {
	case polite.Throttles(res.StatusCode):
		ra := polite.ParseRetryAfter(res.Headers["retry-after"], time.Now(), polite.MaxPause)
		d := polite.Pause(h.level, ra)
		if _, err := w.Politeness.Hosts.Pause(ctx, p.Tenant, h.host, d, polite.MaxLevel); err != nil {
			tn.log.Warn("pause host", "host", h.host, "err", err)
			return
		}
		w.hostPauses.Inc()
		tn.log.Info("host paused after a throttling answer", "host", h.host, "status_code", res.StatusCode, "pause_ms", d.Milliseconds())
		w.wakeHostAfter(p.Tenant, h.host, d)
	case res.StatusCode < 400 && h.level > 0:
		if _, err := w.Politeness.Hosts.Good(ctx, p.Tenant, h.host); err != nil {
			tn.log.Warn("host back-off step back", "host", h.host, "err", err)
		}
	}
}

// releaseHost gives the job's place on its host back and wakes the task
// first in line.
func (tn *turn) releaseHost() {
	h := tn.host
	if h == nil {
		return
	}
	h.stop()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(tn.ctx), 5*time.Second)
	defer cancel()
	head, err := tn.w.Politeness.Hosts.Release(ctx, tn.p.Tenant, h.host, tn.p.JobID)
	if err != nil {
		tn.log.Warn("release host place", "host", h.host, "err", err)
		return
	}
	tn.w.wakeMember(head)
	tn.host = nil
}

// wakeHostAfter wakes, after d, the task first in the tenant's line for
// host (if the worker still runs then; the task comes back by itself
// otherwise).
func (w *Worker) wakeHostAfter(tenantID, host string, d time.Duration) {
	wake := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		head, err := w.Politeness.Hosts.Head(ctx, tenantID, host)
		if err == nil {
			w.wakeMember(head)
		}
	}
	if d <= 0 {
		go wake()
		return
	}
	time.AfterFunc(d, wake)
}

// wakeMember runs the task of a host's wait line ("queue:task id") now
// instead of after its wait.
func (w *Worker) wakeMember(member string) {
	queue, task, ok := strings.Cut(member, ":")
	if !ok || task == "" {
		return
	}
	_ = w.insp.RunTask(queue, task) // pending or running already: nothing to do
}

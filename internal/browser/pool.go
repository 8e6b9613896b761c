package browser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Pool keeps a set of headless Chrome processes and renders jobs on them, one
// fresh browser context per job. Make it with New, start it with Start, stop
// it with Stop. All methods are safe for concurrent use.
type Pool struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// ctx lives from Start to Stop; the launches of replacement browsers
	// use it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	browsers []*browserProc // running, including draining ones
	changed  chan struct{}  // closed and replaced when a slot may be free
	started  bool
	stopped  bool
	nextID   int64
	dirs     []string // user data directories of the browsers started last

	typeHosts typeHosts // hosts whose jobs block resources by type (block.go)

	jobs sync.WaitGroup // Render calls in flight
	bg   sync.WaitGroup // launchers, watchers, disposers
}

// New checks cfg and returns a pool that is not started yet. It fails when
// no Chrome binary is found.
func New(cfg Config) (*Pool, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("browser pool config: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("browser pool metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{
		cfg:     cfg,
		log:     cfg.Logger,
		metrics: m,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
	}, nil
}

// Start launches the browsers (about 1.5 s each, in parallel) and returns when
// all of them run. ctx bounds the start only: the browsers live until Stop.
func (p *Pool) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.started || p.stopped {
		p.mu.Unlock()
		return errors.New("browser pool: Start called twice or after Stop")
	}
	p.started = true
	p.mu.Unlock()

	type launched struct {
		b   *browserProc
		err error
	}
	results := make(chan launched, p.cfg.Browsers)
	for range p.cfg.Browsers {
		go func() {
			b, err := p.launchRetrying(ctx, startAttempts)
			results <- launched{b, err}
		}()
	}
	var errs []error
	var ok []*browserProc
	for range p.cfg.Browsers {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		ok = append(ok, r.b)
	}
	if len(errs) > 0 {
		for _, b := range ok {
			b.shutdown()
		}
		return fmt.Errorf("start browsers: %w", errors.Join(errs...))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		for _, b := range ok {
			go b.shutdown()
		}
		return errPoolStopped
	}
	for _, b := range ok {
		p.addLocked(b)
	}
	return nil
}

// startAttempts is how many times Start tries to launch each browser: on a
// loaded machine Chrome now and then exits during its start (its pipe
// closes before it answers), and a second launch works.
const startAttempts = 3

// launchRetrying launches a browser, trying up to attempts times with a
// short pause while ctx lasts, and returns the last error.
func (p *Pool) launchRetrying(ctx context.Context, attempts int) (*browserProc, error) {
	var err error
	for i := 1; ; i++ {
		var b *browserProc
		if b, err = p.launch(ctx); err == nil {
			return b, nil
		}
		if i == attempts || ctx.Err() != nil {
			return nil, err
		}
		p.log.Warn("chrome did not start; trying again", "attempt", i, "err", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(i) * 500 * time.Millisecond):
		}
	}
}

// Stop stops taking jobs, waits until the jobs in flight end or ctx ends, and
// then kills every browser. No Chrome process of the pool remains afterwards.
// It returns ctx's error when jobs were still running.
func (p *Pool) Stop(ctx context.Context) error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	p.broadcastLocked()
	p.mu.Unlock()

	var err error
	done := make(chan struct{})
	go func() {
		p.jobs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		default:
			err = fmt.Errorf("stop browser pool: jobs still running: %w", ctx.Err())
		}
	}

	p.cancel()
	p.mu.Lock()
	browsers := p.browsers
	p.browsers = nil
	for _, b := range browsers {
		b.closed = true
	}
	p.metrics.size.Set(0)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range browsers {
		wg.Go(b.shutdown)
	}
	wg.Wait()

	// Launchers see the canceled pool context and shut down what they
	// started; disposers fail fast on a dead browser.
	bgDone := make(chan struct{})
	go func() {
		p.bg.Wait()
		close(bgDone)
	}()
	select {
	case <-bgDone:
	case <-time.After(10 * time.Second):
		p.log.Warn("background work of the browser pool did not end in time")
	}
	return err
}

// Ready returns nil when at least one browser runs.
func (p *Pool) Ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errPoolStopped
	}
	for _, b := range p.browsers {
		if !b.closed {
			return nil
		}
	}
	if !p.started {
		return errors.New("browser pool is not started")
	}
	return errors.New("no browser is running")
}

// PIDs returns the process ids of the running browsers.
func (p *Pool) PIDs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for _, b := range p.browsers {
		pids = append(pids, b.pid)
	}
	return pids
}

// Render runs one job: a fresh browser context and tab, session state
// restored, identity applied, navigation, actions, capture. It waits for a
// free slot while honouring ctx, whose deadline bounds the whole job.
//
// Errors are *spec.Error values (use errors.As). When an action fails, Render
// returns both the result so far and an action_failed error. A target that
// answers 4xx or 5xx is no error: Result.StatusCode carries the status.
func (p *Pool) Render(ctx context.Context, req Request) (*Result, error) {
	if err := checkRequest(&req); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.stopped || !p.started {
		p.mu.Unlock()
		return nil, spec.Errorf(spec.CodeBrowserCrashed, true, "%v", errPoolStopped)
	}
	p.jobs.Add(1)
	p.mu.Unlock()
	defer p.jobs.Done()

	b, err := p.acquire(ctx)
	if err != nil {
		return nil, p.waitError(ctx, err, "waiting for a free browser")
	}
	defer p.release(b)

	start := time.Now()
	t, err := b.takeTab(ctx, req.ProxyServer)
	if err != nil {
		return nil, p.tabError(ctx, b, err)
	}
	defer b.disposeTab(t)
	tabWait := time.Since(start)

	j := newJob(p, b, t, ctx, req)
	defer j.close()
	res, err := j.run()
	j.log.Debug("job rendered", "url", req.URL, "browser", b.id, "tab_wait_ms", tabWait.Milliseconds(),
		"duration_ms", time.Since(start).Milliseconds(), "err", err)
	return res, err
}

// checkRequest validates the parts of req that the browser needs.
func checkRequest(req *Request) error {
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return spec.Errorf(spec.CodeNavigationFailed, false, "invalid URL %q: must be an absolute http or https URL", req.URL)
	}
	if _, ok := lifecycleName(req.WaitUntil); !ok {
		return spec.Errorf(spec.CodeNavigationFailed, false, "invalid wait_until %q: one of load, domcontentloaded, networkidle", req.WaitUntil)
	}
	return nil
}

// waitError turns an error met before the job got a tab into a *spec.Error.
func (p *Pool) waitError(ctx context.Context, err error, what string) error {
	switch {
	case errors.Is(err, errPoolStopped):
		return spec.Errorf(spec.CodeBrowserCrashed, true, "%v", err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return wrap(spec.Errorf(spec.CodeNavigationTimeout, true, "job timed out %s", what), ctx.Err())
	case ctx.Err() != nil:
		return wrap(spec.Errorf(spec.CodeCancelled, false, "job cancelled %s", what), ctx.Err())
	}
	return wrap(spec.Errorf(spec.CodeBrowserCrashed, true, "%s: %v", what, err), err)
}

// tabError turns an error of the creation of a tab into a *spec.Error.
func (p *Pool) tabError(ctx context.Context, b *browserProc, err error) error {
	if ctx.Err() == nil && b.isLost() {
		return wrap(spec.Errorf(spec.CodeBrowserCrashed, true, "browser exited while opening a tab: %v", err), err)
	}
	return p.waitError(ctx, err, "opening a browser context")
}

// acquire waits for a browser with a free slot and takes the slot.
func (p *Pool) acquire(ctx context.Context) (*browserProc, error) {
	for {
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return nil, errPoolStopped
		}
		var best *browserProc
		for _, b := range p.browsers {
			if b.closed || b.draining || b.active >= p.cfg.ContextsPerBrowser || b.isLost() {
				continue
			}
			if best == nil || b.active < best.active || (b.active == best.active && b.warm() > best.warm()) {
				best = b
			}
		}
		if best != nil {
			best.active++
			best.jobs++
			p.metrics.busy.Inc()
			if best.jobs >= p.cfg.JobsPerBrowser {
				best.draining = true
				p.log.Info("recycling browser", "browser", best.id, "jobs", best.jobs)
				p.replaceLocked("recycled")
			}
			p.mu.Unlock()
			return best, nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// release gives the slot back, and retires a draining browser after its last
// job.
func (p *Pool) release(b *browserProc) {
	p.mu.Lock()
	b.active--
	p.metrics.busy.Dec()
	retire := b.draining && b.active == 0 && !b.closed
	if retire {
		b.closed = true
		p.removeLocked(b)
	}
	p.broadcastLocked()
	p.mu.Unlock()
	b.jobEnded()
	if retire {
		p.metrics.restarts.WithLabelValues("recycled").Inc()
		p.bg.Go(b.shutdown)
	}
}

// addLocked adds a started browser to the pool.
func (p *Pool) addLocked(b *browserProc) {
	p.browsers = append(p.browsers, b)
	p.metrics.size.Set(float64(len(p.browsers)))
	b.startSpares()
	p.bg.Go(func() { p.watch(b) })
	p.broadcastLocked()
}

// removeLocked removes b from the pool's list.
func (p *Pool) removeLocked(b *browserProc) {
	for i, x := range p.browsers {
		if x == b {
			p.browsers = append(p.browsers[:i], p.browsers[i+1:]...)
			break
		}
	}
	p.metrics.size.Set(float64(len(p.browsers)))
}

// broadcastLocked wakes every goroutine waiting in acquire.
func (p *Pool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// watch waits for b's process to exit. An exit nobody asked for removes b
// from the pool and starts a replacement; the jobs on b fail with
// browser_crashed.
func (p *Pool) watch(b *browserProc) {
	select {
	case <-b.lost:
	case <-b.stop:
		return
	}
	p.mu.Lock()
	if b.closed {
		p.mu.Unlock()
		return
	}
	b.closed = true
	p.removeLocked(b)
	if !p.stopped {
		p.replaceLocked("crashed")
	}
	p.broadcastLocked()
	p.mu.Unlock()
	p.log.Warn("browser exited unexpectedly", "browser", b.id, "pid", b.pid, "jobs", b.jobs)
	p.metrics.restarts.WithLabelValues("crashed").Inc()
	b.shutdown()
}

// replaceLocked starts a new browser in the background, retrying with a
// growing delay until it runs or the pool stops.
func (p *Pool) replaceLocked(reason string) {
	p.bg.Go(func() {
		delay := 500 * time.Millisecond
		for {
			ctx, cancel := context.WithTimeout(p.ctx, p.cfg.StartTimeout)
			b, err := p.launch(ctx)
			cancel()
			if err == nil {
				p.mu.Lock()
				if p.stopped {
					p.mu.Unlock()
					b.shutdown()
					return
				}
				p.addLocked(b)
				p.mu.Unlock()
				p.log.Info("browser replaced", "browser", b.id, "pid", b.pid, "reason", reason)
				return
			}
			if p.ctx.Err() != nil {
				return
			}
			p.log.Error("start replacement browser", "err", err, "retry_in_ms", delay.Milliseconds())
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 30*time.Second)
		}
	})
}

package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/polite"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/tenant"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// UserAgent is sent with every delivery.
const UserAgent = "pagefleet-webhooks/1"

// Outcomes of a delivery attempt, the outcome label of
// pagefleet_webhook_deliveries_total.
const (
	OutcomeDelivered = "delivered" // 2xx
	OutcomeRetry     = "retry"     // failed, will be retried
	OutcomeFailed    = "failed"    // failed, no retry left (or undeliverable)
	OutcomeBlocked   = "blocked"   // the egress policy refused the address
	OutcomeGone      = "gone"      // the receiver answered 410 Gone: no retry
)

// Errors recorded in [spec.Delivery].Error. Connection failures record the
// egress codes (dns_failure, connection_refused, connection_failed,
// tls_failure).
const (
	ErrorBlockedAddress = "blocked_address"
	ErrorTimeout        = "timeout"
	ErrorRedirect       = "redirect_not_followed"
	ErrorInvalidSecret  = "invalid_webhook_secret"
)

// maxResponseBody is how much of a receiver's answer is read (and thrown
// away) so that the connection can be reused.
const maxResponseBody = 64 << 10

// ErrUnknownTenant is returned (with asynq.SkipRetry) for an event of a
// tenant that is no longer configured.
var ErrUnknownTenant = errors.New("unknown tenant")

// Config holds a [Deliverer]'s settings. Tenants and Log are required.
type Config struct {
	// Policy is the egress policy deliveries dial through; nil means the
	// zero policy (public addresses only).
	Policy *egress.Policy
	// Schedule is the delays between attempts; empty means DefaultSchedule.
	Schedule []time.Duration
	// Tenants resolves a delivery's tenant to its webhook_secret.
	Tenants *tenant.Registry
	// Log keeps each job's and batch's delivery attempts.
	Log *rdb.Deliveries
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives pagefleet_webhook_deliveries_total{outcome} and
	// pagefleet_webhook_delivery_seconds; nil registers nothing.
	Registerer prometheus.Registerer
	// Timeout bounds one HTTP attempt, response included (10 s by default).
	Timeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Policy == nil {
		c.Policy = &egress.Policy{}
	}
	if len(c.Schedule) == 0 {
		c.Schedule = DefaultSchedule
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}

func (c *Config) validate() error {
	switch {
	case c.Tenants == nil:
		return errors.New("webhook: Config.Tenants is required")
	case c.Log == nil:
		return errors.New("webhook: Config.Log is required")
	}
	for _, d := range c.Schedule {
		if d < 0 {
			return fmt.Errorf("webhook: negative delay %v in Config.Schedule", d)
		}
	}
	return nil
}

// Deliverer runs webhook:deliver tasks; it is an asynq.Handler. Register
// [Deliverer.RetryDelay] as the server's RetryDelayFunc for webhook tasks
// (it passes other tasks' errors through asynq's default).
type Deliverer struct {
	cfg    Config
	client *http.Client

	outcomes *prometheus.CounterVec
	seconds  prometheus.Histogram
}

// NewDeliverer builds a Deliverer. It panics when cfg lacks Tenants or
// Redis, a wiring mistake.
func NewDeliverer(cfg Config) *Deliverer {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		panic(err)
	}
	tr := cfg.Policy.Transport()
	d := &Deliverer{
		cfg: cfg,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	d.outcomes = register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pagefleet_webhook_deliveries_total",
		Help: "Webhook delivery attempts by outcome (delivered, retry, failed, blocked, gone).",
	}, []string{"outcome"}))
	for _, o := range []string{OutcomeDelivered, OutcomeRetry, OutcomeFailed, OutcomeBlocked, OutcomeGone} {
		d.outcomes.WithLabelValues(o)
	}
	d.seconds = register(cfg.Registerer, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pagefleet_webhook_delivery_seconds",
		Help:    "Duration of webhook delivery attempts, answer read included.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}))
	return d
}

// register registers c with reg, reusing a collector registered before
// (two Deliverers on one registry share their metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if prev, ok := are.ExistingCollector.(C); ok {
				return prev
			}
		}
		panic(err)
	}
	return c
}

// CloseIdleConnections closes the keep-alive connections to receivers.
func (d *Deliverer) CloseIdleConnections() { d.client.CloseIdleConnections() }

// retryError is a failed attempt that is retried; RetryDelay reads the
// receiver's Retry-After from it.
type retryError struct {
	status     int
	code       string
	retryAfter time.Duration
}

func (e *retryError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("webhook delivery: receiver answered %d", e.status)
	}
	return "webhook delivery: " + e.code
}

// RetryDelay is the asynq RetryDelayFunc of webhook:deliver tasks: the
// schedule's n-th delay (its last one repeated), or the receiver's
// Retry-After (seconds or an HTTP date) when that is longer, capped at
// [MaxRetryDelay]. asynq keeps retry times in whole seconds, so a
// Retry-After wait is rounded up to the next whole second to never come
// early. Tasks of other kinds get asynq.DefaultRetryDelayFunc.
func (d *Deliverer) RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	if t != nil && t.Type() != "" && t.Type() != jobs.KindWebhookDeliver {
		return asynq.DefaultRetryDelayFunc(n, err, t)
	}
	s := d.cfg.Schedule
	delay := s[min(max(n, 0), len(s)-1)]
	var re *retryError
	if errors.As(err, &re) && re.retryAfter > delay {
		now := time.Now()
		at := now.Add(min(re.retryAfter, MaxRetryDelay))
		if r := at.Truncate(time.Second); r.Before(at) {
			at = r.Add(time.Second)
		}
		delay = at.Sub(now)
	}
	return min(delay, MaxRetryDelay)
}

// ProcessTask delivers one event: one attempt per call, recorded in the
// owner's delivery log. It returns nil when delivered, an error wrapping
// asynq.SkipRetry when retrying cannot help (bad payload, unknown tenant,
// blocked address) and a plain error for a retry.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := DecodeDeliver(t.Payload())
	if err != nil {
		d.outcomes.WithLabelValues(OutcomeFailed).Inc()
		d.cfg.Logger.Error("webhook payload", "err", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log := d.cfg.Logger.With("webhook_id", p.WebhookID, "event", p.Type, "tenant", p.Tenant, "owner", p.Owner)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	last := ok && retried >= maxRetry
	a := &spec.Delivery{Event: p.Type, WebhookID: p.WebhookID, Attempt: retried + 1}

	ten := d.cfg.Tenants.Get(p.Tenant)
	if ten == nil {
		d.outcomes.WithLabelValues(OutcomeFailed).Inc()
		log.Warn("webhook for unknown tenant dropped")
		return fmt.Errorf("webhook %s: %w %q: %w", p.WebhookID, ErrUnknownTenant, p.Tenant, asynq.SkipRetry)
	}

	if done, err := d.cfg.Log.Done(ctx, p.WebhookID); err != nil {
		return fmt.Errorf("webhook %s: read its done mark: %w", p.WebhookID, err)
	} else if done {
		log.Info("webhook event already delivered or given up; task dropped")
		return nil
	}

	a.At = time.Now().UTC()
	resp, err := d.send(ctx, p, ten.WebhookSecret, a.At, log)
	took := time.Since(a.At)
	a.DurationMs = took.Milliseconds()
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// The worker is stopping: asynq hands the task back without
		// counting an attempt, so none is recorded either.
		return err
	}

	if !errors.Is(err, spec.ErrWebhookSecret) {
		d.seconds.Observe(took.Seconds())
	}
	var (
		outcome string
		result  error
	)
	switch {
	case errors.Is(err, spec.ErrWebhookSecret):
		a.Error = ErrorInvalidSecret
		outcome, result = OutcomeRetry, &retryError{code: ErrorInvalidSecret}
		log.Error("tenant webhook_secret is not whsec_<base64>; delivery held back")
	case err != nil:
		code := egress.Classify(err).Code
		switch code {
		case spec.CodeBlockedAddress:
			a.Error = ErrorBlockedAddress
			outcome, result = OutcomeBlocked, fmt.Errorf("webhook %s to %s: %w: %w", p.WebhookID, p.URL, err, asynq.SkipRetry)
		case spec.CodeNavigationTimeout, spec.CodeTimeout:
			a.Error = ErrorTimeout
		default:
			a.Error = code
		}
		if result == nil {
			outcome, result = OutcomeRetry, &retryError{code: a.Error}
		}
		log.Info("webhook attempt failed", "attempt", a.Attempt, "code", a.Error, "err", err)
	default:
		a.StatusCode = resp.StatusCode
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			outcome = OutcomeDelivered
		case resp.StatusCode == http.StatusGone:
			// The receiver said it wants no more: this event is not retried.
			outcome, result = OutcomeGone, fmt.Errorf("webhook %s to %s: 410 Gone: %w", p.WebhookID, p.URL, asynq.SkipRetry)
		default:
			if resp.StatusCode >= 300 && resp.StatusCode < 400 {
				a.Error = ErrorRedirect
			}
			outcome = OutcomeRetry
			result = &retryError{status: resp.StatusCode, retryAfter: polite.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), MaxRetryDelay)}
		}
		log.Debug("webhook attempt", "attempt", a.Attempt, "status_code", resp.StatusCode, "duration_ms", a.DurationMs)
	}
	if outcome == OutcomeRetry && last {
		outcome = OutcomeFailed
		log.Warn("webhook delivery given up", "attempts", a.Attempt, "code", a.Error, "status_code", a.StatusCode)
	}
	d.outcomes.WithLabelValues(outcome).Inc()

	// The log is written even when ctx has ended: the attempt happened.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// An event that will not be sent again is marked done, so that a
	// second task of it (one run again after its worker died, see
	// jobs.Claim) sends nothing.
	final := outcome != OutcomeRetry
	if err := d.cfg.Log.Record(rctx, p.Owner, a, final); err != nil {
		// The delivery itself stands; failing it would send the event again.
		log.Error("record webhook attempt", "err", err)
	}
	return result
}

// send makes one HTTP attempt and reads (a bounded part of) the answer.
func (d *Deliverer) send(ctx context.Context, p *DeliverPayload, secret string, at time.Time, log *slog.Logger) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(p.Body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(spec.WebhookIDHeader, p.WebhookID)
	req.Header.Set(spec.WebhookTimestampHeader, strconv.FormatInt(at.Unix(), 10))
	if secret == "" {
		log.Warn("tenant has no webhook_secret; delivering unsigned")
	} else {
		sig, err := spec.SignWebhook(secret, p.WebhookID, at, p.Body)
		if err != nil {
			return nil, err
		}
		req.Header.Set(spec.WebhookSignatureHeader, sig)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	return resp, nil
}

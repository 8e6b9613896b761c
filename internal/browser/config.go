package browser

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultBrowsers           = 1
	DefaultContextsPerBrowser = 4
	DefaultJobsPerBrowser     = 200
	DefaultWarmTabs           = 1
	DefaultStartTimeout       = 30 * time.Second
	// DefaultMaxDownloadBytes bounds one downloaded file (50 MiB).
	DefaultMaxDownloadBytes = 50 << 20
	// DefaultMaxDownloads bounds the files one job keeps.
	DefaultMaxDownloads = 10
)

// Config configures a Pool. The zero value is usable: one browser found on
// PATH, four concurrent jobs, recycled after 200 jobs.
type Config struct {
	// ChromePath is the Chrome or Chromium binary. Empty: the first of
	// chromium, chromium-browser, google-chrome, google-chrome-stable found on
	// PATH.
	ChromePath string
	// Browsers is the number of Chrome processes kept (default 1).
	Browsers int
	// ContextsPerBrowser is the number of jobs one browser runs at once
	// (default 4).
	ContextsPerBrowser int
	// JobsPerBrowser recycles a browser after this many jobs: it takes no new
	// job, a replacement starts, and it closes when its last job ends
	// (default 200).
	JobsPerBrowser int
	// WarmTabs is the number of fresh browser contexts, each with one tab,
	// kept ready per browser so that a job does not wait for one (default 1;
	// negative: none). A context is never used for more than one job.
	WarmTabs int
	// AllowPrivate starts Chrome with
	// --disable-features=LocalNetworkAccessChecks, so that Chrome's own
	// checks do not block pages from reaching loopback and private addresses
	// (local development and tests; the egress guard decides).
	AllowPrivate bool
	// ProxyURL, when set, sends all traffic through this proxy
	// (--proxy-server) including loopback (--proxy-bypass-list=<-loopback>).
	ProxyURL string
	// EgressError, when set, is asked after a failed navigation for the error
	// code the egress proxy recorded for the URL's host, such as
	// "blocked_address" ("" = none).
	EgressError func(rawURL string) string
	// ExtraFlags are added to Chrome's command line (name without "--"; a
	// string value gives --name=value, true gives --name, false removes a
	// default flag).
	ExtraFlags map[string]any
	// DownloadDir is where each job's browser context saves its downloads,
	// in a directory of its own removed after the job (default the
	// system's temporary directory).
	DownloadDir string
	// MaxDownloadBytes bounds one downloaded file: a larger download is
	// cancelled and reported with an error (default 50 MiB).
	MaxDownloadBytes int64
	// MaxDownloads bounds the files one job keeps; later ones are cancelled
	// (default 10).
	MaxDownloads int
	// StartTimeout bounds the start of one browser process (default 30 s).
	StartTimeout time.Duration
	// Logger receives the pool's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the pool's metrics: pagefleet_browser_pool_size,
	// pagefleet_browser_pool_busy, pagefleet_browser_restarts_total and
	// pagefleet_browser_contexts_created_total. Nil: not registered.
	Registerer prometheus.Registerer
}

// chromeNames are the binaries looked up on PATH when ChromePath is empty.
var chromeNames = []string{"/usr/lib/chromium/chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// withDefaults returns a copy of c with the defaults filled in.
func (c Config) withDefaults() Config {
	if c.Browsers == 0 {
		c.Browsers = DefaultBrowsers
	}
	if c.ContextsPerBrowser == 0 {
		c.ContextsPerBrowser = DefaultContextsPerBrowser
	}
	if c.JobsPerBrowser == 0 {
		c.JobsPerBrowser = DefaultJobsPerBrowser
	}
	if c.WarmTabs == 0 {
		c.WarmTabs = DefaultWarmTabs
	}
	if c.WarmTabs < 0 {
		c.WarmTabs = 0
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.DownloadDir == "" {
		c.DownloadDir = os.TempDir()
	}
	if c.MaxDownloadBytes == 0 {
		c.MaxDownloadBytes = DefaultMaxDownloadBytes
	}
	if c.MaxDownloads == 0 {
		c.MaxDownloads = DefaultMaxDownloads
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate checks the settings and resolves ChromePath.
func (c *Config) validate() error {
	var errs []error
	if c.Browsers < 0 {
		errs = append(errs, fmt.Errorf("browsers must not be negative, got %d", c.Browsers))
	}
	if c.ContextsPerBrowser < 0 {
		errs = append(errs, fmt.Errorf("contexts per browser must not be negative, got %d", c.ContextsPerBrowser))
	}
	if c.JobsPerBrowser < 0 {
		errs = append(errs, fmt.Errorf("jobs per browser must not be negative, got %d", c.JobsPerBrowser))
	}
	if c.MaxDownloadBytes < 0 {
		errs = append(errs, fmt.Errorf("max download bytes must not be negative, got %d", c.MaxDownloadBytes))
	}
	if c.MaxDownloads < 0 {
		errs = append(errs, fmt.Errorf("max downloads must not be negative, got %d", c.MaxDownloads))
	}
	for name, v := range c.ExtraFlags {
		switch v.(type) {
		case string, bool:
		default:
			errs = append(errs, fmt.Errorf("extra flag %q: value must be a string or a bool, got %T", name, v))
		}
	}
	if c.ChromePath == "" {
		for _, name := range chromeNames {
			if p, err := exec.LookPath(name); err == nil {
				c.ChromePath = p
				break
			}
		}
		if c.ChromePath == "" {
			errs = append(errs, fmt.Errorf("no Chrome found on PATH (looked for %v); set ChromePath", chromeNames))
		}
	} else if p, err := exec.LookPath(c.ChromePath); err != nil {
		errs = append(errs, fmt.Errorf("chrome path: %w", err))
	} else {
		c.ChromePath = p
	}
	return errors.Join(errs...)
}

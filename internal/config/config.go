// Package config reads pagefleet's settings from the environment, fills
// defaults in one place and validates them, naming the variable at fault.
package config

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config holds every setting of the API and worker binaries.
type Config struct {
	RedisURL    string
	APIAddr     string
	WorkerAddr  string
	TenantsFile string
	// ProxiesFile holds upstream proxy pools for every tenant.
	ProxiesFile     string
	DevAPIKey       string
	AllowPrivate    bool
	AllowCIDRs      []netip.Prefix
	AllowedPorts    []int
	ChromePath      string
	Concurrency     int
	Browsers        int
	JobsPerBrowser  int
	ResultTTL       time.Duration
	SessionTTL      time.Duration
	SessionKey      []byte
	SessionMaxBytes int
	WebhookSchedule []time.Duration
	AdminToken      string
	LLMBaseURL      string
	LLMModel        string
	LLMAPIKey       string
	ShutdownTimeout time.Duration
	// HostConcurrency is the operator's jobs per host: the default of every
	// tenant, and a ceiling over all tenants together.
	HostConcurrency int
	// HostDelay is the operator's least time between two job starts
	// against one host: every tenant's default, and over all tenants.
	HostDelay time.Duration
	// SweepInterval is how often a worker ends the jobs whose tasks asynq
	// archived without an outcome (see worker.Sweep).
	SweepInterval time.Duration
	// ReadHeaderTimeout is how long the API waits for a request's headers
	// before it cuts the client off (slowloris).
	ReadHeaderTimeout time.Duration
	LogFormat         string

	// CacheTTL is how long the result cache keeps an entry after it was
	// written or revalidated (PAGEFLEET_CACHE_TTL).
	CacheTTL time.Duration

	// ArtifactsURL is the artifact store (PAGEFLEET_ARTIFACTS_URL):
	// file:///dir or s3://bucket/prefix?endpoint=host:port. Default:
	// file://<os.TempDir()>/pagefleet-artifacts, which the API and the
	// workers share only on one machine.
	ArtifactsURL string
	// ArtifactsSecret signs artifact links (PAGEFLEET_ARTIFACTS_SECRET);
	// nil: a random secret the fleet keeps in Redis.
	ArtifactsSecret []byte
	// PublicURL is the API's address as clients reach it
	// (PAGEFLEET_PUBLIC_URL), the start of artifact links; "": the API
	// makes links absolute from each request's Host, and webhooks carry
	// the path.
	PublicURL string
	// MaxDownloadBytes bounds one file a rendered job downloads
	// (PAGEFLEET_MAX_DOWNLOAD_BYTES, default 50 MiB); a larger download
	// is cancelled and listed with an error.
	MaxDownloadBytes int64
}

// DefaultWebhookSchedule is ≈ 24 h of growing delays between delivery attempts.
var DefaultWebhookSchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 8 * time.Hour,
}

// Error names the variable whose value is wrong.
type Error struct {
	Var, Value, Reason string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("config: %s: %s", e.Var, e.Reason)
	}
	return fmt.Sprintf("config: %s=%q: %s", e.Var, e.Value, e.Reason)
}

// FromEnv reads the configuration from the process environment.
func FromEnv() (*Config, error) { return Load(os.LookupEnv) }

// Load reads the configuration through lookup (os.LookupEnv in production).
func Load(lookup func(string) (string, bool)) (*Config, error) {
	get := func(k, def string) string {
		if v, ok := lookup(k); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	c := &Config{
		RedisURL:    get("PAGEFLEET_REDIS_URL", "redis://127.0.0.1:6379/0"),
		APIAddr:     get("PAGEFLEET_API_ADDR", ":8080"),
		WorkerAddr:  get("PAGEFLEET_WORKER_ADDR", ":9090"),
		TenantsFile: get("PAGEFLEET_TENANTS_FILE", ""),
		ProxiesFile: get("PAGEFLEET_PROXIES_FILE", ""),
		DevAPIKey:   get("PAGEFLEET_DEV_API_KEY", ""),
		ChromePath:  get("PAGEFLEET_CHROME_PATH", ""),
		AdminToken:  get("PAGEFLEET_ADMIN_TOKEN", ""),
		LLMBaseURL:  get("PAGEFLEET_LLM_BASE_URL", ""),
		LLMModel:    get("PAGEFLEET_LLM_MODEL", ""),
		LLMAPIKey:   get("PAGEFLEET_LLM_API_KEY", ""),
		LogFormat:   get("PAGEFLEET_LOG_FORMAT", ""),
		PublicURL:   get("PAGEFLEET_PUBLIC_URL", ""),
	}
	c.ArtifactsURL = get("PAGEFLEET_ARTIFACTS_URL", "file://"+filepath.ToSlash(filepath.Join(os.TempDir(), "pagefleet-artifacts")))
	if err := checkArtifactsURL(c.ArtifactsURL); err != "" {
		return nil, &Error{"PAGEFLEET_ARTIFACTS_URL", c.ArtifactsURL, err}
	}
	if v := get("PAGEFLEET_ARTIFACTS_SECRET", ""); v != "" {
		if len(v) < 16 {
			return nil, &Error{"PAGEFLEET_ARTIFACTS_SECRET", "", "must be at least 16 characters (openssl rand -base64 32)"}
		}
		c.ArtifactsSecret = []byte(v)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, &Error{"PAGEFLEET_PUBLIC_URL", c.PublicURL, "must be an http or https URL"}
		}
	}
	var err error
	if _, err = ParseRedisURL(c.RedisURL); err != nil {
		return nil, &Error{"PAGEFLEET_REDIS_URL", c.RedisURL, err.Error()}
	}
	if c.AllowPrivate, err = parseBool(get("PAGEFLEET_ALLOW_PRIVATE_NETWORKS", "false")); err != nil {
		return nil, &Error{"PAGEFLEET_ALLOW_PRIVATE_NETWORKS", get("PAGEFLEET_ALLOW_PRIVATE_NETWORKS", ""), "must be true or false"}
	}
	if v := get("PAGEFLEET_ALLOW_CIDRS", ""); v != "" {
		for _, s := range strings.Split(v, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return nil, &Error{"PAGEFLEET_ALLOW_CIDRS", v, "not a comma-separated list of CIDRs: " + err.Error()}
			}
			c.AllowCIDRs = append(c.AllowCIDRs, p)
		}
	}
	if v := get("PAGEFLEET_ALLOWED_PORTS", ""); v != "" {
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 || n > 65535 {
				return nil, &Error{"PAGEFLEET_ALLOWED_PORTS", v, "not a comma-separated list of ports"}
			}
			c.AllowedPorts = append(c.AllowedPorts, n)
		}
	}
	intVar := func(name string, def, min, max int) (int, error) {
		v := get(name, "")
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			return 0, &Error{name, v, fmt.Sprintf("must be a whole number from %d to %d", min, max)}
		}
		return n, nil
	}
	durVar := func(name string, def, min time.Duration) (time.Duration, error) {
		v := get(name, "")
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < min {
			return 0, &Error{name, v, fmt.Sprintf("must be a Go duration of at least %s", min)}
		}
		return d, nil
	}
	cores := runtime.NumCPU()
	if c.Concurrency, err = intVar("PAGEFLEET_WORKER_CONCURRENCY", max(2, cores*2), 1, 1024); err != nil {
		return nil, err
	}
	if c.Browsers, err = intVar("PAGEFLEET_BROWSERS", max(1, (c.Concurrency+3)/4), 1, 64); err != nil {
		return nil, err
	}
	if c.JobsPerBrowser, err = intVar("PAGEFLEET_JOBS_PER_BROWSER", 500, 1, 1000000); err != nil {
		return nil, err
	}
	if c.SessionMaxBytes, err = intVar("PAGEFLEET_SESSION_MAX_BYTES", 5<<20, 1024, 256<<20); err != nil {
		return nil, err
	}
	if c.ResultTTL, err = durVar("PAGEFLEET_RESULT_TTL", 24*time.Hour, time.Second); err != nil {
		return nil, err
	}
	if c.CacheTTL, err = durVar("PAGEFLEET_CACHE_TTL", 48*time.Hour, time.Second); err != nil {
		return nil, err
	}
	if c.SessionTTL, err = durVar("PAGEFLEET_SESSION_TTL", 24*time.Hour, time.Second); err != nil {
		return nil, err
	}
	if c.ShutdownTimeout, err = durVar("PAGEFLEET_SHUTDOWN_TIMEOUT", 30*time.Second, 0); err != nil {
		return nil, err
	}
	if c.SweepInterval, err = durVar("PAGEFLEET_SWEEP_INTERVAL", 15*time.Second, 100*time.Millisecond); err != nil {
		return nil, err
	}
	if c.HostConcurrency, err = intVar("PAGEFLEET_HOST_CONCURRENCY", 8, 1, 1000); err != nil {
		return nil, err
	}
	if c.HostDelay, err = durVar("PAGEFLEET_HOST_DELAY", 0, 0); err != nil {
		return nil, err
	}
	maxDownload, err := intVar("PAGEFLEET_MAX_DOWNLOAD_BYTES", 50<<20, 1024, 1<<30)
	if err != nil {
		return nil, err
	}
	c.MaxDownloadBytes = int64(maxDownload)
	if c.ReadHeaderTimeout, err = durVar("PAGEFLEET_READ_HEADER_TIMEOUT", 10*time.Second, 100*time.Millisecond); err != nil {
		return nil, err
	}
	if v := get("PAGEFLEET_SESSION_KEY", ""); v != "" {
		k, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(k) != 32 {
			return nil, &Error{"PAGEFLEET_SESSION_KEY", "", "must be 32 bytes, base64-encoded (openssl rand -base64 32)"}
		}
		c.SessionKey = k
	}
	c.WebhookSchedule = DefaultWebhookSchedule
	if v := get("PAGEFLEET_WEBHOOK_RETRY_SCHEDULE", ""); v != "" {
		c.WebhookSchedule = nil
		for _, s := range strings.Split(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil || d < 0 {
				return nil, &Error{"PAGEFLEET_WEBHOOK_RETRY_SCHEDULE", v, "must be comma-separated Go durations"}
			}
			c.WebhookSchedule = append(c.WebhookSchedule, d)
		}
	}
	if (c.LLMBaseURL == "") != (c.LLMModel == "") {
		return nil, &Error{"PAGEFLEET_LLM_MODEL", c.LLMModel, "PAGEFLEET_LLM_BASE_URL and PAGEFLEET_LLM_MODEL are set together"}
	}
	return c, nil
}

// checkArtifactsURL says what is wrong with an artifact store URL ("":
// nothing).
func checkArtifactsURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "not a URL"
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return "a file URL names an absolute directory: file:///var/lib/pagefleet/artifacts"
		}
	case "s3":
		if u.Host == "" {
			return "an s3 URL names a bucket: s3://bucket/prefix?endpoint=host:port"
		}
	default:
		return "must be file:///dir or s3://bucket/prefix?endpoint=host:port"
	}
	return ""
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

// RedisOptions parses the Redis URL: redis://, rediss://, a Sentinel form
// redis-sentinel://[:password@]host:port[,host:port]/db?master=name, or a
// Cluster form redis-cluster://host:port[,host:port].
func (c *Config) RedisOptions() (*redis.UniversalOptions, error) {
	return ParseRedisURL(c.RedisURL)
}

// ParseRedisURL parses the forms documented on RedisOptions.
func ParseRedisURL(raw string) (*redis.UniversalOptions, error) {
	switch {
	case strings.HasPrefix(raw, "redis-sentinel://"), strings.HasPrefix(raw, "redis-cluster://"):
		rest := raw[strings.Index(raw, "://")+3:]
		var username, password string
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			cred := rest[:at]
			rest = rest[at+1:]
			if i := strings.Index(cred, ":"); i >= 0 {
				username, password = cred[:i], cred[i+1:]
			} else {
				password = cred
			}
		}
		query := ""
		if i := strings.Index(rest, "?"); i >= 0 {
			rest, query = rest[:i], rest[i+1:]
		}
		db := 0
		if i := strings.Index(rest, "/"); i >= 0 {
			if s := rest[i+1:]; s != "" {
				n, err := strconv.Atoi(s)
				if err != nil {
					return nil, fmt.Errorf("bad database number %q", s)
				}
				db = n
			}
			rest = rest[:i]
		}
		o := &redis.UniversalOptions{Addrs: strings.Split(rest, ","), Password: password, DB: db}
		if strings.HasPrefix(raw, "redis-cluster://") {
			o.Username = username // Sentinel URLs name Redis's password only
		}
		for _, kv := range strings.Split(query, "&") {
			if k, v, ok := strings.Cut(kv, "="); ok && k == "master" {
				o.MasterName = v
			}
		}
		if strings.HasPrefix(raw, "redis-sentinel://") && o.MasterName == "" {
			return nil, fmt.Errorf("sentinel URL needs ?master=<name>")
		}
		if strings.HasPrefix(raw, "redis-cluster://") {
			if db != 0 {
				return nil, fmt.Errorf("a Redis Cluster has only database 0")
			}
			if o.MasterName != "" {
				return nil, fmt.Errorf("?master= belongs to a redis-sentinel:// URL, not to a cluster")
			}
			// A cluster client even with one seed address (the cluster
			// tells it the other nodes).
			o.IsClusterMode = true
		}
		return o, nil
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	return &redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}, nil
}

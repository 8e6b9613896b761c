package config

import (
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewRedis builds the Redis client with short timeouts, so that an outage
// gives quick errors (503s) rather than hanging requests.
func (c *Config) NewRedis() (redis.UniversalClient, error) {
	o, err := c.RedisOptions()
	if err != nil {
		return nil, &Error{"PAGEFLEET_REDIS_URL", c.RedisURL, err.Error()}
	}
	o.DialTimeout = 2 * time.Second
	o.ReadTimeout = 3 * time.Second
	o.WriteTimeout = 3 * time.Second
	o.PoolTimeout = 4 * time.Second
	o.MaxRetries = 1
	if o.IsClusterMode {
		co := o.Cluster()
		// go-redis reloads the slot map every 60 s by default, or at once
		// on a MOVED answer; a master that died answers nothing, so its
		// slots stayed unreachable for up to a minute after a replica had
		// taken over (e2e TestRedisClusterFailover). One CLUSTER SLOTS every
		// 2 s while commands flow costs nothing.
		co.ClusterStateReloadInterval = 2 * time.Second
		return redis.NewClusterClient(co), nil
	}
	return redis.NewUniversalClient(o), nil
}

// NewLogger returns a slog logger: JSON when stderr is not a terminal (or
// PAGEFLEET_LOG_FORMAT=json), text otherwise.
func (c *Config) NewLogger(component string) *slog.Logger {
	var h slog.Handler
	json := c.LogFormat == "json"
	if c.LogFormat == "" {
		fi, err := os.Stderr.Stat()
		json = err != nil || fi.Mode()&os.ModeCharDevice == 0
	}
	if json {
		h = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	} else {
		h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	return slog.New(h).With("component", component)
}

package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/config"
	"github.com/pagefleet/pagefleet/internal/tenant"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := config.Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisURL != "redis://127.0.0.1:6379/0" || c.APIAddr != ":8080" || c.WorkerAddr != ":9090" || c.ResultTTL != 24*time.Hour ||
		c.SessionTTL != 24*time.Hour || c.AllowPrivate || c.Concurrency < 2 || c.Browsers < 1 || len(c.WebhookSchedule) == 0 {
		t.Fatalf("defaults: %+v", c)
	}
	var total time.Duration
	for _, d := range c.WebhookSchedule {
		total += d
	}
	if total < 20*time.Hour || total > 30*time.Hour {
		t.Errorf("webhook schedule spans %s, want about 24h", total)
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	cases := map[string]string{
		"PAGEFLEET_REDIS_URL":              "mysql://x",
		"PAGEFLEET_ALLOW_PRIVATE_NETWORKS": "maybe",
		"PAGEFLEET_WORKER_CONCURRENCY":     "0",
		"PAGEFLEET_RESULT_TTL":             "forever",
		"PAGEFLEET_SESSION_TTL":            "-1h",
		"PAGEFLEET_SESSION_KEY":            "c2hvcnQ=",
		"PAGEFLEET_WEBHOOK_RETRY_SCHEDULE": "1s,soon",
		"PAGEFLEET_ALLOW_CIDRS":            "10.0.0.0/33",
		"PAGEFLEET_ALLOWED_PORTS":          "80,http",
	}
	for k, v := range cases {
		_, err := config.Load(env(map[string]string{k: v}))
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: err %v does not name the variable", k, v, err)
		}
	}
}

func TestRedisURLForms(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/2", "rediss://:pw@redis.example:6380/0", "redis-sentinel://:pw@s1:26379,s2:26379/1?master=mymaster"} {
		o, err := config.ParseRedisURL(u)
		if err != nil || len(o.Addrs) == 0 {
			t.Errorf("%s: %v", u, err)
		}
	}
	o, _ := config.ParseRedisURL("redis-sentinel://:pw@s1:26379,s2:26379/1?master=mymaster")
	if o.MasterName != "mymaster" || len(o.Addrs) != 2 || o.DB != 1 || o.Password != "pw" {
		t.Errorf("sentinel options: %+v", o)
	}
	if _, err := config.ParseRedisURL("redis-sentinel://s1:26379"); err == nil {
		t.Error("sentinel URL without master accepted")
	}
	// A cluster URL makes a cluster client even with one seed node.
	for _, u := range []string{"redis-cluster://:pw@n1:7000", "redis-cluster://n1:7000,n2:7001"} {
		o, err := config.ParseRedisURL(u)
		if err != nil || !o.IsClusterMode || o.DB != 0 {
			t.Errorf("%s: %+v, %v", u, o, err)
		}
	}
	if _, err := config.ParseRedisURL("redis-cluster://n1:7000/3"); err == nil {
		t.Error("cluster URL with database 3 accepted")
	}
	if _, err := config.ParseRedisURL("redis-cluster://n1:7000?master=m"); err == nil {
		t.Error("cluster URL with ?master= accepted")
	}
	if o, _ := config.ParseRedisURL("redis-cluster://app:pw@n1:7000"); o.Username != "app" || o.Password != "pw" {
		t.Errorf("cluster URL user and password: %+v", o)
	}
}

func TestTenantsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "t.yaml")
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	r, err := tenant.Load(write(`tenants:
  - id: acme
    plan: pro
    api_keys: ["pf_live_aaaaaaaa", "sha256:`+strings.Repeat("ab", 32)+`"]
    webhook_secret: "whsec_abc"
`), "pf_dev_key_123")
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Authenticate("pf_live_aaaaaaaa"); a == nil || a.ID != "acme" || a.Limits.RequestsPerSecond != 50 {
		t.Errorf("acme: %+v", a)
	}
	if d := r.Authenticate("pf_dev_key_123"); d == nil || d.ID != "dev" || d.Plan != "enterprise" {
		t.Errorf("dev: %+v", d)
	}
	if r.Authenticate("nope-nope") != nil || r.Authenticate("") != nil {
		t.Error("unknown key accepted")
	}
	for name, bad := range map[string]string{
		"duplicate key": "tenants:\n  - {id: a, api_keys: [k_123456789]}\n  - {id: b, api_keys: [k_123456789]}\n",
		"bad plan":      "tenants:\n  - {id: a, plan: gold, api_keys: [k_123456789]}\n",
		"unknown field": "tenants:\n  - {id: a, api_keyz: [k_123456789]}\n",
		"bad hash":      "tenants:\n  - {id: a, api_keys: [\"sha256:zz\"]}\n",
	} {
		if _, err := tenant.Load(write(bad), ""); err == nil || !strings.Contains(err.Error(), "PAGEFLEET_TENANTS_FILE") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := tenant.Load(filepath.Join(dir, "missing.yaml"), ""); err == nil {
		t.Error("missing file accepted")
	}
}

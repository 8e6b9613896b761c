// Package tenant loads the tenants file and resolves API keys to tenants.
// Keys are held only as SHA-256 hashes and compared in constant time.
package tenant

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/pagefleet/pagefleet/pkg/spec"
	"gopkg.in/yaml.v3"
)

// Plans.
const (
	PlanFree       = "free"
	PlanPro        = "pro"
	PlanEnterprise = "enterprise"
)

// Limits bound what one tenant may do; zero means the plan default.
type Limits struct {
	RequestsPerSecond float64 `yaml:"requests_per_second" json:"requests_per_second"`
	QueuedJobs        int     `yaml:"queued_jobs" json:"queued_jobs"`
	RunningJobs       int     `yaml:"running_jobs" json:"running_jobs"`
	BatchSize         int     `yaml:"batch_size" json:"batch_size"`
	RunningBulkJobs   int     `yaml:"running_bulk_jobs" json:"running_bulk_jobs"`
}

// PlanLimits are the defaults per plan.
var PlanLimits = map[string]Limits{
	PlanFree:       {RequestsPerSecond: 5, QueuedJobs: 1000, RunningJobs: 2, BatchSize: 1000, RunningBulkJobs: 2},
	PlanPro:        {RequestsPerSecond: 50, QueuedJobs: 100000, RunningJobs: 20, BatchSize: 100000, RunningBulkJobs: 10},
	PlanEnterprise: {RequestsPerSecond: 2000, QueuedJobs: 1000000, RunningJobs: 200, BatchSize: 100000, RunningBulkJobs: 100},
}

// Tenant is one customer.
type Tenant struct {
	ID            string   `yaml:"id"`
	Plan          string   `yaml:"plan"`
	APIKeys       []string `yaml:"api_keys"`
	WebhookSecret string   `yaml:"webhook_secret"`
	Limits        Limits   `yaml:"limits"`
	// Politeness is how the tenant's jobs treat each host, unless a job
	// says otherwise (zero fields: the operator's settings).
	Politeness spec.Politeness `yaml:"politeness"`
	// Proxies are the tenant's upstream proxy pools (beside those of
	// PAGEFLEET_PROXIES_FILE, which it may override by name).
	Proxies *Proxies `yaml:"proxies"`
	// BlockRules mark responses as blocked, beside the built-in rules.
	BlockRules []spec.BlockRule `yaml:"block_rules"`

	keyHashes [][]byte
}

// Proxies is a "proxies:" block of the tenants file or of
// PAGEFLEET_PROXIES_FILE.
type Proxies struct {
	// DefaultPool is the pool of jobs that name none ("": directly).
	DefaultPool string `yaml:"default_pool"`
	// Rotation is round_robin (default), random or least_used.
	Rotation string `yaml:"rotation"`
	// Pools maps a pool name to its proxy URLs.
	Pools map[string][]string `yaml:"pools"`
}

// Rotations a proxies block may name.
var Rotations = []string{"round_robin", "random", "least_used"}

// Validate checks the block's shape (the URLs are parsed where they are
// used, by the proxy package); where names it in errors.
func (p *Proxies) Validate(where string) error {
	if p == nil {
		return nil
	}
	switch p.Rotation {
	case "", "round_robin", "random", "least_used":
	default:
		return fmt.Errorf("%s: proxies.rotation %q is not round_robin, random or least_used", where, p.Rotation)
	}
	for name, urls := range p.Pools {
		if !spec.ValidName(name) {
			return fmt.Errorf("%s: proxies.pools: %q is not a valid pool name (1-64 characters of A-Z a-z 0-9 . _ -)", where, name)
		}
		if len(urls) == 0 {
			return fmt.Errorf("%s: proxies.pools.%s is empty", where, name)
		}
	}
	return nil
}

// Registry maps API keys to tenants.
type Registry struct {
	tenants []*Tenant
	byID    map[string]*Tenant
}

type file struct {
	Tenants []*Tenant `yaml:"tenants"`
}

// Load builds the registry from a tenants file (may be "") and a dev key
// (may be ""), which adds tenant "dev" on plan enterprise.
func Load(path, devKey string) (*Registry, error) {
	var f file
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE %s: %w", path, err)
		}
	}
	if devKey != "" {
		f.Tenants = append(f.Tenants, &Tenant{ID: "dev", Plan: PlanEnterprise, APIKeys: []string{devKey}, WebhookSecret: "whsec_" + b64(sha256.Sum256([]byte("dev-webhook:"+devKey)))})
	}
	return New(f.Tenants)
}

func b64(h [32]byte) string { return base64.StdEncoding.EncodeToString(h[:]) }

// New validates tenants and builds the registry.
func New(ts []*Tenant) (*Registry, error) {
	r := &Registry{byID: map[string]*Tenant{}}
	seen := map[string]string{}
	for i, t := range ts {
		if t == nil || t.ID == "" {
			return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: tenants[%d]: id is required", i)
		}
		if _, dup := r.byID[t.ID]; dup {
			return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: tenant %q is listed twice", t.ID)
		}
		if t.Plan == "" {
			t.Plan = PlanFree
		}
		def, ok := PlanLimits[t.Plan]
		if !ok {
			return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: tenant %q: plan %q is not free, pro or enterprise", t.ID, t.Plan)
		}
		if rps := t.Limits.RequestsPerSecond; rps < 0 || rps != math.Trunc(rps) || rps > math.MaxInt32 {
			// The gate counts requests per second in whole numbers: 0.5
			// would become 0, which means no limit at all.
			return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: tenant %q: limits.requests_per_second must be a whole number of at least 1, not %g", t.ID, rps)
		}
		if t.Limits.RequestsPerSecond == 0 {
			t.Limits.RequestsPerSecond = def.RequestsPerSecond
		}
		if t.Limits.QueuedJobs == 0 {
			t.Limits.QueuedJobs = def.QueuedJobs
		}
		if t.Limits.RunningJobs == 0 {
			t.Limits.RunningJobs = def.RunningJobs
		}
		if t.Limits.BatchSize == 0 {
			t.Limits.BatchSize = def.BatchSize
		}
		if t.Limits.RunningBulkJobs == 0 {
			t.Limits.RunningBulkJobs = def.RunningBulkJobs
		}
		if errs := t.Politeness.Validate("politeness"); len(errs) > 0 {
			return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: tenant %q: %s", t.ID, errs[0].Error())
		}
		if err := t.Proxies.Validate(fmt.Sprintf("PAGEFLEET_TENANTS_FILE: tenant %q", t.ID)); err != nil {
			return nil, err
		}
		for i := range t.BlockRules {
			if errs := t.BlockRules[i].Validate(fmt.Sprintf("block_rules[%d]", i)); len(errs) > 0 {
				return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: tenant %q: %s", t.ID, errs[0].Error())
			}
		}
		if t.WebhookSecret != "" && !strings.HasPrefix(t.WebhookSecret, "whsec_") {
			return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: tenant %q: webhook_secret must start with whsec_", t.ID)
		}
		if len(t.APIKeys) == 0 {
			return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: tenant %q has no api_keys", t.ID)
		}
		for _, k := range t.APIKeys {
			h, err := keyHash(k)
			if err != nil {
				return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: tenant %q: %w", t.ID, err)
			}
			if other, dup := seen[string(h)]; dup {
				return nil, fmt.Errorf("PAGEFLEET_TENANTS_FILE: duplicate API key in tenants %q and %q", other, t.ID)
			}
			seen[string(h)] = t.ID
			t.keyHashes = append(t.keyHashes, h)
		}
		t.APIKeys = nil // hashes only from here on
		r.tenants = append(r.tenants, t)
		r.byID[t.ID] = t
	}
	return r, nil
}

func keyHash(k string) ([]byte, error) {
	if hx, ok := strings.CutPrefix(k, "sha256:"); ok {
		b, err := hex.DecodeString(hx)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("api key hash %q is not sha256:<64 hex digits>", k[:min(len(k), 16)]+"…")
		}
		return b, nil
	}
	if len(k) < 8 {
		return nil, fmt.Errorf("api keys must be at least 8 characters")
	}
	h := sha256.Sum256([]byte(k))
	return h[:], nil
}

// Authenticate returns the tenant owning key, comparing hashes in constant
// time against every key.
func (r *Registry) Authenticate(key string) *Tenant {
	if key == "" {
		return nil
	}
	h := sha256.Sum256([]byte(key))
	var found *Tenant
	for _, t := range r.tenants {
		for _, kh := range t.keyHashes {
			if subtle.ConstantTimeCompare(kh, h[:]) == 1 {
				found = t
			}
		}
	}
	return found
}

// Get returns the tenant with id, or nil.
func (r *Registry) Get(id string) *Tenant { return r.byID[id] }

// All returns the tenants.
func (r *Registry) All() []*Tenant { return r.tenants }

// Len is the number of tenants.
func (r *Registry) Len() int { return len(r.tenants) }

// HasPlan reports whether the tenant's plan is one of plans.
func (t *Tenant) HasPlan(plans ...string) bool {
	for _, p := range plans {
		if t.Plan == p {
			return true
		}
	}
	return false
}

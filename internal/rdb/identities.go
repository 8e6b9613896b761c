package rdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Errors returned by the store. Callers test them with errors.Is.
var (
	// ErrIdentityNotFound means the tenant has no profile of that name.
	ErrIdentityNotFound = errors.New("identity not found")
	// ErrIdentityLimit means the tenant already has IdentitiesConfig.MaxPerTenant profiles.
	ErrIdentityLimit = errors.New("too many identities")
)

// DefaultMaxIdentities is how many profiles a tenant may keep by default.
const DefaultMaxIdentities = 1000

// IdentitiesConfig holds the store's settings; zero values take the defaults.
type IdentitiesConfig struct {
	// MaxPerTenant bounds the profiles of one tenant (default 1000).
	MaxPerTenant int
	// Now is the clock of created_at and updated_at (nil: time.Now).
	Now func() time.Time
}

// Identities keeps identity profiles in Redis. It is safe for concurrent use.
type Identities struct {
	rdb redis.UniversalClient
	cfg IdentitiesConfig
}

// NewIdentities returns a store on rdb.
func NewIdentities(rdb redis.UniversalClient, cfg IdentitiesConfig) *Identities {
	if cfg.MaxPerTenant <= 0 {
		cfg.MaxPerTenant = DefaultMaxIdentities
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Identities{rdb: rdb, cfg: cfg}
}

// identityPrefix is the key identityPrefix of a tenant's profiles; the hash tag keeps all of
// them in one Cluster slot.
func identityPrefix(tenant string) string { return "{pf}:{i:" + tenantEscaper.Replace(tenant) + "}:" }

func identityKey(tenant, name string) string { return identityPrefix(tenant) + "identity:" + name }

func identityIndexKey(tenant string) string { return identityPrefix(tenant) + "identities" }

// storedIdentity is the profile JSON kept in the hash, without name and times.
type storedIdentity struct {
	UserAgent      string            `json:"user_agent,omitempty"`
	Locale         string            `json:"locale,omitempty"`
	Timezone       string            `json:"timezone,omitempty"`
	AcceptLanguage string            `json:"accept_language,omitempty"`
	Viewport       *spec.Viewport    `json:"viewport,omitempty"`
	Headers        map[string]string `json:"headers,omitempty"`
	ProxyPool      string            `json:"proxy_pool,omitempty"`
}

// putIdentityScript creates or replaces a profile, keeping its created_at, and
// refuses a new one past the tenant's limit.
// KEYS: profile, index. ARGV: name, profile JSON, now, max.
// Returns {created_at, created (1/0)} or {-1} at the limit.
var putIdentityScript = redis.NewScript(`
local exists = redis.call('EXISTS', KEYS[1])
if exists == 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return {-1}
end
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[3])
redis.call('HSET', KEYS[1], 'profile', ARGV[2], 'updated_at', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {redis.call('HGET', KEYS[1], 'created_at'), 1 - exists}
`)

// Put creates or replaces p (which must be valid and normalized) for
// tenant, sets its times and reports whether it was created.
func (s *Identities) Put(ctx context.Context, tenant string, p *spec.Identity) (created bool, err error) {
	if !spec.ValidName(p.Name) {
		return false, fmt.Errorf("put identity: invalid name %q", p.Name)
	}
	doc, err := json.Marshal(storedIdentity{UserAgent: p.UserAgent, Locale: p.Locale, Timezone: p.Timezone,
		AcceptLanguage: p.AcceptLanguage, Viewport: p.Viewport, Headers: p.Headers, ProxyPool: p.ProxyPool})
	if err != nil {
		return false, fmt.Errorf("put identity %q: %w", p.Name, err)
	}
	now := s.cfg.Now().UTC()
	res, err := putIdentityScript.Run(ctx, s.rdb, []string{identityKey(tenant, p.Name), identityIndexKey(tenant)},
		p.Name, doc, now.Format(time.RFC3339Nano), s.cfg.MaxPerTenant).Slice()
	if err != nil {
		return false, fmt.Errorf("put identity %q: %w", p.Name, err)
	}
	if n, ok := res[0].(int64); ok && n == -1 {
		return false, ErrIdentityLimit
	}
	if len(res) != 2 {
		return false, fmt.Errorf("put identity %q: unexpected reply %v", p.Name, res)
	}
	cs, _ := res[0].(string)
	createdAt, err := time.Parse(time.RFC3339Nano, cs)
	if err != nil {
		createdAt = now
	}
	p.CreatedAt, p.UpdatedAt = createdAt, now
	if p.Headers == nil {
		p.Headers = map[string]string{}
	}
	flag, _ := res[1].(int64)
	return flag == 1, nil
}

// Get returns the tenant's profile name.
func (s *Identities) Get(ctx context.Context, tenant, name string) (*spec.Identity, error) {
	if !spec.ValidName(name) {
		return nil, ErrIdentityNotFound
	}
	vals, err := s.rdb.HMGet(ctx, identityKey(tenant, name), "profile", "created_at", "updated_at").Result()
	if err != nil {
		return nil, fmt.Errorf("get identity %q: %w", name, err)
	}
	return decodeIdentity(name, vals)
}

func decodeIdentity(name string, vals []any) (*spec.Identity, error) {
	doc, ok := vals[0].(string)
	if !ok {
		return nil, ErrIdentityNotFound
	}
	var st storedIdentity
	if err := json.Unmarshal([]byte(doc), &st); err != nil {
		return nil, fmt.Errorf("decodeIdentity identity %q: %w", name, err)
	}
	p := &spec.Identity{Name: name, UserAgent: st.UserAgent, Locale: st.Locale, Timezone: st.Timezone,
		AcceptLanguage: st.AcceptLanguage, Viewport: st.Viewport, Headers: st.Headers, ProxyPool: st.ProxyPool}
	if p.Headers == nil {
		p.Headers = map[string]string{}
	}
	if c, ok := vals[1].(string); ok {
		p.CreatedAt, _ = time.Parse(time.RFC3339Nano, c)
	}
	if u, ok := vals[2].(string); ok {
		p.UpdatedAt, _ = time.Parse(time.RFC3339Nano, u)
	}
	return p, nil
}

// List returns up to limit of the tenant's profiles in name order, after
// cursor ("" for the first page), and the cursor of the next page ("" on
// the last one).
func (s *Identities) List(ctx context.Context, tenant, cursor string, limit int) ([]spec.Identity, string, error) {
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	lo := "-"
	if cursor != "" {
		if !spec.ValidName(cursor) {
			return nil, "", ErrInvalidCursor
		}
		lo = "(" + cursor
	}
	names, err := s.rdb.ZRangeByLex(ctx, identityIndexKey(tenant), &redis.ZRangeBy{Min: lo, Max: "+", Count: int64(limit + 1)}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list identities: %w", err)
	}
	next := ""
	if len(names) > limit {
		names = names[:limit]
		next = names[limit-1]
	}
	cmds := make([]*redis.SliceCmd, len(names))
	if len(names) > 0 {
		_, err = s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, n := range names {
				cmds[i] = pipe.HMGet(ctx, identityKey(tenant, n), "profile", "created_at", "updated_at")
			}
			return nil
		})
		if err != nil {
			return nil, "", fmt.Errorf("list identities: %w", err)
		}
	}
	out := make([]spec.Identity, 0, len(names))
	for i, n := range names {
		p, err := decodeIdentity(n, cmds[i].Val())
		if errors.Is(err, ErrIdentityNotFound) {
			continue // deleted between the two reads
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, *p)
	}
	return out, next, nil
}

// Delete removes the tenant's profile name. Jobs that already read it keep
// running with it.
func (s *Identities) Delete(ctx context.Context, tenant, name string) error {
	if !spec.ValidName(name) {
		return ErrIdentityNotFound
	}
	var del *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		del = pipe.Del(ctx, identityKey(tenant, name))
		pipe.ZRem(ctx, identityIndexKey(tenant), name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete identity %q: %w", name, err)
	}
	if del.Val() == 0 {
		return ErrIdentityNotFound
	}
	return nil
}

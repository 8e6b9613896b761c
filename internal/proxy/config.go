// Package proxy sends jobs through operators' upstream proxies: the pools
// of the tenants file and PAGEFLEET_PROXIES_FILE (Directory), the choice
// of a proxy across the fleet — rotation, health, blocks (Picker) — the
// local guard listener Chrome talks to for each upstream (Exits), and the
// detection of blocked responses (Detect).
package proxy

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/internal/tenant"
)

// Pool is one named list of upstream proxies.
type Pool struct {
	Name    string
	Proxies []*egress.Upstream
}

// Set is what one tenant may use: its pools (the file's, with the
// tenant's own on top), its default pool and its rotation.
type Set struct {
	Default  string
	Rotation string
	pools    map[string]*Pool
}

// Pool returns the pool called name, or nil.
func (s *Set) Pool(name string) *Pool {
	if s == nil {
		return nil
	}
	return s.pools[name]
}

// Names lists the pool names, sorted.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.pools))
	for n := range s.pools {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Directory holds every tenant's Set.
type Directory struct {
	global *Set
	sets   map[string]*Set
	all    []*egress.Upstream
}

// LoadFile reads PAGEFLEET_PROXIES_FILE ("" gives nil): a YAML file with
// one "proxies:" block, shaped as in the tenants file.
func LoadFile(path string) (*tenant.Proxies, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("PAGEFLEET_PROXIES_FILE: %w", err)
	}
	var f struct {
		Proxies *tenant.Proxies `yaml:"proxies"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("PAGEFLEET_PROXIES_FILE %s: %s", path, scrubYAML(err))
	}
	if f.Proxies == nil {
		return nil, fmt.Errorf("PAGEFLEET_PROXIES_FILE %s: no proxies: block", path)
	}
	if err := f.Proxies.Validate("PAGEFLEET_PROXIES_FILE"); err != nil {
		return nil, err
	}
	return f.Proxies, nil
}

// scrubYAML keeps a YAML error's position and drops the quoted value,
// which may be a proxy URL with its password.
func scrubYAML(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "`"); i >= 0 {
		return msg[:i] + "(value not shown)"
	}
	return msg
}

// Load reads PAGEFLEET_PROXIES_FILE (path, may be "") and builds the
// directory with the tenants' own pools.
func Load(path string, tenants []*tenant.Tenant) (*Directory, error) {
	file, err := LoadFile(path)
	if err != nil {
		return nil, err
	}
	return Build(file, tenants)
}

// Build makes the directory from the proxies file (may be nil) and the
// tenants. Errors name the tenant, pool and proxy id, never a URL.
func Build(file *tenant.Proxies, tenants []*tenant.Tenant) (*Directory, error) {
	d := &Directory{sets: map[string]*Set{}}
	byURL := map[string]*egress.Upstream{}
	pools := func(where string, c *tenant.Proxies) (map[string]*Pool, error) {
		out := map[string]*Pool{}
		if c == nil {
			return out, nil
		}
		for name, urls := range c.Pools {
			p := &Pool{Name: name}
			for i, raw := range urls {
				id := name + "-" + strconv.Itoa(i+1)
				key := where + "\x00" + id + "\x00" + raw
				up, ok := byURL[key]
				if !ok {
					var err error
					up, err = egress.ParseUpstream(name, id, raw)
					if err != nil {
						return nil, fmt.Errorf("%s: pool %s: %w", where, name, err)
					}
					byURL[key] = up
					d.all = append(d.all, up)
				}
				p.Proxies = append(p.Proxies, up)
			}
			out[name] = p
		}
		return out, nil
	}
	gp, err := pools("PAGEFLEET_PROXIES_FILE", file)
	if err != nil {
		return nil, err
	}
	d.global = &Set{Rotation: "round_robin", pools: gp}
	if file != nil {
		d.global.Default = file.DefaultPool
		if file.Rotation != "" {
			d.global.Rotation = file.Rotation
		}
	}
	if def := d.global.Default; def != "" && gp[def] == nil {
		return nil, fmt.Errorf("PAGEFLEET_PROXIES_FILE: default_pool %q is not a pool", def)
	}
	for _, t := range tenants {
		if t.Proxies == nil {
			continue
		}
		where := fmt.Sprintf("PAGEFLEET_TENANTS_FILE: tenant %q", t.ID)
		own, err := pools(where, t.Proxies)
		if err != nil {
			return nil, err
		}
		s := &Set{Default: d.global.Default, Rotation: d.global.Rotation, pools: map[string]*Pool{}}
		for n, p := range gp {
			s.pools[n] = p
		}
		for n, p := range own {
			s.pools[n] = p
		}
		if t.Proxies.DefaultPool != "" {
			s.Default = t.Proxies.DefaultPool
		}
		if t.Proxies.Rotation != "" {
			s.Rotation = t.Proxies.Rotation
		}
		if s.Default != "" && s.pools[s.Default] == nil {
			return nil, fmt.Errorf("%s: proxies.default_pool %q is not a pool", where, s.Default)
		}
		d.sets[t.ID] = s
	}
	return d, nil
}

// For returns the tenant's set (the file's when the tenant has no pools of
// its own).
func (d *Directory) For(tenantID string) *Set {
	if d == nil {
		return nil
	}
	if s, ok := d.sets[tenantID]; ok {
		return s
	}
	return d.global
}

// Upstreams lists every configured proxy once.
func (d *Directory) Upstreams() []*egress.Upstream {
	if d == nil {
		return nil
	}
	return d.all
}

// Empty reports whether no proxy is configured at all.
func (d *Directory) Empty() bool { return d == nil || len(d.all) == 0 }

package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pagefleet/pagefleet/internal/tenant"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "proxies.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadAndOverride(t *testing.T) {
	path := writeFile(t, `proxies:
  default_pool: dc
  rotation: least_used
  pools:
    dc: ["http://u:p@10.0.0.1:3128", "socks5://u:p@10.0.0.2:1080"]
    resi: ["https://u:p@gw.example:8000"]
`)
	own := &tenant.Tenant{ID: "acme", Proxies: &tenant.Proxies{Rotation: "random",
		Pools: map[string][]string{"dc": {"http://a:b@10.9.9.9:1"}}}}
	plain := &tenant.Tenant{ID: "globex"}
	d, err := Load(path, []*tenant.Tenant{own, plain})
	if err != nil {
		t.Fatal(err)
	}
	g := d.For("globex")
	if g.Default != "dc" || g.Rotation != "least_used" || len(g.Pool("dc").Proxies) != 2 || g.Pool("resi") == nil {
		t.Fatalf("globex: %+v %v", g, g.Names())
	}
	if ids := []string{g.Pool("dc").Proxies[0].ID, g.Pool("dc").Proxies[1].ID}; ids[0] != "dc-1" || ids[1] != "dc-2" {
		t.Fatalf("ids %v", ids)
	}
	a := d.For("acme")
	if a.Default != "dc" || a.Rotation != "random" || len(a.Pool("dc").Proxies) != 1 || a.Pool("resi") != g.Pool("resi") {
		t.Fatalf("acme: %+v %v", a, a.Names())
	}
	if n := len(d.Upstreams()); n != 4 {
		t.Fatalf("%d upstreams, want 4", n)
	}
}

func TestLoadErrorsHideCredentials(t *testing.T) {
	for name, body := range map[string]string{
		"bad scheme":   "proxies:\n  pools:\n    dc: [\"ftp://u:topsecret@h:1\"]\n",
		"bad port":     "proxies:\n  pools:\n    dc: [\"http://u:topsecret@h:99999\"]\n",
		"bad yaml":     "proxies:\n  pools:\n    dc: \"http://u:topsecret@h:1\"\n",
		"no default":   "proxies:\n  default_pool: nope\n  pools:\n    dc: [\"http://u:topsecret@h:1\"]\n",
		"bad rotation": "proxies:\n  rotation: sticky\n  pools:\n    dc: [\"http://u:topsecret@h:1\"]\n",
		"unknown key":  "proxies:\n  pool:\n    dc: [\"http://u:topsecret@h:1\"]\n",
	} {
		_, err := Load(writeFile(t, body), nil)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
}

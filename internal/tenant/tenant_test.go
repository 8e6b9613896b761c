package tenant

import (
	"strings"
	"testing"
)

// A tenant's requests_per_second is counted in whole requests per second:
// a fraction (which the per-second gate would round down to 0, no limit at
// all) or a negative number is refused when the tenants file is read; 0
// takes the plan's default.
func TestRequestsPerSecondIsWhole(t *testing.T) {
	for _, tt := range []struct {
		rps  float64
		want float64 // 0: refused
	}{{0, 50}, {1, 1}, {20, 20}, {0.5, 0}, {2.5, 0}, {-1, 0}} {
		r, err := New([]*Tenant{{ID: "acme", Plan: PlanPro, APIKeys: []string{"pf_test_key_rps"}, Limits: Limits{RequestsPerSecond: tt.rps}}})
		switch {
		case tt.want == 0 && (err == nil || !strings.Contains(err.Error(), "requests_per_second")):
			t.Errorf("rps %g: err %v, want an error naming requests_per_second", tt.rps, err)
		case tt.want != 0 && err != nil:
			t.Errorf("rps %g: %v", tt.rps, err)
		case tt.want != 0 && r.byID["acme"].Limits.RequestsPerSecond != tt.want:
			t.Errorf("rps %g: limit %g, want %g", tt.rps, r.byID["acme"].Limits.RequestsPerSecond, tt.want)
		}
	}
}

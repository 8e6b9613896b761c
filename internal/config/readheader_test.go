package config

import (
	"testing"
	"time"
)

func TestReadHeaderTimeout(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
		bad  bool
	}{{"", 10 * time.Second, false}, {"1s", time.Second, false}, {"250ms", 250 * time.Millisecond, false}, {"5ms", 0, true}, {"soon", 0, true}} {
		c, err := Load(func(k string) (string, bool) {
			if k == "PAGEFLEET_READ_HEADER_TIMEOUT" && tc.v != "" {
				return tc.v, true
			}
			return "", false
		})
		if (err != nil) != tc.bad || (!tc.bad && c.ReadHeaderTimeout != tc.want) {
			t.Errorf("PAGEFLEET_READ_HEADER_TIMEOUT=%q: %v, %v", tc.v, c, err)
		}
	}
}

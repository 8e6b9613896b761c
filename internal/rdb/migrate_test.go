package rdb

import (
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/redistest"
)

// Keys an older pagefleet wrote ("pf:…") are renamed to "{pf}:…" with their
// expiry, once; a key already under the new name is left alone.
func TestMigrateKeyPrefix(t *testing.T) {
	rdb := redistest.Start(t).Client(t, 0)
	ctx := t.Context()
	rdb.HSet(ctx, "pf:job:job_a", "status", "queued", "tenant", "acme")
	rdb.PExpire(ctx, "pf:job:job_a", time.Hour)
	rdb.Set(ctx, "pf:{s:acme:s1}:state", "blob", 0)
	rdb.Set(ctx, "pf:t:acme:active", "7", 0)
	rdb.Set(ctx, "{pf}:t:acme:active", "2", 0) // written by the new version already
	rdb.Set(ctx, "asynq:{default}:pending", "x", 0)

	n, err := MigrateKeyPrefix(ctx, rdb)
	if err != nil || n != 2 {
		t.Fatalf("renamed %d, %v; want 2", n, err)
	}
	if st, _ := rdb.HGet(ctx, "{pf}:job:job_a", "status").Result(); st != "queued" {
		t.Errorf("job record after the rename: %q", st)
	}
	if ttl, _ := rdb.PTTL(ctx, "{pf}:job:job_a").Result(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("the expiry was not kept: %v", ttl)
	}
	if v, _ := rdb.Get(ctx, "{pf}:{s:acme:s1}:state").Result(); v != "blob" {
		t.Errorf("session state after the rename: %q", v)
	}
	if v, _ := rdb.Get(ctx, "{pf}:t:acme:active").Result(); v != "2" {
		t.Errorf("a key the new version wrote was overwritten: %q", v)
	}
	if v, _ := rdb.Get(ctx, "asynq:{default}:pending").Result(); v != "x" {
		t.Errorf("an asynq key was touched")
	}
	rdb.Set(ctx, "pf:job:job_late", "x", 0)
	if n, err := MigrateKeyPrefix(ctx, rdb); err != nil || n != 0 {
		t.Errorf("second run renamed %d, %v; want nothing (it ran once)", n, err)
	}
}

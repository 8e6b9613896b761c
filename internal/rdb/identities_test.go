package rdb_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/internal/redistest"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func TestIdentities(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, 0)
	ctx := context.Background()
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := rdb.NewIdentities(client, rdb.IdentitiesConfig{MaxPerTenant: 3, Now: func() time.Time { return clock }})

	p := &spec.Identity{Name: "de-desktop", Locale: "de-DE", Timezone: "Europe/Berlin", AcceptLanguage: "de-DE,de;q=0.9",
		Viewport: &spec.Viewport{Width: 1280, Height: 800}, Headers: map[string]string{"X-A": "1"}}
	created, err := s.Put(ctx, "acme", p)
	if err != nil || !created {
		t.Fatalf("put: %v %v", created, err)
	}
	if p.CreatedAt.IsZero() || !p.CreatedAt.Equal(p.UpdatedAt) {
		t.Errorf("times: %v %v", p.CreatedAt, p.UpdatedAt)
	}
	got, err := s.Get(ctx, "acme", "de-desktop")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("get %+v, want %+v", got, p)
	}
	if _, err := s.Get(ctx, "globex", "de-desktop"); !errors.Is(err, rdb.ErrIdentityNotFound) {
		t.Errorf("other tenant sees it: %v", err)
	}

	clock = clock.Add(time.Second)
	r := &spec.Identity{Name: "de-desktop", UserAgent: "UA/2"}
	created, err = s.Put(ctx, "acme", r)
	if err != nil || created {
		t.Fatalf("replace: %v %v", created, err)
	}
	got, _ = s.Get(ctx, "acme", "de-desktop")
	if got.UserAgent != "UA/2" || got.Locale != "" || got.Viewport != nil || len(got.Headers) != 0 || got.Headers == nil {
		t.Errorf("replace kept old fields: %+v", got)
	}
	if !got.CreatedAt.Equal(p.CreatedAt) || !got.UpdatedAt.Equal(clock) {
		t.Errorf("replace times: created %v (was %v) updated %v", got.CreatedAt, p.CreatedAt, got.UpdatedAt)
	}

	for _, n := range []string{"b", "a"} {
		if _, err := s.Put(ctx, "acme", &spec.Identity{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, "acme", &spec.Identity{Name: "c"}); !errors.Is(err, rdb.ErrIdentityLimit) {
		t.Errorf("fourth profile: %v, want ErrLimit", err)
	}
	if _, err := s.Put(ctx, "acme", &spec.Identity{Name: "a", Locale: "fr"}); err != nil {
		t.Errorf("replace at the limit: %v", err)
	}

	var names []string
	cursor := ""
	for i := 0; ; i++ {
		page, next, err := s.List(ctx, "acme", cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page {
			names = append(names, p.Name)
		}
		if next == "" {
			break
		}
		cursor = next
		if i > 5 {
			t.Fatal("list does not end")
		}
	}
	if strings.Join(names, ",") != "a,b,de-desktop" {
		t.Errorf("list %v", names)
	}
	if page, next, _ := s.List(ctx, "globex", "", 10); len(page) != 0 || next != "" {
		t.Errorf("other tenant lists %v", page)
	}
	if _, _, err := s.List(ctx, "acme", "bad cursor", 10); !errors.Is(err, rdb.ErrInvalidCursor) {
		t.Errorf("bad cursor: %v", err)
	}

	if err := s.Delete(ctx, "globex", "a"); !errors.Is(err, rdb.ErrIdentityNotFound) {
		t.Errorf("delete by other tenant: %v", err)
	}
	if err := s.Delete(ctx, "acme", "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "acme", "a"); !errors.Is(err, rdb.ErrIdentityNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := s.Get(ctx, "acme", "a"); !errors.Is(err, rdb.ErrIdentityNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if page, _, _ := s.List(ctx, "acme", "", 10); len(page) != 2 {
		t.Errorf("list after delete: %v", page)
	}
	// Keys of one tenant share a hash tag; a tenant id cannot break out of it.
	if _, err := s.Put(ctx, "we}ird:{x", &spec.Identity{Name: "n"}); err != nil {
		t.Fatal(err)
	}
	keys, _ := client.Keys(ctx, "{pf}:{i:we%7Dird%3A%7Bx}:*").Result()
	if len(keys) != 2 {
		t.Errorf("keys of an escaped tenant: %v", keys)
	}
}

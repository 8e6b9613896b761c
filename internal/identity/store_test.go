package identity_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/identity"
	"github.com/pagefleet/pagefleet/internal/redistest"
)

func TestStore(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t, 0)
	ctx := context.Background()
	s := identity.NewStore(rdb, identity.Config{MaxPerTenant: 3})

	p := &identity.Profile{Name: "de-desktop", Locale: "de-DE", Timezone: "Europe/Berlin", AcceptLanguage: "de-DE,de;q=0.9",
		Viewport: &identity.Viewport{Width: 1280, Height: 800}, Headers: map[string]string{"X-A": "1"}}
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
	if _, err := s.Get(ctx, "globex", "de-desktop"); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("other tenant sees it: %v", err)
	}

	time.Sleep(2 * time.Millisecond)
	r := &identity.Profile{Name: "de-desktop", UserAgent: "UA/2"}
	created, err = s.Put(ctx, "acme", r)
	if err != nil || created {
		t.Fatalf("replace: %v %v", created, err)
	}
	got, _ = s.Get(ctx, "acme", "de-desktop")
	if got.UserAgent != "UA/2" || got.Locale != "" || got.Viewport != nil || len(got.Headers) != 0 || got.Headers == nil {
		t.Errorf("replace kept old fields: %+v", got)
	}
	if !got.CreatedAt.Equal(p.CreatedAt) || !got.UpdatedAt.After(p.UpdatedAt) {
		t.Errorf("replace times: created %v (was %v) updated %v", got.CreatedAt, p.CreatedAt, got.UpdatedAt)
	}

	for _, n := range []string{"b", "a"} {
		if _, err := s.Put(ctx, "acme", &identity.Profile{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, "acme", &identity.Profile{Name: "c"}); !errors.Is(err, identity.ErrLimit) {
		t.Errorf("fourth profile: %v, want ErrLimit", err)
	}
	if _, err := s.Put(ctx, "acme", &identity.Profile{Name: "a", Locale: "fr"}); err != nil {
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
	if _, _, err := s.List(ctx, "acme", "bad cursor", 10); !errors.Is(err, identity.ErrInvalidCursor) {
		t.Errorf("bad cursor: %v", err)
	}

	if err := s.Delete(ctx, "globex", "a"); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("delete by other tenant: %v", err)
	}
	if err := s.Delete(ctx, "acme", "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "acme", "a"); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := s.Get(ctx, "acme", "a"); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if page, _, _ := s.List(ctx, "acme", "", 10); len(page) != 2 {
		t.Errorf("list after delete: %v", page)
	}
	// Keys of one tenant share a hash tag; a tenant id cannot break out of it.
	if _, err := s.Put(ctx, "we}ird:{x", &identity.Profile{Name: "n"}); err != nil {
		t.Fatal(err)
	}
	keys, _ := rdb.Keys(ctx, "{pf}:{i:we%7Dird%3A%7Bx}:*").Result()
	if len(keys) != 2 {
		t.Errorf("keys of an escaped tenant: %v", keys)
	}
}

func ExampleStore() {
	// A store on a go-redis client; the API validates and normalizes a
	// profile before it puts it.
	p := identity.Profile{Name: "de-desktop", Locale: "de-DE", Timezone: "Europe/Berlin"}
	if errs := identity.Validate(&p); len(errs) > 0 {
		fmt.Println(errs)
		return
	}
	identity.Normalize(&p)
	fmt.Println(p.Locale, p.AcceptLanguage)
	// Output: de-DE de-DE,de;q=0.9
}

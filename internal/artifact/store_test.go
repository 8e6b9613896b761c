package artifact

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestFileStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	b, err := NewFileBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testRoundTrip(t, ctx, b)
}

// testRoundTrip puts, gets and deletes through a store over b.
func testRoundTrip(t *testing.T, ctx context.Context, b Backend) {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	signer := NewSigner([]byte("0123456789abcdef"), "", func() time.Time { return now })
	s := New(b, Config{TTL: time.Hour, Signer: signer, Now: func() time.Time { return now }})
	a, err := s.Put(ctx, "job_abc", "report (1).pdf", "application/pdf", []byte("%PDF-1.4 hello"))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "job_abc~report__1_.pdf" || a.Size != 14 || a.ContentType != "application/pdf" || !a.ExpiresAt.Equal(now.Add(time.Hour)) || len(a.SHA256) != 64 {
		t.Fatalf("artifact = %+v", a)
	}
	if _, err := s.Put(ctx, "job_abc", "b.txt", "text/plain", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "job_other", "c.txt", "text/plain", []byte("three")); err != nil {
		t.Fatal(err)
	}
	rc, o, err := s.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "%PDF-1.4 hello" || o.ContentType != "application/pdf" || o.SHA256 != a.SHA256 || o.Size != 14 {
		t.Fatalf("got %q %+v", got, o)
	}
	u, err := url.Parse(a.URL)
	if err != nil || u.Path != "/v1/artifacts/"+a.ID {
		t.Fatalf("url %q", a.URL)
	}
	if err := signer.Verify(a.ID, u.Query().Get("expires"), u.Query().Get("sig")); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := s.DeleteJob(ctx, "job_abc"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if _, _, err := s.Get(ctx, "job_abc~b.txt"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if b, err := s.Bytes(ctx, "job_other~c.txt"); err != nil || string(b) != "three" {
		t.Fatalf("other job's artifact: %q %v", b, err)
	}
	if err := s.DeleteJob(ctx, "job_abc"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestSignerVerify(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewSigner([]byte("0123456789abcdef"), "https://x.example/", func() time.Time { return now })
	link := s.URL("job_a~x.png", time.Unix(2000, 0))
	if !strings.HasPrefix(link, "https://x.example/v1/artifacts/job_a~x.png?") {
		t.Fatalf("link %q", link)
	}
	sig := s.Sign("job_a~x.png", time.Unix(2000, 0))
	for _, tc := range []struct {
		name, id, exp, sig string
		want               error
	}{
		{"valid", "job_a~x.png", "2000", sig, nil},
		{"other id", "job_b~x.png", "2000", sig, ErrBadSignature},
		{"moved expiry", "job_a~x.png", "3000", sig, ErrBadSignature},
		{"no signature", "job_a~x.png", "2000", "", ErrBadSignature},
		{"bad expiry", "job_a~x.png", "x", sig, ErrBadSignature},
		{"expired", "job_a~x.png", "900", s.Sign("job_a~x.png", time.Unix(900, 0)), ErrLinkExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Verify(tc.id, tc.exp, tc.sig); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	other := NewSigner([]byte("another secret!!"), "", nil)
	if err := other.Verify("job_a~x.png", "2000", sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other secret: %v", err)
	}
}

func TestParseID(t *testing.T) {
	for _, id := range []string{"", "job", "job~", "~x", "a/b~x", "job~.x", "job~a/b", "job~" + strings.Repeat("x", 129)} {
		if _, _, err := ParseID(id); err == nil {
			t.Errorf("ParseID(%q) accepted", id)
		}
	}
	if j, n, err := ParseID("job_1~shot.png"); err != nil || j != "job_1" || n != "shot.png" {
		t.Errorf("ParseID = %q %q %v", j, n, err)
	}
}

// memIndex is an in-memory DueIndex for the reaper's test.
type memIndex struct{ due map[string]time.Time }

func (m *memIndex) Track(_ context.Context, id string, until time.Time) error {
	if until.After(m.due[id]) {
		m.due[id] = until
	}
	return nil
}

func (m *memIndex) Due(_ context.Context, now time.Time, n int) ([]string, error) {
	var out []string
	for id, t := range m.due {
		if !t.After(now) && len(out) < n {
			out = append(out, id)
		}
	}
	return out, nil
}

func (m *memIndex) Forget(_ context.Context, id string) error { delete(m.due, id); return nil }

func TestReaperDeletesExpiredJobs(t *testing.T) {
	ctx := context.Background()
	b, err := NewFileBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	idx := &memIndex{due: map[string]time.Time{}}
	s := New(b, Config{TTL: time.Minute, Index: idx, Now: func() time.Time { return now }})
	old, _ := s.Put(ctx, "job_old", "a.png", "image/png", []byte("old"))
	now = now.Add(30 * time.Second)
	young, _ := s.Put(ctx, "job_young", "a.png", "image/png", []byte("young"))
	r := &Reaper{Store: s, Index: idx, Now: func() time.Time { return time.Unix(1000, 0).Add(61 * time.Second) }}
	if n, err := r.ReapOnce(ctx); n != 1 || err != nil {
		t.Fatalf("ReapOnce = %d, %v", n, err)
	}
	if _, err := s.Bytes(ctx, old.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the expired job's artifact: %v", err)
	}
	if b, err := s.Bytes(ctx, young.ID); err != nil || string(b) != "young" {
		t.Errorf("the young job's artifact: %q %v", b, err)
	}
	if _, ok := idx.due["job_old"]; ok {
		t.Error("the reaped job is still indexed")
	}
}

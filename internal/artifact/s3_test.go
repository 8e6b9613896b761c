package artifact

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/pagefleet/pagefleet/internal/s3test"
)

// TestS3StoreRoundTrip runs the store over a real S3-compatible server.
func TestS3StoreRoundTrip(t *testing.T) {
	srv := s3test.Start(t, "art")
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	u, err := url.Parse(srv.URL("art", "pf/x"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewS3Backend(u)
	if err != nil {
		t.Fatal(err)
	}
	testRoundTrip(t, context.Background(), b)
	// The objects lay under the prefix; the deleted job's are gone.
	if _, err := os.Stat(filepath.Join(srv.Root, "art", "pf", "x", "job_other", "c.txt")); err != nil {
		t.Fatalf("object of job_other not under the prefix: %v", err)
	}
	if _, err := os.Stat(filepath.Join(srv.Root, "art", "pf", "x", "job_abc")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(srv.Root, "art", "pf", "x", "job_abc"))
		if len(entries) > 0 {
			t.Fatalf("job_abc still has %d objects", len(entries))
		}
	}
}

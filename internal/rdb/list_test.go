package rdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/redistest"
)

// TestListPagesThroughTies checks that paging through the tenant's jobs
// lists each job once, newest first, when many share one creation time (the
// jobs of a batch, or a burst of submits within a microsecond), also when
// there are more of them than a page, and that a batch's jobs keep their
// order through JobRecord.ListOrder.
func TestListPagesThroughTies(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t, 0)
	s := NewJobs(rdb, time.Hour)
	at := time.Now().Add(-time.Minute)
	pipe := rdb.Pipeline()
	// 9 jobs created in one microsecond, then a batch of 25 a second later
	for i := range 9 {
		s.Create(ctx, pipe, JobRecord{ID: fmt.Sprintf("job_tie%02d", i), Tenant: "acme", Kind: "fetch", URL: "http://a.test/", CreatedAt: at})
	}
	for i := range 25 {
		s.Create(ctx, pipe, JobRecord{ID: fmt.Sprintf("job_b%02d", i), Tenant: "acme", Kind: "fetch", URL: "http://a.test/",
			CreatedAt: at.Add(time.Second), BatchID: "bat_b", ListOrder: i})
	}
	s.Create(ctx, pipe, JobRecord{ID: "job_other", Tenant: "globex", Kind: "fetch", URL: "http://a.test/", CreatedAt: at})
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2, 7, 100} {
		var order []string
		seen := map[string]bool{}
		cursor := ""
		for page := 0; ; page++ {
			if page > 100 {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			jobs, next, err := s.List(ctx, "acme", "", cursor, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(jobs) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(jobs))
			}
			for _, j := range jobs {
				if seen[j.ID] {
					t.Fatalf("limit %d: %s listed twice", limit, j.ID)
				}
				seen[j.ID] = true
				order = append(order, j.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if len(order) != 34 {
			t.Fatalf("limit %d: listed %d jobs, want 34: %v", limit, len(order), order)
		}
		// newest first: the batch (its last job first), then the tied jobs
		for i := range 25 {
			if want := fmt.Sprintf("job_b%02d", 24-i); order[i] != want {
				t.Fatalf("limit %d: place %d is %s, want %s", limit, i, order[i], want)
			}
		}
	}
	// A status filter pages through the same ties.
	if _, err := s.Cancel(ctx, "acme", "job_tie04"); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := s.List(ctx, "acme", "cancelled", "", 5)
	if err != nil || len(jobs) != 1 || jobs[0].ID != "job_tie04" {
		t.Fatalf("status filter: %v %v", jobs, err)
	}
	// A cursor of the earlier format (a bare score) still reads as "older
	// than that score".
	old := strconv.FormatInt(at.Add(time.Second).UnixMicro(), 10)
	jobs, _, err = s.List(ctx, "acme", "", old, 100)
	if err != nil || len(jobs) != 9 {
		t.Fatalf("bare-score cursor listed %d jobs (%v), want the 9 older ones", len(jobs), err)
	}
	for _, c := range []string{"x", "-5", "12.", "12.bat_x", "12.job_x"} {
		_, _, err := s.List(ctx, "acme", "", c, 5)
		if want := c == "12.job_x"; (err == nil) != want || (err != nil && !errors.Is(err, ErrInvalidCursor)) {
			t.Errorf("cursor %q: err %v, want valid %v", c, err, want)
		}
	}
}

package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// renewEvery renews on its interval, keeps going when the job's context
// ends, and stops (waiting for a call in progress) only when told.
func TestRenewEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	var inCall atomic.Bool
	stop := renewEvery(ctx, 20*time.Millisecond, func(rctx context.Context) {
		inCall.Store(true)
		defer inCall.Store(false)
		calls.Add(1)
		if _, ok := rctx.Deadline(); !ok {
			t.Error("a renewal call has no deadline")
		}
		select {
		case <-rctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	})
	time.Sleep(110 * time.Millisecond)
	cancel() // the job's context ends: the lease is still renewed
	n := calls.Load()
	if n < 2 {
		t.Fatalf("%d renewals in 110 ms at a 20 ms interval", n)
	}
	time.Sleep(80 * time.Millisecond)
	if calls.Load() <= n {
		t.Fatal("renewals stopped when the job's context ended")
	}
	stop()
	if inCall.Load() {
		t.Fatal("stop returned while a renewal ran")
	}
	after := calls.Load()
	time.Sleep(60 * time.Millisecond)
	if calls.Load() != after {
		t.Fatal("renewals went on after stop")
	}
}

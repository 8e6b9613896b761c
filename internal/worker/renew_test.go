package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// renewEvery renews on its interval, keeps going when the job's context
// ends, and stops (waiting for a call in progress) only when told. It runs
// on synctest's clock, so the counts are exact.
func TestRenewEvery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
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
		time.Sleep(110 * time.Millisecond) // renewals at 20, 40, 60, 80, 100 ms
		if n := calls.Load(); n != 5 {
			t.Fatalf("%d renewals in 110 ms at a 20 ms interval, want 5", n)
		}
		cancel()                          // the job's context ends: the lease is still renewed
		time.Sleep(92 * time.Millisecond) // 120, 140, 160, 180, 200 (running until 205)
		synctest.Wait()
		if n := calls.Load(); n != 10 || !inCall.Load() {
			t.Fatalf("after the job's context ended: %d renewals (in a call: %v), want 10, one running", n, inCall.Load())
		}
		stop()
		if inCall.Load() {
			t.Fatal("stop returned while a renewal ran")
		}
		time.Sleep(time.Second)
		if n := calls.Load(); n != 10 {
			t.Fatalf("renewals went on after stop: %d", n)
		}
	})
}

package worker

import (
	"context"
	"time"
)

// renewEvery calls renew every interval, each call bounded to 5 s, until
// stop is called; stop waits for a call in progress. The loop outlives the
// cancellation of ctx (a job's context: its slot stays held until the job
// gives it back) but not stop, which cancels the context of a call in
// progress: renew should not report a context.Canceled error.
func renewEvery(ctx context.Context, every time.Duration, renew func(context.Context)) (stop func()) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				rctx, rcancel := context.WithTimeout(hctx, 5*time.Second)
				renew(rctx)
				rcancel()
			}
		}
	}()
	return func() { cancel(); <-done }
}

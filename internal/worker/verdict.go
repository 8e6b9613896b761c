package worker

import "github.com/pagefleet/pagefleet/pkg/spec"

// verdict is what the end of a turn does with a job and its task.
type verdict int

const (
	// finish writes the attempt's outcome (succeeded, or failed for good)
	// and ends the task.
	finish verdict = iota
	// retry puts the job back to queued and returns the attempt's error to
	// asynq, which counts a failure and runs the task again later.
	retry
	// handBack puts the job back to queued without a failure: the worker
	// is stopping, and asynq requeues the task.
	handBack
	// cancelled: the user cancelled the job while it ran (the cancel wrote
	// the record); the task ends.
	cancelled
	// abandon writes nothing: the session lease was lost, so a newer holder
	// may run the session; the task's error makes asynq run it again.
	abandon
)

func (v verdict) String() string {
	return [...]string{"finish", "retry", "hand back", "cancelled", "abandon"}[v]
}

// facts are what an attempt learned while it ran.
type facts struct {
	// err is the attempt's error; nil when it produced its result.
	err *spec.Error
	// cancelled: the user cancelled the job while it ran.
	cancelled bool
	// stopping: the worker drained it at the end of its grace period.
	stopping bool
	// shutdown: asynq cancelled the task's context (the server stopped).
	shutdown bool
	// leaseLost: the session lease was lost while the job ran.
	leaseLost bool
	// saved: the session state was saved (the attempt's work is kept).
	saved bool
	// final: this is the task's last attempt.
	final bool
}

// decide is the verdict of an attempt. An attempt that produced its result
// is finished whatever happened around it (only a cancel by the user
// overrides it); one that failed is handed back when the worker stops,
// abandoned when its session lease went, retried when its error is
// transient and attempts are left, and failed for good otherwise.
func decide(f facts) verdict {
	switch {
	case f.cancelled:
		return cancelled
	case f.err == nil:
		return finish
	case f.stopping:
		return handBack
	case f.leaseLost && !f.saved:
		return abandon
	case f.shutdown && !f.final:
		return handBack
	case f.err.Retryable && !f.final:
		return retry
	}
	return finish
}

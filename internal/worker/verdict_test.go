package worker

import (
	"testing"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

func TestDecide(t *testing.T) {
	transient := spec.Errorf(spec.CodeTimeout, true, "timeout")
	permanent := spec.Errorf(spec.CodeActionFailed, false, "no such element")
	for _, tt := range []struct {
		name string
		f    facts
		want verdict
	}{
		{"succeeded", facts{}, finish},
		{"succeeded on the last attempt", facts{final: true}, finish},
		{"succeeded while the worker stops", facts{stopping: true, shutdown: true}, finish},
		{"succeeded, lease lost after the save", facts{leaseLost: true, saved: true}, finish},
		{"cancelled by the user", facts{cancelled: true, err: transient}, cancelled},
		{"cancelled after it produced its result", facts{cancelled: true}, cancelled},
		{"cancelled while the worker stops", facts{cancelled: true, stopping: true, err: transient}, cancelled},
		{"drained at the end of the grace period", facts{stopping: true, err: transient}, handBack},
		{"drained on its last attempt", facts{stopping: true, err: transient, final: true}, handBack},
		{"drained with a permanent error", facts{stopping: true, err: permanent}, handBack},
		{"lease lost, nothing saved", facts{leaseLost: true, err: transient}, abandon},
		{"lease lost on the last attempt", facts{leaseLost: true, err: permanent, final: true}, abandon},
		{"lease lost after the save", facts{leaseLost: true, saved: true, err: permanent}, finish},
		{"asynq shut down", facts{shutdown: true, err: transient}, handBack},
		{"asynq shut down on the last attempt", facts{shutdown: true, err: transient, final: true}, finish},
		{"transient error", facts{err: transient}, retry},
		{"transient error on the last attempt", facts{err: transient, final: true}, finish},
		{"permanent error", facts{err: permanent}, finish},
	} {
		if got := decide(tt.f); got != tt.want {
			t.Errorf("%s: decide(%+v) = %v, want %v", tt.name, tt.f, got, tt.want)
		}
	}
}

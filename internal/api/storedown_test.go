package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Errors met while Redis is down or going down answer 503, not 500: asynq
// passes its Redis errors on as text, and a stopping Redis ends the commands
// in flight with EOF.
func TestIsStoreDown(t *testing.T) {
	for _, c := range []struct {
		err  error
		down bool
	}{
		{io.EOF, true},
		{fmt.Errorf("enqueue: %w", io.ErrUnexpectedEOF), true},
		{errors.New("UNKNOWN: redis eval error: EOF"), true},
		{errors.New("INTERNAL_ERROR: redis eval error: read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"), true},
		{errors.New("redis eval error: write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe"), true},
		{errors.New("redis eval error: dial tcp 127.0.0.1:2: i/o timeout"), true},
		{syscall.ECONNREFUSED, true},
		{context.DeadlineExceeded, true},
		{redis.ErrPoolTimeout, true},
		{errors.New("LOADING Redis is loading the dataset in memory"), true},
		{redis.Nil, false},
		{errors.New("job already ended"), false},
		{nil, false},
	} {
		if got := isStoreDown(c.err); got != c.down {
			t.Errorf("isStoreDown(%v) = %v, want %v", c.err, got, c.down)
		}
	}
}

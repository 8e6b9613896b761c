// Package proctest builds and runs the pagefleet binaries (cmd/api and
// cmd/worker) as real processes, for the end-to-end tests, the Go client's
// examples and the benchmarks: start one, wait until its /readyz answers,
// read its log, and stop it with a signal, killing its whole process group
// (Chrome included) when it does not exit in time.
package proctest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles cmd/api and cmd/worker into dir as "api" and "worker",
// with the build tags given.
func Build(dir string, tags ...string) error {
	for _, b := range []string{"api", "worker"} {
		args := []string{"build"}
		if len(tags) > 0 {
			args = append(args, "-tags", strings.Join(tags, ","))
		}
		args = append(args, "-o", filepath.Join(dir, b), "github.com/pagefleet/pagefleet/cmd/"+b)
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", b, err)
		}
	}
	return nil
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Options describe a process to start.
type Options struct {
	Name string   // for messages: "api", "worker0", …
	Bin  string   // the binary
	Env  []string // its whole environment
	// Addr is where it serves /readyz (its PAGEFLEET_API_ADDR or
	// PAGEFLEET_WORKER_ADDR).
	Addr string
	// Ready bounds the wait for /readyz to answer 200 (default 30 s).
	Ready time.Duration
	// KillWithParent asks the kernel to kill the process when the thread
	// that started it dies (for a TestMain that may be killed itself).
	KillWithParent bool
}

// Proc is a running binary.
type Proc struct {
	Name string
	Addr string
	Cmd  *exec.Cmd
	log  lockedBuffer
	done chan struct{}
}

// Start starts the process in a process group of its own and waits until
// its /readyz answers 200. A process that exits or is not ready in time is
// an error (with the tail of its log); the latter is killed.
func Start(o Options) (*Proc, error) {
	p := &Proc{Name: o.Name, Addr: o.Addr, done: make(chan struct{})}
	p.Cmd = exec.Command(o.Bin)
	p.Cmd.Env = o.Env
	p.Cmd.Stdout, p.Cmd.Stderr = &p.log, &p.log
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.KillWithParent {
		p.Cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Name, err)
	}
	go func() { p.Cmd.Wait(); close(p.done) }()
	ready := o.Ready
	if ready == 0 {
		ready = 30 * time.Second
	}
	deadline := time.Now().Add(ready)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start:\n%s", o.Name, p.Tail(4000))
		default:
		}
		if resp, err := http.Get("http://" + o.Addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Stop(syscall.SIGKILL, time.Second)
	return nil, fmt.Errorf("%s not ready within %v:\n%s", o.Name, ready, p.Tail(4000))
}

// PID is the process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Log is everything the process wrote to stdout and stderr so far.
func (p *Proc) Log() string { return p.log.String() }

// Tail is the last n bytes of Log.
func (p *Proc) Tail(n int) string {
	s := p.log.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// ErrStuck is returned by Stop for a process that did not exit within the
// timeout after its signal (its group was then killed).
var ErrStuck = errors.New("did not exit in time")

// Stop sends sig to the process and waits for it to exit, at most timeout;
// then it kills the whole process group. After SIGKILL the group is killed
// too: a killed worker cannot stop its Chrome. A nil p, or one that
// already exited, is a no-op.
func (p *Proc) Stop(sig syscall.Signal, timeout time.Duration) error {
	if p == nil || p.Cmd.Process == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.Cmd.Process.Signal(sig)
	var err error
	select {
	case <-p.done:
	case <-time.After(timeout):
		err = fmt.Errorf("%s: %w (%v after %v)", p.Name, ErrStuck, timeout, sig)
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.done
	}
	if sig == syscall.SIGKILL {
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	}
	return err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

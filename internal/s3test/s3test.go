// Package s3test starts a real S3-compatible server for tests: Versity's
// S3 gateway (versitygw, Apache 2.0) over a temporary directory, built
// from its Go module (a tool of this module: `go tool versitygw`), on a
// free loopback port. It is stopped when the test ends. Nothing in the
// binaries imports it.
package s3test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the versitygw release the tool directive in go.mod names.
const Version = "v1.8.0"

// Credentials of the root user of every server.
const (
	AccessKey = "pagefleettest"
	SecretKey = "pagefleettest-secret-key"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is "http://127.0.0.1:port".
	Endpoint string
	// Root is the directory whose subdirectories are its buckets.
	Root string
	cmd  *exec.Cmd
	done chan struct{}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// build compiles versitygw once per machine (kept under os.TempDir() by
// version): test binaries of several packages that start at once take a
// lock, and the later ones find the first one's build.
func build() (string, error) {
	buildOnce.Do(func() {
		binPath = filepath.Join(os.TempDir(), "pagefleet-versitygw-"+Version)
		lock, err := os.OpenFile(binPath+".lock", os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			buildErr = err
			return
		}
		defer lock.Close()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			buildErr = err
			return
		}
		defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		if fi, err := os.Stat(binPath); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			return
		}
		tmp := fmt.Sprintf("%s.%d", binPath, os.Getpid())
		cmd := exec.Command("go", "build", "-o", tmp, "github.com/versity/versitygw/cmd/versitygw")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("build versitygw: %w", err)
			return
		}
		buildErr = os.Rename(tmp, binPath)
	})
	return binPath, buildErr
}

// Start builds (once) and starts a server for tb, with a bucket per name
// in buckets, and stops it when tb ends.
func Start(tb testing.TB, buckets ...string) *Server {
	tb.Helper()
	bin, err := build()
	if err != nil {
		tb.Fatalf("s3test: %v", err)
	}
	dir := tb.TempDir()
	s := &Server{Root: filepath.Join(dir, "data"), done: make(chan struct{})}
	side := filepath.Join(dir, "meta")
	for _, d := range []string{s.Root, side} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for _, b := range buckets {
		if err := os.MkdirAll(filepath.Join(s.Root, b), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s.Endpoint = "http://" + addr
	logf, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		tb.Fatal(err)
	}
	s.cmd = exec.Command(bin, "--port", addr, "--access", AccessKey, "--secret", SecretKey,
		"--quiet", "--health", "/health", "posix", "--sidecar", side, s.Root)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("s3test: start versitygw: %v", err)
	}
	go func() { _ = s.cmd.Wait(); logf.Close(); close(s.done) }()
	tb.Cleanup(s.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		resp, err := http.Get(s.Endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "versitygw.log"))
			tb.Fatalf("s3test: versitygw exited at start:\n%s", log)
		case <-ctx.Done():
			tb.Fatalf("s3test: versitygw not healthy within 30 s: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Env is the environment that gives a process the server's credentials
// (the MinIO and AWS clients read it).
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey}
}

// URL is a PAGEFLEET_ARTIFACTS_URL for bucket and prefix on the server.
func (s *Server) URL(bucket, prefix string) string {
	return "s3://" + bucket + "/" + prefix + "?endpoint=" + s.Endpoint
}

func (s *Server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

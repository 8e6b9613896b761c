// Package redistest starts a real redis-server on a free loopback port for
// tests and stops it when the test ends. A missing redis-server fails the test
// (it never skips): CI installs it, and so does `make test`.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	Addr   string
	Dir    string
	cmd    *exec.Cmd
	port   int
	aof    bool
	extra  []string // more redis-server arguments
	exited chan struct{}
}

// Start starts redis-server for tb (AOF persistence on, data in a temp dir)
// and registers its stop with tb.Cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{Dir: tb.TempDir(), aof: true}
	var err error
	for try := 0; try < 3; try++ { // another process may take the free port first
		if err = s.start(0); err == nil {
			break
		}
		s.Kill()
	}
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartDir starts redis-server with its data in dir, for code that has no
// testing.TB (a TestMain that serves a package's examples); the caller
// stops it with Stop.
func StartDir(dir string) (*Server, error) {
	s := &Server{Dir: dir, aof: true}
	var err error
	for try := 0; try < 3; try++ {
		if err = s.start(0); err == nil {
			return s, nil
		}
		s.Kill()
	}
	return nil, fmt.Errorf("redistest: %w", err)
}

// URL is the redis:// URL of database db.
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr, db) }

// Client returns a go-redis client for database db, closed at cleanup.
func (s *Server) Client(tb testing.TB, db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DB: db})
	tb.Cleanup(func() { c.Close() })
	return c
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start(port int) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not found on PATH (apt-get install -y redis-server): %w", err)
	}
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	s.port = port
	s.Addr = "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction",
		"--databases", "64"}
	args = append(args, s.extra...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, _ := os.Create(filepath.Join(s.Dir, "redis.log"))
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	s.exited = exited
	cmd := s.cmd
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start on %s (log: %s)", s.Addr, tail(filepath.Join(s.Dir, "redis.log")))
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		} else {
			c.Close()
		}
		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		err := c.Ping(context.Background()).Err()
		c.Close()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer within 10s (log: %s)", s.Addr, tail(filepath.Join(s.Dir, "redis.log")))
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		last = sc.Text()
	}
	return last
}

// Stop stops the server (SIGTERM, then SIGKILL) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Kill stops the server with SIGKILL (a crash).
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	if s.exited != nil {
		<-s.exited
	}
	s.cmd = nil
}

// Restart stops the server and starts it again on the same port and data
// directory (the AOF brings the data back).
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	if err := s.start(s.port); err != nil {
		tb.Fatalf("redistest restart: %v", err)
	}
}

// Cluster is a Redis Cluster of running redis-servers.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n (at least 3) redis-servers in cluster mode, joins
// them into one cluster of n masters with redis-cli, waits until every node
// reports the cluster ok, and registers their stop with tb.Cleanup.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	return startCluster(tb, n, 0, 5000)
}

// StartClusterWithReplicas starts a cluster of masters (at least 3), each
// with one replica, whose nodes declare a peer failed after 2 s without an
// answer (cluster-node-timeout), so that a replica takes over a killed
// master within seconds. It returns once every replica is in sync.
func StartClusterWithReplicas(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	c := startCluster(tb, 2*masters, 1, 2000)
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		for {
			info, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "info", "replication").Output()
			if err == nil && (bytes.Contains(info, []byte("role:master")) || bytes.Contains(info, []byte("master_link_status:up"))) {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("redistest: node %s: replica not in sync within 30s: %s", s.Addr, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// MasterOf returns the node that is the master of key's hash slot now, as
// the cluster (asked through any live node) sees it, or nil.
func (c *Cluster) MasterOf(tb testing.TB, key string) *Server {
	tb.Helper()
	for _, s := range c.Nodes {
		port := strconv.Itoa(s.port)
		slotOut, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", port, "cluster", "keyslot", key).Output()
		if err != nil {
			continue
		}
		slot, err := strconv.Atoi(strings.TrimSpace(string(slotOut)))
		if err != nil {
			continue
		}
		nodes, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", port, "cluster", "nodes").Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(nodes), "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && a <= slot && slot <= b {
					for _, n := range c.Nodes {
						if n.Addr == addr {
							return n
						}
					}
				}
			}
		}
		return nil
	}
	return nil
}

func startCluster(tb testing.TB, n, replicas, nodeTimeoutMs int) *Cluster {
	tb.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatalf("redistest: redis-cli not found on PATH (it comes with redis-server): %v", err)
	}
	c := &Cluster{}
	addrs := []string{"--cluster", "create"}
	for i := 0; i < n; i++ {
		s := &Server{Dir: tb.TempDir(), aof: true, extra: []string{"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", strconv.Itoa(nodeTimeoutMs)}}
		for try := 0; try < 5; try++ {
			// A cluster node also listens on its port + 10000 (the
			// cluster bus), so its port must be at most 55535.
			var port int
			if port, err = clusterPort(); err != nil {
				break
			}
			if err = s.start(port); err == nil {
				break
			}
			s.Kill()
		}
		if err != nil {
			tb.Fatalf("redistest: cluster node %d: %v", i, err)
		}
		tb.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr)
	}
	out, err := exec.Command(cli, append(addrs, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")...).CombinedOutput()
	if err != nil {
		tb.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		for {
			info, err := exec.Command(cli, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "cluster", "info").Output()
			if err == nil && bytes.Contains(info, []byte("cluster_state:ok")) {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("redistest: node %s: cluster not ok within 30s: %s", s.Addr, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// URL is the redis-cluster:// URL of the cluster, naming one node: a
// cluster client learns the others from it.
func (c *Cluster) URL() string { return "redis-cluster://" + c.Nodes[0].Addr }

// clusterPort returns a free port p ≤ 55535 whose bus port p+10000 is free
// too.
func clusterPort() (int, error) {
	for try := 0; try < 100; try++ {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		if p > 55535 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free port pair for a cluster node")
}

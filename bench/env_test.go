package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/internal/proctest"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// benchKey is the API key of the benchmark's tenant (dev, plan enterprise).
const benchKey = "pf_bench_key_0123456789"

// env is one running pagefleet: a dedicated redis-server, the api and one
// worker, built from this tree (with the pprof build tag, so that
// PAGEFLEET_PPROF_ADDR serves net/http/pprof).
type env struct {
	dir         string
	redisAddr   string
	redis       *exec.Cmd
	rdb         *redis.Client
	api, worker *proc
	APIURL      string
	// Concurrency is the worker's job concurrency (its default for this
	// machine unless PAGEFLEET_WORKER_CONCURRENCY is set).
	Concurrency int
	client      *http.Client
}

// proc is a running api or worker with its pprof address.
type proc struct {
	*proctest.Proc
	pprofAddr string
}

// startEnv builds the binaries and starts Redis, the api and a worker.
func startEnv(extra ...string) (*env, error) {
	dir, err := os.MkdirTemp("", "pagefleet-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, client: &http.Client{Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute,
	}}}
	if err := proctest.Build(dir, "pprof"); err != nil {
		e.stop()
		return nil, err
	}
	if err := e.startRedis(); err != nil {
		e.stop()
		return nil, err
	}
	common := []string{
		"PAGEFLEET_REDIS_URL=redis://" + e.redisAddr + "/0",
		"PAGEFLEET_DEV_API_KEY=" + benchKey,
		"PAGEFLEET_ALLOW_PRIVATE_NETWORKS=true",
		"PAGEFLEET_LOG_FORMAT=json",
		"PAGEFLEET_SHUTDOWN_TIMEOUT=5s",
		// One artifact store for the API and the workers, whose TMPDIRs
		// differ (the default store is under TMPDIR).
		"PAGEFLEET_ARTIFACTS_URL=file://" + filepath.Join(dir, "artifacts"),
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
	}
	// Settings a run may change; the baseline uses the same Chrome.
	for _, name := range []string{"PAGEFLEET_WORKER_CONCURRENCY", "PAGEFLEET_BROWSERS", "PAGEFLEET_CHROME_PATH"} {
		if v := os.Getenv(name); v != "" {
			common = append(common, name+"="+v)
		}
	}
	common = append(common, extra...) // the last of a name wins
	if e.api, err = e.start("api", common); err != nil {
		e.stop()
		return nil, err
	}
	e.APIURL = "http://" + e.api.Addr
	if e.worker, err = e.start("worker", common); err != nil {
		e.stop()
		return nil, err
	}
	// The worker logs its concurrency when it runs (on a loaded machine a
	// moment after it answers on its address).
	for deadline := time.Now().Add(20 * time.Second); e.Concurrency == 0 && time.Now().Before(deadline); {
		for _, line := range strings.Split(e.worker.Log(), "\n") {
			var l struct {
				Msg         string `json:"msg"`
				Concurrency int    `json:"concurrency"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "worker running" {
				e.Concurrency = l.Concurrency
			}
		}
		if e.Concurrency == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if e.Concurrency == 0 {
		e.stop()
		return nil, errors.New("the worker did not log its concurrency")
	}
	return e, nil
}

// startRedis starts a dedicated redis-server configured as deployments/local
// runs it (AOF, fsync every second).
func (e *env) startRedis() error {
	addr, err := proctest.FreeAddr()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(addr)
	rdir := filepath.Join(e.dir, "redis")
	os.MkdirAll(rdir, 0o755)
	aof := "yes"
	if os.Getenv("PAGEFLEET_BENCH_REDIS_AOF") == "no" {
		aof = "no"
	}
	e.redis = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", rdir,
		"--save", "", "--appendonly", aof, "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
		"--loglevel", "warning", "--latency-monitor-threshold", "20")
	e.redis.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := e.redis.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	e.redisAddr = addr
	e.rdb = redis.NewClient(&redis.Options{Addr: addr})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if e.rdb.Ping(context.Background()).Err() == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("redis-server did not answer within 10s")
}

func (e *env) start(name string, common []string) (*proc, error) {
	addr, err := proctest.FreeAddr()
	if err != nil {
		return nil, err
	}
	pprofAddr, err := proctest.FreeAddr()
	if err != nil {
		return nil, err
	}
	env := append([]string{}, common...)
	env = append(env, "PAGEFLEET_PPROF_ADDR="+pprofAddr)
	if name == "api" {
		env = append(env, "PAGEFLEET_API_ADDR="+addr)
	} else {
		tmp := filepath.Join(e.dir, name+"-tmp")
		os.MkdirAll(tmp, 0o755)
		env = append(env, "PAGEFLEET_WORKER_ADDR="+addr, "TMPDIR="+tmp)
	}
	p, err := proctest.Start(proctest.Options{Name: name, Bin: filepath.Join(e.dir, name), Env: env, Addr: addr, Ready: time.Minute})
	if err != nil {
		return nil, err
	}
	return &proc{Proc: p, pprofAddr: pprofAddr}, nil
}

// kill stops p with SIGTERM (its group is killed after 30 s).
func (p *proc) kill() {
	if p != nil {
		_ = p.Stop(syscall.SIGTERM, 30*time.Second)
	}
}

func (e *env) stop() {
	e.worker.kill()
	e.api.kill()
	if e.rdb != nil {
		e.rdb.Close()
	}
	if e.redis != nil && e.redis.Process != nil {
		_ = e.redis.Process.Kill()
		_ = e.redis.Wait()
	}
	os.RemoveAll(e.dir)
}

// do sends a request to the API and decodes a JSON answer into out.
func (e *env) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.APIURL+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+benchKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s answer %q: %w", method, path, data, err)
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, nil
}

// submit posts a fetch job and returns its id.
func (e *env) submit(ctx context.Context, req map[string]any) (string, error) {
	path := "/v1/fetch"
	if _, ok := req["actions"]; ok {
		path = "/v1/interact"
	}
	body, _ := json.Marshal(req)
	var acc struct {
		ID string `json:"id"`
	}
	if _, err := e.do(ctx, "POST", path, body, &acc); err != nil {
		return "", err
	}
	return acc.ID, nil
}

// wait holds GET /v1/jobs/{id}?wait= until the job ends.
func (e *env) wait(ctx context.Context, id string) (*spec.Job, error) {
	for {
		var j spec.Job
		if _, err := e.do(ctx, "GET", "/v1/jobs/"+id+"?wait=60s", nil, &j); err != nil {
			return nil, err
		}
		if spec.Terminal(j.Status) {
			return &j, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// runJobs submits n jobs at once (req(i) builds the i-th), waits for all of
// them, checks each with ok, and returns the time from the first submit to
// the last result.
func (e *env) runJobs(ctx context.Context, n int, req func(i int) map[string]any, ok func(*spec.Job) error) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			id, err := e.submit(ctx, req(i))
			if err != nil {
				errs <- err
				return
			}
			j, err := e.wait(ctx, id)
			if err != nil {
				errs <- err
				return
			}
			if j.Status != spec.StatusSucceeded {
				errs <- fmt.Errorf("job %s %s: %+v", id, j.Status, j.Error)
				return
			}
			if err := ok(j); err != nil {
				errs <- fmt.Errorf("job %s: %w", id, err)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return took, errors.Join(all...)
}

// drain waits until the worker's queues hold no pending or active task.
func (e *env) drain(ctx context.Context) error {
	insp := asynq.NewInspectorFromRedisClient(e.rdb)
	for {
		busy := 0
		for _, q := range []string{jobs.QueueInteractive, jobs.QueueBulk} {
			info, err := insp.GetQueueInfo(q)
			if err != nil {
				continue // a queue never used
			}
			busy += info.Pending + info.Active + info.Scheduled + info.Retry
		}
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("queues not drained: %d tasks: %w", busy, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// jobsDone reads the worker's pagefleet_jobs_total (all kinds and outcomes)
// from its metrics endpoint, without touching Redis.
func (e *env) jobsDone() (int, error) {
	resp, err := http.Get("http://" + e.worker.Addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "pagefleet_jobs_total{") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			total += v
		}
	}
	return int(total), sc.Err()
}

// commandStats reads INFO commandstats: calls per command.
func (e *env) commandStats(ctx context.Context) (map[string]int64, error) {
	s, err := e.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				out[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return out, nil
}

// infoField reads one numeric field of an INFO section (0 when absent).
func (e *env) infoField(ctx context.Context, section, field string) int64 {
	s, err := e.rdb.Info(ctx, section).Result()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// monitor counts the commands Redis runs while it is on, split into those
// that clients send and those that scripts call. Stop it with the func.
func (e *env) monitor(ctx context.Context) (stop func() (client, script map[string]int, err error), err error) {
	c, err := net.Dial("tcp", e.redisAddr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte("MONITOR\r\n")); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(c, 1<<20)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		c.Close()
		return nil, fmt.Errorf("MONITOR: %q %v", line, err)
	}
	client, script := map[string]int{}, map[string]int{}
	done := make(chan error, 1)
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				done <- nil
				return
			}
			// +1700000000.123456 [0 127.0.0.1:5555] "HSET" "k" ...
			i := strings.IndexByte(line, '[')
			j := strings.IndexByte(line, ']')
			if i < 0 || j < i {
				continue
			}
			who := line[i+1 : j]
			rest := strings.TrimSpace(line[j+1:])
			cmd, _, _ := strings.Cut(rest, " ")
			cmd = strings.ToLower(strings.Trim(cmd, `"`))
			if strings.HasSuffix(who, "lua") {
				script[cmd]++
			} else {
				client[cmd]++
			}
		}
	}()
	return func() (map[string]int, map[string]int, error) {
		c.Close()
		err := <-done
		return client, script, err
	}, nil
}

// loop runs do(0) … do(n-1) on conc goroutines and returns the elapsed
// time and the errors, joined.
func loop(n, conc int, do func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := do(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// procStat is what /proc/<pid>/stat says of a process.
type procStat struct {
	ppid  int
	ticks int64 // utime + stime + cutime + cstime, in USER_HZ
}

// readProcs reads the stat of every process.
func readProcs() map[int]procStat {
	all := map[int]procStat{}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		n, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) < 15 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		var t int64
		for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseInt(f[k], 10, 64)
			t += v
		}
		all[n] = procStat{pp, t}
	}
	return all
}

// tree returns roots and all their descendants among all.
func tree(all map[int]procStat, roots ...int) map[int]bool {
	in := map[int]bool{}
	for _, p := range roots {
		in[p] = true
	}
	for changed := true; changed; {
		changed = false
		for p, x := range all {
			if !in[p] && in[x.ppid] {
				in[p] = true
				changed = true
			}
		}
	}
	return in
}

// treeMemory sums the proportional set size (PSS, shared pages divided among
// the processes that share them) and the RSS of pid and all its descendants,
// in bytes.
func treeMemory(pid int) (pss, rss int64, procs int) {
	for p := range tree(readProcs(), pid) {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/smaps_rollup")
		if err != nil {
			continue
		}
		procs++
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "Pss:":
				pss += kb << 10
			case "Rss:":
				rss += kb << 10
			}
		}
	}
	return pss, rss, procs
}

// treeCPU returns the CPU time (user + system) of pids and their
// descendants, with the children they already reaped.
func treeCPU(pids ...int) time.Duration {
	all := readProcs()
	var ticks int64
	for p := range tree(all, pids...) {
		ticks += all[p].ticks
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// selfCPU is the CPU time of this process alone (its own threads: the
// chromedp driver of the baseline, the HTTP clients and the fixture site).
func selfCPU() time.Duration {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var t int64
	for _, k := range []int{11, 12} {
		v, _ := strconv.ParseInt(f[k], 10, 64)
		t += v
	}
	return time.Duration(t) * time.Second / 100
}

// pids are the processes of the pipeline: the worker (and its Chrome), the
// api and Redis.
// cpuParts is the CPU time so far of the api, the worker (Chrome included),
// Redis and this process.
func (e *env) cpuParts() [4]time.Duration {
	return [4]time.Duration{treeCPU(e.api.PID()), treeCPU(e.worker.PID()), treeCPU(e.redis.Process.Pid), selfCPU()}
}

func (e *env) pids() []int {
	return []int{e.worker.PID(), e.api.PID(), e.redis.Process.Pid}
}

// profile fetches a CPU profile of p for d into dir (when dir is set).
func (p *proc) profile(dir, name string, d time.Duration) func() {
	if dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.pprofAddr, int(d.Seconds())))
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile", p.Name, err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(dir, name+"-"+p.Name+".pprof"))
		if err != nil {
			return
		}
		defer f.Close()
		io.Copy(f, resp.Body)
	}()
	return func() { <-done }
}

package bench

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Settings, from the environment:
//
//	PAGEFLEET_BENCH_PAGES     rendered pages per round and kind (default 24)
//	PAGEFLEET_BENCH_ROUNDS    alternating rounds of baseline and pagefleet (default 2)
//	PAGEFLEET_BENCH_FETCHES   plain fetches per round (default 200)
//	PAGEFLEET_BENCH_PROFILES  a directory: CPU profiles of the api and the
//	                          worker under load are written there
var (
	pagesPerRound   = envInt("PAGEFLEET_BENCH_PAGES", 24)
	rounds          = envInt("PAGEFLEET_BENCH_ROUNDS", 2)
	fetchesPerRound = envInt("PAGEFLEET_BENCH_FETCHES", 200)
	profileDir      = os.Getenv("PAGEFLEET_BENCH_PROFILES")
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

var (
	fixture *site

	envOnce sync.Once
	theEnv  *env
	envErr  error

	bareOnce sync.Once
	theBare  *bareChrome
	bareErr  error

	shellOnce sync.Once
	theShell  *bareChrome
	shellErr  error
)

// figure is one line of the table.
type figure struct {
	order    int
	name     string
	value    string
	baseline string
	ratio    string
	target   string
}

var (
	figMu   sync.Mutex
	figures = map[string]figure{}
	notes   []string
)

func record(f figure) {
	figMu.Lock()
	defer figMu.Unlock()
	f.order = len(figures)
	if old, ok := figures[f.name]; ok {
		f.order = old.order
	}
	figures[f.name] = f
}

func note(format string, args ...any) {
	figMu.Lock()
	defer figMu.Unlock()
	notes = append(notes, fmt.Sprintf(format, args...))
}

func TestMain(m *testing.M) {
	var err error
	fixture, err = newSite()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fixture site:", err)
		os.Exit(1)
	}
	code := m.Run()
	if theEnv != nil {
		theEnv.stop()
	}
	if theBare != nil {
		theBare.stop()
	}
	if theShell != nil {
		theShell.stop()
	}
	if theFull != nil {
		theFull.stop()
	}
	fixture.Close()
	printTable()
	os.Exit(code)
}

// needEnv starts pagefleet once for all benchmarks.
func needEnv(b *testing.B) *env {
	b.Helper()
	envOnce.Do(func() { theEnv, envErr = startEnv() })
	if envErr != nil {
		b.Fatal(envErr)
	}
	return theEnv
}

// needBare starts the baseline's Chrome once.
func needBare(b *testing.B) *bareChrome {
	b.Helper()
	bareOnce.Do(func() { theBare, bareErr = startBare("") })
	if bareErr != nil {
		b.Fatal(bareErr)
	}
	return theBare
}

// needBareShell starts the baseline's loop on chromium-headless-shell once:
// the fastest peer on its best binary.
func needBareShell(b *testing.B) *bareChrome {
	b.Helper()
	shellOnce.Do(func() {
		path, err := shellChromePath()
		if err != nil {
			shellErr = err
			return
		}
		theShell, shellErr = startBare(path)
	})
	if shellErr != nil {
		b.Fatal(shellErr)
	}
	return theShell
}

func benchCtx(b *testing.B, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	b.Cleanup(cancel)
	return ctx
}

func richURL(i int) string    { return fmt.Sprintf("%s/rich/%d", fixture.URL, i) }
func trivialURL(int) string   { return fixture.URL + "/trivial" }
func shapeURL(i int) string   { return fmt.Sprintf("%s/shape/%d", fixture.URL, i) }
func articleURL(i int) string { return fmt.Sprintf("%s/article/%d", fixture.URL, i) }

// articleAt is article i served after delay to first byte.
func articleAt(i int, delay time.Duration) string {
	return fmt.Sprintf("%s/article/%d?d=%s", fixture.URL, i, delay)
}

// BenchmarkRenderedRich: rendered pages/s through the pipeline against the
// bare chromedp loop on full Chromium and on chromium-headless-shell, on
// the rich fixture pages.
func BenchmarkRenderedRich(b *testing.B) {
	benchRendered(b, "rich pages (CSS, 2 scripts, 7 images, 2 fonts)", richURL, renderedMark)
}

// BenchmarkRenderedShape: the same on the shape of issue #22's figures: a
// JS-rendered page that loads one stylesheet, one script and two PNG images
// served after 50 ms.
func BenchmarkRenderedShape(b *testing.B) {
	benchRendered(b, "shape pages (1 CSS, 1 script, 2 images at 50 ms)", shapeURL, shapeMark)
}

// BenchmarkRenderedTrivial: the same on a trivial page.
func BenchmarkRenderedTrivial(b *testing.B) {
	benchRendered(b, "trivial page", trivialURL, trivialMark)
}

func benchRendered(b *testing.B, what string, url func(int) string, mark string) {
	e := needEnv(b)
	bare := needBare(b)
	shell := needBareShell(b)
	ctx := benchCtx(b, 20*time.Minute)
	conc := e.Concurrency
	req := func(i int) map[string]any {
		return map[string]any{"url": url(i), "render_js": true, "output": []string{"html"}}
	}
	// The bare loops load images; pagefleet's default leaves out what a
	// DOM does not need. loaded is pagefleet loading them too.
	loaded := func(i int) map[string]any {
		m := req(i)
		m["load_resources"] = true
		return m
	}
	check := func(j *spec.Job) error {
		if j.Result == nil || j.Result.HTML == nil || !strings.Contains(*j.Result.HTML, mark) {
			return fmt.Errorf("the rendered HTML lacks %q", mark)
		}
		return nil
	}
	// Warm up all three: the first pages of a browser cost more.
	for _, c := range []*bareChrome{bare, shell} {
		if _, err := c.run(ctx, conc, conc, url, mark, false); err != nil {
			b.Fatal("bare warm-up:", err)
		}
	}
	if _, err := e.runJobs(ctx, conc, req, check); err != nil {
		b.Fatal("pipeline warm-up:", err)
	}
	var tBare, tShell, tPipe, tLoaded, cBare, cShell, cPipe time.Duration
	for r := 0; r < rounds; r++ {
		page := func(i int) string { return url(r*pagesPerRound + i) }
		c0 := treeCPU(bare.pid) + selfCPU()
		d, err := bare.run(ctx, pagesPerRound, conc, page, mark, false)
		if err != nil {
			b.Fatal("bare chromedp:", err)
		}
		cBare += treeCPU(bare.pid) + selfCPU() - c0
		tBare += d
		c0 = treeCPU(shell.pid) + selfCPU()
		d, err = shell.run(ctx, pagesPerRound, conc, page, mark, false)
		if err != nil {
			b.Fatal("bare chromedp on the shell:", err)
		}
		cShell += treeCPU(shell.pid) + selfCPU() - c0
		tShell += d
		c0 = treeCPU(e.pids()...) + selfCPU()
		var wait []func()
		if r == 0 {
			name := "rendered-" + strings.Fields(what)[0]
			wait = append(wait, e.worker.profile(profileDir, name, 10*time.Second), e.api.profile(profileDir, name, 10*time.Second))
		}
		d, err = e.runJobs(ctx, pagesPerRound, func(i int) map[string]any { return req(r*pagesPerRound + i) }, check)
		for _, w := range wait {
			w()
		}
		if err != nil {
			b.Fatal("pipeline:", err)
		}
		cPipe += treeCPU(e.pids()...) + selfCPU() - c0
		tPipe += d
		d, err = e.runJobs(ctx, pagesPerRound, func(i int) map[string]any { return loaded(r*pagesPerRound + i) }, check)
		if err != nil {
			b.Fatal("pipeline, resources loaded:", err)
		}
		tLoaded += d
	}
	n := float64(pagesPerRound * rounds)
	pipe, base, fastest := n/tPipe.Seconds(), n/tBare.Seconds(), n/tShell.Seconds()
	withImages := n / tLoaded.Seconds()
	b.ReportMetric(pipe, "pages/s")
	b.ReportMetric(base, "bare-pages/s")
	b.ReportMetric(fastest, "bare-shell-pages/s")
	b.ReportMetric(pipe/base, "ratio")
	b.ReportMetric(pipe/fastest, "ratio-shell")
	kind := strings.Fields(what)[0]
	record(figure{
		name:     fmt.Sprintf("rendered pages/s at concurrency %d, %s", conc, what),
		value:    fmt.Sprintf("%.2f", pipe),
		baseline: fmt.Sprintf("%.2f bare chromedp, full Chromium", base),
		ratio:    fmt.Sprintf("%.2f×", pipe/base),
		target:   "≥ 2.5×",
	})
	record(figure{
		name:     fmt.Sprintf("rendered pages/s at concurrency %d, %s page, against the fastest peer", conc, kind),
		value:    fmt.Sprintf("%.2f", pipe),
		baseline: fmt.Sprintf("%.2f bare chromedp, headless shell", fastest),
		ratio:    fmt.Sprintf("%.2f×", pipe/fastest),
		target:   "≥ 1.3×",
	})
	record(figure{
		name:     fmt.Sprintf("rendered pages/s at concurrency %d, %s page, images loaded like the peer's", conc, kind),
		value:    fmt.Sprintf("%.2f", withImages),
		baseline: fmt.Sprintf("%.2f bare chromedp, headless shell", fastest),
		ratio:    fmt.Sprintf("%.2f×", withImages/fastest),
		target:   "",
	})
	// CPU per page barely moves with the other load of the machine.
	msPipe, msBare, msShell := cPipe.Seconds()*1000/n, cBare.Seconds()*1000/n, cShell.Seconds()*1000/n
	record(figure{
		name:     "CPU per rendered page (all processes), " + kind + " page",
		value:    fmt.Sprintf("%.0f ms", msPipe),
		baseline: fmt.Sprintf("%.0f ms bare full Chromium, %.0f ms bare shell", msBare, msShell),
		ratio:    fmt.Sprintf("%.2f× less than the shell loop", msShell/msPipe),
		target:   "",
	})
}

// BenchmarkPlainFetch: plain-fetch jobs/s end to end (one POST /v1/fetch
// and a GET ?wait= per job) against a bare net/http loop at the worker's
// concurrency, on static articles from a fast origin (answers at once) and
// a slow one (articleDelay to first byte).
func BenchmarkPlainFetch(b *testing.B) {
	for _, o := range []struct {
		name  string
		delay time.Duration
		want  string
	}{{"fast-origin", 0, "≥ 0.35×"}, {"slow-origin", articleDelay, "≥ 0.7×"}} {
		b.Run(o.name, func(b *testing.B) { benchPlain(b, o.delay, o.want) })
	}
}

func benchPlain(b *testing.B, delay time.Duration, target string) {
	articleURL := func(i int) string { return articleAt(i, delay) }
	e := needEnv(b)
	ctx := benchCtx(b, 10*time.Minute)
	conc := e.Concurrency
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxIdleConns: conc}}
	defer client.CloseIdleConnections()
	bareLoop := func(n, offset int) (time.Duration, error) {
		return loop(n, conc, func(i int) error {
			resp, err := client.Get(articleURL(offset + i))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var sb strings.Builder
			if _, err := ioCopy(&sb, resp); err != nil {
				return err
			}
			if resp.StatusCode != 200 || !strings.Contains(sb.String(), "<h1>Article") {
				return fmt.Errorf("article: %d", resp.StatusCode)
			}
			return nil
		})
	}
	req := func(i int) map[string]any {
		return map[string]any{"url": articleURL(i), "render_js": false, "output": []string{"html"}}
	}
	check := func(j *spec.Job) error {
		if j.Result == nil || j.Result.HTML == nil || !strings.Contains(*j.Result.HTML, "<h1>Article") {
			return fmt.Errorf("the fetched HTML lacks the article")
		}
		return nil
	}
	if _, err := bareLoop(conc, 0); err != nil {
		b.Fatal(err)
	}
	if _, err := e.runJobs(ctx, conc, req, check); err != nil {
		b.Fatal(err)
	}
	var tBare, tPipe, cBare, cPipe time.Duration
	var parts [4]time.Duration // api, worker, redis, client
	for r := 0; r < rounds; r++ {
		c0 := selfCPU()
		d, err := bareLoop(fetchesPerRound, r*fetchesPerRound)
		if err != nil {
			b.Fatal("bare net/http:", err)
		}
		cBare += selfCPU() - c0
		tBare += d
		c0 = treeCPU(e.pids()...) + selfCPU()
		p0 := e.cpuParts()
		var wait []func()
		if r == 0 {
			wait = append(wait, e.worker.profile(profileDir, fmt.Sprintf("plain-%v", delay), 3*time.Second), e.api.profile(profileDir, fmt.Sprintf("plain-%v", delay), 3*time.Second))
		}
		d, err = e.runJobs(ctx, fetchesPerRound, func(i int) map[string]any { return req(r*fetchesPerRound + i) }, check)
		for _, w := range wait {
			w()
		}
		if err != nil {
			b.Fatal("pipeline:", err)
		}
		cPipe += treeCPU(e.pids()...) + selfCPU() - c0
		for k, v := range e.cpuParts() {
			parts[k] += v - p0[k]
		}
		tPipe += d
	}
	n := float64(fetchesPerRound * rounds)
	pipe, base := n/tPipe.Seconds(), n/tBare.Seconds()
	b.ReportMetric(pipe, "jobs/s")
	b.ReportMetric(base, "bare-fetches/s")
	record(figure{
		name:     fmt.Sprintf("plain-fetch jobs/s at concurrency %d (articles, %v to first byte)", conc, delay),
		value:    fmt.Sprintf("%.1f", pipe),
		baseline: fmt.Sprintf("%.1f bare net/http", base),
		ratio:    fmt.Sprintf("%.2f×", pipe/base),
		target:   target,
	})
	// The time the pipeline adds to each job at this concurrency.
	perJob := (tPipe.Seconds() - tBare.Seconds()) / n * float64(conc)
	record(figure{
		name:     fmt.Sprintf("CPU per plain-fetch job (all processes), %v origin", delay),
		value:    fmt.Sprintf("%.2f ms", cPipe.Seconds()*1000/n),
		baseline: fmt.Sprintf("%.2f ms bare net/http", cBare.Seconds()*1000/n),
		target:   "",
	})
	per := func(d time.Duration) float64 { return d.Seconds() * 1000 / n }
	note("plain fetch, %v origin: CPU per job by process: api %.2f ms, worker %.2f ms, redis %.2f ms, client (this benchmark: submit, poll, decode) %.2f ms",
		delay, per(parts[0]), per(parts[1]), per(parts[2]), per(parts[3]))
	note("plain fetch, %v origin: the pipeline adds ≈ %.1f ms per job at concurrency %d (API, Redis, worker, result, poll)", delay, perJob*1000, conc)
}

func ioCopy(sb *strings.Builder, resp *http.Response) (int64, error) {
	return io.Copy(sb, resp.Body)
}

// BenchmarkRedisCommands: Redis commands per plain-fetch job end to end
// (submit, run, poll once), from INFO commandstats deltas on the dedicated
// redis-server, net of what the idle processes send in the same time.
func BenchmarkRedisCommands(b *testing.B) {
	e := needEnv(b)
	ctx := benchCtx(b, 5*time.Minute)
	const k = 100
	if err := e.drain(ctx); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second)

	window := func(f func() error) (stats map[string]int64, client, script map[string]int, took time.Duration, err error) {
		s0, err := e.commandStats(ctx)
		if err != nil {
			return nil, nil, nil, 0, err
		}
		stop, err := e.monitor(ctx)
		if err != nil {
			return nil, nil, nil, 0, err
		}
		start := time.Now()
		ferr := f()
		took = time.Since(start)
		client, script, _ = stop()
		s1, err := e.commandStats(ctx)
		if err != nil {
			return nil, nil, nil, 0, err
		}
		stats = map[string]int64{}
		for c, v := range s1 {
			if d := v - s0[c]; d > 0 && c != "info" && c != "monitor" {
				stats[c] = d
			}
		}
		delete(client, "info")
		return stats, client, script, took, ferr
	}
	idleStats, idleClient, _, idleTook, err := window(func() error { time.Sleep(3 * time.Second); return nil })
	if err != nil {
		b.Fatal(err)
	}
	runStats, runClient, runScript, runTook, err := window(func() error {
		done0, err := e.jobsDone()
		if err != nil {
			return err
		}
		ids := make([]string, k)
		var wg sync.WaitGroup
		errs := make(chan error, k)
		for i := 0; i < k; i++ {
			wg.Go(func() {
				id, err := e.submit(ctx, map[string]any{"url": articleURL(10000 + i), "render_js": false})
				ids[i] = id
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			return err
		}
		// Wait for the worker without asking Redis.
		for {
			n, err := e.jobsDone()
			if err != nil {
				return err
			}
			if n >= done0+k {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, id := range ids {
			var j spec.Job
			if _, err := e.do(ctx, "GET", "/v1/jobs/"+id, nil, &j); err != nil {
				return err
			}
			if j.Status != spec.StatusSucceeded {
				return fmt.Errorf("job %s %s", id, j.Status)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	scale := runTook.Seconds() / idleTook.Seconds()
	sum64 := func(m map[string]int64) (s float64) {
		for _, v := range m {
			s += float64(v)
		}
		return s
	}
	sumInt := func(m map[string]int) (s float64) {
		for _, v := range m {
			s += float64(v)
		}
		return s
	}
	gross := sum64(runStats) / k
	net := (sum64(runStats) - sum64(idleStats)*scale) / k
	clientNet := (sumInt(runClient) - sumInt(idleClient)*scale) / k
	record(figure{
		name:     "Redis commands per plain-fetch job (submit, run, poll once)",
		value:    fmt.Sprintf("%.1f", net),
		baseline: fmt.Sprintf("%.1f sent by clients", clientNet),
		ratio:    "",
		target:   "≤ 12",
	})
	b.ReportMetric(net, "cmds/job")
	b.ReportMetric(clientNet, "client-cmds/job")
	var lines []string
	for c, v := range runStats {
		per := (float64(v) - float64(idleStats[c])*scale) / k
		if per >= 0.05 {
			lines = append(lines, fmt.Sprintf("%s %.2f", c, per))
		}
	}
	sort.Strings(lines)
	note("Redis per plain-fetch job: %.1f commands gross, %.1f net of the idle background (%.0f/s); by command (net): %s",
		gross, net, sum64(idleStats)/idleTook.Seconds(), strings.Join(lines, ", "))
	var cl []string
	for c, v := range runClient {
		per := (float64(v) - float64(idleClient[c])*scale) / k
		if per >= 0.05 {
			cl = append(cl, fmt.Sprintf("%s %.2f", c, per))
		}
	}
	sort.Strings(cl)
	var sl []string
	for c, v := range runScript {
		if per := float64(v) / k; per >= 0.05 {
			sl = append(sl, fmt.Sprintf("%s %.2f", c, per))
		}
	}
	sort.Strings(sl)
	note("Redis per plain-fetch job, sent by clients (net, MONITOR): %s; called inside scripts: %s", strings.Join(cl, ", "), strings.Join(sl, ", "))
}

// BenchmarkWorkerMemory: (peak − idle) memory of the worker and its Chrome
// processes while it runs its full concurrency of rendered rich pages,
// divided by the concurrency.
func BenchmarkWorkerMemory(b *testing.B) {
	e := needEnv(b)
	ctx := benchCtx(b, 10*time.Minute)
	if err := e.drain(ctx); err != nil {
		b.Fatal(err)
	}
	time.Sleep(3 * time.Second) // warm contexts made, disposals done
	pid := e.worker.PID()
	idlePss, idleRss, idleProcs := treeMemory(pid)
	var peakPss, peakRss int64
	var peakProcs int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			pss, rss, n := treeMemory(pid)
			peakPss, peakRss, peakProcs = max(peakPss, pss), max(peakRss, rss), max(peakProcs, n)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	conc := e.Concurrency
	_, err := e.runJobs(ctx, 3*conc, func(i int) map[string]any {
		return map[string]any{"url": richURL(5000 + i), "render_js": true}
	}, func(*spec.Job) error { return nil })
	close(stop)
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	per := mib(peakPss-idlePss) / float64(conc)
	b.ReportMetric(per, "MiB/job")
	record(figure{
		name:     fmt.Sprintf("worker memory per concurrent rendered job (PSS, worker + Chrome, N=%d)", conc),
		value:    fmt.Sprintf("%.0f MiB", per),
		baseline: fmt.Sprintf("idle %.0f MiB, peak %.0f MiB", mib(idlePss), mib(peakPss)),
		ratio:    "",
		target:   "",
	})
	note("worker memory: idle PSS %.0f MiB (RSS %.0f MiB, %d processes); peak PSS %.0f MiB (RSS %.0f MiB, %d processes) at concurrency %d",
		mib(idlePss), mib(idleRss), idleProcs, mib(peakPss), mib(peakRss), peakProcs, conc)
}

// BenchmarkSubmitLatency: POST /v1/fetch at a fixed 1 000 requests/s for 3 s
// (vegeta): once with the worker paused (the API and Redis alone), once with
// the worker running the jobs meanwhile on the same cores.
func BenchmarkSubmitLatency(b *testing.B) {
	e := needEnv(b)
	ctx := benchCtx(b, 5*time.Minute)
	if err := e.drain(ctx); err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"url": fixture.URL + "/tiny", "render_js": false})
	tgt := vegeta.Target{Method: "POST", URL: e.APIURL + "/v1/fetch", Body: body, Header: http.Header{
		"Authorization": {"Bearer " + benchKey}, "Content-Type": {"application/json"},
	}}
	attack := func(rate int, d time.Duration) vegeta.Metrics {
		a := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.Timeout(10*time.Second))
		var m vegeta.Metrics
		for res := range a.Attack(vegeta.NewStaticTargeter(tgt), vegeta.Rate{Freq: rate, Per: time.Second}, d, "submit") {
			m.Add(res)
		}
		m.Close()
		return m
	}
	attack(200, time.Second) // open connections, warm the API
	if err := e.drain(ctx); err != nil {
		b.Fatal(err)
	}
	const rate = 1000
	pids := []int{e.api.PID(), e.redis.Process.Pid, e.worker.PID()}
	// Twice: with the worker stopped (SIGSTOP; it runs the jobs after), the
	// API and Redis alone as a deployment with its API on its own machine
	// sees them; and with the worker running the jobs on the same 2 cores.
	for _, mode := range []struct{ name, label string }{
		{"api-alone", "worker paused"},
		{"with-worker", "worker running the jobs"},
	} {
		paused := mode.name == "api-alone"
		delayed0 := e.infoField(ctx, "persistence", "aof_delayed_fsync")
		cpu0 := []time.Duration{treeCPU(pids[0]), treeCPU(pids[1]), treeCPU(pids[2]), selfCPU()}
		t0 := time.Now()
		var wait []func()
		if !paused {
			wait = []func(){e.api.profile(profileDir, "submit", 3*time.Second), e.worker.profile(profileDir, "submit", 3*time.Second)}
		}
		if paused {
			syscall.Kill(pids[2], syscall.SIGSTOP)
		}
		m := attack(rate, 3*time.Second)
		if paused {
			syscall.Kill(pids[2], syscall.SIGCONT)
		}
		took := time.Since(t0).Seconds()
		cpu1 := []time.Duration{treeCPU(pids[0]), treeCPU(pids[1]), treeCPU(pids[2]), selfCPU()}
		for _, w := range wait {
			w()
		}
		delayed := e.infoField(ctx, "persistence", "aof_delayed_fsync") - delayed0
		if !paused {
			b.ReportMetric(float64(m.Latencies.P50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(m.Latencies.P99.Microseconds())/1000, "p99-ms")
		}
		codes := make([]string, 0, len(m.StatusCodes))
		for c, n := range m.StatusCodes {
			codes = append(codes, fmt.Sprintf("%s×%d", c, n))
		}
		slices.Sort(codes)
		ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
		record(figure{
			name:     fmt.Sprintf("API submit latency p50 at %d req/s (3 s), %s", rate, mode.label),
			value:    ms(m.Latencies.P50),
			baseline: fmt.Sprintf("%.0f req/s sent", m.Rate),
			target:   "",
		})
		record(figure{
			name:     fmt.Sprintf("API submit latency p99 at %d req/s (3 s), %s", rate, mode.label),
			value:    ms(m.Latencies.P99),
			baseline: fmt.Sprintf("max %s", ms(m.Latencies.Max)),
			target:   "< 10 ms",
		})
		cpuPct := func(i int) float64 { return (cpu1[i] - cpu0[i]).Seconds() / took * 100 }
		record(figure{
			name:     fmt.Sprintf("CPU at %d submits/s, %s (api / redis-server / worker)", rate, mode.label),
			value:    fmt.Sprintf("%.0f%% / %.0f%% / %.0f%%", cpuPct(0), cpuPct(1), cpuPct(2)),
			baseline: "of one core; 2 cores",
			target:   "",
		})
		note("submit latency, %s: %d requests, success %.1f%%, status %s, p90 %s, p95 %s, mean %s; this process (vegeta, site) used %.0f%% of a core; Redis AOF writes that waited for a slow fsync: %d",
			mode.label, m.Requests, m.Success*100, strings.Join(codes, " "), ms(m.Latencies.P90), ms(m.Latencies.P95), ms(m.Latencies.Mean), cpuPct(3), delayed)
		if m.Success < 1 {
			b.Errorf("submit attack (%s): success %.3f, errors %v", mode.label, m.Success, m.Errors)
		}
		if err := e.drain(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if lat, err := e.rdb.Do(ctx, "LATENCY", "LATEST").Slice(); err == nil && len(lat) > 0 {
		var ev []string
		for _, x := range lat {
			if r, ok := x.([]any); ok && len(r) >= 4 {
				ev = append(ev, fmt.Sprintf("%v max %v ms", r[0], r[3]))
			}
		}
		note("Redis latency events of 20 ms or more during the run: %s", strings.Join(ev, ", "))
	}
}

// BenchmarkBatch100k: the time to accept POST /v1/batches with 100 000 URLs.
// The batch is cancelled at once after.
func BenchmarkBatch100k(b *testing.B) {
	e := needEnv(b)
	ctx := benchCtx(b, 5*time.Minute)
	const n = 100000
	urls := make([]string, n)
	for i := range urls {
		urls[i] = articleURL(20000 + i)
	}
	body, _ := json.Marshal(map[string]any{"urls": urls, "template": map[string]any{"render_js": false}})
	var acc struct {
		ID    string `json:"id"`
		Total int    `json:"total"`
	}
	start := time.Now()
	code, err := e.do(ctx, "POST", "/v1/batches", body, &acc)
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if code != http.StatusAccepted || acc.Total != n {
		b.Fatalf("batch: %d, total %d", code, acc.Total)
	}
	if _, err := e.do(ctx, "DELETE", "/v1/batches/"+acc.ID, nil, nil); err != nil {
		b.Log("cancel the batch:", err)
	}
	b.ReportMetric(took.Seconds()*1000, "ms")
	record(figure{
		name:     "time to accept a 100 000-URL batch (POST /v1/batches, " + fmt.Sprintf("%.1f MB", float64(len(body))/1e6) + ")",
		value:    fmt.Sprintf("%.0f ms", took.Seconds()*1000),
		baseline: "",
		target:   "< 2 s",
	})
}

// BenchmarkMap100k: POST /v1/map of the fixture site, whose robots.txt
// names an index of two gzip sitemaps of 50 000 URLs each, with limit
// 100 000 — beside the baseline a program of its own would run: fetch the
// index and the two files with net/http and decode them with
// encoding/xml, in the same run.
func BenchmarkMap100k(b *testing.B) {
	e := needEnv(b)
	ctx := benchCtx(b, 5*time.Minute)
	body, _ := json.Marshal(map[string]any{"url": fixture.URL + "/", "limit": 100000, "sitemap": "only"})
	var res spec.MapResult
	start := time.Now()
	code, err := e.do(ctx, "POST", "/v1/map", body, &res)
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if code != http.StatusOK || len(res.URLs) != 100000 {
		b.Fatalf("map: %d, %d URLs, truncated %v", code, len(res.URLs), res.Truncated)
	}
	bareStart := time.Now()
	n, err := bareSitemaps(ctx, fixture.URL+"/sitemap-index.xml")
	bare := time.Since(bareStart)
	if err != nil || n != 100000 {
		b.Fatalf("bare: %d URLs, %v", n, err)
	}
	b.ReportMetric(took.Seconds()*1000, "ms")
	b.ReportMetric(bare.Seconds()*1000, "bare-ms")
	record(figure{
		name:     "POST /v1/map of a 100 000-URL sitemap index (2 gzip files, limit 100 000)",
		value:    fmt.Sprintf("%.0f ms", took.Seconds()*1000),
		baseline: fmt.Sprintf("%.0f ms (net/http + encoding/xml)", bare.Seconds()*1000),
		ratio:    fmt.Sprintf("%.2f×", bare.Seconds()/took.Seconds()),
		target:   "< 10 s",
	})
}

// bareSitemaps is what a program of its own does: fetch a sitemap index
// and its files, decode them whole, count the URLs.
func bareSitemaps(ctx context.Context, index string) (int, error) {
	get := func(u string, v any) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r io.Reader = resp.Body
		if strings.HasSuffix(u, ".gz") {
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				return err
			}
			r = zr
		}
		return xml.NewDecoder(r).Decode(v)
	}
	var idx struct {
		Sitemaps []struct {
			Loc string `xml:"loc"`
		} `xml:"sitemap"`
	}
	if err := get(index, &idx); err != nil {
		return 0, err
	}
	n := 0
	for _, sm := range idx.Sitemaps {
		var set struct {
			URLs []struct {
				Loc string `xml:"loc"`
			} `xml:"url"`
		}
		if err := get(sm.Loc, &set); err != nil {
			return 0, err
		}
		n += len(set.URLs)
	}
	return n, nil
}

// printTable prints the figures recorded in this run.
func printTable() {
	figMu.Lock()
	defer figMu.Unlock()
	if len(figures) == 0 {
		return
	}
	list := make([]figure, 0, len(figures))
	for _, f := range figures {
		list = append(list, f)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].order < list[j].order })
	fmt.Println()
	fmt.Println("pagefleet benchmark —", machine())
	if theEnv != nil {
		fmt.Printf("worker concurrency %d (bare loops run at the same concurrency); %d rendered pages × %d rounds per kind; %d fetches × %d rounds\n",
			theEnv.Concurrency, pagesPerRound, rounds, fetchesPerRound, rounds)
	}
	rows := [][]string{{"figure", "pagefleet", "baseline (same run)", "ratio", "target"}}
	for _, f := range list {
		rows = append(rows, []string{f.name, f.value, f.baseline, f.ratio, f.target})
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for k, r := range rows {
		var sb strings.Builder
		sb.WriteString("| ")
		for i, c := range r {
			sb.WriteString(c + strings.Repeat(" ", width[i]-len([]rune(c))) + " | ")
		}
		fmt.Println(strings.TrimSpace(sb.String()))
		if k == 0 {
			sb.Reset()
			sb.WriteString("|")
			for _, w := range width {
				sb.WriteString(strings.Repeat("-", w+2) + "|")
			}
			fmt.Println(sb.String())
		}
	}
	for _, n := range notes {
		fmt.Println("- " + n)
	}
}

// machine describes where the benchmark ran.
func machine() string {
	model := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	var chromes []string
	for _, find := range []func() (string, error){shellChromePath, fullChromePath} {
		if p, err := find(); err == nil {
			if out, err := exec.Command(p, "--version").Output(); err == nil {
				chromes = append(chromes, strings.TrimSpace(string(out)))
			}
		}
	}
	chrome := strings.Join(chromes, " and ")
	load := ""
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = "load " + strings.Join(strings.Fields(string(data))[:3], " ")
	}
	return fmt.Sprintf("%s — %d cores (%s), %s, %s, %s/%s, %s", time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		runtime.NumCPU(), model, chrome, runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
}

// Package bench measures pagefleet against baselines taken in the same run,
// on a fixture site the benchmark serves itself:
//
//   - rendered pages/s through the whole pipeline (the real api and worker
//     binaries, a dedicated redis-server, Chrome) against a bare chromedp
//     loop that opens one incognito context per page, at equal concurrency,
//     on rich pages (CSS, scripts, images and web fonts served with small
//     delays, a JavaScript-rendered body) and on a trivial page;
//   - plain-fetch jobs/s end to end against a bare net/http loop;
//   - API submit latency at a fixed rate (vegeta as a library);
//   - the time to accept a 100 000-URL batch;
//   - Redis commands per plain-fetch job (INFO commandstats deltas);
//   - worker memory per concurrent rendered job.
//
// `make bench` runs every benchmark once and prints a table of figures with
// their ratios; BENCHMARKS.md records them. The parts have benchmarks of their
// own (BenchmarkRenderBare, BenchmarkRenderPool). Nothing here asserts a
// timing: the benchmarks fail only when a job does.
//
// The package has no code outside its tests.
package bench

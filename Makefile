# pagefleet — see README.md.
SHELL := /bin/bash
GO ?= go
# make race runs every package's tests under the race detector except e2e
# and bench: those build the api and worker binaries and start them as
# separate processes, which the detector in the test binary does not watch
# (the packages those binaries are made of are all in the list). Derived,
# not listed: a new package is covered without anyone remembering it.
PKGS_RACE = $(shell $(GO) list ./... | grep -v -E '/(e2e|bench)$$')
# Fuzz budgets are counts of inputs, not durations: with a duration, Go
# 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when the time runs out (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 5000x

.PHONY: run build test deps vet race fuzz-brief fuzz bench chaos soak fmt clean

## run: install what is missing, start Redis (AOF under .data/), a worker and the API on :8080
run: build
	@bash deployments/local/run.sh

## build: the two binaries into bin/
build:
	$(GO) build -o bin/pagefleet-api ./cmd/api
	$(GO) build -o bin/pagefleet-worker ./cmd/worker

## deps: install redis-server, chromium-headless-shell and chromium (apt, as root)
deps:
	@bash deployments/local/deps.sh

## test: the whole suite against real Redis and real Chromium
test: deps vet
	$(GO) test -count=1 -parallel 4 -timeout 25m ./...
	$(MAKE) race fuzz-brief

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

## race: every package but e2e and bench under the race detector (see PKGS_RACE)
race:
	$(GO) test -count=1 -race -timeout 10m $(PKGS_RACE)

## fuzz-brief: each fuzz target for 5 000 inputs, a few seconds (longer: make fuzz, or FUZZTIME=2000000x)
fuzz-brief:
	@set -e; for t in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg internal jobs 2>/dev/null); do \
	  d=$$(dirname $$t); for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$t | sed 's/func //'); do \
	    echo "fuzz $$d $$f ($(FUZZTIME))"; $(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) ./$$d; done; done

fuzz:
	$(MAKE) fuzz-brief FUZZTIME=300000x

## bench: benchmarks with ratios against baselines measured in the same run, at
## each worker concurrency of BENCH_CONC (BENCH=regexp picks benchmarks)
BENCH_CONC ?= 2 4
BENCH ?= .
bench: deps
	@set -o pipefail; for c in $(BENCH_CONC); do echo "== worker concurrency $$c"; \
	  PAGEFLEET_WORKER_CONCURRENCY=$$c $(GO) test -run='^$$' -bench='$(BENCH)' -benchtime=1x -timeout 60m ./bench/... || exit 1; \
	done | tee bench.out

## chaos / soak: the long fault and leak tests
chaos: deps
	PAGEFLEET_CHAOS=long $(GO) test -count=1 -timeout 40m -run 'Chaos|Kill|Restart' -v ./e2e/...

soak: deps
	PAGEFLEET_SOAK_JOBS=2000 $(GO) test -count=1 -timeout 60m -run Soak -v ./e2e/...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin bench.out

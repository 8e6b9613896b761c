#!/usr/bin/env bash
# make run: Redis with AOF under .data/, one worker and the API on :8080
# (PAGEFLEET_API_ADDR, PAGEFLEET_WORKER_ADDR and REDIS_PORT move them).
# Ctrl-C stops the API and the worker, waits for them, then stops Redis.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deployments/local/deps.sh
mkdir -p .data
if [ ! -s .data/dev-api-key ]; then
  echo "pf_dev_$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)" > .data/dev-api-key
fi
export PAGEFLEET_DEV_API_KEY="${PAGEFLEET_DEV_API_KEY:-$(cat .data/dev-api-key)}"
REDIS_PORT="${REDIS_PORT:-6379}"
export PAGEFLEET_REDIS_URL="${PAGEFLEET_REDIS_URL:-redis://127.0.0.1:${REDIS_PORT}/0}"
mkdir -p .data/artifacts
export PAGEFLEET_ARTIFACTS_URL="${PAGEFLEET_ARTIFACTS_URL:-file://$(pwd)/.data/artifacts}"
api_addr="${PAGEFLEET_API_ADDR:-:8080}"
worker_addr="${PAGEFLEET_WORKER_ADDR:-:9090}"
api_url="http://localhost:${api_addr##*:}"

# start runs a command in the background in a process group of its own
# (job control is on while it starts), so that a Ctrl-C in the terminal
# reaches this script alone and cleanup decides the order. Without it every
# process got the SIGINT at once, and Redis could be gone before the worker
# had finished or handed back its jobs (it closes Redis last; see
# cmd/worker/main.go). Its pid is left in $started.
start() {
  set -m
  "$@" &
  started=$!
  set +m
}
redis_pid=""
app_pids=()
# stop sends SIGTERM to the given processes and waits until each has exited.
stop() {
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    # wait returns early when a signal comes in; wait again until p is gone.
    while kill -0 "$p" 2>/dev/null; do wait "$p" 2>/dev/null || true; done
  done
}
cleanup() {
  trap - EXIT
  # A second Ctrl-C must not leave the processes behind: the stop goes on.
  trap 'echo "still stopping: the worker finishes or hands back its jobs first…"' INT TERM
  echo; echo "stopping the API and the worker…"
  if [ ${#app_pids[@]} -gt 0 ]; then stop "${app_pids[@]}"; fi
  if [ -n "$redis_pid" ]; then
    echo "stopping Redis…"
    stop "$redis_pid"
  fi
  echo "stopped"
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM # and do not go on starting things
if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "using the Redis already on port $REDIS_PORT"
else
  start redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$PWD/.data" --appendonly yes \
    --appendfsync everysec --maxmemory-policy noeviction --save "" --loglevel warning
  redis_pid=$started
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
start ./bin/pagefleet-worker; app_pids+=("$started")
start ./bin/pagefleet-api; app_pids+=("$started")
for _ in $(seq 100); do curl -fs "$api_url/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
cat <<MSG

pagefleet is running: API on $api_url, worker metrics on $worker_addr
dev API key:  $PAGEFLEET_DEV_API_KEY

  export PF_KEY=$PAGEFLEET_DEV_API_KEY
  curl -s -X POST $api_url/v1/fetch?wait=30s -H "Authorization: Bearer \$PF_KEY" \\
       -d '{"url":"https://example.com","render_js":true,"output":["markdown"]}'

Ctrl-C stops the API and the worker, then Redis.
MSG
pids=("${app_pids[@]}")
if [ -n "$redis_pid" ]; then pids+=("$redis_pid"); fi
wait -n "${pids[@]}" || true

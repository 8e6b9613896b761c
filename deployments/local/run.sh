#!/usr/bin/env bash
# make run: Redis with AOF under .data/, one worker and the API on :8080.
# Ctrl-C stops all three.
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
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping…"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT
if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "using the Redis already on port $REDIS_PORT"
else
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$PWD/.data" --appendonly yes \
    --appendfsync everysec --maxmemory-policy noeviction --save "" --loglevel warning &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
./bin/pagefleet-worker & pids+=($!)
./bin/pagefleet-api & pids+=($!)
for _ in $(seq 100); do curl -fs localhost:8080/readyz >/dev/null 2>&1 && break; sleep 0.1; done
cat <<MSG

pagefleet is running: API on http://localhost:8080, worker metrics on :9090
dev API key:  $PAGEFLEET_DEV_API_KEY

  export PF_KEY=$PAGEFLEET_DEV_API_KEY
  curl -s -X POST localhost:8080/v1/fetch?wait=30s -H "Authorization: Bearer \$PF_KEY" \\
       -d '{"url":"https://example.com","render_js":true,"output":["markdown"]}'

Ctrl-C stops Redis, the worker and the API.
MSG
wait -n "${pids[@]}" || true

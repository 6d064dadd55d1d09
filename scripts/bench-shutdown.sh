#!/usr/bin/env bash
# Measures the time from SIGTERM to exit of an idle `shop worker`: it
# starts the worker, waits until /readyz answers, sends SIGTERM and times
# the exit, five times.
#
# usage: scripts/bench-shutdown.sh [worker flags...]
#   e.g. scripts/bench-shutdown.sh --mysql 'root@tcp(127.0.0.1:3306)/poolset_bench' --broker nats://127.0.0.1:4222
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/poolset
go build -o "$bin" ./examples/shop/cmd/shop
trap 'rm -rf "$(dirname "$bin")"' EXIT
admin=127.0.0.1:9191
"$bin" migrate "$@" >/dev/null
for i in 1 2 3 4 5; do
  "$bin" worker "$@" --admin "$admin" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do curl -sf "http://$admin/readyz" >/dev/null && break; sleep 0.05; done
  start=$(date +%s%N)
  kill -TERM "$pid"
  code=0; wait "$pid" || code=$?
  echo "run $i: exit $code after $(( ($(date +%s%N) - start) / 1000000 )) ms"
done

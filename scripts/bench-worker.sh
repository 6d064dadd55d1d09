#!/usr/bin/env bash
# Measures the worker end to end, as docs/BENCHMARKS.md reports it: seed
# 10,000 users and 1,000 products with 1,000,000 stock each, publish 20,000
# orders before the worker starts (1-3 items of quantity 1-5, every 100th
# from an unknown user), run `shop worker` until idle, then verify.
#
# usage: scripts/bench-worker.sh embedded|mariadb-nats|mariadb-rabbitmq|postgres-nats|postgres-rabbitmq [worker flags...]
#   e.g. scripts/bench-worker.sh mariadb-nats --group 1
#        scripts/bench-worker.sh mariadb-nats --group 500 --concurrency 2
set -euo pipefail
cd "$(dirname "$0")/.."
setup=${1:?usage: $0 embedded|mariadb-nats|mariadb-rabbitmq|postgres-nats|postgres-rabbitmq [worker flags...]}
shift
bin=$(mktemp -d)/poolset
go build -o "$bin" ./examples/shop/cmd/shop
data=$(mktemp -d)
trap 'rm -rf "$data" "$(dirname "$bin")"' EXIT
db="poolset_bench_worker"
case "$setup" in
  embedded) flags=(--data "$data") ;;
  mariadb-nats) flags=(--mysql "root@tcp(127.0.0.1:3306)/$db" --broker nats://127.0.0.1:4222) ;;
  mariadb-rabbitmq) flags=(--mysql "root@tcp(127.0.0.1:3306)/$db" --broker amqp://guest:guest@127.0.0.1:5672/) ;;
  postgres-nats) flags=(--postgres "postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" --broker nats://127.0.0.1:4222) ;;
  postgres-rabbitmq) flags=(--postgres "postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" --broker amqp://guest:guest@127.0.0.1:5672/) ;;
  *) echo "unknown setup $setup" >&2; exit 2 ;;
esac
if [[ "$setup" == postgres-* ]]; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
elif [ "$setup" != embedded ]; then
  mariadb -uroot -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || mysql -uroot -e "DROP DATABASE IF EXISTS $db"
fi
prefix="b$(date +%s%N)"
"$bin" seed "${flags[@]}" --users 10000 --products 1000 --stock 1000000
"$bin" load "${flags[@]}" --orders 20000 --users 10000 --products 1000 --prefix "$prefix" 2>/dev/null
"$bin" worker "${flags[@]}" --admin "" --exit-when-idle 1s "$@" 2>/dev/null | head -2
"$bin" verify "${flags[@]}" --expect-orders 20000 --prefix "$prefix" | tail -2

#!/usr/bin/env bash
# Runs BenchmarkPointRead (bench_test.go) as docs/BENCHMARKS.md section 4
# reports it: ROUNDS rounds, each running every backend/path pair once in
# its own process, in an order rotated by one each round, so that machine
# noise and the position in a round fall on every path alike. Writes the
# benchmark lines to OUT (go test format, for benchstat) and the load
# average before each round to OUT.load, then prints benchstat's tables
# when benchstat is installed (go install golang.org/x/perf/cmd/benchstat@latest).
#
# usage: [BACKENDS='sqlite mariadb postgres'] scripts/bench-point-read.sh [OUT [ROUNDS [BENCHTIME]]]
#   defaults: all three backends, point-read.txt, 8 rounds, 2s
# MariaDB comes from POOLSET_TEST_MYSQL_DSN (default root@tcp(127.0.0.1:3306)/test),
# PostgreSQL from POOLSET_TEST_POSTGRES_DSN (default
# postgres://postgres@127.0.0.1:5432/test?sslmode=disable); a backend whose
# server does not answer is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-point-read.txt}
rounds=${2:-8}
benchtime=${3:-2s}
bin=$(mktemp -d)/poolset.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" .
pairs=()
for backend in ${BACKENDS:-sqlite mariadb postgres}; do
  case $backend in
  postgres) paths="handle sqldb pgxpool" ;;
  *) paths="bare handle bare-read read" ;;
  esac
  for path in $paths; do pairs+=("backend=$backend/path=$path"); done
done
: >"$out"
: >"$out.load"
for ((r = 0; r < rounds; r++)); do
  echo "round $((r + 1)) $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out.load"
  for ((i = 0; i < ${#pairs[@]}; i++)); do
    pair=${pairs[$(((i + r) % ${#pairs[@]}))]}
    "$bin" -test.run '^$' -test.bench "^BenchmarkPointRead/$pair\$" -test.benchtime "$benchtime" >>"$out"
  done
done
echo "end $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out.load"
cat "$out.load"
if command -v benchstat >/dev/null; then
  benchstat -filter '/backend:(sqlite OR mariadb)' -col /path "$out"
  benchstat -filter '/path:(bare-read OR read)' -col /path "$out"
  benchstat -filter '/backend:postgres' -col '/path@(pgxpool sqldb handle)' "$out"
fi

#!/usr/bin/env bash
# Measures what importing the library costs a program: for each set of
# packages it builds a hello-world in a fresh module (a replace to this
# checkout, GOWORK=off), runs go mod tidy, and prints the binary's size,
# the modules its go.mod requires, and any shop, worker, broker, goose or
# testing package among its dependencies (there should be none).
# Usage: scripts/import-cost.sh   (from anywhere; writes under $TMPDIR)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() { # name imports... ; the body is read from stdin
  local name=$1; shift
  local d="$work/$name"
  mkdir -p "$d"
  cat >"$d/go.mod" <<EOM
module example.com/hello

go 1.26.8

require github.com/poolset/poolset v0.0.0

replace github.com/poolset/poolset => $repo
EOM
  {
    echo "package main"
    echo
    echo "import ("
    for p in "$@"; do echo "	\"$p\""; done
    echo ")"
    echo
    cat
  } >"$d/main.go"
  (cd "$d" && GOWORK=off GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 && GOWORK=off go build -o hello .)
  echo "== $name: $(stat -c %s "$d/hello") bytes"
  echo "   go.mod requires: $(sed -n '/^require/,$p' "$d/go.mod" | grep -o '^[[:space:]]*[a-z][^ ]* v[^ ]*' | grep -v poolset/poolset | awk '{print $1}' | tr '\n' ' ')"
  echo "   unwanted deps: $(cd "$d" && GOWORK=off go list -deps . | grep -E 'examples/shop|/worker|nats|goose|amqp|redis|^testing$' | tr '\n' ' ')"
}

build core-release github.com/poolset/poolset github.com/poolset/poolset/release <<'EOF2'
func main() { var rel release.Stack; _ = &rel; _ = poolset.Redact }
EOF2

build core-mysql context fmt os github.com/poolset/poolset github.com/poolset/poolset/mysql <<'EOF2'
func main() {
	ctx := context.Background()
	primary, err := mysql.Primary(os.Getenv("DSN"))
	if err != nil {
		fmt.Println(err)
		return
	}
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("close:", set.Close(ctx))
}
EOF2

build core-sqlite github.com/poolset/poolset github.com/poolset/poolset/sqlite <<'EOF2'
func main() { _, _, _ = sqlite.PoolConfigs("x.db", 1); _ = poolset.Redact }
EOF2

build core-mysql-metrics github.com/poolset/poolset github.com/poolset/poolset/mysql github.com/poolset/poolset/metrics <<'EOF2'
func main() { _, _ = mysql.Primary("root@tcp(127.0.0.1:3306)/test"); _ = metrics.NewSetCollector; _ = poolset.Redact }
EOF2

# core-mysql with the set reported through OpenTelemetry (the metric API
# and semconv; the program's own SDK and exporter are not counted).
build core-mysql-otelmetrics context fmt os github.com/poolset/poolset github.com/poolset/poolset/mysql github.com/poolset/poolset/otelmetrics go.opentelemetry.io/otel/metric/noop <<'EOF2'
func main() {
	ctx := context.Background()
	primary, err := mysql.Primary(os.Getenv("DSN"))
	if err != nil {
		fmt.Println(err)
		return
	}
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary})
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := otelmetrics.New(set, noop.NewMeterProvider())
	if err == nil {
		defer m.Close()
	}
	fmt.Println("close:", set.Close(ctx))
}
EOF2

# core-mysql with the live pools page on a net/http server.
build core-mysql-poolspage net/http github.com/poolset/poolset/mysql github.com/poolset/poolset/poolspage <<'EOF2'
func main() {
	_, _ = mysql.Primary("root@tcp(127.0.0.1:3306)/test")
	http.Handle("/pools", poolspage.New(nil, poolspage.Options{}))
	_ = http.ListenAndServe("127.0.0.1:0", nil)
}
EOF2

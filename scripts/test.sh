#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (ClickHouse from
# Debian's packages), starts a private ClickHouse on loopback with a data folder of this run's
# own, runs every Go test, and stops ClickHouse again. CI runs exactly this (.ci/run).
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -run Ingest     # extra arguments go to `go test`
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root (or sudo) to run: $*"; return 1; fi
}

# ClickHouse for the analytics tests; redis-server for the quota benchmark's baseline service;
# Node.js and npm for the Standard Webhooks reference verifier.
need=()
command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
command -v redis-server >/dev/null || need+=(redis-server)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian's packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

free_port() {
  local p
  for p in $(seq "$1" $(( $1 + 500 ))); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  log "no free port from $1"; return 1
}

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/allot-test-XXXXXX")"
ch_pid=""
cleanup() {
  if [ -n "$ch_pid" ] && kill -0 "$ch_pid" 2>/dev/null; then
    kill "$ch_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$ch_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$ch_pid" 2>/dev/null || true
  fi
  rm -rf "$run_dir"
}
trap cleanup EXIT

tcp_port="$(free_port 19000)"
http_port="$(free_port 18123)"
bash scripts/clickhouse-config.sh "$run_dir/clickhouse" "$tcp_port" "$http_port"
log "starting ClickHouse on 127.0.0.1:$tcp_port (data in $run_dir/clickhouse)"
clickhouse-server --config-file="$run_dir/clickhouse/config.xml" >"$run_dir/clickhouse/stdout.log" 2>&1 &
ch_pid=$!
for i in $(seq 120); do
  if clickhouse-client --host 127.0.0.1 --port "$tcp_port" -q 'SELECT 1' >/dev/null 2>&1; then break; fi
  if ! kill -0 "$ch_pid" 2>/dev/null; then
    log "ClickHouse exited:"; cat "$run_dir/clickhouse/stdout.log" "$run_dir/clickhouse/log/"*.log >&2 || true; exit 1
  fi
  if [ "$i" = 120 ]; then log "ClickHouse did not start in 60 s"; exit 1; fi
  sleep 0.5
done
log "ClickHouse $(clickhouse-client --host 127.0.0.1 --port "$tcp_port" -q 'SELECT version()') is up"

export ALLOT_TEST_CLICKHOUSE="clickhouse://127.0.0.1:$tcp_port/default"
log "go vet"
go vet ./...
log "go test"
go test -count=1 -race -timeout 40m "$@" ./...

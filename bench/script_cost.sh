#!/usr/bin/env bash
# What one customer update costs Redis in apply.lua, in instructions, counted
# by callgrind -- exact and repeatable, unlike time on a shared machine
# (docs/performance.md, "Redis's work per update, counted").
#
#   bash bench/script_cost.sh [SCRIPT] [CUSTOMERS] [ROUNDS]
#
# Runs redis-server under callgrind twice on a private unix socket: the
# set-up alone (every customer written once), then the set-up and ROUNDS
# rounds of updates (bench/script_calls.py); the difference in EVALSHA's
# instructions, divided by the updates, is the steady-state cost of one.
set -euo pipefail

cd "$(dirname "$0")/.."
script=${1:-daemon/lua/apply.lua}
customers=${2:-20000}
rounds=${3:-3}
bash scripts/install-deps.sh valgrind python3

dir=$(mktemp -d)
sock=$dir/redis.sock
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

# evalsha_ir ROUNDS: EVALSHA's inclusive instruction count over the stream
evalsha_ir() {
  python3 bench/script_calls.py "$script" "$dir/calls" "$customers" "$1"
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" redis-server --port 0 \
    --unixsocket "$sock" --save '' --appendonly no --dir "$dir" >/dev/null 2>"$dir/vg.log" &
  pid=$!
  for _ in $(seq 600); do
    redis-cli -s "$sock" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -s "$sock" --pipe --pipe-timeout 0 <"$dir/calls" | grep -q 'errors: 0' || {
    echo "script_cost: apply.lua failed on the stream" >&2
    exit 1
  }
  redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" || true
  pid=
  callgrind_annotate --inclusive=yes "$dir/cg.out" 2>/dev/null |
    awk '/:evalShaCommand /{gsub(",", "", $1); print $1; exit}'
}

setup=$(evalsha_ir 0)
total=$(evalsha_ir "$rounds")
echo "apply.lua ($script): $(( (total - setup) / (customers * rounds) )) instructions of Redis per" \
  "customer update ($customers customers, $rounds rounds; set-up $(( setup / customers )) per new customer)"

#!/usr/bin/env bash
# The clvd benchmark in one command (SPEC section 15; docs/performance.md):
# installs what is missing, builds Release into build-release, and runs
# clvd_bench with its defaults -- a max-rate run, a half-rate run and Redis's
# own ceiling for apply.lua -- printing a table and writing
# build-release/bench.json.  Arguments are passed to clvd_bench, e.g.
#
#   bash bench/run.sh                              # the default run (about 2 minutes)
#   bash bench/run.sh --events 2000000
#   bash bench/run.sh --customers 1000000 --skip-half --skip-ceiling
#   bash bench/run.sh --perf /tmp/clvd.perf        # also perf-record clvd and redis
#
# Not part of the tests: scripts/test.sh never runs it.
set -euo pipefail

cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DCLVD_WERROR=OFF -DCLVD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" >/dev/null

bench=build-release/clvd_bench
if ! grep -q '^clvd_bench:' build-release/Makefile 2>/dev/null; then
  # CMakeLists.txt has no clvd_bench target yet: build it by hand against clvcore
  bench=build-release/clvd_bench.local
  # shellcheck disable=SC2046
  cc -std=gnu11 -O2 -g -Wall -Wextra -Iinclude -Ibench \
    bench/bench.c bench/bench_util.c bench/bench_e2e.c bench/bench_ceiling.c \
    build-release/libclvcore.a \
    $(pkg-config --libs rdkafka hiredis yajl yaml-0.1 libmicrohttpd libsystemd) -lm -lpthread \
    -o "$bench"
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# what clvd is built from: daemon/, include/, the build
if [ -n "$(git status --porcelain -- daemon include CMakeLists.txt scripts/embed_lua.cmake 2>/dev/null)" ]; then
  commit="$commit+dirty"
fi
exec "$bench" --clvd build-release/clvd --commit "$commit" --json build-release/bench.json "$@"

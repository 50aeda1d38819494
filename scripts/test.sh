#!/usr/bin/env bash
# The README's test command: install what is missing, build with -Werror,
# run every unit and integration test (each integration test starts and stops
# its own redis-server and Kafka mock cluster on loopback), then the unit
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLVD_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" "$@"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCLVD_SANITIZE=ON -DCLVD_WERROR=ON >/dev/null
cmake --build build-asan -j"$jobs"
ctest --test-dir build-asan --output-on-failure -j"$jobs" -L unit

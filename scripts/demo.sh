#!/usr/bin/env bash
# The README's demo command: install what is missing, build clvd, and run
# `clvd demo` -- an embedded Kafka, a private redis-server and a synthetic
# shop whose simulated year 2025 runs in about half a minute, transitions on
# screen, a summary at the end.  Arguments go to the demo:
#
#   scripts/demo.sh [--customers N] [--seed S] [--fast] [--quiet]
#
# Needs no standard input (CI): packages are installed non-interactively,
# with sudo only when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh </dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release </dev/null >/dev/null
cmake --build build -j"$(nproc)" --target clvd </dev/null
exec build/clvd demo "$@" </dev/null

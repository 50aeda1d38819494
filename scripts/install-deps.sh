#!/usr/bin/env bash
# Install the Debian packages clvd needs to build, test and run -- only the
# missing ones, non-interactively.  Safe to run repeatedly.  Arguments name
# further packages a tool needs (bench/script_cost.sh: valgrind python3).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  librdkafka-dev libhiredis-dev libyaml-dev libyajl-dev
  libmicrohttpd-dev libsystemd-dev libcmocka-dev libjansson-dev
  redis-server redis-tools
)
PACKAGES+=("$@")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq </dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
# The packaged redis-server service is not used: tests start private ones.

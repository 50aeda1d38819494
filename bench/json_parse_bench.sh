#!/bin/sh
# Build and run the JSON library benchmark (docs/json.md): ./bench/json_parse_bench.sh [messages]
set -e; cd "$(dirname "$0")" && gcc -O2 -std=gnu11 -Wall -Wextra json_parse_bench.c -o /tmp/json_parse_bench -ljansson -ljson-c -lcjson -lyajl && exec /tmp/json_parse_bench "$@"

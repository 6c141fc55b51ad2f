#!/usr/bin/env bash
# A first end-to-end baseline: N records (default 100,000) of ~200-byte JSON,
# 10,000 distinct keys over 6 partitions, a JSON-decoding transform, and
# `zkflow run --exit-on-eof` timed from start to exit on the local services.
#
#   bench/baseline.sh [N]
#
# Prints records/s, zkflow's CPU time per record and its peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
KAFKA=127.0.0.1:${KAFKA_PORT:-9092}
ZK=127.0.0.1:${ZK_PORT:-2181}
RUN=bench$(date +%s)
WORK=$(mktemp -d /tmp/zkflow-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

scripts/services.sh start >/dev/null
scripts/services.sh topic "$RUN" 6
awk -v n="$N" 'BEGIN {
    pad = sprintf("%90s", ""); gsub(/ /, "x", pad)
    for (i = 0; i < n; i++)
        printf "dev-%d\t{\"id\":\"dev-%d\",\"seq\":%d,\"status\":\"online\",\"site\":\"site-%d\",\"fw\":\"1.2.3\",\"note\":\"%s\"}\n",
               i % 10000, i % 10000, i, i % 37, pad
}' | kcat -P -b "$KAFKA" -t "$RUN" -K $'\t' -z none
cat >"$WORK/bench.lua" <<LUA
local json = require("json")
return function(rec)
  local ev = json.decode(rec.value)
  return "/$RUN/devices/" .. ev.id, json.encode({ status = ev.status, seq = ev.seq, site = ev.site })
end
LUA
cat >"$WORK/bench.ini" <<INI
[kafka]
bootstrap.servers = $KAFKA
group.id = $RUN
[zookeeper]
connect = $ZK
[script bench]
file = bench.lua
topics = $RUN
root = /$RUN
INI
/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" build/zkflow run -c "$WORK/bench.ini" --exit-on-eof -q
read -r wall user sys rss_kb <"$WORK/time"
count=$(build/zktree "$ZK" "/$RUN/devices" | wc -l)
build/zktree --delete "$ZK" "/$RUN"
awk -v n="$N" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss_kb" -v c="$count" 'BEGIN {
    printf "records          %d (znodes written: %d)\n", n, c - 1
    printf "wall time        %.2f s\n", w
    printf "records/s        %.0f\n", n / w
    printf "zkflow CPU       %.1f us/record (user %.2f s, sys %.2f s)\n", (u + s) * 1e6 / n, u, s
    printf "peak RSS         %.1f MB\n", r / 1024
}'

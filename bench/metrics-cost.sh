#!/usr/bin/env bash
# What metrics cost: zkflow end to end on one dataset with metrics_listen
# off and on, alternating (off, on, off, on, ...), each run a new consumer
# group reading the whole topic with --exit-on-eof. Prints each run's
# records/s (from zkflow's summary line) and the ratio of the means.
#
#   bench/metrics-cost.sh            (N=200000 records, ROUNDS=2)
#
# Also prints the CPU seconds (user + system) zkflow used per run, which
# other load on the machine disturbs less than the rate does.
#
# Environment: N, ROUNDS, METRICS_PORT (default 9464), and ZK_PORT,
# KAFKA_PORT, KAFKA_CONTROLLER_PORT as for scripts/services.sh, which must
# be running. The dataset: N records, 10,000 keys, 200-byte values, 6
# partitions; each record upserts /bench-metrics/dev-<key>. A first run,
# not counted, creates the znodes, so every measured run only sets data.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-200000}
ROUNDS=${ROUNDS:-2}
KAFKA=127.0.0.1:${KAFKA_PORT:-9092}
ZK=127.0.0.1:${ZK_PORT:-2181}
PORT=${METRICS_PORT:-9464}
TOPIC=zkflow-metrics-cost-n$N
WORK=$(mktemp -d /tmp/zkflow-metrics-cost.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# A later run reuses the topic (its name holds N; each run checks that it
# consumed exactly N records).
if ! kcat -L -b "$KAFKA" -t "$TOPIC" 2>/dev/null | grep -q "topic \"$TOPIC\" with 6 partitions"; then
    scripts/services.sh topic "$TOPIC" 6 >/dev/null
    pad=$(printf '%0150d' 0)
    awk -v n="$N" -v pad="$pad" 'BEGIN { for (i = 0; i < n; i++)
        printf "dev-%d\t{\"seq\":%d,\"status\":\"online\",\"pad\":\"%s\"}\n", i % 10000, i, pad }' |
        kcat -P -b "$KAFKA" -t "$TOPIC" -K $'\t' -z none
fi

cat >"$WORK/cost.lua" <<'LUA'
return function(rec) return "/bench-metrics/" .. rec.key, rec.value end
LUA

run() { # NAME METRICS(0|1): print "records/s cpu-seconds"
    local listen=""
    [ "$2" = 1 ] && listen="127.0.0.1:$PORT"
    cat >"$WORK/$1.ini" <<INI
[kafka]
bootstrap.servers = $KAFKA
group.id = metrics-cost-$1-$$
[zookeeper]
connect = $ZK
[engine]
metrics_listen = $listen
[script cost]
file = cost.lua
topics = $TOPIC
root = /bench-metrics
INI
    /usr/bin/time -f '%U %S' -o "$WORK/$1.time" \
        build/zkflow run -c "$WORK/$1.ini" --exit-on-eof 2>"$WORK/$1.log"
    local rate
    rate=$(sed -n 's/.*finished: consumed=\([0-9]*\).*(\([0-9]*\) records\/s.*/\1 \2/p' "$WORK/$1.log")
    [ "${rate%% *}" = "$N" ] || { tail -3 "$WORK/$1.log" >&2; echo "bench: run $1 consumed ${rate%% *} of $N" >&2; exit 1; }
    echo "${rate##* } $(awk '{ printf "%.2f", $1 + $2 }' "$WORK/$1.time")"
}

run warmup 0 >/dev/null
off=() on=()
for r in $(seq "$ROUNDS"); do
    off+=("$(run off$r 0)")
    on+=("$(run on$r 1)")
    echo "round $r: off ${off[-1]% *} records/s ${off[-1]#* } cpu s," \
         "on ${on[-1]% *} records/s ${on[-1]#* } cpu s"
done
printf '%s\n' "${off[@]}" >"$WORK/off"
printf '%s\n' "${on[@]}" >"$WORK/on"
awk -v n="$N" 'FNR == 1 { f++ } { s[f] += $1; t[f] += $2; c[f]++ }
    END { a = s[1] / c[1]; b = s[2] / c[2]; x = t[1] / c[1]; y = t[2] / c[2]
          printf "N=%d, mean of %d runs each: metrics off %.0f records/s, %.2f cpu s; on %.0f records/s, %.2f cpu s\n", n, c[1], a, x, b, y
          printf "on/off: records/s %.3f, cpu %.3f\n", b / a, y / x }' \
    "$WORK/off" "$WORK/on"

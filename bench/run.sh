#!/usr/bin/env bash
# `make bench`: zkflow end to end against the ZooKeeper write ceiling, a Quix
# Streams + kazoo peer and Kafka's own consume rate, all in one run on the
# local services (scripts/services.sh). Writes bench/results.md (a table) and
# bench/results.json, and prints the table.
#
# Environment (all optional):
#   N                  records in the dataset, and ops of the like-for-like
#                      ceiling (default 1000000; at least 10000)
#   N_NEW              records of the new-tree dataset (default 200000)
#   CEILING_EXTRA_N    ops of the informational ceilings, 100x50 and 1x1000
#                      (default 300000, at most N)
#   PEER_N             records the peer processes (default N, the whole topic;
#                      less for a slice of the first records, reported as such;
#                      rates are records/s either way)
#   ENGINE_OPTS        lines added to zkflow's [engine] section, e.g.
#                      $'batch_max_ops = 200\n'
#   SKIP               space-separated steps to leave out: kcat ceiling zkflow
#                      at_least_once newtree sync peer
#   ZKFLOW_BASELINE    another zkflow binary (e.g. a build of an older commit),
#                      run the same way right before build/zkflow and
#                      reported as zkflow_baseline: before/after in one run
#   ZK_PORT KAFKA_PORT KAFKA_CONTROLLER_PORT ZKFLOW_STATE_DIR
#                      as for scripts/services.sh: a separate instance keeps
#                      the benchmark apart from `make test`, which restarts
#                      the default ZooKeeper (other processes still share the CPUs)
#
# The dataset: N records of 200-byte JSON values, 10,000 distinct keys
# (dev-0 .. dev-9999, record i has key i % 10000 and "seq": i), 6 partitions,
# in the topic zkflow-bench-v<DATASET_VERSION>-n<N>. A later run reuses the
# topic when it holds exactly that dataset. Change DATASET_VERSION whenever
# the generator changes.
#
# Every writer (ceilings, zkflow, peer) sets the data of the same 10,000
# existing znodes /bench/devices/dev-<k>, one set per record. Before zkflow
# and the peer, `bench_ceiling -P` resets them to "seq": -1; afterwards each
# must hold its key's last record (the sanity check).
#
# The new-tree dataset: N_NEW records as above, but each with a key of its
# own (dev-0 .. dev-<N_NEW - 1>), in zkflow-bench-new-v<DATASET_VERSION>-n<N_NEW>.
# zkflow (bench/newtree.lua) upserts /bench/tree/zkflow/<key>/state, and
# `bench_ceiling -C` creates /bench/tree/ceiling/<key> and its child
# state: every record a new node under a new parent, into an empty tree.
#
# The sync steps restart ZooKeeper with forceSync=yes (its own default,
# what production runs) for the like-for-like ceiling and zkflow, then
# with forceSync=no again (services.sh's development setting).
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET_VERSION=1
KEYS=10000
PARTITIONS=6
VALUE_BYTES=200
BATCH=100 # zkflow's default batch_max_ops
DEPTH=6   # one multi in flight per partition

N=${N:-1000000}
N_NEW=${N_NEW:-200000} # the new-tree dataset: every record a new key
CEILING_EXTRA_N=${CEILING_EXTRA_N:-300000}
PEER_N=${PEER_N:-$N}
ENGINE_OPTS=${ENGINE_OPTS:-}
SKIP=" ${SKIP:-} "
KAFKA=127.0.0.1:${KAFKA_PORT:-9092}
ZK=127.0.0.1:${ZK_PORT:-2181}
PARENT=/bench/devices
NEW_PARENT=/bench/tree
PYTHON=${PYTHON:-/usr/bin/python3}
VENV=.state/bench-venv
CEILING=build/bench_ceiling

for v in N N_NEW CEILING_EXTRA_N PEER_N; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v must be a whole number" >&2; exit 2; }
done
if [ "$N" -lt "$KEYS" ]; then echo "bench: N must be at least $KEYS" >&2; exit 2; fi
[ "$CEILING_EXTRA_N" -le "$N" ] || CEILING_EXTRA_N=$N
[ "$PEER_N" -le "$N" ] || PEER_N=$N

WORK=$(mktemp -d /tmp/zkflow-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
RESULTS=$WORK/results.tsv
FAILED=0
T0=$SECONDS

say() { printf 'bench: %s\n' "$*" >&2; }
put() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }   # key value
skipped() { [[ "$SKIP" == *" $1 "* ]]; }
fail() {   # key message
    say "$1: $2"
    put "$1.error" "$2"
    FAILED=1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

STATE=${ZKFLOW_STATE_DIR:-.state}
# CPU seconds (user + system) a service has used so far, from its pid file;
# 0 when it is not running.
proc_cpu_s() {   # pidfile
    local pid
    pid=$(cat "$1" 2>/dev/null) || { echo 0; return; }
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
        "/proc/$pid/stat" 2>/dev/null || echo 0
}

# The machine's busy and idle clock ticks so far, all cores together.
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }

# Runs a command under /usr/bin/time, and counts the CPU the ZooKeeper server
# and the Kafka broker used meanwhile (KEY.zk_server_cpu_s,
# KEY.kafka_broker_cpu_s) and how busy the machine's cores were
# (KEY.machine_busy_pct); puts KEY.seconds (wall, start to exit),
# KEY.user_s, KEY.sys_s and KEY.peak_rss_mb. Returns the command's status.
timed() {   # key cmd...
    local key=$1 t0 t1 rc=0 user sys rss
    shift
    local zk0 kafka0 busy0 idle0 busy1 idle1
    zk0=$(proc_cpu_s "$STATE/zookeeper/zookeeper.pid")
    kafka0=$(proc_cpu_s "$STATE/kafka/kafka.pid")
    read -r busy0 idle0 < <(cpu_ticks)
    t0=$(now)
    /usr/bin/time -f '%U %S %M' -o "$WORK/time" "$@" || rc=$?
    t1=$(now)
    read -r busy1 idle1 < <(cpu_ticks)
    put "$key.machine_busy_pct" "$(awk -v b=$((busy1 - busy0)) -v i=$((idle1 - idle0)) \
        'BEGIN { if (b + i) printf "%.1f", 100 * b / (b + i) }')"
    put "$key.zk_server_cpu_s" "$(elapsed "$zk0" "$(proc_cpu_s "$STATE/zookeeper/zookeeper.pid")")"
    put "$key.kafka_broker_cpu_s" "$(elapsed "$kafka0" "$(proc_cpu_s "$STATE/kafka/kafka.pid")")"
    read -r user sys rss < <(tail -n 1 "$WORK/time")
    put "$key.seconds" "$(elapsed "$t0" "$t1")"
    put "$key.user_s" "$user"
    put "$key.sys_s" "$sys"
    put "$key.peak_rss_mb" "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')"
    return "$rc"
}

# ---------------------------------------------------------------- dataset

# Record i of the dataset, as `key<TAB>value`: exactly VALUE_BYTES of JSON.
generate() {   # n keys
    awk -v n="$1" -v keys="$2" -v size="$VALUE_BYTES" 'BEGIN {
        pad = sprintf("%*s", size, ""); gsub(/ /, "x", pad)
        for (i = 0; i < n; i++) {
            k = i % keys
            v = sprintf("{\"id\":\"dev-%d\",\"seq\":%d,\"ts\":%.0f,\"status\":\"%s\",\"site\":\"site-%d\",\"fw\":\"1.%d.%d\",\"temp\":%.1f,\"battery\":%d,\"note\":\"",
                        k, i, 1795820543500 + i, (i % 10 ? "online" : "offline"), i % 37,
                        k % 4, k % 10, 15 + (i % 200) / 10, 100 - i % 100)
            printf "dev-%d\t%s%s\"}\n", k, v, substr(pad, 1, size - 2 - length(v))
        }
    }'
}

# Prints the topic's partition count, or nothing if it does not exist.
partitions_of() {   # topic
    kcat -b "$KAFKA" -L -t "$1" -m 5 2>/dev/null | awk -v t="$1" '
        index($0, "  topic \"" t "\" with ") == 1 && $0 !~ /: [^ ]/ { print $(NF-1) }'
}

# Sum over the topic's partitions of their beginning (-2) or end (-1) offsets.
offset_sum() {   # topic -1|-2
    local args=() p
    for ((p = 0; p < PARTITIONS; p++)); do args+=(-t "$1:$p:$2"); done
    kcat -b "$KAFKA" -Q "${args[@]}" 2>/dev/null | awk '
        / offset -?[0-9]+$/ { s += $NF; n++ } END { if (n) print s }'
}

# True if the topic holds exactly n records: PARTITIONS partitions, nothing
# deleted by retention.
holds_dataset() {   # topic n
    [ "$(partitions_of "$1")" = "$PARTITIONS" ] &&
        [ "$(offset_sum "$1" -2)" = 0 ] &&
        [ "$(offset_sum "$1" -1)" = "$2" ]
}

# Sets the variable VAR to the topic of the dataset of n records over `keys`
# keys (named BASE-nN), produced unless a complete one is there. A topic
# left incomplete (an interrupted run, expired segments) cannot be emptied
# with kcat, so the next free name gets the dataset instead. Puts KEY.reused
# and KEY.produce_s.
dataset() {   # var key base n keys
    local var=$1 key=$2 base=$3-n$4 n=$4 keys=$5 r t0 topic
    for r in 1 2 3 4 5 6 7 8 9; do
        topic=$base
        [ "$r" = 1 ] || topic=$base.r$r
        if holds_dataset "$topic" "$n"; then
            say "$key: reusing topic $topic"
            put "$key.reused" true
            printf -v "$var" %s "$topic"
            return
        fi
        [ -n "$(partitions_of "$topic")" ] || break
        say "$key: topic $topic exists but does not hold the dataset; trying the next name"
    done
    [ -z "$(partitions_of "$topic")" ] || { say "$key: no free topic name left for $base"; exit 1; }
    say "$key: producing $n records to $topic"
    scripts/services.sh topic "$topic" "$PARTITIONS"
    t0=$(now)
    generate "$n" "$keys" | kcat -P -b "$KAFKA" -t "$topic" -K $'\t' -z none \
        -X linger.ms=50 -X batch.num.messages=10000 -X batch.size=4000000 \
        -X queue.buffering.max.messages=1000000 -X queue.buffering.max.kbytes=1048576
    put "$key.reused" false
    put "$key.produce_s" "$(elapsed "$t0" "$(now)")"
    holds_dataset "$topic" "$n" || { say "$key: $topic does not hold $n records after producing"; exit 1; }
    printf -v "$var" %s "$topic"
}

# ---------------------------------------------------------------- ZooKeeper

# Sets every znode to seq -1 (creating what is missing).
reset_znodes() {
    "$CEILING" -P -z "$ZK" -r "$PARENT" -k "$KEYS"
}

# Puts KEY.znodes (znodes under PARENT) and KEY.znodes_current (those holding
# their key's last record among the first `n`); true if both are KEYS.
check_znodes() {   # key n
    local counts
    counts=$(set -o pipefail; build/zktree "$ZK" "$PARENT" | awk -F'\t' -v parent="$PARENT/dev-" -v n="$2" -v keys="$KEYS" '
        index($1, parent) == 1 {
            total++
            k = substr($1, length(parent) + 1) + 0
            last = k + keys * int((n - 1 - k) / keys)
            if (match($2, /"seq":-?[0-9]+/) && substr($2, RSTART + 6, RLENGTH - 6) + 0 == last)
                current++
        }
        END { print total + 0, current + 0 }') || { say "could not read $PARENT"; return 1; }
    put "$1.znodes" "${counts% *}"
    put "$1.znodes_current" "${counts#* }"
    [ "$counts" = "$KEYS $KEYS" ]
}

# ---------------------------------------------------------------- steps

step_kcat() {
    say "kcat: consuming $TOPIC to /dev/null"
    put kcat.records "$N"
    timed kcat kcat -C -b "$KAFKA" -t "$TOPIC" -o beginning -e -q >/dev/null ||
        fail kcat "kcat exited $?"
}

# The new-tree load's parent, empty (created anew).
reset_tree() {   # parent
    build/zktree --delete "$ZK" "$1" &&
        printf '' | build/zktree --put "$ZK" "$1"
}

# bench_ceiling's run: `ops` set ops over the KEYS znodes under PARENT or,
# with CEILING_NEW set, `ops` records each creating a new parent and child
# under NEW_PARENT/ceiling (emptied first).
ceiling() {   # key ops batch depth
    local out zk0 args=(-r "$PARENT" -k "$KEYS")
    if [ -n "${CEILING_NEW:-}" ]; then
        args=(-C -r "$NEW_PARENT/ceiling")
        reset_tree "$NEW_PARENT/ceiling"
        say "ceiling: $2 records creating a node under a new parent, $3 records per multi, $4 in flight"
    else
        say "ceiling: $2 set ops, multis of $3 ops, $4 in flight"
    fi
    zk0=$(proc_cpu_s "$STATE/zookeeper/zookeeper.pid")
    if ! out=$("$CEILING" -z "$ZK" "${args[@]}" -n "$2" -b "$3" -d "$4"); then
        fail "$1" "bench_ceiling failed"
        return
    fi
    put "$1.zk_server_cpu_s" "$(elapsed "$zk0" "$(proc_cpu_s "$STATE/zookeeper/zookeeper.pid")")"
    put "$1.ops" "$2"
    put "$1.batch" "$3"
    put "$1.depth" "$4"
    put "$1.seconds" "$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$out")"
}

# The like-for-like ceiling with one core kept busy by a shell loop beside
# it: what the server reaches when another program takes CPU from it, as
# zkflow (about 0.6 of a core) and the broker feeding it do in zkflow's runs
# on this 2-core machine. Information, not a goal.
ceiling_beside_busy_core() {   # key ops batch depth
    # timeout: the loop ends by itself should this script be interrupted.
    timeout 300 sh -c 'while :; do :; done' &
    local busy=$!
    ceiling "$@"
    kill "$busy"
    wait "$busy" 2>/dev/null || true
}

# zkflow over the dataset (devices.lua on TOPIC, setting the KEYS znodes
# under PARENT) or, with ZKFLOW_NEW set, over the new-tree dataset
# (newtree.lua on NEW_TOPIC, into an empty NEW_PARENT/zkflow).
step_zkflow() {   # [key binary [engine-line]]
    local key=${1:-zkflow} bin=${2:-build/zkflow} extra=${3:-}
    local group=zkflow-bench-$(date +%s%N) rc=0
    local script=devices topic=$TOPIC root=$PARENT n=$N
    if [ -n "${ZKFLOW_NEW:-}" ]; then
        script=newtree topic=$NEW_TOPIC root=$NEW_PARENT/zkflow n=$N_NEW
    fi
    cat >"$WORK/zkflow.ini" <<INI
[kafka]
bootstrap.servers = $KAFKA
group.id = $group

[zookeeper]
connect = $ZK

[engine]
$ENGINE_OPTS
$extra

[script bench]
file = $PWD/bench/$script.lua
topics = $topic
root = $root
param.root = $root
INI
    if [ -n "${ZKFLOW_NEW:-}" ]; then reset_tree "$root"; else reset_znodes; fi
    say "$key: $n records ($bin), group $group"
    put "$key.records" "$n"
    # Info level, not -q: the few lines include the summary with the number of
    # multis sent, and where the engine's time went.
    timed "$key" "$bin" run -c "$WORK/zkflow.ini" --exit-on-eof 2>"$WORK/zkflow.log" || rc=$?
    put "$key.exit_status" "$rc"
    put "$key.multis" "$(sed -n 's/.*finished:.*, \([0-9]*\) ZooKeeper batches.*/\1/p' "$WORK/zkflow.log")"
    put "$key.engine_time" "$(sed -n 's/.*engine time: \(.*\) (.*/\1/p' "$WORK/zkflow.log")"
    if [ "$rc" != 0 ]; then
        tail -n 20 "$WORK/zkflow.log" >&2
        fail "$key" "zkflow exited $rc"
    elif [ -n "${ZKFLOW_NEW:-}" ]; then
        local nodes
        nodes=$(build/zktree "$ZK" "$root" | grep -c '/state	') || true
        put "$key.znodes" "$nodes"
        [ "$nodes" = "$n" ] || fail "$key.sanity" "$root holds $nodes state znodes, not $n"
    elif ! check_znodes "$key" "$n"; then
        fail "$key.sanity" "$PARENT does not hold $KEYS znodes each with its key's last record"
    fi
}

# Restart the ZooKeeper server with forceSync = yes or no (its data stays).
zk_force_sync() {   # yes|no
    local pid
    pid=$(cat "$STATE/zookeeper/zookeeper.pid")
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    ZK_FORCE_SYNC=$1 scripts/services.sh start >/dev/null
}

# The peer's virtualenv, (re)installed when requirements.txt changes.
peer_venv() {
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        say "peer: installing python3-venv"
        apt-get install -y -q python3-venv >/dev/null
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    if ! cmp -s bench/peers/requirements.txt "$VENV/bench-requirements.txt"; then
        say "peer: installing bench/peers/requirements.txt into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check -r bench/peers/requirements.txt
        cp bench/peers/requirements.txt "$VENV/bench-requirements.txt"
    fi
}

step_peer() {
    local group=quix-kazoo-bench-$(date +%s%N) rc=0
    peer_venv
    reset_znodes
    say "peer: $PEER_N records, group $group"
    put peer.records "$PEER_N"
    put peer.slice "$([ "$PEER_N" = "$N" ] && echo false || echo true)"
    # Quix Streams may create a state dir in its working directory.
    (cd "$WORK" && timed peer "$OLDPWD/$VENV/bin/python" "$OLDPWD/bench/peers/quix_kazoo.py" \
        --topic "$TOPIC" --count "$PEER_N" --broker "$KAFKA" --zookeeper "$ZK" \
        --group "$group" --ops-per-txn "$BATCH") >"$WORK/peer.out" || rc=$?
    put peer.exit_status "$rc"
    put peer.transactions "$(sed -n 's/.* transactions=\([0-9]*\).*/\1/p' "$WORK/peer.out")"
    if [ "$rc" != 0 ]; then
        fail peer "the peer exited $rc"
    elif [ "$PEER_N" = "$N" ] && ! check_znodes peer "$N"; then
        fail peer.sanity "$PARENT does not hold $KEYS znodes each with its key's last record"
    fi
}

context() {
    put date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    put machine.nproc "$(nproc)"
    put machine.model "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    put machine.mem_gb "$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
    put machine.kernel "$(uname -r)"
    put versions.zkflow "$(build/zkflow --version | tr '\n' ';' | sed 's/;$//; s/;/, /g')"
    put versions.zookeeper_server "$(timeout 3 bash -c "exec 3<>/dev/tcp/${ZK%:*}/${ZK#*:}; printf srvr >&3; cat <&3" |
        sed -n 's/^Zookeeper version: \([^-,]*\).*/\1/p')"
    put versions.zookeeper_force_sync "$(sed -n 's/^forceSync=//p' "${ZKFLOW_STATE_DIR:-.state}/zookeeper/zoo.cfg" 2>/dev/null || true)"
    put versions.kafka "$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
    put versions.kcat "$(dpkg-query -W -f '${Version}' kcat 2>/dev/null || true)"
    put versions.gcc "$(${CC:-gcc} -dumpfullversion)"
    put dataset.topic "$TOPIC"
    put dataset.records "$N"
    put dataset.partitions "$PARTITIONS"
    put dataset.keys "$KEYS"
    put dataset.value_bytes "$VALUE_BYTES"
    if ! skipped newtree; then
        put dataset_new.topic "$NEW_TOPIC"
        put dataset_new.records "$N_NEW"
    fi
    if ! skipped peer; then
        put versions.python "$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')"
        for p in quixstreams kazoo confluent-kafka; do
            put "versions.${p//-/_}" "$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$p'))")"
        done
    fi
}

# ---------------------------------------------------------------- main

if [ ! -x /usr/bin/time ]; then
    say "installing time (/usr/bin/time)"
    apt-get install -y -q time >/dev/null
fi
put machine.load_before "$(cut -d' ' -f1 /proc/loadavg)"
scripts/services.sh start >/dev/null
dataset TOPIC dataset zkflow-bench-v$DATASET_VERSION "$N" "$KEYS"
skipped newtree || dataset NEW_TOPIC dataset_new zkflow-bench-new-v$DATASET_VERSION "$N_NEW" "$N_NEW"
skipped kcat || step_kcat
# The like-for-like ceiling runs right before and right after zkflow, on a
# ZooKeeper warmed up first (a freshly started JVM is far slower): the report
# takes the better of the two and shows both, so drift shows.
if ! skipped ceiling; then
    reset_znodes
    say "ceiling: warm-up, 300000 ops (not reported)"
    "$CEILING" -z "$ZK" -r "$PARENT" -k "$KEYS" -n 300000 -b 100 -d 50 >/dev/null
    ceiling ceiling_100x6_before "$N" "$BATCH" "$DEPTH"
    ceiling_beside_busy_core ceiling_100x6_busy "$N" "$BATCH" "$DEPTH"
fi
if [ -n "${ZKFLOW_BASELINE:-}" ] && ! skipped zkflow; then
    step_zkflow zkflow_baseline "$ZKFLOW_BASELINE"
fi
skipped zkflow || step_zkflow
# Issue 6: the cost of exactly_once (the default) against at_least_once.
skipped zkflow || skipped at_least_once ||
    step_zkflow zkflow_at_least_once build/zkflow "delivery = at_least_once"
if ! skipped ceiling; then
    ceiling ceiling_100x6_after "$N" "$BATCH" "$DEPTH"
    ceiling ceiling_100x50 "$CEILING_EXTRA_N" 100 50
    ceiling ceiling_1x1000 "$CEILING_EXTRA_N" 1 1000
fi
# A first load into a new tree: every record a new node under a new
# parent, beside the create ceiling of the same shape (the records of one
# zkflow batch, BATCH, per multi).
if ! skipped newtree; then
    skipped ceiling || CEILING_NEW=1 ceiling ceiling_create "$N_NEW" "$BATCH" "$DEPTH"
    if [ -n "${ZKFLOW_BASELINE:-}" ] && ! skipped zkflow; then
        ZKFLOW_NEW=1 step_zkflow zkflow_new_baseline "$ZKFLOW_BASELINE"
    fi
    skipped zkflow || ZKFLOW_NEW=1 step_zkflow zkflow_new
    skipped ceiling || CEILING_NEW=1 ceiling ceiling_create_after "$N_NEW" "$BATCH" "$DEPTH"
fi
# What production runs: ZooKeeper's own default, forceSync = yes (an fsync
# per transaction), for the like-for-like ceiling and zkflow.
if ! skipped sync; then
    say "restarting ZooKeeper with forceSync=yes"
    zk_force_sync yes
    skipped ceiling || ceiling ceiling_100x6_sync "$N" "$BATCH" "$DEPTH"
    skipped zkflow || step_zkflow zkflow_sync
    skipped ceiling || ceiling ceiling_100x6_sync_after "$N" "$BATCH" "$DEPTH"
    say "restarting ZooKeeper with forceSync=no"
    zk_force_sync no
fi
skipped peer || step_peer
context
put harness_s "$((SECONDS - T0))"

"$PYTHON" bench/report.py "$RESULTS" bench/results.json bench/results.md
cat bench/results.md
exit "$FAILED"

#!/usr/bin/env bash
# Integration tests: zkflow against a real ZooKeeper and a real Kafka broker,
# both started by scripts/services.sh. Each test makes its own topics, group
# and znode subtree (named after this run), produces records with kcat, runs
# build/zkflow, and reads ZooKeeper back with build/zktree.
#
#   tests/integration.sh [TEST...]     (default: every test_* below)
#
# Ends with the line "N passed, N failed"; exit status 1 if any failed.
set -uo pipefail

cd "$(dirname "$0")/.."
ZKFLOW=$PWD/build/zkflow
ZKTREE=$PWD/build/zktree
KAFKA=127.0.0.1:${KAFKA_PORT:-9092}
ZK=127.0.0.1:${ZK_PORT:-2181}
RUN=it$(date +%s)$$
ZK_PIDFILE=${ZKFLOW_STATE_DIR:-.state}/zookeeper/zookeeper.pid
WORK=$(mktemp -d /tmp/zkflow-it.XXXXXX)
WATCHDOGS=()
trap 'end_watchdogs; rm -rf "$WORK"' EXIT

passed=0 failed=0 failures=()

# ------------------------------------------------------------------ helpers

fail() { echo "    FAIL: $*"; return 1; }

topic() { # NAME PARTITIONS: create the topic, print nothing
    scripts/services.sh topic "$1" "$2" >/dev/null
}

produce() { # TOPIC < "key<TAB>value" lines
    kcat -P -b "$KAFKA" -t "$1" -K $'\t' -z none
}

tree() { # PATH: "path<TAB>data" lines of the subtree
    "$ZKTREE" "$ZK" "$1"
}

# config NAME GROUP [script-section...]: write $WORK/NAME.ini
# ($KAFKA_EXTRA: more [kafka] lines, each ending in a newline)
config() {
    local name=$1 group=$2
    shift 2
    {
        printf '[kafka]\nbootstrap.servers = %s\ngroup.id = %s\n%s' "$KAFKA" "$group" "${KAFKA_EXTRA:-}"
        printf '[zookeeper]\nconnect = %s\nconnect_timeout_ms = 5000\n' "$ZK"
        printf '%s\n' "$@"
    } >"$WORK/$name.ini"
    echo "$WORK/$name.ini"
}

# zkflow_bg ARGS...: start zkflow in the background, stderr to $WORK/log
# (or to $BG_LOG), its pid in $BG; killed after 300 s if still running.
# Unlike timeout(1), which forwards only some signals, and once, signals
# sent to $BG reach zkflow itself. The watchdog kills $BG only if it is
# still that process (same start time): by then its pid may be another's,
# as pids come round again within minutes on a busy machine. It holds none
# of this script's output open, so that a pipe reading it ends with the
# script, and it ends with the script.
zkflow_bg() {
    "$ZKFLOW" "$@" 2>"${BG_LOG:-$WORK/log}" &
    BG=$!
    local started
    started=$(started_at $BG)
    ( exec >/dev/null 2>&1
      trap 'kill $sleeper; exit' TERM
      sleep 300 & sleeper=$!
      wait $sleeper
      [ -n "$started" ] && [ "$(started_at $BG)" = "$started" ] && kill -9 $BG ) &
    WATCHDOGS+=("$! $(started_at $!)")
}

# started_at PID: when the process started (clock ticks since boot), which
# with its pid tells it from a later process given the same pid.
started_at() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null; }

end_watchdogs() {
    local w
    for w in "${WATCHDOGS[@]}"; do
        [ "$(started_at "${w% *}")" = "${w#* }" ] && kill "${w% *}" 2>/dev/null
    done
}

# zkflow ARGS...: run with a time limit; stderr saved to $WORK/log
zkflow() {
    timeout 120 "$ZKFLOW" "$@" 2>"$WORK/log"
}

# keyed TOPIC N KEYS [FROM]: produce records FROM (default 0) to N - 1;
# record i has key k(i % KEYS) and value i, so the last record of key kK is
# the largest i with i % KEYS = K.
keyed() {
    awk -v from="${4:-0}" -v n="$2" -v k="$3" \
        'BEGIN { for (i = from; i < n; i++) printf "k%d\t%d\n", i % k, i }' | produce "$1"
}

# stream TOPIC KEYS [PER]: produce records as `keyed` does (from 0), PER
# (default 100) every 0.1 s, in the background until stop_stream (or the
# end of the test). A test that needs zkflow to be busy when something
# happens keeps records coming until it did, instead of guessing how many
# would last long enough.
stream() {
    STREAMS=$((${STREAMS:-0} + 1))
    STREAM_TAG=$WORK/stream.$STREAMS
    {
        local i=0 per=${3:-100}
        while [ ! -e "$STREAM_TAG.stop" ] && [ -d "$WORK" ]; do
            awk -v s=$i -v n="$per" -v k="$2" \
                'BEGIN { for (i = s; i < s + n; i++) printf "k%d\t%d\n", i % k, i }'
            i=$((i + per))
            sleep 0.1
        done
        # One more batch, produced after the stop was asked for.
        awk -v s=$i -v n="$per" -v k="$2" \
            'BEGIN { for (i = s; i < s + n; i++) printf "k%d\t%d\n", i % k, i }'
        { echo $((i + per)) >"$STREAM_TAG.n"; } 2>/dev/null # ($WORK gone: the run ended)
    } | produce "$1" &
    STREAM=$!
}

# stop_stream: end the stream once one more batch is out; sets STREAMED to
# the number of records it produced (0 .. STREAMED - 1).
stop_stream() {
    touch "$STREAM_TAG.stop"
    wait "$STREAM" || fail "the producer failed" || return 1
    STREAMED=$(cat "$STREAM_TAG.n")
}

# last_per_key ROOT N KEYS [SUFFIX]: write to $WORK/expected the tree
# `keyed` records leave when each key's value goes to ROOT/kK[SUFFIX].
last_per_key() {
    {
        printf '%s\t\n' "$1"
        awk -v n="$2" -v keys="$3" 'BEGIN { for (i = 0; i < n; i++) last[i % keys] = i
                                           for (k = 0; k < keys; k++) print "k" k "\t" last[k] }' |
            sort | awk -F'\t' -v r="$1" -v sfx="${4:-}" '{
                if (sfx != "") printf "%s/%s\t\n", r, $1
                printf "%s/%s%s\t%s\n", r, $1, sfx, $2 }'
    } >"$WORK/expected"
}

# expect_last_per_key ROOT N KEYS [SUFFIX]: the tree is that one.
expect_last_per_key() {
    last_per_key "$@"
    expect_tree "$1" "$WORK/expected"
}

# wait_last_per_key ROOT N KEYS [SUFFIX]: wait until it is (a running zkflow
# applied every record), then as expect_last_per_key.
wait_last_per_key() {
    last_per_key "$@"
    wait_until $LIMIT tree_is "$1" "$WORK/expected"
    expect_tree "$1" "$WORK/expected"
}

tree_is() { tree "$1" 2>/dev/null | cmp -s - "$2"; } # PATH EXPECTED-FILE

# Every wait below is for an event (a log line, nodes written, a metric);
# LIMIT seconds bound it only for when the event never comes, far above
# what a slow machine under load needs.
LIMIT=120

# wait_until SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds;
# 1 once SECONDS have passed without.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

# wait_for_nodes ROOT N: wait until ROOT holds more than N nodes.
wait_for_nodes() {
    wait_until $LIMIT nodes_over "$1" "$2" ||
        fail "$1 holds $(tree "$1" 2>/dev/null | wc -l) node(s) after $LIMIT s, expected more than $2"
}
nodes_over() { [ "$(tree "$1" 2>/dev/null | wc -l)" -gt "$2" ]; }

# wait_for_children ROOT N: wait until ROOT has at least N children.
wait_for_children() {
    wait_until $LIMIT children_at_least "$1" "$2" ||
        fail "$1 has $("$ZKTREE" --count "$ZK" "$1") children after $LIMIT s, expected $2"
}
children_at_least() { [ "$("$ZKTREE" --count "$ZK" "$1" 2>/dev/null || echo 0)" -ge "$2" ]; }

# wait_log STRING [FILE [N]]: wait until FILE ($WORK/log) has at least N
# (default 1) lines holding the fixed STRING.
wait_log() {
    wait_until $LIMIT log_has "$@" ||
        { tail -5 "${2:-$WORK/log}"; fail "after $LIMIT s, ${2:-log} has fewer than ${3:-1} line(s) with: $1"; }
}
log_has() { [ "$(grep -cF -- "$1" "${2:-$WORK/log}")" -ge "${3:-1}" ]; }

# expect_each_once ROOT TOPIC: ROOT's children hold "partition:offset" of
# every record of TOPIC, each exactly once (the tree of a transform that
# makes one sequential node per record).
expect_each_once() {
    tree "$1" | tail -n +2 | cut -f2 | sort >"$WORK/got"
    kcat -C -b "$KAFKA" -t "$2" -e -q -f '%p:%o\n' | sort >"$WORK/want"
    local dups missing extra
    dups=$(uniq -d "$WORK/got" | wc -l)
    missing=$(sort -u "$WORK/got" | comm -23 "$WORK/want" - | wc -l)
    extra=$(sort -u "$WORK/got" | comm -13 "$WORK/want" - | wc -l)
    [ "$(wc -l <"$WORK/want")" -gt 0 ] || fail "$2 holds no record" || return 1
    [ "$dups" = 0 ] || fail "$dups record(s) applied twice, e.g. $(uniq -d "$WORK/got" | head -3 | tr '\n' ' ')" || return 1
    [ "$missing" = 0 ] || fail "$missing of $(wc -l <"$WORK/want") record(s) missing" || return 1
    [ "$extra" = 0 ] || fail "$extra node(s) name no record of $2"
}

# zk_kill: kill -9 the local ZooKeeper and wait until it is gone, so that
# `services.sh start` starts a new one.
zk_kill() {
    local p
    p=$(cat "$ZK_PIDFILE")
    kill -KILL "$p"
    while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
}

# applied_in FILE: the applied= count of a run's summary in FILE
applied_in() {
    sed -n 's/.*finished: .* applied=\([0-9]*\).*/\1/p' "$1"
}

consumed() { # the consumed= count of the last run's summary
    sed -n 's/.*finished: consumed=\([0-9]*\).*/\1/p' "$WORK/log"
}

expect_tree() { # PATH EXPECTED-FILE
    tree "$1" >"$WORK/actual" || return 1
    diff -u "$2" "$WORK/actual" >"$WORK/diff" && return 0
    head -20 "$WORK/diff"
    fail "tree under $1 differs from what the records imply"
}

expect_exit() { # WANT GOT
    [ "$1" = "$2" ] || { tail -5 "$WORK/log"; fail "exit status $2, expected $1"; }
}

expect_log() { # FIXED-STRING
    grep -qF -- "$1" "$WORK/log" || { tail -5 "$WORK/log"; fail "log lacks: $1"; }
}

# ------------------------------------------------------------------ tests

# Many keys over 4 partitions: the last record of each key wins, and missing
# parents are created. Then a second group replays every record over the same
# tree, which must not change.
test_last_write_wins_and_replay() {
    local t=$RUN-order root=/$RUN/order
    topic "$t" 4
    awk -v n=3000 'BEGIN { for (i = 0; i < n; i++) printf "k%d\tv%d-%d\n", i % 97, i % 97, i }' | produce "$t"
    cat >"$WORK/order.lua" <<LUA
return function(rec)
  return "$root/" .. rec.key .. "/latest", rec.value
end
LUA
    local cfg
    cfg=$(config order "$RUN-order" "[script order]" "file = order.lua" "topics = $t" "root = $root")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 3000 ] || fail "consumed $(consumed), expected 3000" || return 1
    {
        printf '%s\t\n' "$root"
        awk 'BEGIN { for (i = 0; i < 3000; i++) last[i % 97] = i
                     for (k = 0; k < 97; k++) print "k" k "\tv" k "-" last[k] }' |
            sort | awk -F'\t' -v r="$root" '{ printf "%s/%s\t\n%s/%s/latest\t%s\n", r, $1, r, $1, $2 }'
    } >"$WORK/expected"
    expect_tree "$root" "$WORK/expected" || return 1

    cfg=$(config replay "$RUN-replay" "[script order]" "file = order.lua" "topics = $t" "root = $root")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 3000 ] || fail "replay consumed $(consumed), expected 3000" || return 1
    expect_tree "$root" "$WORK/expected"
}

# One partition, so the order is total: upserts, deletes (also of absent
# nodes), creates (also of existing nodes), sets, and skipped records.
test_ops_deletes_skips() {
    local t=$RUN-ops root=/$RUN/ops
    topic "$t" 1
    produce "$t" <<EOF
upsert	$root/a/x 1
upsert	$root/b 1
delete	$root/a/x
upsert	$root/a/x 2
delete	$root/b
delete	$root/never
create	$root/c first
create	$root/c second
set	$root/c third
skip	$root/skipped
upsert	$root/d
EOF
    cat >"$WORK/ops.lua" <<'LUA'
return function(rec)
  local path, data = rec.value:match("^(%S+) ?(.*)$")
  if rec.key == "skip" then return nil end
  if data == "" then data = nil end
  return path, data, rec.key
end
LUA
    local cfg
    cfg=$(config ops "$RUN-ops" "[script ops]" "file = ops.lua" "topics = $t" "root = $root")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    expect_log "consumed=11 applied=10 skipped=1" || return 1
    printf '%s\t\n' "$root" "$root/a" >"$WORK/expected"
    printf '%s\t%s\n' "$root/a/x" 2 "$root/c" third >>"$WORK/expected"
    printf '%s\t\n' "$root/d" >>"$WORK/expected"
    expect_tree "$root" "$WORK/expected"
}

# --dry-run prints each record's ops as zkflow test lines, writes nothing to
# ZooKeeper and commits nothing: a second dry run sees the same records.
test_dry_run_writes_and_commits_nothing() {
    local t=$RUN-dry root=/$RUN/dry
    topic "$t" 1
    printf 'a\t1\nskip\t-\nb\t2\n' | produce "$t"
    cat >"$WORK/dry.lua" <<LUA
return function(rec)
  if rec.key == "skip" then return nil end
  return "$root/" .. rec.key, rec.value
end
LUA
    local cfg run
    cfg=$(config dry "$RUN-dry" "[script d]" "file = dry.lua" "topics = $t" "root = $root")
    for run in 1 2; do
        timeout 120 "$ZKFLOW" run -c "$cfg" --exit-on-eof --dry-run >"$WORK/out" 2>"$WORK/log"
        expect_exit 0 $? || return 1
        cat >"$WORK/expected" <<EOF
{"offset":0,"ops":[{"op":"upsert","path":"$root/a","data":"1"}]}
{"offset":1,"skip":true}
{"offset":2,"ops":[{"op":"upsert","path":"$root/b","data":"2"}]}
EOF
        diff -u "$WORK/expected" "$WORK/out" || fail "dry run $run printed other lines" || return 1
    done
    [ -z "$(tree "$root")" ] || fail "the dry run wrote to ZooKeeper"
}

# Hot reload while records stream in (one partition, so offsets order every
# effect): a script is replaced 24 times, by good versions and by versions
# that do not compile, raise while loading, return no function, or fail
# their fixtures (a record of key "probe" must be skipped). Each version is
# written once zkflow has dealt with the one before: a good one once it has
# written records, a broken one once its rejection is logged. Every record
# lands once, each written by the version live when it was transformed
# (versions never go back in offset order), every good version writes, no
# broken version ever does, and every swap and rejection is logged with the
# versions.
# MODE file: the script is a file, saved in place or renamed over.
# MODE znode: it is kept in a znode (source = zk:...), with its fixtures in
# the znodes beside it; the first version is published with `zkflow
# publish`, the others written straight into the znode, unchecked.
reload_under_load() {
    local mode=$1 t=$RUN-reload-$1 root=/$RUN/reload-$1
    local src=$WORK/reload-$mode.lua znode=/$RUN/scripts/reload
    topic "$t" 1
    write_version() { # N KIND [mv]
        local body skip='if rec.key == "probe" then return nil end'
        case $2 in
            good) body="return function(rec) $skip return \"$root/\" .. rec.offset, \"v$1\" end" ;;
            syntax) body="return function(rec) return \"$root/\" .. rec.offset, \"BAD$1\" end end" ;;
            raise) body="error(\"broken init $1\")" ;;
            notfn) body="return \"BAD$1\"" ;;
            fixture) body="return function(rec) return \"$root/\" .. rec.offset, \"BAD$1\" end" ;;
        esac
        if [ "$mode" = znode ]; then
            printf '%s\n' "$body" | "$ZKTREE" --put "$ZK" "$znode"
        elif [ "${3:-}" = mv ]; then
            printf '%s\n' "$body" >"$src.tmp" && mv "$src.tmp" "$src"
        else
            printf '%s\n' "$body" >"$src"
        fi
    }
    printf '{"key":"probe","value":"x"}\n' >"${src%.lua}.records.jsonl"
    printf '{"offset":0,"skip":true}\n' >"${src%.lua}.expected.jsonl"
    local cfg pid source="file = reload-$mode.lua"
    [ "$mode" = znode ] && source="source = zk:$znode"
    cfg=$(config reload "$RUN-reload-$mode" "[script r]" "$source" "topics = $t" "root = $root")
    if [ "$mode" = znode ]; then
        mode=file write_version 0 syntax # publish refuses it: nothing is written
        "$ZKFLOW" publish -c "$cfg" r "$src" 2>"$WORK/log" && fail "publish took a broken script" && return 1
        expect_log "reload-znode.lua:1:" || return 1
        [ -z "$(tree "$znode")" ] || fail "a refused publish wrote" || return 1
        mode=file write_version 0 good
        "$ZKFLOW" publish -c "$cfg" r "$src" >"$WORK/out" 2>"$WORK/log" || { cat "$WORK/log"; fail "publish failed"; return 1; }
        grep -q "1 fixture record(s) passed" "$WORK/out" || fail "publish: $(cat "$WORK/out")" || return 1
    else
        write_version 0 good
    fi
    zkflow_bg run -c "$cfg"
    pid=$BG
    stream "$t" 1 20
    # What ends each version's turn: the log line for a broken one, and for
    # a good one a reload logged and a record it wrote.
    local kinds=(good syntax good raise good notfn good fixture) k kind
    local -A sign=([syntax]="'<eof>' expected near 'end'" [notfn]="must return a function, it returned string"
                   [fixture]="fails its fixtures: ")
    wait_until $LIMIT wrote_version "$root" 0 || fail "version 0 wrote nothing" || { kill $pid; stop_stream; return 1; }
    for k in $(seq 1 24); do
        kind=${kinds[$((k % 8))]}
        local reloads rejections
        reloads=$(grep -c 'reloaded, version' "$WORK/log")
        rejections=$(grep -cF -- "${sign[$kind]:-broken init $k}" "$WORK/log")
        write_version "$k" "$kind" "$([ $((k % 2)) = 0 ] && echo mv)"
        if [ "$kind" = good ]; then
            wait_log "reloaded, version" "$WORK/log" $((reloads + 1)) || { kill $pid; stop_stream; return 1; }
            wait_until $LIMIT wrote_version "$root" "$k" ||
                fail "version $k wrote nothing" || { kill $pid; stop_stream; return 1; }
        else
            wait_log "${sign[$kind]:-broken init $k}" "$WORK/log" $((rejections + 1)) ||
                { kill $pid; stop_stream; return 1; }
        fi
    done
    stop_stream || { kill $pid; return 1; }
    local n=$STREAMED
    wait_for_children "$root" $n || { kill $pid; return 1; }
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    tree "$root" | tail -n +2 | awk -F'\t' '{ n = split($1, p, "/"); print p[n] "\t" $2 }' | sort -n >"$WORK/got"
    [ "$(wc -l <"$WORK/got")" = $n ] || fail "$(wc -l <"$WORK/got") records landed, expected $n" || return 1
    ! grep -q BAD "$WORK/got" || fail "a broken version wrote" || return 1
    awk -F'\t' '{ v = substr($2, 2) + 0; if (v < last) { print "offset " $1 " has v" v " after v" last; bad = 1 } last = v }
                END { exit bad }' "$WORK/got" || fail "a version went back" || return 1
    [ "$(grep -c 'reloaded, version' "$WORK/log")" = 12 ] || fail "$(grep -c 'reloaded, version' "$WORK/log") reloads logged, expected 12" || return 1
    [ "$(grep -c 'reload rejected, version' "$WORK/log")" -ge 12 ] || fail "fewer than 12 rejections logged" || return 1
    expect_log ":1: broken init" || return 1
    expect_log "must return a function" || return 1
    expect_log "fails its fixtures: " || return 1
    expect_log ".expected.jsonl:1: expected {\"offset\":0,\"skip\":true}, got" || return 1
    grep -q "12 script reloads, [1-9][0-9]* rejected" "$WORK/log" || fail "summary lacks the reload counts" || return 1
    [ "$(cut -f2 "$WORK/got" | sort -u | wc -l)" = 13 ] ||
        fail "$(cut -f2 "$WORK/got" | sort -u | wc -l) versions wrote records, expected 13"
}
# wrote_version ROOT N: a node under ROOT holds vN
wrote_version() { tree "$1" | grep "	v$2\$" >/dev/null; }

test_hot_reload_file() { reload_under_load file; }
test_hot_reload_znode() { reload_under_load znode; }

# SIGHUP re-reads the configuration: a section added (its topic is
# subscribed), a section changed (its new params apply from the next
# record), a broken file (rejected with FILE:LINE, the running one stays),
# a [zookeeper] change (reported as needing a restart), a section removed
# (its topic's records are left alone).
test_config_reload_on_sighup() {
    local ta=$RUN-cfg-a tb=$RUN-cfg-b root=/$RUN/cfg
    topic "$ta" 1; topic "$tb" 1
    cat >"$WORK/tag.lua" <<LUA
return function(rec) return "$root/" .. rec.topic:sub(-1) .. "/" .. rec.offset, params.tag end
LUA
    local a=("[script a]" "file = tag.lua" "topics = $ta" "param.tag = a1")
    local b=("[script b]" "file = tag.lua" "topics = $tb" "param.tag = b1")
    local cfg pid
    cfg=$(config cfgreload "$RUN-cfg" "${a[@]}")
    zkflow_bg run -c "$cfg"
    pid=$BG
    count() { tree "$root/$1" 2>/dev/null | grep -c "	$2\$"; }
    count_over() { [ "$(count "$1" "$2")" -ge "$3" ]; }
    wait_count() { # DIR TAG N: wait until N nodes of DIR hold TAG
        wait_until $LIMIT count_over "$@" || fail "$root/$1: $(count "$1" "$2") nodes hold $2, expected $3"
    }
    keyed "$ta" 50 5; wait_count a a1 50 || return 1

    a[3]="param.tag = a2"
    config cfgreload "$RUN-cfg" "${a[@]}" "${b[@]}" "session_timeout_ms = 20000" >/dev/null
    # The last line went into [script b]: move it where it means a restart.
    sed -i '/^session_timeout_ms/d; s/^connect_timeout_ms = 5000$/&\nsession_timeout_ms = 20000/' "$cfg"
    kill -HUP $pid
    wait_log "configuration reloaded" || return 1
    expect_log "added: b; changed: a; removed: none" || return 1
    expect_log "changes to [kafka], [zookeeper] or [engine] take effect only after a restart" || return 1
    keyed "$ta" 50 5; keyed "$tb" 50 5
    wait_count a a2 50 || return 1
    wait_count b b1 50 || return 1

    printf 'bogus line\n' >>"$cfg"
    kill -HUP $pid
    wait_log "configuration reload rejected" || return 1
    expect_log "configuration reload rejected, the running one stays: $cfg:$(wc -l <"$cfg"): syntax error" || return 1
    keyed "$ta" 50 5; wait_count a a2 100 || return 1

    config cfgreload "$RUN-cfg" "${b[@]}" >/dev/null
    kill -HUP $pid
    wait_log "removed: a" || return 1
    expect_log "added: none; changed: none; removed: a" || return 1
    keyed "$ta" 50 5; keyed "$tb" 50 5
    wait_count b b1 100 || return 1
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    # Looked at once zkflow is gone: never applied, rather than not yet.
    [ "$(tree "$root/a" | tail -n +2 | wc -l)" = 150 ] || fail "records of a removed section were applied"
}

# The whole op vocabulary against a real ZooKeeper, in one partition so the
# order is total: op tables and atomic lists (with parents created inside the
# multi), create modes (sequential, container, ttl), version guards, recursive
# delete; then a list whose check fails, which applies none of its ops.
test_op_tables_lists_and_modes() {
    local t=$RUN-optab R=/$RUN/optab
    topic "$t" 1
    produce "$t" <<EOF
k	[{"path":"$R/list/a/b","data":"1"},{"op":"create","path":"$R/list/idx","data":"i"}]
k	{"op":"upsert","path":"$R/seq"}
k	{"op":"create","path":"$R/seq/n-","data":"s0","mode":"sequential"}
k	[{"op":"create","path":"$R/seq/n-","data":"s1","mode":"sequential"},{"op":"create","path":"$R/seq/n-","data":"s2","mode":"sequential"}]
k	{"op":"create","path":"$R/cont","mode":"container"}
k	{"op":"create","path":"$R/cont/c","data":"child"}
k	{"op":"create","path":"$R/ttl","data":"lives","mode":"ttl","ttl":600000}
k	[{"path":"$R/tree/a/b/c"},{"path":"$R/tree/a/d"},{"path":"$R/tree/e"}]
k	{"op":"delete","path":"$R/tree","recursive":true}
k	{"op":"delete","path":"$R/never/there","recursive":true}
k	{"op":"set","path":"$R/list/idx","data":"v1","version":0}
k	[{"op":"create","path":"$R/list/idx","data":"ignored"},{"path":"$R/list/y","data":"y"},{"op":"check","path":"$R/list/idx","version":1}]
k	[{"path":"$R/list/x","data":"never"},{"op":"check","path":"$R/list/idx","version":5}]
k	{"path":"$R/after","data":"not reached"}
EOF
    cat >"$WORK/optab.lua" <<'LUA'
local json = require("json")
return function(rec) return json.decode(rec.value) end
LUA
    local cfg
    cfg=$(config optab "$RUN-optab" "[script o]" "file = optab.lua" "topics = $t" "root = $R")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 1 $? || return 1
    expect_log "ZooKeeper refused op 2 of 2 (check $R/list/idx): bad version (record $t [0] offset 12)" || return 1
    cat >"$WORK/expected" <<EOF
$R	
$R/cont	
$R/cont/c	child
$R/list	
$R/list/a	
$R/list/a/b	1
$R/list/idx	v1
$R/list/y	y
$R/seq	
$R/seq/n-0000000000	s0
$R/seq/n-0000000001	s1
$R/seq/n-0000000002	s2
$R/ttl	lives
EOF
    expect_tree "$R" "$WORK/expected"
}

# Two scripts, two topics, two roots: each record goes to its own script.
test_two_scripts() {
    local root=/$RUN/two
    topic "$RUN-users" 2
    topic "$RUN-flags" 3
    printf 'alice\tadmin\nbob\tviewer\n' | produce "$RUN-users"
    printf 'dark-mode\ton\nbeta\toff\n' | produce "$RUN-flags"
    cat >"$WORK/users.lua" <<LUA
return function(rec) return "$root/users/" .. rec.key, rec.value .. "@" .. rec.topic end
LUA
    cat >"$WORK/flags.lua" <<LUA
return function(rec) return "$root/flags/" .. rec.key, rec.value .. "@" .. rec.topic end
LUA
    local cfg
    cfg=$(config two "$RUN-two" \
        "[script users]" "file = users.lua" "topics = $RUN-users" "root = $root/users" \
        "[script flags]" "file = flags.lua" "topics = $RUN-flags" "root = $root/flags")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    printf '%s\t\n' "$root" "$root/flags" >"$WORK/expected"
    printf '%s\t%s\n' "$root/flags/beta" "off@$RUN-flags" "$root/flags/dark-mode" "on@$RUN-flags" >>"$WORK/expected"
    printf '%s\t\n' "$root/users" >>"$WORK/expected"
    printf '%s\t%s\n' "$root/users/alice" "admin@$RUN-users" "$root/users/bob" "viewer@$RUN-users" >>"$WORK/expected"
    expect_tree "$root" "$WORK/expected"
}

# `make demo` (scripts/demo.sh) against the services these tests use, on
# whatever ports they were given: examples/quickstart.ini takes ZK_PORT and
# KAFKA_PORT from the environment, as scripts/services.sh does. (The demo's
# own topic, group and root, as `make demo` leaves them.)
test_demo_on_the_services_ports() {
    scripts/demo.sh >"$WORK/out" 2>"$WORK/log"
    expect_exit 0 $? || { tail -5 "$WORK/out"; return 1; }
    expect_log "connected to $ZK " || return 1
    # The ten events leave four devices (json.encode's key order varies).
    awk -F'\t' '$1 ~ /^\/zkflow-demo\/devices\// {
        match($2, /"status":"[^"]*"/); st = substr($2, RSTART + 10, RLENGTH - 11)
        match($2, /"site":"[^"]*"/); si = substr($2, RSTART + 8, RLENGTH - 9)
        print $1, st, si }' "$WORK/out" >"$WORK/actual"
    printf '/zkflow-demo/devices/%s\n' "d-1 online berlin" "d-2 offline lisbon" \
        "d-4 degraded turin" "d-5 online porto" >"$WORK/expected"
    diff -u "$WORK/expected" "$WORK/actual" || fail "the demo printed another tree: $(tail -8 "$WORK/out")"
}

# A second run resumes where the first ended: with at_least_once from the
# offsets committed to Kafka, with exactly_once from the positions in
# ZooKeeper.
test_resume_from_committed() {
    local t root=/$RUN/resume cfg delivery
    cat >"$WORK/resume.lua" <<LUA
return function(rec) return "$root/" .. rec.topic .. "/" .. rec.key, rec.value end
LUA
    for delivery in at_least_once exactly_once; do
        t=$RUN-resume-$delivery
        topic "$t" 3
        awk 'BEGIN { for (i = 0; i < 100; i++) printf "k%d\t%d\n", i, i }' | produce "$t"
        cfg=$(config resume "$t" "[engine]" "delivery = $delivery" \
            "[script r]" "file = resume.lua" "topics = $t" "root = $root")
        zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
        [ "$(consumed)" = 100 ] || fail "$delivery: first run consumed $(consumed), expected 100" || return 1
        awk 'BEGIN { for (i = 100; i < 150; i++) printf "k%d\t%d\n", i, i }' | produce "$t"
        zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
        [ "$(consumed)" = 50 ] || fail "$delivery: second run consumed $(consumed), expected 50" || return 1
        zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
        [ "$(consumed)" = 0 ] || fail "$delivery: third run consumed $(consumed), expected 0" || return 1
        [ "$(tree "$root/$t" | wc -l)" = 151 ] || fail "$delivery: expected 150 znodes under $root/$t" || return 1
    done
}

# A script error stops the daemon without committing the failing record:
# records before it are applied and committed, the next run fails on the same
# record, and a fixed script carries on from there.
test_script_error_stops_uncommitted() {
    local t=$RUN-err root=/$RUN/err
    topic "$t" 1
    printf 'a\t1\nb\t2\nc\tbad\nd\t4\n' | produce "$t"
    cat >"$WORK/err.lua" <<LUA
return function(rec)
  local n = tonumber(rec.value)
  if not n then
    error("not a number: " .. rec.value)
  end
  return "$root/" .. rec.key, tostring(n)
end
LUA
    local cfg
    cfg=$(config err "$RUN-err" "[script err]" "file = err.lua" "topics = $t" "root = $root")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 1 $? || return 1
    expect_log "script err: $WORK/err.lua:4: not a number: bad (record $t [0] offset 2)" || return 1
    printf '%s\t\n%s\t1\n%s\t2\n' "$root" "$root/a" "$root/b" >"$WORK/expected"
    expect_tree "$root" "$WORK/expected" || return 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 1 $? || return 1
    expect_log "consumed=1 applied=0" || return 1
    sed -i 's/error("not a number: " .. rec.value)/return nil/' "$WORK/err.lua"
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    expect_log "consumed=2 applied=1 skipped=1" || return 1
    printf '%s\t4\n' "$root/d" >>"$WORK/expected"
    expect_tree "$root" "$WORK/expected"
}

# An op ZooKeeper refuses (a set of a missing node) in the middle of a batch
# is a record error too: the records before it in the same multi are
# applied and committed, the refused one and those after it are not.
test_refused_op_stops_uncommitted() {
    local t=$RUN-refused root=/$RUN/refused
    topic "$t" 1
    printf 'upsert\ta\nupsert\tb\nset\tc\nupsert\td\n' | produce "$t"
    cat >"$WORK/refused.lua" <<LUA
return function(rec) return "$root/" .. rec.value, rec.value, rec.key end
LUA
    local cfg
    cfg=$(config refused "$RUN-refused" "[script s]" "file = refused.lua" "topics = $t" "root = $root")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 1 $? || return 1
    expect_log "ZooKeeper refused set $root/c: no node" || return 1
    expect_log "(record $t [0] offset 2)" || return 1
    expect_log "ZooKeeper batches" || return 1
    printf '%s\t\n%s\ta\n%s\tb\n' "$root" "$root/a" "$root/b" >"$WORK/expected"
    expect_tree "$root" "$WORK/expected" || return 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 1 $? || return 1
    expect_log "consumed=2 applied=0" || return 1
    expect_log "(record $t [0] offset 2)"
}

# ------------------------------------------------------ when a record fails

# The poison stream of the on_error tests: good records g1..g5 between four
# records that fail at each stage, every record with the header trace=t1.
#   p1 raise    the script raises                   (stage transform)
#   p2 outside  a path outside the script's root    (stage validate)
#   p3 huge     a payload over 1 MB (string.rep)    (stage validate)
#   p4 missing  a set of a missing node, refused    (stage zookeeper)
poison_stream() { # TOPIC
    topic "$1" 1
    printf 'g1\tok1\np1\traise\ng2\tok2\np2\toutside\ng3\tok3\np3\thuge\ng4\tok4\np4\tmissing\ng5\tok5\n' |
        kcat -P -b "$KAFKA" -t "$1" -K $'\t' -H trace=t1 -z none
    poison_script
}

# $WORK/poison.lua: value "raise", "outside", "huge" or "missing" fails
# that way; any other value goes to ROOT/KEY.
poison_script() {
    cat >"$WORK/poison.lua" <<'LUA'
return function(rec)
  local kind = rec.value
  if kind == "raise" then error("poison record " .. rec.key) end
  if kind == "outside" then return "/elsewhere/" .. rec.key, "x" end
  if kind == "huge" then return params.root .. "/" .. rec.key, string.rep("x", 1100000) end
  if kind == "missing" then return params.root .. "/missing/" .. rec.key, "x", "set" end
  return params.root .. "/" .. rec.key, kind
end
LUA
}

# poison_config NAME GROUP ROOT TOPIC [key = value...]: a config for it
poison_config() {
    local name=$1 group=$2 root=$3 t=$4
    shift 4
    config "$name" "$group" "[script s]" "file = poison.lua" "topics = $t" \
        "root = $root" "param.root = $root" "$@"
}

# upsert_bytes PATH DATA-LENGTH: what an upsert counts against a record's
# request limit (README): path, data and 128 bytes, and the same for each
# parent it may create.
upsert_bytes() {
    awk -v p="$1" -v d="$2" 'BEGIN { n = length(p) + d + 128
        for (k = 2; k <= length(p); k++) if (substr(p, k, 1) == "/") n += k - 1 + 128
        print n }'
}

# "key<TAB>value<TAB>timestamp<TAB>headers" of every record of a topic
topic_records() { # TOPIC
    kcat -C -b "$KAFKA" -t "$1" -e -q -f '%k\t%s\t%T\t%h\n' 2>/dev/null
}

# The tree the good records leave: ROOT and ROOT/g1..g5.
expect_good_records() { # ROOT
    printf '%s\t\n' "$1" >"$WORK/expected"
    for i in 1 2 3 4 5; do printf '%s/g%d\tok%d\n' "$1" $i $i; done >>"$WORK/expected"
    expect_tree "$1" "$WORK/expected"
}

# on_error = dlq: the good records are applied; exactly the four poison
# records are in the dead-letter topic, with their key, value, original
# header and timestamp and the zkflow.* headers; the offsets are committed to
# the end (a rerun consumes nothing), and the exit status is 0.
test_on_error_dlq() {
    local t=$RUN-poison dlq=$RUN-poison.dlq root=/$RUN/dlq cfg
    poison_stream "$t"
    topic "$dlq" 1
    cfg=$(poison_config dlq "$RUN-dlq" "$root" "$t" "on_error = dlq" "dlq_topic = $dlq")
    # A dry run prints the three transform failures, produces nothing and
    # commits nothing.
    zkflow run -c "$cfg" --exit-on-eof --dry-run >"$WORK/dry"; expect_exit 0 $? || return 1
    [ "$(grep -c '"error":' "$WORK/dry")" = 3 ] || fail "dry run: expected 3 error lines" || return 1
    expect_log "(record $t [0] offset 1); would dead-letter it (dry run)" || return 1
    [ "$(topic_records "$dlq" | wc -l)" = 0 ] || fail "a dry run dead-lettered records" || return 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    expect_log "consumed=9 applied=5 skipped=0 dead-lettered=4 failed=4" || return 1
    expect_log "script s: $WORK/poison.lua:3: poison record p1 (record $t [0] offset 1); dead-lettering it" || return 1
    expect_log "(record $t [0] offset 7); dead-lettering it" || return 1
    expect_good_records "$root" || return 1

    local v
    v=$(sed -n 's/.*script s: version \([0-9a-f]*\) from.*/\1/p' "$WORK/log" | head -1)
    [ ${#v} = 12 ] || fail "no script version in the log" || return 1
    # Source timestamps by key, to compare with the dead letters'.
    declare -A ts
    while IFS=$'\t' read -r k _ stamp _; do ts[$k]=$stamp; done < <(topic_records "$t")
    local tail=",zkflow.script=s,zkflow.script_version=$v,zkflow.topic=$t,zkflow.partition=0"
    {
        printf 'p1\traise\t%s\ttrace=t1,zkflow.stage=transform,zkflow.error=%s%s,zkflow.offset=1\n' \
            "${ts[p1]}" "$WORK/poison.lua:3: poison record p1" "$tail"
        printf 'p2\toutside\t%s\ttrace=t1,zkflow.stage=validate,zkflow.error=%s%s,zkflow.offset=3\n' \
            "${ts[p2]}" "$WORK/poison.lua:1: the transform returned an invalid op: path /elsewhere/p2 is outside the script's root $root" "$tail"
        printf 'p3\thuge\t%s\ttrace=t1,zkflow.stage=validate,zkflow.error=%s%s,zkflow.offset=5\n' \
            "${ts[p3]}" "$WORK/poison.lua:1: the transform returned an invalid op: $(upsert_bytes "$root/p3" 1100000) bytes of ZooKeeper request (paths, data, 128 per op, the parents an upsert may create), over the limit of 1000000 bytes per record (ZooKeeper's request limit)" "$tail"
        printf 'p4\tmissing\t%s\ttrace=t1,zkflow.stage=zookeeper,zkflow.error=%s,zkflow.zk_error=ZNONODE%s,zkflow.offset=7\n' \
            "${ts[p4]}" "ZooKeeper refused set $root/missing/p4: no node (a parent is missing, or the node is: upsert creates parents)" "$tail"
    } >"$WORK/expected-dlq"
    topic_records "$dlq" >"$WORK/actual-dlq"
    diff -u "$WORK/expected-dlq" "$WORK/actual-dlq" ||
        fail "the dead-letter topic does not hold exactly the poison records" || return 1

    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 0 ] || fail "rerun consumed $(consumed), expected 0" || return 1
    [ "$(topic_records "$dlq" | wc -l)" = 4 ] || fail "a rerun dead-lettered again"
}

# on_error = dlq at scale: 2000 records over 4 partitions, one in 25
# poisoned (the four kinds in turn), batched into multis. Every good record
# is applied, the dead-letter topic holds each poison record exactly once,
# with the stage of its kind, and a rerun consumes nothing.
test_on_error_dlq_many() {
    local t=$RUN-poisonmany dlq=$RUN-poisonmany.dlq root=/$RUN/many cfg
    poison_script
    topic "$t" 4
    topic "$dlq" 2
    awk 'BEGIN { split("raise outside huge missing", kinds, " ")
                 for (i = 0; i < 2000; i++)
                     if (i % 25 == 0) printf "k%d\t%s\n", i, kinds[(i / 25) % 4 + 1]
                     else printf "k%d\tok%d\n", i, i }' >"$WORK/many"
    produce "$t" <"$WORK/many"
    cfg=$(poison_config many "$RUN-many" "$root" "$t" "on_error = dlq" "dlq_topic = $dlq")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    expect_log "consumed=2000 applied=1920 skipped=0 dead-lettered=80 failed=80" || return 1
    {
        printf '%s\t\n' "$root"
        awk -F'\t' -v r="$root" '$2 ~ /^ok/ { printf "%s/%s\t%s\n", r, $1, $2 }' "$WORK/many" | sort
    } >"$WORK/expected"
    expect_tree "$root" "$WORK/expected" || return 1
    topic_records "$dlq" >"$WORK/dead"
    awk -F'\t' '$2 !~ /^ok/' "$WORK/many" | sort >"$WORK/expected-dlq"
    cut -f1,2 "$WORK/dead" | sort | diff -u "$WORK/expected-dlq" - ||
        fail "the dead-letter topic does not hold each poison record once" || return 1
    local kind stage
    for kind in raise:transform outside:validate huge:validate missing:zookeeper; do
        stage=${kind#*:} kind=${kind%:*}
        [ "$(awk -F'\t' -v k="$kind" -v s="zkflow.stage=$stage," '$2 == k && index($4, s)' "$WORK/dead" | wc -l)" = 20 ] ||
            fail "expected 20 '$kind' dead letters with stage $stage" || return 1
    done
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 0 ] || fail "rerun consumed $(consumed), expected 0"
}

# on_error = skip: the same stream leaves the same tree; each failed record
# is logged with "skipped", nothing is dead-lettered, offsets reach the end.
test_on_error_skip() {
    local t=$RUN-poisonskip root=/$RUN/skip cfg
    poison_stream "$t"
    cfg=$(poison_config skip "$RUN-skip" "$root" "$t" "on_error = skip")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    expect_log "consumed=9 applied=5 skipped=4 dead-lettered=0 failed=4" || return 1
    expect_log "script s: $WORK/poison.lua:3: poison record p1 (record $t [0] offset 1); skipped" || return 1
    expect_log "path /elsewhere/p2 is outside the script's root $root (record $t [0] offset 3); skipped" || return 1
    expect_log "over the limit of 1000000 bytes per record (ZooKeeper's request limit) (record $t [0] offset 5); skipped" || return 1
    expect_log "ZooKeeper refused set $root/missing/p4: no node (a parent is missing, or the node is: upsert creates parents) (record $t [0] offset 7); skipped" || return 1
    [ "$(grep -c 'skipped$' "$WORK/log")" = 4 ] || fail "expected 4 'skipped' lines" || return 1
    expect_good_records "$root" || return 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 0 ] || fail "rerun consumed $(consumed), expected 0"
}

# A dead letter that cannot be produced (its topic does not exist) stops
# zkflow like on_error = stop: exit 1, nothing after the failed record
# applied or committed. Once the topic exists, a rerun dead-letters the
# poison records and finishes.
test_on_error_dlq_unavailable() {
    local t=$RUN-poisonnodlq dlq=$RUN-poison.later root=/$RUN/nodlq cfg
    poison_stream "$t"
    cfg=$(poison_config nodlq "$RUN-nodlq" "$root" "$t" "on_error = dlq" "dlq_topic = $dlq")
    # librdkafka gives up on a topic it cannot find after this long.
    sed -i '3a topic.metadata.propagation.max.ms = 1000' "$cfg"
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 1 $? || return 1
    expect_log "[script s] dlq_topic $dlq: Broker: Unknown topic or partition: a record dead-lettered there will stop zkflow" || return 1
    expect_log "script s: record $t [0] offset 1 could not be dead-lettered to $dlq: " || return 1
    expect_log "; stopping without committing it" || return 1
    printf '%s\t\n%s/g1\tok1\n' "$root" "$root" >"$WORK/expected"
    expect_tree "$root" "$WORK/expected" || return 1

    topic "$dlq" 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    expect_log "consumed=8 applied=4 skipped=0 dead-lettered=4 failed=4" || return 1
    expect_good_records "$root" || return 1
    topic_records "$dlq" | cut -f1,2 >"$WORK/actual-dlq"
    printf 'p1\traise\np2\toutside\np3\thuge\np4\tmissing\n' | diff -u - "$WORK/actual-dlq" ||
        fail "the dead-letter topic does not hold exactly the poison records"
}

# on_error is read from the configuration in force: a SIGHUP that turns
# skip into dlq makes zkflow dead-letter from then on (its producer is made
# when first needed); the record that failed before stays skipped.
test_on_error_changed_by_sighup() {
    local t=$RUN-poisonhup dlq=$RUN-poisonhup.dlq root=/$RUN/hup cfg pid
    poison_script
    topic "$t" 1
    topic "$dlq" 1
    cfg=$(poison_config hup "$RUN-hup" "$root" "$t" "on_error = skip")
    zkflow_bg run -c "$cfg"
    pid=$BG
    printf 'p1\traise\ng1\tok1\n' | produce "$t"
    wait_for_nodes "$root" 1 || return 1
    poison_config hup "$RUN-hup" "$root" "$t" "on_error = dlq" "dlq_topic = $dlq" >/dev/null
    kill -HUP $pid
    wait_log "configuration reloaded" || return 1
    expect_log "added: none; changed: s; removed: none" || return 1
    printf 'p2\traise\ng2\tok2\n' | produce "$t"
    # g2 waits for p2's dead letter to be acknowledged
    wait_for_nodes "$root" 2 || return 1
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    expect_log "poison record p1 (record $t [0] offset 0); skipped" || return 1
    expect_log "poison record p2 (record $t [0] offset 2); dead-lettering it" || return 1
    expect_log "consumed=4 applied=2 skipped=1 dead-lettered=1 failed=2" || return 1
    [ "$(topic_records "$dlq" | cut -f1,2)" = "p2	raise" ] ||
        fail "the dead-letter topic should hold p2 alone: $(topic_records "$dlq" | cut -f1,2)"
}

# on_error / dlq_topic mistakes are configuration errors: FILE:LINE, exit 2.
test_on_error_bad_config() {
    local t=$RUN-badpolicy cfg
    printf 'return function(rec) return nil end\n' >"$WORK/good.lua"
    cfg=$(config badpolicy "$RUN-bp" "[script s]" "file = good.lua" "topics = $t" "on_error = dlq")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 2 $? || return 1
    expect_log "$cfg:10: [script s] on_error = dlq needs a 'dlq_topic' key" || return 1
    zkflow check -c "$cfg"; expect_exit 2 $? || return 1
    cfg=$(config badpolicy "$RUN-bp" "[script s]" "file = good.lua" "topics = $t" "dlq_topic = dead")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 2 $? || return 1
    expect_log "$cfg:10: [script s] dlq_topic is only used with on_error = dlq (on_error is stop)" || return 1
    cfg=$(config badpolicy "$RUN-bp" "[script s]" "file = good.lua" "topics = $t" "on_error = drop")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 2 $? || return 1
    expect_log "$cfg:10: on_error: 'drop' is not one of: stop skip dlq"
}

# Bad configuration and broken scripts: FILE:LINE on stderr, exit 2.
test_bad_config_exits_2() {
    local t=$RUN-badcfg cfg
    cfg=$(config bad "$RUN-bad" "[script s]" "file = missing.lua" "topics = $t" "colour = blue")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 2 $? || return 1
    expect_log "$cfg:10: unknown key 'colour' in [script]" || return 1

    printf 'return function(rec)\n  return "/x" ..\nend\n' >"$WORK/broken.lua"
    cfg=$(config bad "$RUN-bad" "[script s]" "file = broken.lua" "topics = $t")
    zkflow run -c "$cfg"; expect_exit 2 $? || return 1
    expect_log "$cfg:8: [script s]: $WORK/broken.lua:3: unexpected symbol" || return 1
    zkflow check -c "$cfg"; expect_exit 2 $? || return 1

    printf 'return {}\n' >"$WORK/notfn.lua"
    cfg=$(config bad "$RUN-bad" "[script s]" "file = notfn.lua" "topics = $t")
    zkflow run -c "$cfg"; expect_exit 2 $? || return 1
    expect_log "must return a function, it returned table" || return 1

    cfg=$(config bad "$RUN-bad" "[script s]" "file = nowhere.lua" "topics = $t")
    zkflow run -c "$cfg"; expect_exit 2 $? || return 1
    expect_log "nowhere.lua: cannot open: No such file or directory" || return 1

    printf '[kafka]\nbootstrap.servers = %s\ngroup.id = g\nfetch.wait.max.ms = soon\n' "$KAFKA" >"$WORK/bad.ini"
    printf '[zookeeper]\nconnect = %s\n[script s]\nfile = notfn.lua\ntopics = x\n' "$ZK" >>"$WORK/bad.ini"
    zkflow run -c "$WORK/bad.ini"; expect_exit 2 $? || return 1
    expect_log "$WORK/bad.ini:4: " || return 1

    zkflow run -c "$WORK/absent.ini"; expect_exit 2 $? || return 1
    expect_log "absent.ini: cannot open" || return 1
    zkflow run; expect_exit 2 $? || return 1
    expect_log "missing -c FILE" || return 1

    printf 'return function(rec) return nil end\n' >"$WORK/good.lua"
    cfg=$(config good "$RUN-good" "[script s]" "file = good.lua" "topics = $t")
    "$ZKFLOW" check -c "$cfg" >"$WORK/log" 2>&1; expect_exit 0 $? || return 1
    expect_log "ok (1 script(s))"
}

# Two instances share a topic's partitions, and every record is applied
# exactly once whoever owned its partition: each record makes a sequential
# znode naming its partition and offset, so a record applied twice or never
# shows. A, alone, applies a first batch. B joins: A hands 2 of its 4
# partitions over (cooperative rebalance), and B starts them at the
# positions A left; a second batch is shared. A stops (SIGTERM): B takes
# A's partitions over from A's positions and applies a third batch alone.
# Each step starts on the event that ends the one before (a log line, the
# records applied), never after a guessed time or number of records.
test_two_instances_share_partitions() {
    local t=$RUN-pair root=/$RUN/pair per=1000 keys=400
    topic "$t" 4
    cat >"$WORK/pair.lua" <<LUA
return function(rec)
  return { op = "create", path = "$root/r-", mode = "sequential",
           data = rec.partition .. ":" .. rec.offset }
end
LUA
    "$ZKTREE" --put "$ZK" "$root" </dev/null # create makes no parents
    local cfg a b= sa
    cfg=$(config pair "$RUN-pair" "[script p]" "file = pair.lua" "topics = $t" "root = $root")
    : >"$WORK/b.log"
    # Both logs in one for the report, and whoever still runs stopped.
    pair_failed() { kill $a $b 2>/dev/null; cat "$WORK/a.log" "$WORK/b.log" >"$WORK/log"; return 1; }
    keyed "$t" $per $keys
    BG_LOG=$WORK/a.log zkflow_bg run -c "$cfg"
    a=$BG
    wait_log "assigned 4 partition(s)" "$WORK/a.log" || pair_failed || return 1
    wait_for_children "$root" $per || pair_failed || return 1

    BG_LOG=$WORK/b.log zkflow_bg run -c "$cfg"
    b=$BG
    wait_log "revoked 2 partition(s)" "$WORK/a.log" || pair_failed || return 1
    wait_log "assigned 2 partition(s)" "$WORK/b.log" || pair_failed || return 1
    # B's partitions start where A's positions say, not at offset 0.
    wait_log "starting at offset" "$WORK/b.log" 2 || pair_failed || return 1
    keyed "$t" $((2 * per)) $keys $per
    wait_for_children "$root" $((2 * per)) || pair_failed || return 1

    kill -TERM $a
    wait $a; sa=$? a=
    cat "$WORK/a.log" >"$WORK/log"
    expect_exit 0 $sa || pair_failed || return 1
    # A's leaving revoked its other 2 partitions: B gets them.
    wait_log "assigned 2 partition(s)" "$WORK/b.log" 2 || pair_failed || return 1
    wait_log "starting at offset" "$WORK/b.log" 4 || pair_failed || return 1
    keyed "$t" $((3 * per)) $keys $((2 * per))
    wait_for_children "$root" $((3 * per)) || pair_failed || return 1
    kill -TERM $b
    wait $b; sa=$?
    cat "$WORK/a.log" "$WORK/b.log" >"$WORK/log"
    expect_exit 0 $sa || return 1
    [ "$(grep -cF "revoked 2 partition(s)" "$WORK/a.log")" = 2 ] ||
        fail "A did not give up 2 partitions twice (B joining, A leaving)" || return 1
    expect_each_once "$root" "$t" || return 1
    # A applied the first batch and part of the second, B the rest of the
    # second and all of the third.
    local na nb
    na=$(applied_in "$WORK/a.log") nb=$(applied_in "$WORK/b.log")
    [ $((na + nb)) = $((3 * per)) ] || fail "A applied $na, B $nb: not $((3 * per)) in all" || return 1
    [ "$na" -gt $per ] && [ "$nb" -gt $per ] ||
        fail "A applied $na, B $nb: the second batch was not shared" || return 1
    echo "    A applied $na records, B $nb"
}

# A subscribed topic that does not exist: a clear error, exit 1.
test_missing_topic() {
    printf 'return function(rec) return nil end\n' >"$WORK/none.lua"
    local cfg
    cfg=$(config notopic "$RUN-notopic" "[script s]" "file = none.lua" "topics = $RUN-no-such-topic")
    zkflow run -c "$cfg"; expect_exit 1 $? || return 1
    expect_log "cannot consume: Subscribed topic not available: $RUN-no-such-topic"
}

# ZooKeeper unreachable at start: a clear error after a bounded wait.
test_zookeeper_unreachable() {
    printf 'return function(rec) return nil end\n' >"$WORK/none.lua"
    printf '[kafka]\nbootstrap.servers = %s\ngroup.id = %s\n' "$KAFKA" "$RUN-nozk" >"$WORK/nozk.ini"
    printf '[zookeeper]\nconnect = 127.0.0.1:1\nconnect_timeout_ms = 1500\n' >>"$WORK/nozk.ini"
    printf '[script s]\nfile = none.lua\ntopics = %s\n' "$RUN-nozk" >>"$WORK/nozk.ini"
    local start=$SECONDS
    zkflow run -c "$WORK/nozk.ini" --exit-on-eof; expect_exit 1 $? || return 1
    expect_log "cannot reach ZooKeeper at 127.0.0.1:1 within 1500 ms" || return 1
    [ $((SECONDS - start)) -le 10 ] || fail "took $((SECONDS - start)) s to give up"
}

# SIGTERM under load: writes in flight finish, offsets are committed, exit 0;
# a second run takes exactly the records the first did not apply, and the
# tree is complete. Records keep coming until after the signal, so the
# first run is busy when it comes and cannot have applied them all.
test_sigterm_drains_and_resumes() {
    local t=$RUN-term root=/$RUN/term
    topic "$t" 4
    cat >"$WORK/term.lua" <<LUA
return function(rec) return "$root/" .. rec.key, rec.value end
LUA
    local cfg pid first n
    cfg=$(config term "$RUN-term" "[engine]" "batch_max_ops = 1" \
        "[script t]" "file = term.lua" "topics = $t" "root = $root")
    stream "$t" 500 200
    zkflow_bg run -c "$cfg"
    pid=$BG
    wait_for_nodes "$root" 50 || { kill $pid; stop_stream; return 1; }
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || { stop_stream; return 1; }
    stop_stream || return 1
    n=$STREAMED
    expect_log "finishing writes in flight, then committing" || return 1
    first=$(applied_in "$WORK/log")
    [ -n "$first" ] && [ "$first" -gt 0 ] || fail "the first run applied '$first'" || return 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    # Exactly once: what the first run applied is not taken again, and
    # nothing is lost.
    [ $((first + $(consumed))) = $n ] ||
        fail "applied $first, then consumed $(consumed): not the $n records produced" || return 1
    echo "    the first run applied $first of $n records"
    expect_last_per_key "$root" $n 500
}

# exactly_once: every record creates a sequential znode naming its offset,
# so a record applied twice or never shows. While records keep coming,
# zkflow is killed (-9) three times, each time once it has partitions and
# has applied more, and restarted; each restart starts at the positions
# kept in ZooKeeper (Kafka's committed offsets lag behind, auto-commit being
# every 5 s). Afterwards every record is there exactly once, and the
# positions name the partitions' ends.
test_exactly_once_survives_kill9() {
    local t=$RUN-eo root=/$RUN/eo group=$RUN-eo n
    topic "$t" 3
    cat >"$WORK/eo.lua" <<LUA
return function(rec)
  return { op = "create", path = "$root/r-", mode = "sequential",
           data = rec.partition .. ":" .. rec.offset }
end
LUA
    local cfg pid k
    "$ZKTREE" --put "$ZK" "$root" </dev/null # create makes no parents
    # A killed member leaves the group after session.timeout.ms (the
    # broker's minimum): only then does the restarted one get partitions.
    cfg=$(KAFKA_EXTRA=$'session.timeout.ms = 6000\nheartbeat.interval.ms = 1000\n' \
        config eo "$group" "[engine]" "batch_max_ops = 5" \
        "[script eo]" "file = eo.lua" "topics = $t" "root = $root")
    : >"$WORK/log"
    local assigned applied
    stream "$t" 100
    for k in 1 2 3; do
        assigned=$(grep -cE 'engine: .* \[[0-9]+\]: (starting at offset|no position)' "$WORK/log")
        applied=$("$ZKTREE" --count "$ZK" "$root")
        "$ZKFLOW" run -c "$cfg" 2>>"$WORK/log" & # killed below, not timeout(1)
        pid=$!
        # Killed only once this run has partitions and has applied some.
        wait_until $LIMIT eo_assigned_over "$assigned" ||
            fail "run $k got no partition" || { kill -9 $pid; stop_stream; return 1; }
        wait_for_children "$root" $((applied + 100)) || { kill -9 $pid; stop_stream; return 1; }
        sleep 0.$((RANDOM % 5))
        kill -9 $pid
        wait $pid 2>/dev/null
    done
    stop_stream || return 1
    n=$STREAMED
    grep -q "starting at offset" "$WORK/log" || fail "no restart started at a position" || return 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    expect_each_once "$root" "$t" || return 1
    # The positions: each partition's end.
    local p total=0
    for p in 0 1 2; do
        total=$(( total + $(tree "/zkflow/offsets/$group/$t/$p" | cut -f2) ))
    done
    [ "$total" = $n ] || fail "positions sum to $total, expected $n" || return 1
    "$ZKTREE" --delete "$ZK" "/zkflow/offsets/$group"
}
eo_assigned_over() {
    [ "$(grep -cE 'engine: .* \[[0-9]+\]: (starting at offset|no position)' "$WORK/log")" -gt "$1" ]
}

# exactly_once: a stale owner is fenced. While zkflow runs, the position of
# its partition is moved by someone else (as a new owner would): zkflow's
# next batch fails on the version check, writes nothing, and zkflow leaves
# the partition alone, committing nothing more for it.
test_exactly_once_fences_stale_owner() {
    local t=$RUN-fence root=/$RUN/fence group=$RUN-fence pos
    topic "$t" 1
    pos=/zkflow/offsets/$group/$t/0
    cat >"$WORK/fence.lua" <<LUA
return function(rec) return "$root/" .. rec.offset, rec.value end
LUA
    local cfg pid
    cfg=$(config fence "$group" "[script f]" "file = fence.lua" "topics = $t" "root = $root")
    zkflow_bg run -c "$cfg"
    pid=$BG
    keyed "$t" 100 10
    wait_until $LIMIT position_is "$pos" 100 ||
        fail "position is '$(tree "$pos" | cut -f2)', expected 100" || { kill $pid; return 1; }
    printf 100 | "$ZKTREE" --put "$ZK" "$pos"   # another owner's write
    keyed "$t" 100 10
    wait_log "leaving the partition to its new owner" || { kill $pid; return 1; }
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    # Looked at once zkflow is gone: nothing written since, ever.
    [ "$(tree "$root" | tail -n +2 | wc -l)" = 100 ] || fail "the fenced owner wrote" || return 1
    position_is "$pos" 100 || fail "the fenced owner moved the position to $(tree "$pos" | cut -f2)" || return 1
    "$ZKTREE" --delete "$ZK" "/zkflow/offsets/$group"
}
position_is() { [ "$(tree "$1" | cut -f2)" = "$2" ]; } # POSITION-ZNODE OFFSET

# [zookeeper] auth and acl against the real server. creator_all: zkflow
# writes (its positions too), and a client without the identity cannot read.
# Wrong credentials: a clear error, nothing applied, positions not advanced
# (the right credentials then take exactly the records left). read_only_world:
# anyone reads what zkflow wrote.
test_zookeeper_auth_and_acl() {
    local t=$RUN-auth root=/$RUN/auth group=$RUN-auth
    topic "$t" 2
    keyed "$t" 20 5
    cat >"$WORK/auth.lua" <<LUA
return function(rec) return "$root/" .. params.acl .. "/" .. rec.key, rec.value end
LUA
    auth_config() { # NAME PASSWORD ACL
        KAFKA_EXTRA="" config "$1" "$group-$3" "auth = digest:zkflow:$2" "acl = $3" \
            "[script a]" "file = auth.lua" "topics = $t" "root = $root" "param.acl = $3"
    }
    local cfg wrong
    # Made here, open: zkflow would give the parents it creates its ACL.
    "$ZKTREE" --put "$ZK" "$root" </dev/null
    cfg=$(auth_config auth-ok right creator_all)
    # The auth and acl lines went after connect_timeout_ms, in [zookeeper].
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 20 ] || fail "consumed $(consumed), expected 20" || return 1
    "$ZKTREE" "$ZK" "$root/creator_all" >/dev/null 2>"$WORK/zktree.err" &&
        fail "read a creator_all znode without the identity" && return 1
    grep -q "not authenticated" "$WORK/zktree.err" || fail "zktree: $(cat "$WORK/zktree.err")" || return 1

    keyed "$t" 10 5
    wrong=$(auth_config auth-wrong wrong creator_all)
    zkflow run -c "$wrong" --exit-on-eof; expect_exit 1 $? || return 1
    expect_log "cannot read the position /zkflow/offsets/$group-creator_all/$t/" || return 1
    expect_log "not authenticated" || return 1
    ! grep -q "right\|wrong" <(grep -v "auth-wrong.ini\|auth-ok.ini" "$WORK/log") ||
        fail "the log shows the password" || return 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 10 ] || fail "after the refused run, consumed $(consumed), expected 10" || return 1

    cfg=$(auth_config auth-ro right read_only_world)
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    expect_last_per_key "$root/read_only_world" 10 5 || return 1 # the second ten came last
    ZK_AUTH=digest:zkflow:right "$ZKTREE" --delete "$ZK" "$root"
    ZK_AUTH=digest:zkflow:right "$ZKTREE" --delete "$ZK" "/zkflow/offsets/$group-creator_all"
}

# --exit-on-eof on a terminal shows a progress line (records done of total,
# rate, ETA), redrawn in place and finished with the final count; script(1)
# gives zkflow a terminal. Without one, progress goes to the log every 10 s.
test_progress_line_on_a_terminal() {
    local t=$RUN-progress root=/$RUN/progress cfg
    topic "$t" 2
    keyed "$t" 3000 30
    cat >"$WORK/progress.lua" <<LUA
return function(rec) return "$root/" .. rec.key, rec.value end
LUA
    cfg=$(config progress "$RUN-progress" "[script p]" "file = progress.lua" "topics = $t" "root = $root")
    timeout 120 script -qec "$ZKFLOW run -c $cfg --exit-on-eof" /dev/null >"$WORK/tty" 2>&1
    expect_exit 0 $? || return 1
    grep -q "3000 of 3000 records (100%), [0-9]* records/s, ETA" "$WORK/tty" ||
        fail "no final progress line: $(tr '\r' '\n' <"$WORK/tty" | grep records | tail -2)"
}

# Backpressure with a slow ZooKeeper: while ZooKeeper is frozen (SIGSTOP,
# shorter than the session), 30,000 records of 2 KB arrive. None can be
# applied, so each partition stops being fetched once max_queued_records
# wait: zkflow's memory stays bounded (well below what queueing the whole
# topic would take), and it resumes when ZooKeeper thaws; every record
# lands. A first record per key, applied before the freeze, shows zkflow
# up and writing; the rest only exists once ZooKeeper is frozen.
test_backpressure_with_a_frozen_zookeeper() {
    local t=$RUN-bp root=/$RUN/bp n=30000 keys=300
    local zk_pid pid producer rss peak=0
    topic "$t" 2
    bp_records() { # FROM TO
        awk -v from="$1" -v n="$2" -v k=$keys 'BEGIN { pad = sprintf("%2000s", ""); gsub(/ /, "x", pad)
            for (i = from; i < n; i++) printf "k%d\t%d %s\n", i % k, i, pad }' | produce "$t"
    }
    cat >"$WORK/bp.lua" <<LUA
return function(rec) return "$root/" .. rec.key, rec.value end
LUA
    local cfg
    # The longest session ZooKeeper allows (20 ticks) outlives the freeze.
    cfg=$(KAFKA_EXTRA=$'queued.max.messages.kbytes = 2048\n' config bp "$RUN-bp" \
        "session_timeout_ms = 40000" "[engine]" "max_queued_records = 500" \
        "[script b]" "file = bp.lua" "topics = $t" "root = $root")
    zkflow_bg run -v -c "$cfg"
    pid=$BG
    bp_records 0 $keys
    wait_for_nodes "$root" $keys || { kill $pid; return 1; }
    zk_pid=$(cat "$ZK_PIDFILE")
    kill -STOP "$zk_pid"
    local frozen=$SECONDS
    bp_records $keys $n &
    producer=$!
    sample_rss() {
        rss=$(awk '/^VmRSS/ { print int($2 / 1024) }' /proc/$pid/status 2>/dev/null)
        [ -n "$rss" ] && [ "$rss" -gt "$peak" ] && peak=$rss
        return 0
    }
    # Until the whole topic is there and zkflow has paused fetching, then
    # 2 s more; at most 25 s, well within the session.
    local waited=0
    while kill -0 $producer 2>/dev/null || ! grep -q "records waiting: pausing" "$WORK/log"; do
        sample_rss
        sleep 0.2
        waited=$((waited + 1))
        [ $waited -lt 125 ] || break
    done
    for _ in $(seq 10); do sample_rss; sleep 0.2; done
    kill -CONT "$zk_pid"
    frozen=$((SECONDS - frozen))
    wait $producer || fail "the producer failed" || { kill $pid; return 1; }
    expect_log "records waiting: pausing" || { kill $pid; return 1; }
    # Every key's last record, padded as produced.
    last_per_key "$root" $n $keys
    sed -i "s/\t\([0-9][0-9]*\)\$/\t\1 $(printf '%2000s' '' | tr ' ' x)/" "$WORK/expected"
    wait_until $LIMIT tree_is "$root" "$WORK/expected"
    expect_tree "$root" "$WORK/expected" || { kill $pid; return 1; }
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    # The whole topic is 60 MB of values, which the queued records' ops
    # would hold; paused partitions keep about 2 x 500 of them.
    [ "$peak" -gt 0 ] && [ "$peak" -lt 30 ] || fail "peak RSS while ZooKeeper was frozen: $peak MB" || return 1
    echo "    peak RSS while ZooKeeper was frozen ($frozen s): $peak MB"
    expect_log "records waiting: resuming" || return 1
    [ "$(consumed)" = $n ] || fail "consumed $(consumed), expected $n"
}

# ZooKeeper away for longer than max.poll.interval.ms (here 7 s; frozen
# for 12 s from the moment zkflow has writes waiting, within its session):
# zkflow keeps polling Kafka while its writes wait, so the consumer stays
# in the group (no revoke, no "maximum poll interval exceeded"), and every
# record lands once ZooKeeper is back. A first record per key, applied
# before the freeze, shows zkflow up and writing; the rest only exists
# once ZooKeeper is frozen.
test_zookeeper_away_longer_than_max_poll_interval() {
    local t=$RUN-mpi root=/$RUN/mpi n=3000
    local zk_pid pid
    METRICS=127.0.0.1:${METRICS_PORT:-9474}
    topic "$t" 2
    cat >"$WORK/mpi.lua" <<LUA
return function(rec) return "$root/" .. rec.key, rec.value end
LUA
    local cfg
    cfg=$(KAFKA_EXTRA=$'session.timeout.ms = 6000\nheartbeat.interval.ms = 1000\nmax.poll.interval.ms = 7000\n' \
        config mpi "$RUN-mpi" "session_timeout_ms = 30000" "[engine]" "batch_max_ops = 2" \
        "metrics_listen = $METRICS" "[script m]" "file = mpi.lua" "topics = $t" "root = $root")
    zkflow_bg run -c "$cfg"
    pid=$BG
    keyed "$t" 100 100
    wait_for_nodes "$root" 100 || { kill $pid; return 1; }
    zk_pid=$(cat "$ZK_PIDFILE")
    kill -STOP "$zk_pid"
    keyed "$t" $n 100 100
    wait_until 20 metric_over zkflow_inflight_ops 0 ||
        fail "no write waiting for the frozen ZooKeeper" || { kill -CONT "$zk_pid"; kill $pid; return 1; }
    sleep 12 # the fault: longer than max.poll.interval.ms
    kill -CONT "$zk_pid"
    wait_last_per_key "$root" $n 100 || { kill $pid; return 1; }
    # (Leaving at the SIGTERM below revokes too: look before it.)
    head -n "$(wc -l <"$WORK/log")" "$WORK/log" >"$WORK/before-term"
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    ! grep -qiE "maximum poll interval|revoked|lost [0-9]+ partition" "$WORK/before-term" ||
        fail "left the group: $(grep -iE 'maximum poll interval|revoked|lost [0-9]+ partition' "$WORK/before-term" | head -2)" || return 1
    [ "$(consumed)" = $n ] || fail "consumed $(consumed), expected $n"
}

# ZooKeeper killed (-9) and restarted with writes in flight: they are sent
# again, and the tree ends up complete and in order. ZooKeeper is frozen
# first, so that the writes zkflow sends next wait in flight: killed then,
# it takes them with it unanswered, however fast the machine.
test_zookeeper_restart_midstream() {
    local t=$RUN-zkrestart root=/$RUN/zkrestart n=20000
    METRICS=127.0.0.1:${METRICS_PORT:-9474}
    topic "$t" 4
    cat >"$WORK/zkrestart.lua" <<LUA
return function(rec) return "$root/" .. rec.key .. "/v", rec.value end
LUA
    local cfg pid
    # Small multis: many in flight at once.
    cfg=$(config zkrestart "$RUN-zkrestart" "[engine]" "batch_max_ops = 2" "metrics_listen = $METRICS" \
        "[script z]" "file = zkrestart.lua" "topics = $t" "root = $root")
    zkflow_bg run -c "$cfg"
    pid=$BG
    keyed "$t" 300 300
    wait_last_per_key "$root" 300 300 /v || { kill $pid; return 1; }
    kill -STOP "$(cat "$ZK_PIDFILE")"
    keyed "$t" $n 300 300
    wait_until 20 metric_over zkflow_inflight_ops 0 ||
        fail "no write in flight to the frozen ZooKeeper" || { kill -CONT "$(cat "$ZK_PIDFILE")"; kill $pid; return 1; }
    zk_kill
    scripts/services.sh start >/dev/null || fail "ZooKeeper did not come back" || { kill $pid; return 1; }
    wait_last_per_key "$root" $n 300 /v || { kill $pid; return 1; }
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    expect_log "reconnecting" || return 1
    [ "$(consumed)" = $n ] || fail "consumed $(consumed), expected $n"
}

# metric NAME{LABELS}: its value in the endpoint's /metrics ($METRICS), or
# nothing when absent.
metric() {
    curl -s "http://$METRICS/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

metric_is() { [ "$(metric "$1")" = "$2" ]; }
metric_over() { [ "$(metric "$1")" -gt "$2" ] 2>/dev/null; }
readyz_is() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$METRICS/readyz")" = "$1" ]; }

# /metrics counts what was produced and applied, the ZooKeeper counters
# agree with each other, /readyz follows ZooKeeper going away and coming
# back, and a second instance on the same address fails naming it.
test_metrics_and_readiness() {
    local t=$RUN-metrics root=/$RUN/metrics n=3000
    METRICS=127.0.0.1:${METRICS_PORT:-9474}
    topic "$t" 3
    keyed "$t" $n 100
    cat >"$WORK/metrics.lua" <<LUA
return function(rec) return "$root/" .. rec.key, rec.value end
LUA
    local cfg pid
    cfg=$(config metrics "$RUN-metrics" "[engine]" "metrics_listen = $METRICS" \
        "log_format = json" "[script m]" "file = metrics.lua" "topics = $t" "root = $root")
    # The longest session ZooKeeper allows (20 ticks) outlives its restart.
    sed -i 's/^connect_timeout_ms = 5000$/&\nsession_timeout_ms = 40000/' "$cfg"
    timeout 180 "$ZKFLOW" run -c "$cfg" 2>"$WORK/log" &
    pid=$!
    local applied='zkflow_records_total{script="m",result="applied"}'
    wait_until $LIMIT metric_is "$applied" $n ||
        fail "$applied is '$(metric "$applied")', expected $n" || { kill $pid; return 1; }
    curl -s "http://$METRICS/metrics" >"$WORK/metrics.txt"
    local got
    got=$(metric 'zkflow_zk_ops_total{op="upsert",result="applied"}')
    [ "$got" = $n ] || fail "upserts applied: '$got', expected $n" || { kill $pid; return 1; }
    for r in skipped dlq error; do
        got=$(metric "zkflow_records_total{script=\"m\",result=\"$r\"}")
        [ "$got" = 0 ] || fail "records $r: '$got', expected 0" || { kill $pid; return 1; }
    done
    [ "$(metric zkflow_inflight_ops)" = 0 ] || fail "ops still in flight" || { kill $pid; return 1; }
    # Every multi sent has its outcome counted; together they carried at
    # least one op per record (upserts, plus parents created for them).
    local sent completed ops
    sent=$(metric zkflow_zk_batch_ops_count)
    completed=$(awk '/^zkflow_zk_requests_total\{request="multi"/ { s += $2 } END { print s + 0 }' "$WORK/metrics.txt")
    ops=$(metric zkflow_zk_batch_ops_sum)
    [ "$sent" -gt 0 ] && [ "$sent" = "$completed" ] || fail "multis sent $sent, completed $completed" || { kill $pid; return 1; }
    [ "$ops" -ge $n ] || fail "ops in multis: $ops < $n" || { kill $pid; return 1; }
    [ "$(metric zkflow_zk_write_seconds_count)" -gt 0 ] || fail "no write times" || { kill $pid; return 1; }
    [ "$(metric zkflow_assigned_partitions)" = 3 ] || fail "assigned partitions: $(metric zkflow_assigned_partitions)" || { kill $pid; return 1; }
    wait_until $LIMIT metric_is "zkflow_consumer_lag{topic=\"$t\",partition=\"0\"}" 0 ||
        fail "lag of partition 0: '$(metric "zkflow_consumer_lag{topic=\"$t\",partition=\"0\"}")'" || { kill $pid; return 1; }
    grep -q '^zkflow_script_info{script="m",version="[0-9a-f]*"} 1$' "$WORK/metrics.txt" ||
        fail "no script_info line" || { kill $pid; return 1; }
    readyz_is 200 || fail "/readyz not 200 while running" || { kill $pid; return 1; }
    # Where the engine's time went: every stage counted, the scripts' time
    # among it; the sampled gauges come down to nothing left to do.
    local stage
    for stage in kafka transform zookeeper wait_zookeeper wait_kafka held other; do
        grep -q "^zkflow_engine_seconds_total{stage=\"$stage\"} [0-9.e-]*$" "$WORK/metrics.txt" ||
            fail "no engine time for stage $stage" || { kill $pid; return 1; }
    done
    transformed() { metric 'zkflow_engine_seconds_total{stage="transform"}' | awk '{ exit !($1 > 0) }'; }
    wait_until $LIMIT transformed || fail "no time in transforms" || { kill $pid; return 1; }
    wait_until $LIMIT metric_is zkflow_zk_requests_inflight 0 ||
        fail "writes in flight: $(metric zkflow_zk_requests_inflight)" || { kill $pid; return 1; }
    wait_until $LIMIT metric_is "zkflow_queued_records{topic=\"$t\",partition=\"0\"}" 0 ||
        fail "records queued in partition 0" || { kill $pid; return 1; }

    # The same address again: a startup error that names it.
    timeout 60 "$ZKFLOW" run -c "$cfg" 2>"$WORK/log2"
    expect_exit 1 $? || { kill $pid; return 1; }
    grep -qF "cannot listen on $METRICS: Address already in use" "$WORK/log2" ||
        fail "second instance: $(tail -1 "$WORK/log2")" || { kill $pid; return 1; }

    # ZooKeeper away: not ready (with the reason), still alive.
    zk_kill
    wait_until $LIMIT readyz_is 503 || fail "/readyz did not turn 503" || { scripts/services.sh start >/dev/null; kill $pid; return 1; }
    [ "$(curl -s "http://$METRICS/readyz")" = "ZooKeeper session not connected" ] ||
        fail "503 reason: $(curl -s "http://$METRICS/readyz")" || { scripts/services.sh start >/dev/null; kill $pid; return 1; }
    [ "$(metric zkflow_zk_session_state)" = 0 ] || fail "session state $(metric zkflow_zk_session_state)" || { scripts/services.sh start >/dev/null; kill $pid; return 1; }
    readyz_is 503 && [ "$(curl -s "http://$METRICS/healthz")" = ok ] || fail "/healthz not ok" || { scripts/services.sh start >/dev/null; kill $pid; return 1; }
    scripts/services.sh start >/dev/null || fail "ZooKeeper did not come back" || { kill $pid; return 1; }
    wait_until $LIMIT readyz_is 200 || fail "/readyz did not return to 200" || { kill $pid; return 1; }
    [ "$(metric zkflow_zk_session_state)" = 1 ] || fail "session state $(metric zkflow_zk_session_state)" || { kill $pid; return 1; }
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    # Every log line is one JSON object, the ZooKeeper client's and
    # librdkafka's included.
    local bad
    bad=$(grep -cvE '^\{"ts":"[0-9T:.-]+Z","level":"(error|warn|info|debug)","component":"[a-z]+","msg":"([^"\\]|\\.)*"\}$' "$WORK/log")
    [ "$bad" = 0 ] || { grep -vE '^\{"ts"' "$WORK/log" | head -3; fail "$bad log lines are not JSON"; } || return 1
    expect_log '"component":"zookeeper","msg":"connection to' || return 1
    expect_log '"component":"kafka","msg":"assigned 3 partition(s)"' || return 1
    grep -qE '"msg":"engine time: [0-9]+% [a-z ]+(, [0-9]+% [a-z ]+)* \([0-9.]+ s\)"' "$WORK/log" ||
        fail "no engine time in the summary" || return 1
    expect_last_per_key "$root" $n 100
}

# Upserts of paths zkflow knows nothing of: over a new tree, the first multi
# guesses `set`, is refused, and zkflow probes with `exists` from then on;
# a second consumer group over the same, now existing, tree guesses right
# and sends no probe at all. Both leave the same tree.
test_upserts_guess_over_an_existing_tree() {
    local t=$RUN-guess root=/$RUN/guess n=2000 keys=200 pass
    METRICS=127.0.0.1:${METRICS_PORT:-9474}
    topic "$t" 2
    keyed "$t" $n $keys
    cat >"$WORK/guess.lua" <<LUA
return function(rec) return "$root/" .. rec.key, rec.value end
LUA
    for pass in new existing; do
        local cfg exists
        cfg=$(config guess "$RUN-guess-$pass" "[engine]" "metrics_listen = $METRICS" \
            "[script g]" "file = guess.lua" "topics = $t" "root = $root")
        zkflow_bg run -c "$cfg"
        wait_until $LIMIT metric_is 'zkflow_records_total{script="g",result="applied"}' $n ||
            fail "$pass tree: $(metric 'zkflow_records_total{script="g",result="applied"}') of $n records applied" ||
            { kill $BG; return 1; }
        exists=$(curl -s "http://$METRICS/metrics" | awk '/^zkflow_zk_requests_total\{request="exists"/ { s += $2 } END { print s + 0 }')
        kill -TERM $BG
        wait $BG; expect_exit 0 $? || return 1
        if [ $pass = new ]; then
            [ "$exists" -ge $keys ] || fail "new tree: $exists exists probes, expected at least $keys" || return 1
        else
            [ "$exists" = 0 ] || fail "existing tree: $exists exists probes, expected none" || return 1
        fi
        expect_last_per_key "$root" $n $keys || return 1
    done
}

# Upserts into a new tree, then one another writer changed: each record
# upserts ROOT/kK/state, a new node under a new parent. Once probes found
# next to nothing there, zkflow creates unknown paths without asking, so
# 3,000 new records cost far fewer probes than the two per record that
# probing each path would. Then another writer deletes some of the nodes
# zkflow made (its knowledge of them is stale) and creates some it has not
# made yet (its creates of them are refused): the next records still leave
# every key's last value. A second group replaying everything over the
# finished tree sends no probe.
test_upserts_create_new_trees() {
    local t=$RUN-newtree root=/$RUN/newtree keys=4000 cfg exists k
    METRICS=127.0.0.1:${METRICS_PORT:-9474}
    topic "$t" 2
    cat >"$WORK/newtree.lua" <<LUA
return function(rec) return "$root/" .. rec.key .. "/state", rec.value end
LUA
    probes() {
        curl -s "http://$METRICS/metrics" |
            awk '/^zkflow_zk_requests_total\{request="exists"/ { s += $2 } END { print s + 0 }'
    }
    applied() { metric_is 'zkflow_records_total{script="n",result="applied"}' "$1"; }
    cfg=$(config newtree "$RUN-newtree" "[engine]" "metrics_listen = $METRICS" \
        "[script n]" "file = newtree.lua" "topics = $t" "root = $root")
    zkflow_bg run -c "$cfg"
    keyed "$t" 3000 $keys # k0..k2999: all new
    wait_until $LIMIT applied 3000 || fail "first load: not every record applied" ||
        { kill $BG; return 1; }
    exists=$(probes)
    echo "    first load: $exists exists probes for 3000 new records"
    [ "$exists" -lt 1500 ] ||
        fail "first load: $exists exists probes for 3000 new records" || { kill $BG; return 1; }
    last_per_key "$root" 3000 3000 /state
    expect_tree "$root" "$WORK/expected" || { kill $BG; return 1; }
    # Another writer: k0..k19 gone, k3000..k3019 made ahead of zkflow.
    for k in $(seq 0 19); do "$ZKTREE" --delete "$ZK" "$root/k$k"; done
    for k in $(seq 3000 3019); do printf other | "$ZKTREE" --put "$ZK" "$root/k$k/state"; done
    keyed "$t" 4200 $keys 3000 # k3000..k3999, then k0..k199 again
    wait_until $LIMIT applied 4200 || fail "after the other writer: not every record applied" ||
        { kill $BG; return 1; }
    kill -TERM $BG
    wait $BG; expect_exit 0 $? || return 1
    last_per_key "$root" 4200 $keys /state
    expect_tree "$root" "$WORK/expected" || return 1
    cfg=$(config newtree "$RUN-newtree-replay" "[engine]" "metrics_listen = $METRICS" \
        "[script n]" "file = newtree.lua" "topics = $t" "root = $root")
    zkflow_bg run -c "$cfg"
    wait_until $LIMIT applied 4200 || fail "replay: not every record applied" ||
        { kill $BG; return 1; }
    exists=$(probes)
    kill -TERM $BG
    wait $BG; expect_exit 0 $? || return 1
    [ "$exists" = 0 ] || fail "replay over the finished tree: $exists exists probes" || return 1
    expect_tree "$root" "$WORK/expected"
}

# Coalescing: the same keyed stream (many updates per key in each batch),
# once without and once with `coalesce = true`, into two roots. Both trees
# hold every key's last value; only the coalescing run left records out,
# and it counts them as applied.
test_coalesce_same_tree() {
    local t=$RUN-coalesce n=5000 keys=40 cfg
    topic "$t" 2
    keyed "$t" $n $keys
    cat >"$WORK/coalesce.lua" <<LUA
return function(rec)
  return params.root .. "/" .. rec.key, rec.value
end
LUA
    for mode in false true; do
        cfg=$(config "coalesce-$mode" "$RUN-coalesce-$mode" "[script c]" "file = coalesce.lua" \
            "topics = $t" "root = /$RUN/coalesce-$mode" "param.root = /$RUN/coalesce-$mode" \
            "coalesce = $mode")
        zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
        [ "$(consumed)" = $n ] || fail "consumed $(consumed), expected $n" || return 1
        grep -qF "applied=$n " "$WORK/log" || fail "not every record counted as applied" || return 1
        sed -n 's/.*finished: .* \([0-9]*\) coalesced).*/\1/p' "$WORK/log" >"$WORK/coalesced-$mode"
        expect_last_per_key "/$RUN/coalesce-$mode" $n $keys || return 1
    done
    [ "$(cat "$WORK/coalesced-false")" = 0 ] ||
        fail "$(cat "$WORK/coalesced-false") records coalesced without coalesce = true" || return 1
    [ "$(cat "$WORK/coalesced-true")" -gt 0 ] || fail "coalesce = true left nothing out" || return 1
    # The same data in both trees, node for node.
    diff <(tree "/$RUN/coalesce-false" | sed "s|^/$RUN/coalesce-false||") \
         <(tree "/$RUN/coalesce-true" | sed "s|^/$RUN/coalesce-true||") ||
        fail "the two trees differ" || return 1
    echo "    coalesced $(cat "$WORK/coalesced-true") of $n records"
}

# exactly_once: records that write nothing still move the position. A
# script that writes one record in 200 (the rest skipped) runs over the
# topic, in four ways, each in its own group; then a script that writes
# every record it sees runs in the same group and must see none of them:
# after --exit-on-eof, after SIGTERM, after kill -9 once the positions were
# written on their own (auto.commit.interval.ms later), and in a second
# instance that took partitions over from the first (written on revocation).
test_exactly_once_positions_cover_skipped_records() {
    local t=$RUN-eoskip root=/$RUN/eoskip n=3000 w=15 cfg way
    METRICS=127.0.0.1:${METRICS_PORT:-9474}
    topic "$t" 3
    keyed "$t" $n 100
    cat >"$WORK/eoskip.lua" <<LUA
return function(rec)
  if tonumber(rec.value) % 200 == 0 then return "$root/w/" .. rec.value, "x" end
end
LUA
    cat >"$WORK/eoall.lua" <<LUA
return function(rec)
  return "$root/again/" .. rec.partition .. "-" .. rec.offset, "x"
end
LUA
    # eoskip_config NAME GROUP SCRIPT INTERVAL [more lines]; a killed member
    # leaves the group after session.timeout.ms (the broker's minimum).
    eoskip_config() {
        KAFKA_EXTRA="auto.commit.interval.ms = $4"$'\n'$'session.timeout.ms = 6000\nheartbeat.interval.ms = 1000\n' \
            config "$1" "$2" "${@:5}" "[script s]" "file = $3.lua" "topics = $t" "root = $root"
    }
    done_all() { # the first run has taken every record
        metric_is 'zkflow_records_total{script="s",result="skipped"}' $((n - w)) &&
            metric_is 'zkflow_records_total{script="s",result="applied"}' $w
    }
    positions_at_end() { # the positions name the partitions' ends
        local p v sum=0
        for p in 0 1 2; do
            v=$(tree "/zkflow/offsets/$RUN-eoskip-$way/$t/$p" 2>/dev/null | cut -f2)
            sum=$((sum + ${v:-0}))
        done
        [ "$sum" = $n ]
    }
    for way in eof term kill9 revoke; do
        local group=$RUN-eoskip-$way interval=600000
        [ $way = kill9 ] && interval=1000
        cfg=$(eoskip_config "eoskip-$way" "$group" eoskip $interval \
            "[engine]" "metrics_listen = $METRICS")
        case $way in
        eof)
            zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1 ;;
        term|kill9)
            zkflow_bg run -c "$cfg"
            wait_until 60 done_all || fail "$way: the first run did not take every record" ||
                { kill $BG; return 1; }
            if [ $way = term ]; then
                kill -TERM $BG; wait $BG; expect_exit 0 $? || return 1
            else
                wait_until 60 positions_at_end ||
                    fail "kill9: positions not written within 60 s of the last record" ||
                    { kill $BG; return 1; }
                kill -9 $BG; wait $BG 2>/dev/null
            fi ;;
        revoke)
            zkflow_bg run -c "$cfg"
            local a=$BG b
            wait_until 60 done_all || fail "revoke: the first run did not take every record" ||
                { kill $a; return 1; }
            mv "$WORK/log" "$WORK/a.log"
            # A second instance takes some partitions over, with the
            # script that writes everything.
            zkflow_bg run -c "$(eoskip_config eoskip-b "$group" eoall $interval)"
            b=$BG
            wait_until 60 grep -q "revoked" "$WORK/a.log" ||
                fail "revoke: no partition moved to the second instance" ||
                { kill $a $b; return 1; }
            wait_until 60 grep -qE "starting at offset|no position" "$WORK/log" ||
                fail "revoke: the second instance got no partition" || { kill $a $b; return 1; }
            kill -TERM $b; wait $b; expect_exit 0 $? || return 1
            kill -TERM $a; wait $a; expect_exit 0 $? || return 1
            [ "$(consumed)" = 0 ] ||
                fail "revoke: the new owner transformed $(consumed) record(s) again" || return 1
            continue ;;
        esac
        positions_at_end || fail "$way: positions do not name the partitions' ends" || return 1
        zkflow run -c "$(eoskip_config eoskip-all-$way "$group" eoall $interval)" --exit-on-eof
        expect_exit 0 $? || return 1
        [ "$(consumed)" = 0 ] ||
            fail "$way: $(consumed) record(s) transformed again by the next run" || return 1
    done
    [ "$(tree "$root/again" 2>/dev/null | wc -l)" -le 1 ] ||
        fail "records written again under $root/again" || return 1
    local way2
    for way2 in eof term kill9 revoke; do
        "$ZKTREE" --delete "$ZK" "/zkflow/offsets/$RUN-eoskip-$way2"
    done
}

# ------------------------------------------------------------------ main

[ -x "$ZKFLOW" ] && [ -x "$ZKTREE" ] || { echo "build first: make" >&2; exit 2; }
scripts/services.sh start || exit 1

tests=("$@")
[ ${#tests[@]} -gt 0 ] || mapfile -t tests < <(declare -F | awk '$3 ~ /^test_/ { print $3 }')
for t in "${tests[@]}"; do
    echo "--- $t"
    start=$SECONDS
    if "$t"; then
        passed=$((passed + 1))
        echo "    ok ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failures+=("$t")
        cp "$WORK/log" "/tmp/zkflow-it-$t.log" 2>/dev/null &&
            echo "    (its last zkflow log: /tmp/zkflow-it-$t.log)"
    fi
    [ -z "${STREAM_TAG:-}" ] || touch "$STREAM_TAG.stop" # a stream a failed test left
done
"$ZKTREE" --delete "$ZK" "/$RUN" || true
[ $failed -eq 0 ] || printf 'failed: %s\n' "${failures[@]}"
echo "integration: $passed passed, $failed failed"
[ $failed -eq 0 ]

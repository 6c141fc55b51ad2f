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
WORK=$(mktemp -d /tmp/zkflow-it.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

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
config() {
    local name=$1 group=$2
    shift 2
    {
        printf '[kafka]\nbootstrap.servers = %s\ngroup.id = %s\n' "$KAFKA" "$group"
        printf '[zookeeper]\nconnect = %s\nconnect_timeout_ms = 5000\n' "$ZK"
        printf '%s\n' "$@"
    } >"$WORK/$name.ini"
    echo "$WORK/$name.ini"
}

# zkflow ARGS...: run with a time limit; stderr saved to $WORK/log
zkflow() {
    timeout 120 "$ZKFLOW" "$@" 2>"$WORK/log"
}

# keyed TOPIC N KEYS: produce N records; record i has key k(i % KEYS) and
# value i, so the last record of key kK is the largest i with i % KEYS = K.
keyed() {
    awk -v n="$2" -v k="$3" 'BEGIN { for (i = 0; i < n; i++) printf "k%d\t%d\n", i % k, i }' | produce "$1"
}

# expect_last_per_key ROOT N KEYS [SUFFIX]: the tree `keyed` records leave
# when each key's value goes to ROOT/kK[SUFFIX].
expect_last_per_key() {
    {
        printf '%s\t\n' "$1"
        awk -v n="$2" -v keys="$3" 'BEGIN { for (i = 0; i < n; i++) last[i % keys] = i
                                           for (k = 0; k < keys; k++) print "k" k "\t" last[k] }' |
            sort | awk -F'\t' -v r="$1" -v sfx="${4:-}" '{
                if (sfx != "") printf "%s/%s\t\n", r, $1
                printf "%s/%s%s\t%s\n", r, $1, sfx, $2 }'
    } >"$WORK/expected"
    expect_tree "$1" "$WORK/expected"
}

# wait_for_nodes ROOT N: wait (up to 10 s) until ROOT holds more than N nodes.
wait_for_nodes() {
    for _ in $(seq 100); do
        [ "$(tree "$1" 2>/dev/null | wc -l)" -gt "$2" ] && return 0
        sleep 0.1
    done
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

# Hot reload: while records stream in, the script is replaced 24 times (in
# place and by rename), a third of them with versions that do not compile,
# raise while loading, or return no function. Every record lands once, each
# written by the version live when it was transformed (versions never go
# back in offset order), and no broken version ever writes.
test_hot_reload_under_load() {
    local t=$RUN-reload root=/$RUN/reload batches=30 per=200
    topic "$t" 1
    write_version() { # N KIND [mv]
        local body
        case $2 in
            good) body="return function(rec) return \"$root/\" .. rec.offset, \"v$1\" end" ;;
            syntax) body="return function(rec) return \"$root/\" .. rec.offset, \"BAD$1\" end end" ;;
            raise) body="error(\"broken init $1\")" ;;
            notfn) body="return \"BAD$1\"" ;;
        esac
        if [ "${3:-}" = mv ]; then
            printf '%s\n' "$body" >"$WORK/reload.lua.tmp" && mv "$WORK/reload.lua.tmp" "$WORK/reload.lua"
        else
            printf '%s\n' "$body" >"$WORK/reload.lua"
        fi
    }
    write_version 0 good
    local cfg pid
    cfg=$(config reload "$RUN-reload" "[script r]" "file = reload.lua" "topics = $t" "root = $root")
    timeout 120 "$ZKFLOW" run -c "$cfg" 2>"$WORK/log" &
    pid=$!
    ( for b in $(seq $batches); do
          awk -v b="$b" -v n=$per 'BEGIN { for (i = 0; i < n; i++) printf "k\t%d-%d\n", b, i }' | produce "$t"
          sleep 0.2
      done ) &
    local producer=$! kinds=(good syntax good raise good notfn) k
    for k in $(seq 1 24); do
        sleep 0.25
        write_version "$k" "${kinds[$((k % 6))]}" "$([ $((k % 2)) = 0 ] && echo mv)"
    done
    wait $producer
    local n=$((batches * per))
    for _ in $(seq 200); do
        [ "$(tree "$root" | wc -l)" -gt $n ] && break
        sleep 0.1
    done
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    tree "$root" | tail -n +2 | awk -F'\t' '{ n = split($1, p, "/"); print p[n] "\t" $2 }' | sort -n >"$WORK/got"
    [ "$(wc -l <"$WORK/got")" = $n ] || fail "$(wc -l <"$WORK/got") records landed, expected $n" || return 1
    ! grep -q BAD "$WORK/got" || fail "a broken version wrote" || return 1
    awk -F'\t' '{ v = substr($2, 2) + 0; if (v < last) { print "offset " $1 " has v" v " after v" last; bad = 1 } last = v }
                END { exit bad }' "$WORK/got" || fail "a version went back" || return 1
    [ "$(grep -c 'reloaded, version' "$WORK/log")" -ge 10 ] || fail "fewer than 10 reloads logged" || return 1
    expect_log "reload rejected, version" || return 1
    expect_log "reload.lua:1: broken init" || return 1
    expect_log "must return a function" || return 1
    [ "$(cut -f2 "$WORK/got" | sort -u | wc -l)" -ge 5 ] || fail "fewer than 5 versions wrote records"
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

# A second run resumes from the offsets the first committed.
test_resume_from_committed() {
    local t=$RUN-resume root=/$RUN/resume
    topic "$t" 3
    awk 'BEGIN { for (i = 0; i < 100; i++) printf "k%d\t%d\n", i, i }' | produce "$t"
    cat >"$WORK/resume.lua" <<LUA
return function(rec) return "$root/" .. rec.key, rec.value end
LUA
    local cfg
    cfg=$(config resume "$RUN-resume" "[script r]" "file = resume.lua" "topics = $t" "root = $root")
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 100 ] || fail "first run consumed $(consumed), expected 100" || return 1
    awk 'BEGIN { for (i = 100; i < 150; i++) printf "k%d\t%d\n", i, i }' | produce "$t"
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 50 ] || fail "second run consumed $(consumed), expected 50" || return 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    [ "$(consumed)" = 0 ] || fail "third run consumed $(consumed), expected 0" || return 1
    [ "$(tree "$root" | wc -l)" = 151 ] || fail "expected 150 znodes under $root"
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

# A second instance joins the group mid-stream: partitions move between the
# two (cooperative rebalance), each exits once caught up, nothing is lost.
test_two_instances_share_partitions() {
    local t=$RUN-pair root=/$RUN/pair n=30000
    topic "$t" 4
    keyed "$t" $n 400
    cat >"$WORK/pair.lua" <<LUA
return function(rec) return "$root/" .. rec.key, rec.value end
LUA
    local cfg a b
    # One op per multi keeps the first instance busy when the second joins.
    cfg=$(config pair "$RUN-pair" "[engine]" "batch_max_ops = 1" \
        "[script p]" "file = pair.lua" "topics = $t" "root = $root")
    timeout 120 "$ZKFLOW" run -c "$cfg" --exit-on-eof 2>"$WORK/a.log" &
    a=$!
    wait_for_nodes "$root" 50
    timeout 120 "$ZKFLOW" run -c "$cfg" --exit-on-eof 2>"$WORK/b.log" &
    b=$!
    local sa sb
    wait $a; sa=$?
    wait $b; sb=$?
    cat "$WORK/a.log" "$WORK/b.log" >"$WORK/log"
    expect_exit 0 $sa || return 1
    expect_exit 0 $sb || return 1
    expect_log "revoked 2 partition(s)" || return 1
    expect_last_per_key "$root" $n 400
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
# a second run completes the tree with nothing lost.
test_sigterm_drains_and_resumes() {
    local t=$RUN-term root=/$RUN/term n=20000
    topic "$t" 4
    keyed "$t" $n 500
    cat >"$WORK/term.lua" <<LUA
return function(rec) return "$root/" .. rec.key, rec.value end
LUA
    local cfg pid first
    # One op per multi keeps this run slow enough to be stopped midway.
    cfg=$(config term "$RUN-term" "[engine]" "batch_max_ops = 1" \
        "[script t]" "file = term.lua" "topics = $t" "root = $root")
    timeout 120 "$ZKFLOW" run -c "$cfg" 2>"$WORK/log" &
    pid=$!
    wait_for_nodes "$root" 50
    kill -TERM $pid
    wait $pid; expect_exit 0 $? || return 1
    expect_log "finishing writes in flight, then committing" || return 1
    first=$(sed -n 's/.*finished: .* applied=\([0-9]*\).*/\1/p' "$WORK/log")
    [ -n "$first" ] && [ "$first" -lt $n ] || fail "first run applied '$first' of $n: too fast to test" || return 1
    zkflow run -c "$cfg" --exit-on-eof; expect_exit 0 $? || return 1
    # What the first run did not apply, the second must consume again.
    [ $((first + $(consumed))) -ge $n ] || fail "applied $first + consumed $(consumed) < $n: records lost" || return 1
    expect_last_per_key "$root" $n 500
}

# ZooKeeper killed and restarted mid-stream: ops caught by the connection loss
# are sent again, and the tree ends up complete and in order.
test_zookeeper_restart_midstream() {
    local t=$RUN-zkrestart root=/$RUN/zkrestart n=20000
    local pidfile=${ZKFLOW_STATE_DIR:-.state}/zookeeper/zookeeper.pid
    topic "$t" 4
    keyed "$t" $n 300
    cat >"$WORK/zkrestart.lua" <<LUA
return function(rec) return "$root/" .. rec.key .. "/v", rec.value end
LUA
    local cfg pid
    # Small multis keep writes in flight while ZooKeeper goes away.
    cfg=$(config zkrestart "$RUN-zkrestart" "[engine]" "batch_max_ops = 2" \
        "[script z]" "file = zkrestart.lua" "topics = $t" "root = $root")
    timeout 120 "$ZKFLOW" run -c "$cfg" --exit-on-eof 2>"$WORK/log" &
    pid=$!
    wait_for_nodes "$root" 50
    kill -KILL "$(cat "$pidfile")"
    sleep 1
    scripts/services.sh start >/dev/null || fail "ZooKeeper did not come back" || return 1
    wait $pid; expect_exit 0 $? || return 1
    expect_log "reconnecting" || return 1
    [ "$(consumed)" = $n ] || fail "consumed $(consumed), expected $n" || return 1
    expect_last_per_key "$root" $n 300 /v
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
done
"$ZKTREE" --delete "$ZK" "/$RUN" || true
[ $failed -eq 0 ] || printf 'failed: %s\n' "${failures[@]}"
echo "integration: $passed passed, $failed failed"
[ $failed -eq 0 ]

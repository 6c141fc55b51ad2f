#!/usr/bin/env bash
# `make examples`: every example transform against its sample records.
#
# For each examples/NAME.lua that has examples/NAME.records.jsonl and
# examples/NAME.expected.jsonl, runs
#   build/zkflow test examples/NAME.lua examples/NAME.records.jsonl \
#       --expect examples/NAME.expected.jsonl [ARGS...]
# from the repository root, so the script paths inside expected error lines
# read examples/NAME.lua. ARGS come from examples/NAME.args when it exists:
# extra `zkflow test` arguments such as `--param root=/x` or `--root /x`,
# split on blanks (no quoting), blank lines and # comments ignored.
#
# Prints one line per example. When run without arguments, it then checks
# `zkflow test` itself (exit statuses, diffs, messages) on throwaway files.
# Ends with the line `examples: N passed, M failed`; exits 1 if anything
# failed (or no example was found).
# `tests/examples.sh NAME...` runs only the named examples.
# ZKFLOW=path/to/zkflow overrides the binary.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

ZKFLOW=${ZKFLOW:-build/zkflow}
if [ ! -x "$ZKFLOW" ]; then
    echo "examples: $ZKFLOW is not built (run make)" >&2
    exit 1
fi

indent() { while IFS= read -r l; do printf '      %s\n' "$l"; done; }

names=()
if [ $# -gt 0 ]; then
    names=("$@")
else
    for lua in examples/*.lua; do
        name=$(basename "$lua" .lua)
        [ -f "examples/$name.records.jsonl" ] && [ -f "examples/$name.expected.jsonl" ] &&
            names+=("$name")
    done
fi

passed=0
failed=0
for name in "${names[@]}"; do
    args=()
    if [ -f "examples/$name.args" ]; then
        while read -r line; do
            read -ra words <<<"${line%%#*}"
            args+=("${words[@]}")
        done <"examples/$name.args"
    fi
    out=$("$ZKFLOW" test "examples/$name.lua" "examples/$name.records.jsonl" \
        --expect "examples/$name.expected.jsonl" "${args[@]}" 2>&1)
    rc=$?
    # Exit 0 and a summary with nothing differing.
    if [ $rc -eq 0 ] && grep -qE '^[0-9]+ records: [0-9]+ matched, 0 differed$' <<<"$out"; then
        printf 'ok    %-12s %s\n' "$name" "$(tail -n 1 <<<"$out")"
        passed=$((passed + 1))
    else
        printf 'FAIL  %-12s exit %d\n' "$name" "$rc"
        indent <<<"$out"
        failed=$((failed + 1))
    fi
done

# `zkflow test` itself: exit statuses, diffs and messages, on throwaway
# files (only when every example runs).
cli_passed=0
cli_failed=0
check() { # check WHAT WANT_EXIT WANT_TEXT GOT_EXIT GOT_TEXT
    if [ "$4" -eq "$2" ] && [[ "$5" == *"$3"* ]]; then
        cli_passed=$((cli_passed + 1))
    else
        printf 'FAIL  zkflow test: %s: want exit %d and "%s", got exit %d:\n' \
            "$1" "$2" "$3" "$4"
        indent <<<"$5"
        cli_failed=$((cli_failed + 1))
    fi
}
if [ $# -eq 0 ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    printf 'return function(rec)\n  if rec.value == "boom" then error("boom") end\n  return "/t/" .. rec.key, rec.value\nend\n' >"$tmp/t.lua"
    printf '# comment\n{"key":"a","value":"1"}\n\n{"key":"b","value":"boom"}\n{"key":"c","value":null,"offset":40}\n' >"$tmp/r.jsonl"

    out=$("$ZKFLOW" test "$tmp/t.lua" "$tmp/r.jsonl" 2>&1); rc=$?
    check "a failing record is an error line, the rest go on" 1 \
        '{"offset":1,"error":"'"$tmp"'/t.lua:2: boom"}
{"offset":40,"ops":[{"op":"upsert","path":"/t/c"}]}' $rc "$out"
    out=$("$ZKFLOW" test "$tmp/t.lua" <"$tmp/r.jsonl" 2>&1); rc=$?
    check "records from stdin" 1 '{"offset":0,"ops":[{"op":"upsert","path":"/t/a","data":"1"}]}' $rc "$out"

    "$ZKFLOW" test "$tmp/t.lua" "$tmp/r.jsonl" >"$tmp/e.jsonl" 2>/dev/null
    out=$("$ZKFLOW" test "$tmp/t.lua" "$tmp/r.jsonl" --expect "$tmp/e.jsonl" 2>&1); rc=$?
    check "--expect, all matched" 0 "3 records: 3 matched, 0 differed" $rc "$out"
    { echo '# a comment'; sed 's/"data":"1"/"data":"2"/' "$tmp/e.jsonl"; } >"$tmp/e2.jsonl"
    out=$("$ZKFLOW" test "$tmp/t.lua" "$tmp/r.jsonl" --expect "$tmp/e2.jsonl" 2>&1); rc=$?
    check "--expect, a difference" 1 'line 2: expected {"offset":0,"ops":[{"op":"upsert","path":"/t/a","data":"2"}]}
line 2: actual   {"offset":0,"ops":[{"op":"upsert","path":"/t/a","data":"1"}]}
3 records: 2 matched, 1 differed' $rc "$out"
    { cat "$tmp/e.jsonl"; echo '{"offset":41,"skip":true}'; } >"$tmp/e3.jsonl"
    out=$("$ZKFLOW" test "$tmp/t.lua" "$tmp/r.jsonl" --expect "$tmp/e3.jsonl" 2>&1); rc=$?
    check "--expect, a missing record" 1 'line 4: actual   nothing (no more records)
expected 4 result(s), got 3
3 records: 3 matched, 0 differed' $rc "$out"

    printf '{"key":"a"}\n{"key":"b",}\n' >"$tmp/bad.jsonl"
    out=$("$ZKFLOW" test "$tmp/t.lua" "$tmp/bad.jsonl" 2>&1); rc=$?
    check "a malformed record line" 2 "$tmp/bad.jsonl:2: invalid JSON at column" $rc "$out"
    printf '{"key":"a","partition":"0"}\n' >"$tmp/bad.jsonl"
    out=$("$ZKFLOW" test "$tmp/t.lua" "$tmp/bad.jsonl" 2>&1); rc=$?
    check "a field of the wrong type" 2 "$tmp/bad.jsonl:1: partition must be an integer, not a string" $rc "$out"
    printf 'return function(rec)\n  return +\nend\n' >"$tmp/bad.lua"
    out=$("$ZKFLOW" test "$tmp/bad.lua" "$tmp/r.jsonl" 2>&1); rc=$?
    check "a script that does not compile" 2 "$tmp/bad.lua:2: unexpected symbol" $rc "$out"
    out=$("$ZKFLOW" test 2>&1); rc=$?
    check "no script" 2 "zkflow: test: missing SCRIPT" $rc "$out"
    out=$("$ZKFLOW" test "$tmp/t.lua" --param nameonly 2>&1); rc=$?
    check "a bad --param" 2 "--param nameonly: expected NAME=VALUE" $rc "$out"
    out=$("$ZKFLOW" --help 2>&1); rc=$?
    check "--help describes --dry-run" 0 "--dry-run          (run) consume and print" $rc "$out"

    # zkflow check: the configuration, every script, and their fixtures
    # (NAME.records.jsonl / NAME.expected.jsonl beside NAME.lua). No
    # connection is made for scripts kept in files.
    printf '[kafka]\nbootstrap.servers = 127.0.0.1:1\ngroup.id = g\n[zookeeper]\nconnect = 127.0.0.1:1\n[script t]\nfile = t.lua\ntopics = t\n' >"$tmp/c.ini"
    out=$("$ZKFLOW" check -c "$tmp/c.ini" 2>&1); rc=$?
    check "check: no fixtures" 0 "$tmp/c.ini: ok (1 script(s))" $rc "$out"
    cp "$tmp/r.jsonl" "$tmp/t.records.jsonl"
    cp "$tmp/e.jsonl" "$tmp/t.expected.jsonl"
    out=$("$ZKFLOW" check -c "$tmp/c.ini" 2>&1); rc=$?
    check "check: fixtures pass" 0 "$tmp/c.ini: ok (1 script(s))" $rc "$out"
    cp "$tmp/e2.jsonl" "$tmp/t.expected.jsonl"
    out=$("$ZKFLOW" check -c "$tmp/c.ini" 2>&1); rc=$?
    check "check: a fixture fails" 2 "$tmp/c.ini:7: [script t]: version" $rc "$out"
    check "check: ... naming the expected line" 2 "fails its fixtures: $tmp/t.expected.jsonl:2: expected" $rc "$out"
    rm "$tmp/t.records.jsonl"
    out=$("$ZKFLOW" check -c "$tmp/c.ini" 2>&1); rc=$?
    check "check: expected results without records" 2 "expected results without records" $rc "$out"

    # The config of `make demo`: valid as it is, and with the services'
    # ports moved (it takes ZK_PORT and KAFKA_PORT from the environment).
    out=$(env -u ZK_PORT -u KAFKA_PORT "$ZKFLOW" check -c examples/quickstart.ini 2>&1); rc=$?
    check "check: the quickstart config" 0 "examples/quickstart.ini: ok" $rc "$out"
    out=$(ZK_PORT=2281 KAFKA_PORT=9192 "$ZKFLOW" check -c examples/quickstart.ini 2>&1); rc=$?
    check "check: the quickstart config on moved ports" 0 "examples/quickstart.ini: ok" $rc "$out"
    echo "zkflow test: $cli_passed checks passed, $cli_failed failed"
fi

echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$cli_failed" -eq 0 ] && [ "$passed" -gt 0 ]

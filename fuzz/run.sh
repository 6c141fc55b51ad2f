#!/usr/bin/env bash
# fuzz/run.sh SECONDS NAME...: run each harness $FUZZ_DIR/fuzz_NAME
# (build/fuzz by default; `make fuzz` and `make fuzz-smoke` build them) for
# SECONDS, one after the other, on the inputs that once failed
# (fuzz/findings/NAME), the seeds (fuzz/seeds/NAME, $FUZZ_DIR/seeds/NAME)
# and the corpus earlier runs kept ($FUZZ_DIR/corpus/NAME, where new inputs
# go). Prints one line per harness, with the sanitizer's report when it
# fails; the full output is in $FUZZ_DIR/NAME.log and a failing input in
# $FUZZ_DIR/findings/NAME-*. Exits 1 when any harness failed.
set -uo pipefail

secs=$1
shift
dir=${FUZZ_DIR:-build/fuzz}
failed=()
for n in "$@"; do
    mkdir -p "$dir/corpus/$n" "$dir/findings"
    # A slow input (20 s) or one record taking over 2 GB fails the run.
    args=(-timeout=20 -rss_limit_mb=2048 -print_final_stats=1
          -max_total_time="$secs" -artifact_prefix="$dir/findings/$n-")
    [ -f "fuzz/$n.dict" ] && args+=(-dict="fuzz/$n.dict")
    inputs=("$dir/corpus/$n" "fuzz/seeds/$n" "$dir/seeds/$n")
    [ -d "fuzz/findings/$n" ] && inputs+=("fuzz/findings/$n")
    log=$dir/$n.log
    start=$SECONDS
    if "$dir/fuzz_$n" "${args[@]}" "${inputs[@]}" >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$n")
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "fuzz_$n: $status: ${runs:-?} inputs in $((SECONDS - start)) s" \
         "(${rate:-?}/s)"
    if [ "$status" = FAILED ]; then
        # From the first line of the report: ours (fuzz:), a sanitizer's,
        # libFuzzer's (leak, out of memory, timeout).
        # libFuzzer's own frames and the input's bytes are left out.
        sed -n '/^fuzz: \|ERROR: \|runtime error: /,$p' "$log" |
            grep -v '^#[0-9]\|^MS: \|^Base64: \|fuzzer::\|libc_start\| in _start \|^0x\|^NOTE:\|^ *Combine libFuzzer' |
            cut -c1-300 | head -n 30
        echo "fuzz_$n: full output in $log, the input in $dir/findings/$n-*"
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]}"
    exit 1
fi

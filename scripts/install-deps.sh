#!/usr/bin/env bash
# Install the Debian packages zkflow needs to build, test and run its demo.
#
# Runs at the start of every make target, so the common case (everything
# already installed) must be silent and fast: one dpkg-query call, no apt.
# Only when something is missing: one `apt-get update`, then one install.
set -euo pipefail

PACKAGES=(
    build-essential pkg-config
    librdkafka-dev libzookeeper-mt-dev libluajit-5.1-dev libinih-dev
    libcmocka-dev libjansson-dev libmicrohttpd-dev valgrind
    lua-cjson-dev   # tests/test_json.c and fuzz/fuzz_json.c: compare engine/json.c with it
    clang libclang-rt-14-dev llvm   # fuzz/: libFuzzer, ASan, UBSan; llvm-symbolizer for their stacks
    kcat zookeeper maven default-jre-headless   # services.sh (Kafka 4 needs Java 17)
    netcat-openbsd procps time
    man-db groff-base systemd   # tests/install.sh: man -l, groff, systemd-analyze verify
)

# Print the packages of PACKAGES that are not fully installed.
missing_packages() {
    local installed
    # One dpkg-query for all names; unknown names only produce stderr noise.
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null \
                | awk '$2 == "installed" { print $1 }' || true)
    local p
    for p in "${PACKAGES[@]}"; do
        grep -qxF -- "$p" <<<"$installed" || printf '%s\n' "$p"
    done
}

main() {
    local missing
    mapfile -t missing < <(missing_packages)
    [ "${#missing[@]}" -eq 0 ] && return 0

    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing Debian packages: ${missing[*]}" >&2
        echo "install-deps: run as root, or: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi

    local log
    log=$(mktemp /tmp/zkflow-install-deps.XXXXXX.log)
    export DEBIAN_FRONTEND=noninteractive
    # Wait for the dpkg lock instead of failing when two make jobs race here.
    local apt=(apt-get -q -o DPkg::Lock::Timeout=300)

    echo "install-deps: apt-get update"
    if ! "${apt[@]}" update >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "install-deps: apt-get update failed (full log: $log)" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    if ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "install-deps: apt-get install failed (full log: $log)" >&2
        exit 1
    fi
    rm -f "$log"
}

main "$@"

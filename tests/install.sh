#!/usr/bin/env bash
# `make install-check` (part of `make test`; needs no services).
#
# 1. The man page cannot drift from the binary: every command, long option
#    and configuration key (and section) that `zkflow --help` prints has an
#    entry in dist/zkflow.1, i.e. a line starting with .B/.BI/.BR that holds
#    it (keys: the whole entry, "param. NAME" joined as "param.NAME"), and
#    its .TH names the version that `zkflow --version` prints.
# 2. The page renders without a groff warning (man -l --warnings, groff -ww).
# 3. `make install DESTDIR=$(mktemp -d)` installs the listed files with the
#    real paths in the systemd unit; the unit passes systemd-analyze verify;
#    `make uninstall` removes them again.
# 4. The example config passes `zkflow check`, with its SASL/TLS lines too;
#    ${KAFKA_PASSWORD} unset is a FILE:LINE error, exit 2; a password written
#    in a world-readable file gets a warning that does not show it; a
#    newline in what a log line quotes is escaped, not a forged line.
# 5. A script that is a FIFO or /dev/zero, or a file over 1 MiB, is a
#    FILE:LINE error, exit 2; check stops on SIGTERM wherever it waits.
# 6. check and run refuse a connection string the ZooKeeper client refuses
#    with the same FILE:LINE error, exit 2.
# Ends with `install: N checks passed, M failed`; exits 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

ZKFLOW=${ZKFLOW:-build/zkflow}
MAN=dist/zkflow.1
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
expect() { # expect WHAT COMMAND...: the command must succeed
    local what=$1; shift
    if "$@"; then ok; else bad "$what"; fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

help=$("$ZKFLOW" --help) || { bad "zkflow --help exits 0"; help=; }

# --- 1. the man page against --help -----------------------------------------
# Entry lines of the page, normalised: macro and quotes dropped, \- -> -,
# \& dropped, arguments joined without blanks.
entries=$(grep -E '^\.B[IR]? ' "$MAN" | sed -E 's/^\.B[IR]? //; s/\\-/-/g; s/\\&//g; s/"//g; s/ //g')
has_entry() { grep -qxF -- "$1" <<<"$entries"; }

# Commands: the lines of the "commands:" block that start with a word.
cmds=$(awk '/^commands:/ { on = 1; next } /^$/ { on = 0 } on && /^  [a-z]+ / { print $1 }' <<<"$help")
[ -n "$cmds" ] || bad "--help lists commands"
for c in $cmds; do
    if has_entry "$c"; then ok; else bad "command '$c' has no entry (.B $c) in $MAN"; fi
done

# Long options: every --word in --help, as an entry line holding it.
opts=$(grep -oE -- '--[a-z][a-z-]*[a-z]' <<<"$help" | sort -u)
[ -n "$opts" ] || bad "--help lists long options"
for o in $opts; do
    # (Not grep -q: with pipefail, sed dying of SIGPIPE would fail it.)
    if grep -E '^\.B[IR]? ' "$MAN" | sed 's/\\-/-/g' | grep -E -- "${o}([^a-z-]|\$)" >/dev/null; then
        ok
    else
        bad "option $o has no entry (a .B line) in $MAN"
    fi
done

# Configuration keys: the indented words under each [section] after
# "configuration keys:", except [kafka] (pass-through, no keys of its own).
keys=$(awk '/^configuration keys:/ { on = 1; next }
            on && /^\[/ { sec = $0; print "SECTION " sec; next }
            on && sec != "[kafka]" && /^  [^ ]/ { print $1 }' <<<"$help")
[ "$(grep -c . <<<"$keys")" -gt 10 ] || bad "--help lists the configuration keys"
while read -r k rest; do
    [ -n "$k" ] || continue
    if [ "$k" = SECTION ]; then
        if grep -qxF ".SS $rest" "$MAN"; then ok; else bad "section $rest has no .SS in $MAN"; fi
    elif has_entry "$k"; then
        ok
    else
        bad "config key '$k' has no entry (.B $k) in $MAN"
    fi
done <<<"$keys"

# The page's version is the binary's.
want=$("$ZKFLOW" --version | head -n 1)
if grep -q "^\.TH ZKFLOW 1 [0-9-]* \"$want\" " "$MAN"; then ok; else bad "$MAN: .TH does not say \"$want\""; fi

# --- 2. it renders without warnings ------------------------------------------
warn=$(MANWIDTH=80 man --warnings -l "$MAN" 2>&1 >/dev/null)
if [ -z "$warn" ]; then ok; else bad "man --warnings -l $MAN: $warn"; fi
warn=$(groff -man -ww -z "$MAN" 2>&1)
if [ -z "$warn" ]; then ok; else bad "groff -ww: $warn"; fi
page=$(MANWIDTH=80 man -l "$MAN" 2>/dev/null)
for s in NAME SYNOPSIS DESCRIPTION COMMANDS OPTIONS CONFIGURATION "THE LUA CONTRACT" SIGNALS "EXIT STATUS" ENVIRONMENT FILES; do
    if grep -qx "$s" <<<"$page"; then ok; else bad "rendered page has no $s section"; fi
done

# --- 3. make install / uninstall ---------------------------------------------
dest=$tmp/dest
files=(usr/local/bin/zkflow usr/local/share/man/man1/zkflow.1
       usr/local/share/doc/zkflow/zkflow.ini.example
       usr/local/share/doc/zkflow/devices.lua
       usr/local/lib/systemd/system/zkflow.service)
if make -s install PREFIX=/usr/local DESTDIR="$dest" >"$tmp/install.log" 2>&1; then
    ok
    for f in "${files[@]}"; do
        if [ -f "$dest/$f" ]; then ok; else bad "make install did not install /$f"; fi
    done
    expect "the installed binary is executable" test -x "$dest/usr/local/bin/zkflow"
    ver=$("$dest/usr/local/bin/zkflow" --version)
    for v in "zkflow " "librdkafka " "zookeeper client " "LuaJIT "; do
        if grep -q "^$v[0-9]" <<<"$ver"; then ok; else bad "--version has no '$v' line: $ver"; fi
    done
    warn=$(MANWIDTH=80 man --warnings -l "$dest/usr/local/share/man/man1/zkflow.1" 2>&1 >/dev/null)
    if [ -z "$warn" ]; then ok; else bad "installed page: $warn"; fi
    unit=$dest/usr/local/lib/systemd/system/zkflow.service
    for line in 'ExecStart=/usr/local/bin/zkflow run -c /etc/zkflow/zkflow.ini' \
                'ExecReload=/bin/kill -HUP $MAINPID' 'KillSignal=SIGTERM' \
                'Restart=on-failure' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
                'ProtectHome=yes' 'PrivateTmp=yes' 'PrivateDevices=yes' \
                'ProtectKernelTunables=yes' 'ProtectKernelModules=yes' \
                'ProtectKernelLogs=yes' 'DynamicUser=yes' \
                'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX'; do
        if grep -qxF -- "$line" "$unit"; then ok; else bad "unit lacks '$line'"; fi
    done
    if grep -q '@[A-Z]*@' "$unit"; then bad "unit has unreplaced @VARS@"; else ok; fi
    # LuaJIT needs to make the code it writes executable.
    if grep -q '^MemoryDenyWriteExecute' "$unit"; then bad "unit sets MemoryDenyWriteExecute"; else ok; fi
    make -s uninstall PREFIX=/usr/local DESTDIR="$dest" >>"$tmp/install.log" 2>&1 || bad "make uninstall failed"
    left=$(find "$dest" -type f)
    if [ -z "$left" ]; then ok; else bad "make uninstall left: $left"; fi
else
    bad "make install failed: $(cat "$tmp/install.log")"
fi

# systemd checks the unit, with real paths (PREFIX inside the scratch dir).
if make -s install PREFIX="$tmp/prefix" SYSCONFDIR="$tmp/etc" >"$tmp/install.log" 2>&1; then
    out=$(systemd-analyze verify --man=no "$tmp/prefix/lib/systemd/system/zkflow.service" 2>&1)
    if [ -z "$out" ]; then ok; else bad "systemd-analyze verify: $out"; fi
else
    bad "make install PREFIX=$tmp/prefix failed: $(cat "$tmp/install.log")"
fi

# --- 4. the example config, secrets ------------------------------------------
mkdir -p "$tmp/etc"
cp examples/devices.lua "$tmp/etc/devices.lua"
ini=$tmp/etc/zkflow.ini
cp dist/zkflow.ini "$ini"
chmod 644 "$ini"
out=$(env -u KAFKA_BOOTSTRAP -u ZK_CONNECT "$ZKFLOW" check -c "$ini" 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ "$out" == "$ini: ok (1 script(s))" ]]; then ok; else bad "check of the example config: exit $rc: $out"; fi
# Its SASL/TLS example, with the password from the environment.
sed -i -E 's/^;(security\.protocol|sasl\.|ssl\.ca)/\1/' "$ini"
line=$(grep -n '^sasl.password = \${KAFKA_PASSWORD}$' "$ini" | cut -d: -f1)
[ -n "$line" ] || bad "example config has sasl.password = \${KAFKA_PASSWORD}"
out=$(KAFKA_PASSWORD=hunter2 "$ZKFLOW" check -c "$ini" 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ "$out" == "$ini: ok (1 script(s))" ]]; then ok; else bad "check with SASL/TLS: exit $rc: $out"; fi
out=$(env -u KAFKA_PASSWORD "$ZKFLOW" check -c "$ini" 2>&1); rc=$?
if [ $rc -eq 2 ] && [[ "$out" == "$ini:$line: environment variable KAFKA_PASSWORD is not set" ]]; then ok; else bad "KAFKA_PASSWORD unset: exit $rc: $out"; fi
# The password written in the file, which others can read: a warning
# without the password, and still exit 0.
sed -i 's/^sasl.password = .*/sasl.password = hunter2-literal/' "$ini"
out=$("$ZKFLOW" check -c "$ini" 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ "$out" == *"WARN  config: $ini:$line: this file holds a secret and is readable by others (mode 0644)"* ]] &&
   [[ "$out" != *hunter2* ]]; then ok; else bad "secret in a readable file: exit $rc: $out"; fi
chmod 600 "$ini"
out=$("$ZKFLOW" check -c "$ini" 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ "$out" != *WARN* ]]; then ok; else bad "secret in a 0600 file: exit $rc: $out"; fi
# A newline in what a log line quotes (here the file's name) cannot forge
# another line: the warning stays one line, with the newline as \n.
forged="$tmp/etc/x"$'\n'"2026-01-01T00:00:00.000Z ERROR engine: forged.ini"
cp "$ini" "$forged"
chmod 644 "$forged"
out=$("$ZKFLOW" check -c "$forged" 2>&1 >/dev/null); rc=$?
if [ $rc -eq 0 ] && [ "$(wc -l <<<"$out")" -eq 1 ] &&
   [[ "$out" == *"WARN  config: $tmp/etc/x\n2026-01-01T00:00:00.000Z ERROR engine: forged.ini:$line: this file holds a secret"* ]]; then
    ok
else
    bad "a newline in a logged value: exit $rc: $out"
fi

# --- 5. check against hostile script files -----------------------------------
mkdir -p "$tmp/hostile"
cat >"$tmp/hostile/base.ini" <<'INI'
[kafka]
bootstrap.servers = 127.0.0.1:9
group.id = g
[zookeeper]
connect = 127.0.0.1:9
[script s]
topics = t
INI
hostile() { # hostile NAME SCRIPT-PATH: a config NAME.ini running that script
    { cat "$tmp/hostile/base.ini"; echo "file = $2"; } >"$tmp/hostile/$1.ini"
    echo "$tmp/hostile/$1.ini"
}
# What is not a regular file is refused before it is opened for good: a
# FIFO nobody writes to, a device of endless zeros.
mkfifo "$tmp/hostile/fifo.lua"
for f in "$tmp/hostile/fifo.lua" /dev/zero; do
    ini=$(hostile odd "$f")
    # (Bounded, should it read on: the old zkflow did until the OOM killer,
    # or waited for a writer.)
    out=$(ulimit -v 4194304; timeout -s KILL 10 "$ZKFLOW" check -c "$ini" 2>&1); rc=$?
    want="$ini:8: [script s]: $f: not a regular file (a script or fixture is read from one)"
    if [ $rc -eq 2 ] && [ "$out" = "$want" ]; then ok; else bad "check of $f: exit $rc: $out"; fi
done
# A script file a byte over the 1 MiB limit: a FILE:LINE error naming the
# limit, exit 2; at the limit it loads (a Lua comment pads it).
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' '-' >"$tmp/hostile/big.lua"
ini=$(hostile big "$tmp/hostile/big.lua")
out=$("$ZKFLOW" check -c "$ini" 2>&1); rc=$?
want="$ini:8: [script s]: $tmp/hostile/big.lua: larger than 1 MiB (1048576 bytes), the limit for a script or fixture (ZooKeeper's for a znode)"
if [ $rc -eq 2 ] && [ "$out" = "$want" ]; then ok; else bad "check of a file over 1 MiB: exit $rc: $out"; fi
{ echo 'return function(rec) end'; head -c $((1024 * 1024 - 25)) /dev/zero | tr '\0' '-'; } >"$tmp/hostile/limit.lua"
ini=$(hostile limit "$tmp/hostile/limit.lua")
out=$("$ZKFLOW" check -c "$ini" 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$(stat -c %s "$tmp/hostile/limit.lua")" -eq 1048576 ]; then ok; else bad "check of a 1 MiB script: exit $rc: $out"; fi
# SIGTERM stops check at once, wherever it waits: here for a ZooKeeper
# that is not there (a script kept in a znode), for up to 10 minutes.
ini=$tmp/hostile/zk.ini
sed 's|^connect = .*|&\nconnect_timeout_ms = 600000|' "$tmp/hostile/base.ini" >"$ini"
echo "source = zk:/zkflow/scripts/s" >>"$ini"
"$ZKFLOW" check -c "$ini" >"$tmp/hostile/out" 2>&1 &
pid=$!
sleep 0.5
kill -TERM "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    bad "check waiting for ZooKeeper is still running 5 s after SIGTERM"
else
    wait "$pid"; rc=$?
    out=$(cat "$tmp/hostile/out")
    # It ends by the signal (143 in a shell), with that line last (the
    # ZooKeeper client's warnings may come before it).
    if [ $rc -eq 143 ] && [ "$(tail -n 1 <<<"$out")" = "zkflow check: stopped by SIGTERM" ]; then ok; else bad "check, SIGTERM: exit $rc: $out"; fi
fi

# --- 6. check and run agree on the configuration ------------------------------
# A connection string the ZooKeeper client refuses (no port): the same
# FILE:LINE error and exit 2 from both, before run connects to anything.
ini=$tmp/hostile/connect.ini
sed 's|^connect = .*|connect = 127.0.0.1|' "$tmp/hostile/base.ini" >"$ini"
echo "file = $tmp/hostile/limit.lua" >>"$ini"
want="$ini:5: connect: '127.0.0.1': '127.0.0.1' has no port (HOST:PORT)"
for cmd in check run; do
    out=$(timeout -s KILL 30 "$ZKFLOW" "$cmd" -c "$ini" 2>&1); rc=$?
    if [ $rc -eq 2 ] && [ "$out" = "$want" ]; then ok; else bad "$cmd with connect = 127.0.0.1: exit $rc: $out"; fi
done

echo "install: $passed checks passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Real ZooKeeper and Kafka on loopback, for zkflow's development, tests and demo.
#
#   scripts/services.sh start | stop | restart | status | reset
#   scripts/services.sh topic NAME PARTITIONS
#   scripts/services.sh ensemble start | stop | status | connect
#   scripts/services.sh ensemble start N | stop N | kill N
#
# ZooKeeper: Debian's `zookeeper` package, standalone, run directly with java.
# Kafka:     one 4.x broker in KRaft combined mode (broker+controller), its jars
#            resolved once by Maven from scripts/kafka/pom.xml and cached.
#
# `ensemble` runs a second, separate ZooKeeper: three servers of one quorum
# on loopback (same package, same settings), for tests that take one server
# away. `ensemble start` starts the servers not running and waits until each
# serves as leader or follower; `ensemble stop` stops them; `ensemble start N`,
# `stop N` (SIGTERM) and `kill N` (SIGKILL) act on server N (1-3) alone;
# `ensemble connect` prints the connection string of all three. `stop` and
# `reset` include the ensemble's servers too; `start` never starts them.
#
# Environment (all optional):
#   ZK_PORT                 ZooKeeper client port          (default 2181)
#   ZK_ENSEMBLE_PORT        client port of ensemble server 1 (default 2182);
#                           server N listens on ZK_ENSEMBLE_PORT + N - 1
#   ZK_ENSEMBLE_PEER_PORT   first of the ensemble's six quorum and election
#                           ports (default 2888); server N uses
#                           ZK_ENSEMBLE_PEER_PORT + 2(N-1) and the port after it
#   ZK_FORCE_SYNC           ZooKeeper's forceSync          (default no: no
#                           fsync per transaction, for development; yes is
#                           the server's own default, what production runs)
#   KAFKA_PORT              Kafka broker port              (default 9092)
#   KAFKA_CONTROLLER_PORT   Kafka KRaft controller port    (default 9093)
#   ZKFLOW_STATE_DIR        configs, data, logs, pid files (default <repo>/.state)
#   ZKFLOW_KAFKA_LIBS_DIR   cache of the Kafka jars        (default <repo>/.state/kafka-libs)
#                           shared by every state dir, so a test instance with
#                           its own ZKFLOW_STATE_DIR resolves nothing.
#   JAVA_HOME               Java (>= 17) to run with       (default: java on PATH)
#
# Every service binds to 127.0.0.1 only. Several instances can run side by
# side with different ports and state dirs.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$SCRIPT_DIR")

HOST=127.0.0.1
ZK_PORT=${ZK_PORT:-2181}
ZK_ENSEMBLE_PORT=${ZK_ENSEMBLE_PORT:-2182}
ZK_ENSEMBLE_PEER_PORT=${ZK_ENSEMBLE_PEER_PORT:-2888}
ENSEMBLE_SIZE=3
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
STATE_DIR=${ZKFLOW_STATE_DIR:-$REPO_DIR/.state}
LIBS_ROOT=${ZKFLOW_KAFKA_LIBS_DIR:-$REPO_DIR/.state/kafka-libs}
KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml

if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    JAVA=$JAVA_HOME/bin/java
else
    JAVA=java
fi

ZK_WAIT_SECS=30
KAFKA_WAIT_SECS=90
STOP_WAIT_SECS=20
# Any valid base64 UUID will do; a fixed one keeps the formatted storage stable.
KAFKA_CLUSTER_ID=MkU3OEVBNTcwNTJENDM2Qk

log() { printf '%s\n' "$*"; }
err() { printf 'services: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

usage() {
    echo "usage: $0 start|stop|restart|status|reset|topic NAME PARTITIONS" >&2
    echo "       $0 ensemble start|stop|status|connect" >&2
    echo "       $0 ensemble start|stop|kill N    (N = 1..$ENSEMBLE_SIZE)" >&2
    exit 2
}

# ---------------------------------------------------------------- helpers

# All paths below the state dir; called once STATE_DIR is absolute.
set_paths() {
    ZK_DIR=$STATE_DIR/zookeeper
    ZK_CFG=$ZK_DIR/zoo.cfg
    ZK_PID=$ZK_DIR/zookeeper.pid
    ZK_LOG=$ZK_DIR/logs/zookeeper.log
    ZK_OUT=$ZK_DIR/logs/zookeeper.out

    KAFKA_DIR=$STATE_DIR/kafka
    KAFKA_CFG=$KAFKA_DIR/server.properties
    KAFKA_PID=$KAFKA_DIR/kafka.pid
    KAFKA_LOG=$KAFKA_DIR/logs/server.log
    KAFKA_OUT=$KAFKA_DIR/logs/kafka.out

    ENS_DIR=$STATE_DIR/zk-ensemble
}

# Paths of ensemble server $1 (ENS_N, ENS_CFG, ...), and its client port.
set_ens_paths() {
    ENS_N=$1
    ENS_SRV=$ENS_DIR/$1
    ENS_CFG=$ENS_SRV/zoo.cfg
    ENS_PID=$ENS_SRV/zookeeper.pid
    ENS_LOG=$ENS_SRV/logs/zookeeper.log
    ENS_OUT=$ENS_SRV/logs/zookeeper.out
    ENS_CLIENT_PORT=$((ZK_ENSEMBLE_PORT + $1 - 1))
}

# Resolve a possibly relative path to an absolute one, creating the directory.
abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Send a ZooKeeper four-letter word (to port $2, default ZK_PORT), print the
# answer.
zk_4lw() {
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/${2:-$ZK_PORT} && printf %s '$1' >&3 && cat <&3" 2>/dev/null || true
}

# Pid from a pid file if that process is alive AND is ours: its command line
# must mention this instance's config file, so a recycled pid is never killed.
live_pid() {   # pidfile config
    local pid
    [ -f "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
    echo "$pid"
}

# Start a command fully detached: own session, stdin from /dev/null, output to
# a log file, and no inherited descriptors beyond 0-2 (a caller capturing our
# output through a pipe, e.g. make or a test harness, would otherwise wait
# for the daemon to exit). The wrapper writes its own pid, then execs, so the
# pid file holds the JVM's pid.
spawn() {   # pidfile outfile cmd...
    local pidfile=$1 out=$2
    shift 2
    rm -f "$pidfile"
    # shellcheck disable=SC2016
    setsid bash -c '
        pidfile=$1 out=$2; shift 2
        for fd in /proc/$$/fd/*; do
            n=${fd##*/}
            [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-" 2>/dev/null
        done
        echo $$ >"$pidfile"
        exec "$@" </dev/null >>"$out" 2>&1
    ' spawn "$pidfile" "$out" "$@" </dev/null >/dev/null 2>&1 &
    for _ in $(seq 1 50); do [ -s "$pidfile" ] && return 0; sleep 0.1; done
    die "could not start: $*"
}

# Print the last lines of a log file on stderr, if it has any.
show_tail() {   # file lines
    [ -s "$1" ] || return 0
    err "last lines of $1:"
    tail -n "$2" "$1" | sed 's/^/    /' >&2
}

# Wait until `ready_fn` succeeds, printing a dot every 3 s on stderr. Fail
# early if the process dies, or after `timeout` seconds, showing the tails of
# its log file and of its stdout/stderr file (JVM errors land in the latter).
wait_ready() {   # name ready_fn pidfile config timeout logfile outfile
    local name=$1 ready_fn=$2 pidfile=$3 config=$4 timeout=$5 logfile=$6 outfile=$7
    local start=$SECONDS next_dot=$((SECONDS + 3)) dots=0 problem=
    until "$ready_fn"; do
        if ! live_pid "$pidfile" "$config" >/dev/null; then
            problem="exited during startup"
        elif [ $((SECONDS - start)) -ge "$timeout" ]; then
            problem="not ready after ${timeout}s"
        fi
        if [ -n "$problem" ]; then
            [ "$dots" -gt 0 ] && echo >&2
            err "$name $problem"
            show_tail "$logfile" 30
            show_tail "$outfile" 15
            return 1
        fi
        if [ "$SECONDS" -ge "$next_dot" ]; then
            [ "$dots" -eq 0 ] && printf '%s: waiting' "$name" >&2
            printf '.' >&2
            dots=$((dots + 1)) next_dot=$((next_dot + 3))
        fi
        sleep 0.3
    done
    [ "$dots" -gt 0 ] && echo >&2
    return 0
}

# Wait for one of our processes (already sent TERM) to exit; KILL it after
# STOP_WAIT_SECS. An empty pid means it was not running.
await_exit() {   # name pid pidfile
    local name=$1 pid=$2 pidfile=$3
    if [ -z "$pid" ]; then
        rm -f "$pidfile"
        log "$name: not running"
        return 0
    fi
    for _ in $(seq 1 $((STOP_WAIT_SECS * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        err "$name (pid $pid) did not stop in ${STOP_WAIT_SECS}s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$pidfile"
    log "$name: stopped (pid $pid)"
}

# ---------------------------------------------------------------- zookeeper

zk_ready() {
    # ZooKeeper answers ruok before it serves; srvr reports a Mode only then.
    [ "$(zk_4lw ruok)" = imok ] && zk_4lw srvr | grep -q '^Mode:'
}

# The standalone server's config; or, with arguments, an ensemble server's:
# its directory, config file, client port and the lines naming the servers.
zk_write_config() {   # [dir config clientport server-lines]
    local dir=${1:-$ZK_DIR} cfg=${2:-$ZK_CFG} port=${3:-$ZK_PORT}
    mkdir -p "$dir/data" "$dir/logs"
    cat >"$cfg" <<EOF
# generated by scripts/services.sh; edits are overwritten on start
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPortAddress=$HOST
clientPort=$port
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
# no: development only, no fsync per transaction (ZK_FORCE_SYNC)
forceSync=${ZK_FORCE_SYNC:-no}
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
${4:-}
EOF
    cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.RollingFileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/zookeeper.log
log4j.appender.FILE.MaxFileSize=10MB
log4j.appender.FILE.MaxBackupIndex=3
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
EOF
}

# Start the standalone server; or, with arguments, an ensemble server: as
# zk_write_config, then its pid file and stdout file.
zk_launch() {   # [dir config clientport server-lines pidfile outfile]
    local dir=${1:-$ZK_DIR} cfg=${2:-$ZK_CFG} pidfile=${5:-$ZK_PID} out=${6:-$ZK_OUT}
    zk_write_config "$dir" "$cfg" "${3:-$ZK_PORT}" "${4:-}"
    # zookeeper.jar's manifest lists its dependencies under /usr/share/java;
    # add Debian's slf4j->log4j 1.2 binding so it logs to a file.
    local cp=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar
    [ -f /usr/share/java/zookeeper.jar ] || die "zookeeper jars missing (Debian package 'zookeeper')"
    # 1 GB: the server keeps its last 500 transactions in memory
    # (zookeeper.commitLogCount), and batches of large values add up.
    spawn "$pidfile" "$out" "$JAVA" -Xms64m -Xmx1g -XX:+UseSerialGC \
        -Djava.awt.headless=true \
        -Dzookeeper.extendedTypesEnabled=true \
        -Dzookeeper.log.dir="$dir/logs" \
        -Dlog4j.configuration="file:$dir/log4j.properties" \
        -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg"
}

# ---------------------------------------------------------------- ensemble

ens_ready() {   # serving as leader or follower (a server without quorum is not)
    [ "$(zk_4lw ruok "$ENS_CLIENT_PORT")" = imok ] &&
        zk_4lw srvr "$ENS_CLIENT_PORT" | grep -qE '^Mode: (leader|follower)'
}

ens_mode() { zk_4lw srvr "$ENS_CLIENT_PORT" | sed -n 's/^Mode: //p'; }

ens_connect() {
    local n list=
    for n in $(seq 1 $ENSEMBLE_SIZE); do
        list=$list${list:+,}$HOST:$((ZK_ENSEMBLE_PORT + n - 1))
    done
    echo "$list"
}

# Launch server $ENS_N (set_ens_paths first).
ens_launch() {
    local n peer servers=
    port_open "$ENS_CLIENT_PORT" &&
        die "zookeeper $ENS_N: port $ENS_CLIENT_PORT is in use by a process this script did not start"
    for n in $(seq 1 $ENSEMBLE_SIZE); do
        peer=$((ZK_ENSEMBLE_PEER_PORT + 2 * (n - 1)))
        servers+="server.$n=$HOST:$peer:$((peer + 1))"$'\n'
    done
    mkdir -p "$ENS_SRV/data"
    echo "$ENS_N" >"$ENS_SRV/data/myid"
    zk_launch "$ENS_SRV" "$ENS_CFG" "$ENS_CLIENT_PORT" "$servers" "$ENS_PID" "$ENS_OUT"
}

# The servers an ensemble command acts on: $1, or all of them.
ens_servers() {
    if [ -n "${1:-}" ]; then echo "$1"; else seq 1 $ENSEMBLE_SIZE; fi
}

cmd_ensemble_start() {   # [N]
    "$SCRIPT_DIR/install-deps.sh"
    command -v "$JAVA" >/dev/null || die "java not found"
    local n started=()
    for n in $(ens_servers "${1:-}"); do
        set_ens_paths "$n"
        if live_pid "$ENS_PID" "$ENS_CFG" >/dev/null; then
            if ens_ready; then
                log "zookeeper $n: already running on $HOST:$ENS_CLIENT_PORT (pid $(cat "$ENS_PID"))"
                continue
            fi
        else
            ens_launch
        fi
        started+=("$n")
    done
    # A server only serves once a quorum formed: wait after launching all.
    for n in "${started[@]}"; do
        set_ens_paths "$n"
        wait_ready "zookeeper $n" ens_ready "$ENS_PID" "$ENS_CFG" "$ZK_WAIT_SECS" "$ENS_LOG" "$ENS_OUT" || exit 1
        log "zookeeper $n: $(ens_mode) on $HOST:$ENS_CLIENT_PORT (pid $(cat "$ENS_PID"))"
    done
}

cmd_ensemble_stop() {   # [N [SIGNAL]]
    local n pid sig=${2:-TERM} pids=()
    for n in $(ens_servers "${1:-}"); do
        set_ens_paths "$n"
        pid=$(live_pid "$ENS_PID" "$ENS_CFG") || pid=
        if [ -n "$pid" ]; then kill -"$sig" "$pid" 2>/dev/null || true; fi
        pids[n]=$pid
    done
    for n in $(ens_servers "${1:-}"); do
        set_ens_paths "$n"
        await_exit "zookeeper $n" "${pids[n]}" "$ENS_PID"
    done
}

cmd_ensemble_status() {
    local n pid rc=0
    for n in $(ens_servers); do
        set_ens_paths "$n"
        if pid=$(live_pid "$ENS_PID" "$ENS_CFG"); then
            if ens_ready; then
                log "zookeeper $n: $(ens_mode) on $HOST:$ENS_CLIENT_PORT (pid $pid)"
            else
                log "zookeeper $n: process $pid alive but not serving on $HOST:$ENS_CLIENT_PORT"; rc=3
            fi
        else
            log "zookeeper $n: stopped"; rc=3
        fi
    done
    return "$rc"
}

# Stop the ensemble's servers if any runs; say nothing when none does.
ens_stop_running() {
    local n
    for n in $(ens_servers); do
        set_ens_paths "$n"
        if live_pid "$ENS_PID" "$ENS_CFG" >/dev/null; then
            cmd_ensemble_stop
            return
        fi
    done
}

cmd_ensemble() {   # SUBCOMMAND [N]
    local sub=${1:-} n=${2:-}
    if [ -n "$n" ]; then
        [[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le $ENSEMBLE_SIZE ] || usage
    fi
    case "$sub" in
        connect) [ -z "$n" ] || usage; ens_connect; return ;;
        status) [ -z "$n" ] || usage; cmd_ensemble_status; return ;;
        start|stop) ;;
        kill) [ -n "$n" ] || usage ;;
        *) usage ;;
    esac
    exec 8>"$STATE_DIR/.lock"
    flock 8
    case "$sub" in
        start) cmd_ensemble_start "$n" ;;
        stop) cmd_ensemble_stop "$n" ;;
        kill) cmd_ensemble_stop "$n" KILL ;;
    esac
}

# ---------------------------------------------------------------- kafka

kafka_ready() {
    # The port check first: kcat would spend its whole timeout on a closed port.
    port_open "$KAFKA_PORT" &&
        kcat -b "$HOST:$KAFKA_PORT" -L -m 2 2>/dev/null | grep -q '^ *broker [0-9]* at '
}

# Directory holding the jars for the current pom; resolved by Maven only when
# the pom's checksum has no complete directory yet. Locked, because parallel
# test instances may start at the same time.
kafka_libs() {
    local sum dir
    sum=$(sha256sum "$KAFKA_POM" | cut -c1-16)
    dir=$LIBS_ROOT/$sum
    if [ ! -f "$dir/.complete" ]; then
        mkdir -p "$LIBS_ROOT"
        (
            flock 9
            [ -f "$dir/.complete" ] && exit 0
            log "kafka: resolving jars with Maven (first start only)" >&2
            local work
            work=$(mktemp -d "$LIBS_ROOT/.resolve.XXXXXX")
            # Run Maven on a copy so it leaves no target/ in the source tree.
            cp "$KAFKA_POM" "$work/pom.xml"
            if ! (cd "$work" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$work/jars" \
                    >"$work/mvn.log" 2>&1); then
                tail -n 30 "$work/mvn.log" >&2
                die "Maven could not resolve $KAFKA_POM"
            fi
            rm -rf "$dir"
            mkdir -p "$dir"
            mv "$work/jars" "$dir/jars"
            # An explicit, sorted classpath (not a wildcard): the class-data
            # archive used by `topic` is only valid for the same classpath.
            find "$dir/jars" -name '*.jar' | sort | paste -sd: >"$dir/classpath"
            rm -rf "$work"
            # Drop jar sets of older poms.
            find "$LIBS_ROOT" -mindepth 1 -maxdepth 1 -type d ! -name "$sum" ! -name '.resolve.*' \
                -exec rm -rf {} +
            touch "$dir/.complete"
        ) 9>"$LIBS_ROOT/.lock"
    fi
    echo "$dir"
}

kafka_write_config() {
    mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
    cat >"$KAFKA_CFG" <<EOF
# generated by scripts/services.sh; edits are overwritten on start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
# single node: internal topics with one replica, and few partitions so the
# first consumer group or transaction does not wait for 50 to be created
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
EOF
    cat >"$KAFKA_DIR/log4j2.properties" <<'EOF'
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
EOF
}

kafka_format() {   # libdir
    [ -f "$KAFKA_DIR/data/meta.properties" ] && return 0
    if ! "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
            -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.properties" \
            -cp "$(cat "$1/classpath")" kafka.tools.StorageTool format \
            --cluster-id "$KAFKA_CLUSTER_ID" --config "$KAFKA_CFG" --ignore-formatted \
            >"$KAFKA_DIR/logs/format.log" 2>&1; then
        cat "$KAFKA_DIR/logs/format.log" >&2
        die "kafka: formatting the storage failed"
    fi
}

kafka_launch() {
    local libdir
    libdir=$(kafka_libs)
    kafka_write_config
    kafka_format "$libdir"
    spawn "$KAFKA_PID" "$KAFKA_OUT" "$JAVA" -Xms256m -Xmx512m \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KAFKA_DIR/logs" \
        -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
        -cp "$(cat "$libdir/classpath")" kafka.Kafka "$KAFKA_CFG"
}

# Partition count of topic $1 as the broker sees it; empty if it does not exist.
# Prints "?" while some partition still has no leader.
topic_partitions() {
    kcat -b "$HOST:$KAFKA_PORT" -L -t "$1" -m 5 2>/dev/null | awk -v t="$1" '
        index($0, "  topic \"" t "\" with ") == 1 { n = $(NF-1); if ($0 ~ /: [^ ]/) n = ""; next }
        /^    partition [0-9]+, leader -1/ { noleader = 1 }
        END { if (n != "" && n > 0) print (noleader ? "?" : n) }'
}

# Run a Kafka command-line tool (class $1) from the cached jars. A class-data
# sharing archive, written by the first call, halves the JVM start-up time.
kafka_tool() {
    local libdir cp jsa jvm_key
    libdir=$(kafka_libs)
    cp=$(cat "$libdir/classpath")
    jvm_key=$(stat -Lc '%Y%s' "$(readlink -f "$(command -v "$JAVA")")")
    jsa=$libdir/tools-$jvm_key.jsa
    local cds=(-XX:SharedArchiveFile="$jsa")
    if [ ! -f "$jsa" ]; then
        # Dump to a private name, publish atomically (parallel callers).
        cds=(-XX:ArchiveClassesAtExit="$jsa.$$")
    fi
    local rc=0
    "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
        -Xlog:disable -Xlog:all=error:stderr "${cds[@]}" \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.properties" \
        -cp "$cp" "$@" || rc=$?
    if [ -f "$jsa.$$" ]; then mv -f "$jsa.$$" "$jsa"; fi
    return "$rc"
}

# ---------------------------------------------------------------- commands

cmd_start() {
    "$SCRIPT_DIR/install-deps.sh"
    command -v "$JAVA" >/dev/null || die "java not found"

    local zk_started=0 kafka_started=0 pid
    if pid=$(live_pid "$ZK_PID" "$ZK_CFG") && zk_ready; then
        log "zookeeper: already running on $HOST:$ZK_PORT (pid $pid)"
    elif [ -n "${pid:-}" ]; then
        zk_started=1     # alive but not answering yet (still starting)
    else
        port_open "$ZK_PORT" && die "zookeeper: port $ZK_PORT is in use by a process this script did not start"
        zk_launch
        zk_started=1
    fi

    # Kafka 4 (KRaft) does not need ZooKeeper: its preparation (jars, storage
    # format) and start-up overlap with ZooKeeper's.
    if pid=$(live_pid "$KAFKA_PID" "$KAFKA_CFG") && kafka_ready; then
        log "kafka: already running on $HOST:$KAFKA_PORT (pid $pid)"
    elif [ -n "${pid:-}" ]; then
        kafka_started=1
    else
        port_open "$KAFKA_PORT" && die "kafka: port $KAFKA_PORT is in use by a process this script did not start"
        port_open "$KAFKA_CONTROLLER_PORT" &&
            die "kafka: controller port $KAFKA_CONTROLLER_PORT is in use by a process this script did not start"
        kafka_launch
        kafka_started=1
    fi

    if [ "$zk_started" = 1 ]; then
        wait_ready zookeeper zk_ready "$ZK_PID" "$ZK_CFG" "$ZK_WAIT_SECS" "$ZK_LOG" "$ZK_OUT" || exit 1
        log "zookeeper: ready on $HOST:$ZK_PORT (pid $(cat "$ZK_PID"))"
    fi
    if [ "$kafka_started" = 1 ]; then
        wait_ready kafka kafka_ready "$KAFKA_PID" "$KAFKA_CFG" "$KAFKA_WAIT_SECS" "$KAFKA_LOG" "$KAFKA_OUT" || exit 1
        log "kafka: ready on $HOST:$KAFKA_PORT (pid $(cat "$KAFKA_PID"))"
    fi
}

cmd_stop() {
    # Only processes recorded in our pid files (and still running our config).
    local zk_pid kafka_pid
    kafka_pid=$(live_pid "$KAFKA_PID" "$KAFKA_CFG") || kafka_pid=
    zk_pid=$(live_pid "$ZK_PID" "$ZK_CFG") || zk_pid=
    # Signal both first so they shut down in parallel, then wait for each.
    if [ -n "$kafka_pid" ]; then kill -TERM "$kafka_pid" 2>/dev/null || true; fi
    if [ -n "$zk_pid" ]; then kill -TERM "$zk_pid" 2>/dev/null || true; fi
    await_exit kafka "$kafka_pid" "$KAFKA_PID"
    await_exit zookeeper "$zk_pid" "$ZK_PID"
    ens_stop_running
}

cmd_status() {
    local rc=0 pid
    if pid=$(live_pid "$ZK_PID" "$ZK_CFG"); then
        if zk_ready; then
            log "zookeeper: running on $HOST:$ZK_PORT (pid $pid)"
        else
            log "zookeeper: process $pid alive but not answering on $HOST:$ZK_PORT"; rc=3
        fi
    else
        log "zookeeper: stopped"; rc=3
    fi
    if pid=$(live_pid "$KAFKA_PID" "$KAFKA_CFG"); then
        if kafka_ready; then
            log "kafka: running on $HOST:$KAFKA_PORT (pid $pid)"
        else
            log "kafka: process $pid alive but not answering on $HOST:$KAFKA_PORT"; rc=3
        fi
    else
        log "kafka: stopped"; rc=3
    fi
    return "$rc"
}

cmd_reset() {
    cmd_stop
    # The jar cache (ZKFLOW_KAFKA_LIBS_DIR) is kept.
    rm -rf "$ZK_DIR" "$KAFKA_DIR" "$ENS_DIR"
    log "reset: removed $ZK_DIR, $ENS_DIR and $KAFKA_DIR"
}

cmd_topic() {   # name partitions
    local name=$1 want=$2 have
    [[ "$want" =~ ^[1-9][0-9]*$ ]] || usage
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "invalid topic name: $name"
    kafka_ready || die "kafka is not answering on $HOST:$KAFKA_PORT (scripts/services.sh start)"

    # Fast path without a JVM: ask the broker with kcat first.
    have=$(topic_partitions "$name")
    if [ -z "$have" ]; then
        kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
            --create --if-not-exists --topic "$name" \
            --partitions "$want" --replication-factor 1 >/dev/null ||
            die "could not create topic $name"
    fi
    # Wait until the broker's metadata shows every partition with a leader, so
    # a producer started right after this returns does not race the creation.
    for _ in $(seq 1 100); do
        have=$(topic_partitions "$name")
        [ -n "$have" ] && [ "$have" != "?" ] && break
        sleep 0.1
    done
    if [ -z "$have" ] || [ "$have" = "?" ]; then die "topic $name did not become ready"; fi
    if [ "$have" != "$want" ]; then
        err "warning: topic $name exists with $have partitions, not $want"
    fi
}

main() {
    [ $# -ge 1 ] || usage
    local cmd=$1
    shift
    case "$cmd" in
        start|stop|restart|status|reset) [ $# -eq 0 ] || usage ;;
        topic) [ $# -eq 2 ] || usage ;;
        ensemble) [ $# -ge 1 ] && [ $# -le 2 ] || usage ;;
        *) usage ;;
    esac

    STATE_DIR=$(abs_dir "$STATE_DIR")
    LIBS_ROOT=$(abs_dir "$LIBS_ROOT")
    set_paths

    case "$cmd" in
        topic) cmd_topic "$@"; return ;;
        ensemble) cmd_ensemble "$@"; return ;;
        status) cmd_status; return ;;
    esac

    # start/stop/reset change processes and files: one at a time per state dir.
    exec 8>"$STATE_DIR/.lock"
    flock 8
    case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_stop; cmd_start ;;
        reset) cmd_reset ;;
    esac
}

main "$@"

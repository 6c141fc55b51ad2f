#!/usr/bin/env python3
"""Hot reload benchmark (part of `make bench`): how soon a new script version
transforms records, and what a burst of reloads costs in throughput.

On the local services (scripts/services.sh), over one preloaded topic of
RELOAD_N JSON records (6 partitions, 10,000 keys), in one run:

  steady  zkflow run --exit-on-eof, the script left alone;
  burst   the same, while the script file is replaced (written to a temporary
          file, then renamed over) every RELOAD_EVERY_MS with a new version.

Runs alternate (steady, burst, steady, burst, ...) ROUNDS times, each with
its own consumer group, and the median of each kind is reported.

Reload latency: each version logs "first record vN" on its first record; the
latency of version N is the time from its rename to that log line (zkflow's
log timestamps, same clock). That includes zkflow's 50 ms settle time after
a file change (editors write files in several steps).

Writes bench/reload-results.json and bench/reload-results.md, and prints the
table. Environment: RELOAD_N (default 300000), ROUNDS (3), RELOAD_EVERY_MS
(100), ZK_PORT, KAFKA_PORT as for scripts/services.sh.
"""
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(os.environ.get("RELOAD_N", "300000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
EVERY_MS = int(os.environ.get("RELOAD_EVERY_MS", "100"))
KAFKA = "127.0.0.1:%s" % os.environ.get("KAFKA_PORT", "9092")
ZK = "127.0.0.1:%s" % os.environ.get("ZK_PORT", "2181")
PARTITIONS, KEYS = 6, 10000
TOPIC = "zkflow-bench-reload-n%d" % N
ZKFLOW = os.path.join(ROOT, "build", "zkflow")

SCRIPT = """local json = require("json")
local V = "v%d"
local first = true
return function(rec)
  if first then first = false; log("first record " .. V) end
  local ev = json.decode(rec.value)
  return "/bench/reload/" .. rec.key, json.encode({ v = V, status = ev.status, seq = ev.seq })
end
"""


def sh(*args, **kw):
    return subprocess.run(args, check=True, cwd=ROOT, **kw)


def end_offsets():
    """Sum of the topic's end offsets; 0 when it does not exist."""
    args = ["kcat", "-b", KAFKA, "-Q"]
    for p in range(PARTITIONS):
        args += ["-t", "%s:%d:-1" % (TOPIC, p)]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    return sum(int(line.split()[-1]) for line in out.stdout.splitlines()
               if " offset " in line and line.split()[-1].lstrip("-").isdigit())


def dataset():
    if end_offsets() == N:
        print("reload bench: reusing topic %s" % TOPIC)
        return
    if end_offsets() != 0:
        sys.exit("reload bench: topic %s exists with other contents; delete it" % TOPIC)
    sh("scripts/services.sh", "topic", TOPIC, str(PARTITIONS), stdout=subprocess.DEVNULL)
    print("reload bench: producing %d records to %s" % (N, TOPIC))
    statuses = ["online", "offline", "degraded", "maintenance"]
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        for i in range(N):
            value = json.dumps({"id": "dev-%d" % (i % KEYS), "seq": i,
                                "status": statuses[i % 4], "pad": "x" * 120})
            f.write("dev-%d\t%s\n" % (i % KEYS, value))
        path = f.name
    with open(path) as f:
        sh("kcat", "-P", "-b", KAFKA, "-t", TOPIC, "-K", "\t", "-z", "lz4", stdin=f)
    os.unlink(path)


def log_time(line):
    """The timestamp of a zkflow log line, in seconds since the epoch."""
    stamp = line.split(" ", 1)[0].rstrip("Z")
    dt = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def run(work, name, burst):
    script = os.path.join(work, "reload.lua")
    with open(script, "w") as f:
        f.write(SCRIPT % 0)
    cfg = os.path.join(work, name + ".ini")
    with open(cfg, "w") as f:
        f.write("[kafka]\nbootstrap.servers = %s\ngroup.id = zkflow-bench-reload-%s-%d\n"
                "[zookeeper]\nconnect = %s\n[script r]\nfile = reload.lua\n"
                "topics = %s\nroot = /bench/reload\n"
                % (KAFKA, name, random.randrange(1 << 30), ZK, TOPIC))
    logpath = os.path.join(work, name + ".log")
    written = {}
    stop = threading.Event()

    def reloader():
        v = 0
        while not stop.wait(EVERY_MS / 1000.0):
            v += 1
            with open(script + ".tmp", "w") as f:
                f.write(SCRIPT % v)
            written["v%d" % v] = time.time()
            os.rename(script + ".tmp", script)

    with open(logpath, "w") as log:
        start = time.time()
        proc = subprocess.Popen([ZKFLOW, "run", "-c", cfg, "--exit-on-eof"],
                                stderr=log, cwd=ROOT)
        thread = None
        if burst:
            thread = threading.Thread(target=reloader)
            thread.start()
        rc = proc.wait()
        elapsed = time.time() - start
        stop.set()
        if thread:
            thread.join()
    if rc != 0:
        sys.exit("reload bench: zkflow exited %d (log: %s)" % (rc, logpath))
    consumed, reloads, latencies = 0, 0, []
    with open(logpath) as f:
        for line in f:
            if "finished: consumed=" in line:
                consumed = int(line.split("consumed=")[1].split()[0])
                reloads = int(line.split(" script reloads")[0].rsplit(" ", 1)[1])
            elif "first record v" in line:
                v = line.rsplit("first record ", 1)[1].strip()
                if v in written:
                    latencies.append((log_time(line) - written[v]) * 1000.0)
    if consumed != N:
        sys.exit("reload bench: zkflow consumed %d of %d records" % (consumed, N))
    return {"seconds": elapsed, "rate": N / elapsed, "reloads": reloads,
            "latencies_ms": latencies}


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def main():
    sh("scripts/services.sh", "start", stdout=subprocess.DEVNULL)
    dataset()
    work = tempfile.mkdtemp(prefix="zkflow-bench-reload.")
    steady, burst = [], []
    for r in range(ROUNDS):
        steady.append(run(work, "steady%d" % r, False))
        burst.append(run(work, "burst%d" % r, True))
        print("reload bench: round %d: steady %.0f records/s, burst %.0f records/s "
              "(%d reloads)" % (r + 1, steady[-1]["rate"], burst[-1]["rate"],
                                burst[-1]["reloads"]))
    lat = [x for b in burst for x in b["latencies_ms"]]
    s_rate = statistics.median(x["rate"] for x in steady)
    b_rate = statistics.median(x["rate"] for x in burst)
    result = {
        "records": N, "rounds": ROUNDS, "reload_every_ms": EVERY_MS,
        "steady_records_per_s": round(s_rate), "burst_records_per_s": round(b_rate),
        "burst_over_steady": round(b_rate / s_rate, 3),
        "reloads": sum(b["reloads"] for b in burst),
        "latency_ms": {"count": len(lat), "p50": round(pct(lat, 50), 1),
                       "p99": round(pct(lat, 99), 1), "max": round(max(lat), 1)},
    }
    with open(os.path.join(ROOT, "bench", "reload-results.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    table = (
        "| hot reload (%d records, %d rounds, a new version every %d ms) | value |\n"
        "| --- | ---: |\n"
        "| steady, records/s (median) | %d |\n"
        "| during reload bursts, records/s (median) | %d |\n"
        "| burst / steady | %.1f %% |\n"
        "| versions swapped in | %d |\n"
        "| reload latency, file renamed to first record transformed: p50 / p99 / max | %.0f / %.0f / %.0f ms (%d reloads) |\n"
        % (N, ROUNDS, EVERY_MS, s_rate, b_rate, 100.0 * b_rate / s_rate,
           result["reloads"], result["latency_ms"]["p50"], result["latency_ms"]["p99"],
           result["latency_ms"]["max"], len(lat)))
    with open(os.path.join(ROOT, "bench", "reload-results.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()

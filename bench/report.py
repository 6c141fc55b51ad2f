"""Turns the measurements of bench/run.sh into bench/results.json and
bench/results.md.

    python3 report.py RESULTS.tsv OUT.json OUT.md

RESULTS.tsv holds `key<TAB>value` lines; a dotted key (`zkflow.seconds`)
becomes a nested object. Rates, ratios and the issue's goals are derived here.
"""
import json
import sys

CEILINGS = ("ceiling_100x6_before", "ceiling_100x6_after", "ceiling_100x6_busy",
            "ceiling_100x50", "ceiling_1x1000", "ceiling_create", "ceiling_create_after",
            "ceiling_100x6_sync", "ceiling_100x6_sync_after")
ZKFLOWS = ("zkflow", "zkflow_at_least_once", "zkflow_baseline", "zkflow_new",
           "zkflow_new_baseline", "zkflow_sync")
PROGRAMS = ZKFLOWS + ("peer", "kcat")

# The goals of issue 14: (label, value's path, comparison, format). The
# targets are set in derive(): two depend on the run.
GOALS = {
    "zkflow_vs_ceiling": ("zkflow / ceiling 100 × 6 (the better run)",
                          ("ratios", "zkflow_vs_ceiling"), ">=", "{:.1%}"),
    "zkflow_vs_peer": ("zkflow / peer (goal: 0.9 × ceiling / peer)",
                       ("ratios", "zkflow_vs_peer"), ">=", "{:.1f}×"),
    "zkflow_cpu_us_per_record": ("zkflow CPU per record (2.5 µs on Intel, 5 on AMD)",
                                 ("zkflow", "cpu_us_per_record"), "<=", "{:.2f} µs"),
    "zkflow_peak_rss_mb": ("zkflow peak RSS", ("zkflow", "peak_rss_mb"), "<=", "{:g} MB"),
    "exactly_once_vs_at_least_once": ("zkflow exactly_once / at_least_once",
                                      ("ratios", "exactly_once_vs_at_least_once"), ">=",
                                      "{:.1%}"),
    "zkflow_new_vs_ceiling_create": ("new tree: zkflow / create ceiling (the better run)",
                                     ("ratios", "zkflow_new_vs_ceiling_create"), ">=", "{:.1%}"),
    "zkflow_sync_vs_ceiling_sync": ("forceSync=yes: zkflow / ceiling 100 × 6 (the better run)",
                                    ("ratios", "zkflow_sync_vs_ceiling_sync"), ">=", "{:.1%}"),
}

VERSION_LABELS = {
    "zkflow": "", "zookeeper_server": "ZooKeeper server", "kafka": "Kafka",
    "kcat": "kcat", "gcc": "gcc", "python": "Python", "quixstreams": "quixstreams",
    "kazoo": "kazoo", "confluent_kafka": "confluent-kafka",
}


def parse(value):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value, value)


def load(path):
    data = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            *parents, leaf = key.split(".")
            node = data
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = parse(value)
    return data


def measured(data, name):
    """The measurement `name` if it ran and did not fail, else None."""
    m = data.get(name)
    return m if m and "seconds" in m and "error" not in m else None


def derive(data):
    """Adds rates, CPU per record, ratios and goals to `data`."""
    for name in CEILINGS + PROGRAMS:
        m = measured(data, name)
        n = m and (m.get("ops") or m.get("records"))
        for server in ("zk_server", "kafka_broker"):
            if n and isinstance(m.get(f"{server}_cpu_s"), (int, float)):
                m[f"{server}_cpu_us_per_record"] = round(m[f"{server}_cpu_s"] * 1e6 / n, 2)
    for name in CEILINGS:
        if m := measured(data, name):
            m["ops_per_s"] = round(m["ops"] / m["seconds"])
    for name in PROGRAMS:
        if m := measured(data, name):
            m["records_per_s"] = round(m["records"] / m["seconds"])
            m["cpu_us_per_record"] = round((m["user_s"] + m["sys_s"]) * 1e6 / m["records"], 2)
    # One op per record: the average size of what zkflow and the peer sent.
    for name, count, per in (("zkflow", "multis", "ops_per_multi"),
                             ("zkflow_at_least_once", "multis", "ops_per_multi"),
                             ("zkflow_baseline", "multis", "ops_per_multi"),
                             ("peer", "transactions", "ops_per_transaction")):
        m = measured(data, name)
        if m and isinstance(m.get(count), int) and m[count] > 0:
            m[per] = round(m["records"] / m[count], 1)

    def rate(name, field):
        return (measured(data, name) or {}).get(field)

    def ratio(a, b, digits):
        return round(a / b, digits) if a and b else None

    def better(*names):
        runs = [r for r in (rate(n, "ops_per_s") for n in names) if r]
        return max(runs) if runs else None

    # Each ceiling: the better of its runs before and after zkflow.
    data["ceiling_100x6_ops_per_s"] = better("ceiling_100x6_before", "ceiling_100x6_after")
    data["ceiling_create_ops_per_s"] = better("ceiling_create", "ceiling_create_after")
    data["ceiling_100x6_sync_ops_per_s"] = better("ceiling_100x6_sync",
                                                  "ceiling_100x6_sync_after")
    zkflow = rate("zkflow", "records_per_s")
    data["ratios"] = {
        "zkflow_vs_ceiling": ratio(zkflow, data["ceiling_100x6_ops_per_s"], 3),
        "zkflow_vs_peer": ratio(zkflow, rate("peer", "records_per_s"), 1),
        # What any writer limited by the ZooKeeper server could reach against
        # the peer: zkflow/peer cannot exceed this.
        "ceiling_vs_peer": ratio(data["ceiling_100x6_ops_per_s"],
                                 rate("peer", "records_per_s"), 1),
        "zkflow_baseline_vs_ceiling": ratio(rate("zkflow_baseline", "records_per_s"),
                                            data["ceiling_100x6_ops_per_s"], 3),
        "zkflow_baseline_vs_peer": ratio(rate("zkflow_baseline", "records_per_s"),
                                         rate("peer", "records_per_s"), 1),
        "exactly_once_vs_at_least_once": ratio(
            zkflow, rate("zkflow_at_least_once", "records_per_s"), 3),
        # Against the ceiling when another program takes a core, as
        # zkflow's own work does: the gap left past what sharing the CPU
        # explains.
        "zkflow_vs_ceiling_busy": ratio(zkflow, rate("ceiling_100x6_busy", "ops_per_s"), 3),
        "ceiling_100x6_vs_100x50": ratio(data["ceiling_100x6_ops_per_s"],
                                         rate("ceiling_100x50", "ops_per_s"), 3),
        "zkflow_new_vs_ceiling_create": ratio(rate("zkflow_new", "records_per_s"),
                                              data["ceiling_create_ops_per_s"], 3),
        "zkflow_new_baseline_vs_ceiling_create": ratio(
            rate("zkflow_new_baseline", "records_per_s"), data["ceiling_create_ops_per_s"], 3),
        "zkflow_sync_vs_ceiling_sync": ratio(rate("zkflow_sync", "records_per_s"),
                                             data["ceiling_100x6_sync_ops_per_s"], 3),
    }
    cpu_goal = 5.0 if "AMD" in str(data.get("machine", {}).get("model", "")) else 2.5
    vs_peer = data["ratios"]["ceiling_vs_peer"]
    targets = {"zkflow_vs_ceiling": 0.90,
               "zkflow_vs_peer": round(0.9 * vs_peer, 1) if vs_peer else None,
               "zkflow_cpu_us_per_record": cpu_goal, "zkflow_peak_rss_mb": 100.0,
               "exactly_once_vs_at_least_once": 0.95,
               "zkflow_new_vs_ceiling_create": 0.90, "zkflow_sync_vs_ceiling_sync": 0.90}
    data["goals"] = {}
    for key, (_, (section, field), op, _) in GOALS.items():
        value = (data["ratios"] if section == "ratios" else measured(data, section) or {}).get(field)
        target = targets[key]
        met = (None if value is None or target is None
               else value >= target if op == ">=" else value <= target)
        data["goals"][key] = {"value": value, "goal": target, "op": op, "met": met}


def num(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def markdown(d):
    ds = d["dataset"]
    out = [
        "# zkflow benchmark",
        "",
        f"{d['date']}, `make bench` (bench/run.sh) in {d['harness_s']} s. Dataset: "
        f"{ds['records']:,} records of {ds['value_bytes']}-byte JSON, {ds['keys']:,} keys, "
        f"{ds['partitions']} partitions (topic `{ds['topic']}`). Every writer sets the data of "
        f"the same {ds['keys']:,} existing znodes, one `set` of ~60 bytes per record."
        + (f" New tree: {d['dataset_new']['records']:,} records with a key each (topic "
           f"`{d['dataset_new']['topic']}`), each creating a node under a new parent."
           if d.get("dataset_new") else ""),
        "",
        "| what | records (ops) | seconds | records/s (ops/s) | CPU µs/record | peak RSS MB "
        "| ZooKeeper server CPU µs/record (op) | Kafka broker CPU µs/record |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def row(label, name, count, rate):
        m = d.get(name)
        if not m:
            return
        if "error" in m:
            out.append(f"| {label} | failed: {m['error']} | | | | | | |")
            return
        cpu, rss = num(m.get("cpu_us_per_record"), 2), num(m.get("peak_rss_mb"), 1)
        if name in CEILINGS:
            cpu = rss = ""
        out.append(f"| {label} | {num(m.get(count))} | {num(m.get('seconds'), 2)} | "
                   f"{num(m.get(rate))} | {cpu} | {rss} | "
                   f"{num(m.get('zk_server_cpu_us_per_record'), 2)} | "
                   f"{num(m.get('kafka_broker_cpu_us_per_record'), 2)} |")

    row("ceiling: multis of 100 ops, 6 in flight (like-for-like), before zkflow",
        "ceiling_100x6_before", "ops", "ops_per_s")
    row("ceiling: the same, just after, beside a shell loop keeping one core busy",
        "ceiling_100x6_busy", "ops", "ops_per_s")
    row("ceiling: the same, after zkflow", "ceiling_100x6_after", "ops", "ops_per_s")
    row("ceiling: multis of 100 ops, 50 in flight", "ceiling_100x50", "ops", "ops_per_s")
    row("ceiling: single ops, 1,000 in flight", "ceiling_1x1000", "ops", "ops_per_s")
    row("zkflow baseline (ZKFLOW_BASELINE), the same way, just before",
        "zkflow_baseline", "records", "records_per_s")
    row("**zkflow** end to end, start to exit (delivery = exactly_once, the default)",
        "zkflow", "records", "records_per_s")
    row("zkflow with delivery = at_least_once, just after", "zkflow_at_least_once",
        "records", "records_per_s")
    row("new tree, create ceiling: multis of 100 records (200 creates), 6 in flight, before",
        "ceiling_create", "ops", "ops_per_s")
    row("new tree, zkflow baseline (ZKFLOW_BASELINE)", "zkflow_new_baseline", "records",
        "records_per_s")
    row("new tree, **zkflow** (upserts of ROOT/ID/state)", "zkflow_new", "records",
        "records_per_s")
    row("new tree, create ceiling, after", "ceiling_create_after", "ops", "ops_per_s")
    row("forceSync=yes: ceiling 100 × 6, before", "ceiling_100x6_sync", "ops", "ops_per_s")
    row("forceSync=yes: **zkflow**", "zkflow_sync", "records", "records_per_s")
    row("forceSync=yes: ceiling 100 × 6, after", "ceiling_100x6_sync_after", "ops",
        "ops_per_s")
    peer = "peer: Quix Streams + kazoo, transactions of 100"
    if (d.get("peer") or {}).get("slice"):
        peer += " (a slice: the first records)"
    row(peer, "peer", "records", "records_per_s")
    row("kcat consuming to /dev/null", "kcat", "records", "records_per_s")

    out += ["", "| figure | value | goal (issue 14) | met |", "| --- | ---: | --- | --- |"]
    for key, (label, _, op, fmt) in GOALS.items():
        g = d["goals"][key]
        value = "–" if g["value"] is None else fmt.format(g["value"])
        goal = "–" if g["goal"] is None else ("≥ " if op == ">=" else "≤ ") + fmt.format(g["goal"])
        met = "–" if g["met"] is None else "yes" if g["met"] else "**no**"
        out.append(f"| {label} | {value} | {goal} | {met} |")
    for key, label, fmt in (("zkflow_baseline_vs_ceiling", "baseline / ceiling 100 × 6", "{:.1%}"),
                            ("zkflow_baseline_vs_peer", "baseline / peer", "{:g}×"),
                            ("zkflow_new_baseline_vs_ceiling_create",
                             "new tree: baseline / create ceiling", "{:.1%}")):
        if (v := d["ratios"].get(key)) is not None:
            out.append(f"| {label} | {fmt.format(v)} | (information) | |")
    r = d["ratios"].get("ceiling_vs_peer")
    if r is not None:
        out.append(f"| ceiling 100 × 6 / peer: the most any ZooKeeper-bound writer can reach "
                   f"| {r:g}× | (information) | |")
    r = d["ratios"].get("zkflow_vs_ceiling_busy")
    if r is not None:
        out.append(f"| zkflow / ceiling 100 × 6 beside one busy core | {r:.1%} | (information) | |")
    r = d["ratios"]["ceiling_100x6_vs_100x50"]
    if r is not None:
        out.append(f"| ceiling 100 × 6 / ceiling 100 × 50 | {r:.1%} | (information) | |")

    for name, field, label in (("zkflow", "ops_per_multi", "zkflow: ops per multi, on average"),
                               ("peer", "ops_per_transaction", "peer: ops per transaction, on average")):
        if (v := (d.get(name) or {}).get(field)) is not None:
            out.append(f"| {label} | {v:g} | (information) | |")

    # Where each zkflow run's engine thread spent its time (the summary line
    # at exit), and how busy the machine's cores were meanwhile.
    runs = [n for n in ZKFLOWS if (d.get(n) or {}).get("engine_time")]
    if runs:
        out += ["", "| zkflow run | cores busy | engine thread's time |", "| --- | ---: | --- |"]
        for n in runs:
            busy = d[n].get("machine_busy_pct")
            out.append(f"| {n} | {'–' if busy is None else f'{busy:g}%'} | {d[n]['engine_time']} |")

    out.append("")
    for name in ZKFLOWS + ("peer",):
        m = d.get(name) or {}
        failed = (m.get("sanity") or {}).get("error")
        if failed or "znodes" in m:
            verdict = f"**failed**: {failed}" if failed else "ok"
            if "znodes_current" in m:
                found = (f" ({m['znodes']:,} znodes under /bench/devices, "
                         f"{m['znodes_current']:,} of them holding their key's last record)")
            elif "znodes" in m:
                found = f" ({m['znodes']:,} new state znodes under /bench/tree/zkflow)"
            else:
                found = ""
            out.append(f"Sanity check after {name}: {verdict}{found}.")
    mach, v = d["machine"], dict(d["versions"])
    sync = v.pop("zookeeper_force_sync", "")
    versions = [f"{VERSION_LABELS.get(k, k)} {val}".strip() for k, val in v.items()]
    out += [
        "",
        f"Machine: {mach['nproc']} × {mach['model']}, {mach['mem_gb']} GB, Linux {mach['kernel']}; "
        f"ZooKeeper (standalone, forceSync={sync}), Kafka (one broker) and the measured "
        f"program share it. Load average when the run began: {mach['load_before']}.",
        "",
        "Versions: " + "; ".join(versions) + ".",
        "",
    ]
    return "\n".join(out)


def main(tsv, json_path, md_path):
    data = load(tsv)
    derive(data)
    first = ("date", "harness_s", "machine", "versions", "dataset") + CEILINGS + \
        ("ceiling_100x6_ops_per_s",) + PROGRAMS
    ordered = {k: data[k] for k in first if k in data}
    ordered.update(data)
    with open(json_path, "w") as f:
        json.dump(ordered, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(md_path, "w") as f:
        f.write(markdown(ordered))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])

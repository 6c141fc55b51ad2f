#include "zkflow/engine.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "zkflow/clock.h"
#include "zkflow/dlq.h"
#include "zkflow/error.h"
#include "zkflow/http.h"
#include "zkflow/jsonl.h"
#include "zkflow/log.h"
#include "zkflow/metrics.h"
#include "zkflow/sandbox.h"
#include "zkflow/script.h"
#include "zkflow/scriptset.h"
#include "zkflow/source.h"
#include "zkflow/tracker.h"
#include "zkflow/zk.h"

/* Records taken from Kafka in one go before the loop polls again. */
#define TAKE_BATCH 512
/* Records transformed between two visits to ZooKeeper's completions, so a
 * partition whose batch applied sends its next one without waiting for the
 * rest of the TAKE_BATCH. */
#define TEND_EVERY 64
/* How long zkflow stops taking records, leaving them in librdkafka's queue,
 * when a partition has max_queued_records waiting, before it pauses that
 * partition instead (see take_records). */
#define HOLD_MS 1000
/* How long the consumer may have nothing for the engine, while a partition
 * has records at the broker and room in its queue, before the engine asks
 * for a fetch (wake_fetcher). Far less than librdkafka 2.0's up to a second
 * between looks at a partition it stopped fetching for a full queue, more
 * than a fetch takes on a busy loopback. */
#define FETCH_WAIT_MS 20
/* How long the final offset commit may take before zkflow gives up on it. */
#define COMMIT_WAIT_MS 30000
/* How often the engine's time and queue gauges go to the metrics. */
#define SAMPLE_EVERY_MS 250

/* Where the engine thread's time goes (zkflow_engine_seconds_total{stage}
 * and the summary line). Waiting is told apart by what the loop waits for
 * when it sleeps in poll(). */
typedef enum stage {
    STAGE_KAFKA,          /* taking records: librdkafka, queueing them */
    STAGE_TRANSFORM,      /* in scripts (zf_sandbox_thread_ns) */
    STAGE_ZOOKEEPER,      /* planning and sending batches, completions */
    STAGE_WAIT_ZOOKEEPER, /* asleep while records wait behind a multi */
    STAGE_WAIT_KAFKA,     /* asleep with nothing to send */
    STAGE_HELD,           /* asleep while a full partition is held back */
    STAGE_OTHER,          /* commits, reloads, the rest of the loop */
    STAGE_COUNT
} stage_t;

static const char *const stage_names[STAGE_COUNT] = {
    "kafka", "transform", "zookeeper", "wait_zookeeper",
    "wait_kafka", "held", "other"};
static const char *const stage_words[STAGE_COUNT] = {
    "taking records", "transform", "zookeeper", "waiting for zookeeper",
    "waiting for kafka", "held", "other"};

typedef struct engine {
    const zf_config_t *cfg; /* as started: [kafka], [zookeeper], [engine] */
    zf_run_opts_t opts;
    zf_scriptset_t *scripts; /* the [script] sections in force */
    zf_zk_t *zk;
    zf_source_t *src;
    zf_partition_t **parts; /* assigned partitions */
    size_t nparts;
    int sigfd;
    int stopping;       /* no new records taken; queued ones still sent */
    int64_t commit_since; /* final commit under way since then (ms), or 0 */
    int status;         /* exit status so far */
    int kafka_pending;  /* the consumer may hold more records right now */
    zf_zk_item_t *batch; /* room for one batch (batch_cap records) */
    size_t batch_cap;
    int reconfigure;    /* SIGHUP: read the configuration again */
    int exactly_once;   /* delivery = exactly_once */
    uint64_t consumed, applied, skipped;
    int64_t progress_at;       /* --exit-on-eof: last progress report (ms) */
    uint64_t progress_consumed; /* consumed then */
    int progress_tty;          /* stderr is a terminal: one line, redrawn */
    uint64_t dead_lettered, failed; /* failed: transform or ZooKeeper, any
                                       on_error policy */
    zf_dlq_t *dlq;      /* dead-letter producer, made when first needed */
    uint64_t batches;   /* multis (or solo writes) sent */
    uint64_t coalesced; /* records left out of their batch by coalescing */
    zf_partition_t *full; /* has max_queued_records waiting, or NULL */
    int64_t full_since;   /* since then (ms) */
    int64_t position_every_ms; /* exactly_once: longest a position may trail
                                  records that wrote nothing */
    int64_t position_due; /* when the next such position is due (ms), or 0 */
    int64_t stage_ns[STAGE_COUNT]; /* time per stage so far */
    int64_t stage_mark;   /* when the time not yet charged began (ns) */
    int64_t script_mark;  /* zf_sandbox_thread_ns() then */
    int64_t shown_ns[STAGE_COUNT]; /* what the metrics have of stage_ns */
    int64_t sampled_at;   /* the gauges' last sample (ms) */
    int64_t starved_since; /* the consumer has had nothing since (ms), or 0 */
    size_t fetch_next;    /* the partition wake_fetcher looks at first */
} engine_t;

static const char *const LOG = "engine";

/* The time since the last charge went to stage s, but for what the
 * scripts took meanwhile, which goes to STAGE_TRANSFORM. */
static void charge(engine_t *e, stage_t s) {
    int64_t now = zf_now_ns(), scripts = zf_sandbox_thread_ns();
    int64_t in_scripts = scripts - e->script_mark;
    e->stage_ns[STAGE_TRANSFORM] += in_scripts;
    e->stage_ns[s] += now - e->stage_mark - in_scripts;
    e->stage_mark = now;
    e->script_mark = scripts;
}

static void fail(engine_t *e) {
    e->stopping = 1;
    e->status = ZF_EXIT_FAILURE;
}

/* The script of a partition's topic, or NULL once no section lists it. */
static const char *script_name(const zf_partition_t *p) {
    return p->script ? zf_script_name(p->script) : "(none)";
}

/* After scripts were swapped or sections changed: every partition takes
 * the script now in force for its topic, from its next record on. */
static void repoint(engine_t *e) {
    for (size_t i = 0; i < e->nparts; i++) {
        zf_partition_t *p = e->parts[i];
        const zf_script_conf_t *sc = zf_config_script_for_topic(
            zf_scriptset_config(e->scripts), p->topic);
        p->script = zf_scriptset_for_topic(e->scripts, p->topic);
        p->coalesce = sc && sc->coalesce == 1;
    }
}

static zf_partition_t *find_part(engine_t *e, const char *topic, int32_t part) {
    for (size_t i = 0; i < e->nparts; i++)
        if (e->parts[i]->partition == part &&
            strcmp(e->parts[i]->topic, topic) == 0)
            return e->parts[i];
    return NULL;
}

/* Hand the applied prefix of a partition to the consumer for commit
 * (never in a dry run, which commits nothing). */
static void store_progress(engine_t *e, zf_partition_t *p) {
    zf_partition_release(p);
    if (!e->opts.dry_run && p->committable > p->stored &&
        zf_source_store(e->src, p->topic, p->partition, p->committable) ==
            ZF_OK)
        p->stored = p->committable;
    if (p->paused && !p->blocked &&
        p->nentries <= (size_t)e->cfg->max_queued_records / 2) {
        zf_debug(LOG, "%s [%d]: %zu records waiting: resuming", p->topic,
                 (int)p->partition, p->nentries);
        zf_source_pause(e->src, p->topic, p->partition, 0);
        p->paused = 0;
    }
}

/* Run the ZooKeeper side until no op of partition p (or, with p NULL, none
 * at all) is in flight. Outcomes arrive even when ZooKeeper is away: retries
 * end with the session, so this always returns. */
static void drain(engine_t *e, const zf_partition_t *p) {
    while (p ? p->nsent > 0 || p->writing_position
             : zf_zk_inflight(e->zk) > 0) {
        struct pollfd pfd = {.fd = zf_zk_fd(e->zk), .events = POLLIN};
        poll(&pfd, 1, zf_zk_next_timeout_ms(e->zk));
        zf_zk_process(e->zk);
    }
}

/* The value of a [kafka] key, or dflt when it is not set. */
static const char *kafka_value(const zf_config_t *cfg, const char *key,
                               const char *dflt) {
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (strcmp(cfg->kafka[i].key, key) == 0)
            return cfg->kafka[i].value;
    return dflt;
}

/* exactly_once: where partition p's position is kept. */
static char *position_path(const engine_t *e, const zf_partition_t *p) {
    const char *group = kafka_value(e->cfg, "group.id", "");
    const char *root = e->cfg->offsets_root;
    char *path;
    if (asprintf(&path, "%s/%s/%s/%d", strcmp(root, "/") ? root : "", group,
                 p->topic, (int)p->partition) < 0)
        return NULL;
    return path;
}

/* exactly_once: read the partition's position, the source of truth for
 * where it starts (Kafka's committed offset only when there is none yet). */
static void start_at_position(engine_t *e, zf_partition_t *p, zf_tp_t *tp) {
    char err[512];
    int64_t next;
    if (!(p->fence.path = position_path(e, p))) {
        zf_error(LOG, "out of memory");
        abort();
    }
    if (zf_zk_read_position(e->zk, &p->fence, !e->opts.dry_run, &next, err,
                            sizeof err) != ZF_OK) {
        zf_error(LOG, "%s [%d]: %s; stopping", p->topic, (int)p->partition,
                 err);
        p->blocked = 1;
        fail(e);
        return;
    }
    if (next < 0) {
        zf_info(LOG, "%s [%d]: no position in %s yet: starting at the "
                     "committed offset",
                p->topic, (int)p->partition, p->fence.path);
        return;
    }
    zf_info(LOG, "%s [%d]: starting at offset %lld (%s, version %d)",
            p->topic, (int)p->partition, (long long)next, p->fence.path,
            (int)p->fence.version);
    tp->start = next;
    p->next_offset = p->position = next;
}

/* Another instance owns partition p now (its position moved under this
 * one): write nothing more there, commit nothing; the group takes it. */
static void leave(engine_t *e, zf_partition_t *p, const char *why) {
    if (!p->blocked)
        zf_warn(LOG, "%s [%d]: %s; leaving the partition to its new owner",
                p->topic, (int)p->partition, why);
    p->blocked = 1;
    p->no_position = 1;
    zf_partition_drop_queued(p);
    if (!p->paused) {
        zf_source_pause(e->src, p->topic, p->partition, 1);
        p->paused = 1;
    }
}

/* The `done` of a position written alone (sync_position). */
static void on_position_written(void *ctx, zf_err_t rc, const char *why) {
    zf_partition_t *p = ctx;
    engine_t *e = p->owner;
    p->writing_position = 0;
    if (rc == ZF_OK)
        return;
    if (rc == ZF_EFENCED) {
        leave(e, p, why);
        return;
    }
    zf_error(LOG, "%s [%d]: cannot write the position %s: %s; stopping",
             p->topic, (int)p->partition, p->fence.path, why);
    p->no_position = 1;
    fail(e);
}

/* exactly_once: write partition p's position on its own when it trails
 * records that are done but wrote nothing (skipped, dead-lettered), and no
 * batch queued or in flight will carry it: at once with `now` (before a
 * commit: a stop, the end of --exit-on-eof, a revocation), else once it has
 * trailed for position_every_ms, so a crash after that replays none of
 * them. Returns 1 while such a write is in flight for p. */
static int sync_position(engine_t *e, zf_partition_t *p, int now) {
    static const zf_oplist_t none = {0};
    if (!p->fence.path || e->opts.dry_run || p->no_position)
        return 0;
    if (p->writing_position)
        return 1;
    if (p->nsent > 0 || zf_partition_next_queued(p) ||
        p->committable <= p->fence.next) {
        p->behind_since = 0;
        return 0;
    }
    int64_t t = zf_now_ms();
    if (!p->behind_since)
        p->behind_since = t;
    int64_t due = p->behind_since + e->position_every_ms;
    if (!now && t < due) {
        if (!e->position_due || due < e->position_due)
            e->position_due = due;
        return 0;
    }
    p->behind_since = 0;
    p->writing_position = 1;
    zf_zk_item_t item = {&none, p, p->committable};
    zf_zk_apply(e->zk, &item, 1, &p->fence, on_position_written);
    return 1;
}

static void on_assigned(void *ctx, zf_tp_t *tps, size_t n) {
    engine_t *e = ctx;
    zf_partition_t **v = realloc(e->parts, (e->nparts + n) * sizeof *v);
    if (!v) {
        zf_error(LOG, "out of memory");
        abort();
    }
    e->parts = v;
    for (size_t i = 0; i < n; i++) {
        zf_partition_t *p = zf_partition_new(tps[i].topic, tps[i].partition);
        if (!p) {
            zf_error(LOG, "out of memory");
            abort();
        }
        p->owner = e;
        if (e->exactly_once)
            start_at_position(e, p, &tps[i]);
        if (e->opts.exit_on_eof)
            p->end = zf_source_end_offset(e->src, p->topic, p->partition);
        e->parts[e->nparts++] = p;
    }
    repoint(e); /* their scripts and options */
}

static void on_revoked(void *ctx, const zf_tp_t *tps, size_t n, int lost) {
    engine_t *e = ctx;
    for (size_t i = 0; i < n; i++) {
        zf_partition_t *p = find_part(e, tps[i].topic, tps[i].partition);
        if (!p)
            continue;
        /* Records not sent yet will be consumed again by the next owner;
         * writes already sent are finished before the partition goes. */
        zf_partition_drop_queued(p);
        drain(e, p);
        if (!lost) {
            store_progress(e, p);
            if (sync_position(e, p, 1))
                drain(e, p);
        }
    }
    if (!lost && !e->stopping) {
        /* The rebalance handler is where a commit for partitions being let
         * go belongs; when stopping, the final commit already happened. */
        char err[512];
        if (zf_source_commit(e->src, err, sizeof err) != ZF_OK)
            zf_warn(LOG, "%s", err);
    }
    for (size_t i = 0; i < n; i++) {
        zf_partition_t *p = find_part(e, tps[i].topic, tps[i].partition);
        if (!p)
            continue;
        for (size_t j = 0; j < e->nparts; j++) {
            if (e->parts[j] == p) {
                e->parts[j] = e->parts[--e->nparts];
                break;
            }
        }
        if (e->full == p)
            e->full = NULL;
        if (zf_m.reg) {
            char part[16];
            snprintf(part, sizeof part, "%d", (int)p->partition);
            zf_series_hide(zf_metric_series(zf_m.queued, p->topic, part));
        }
        zf_partition_destroy(p);
    }
}

/* ---- when a record fails: on_error = stop | skip | dlq ------------------ */

/* The [script] section now in force for a partition's topic, or NULL. */
static const zf_script_conf_t *section_of(const engine_t *e,
                                          const zf_partition_t *p) {
    return zf_config_script_for_topic(zf_scriptset_config(e->scripts),
                                      p->topic);
}

static const char *policy_of(const engine_t *e, const zf_partition_t *p) {
    const zf_script_conf_t *sc = section_of(e, p);
    return sc ? sc->on_error : "stop";
}

static void on_dead_lettered(void *ctx, const char *topic, int32_t partition,
                             int64_t offset, zf_err_t rc, const char *why) {
    engine_t *e = ctx;
    zf_partition_t *p = find_part(e, topic, partition);
    zf_entry_t *en = p ? zf_partition_find(p, offset) : NULL;
    if (!en || en->state != ZF_ENTRY_DEAD)
        return; /* partition revoked meanwhile: its next owner redoes it */
    if (rc == ZF_OK) {
        zf_entry_applied(en); /* done: the partition moves past it */
        e->dead_lettered++;
        return;
    }
    const zf_script_conf_t *sc = section_of(e, p);
    zf_error(LOG, "script %s: record %s [%d] offset %lld could not be "
                  "dead-lettered to %s: %s; stopping without committing it",
             script_name(p), topic, partition, (long long)offset,
             sc && sc->dlq_topic ? sc->dlq_topic : "(none)", why);
    /* As with on_error = stop: it stays DEAD, never committable, and holds
     * back the records after it; those before it are still applied. */
    fail(e);
}

/* Produce a failed record (rec: the record or the entry's copy of it) to
 * the dead-letter topic; en becomes DEAD until the broker acknowledges it.
 * Returns 0, or -1 after logging when it cannot even be started. */
static int dead_letter(engine_t *e, zf_partition_t *p, zf_entry_t *en,
                       const zf_record_t *rec, const char *stage,
                       const char *error, const char *zk_error) {
    const zf_script_conf_t *sc = section_of(e, p);
    char err[1024];
    if (!e->dlq && zf_dlq_new(e->cfg, on_dead_lettered, e, &e->dlq, err,
                              sizeof err) != ZF_OK) {
        zf_error(LOG, "%s", err);
        return -1;
    }
    zf_dlq_failure_t f = {stage, error, zk_error, script_name(p),
                          p->script ? zf_script_version(p->script) : ""};
    if (zf_dlq_send(e->dlq, sc->dlq_topic, rec, &f, err, sizeof err) !=
        ZF_OK) {
        zf_error(LOG, "script %s: record %s [%d] offset %lld could not be "
                      "dead-lettered: %s; stopping without committing it",
                 script_name(p), p->topic, p->partition,
                 (long long)rec->offset, err);
        return -1;
    }
    zf_entry_dead(en);
    return 0;
}

static void on_applied(void *ctx, zf_err_t rc, const char *why) {
    zf_entry_t *en = ctx;
    zf_partition_t *p = en->part;
    engine_t *e = p->owner;
    if (rc == ZF_OK) {
        zf_entry_applied(en);
        e->applied++;
        zf_metric_inc(zf_m.records, 1, script_name(p), "applied");
        return;
    }
    if (rc == ZF_EAGAIN) {
        zf_entry_failed(en); /* back in the queue, behind the refused one */
        return;
    }
    if (rc == ZF_EFENCED) {
        zf_entry_failed(en);
        leave(e, p, why);
        return;
    }
    const char *policy = rc == ZF_ERECORD ? policy_of(e, p) : "stop";
    if (rc == ZF_ERECORD)
        e->failed++;
    if (strcmp(policy, "skip") == 0) {
        zf_error(LOG, "script %s: %s (record %s [%d] offset %lld); skipped",
                 script_name(p), why, p->topic, p->partition,
                 (long long)en->offset);
        zf_entry_applied(en); /* done, without effect */
        e->skipped++;
        zf_metric_inc(zf_m.records, 1, script_name(p), "skipped");
        return;
    }
    if (strcmp(policy, "dlq") == 0 && en->kept) {
        zf_error(LOG, "script %s: %s (record %s [%d] offset %lld); "
                      "dead-lettering it",
                 script_name(p), why, p->topic, p->partition,
                 (long long)en->offset);
        if (dead_letter(e, p, en, en->kept, "zookeeper", why,
                        zf_zk_refusal(e->zk)) == 0) {
            zf_metric_inc(zf_m.records, 1, script_name(p), "dlq");
            return;
        }
    } else {
        zf_error(LOG, "script %s: %s (record %s [%d] offset %lld); stopping "
                      "without committing it",
                 script_name(p), why, p->topic, p->partition,
                 (long long)en->offset);
    }
    /* Not applied, so never committable: the record stays for a restart,
     * and nothing after it in this partition may overtake it. */
    zf_metric_inc(zf_m.records, 1, script_name(p), "error");
    zf_entry_failed(en);
    p->blocked = 1;
    fail(e);
}

/* --dry-run: what a record would do, as a `zkflow test` line on stdout. */
static void print_ops(int64_t offset, const zf_oplist_t *ops) {
    char *line = zf_jsonl_format_result(offset, ops, NULL);
    if (!line) {
        zf_error(LOG, "out of memory");
        abort();
    }
    puts(line);
    free(line);
}

/* Transform one record and queue what it returns. */
static void take_record(engine_t *e, const zf_record_t *rec) {
    zf_partition_t *p = find_part(e, rec->topic, rec->partition);
    if (!p)
        return; /* from a partition revoked since it was fetched */
    if (p->next_offset >= 0 && rec->offset < p->next_offset)
        return; /* delivered again after a pause; already taken */
    if (!p->script)
        return; /* its section was removed: left for whoever reads it next */
    p->next_offset = p->position = rec->offset + 1;
    e->consumed++;

    zf_oplist_t ops = {0};
    char err[2048];
    const char *failed = NULL; /* the policy, when the transform failed */
    if (zf_script_transform(p->script, rec, &ops, err, sizeof err) != ZF_OK) {
        e->failed++;
        failed = policy_of(e, p);
        if (e->opts.dry_run && strcmp(failed, "stop") != 0) {
            char *line = zf_jsonl_format_result(rec->offset, NULL, err);
            if (line)
                puts(line);
            free(line);
        }
        zf_error(LOG, "script %s: %s (record %s [%d] offset %lld); %s",
                 zf_script_name(p->script), err, rec->topic, rec->partition,
                 (long long)rec->offset,
                 strcmp(failed, "skip") == 0 ? "skipped"
                 : strcmp(failed, "dlq") == 0
                     ? (e->opts.dry_run ? "would dead-letter it (dry run)"
                                        : "dead-lettering it")
                     : "stopping without committing it");
        zf_oplist_free(&ops);
        zf_metric_inc(zf_m.records, 1, zf_script_name(p->script),
                      strcmp(failed, "stop") == 0   ? "error"
                      : strcmp(failed, "skip") == 0 ? "skipped"
                                                    : "dlq");
        if (strcmp(failed, "stop") == 0) {
            fail(e); /* records before this one are still applied */
            return;
        }
    }
    zf_entry_t *en = zf_partition_push(p, rec->offset);
    if (!en) {
        zf_error(LOG, "out of memory");
        abort();
    }
    if (failed && strcmp(failed, "dlq") == 0 && !e->opts.dry_run) {
        const char *stage = zf_script_failed_validation(p->script)
                                ? "validate"
                                : "transform";
        if (dead_letter(e, p, en, rec, stage, err, NULL) != 0) {
            zf_entry_dead(en); /* for good: as with on_error = stop */
            fail(e);
        }
        return;
    }
    if (failed) { /* skip, or dlq in a dry run: done, without effect */
        zf_entry_applied(en);
        e->skipped++;
        return;
    }
    en->ops = ops; /* now owned by the entry */
    if (ops.n > 0 && !e->opts.dry_run &&
        strcmp(policy_of(e, p), "dlq") == 0 && zf_entry_keep(en, rec) != 0) {
        zf_error(LOG, "out of memory");
        abort();
    }
    if (e->opts.dry_run)
        print_ops(rec->offset, &en->ops);
    if (en->ops.n == 0 || e->opts.dry_run) {
        zf_entry_applied(en);
        e->skipped += en->ops.n == 0;
        zf_metric_inc(zf_m.records, en->ops.n == 0, zf_script_name(p->script),
                      "skipped");
    }
    if (!p->paused && p->nentries >= (size_t)e->cfg->max_queued_records) {
        if (!e->full) {
            e->full = p;
            e->full_since = zf_now_ms();
        }
        if (zf_now_ms() - e->full_since < HOLD_MS)
            return; /* take_records holds off first */
        zf_debug(LOG, "%s [%d]: %zu records waiting: pausing", p->topic,
                 (int)p->partition, p->nentries);
        zf_source_pause(e->src, p->topic, p->partition, 1);
        p->paused = 1;
    }
}

/* Whether to leave records in librdkafka's queue for now: a partition has
 * max_queued_records waiting, for less than HOLD_MS. Records of every
 * partition share that queue, so they all wait; its prefetch cap then stops
 * the fetcher. Pausing the partition instead makes librdkafka drop what it
 * prefetched and fetch it again on resume, which costs throughput when
 * ZooKeeper is merely slower than the transforms; so zkflow pauses only
 * when the hold lasts (ZooKeeper stalled, or one partition behind the
 * others), keeping the consumer polled well within max.poll.interval.ms. */
static int holding(engine_t *e) {
    zf_partition_t *p = e->full;
    if (!p)
        return 0;
    if (p->paused || e->stopping ||
        p->nentries <= (size_t)e->cfg->max_queued_records / 2) {
        e->full = NULL; /* drained (or paused): take records again */
        return 0;
    }
    return zf_now_ms() - e->full_since < HOLD_MS;
}

/* The consumer has nothing: when that has lasted FETCH_WAIT_MS while a
 * partition with room in its queue has records at the broker, ask for a
 * fetch of that partition (each in turn), which wakes librdkafka's fetcher
 * for the others too. Sets starved_since only while such a partition
 * exists, so an idle consumer is left to sleep. */
static void wake_fetcher(engine_t *e) {
    zf_partition_t *p = NULL;
    size_t k;
    for (k = 0; k < e->nparts && !e->stopping; k++) {
        zf_partition_t *q = e->parts[(e->fetch_next + k) % e->nparts];
        if (!q->paused && !q->blocked && q->next_offset >= 0 &&
            q->nentries < (size_t)e->cfg->max_queued_records / 2 &&
            zf_source_behind(e->src, q->topic, q->partition,
                             q->next_offset)) {
            p = q;
            break;
        }
    }
    int64_t now = zf_now_ms();
    if (!p || !e->starved_since) {
        e->starved_since = p ? now : 0;
        return;
    }
    if (now - e->starved_since < FETCH_WAIT_MS)
        return;
    zf_source_fetch_now(e->src, p->topic, p->partition, p->next_offset);
    e->fetch_next += k + 1;
    e->starved_since = now;
}

static size_t dispatch(engine_t *e);

/* Poll the consumer, which also serves rebalances. While stopping, records
 * are let go untouched (not stored, so consumed again next time). */
static void take_records(engine_t *e) {
    zf_record_t rec;
    e->kafka_pending = 0;
    for (int n = 0; n < TAKE_BATCH; n++) {
        if (holding(e))
            return;
        switch (zf_source_next(e->src, &rec)) {
        case ZF_SOURCE_NONE:
            if (n == 0)
                wake_fetcher(e);
            return;
        case ZF_SOURCE_EOF: {
            zf_partition_t *p = find_part(e, rec.topic, rec.partition);
            if (p && rec.offset > p->position)
                p->position = rec.offset;
            break;
        }
        case ZF_SOURCE_RECORD:
            e->starved_since = 0;
            if (!e->stopping)
                take_record(e, &rec);
            break;
        }
        if (n % TEND_EVERY == TEND_EVERY - 1) {
            charge(e, STAGE_KAFKA);
            zf_zk_process(e->zk);
            dispatch(e);
            charge(e, STAGE_ZOOKEEPER);
        }
    }
    e->kafka_pending = 1; /* stopped early: the wake-up pipe may stay quiet */
}

/* Send the next batch of every idle partition: the ops of its consecutive
 * queued records, up to batch_max_ops and batch_max_bytes, as one multi.
 * One batch per partition is in flight at a time, so a batch that must be
 * rewritten and sent again can never be overtaken by a later one.
 * Returns how many records wait to be sent. */
static size_t dispatch(engine_t *e) {
    size_t waiting = 0;
    e->position_due = 0;
    for (size_t i = 0; i < e->nparts; i++) {
        zf_partition_t *p = e->parts[i];
        store_progress(e, p);
        if (sync_position(e, p, 0) || p->blocked)
            continue;
        zf_entry_t *en = zf_partition_next_queued(p);
        if (!en)
            continue;
        waiting++;
        if (p->nsent > 0)
            continue;
        size_t n = 0, ops = 0, bytes = 0;
        /* A record being dead-lettered holds back the records after it. */
        for (en = p->ndead ? p->head : en; en && n < e->batch_cap;
             en = en->next) {
            if (en->state == ZF_ENTRY_DEAD)
                break;
            if (en->state != ZF_ENTRY_QUEUED)
                continue; /* a skipped record: nothing to send */
            int alone = !zf_zk_batchable(&en->ops);
            size_t b = en->ops.bytes;
            if (n > 0 && (alone || ops + en->ops.n > (size_t)e->cfg->batch_max_ops ||
                          bytes + b > (size_t)e->cfg->batch_max_bytes))
                break;
            e->batch[n++] = (zf_zk_item_t){&en->ops, en, en->offset + 1};
            ops += en->ops.n;
            bytes += b;
            zf_entry_sent(en);
            if (alone)
                break;
        }
        if (n == 0) {
            /* Behind a dead letter: they go once it is acknowledged; a
             * stop does not wait for them. */
            waiting--;
            continue;
        }
        if (p->coalesce && n > 1)
            e->coalesced += zf_zk_coalesce(e->batch, n);
        zf_zk_apply(e->zk, e->batch, n, p->fence.path ? &p->fence : NULL,
                    on_applied);
        e->batches++;
    }
    return waiting;
}

/* --exit-on-eof: every partition consumed to its end and fully applied. */
static int caught_up(const engine_t *e) {
    /* No partition yet: a member joining a cooperative group first gets an
     * empty assignment, and its partitions only in a second round. */
    if (e->nparts == 0 || zf_zk_inflight(e->zk) > 0)
        return 0;
    for (size_t i = 0; i < e->nparts; i++) {
        const zf_partition_t *p = e->parts[i];
        if (p->nentries > 0 || p->position < 0 || p->position < p->end)
            return 0;
    }
    return 1;
}

static void check_services(engine_t *e) {
    char err[512];
    if (zf_zk_status(e->zk, err, sizeof err) != ZF_OK ||
        zf_source_status(e->src, err, sizeof err) != ZF_OK) {
        if (!e->stopping)
            zf_error(LOG, "%s; stopping", err);
        fail(e);
    }
}

static void on_signal(engine_t *e) {
    struct signalfd_siginfo si;
    while (read(e->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            zf_info(LOG, "SIGHUP: reading the configuration and every script "
                         "again");
            e->reconfigure = 1;
            continue;
        }
        if (e->stopping) {
            zf_warn(LOG, "%s again: still finishing %zu write(s)",
                    strsignal((int)si.ssi_signo), zf_zk_inflight(e->zk));
            continue;
        }
        zf_info(LOG, "%s: finishing writes in flight, then committing",
                strsignal((int)si.ssi_signo));
        e->stopping = 1;
        /* Records not sent yet are left for the next run: quicker exit. */
        for (size_t i = 0; i < e->nparts; i++)
            zf_partition_drop_queued(e->parts[i]);
    }
}

/* Ready to end: after a stop, once nothing is left to send or in flight;
 * with --exit-on-eof, once caught up. Then commit, while the consumer keeps
 * being served (a rebalance during the commit would otherwise hold it), and
 * report whether the loop may end. */
static int ended(engine_t *e, size_t waiting) {
    int ready = e->stopping
                    ? waiting == 0 && zf_zk_inflight(e->zk) == 0
                    : e->opts.exit_on_eof && caught_up(e);
    if (!ready) {
        e->commit_since = 0; /* e.g. new partitions came: not caught up */
        return 0;
    }
    if (!e->commit_since) {
        int writing = 0;
        for (size_t i = 0; i < e->nparts; i++)
            writing |= sync_position(e, e->parts[i], 1);
        if (writing)
            return 0; /* positions first, then the commit */
        zf_info(LOG, "%s; committing offsets",
                e->stopping ? "writes finished" : "every partition is caught up");
        zf_source_commit_start(e->src);
        e->commit_since = zf_now_ms();
    }
    char err[512];
    int rc = zf_source_commit_result(e->src, err, sizeof err);
    int64_t waited = zf_now_ms() - e->commit_since;
    if (rc > 0 && waited < COMMIT_WAIT_MS) {
        /* Typically a rebalance moved the group to a new generation while
         * the commit was on its way; polling goes on, so it completes and
         * the same offsets can be committed again. */
        zf_info(LOG, "%s; trying again", err);
        zf_source_commit_start(e->src);
        return 0;
    }
    if (rc < 0 && waited > COMMIT_WAIT_MS) {
        snprintf(err, sizeof err, "offset commit did not finish within %d ms",
                 COMMIT_WAIT_MS);
        rc = ZF_EKAFKA;
    }
    if (rc < 0)
        return 0;
    if (rc != ZF_OK) {
        zf_error(LOG, "%s", err);
        e->status = ZF_EXIT_FAILURE;
    }
    e->stopping = 1; /* from here on, nothing new is taken */
    return 1;
}

/* SIGHUP: take the configuration file's [script] sections as they are now,
 * then reload every script. */
static void reconfigure(engine_t *e) {
    e->reconfigure = 0;
    int topics_changed;
    if (zf_scriptset_reconfigure(e->scripts, &topics_changed)) {
        repoint(e);
        char err[512];
        if (topics_changed &&
            zf_source_subscribe(e->src, zf_scriptset_config(e->scripts), err,
                                sizeof err) != ZF_OK)
            zf_error(LOG, "%s", err);
        else if (topics_changed)
            zf_info(LOG, "subscribed to the new set of topics");
    }
    zf_scriptset_reload_all(e->scripts);
}

/* --exit-on-eof: how far the backfill is, about once a second on a
 * terminal (one line, redrawn) and every 10 s otherwise (log lines). */
static void progress(engine_t *e, int last) {
    int64_t now = zf_now_ms();
    if (!e->progress_at) {
        e->progress_at = now;
        return;
    }
    int64_t every = e->progress_tty ? 1000 : 10000;
    if (!last && now - e->progress_at < every)
        return;
    uint64_t left = 0;
    for (size_t i = 0; i < e->nparts; i++) {
        const zf_partition_t *p = e->parts[i];
        if (p->end > p->position && p->position >= 0)
            left += (uint64_t)(p->end - p->position);
    }
    double secs = (double)(now - e->progress_at) / 1000.0;
    double rate = secs > 0 ? (double)(e->consumed - e->progress_consumed) / secs
                           : 0;
    uint64_t total = e->consumed + left;
    char eta[32] = "?";
    if (rate > 0)
        snprintf(eta, sizeof eta, "%.0f s", (double)left / rate);
    if (e->progress_tty)
        fprintf(stderr, "\r%llu of %llu records (%.0f%%), %.0f records/s, "
                        "ETA %s   %s",
                (unsigned long long)e->consumed, (unsigned long long)total,
                total ? 100.0 * (double)e->consumed / (double)total : 0.0,
                rate, eta, last ? "\n" : "");
    else if (!last)
        zf_info(LOG, "progress: %llu of %llu records (%.0f%%), %.0f "
                     "records/s, ETA %s",
                (unsigned long long)e->consumed, (unsigned long long)total,
                total ? 100.0 * (double)e->consumed / (double)total : 0.0,
                rate, eta);
    e->progress_at = now;
    e->progress_consumed = e->consumed;
}

/* Every SAMPLE_EVERY_MS: the engine's time by stage, the writes in flight
 * and each partition's queue to the metrics (when they are served). */
static void sample(engine_t *e, int now) {
    if (!zf_m.reg)
        return;
    int64_t t = zf_now_ms();
    if (!now && t - e->sampled_at < SAMPLE_EVERY_MS)
        return;
    e->sampled_at = t;
    for (int s = 0; s < STAGE_COUNT; s++) {
        zf_series_inc(zf_metric_series(zf_m.engine_seconds, stage_names[s]),
                      (uint64_t)(e->stage_ns[s] - e->shown_ns[s]));
        e->shown_ns[s] = e->stage_ns[s];
    }
    zf_series_set(zf_metric_series(zf_m.zk_requests_inflight),
                  (double)zf_zk_requests_inflight(e->zk));
    for (size_t i = 0; i < e->nparts; i++) {
        char part[16];
        snprintf(part, sizeof part, "%d", (int)e->parts[i]->partition);
        zf_series_set(zf_metric_series(zf_m.queued, e->parts[i]->topic, part),
                      (double)e->parts[i]->nentries);
    }
}

static void loop(engine_t *e) {
    for (;;) {
        take_records(e);
        charge(e, STAGE_KAFKA);
        check_services(e);
        if (e->opts.exit_on_eof)
            progress(e, 0);
        /* After a failure, records taken before it are still applied, so
         * the committed offsets reach up to the failed record. */
        size_t waiting = dispatch(e);
        charge(e, STAGE_ZOOKEEPER);
        if (ended(e, waiting))
            return;
        sample(e, 0);

        /* While holding, records waiting in the consumer keep its wake-up
         * descriptor readable: leave it out, and wake for the hold's end. */
        int hold = holding(e);
        struct pollfd pfd[5] = {
            {.fd = e->sigfd, .events = POLLIN},
            {.fd = zf_zk_fd(e->zk), .events = POLLIN},
            {.fd = hold ? -1 : zf_source_fd(e->src), .events = POLLIN},
            {.fd = zf_scriptset_fd(e->scripts), .events = POLLIN},
            {.fd = zf_dlq_fd(e->dlq), .events = POLLIN}, /* -1: none yet */
        };
        int timeout = zf_zk_next_timeout_ms(e->zk);
        int reload = zf_scriptset_timeout_ms(e->scripts);
        if (reload >= 0 && (timeout < 0 || reload < timeout))
            timeout = reload;
        if (e->kafka_pending)
            timeout = 0;
        else if (e->commit_since)
            timeout = 10; /* the commit's result has no descriptor */
        else if (timeout < 0 || timeout > 1000)
            timeout = 1000; /* also keeps checking the services' health */
        if (hold) {
            int64_t left = e->full_since + HOLD_MS - zf_now_ms() + 1;
            if (left < timeout)
                timeout = left > 0 ? (int)left : 0;
        }
        if (e->starved_since && timeout > FETCH_WAIT_MS)
            timeout = FETCH_WAIT_MS; /* wake_fetcher's next look */
        if (e->position_due) {
            int64_t left = e->position_due - zf_now_ms();
            if (left < timeout)
                timeout = left > 0 ? (int)left : 0;
        }
        charge(e, STAGE_OTHER);
        if (poll(pfd, 5, timeout) < 0 && errno != EINTR) {
            zf_error(LOG, "poll: %s", strerror(errno));
            fail(e);
            return;
        }
        charge(e, hold      ? STAGE_HELD
                  : waiting ? STAGE_WAIT_ZOOKEEPER
                            : STAGE_WAIT_KAFKA);
        if (pfd[0].revents)
            on_signal(e);
        if (e->reconfigure)
            reconfigure(e);
        if (zf_scriptset_process(e->scripts))
            repoint(e);
        zf_dlq_process(e->dlq); /* delivery reports of dead letters */
        charge(e, STAGE_OTHER);
        zf_zk_process(e->zk);
        charge(e, STAGE_ZOOKEEPER);
    }
}

static void report(const engine_t *e, int64_t started_ms) {
    uint64_t reloads, rejected;
    zf_scriptset_counts(e->scripts, &reloads, &rejected);
    double secs = (double)(zf_now_ms() - started_ms) / 1000.0;
    zf_info(LOG, "finished: consumed=%llu applied=%llu skipped=%llu "
                 "dead-lettered=%llu failed=%llu in %.2f s "
                 "(%.0f records/s, %llu ZooKeeper batches, %llu script "
                 "reloads, %llu rejected, %llu coalesced)",
            (unsigned long long)e->consumed, (unsigned long long)e->applied,
            (unsigned long long)e->skipped,
            (unsigned long long)e->dead_lettered,
            (unsigned long long)e->failed, secs,
            secs > 0 ? (double)e->consumed / secs : 0.0,
            (unsigned long long)e->batches, (unsigned long long)reloads,
            (unsigned long long)rejected, (unsigned long long)e->coalesced);
    /* Where the engine thread's time went, the largest share first. */
    int64_t total = 0;
    int order[STAGE_COUNT];
    for (int s = 0; s < STAGE_COUNT; s++) {
        total += e->stage_ns[s];
        int at = s;
        while (at > 0 && e->stage_ns[order[at - 1]] < e->stage_ns[s]) {
            order[at] = order[at - 1];
            at--;
        }
        order[at] = s;
    }
    char line[512];
    size_t n = 0;
    for (int i = 0; i < STAGE_COUNT && total > 0; i++) {
        double pct = 100.0 * (double)e->stage_ns[order[i]] / (double)total;
        if (pct >= 0.5 && n < sizeof line)
            n += (size_t)snprintf(line + n, sizeof line - n, "%s%.0f%% %s",
                                  n ? ", " : "", pct,
                                  stage_words[order[i]]);
    }
    if (n)
        zf_info(LOG, "engine time: %s (%.2f s)", line, (double)total / 1e9);
}

int zf_engine_run(const zf_config_t *cfg, const zf_run_opts_t *opts) {
    engine_t e = {.cfg = cfg, .opts = *opts, .sigfd = -1,
                  .status = ZF_EXIT_OK,
                  .exactly_once = strcmp(cfg->delivery, "exactly_once") == 0};
    char err[2048];
    zf_http_t *http = NULL;
    static const zf_source_handlers_t handlers = {on_assigned, on_revoked};
    int64_t started = zf_now_ms();

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    e.sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (e.sigfd < 0) {
        zf_error(LOG, "signalfd: %s", strerror(errno));
        return ZF_EXIT_FAILURE;
    }
    int status = ZF_EXIT_USAGE;
    e.position_every_ms =
        atoll(kafka_value(cfg, "auto.commit.interval.ms", "5000"));
    if (e.position_every_ms <= 0)
        e.position_every_ms = 5000;
    /* A batch holds at most batch_max_ops records (each has an op). */
    e.batch_cap = (size_t)cfg->batch_max_ops;
    if (!(e.batch = calloc(e.batch_cap, sizeof *e.batch))) {
        zf_error(LOG, "out of memory");
        goto out;
    }
    zf_err_t rc = zf_scriptset_new(cfg, 1, &e.scripts, err, sizeof err);
    if (rc != ZF_OK) {
        fprintf(stderr, "%s\n", err);
        status = rc == ZF_ECONFIG ? ZF_EXIT_USAGE : ZF_EXIT_FAILURE;
        goto out;
    }
    rc = zf_source_new(cfg, opts->exit_on_eof, &handlers, &e, &e.src,
                                err, sizeof err);
    if (rc != ZF_OK) {
        fprintf(stderr, "%s\n", err);
        status = rc == ZF_ECONFIG ? ZF_EXIT_USAGE : ZF_EXIT_FAILURE;
        goto out;
    }
    for (size_t i = 0; i < cfg->nscripts && !opts->dry_run; i++) {
        /* Made now when the configuration asks for it, so a producer
         * problem shows at start; after a reload, when first needed. */
        const zf_script_conf_t *sc = &cfg->scripts[i];
        if (strcmp(sc->on_error, "dlq") != 0)
            continue;
        if (!e.dlq && (rc = zf_dlq_new(cfg, on_dead_lettered, &e, &e.dlq, err,
                                       sizeof err)) != ZF_OK) {
            fprintf(stderr, "%s\n", err);
            status = rc == ZF_ECONFIG ? ZF_EXIT_USAGE : ZF_EXIT_FAILURE;
            goto out;
        }
        if (zf_dlq_check_topic(e.dlq, sc->dlq_topic, 5000, err, sizeof err) !=
            ZF_OK)
            zf_warn(LOG, "[script %s] %s: a record dead-lettered there will "
                         "stop zkflow",
                    sc->name, err);
    }
    status = ZF_EXIT_FAILURE;
    /* Metrics and health probes, when metrics_listen is set. */
    if (cfg->metrics_listen[0]) {
        if (zf_metrics_zkflow_init() != 0) {
            zf_error(LOG, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < zf_scriptset_count(e.scripts); i++) {
            zf_scriptset_entry_t en = zf_scriptset_entry(e.scripts, i);
            zf_metrics_zkflow_script(en.conf->name,
                                     zf_script_version(en.script), NULL);
        }
        if (!(http = zf_http_start(cfg->metrics_listen, zf_m.reg,
                                   zf_metrics_zkflow_ready, NULL, err,
                                   sizeof err))) {
            zf_error(LOG, "%s", err);
            goto out;
        }
        zf_info(LOG, "metrics on http://%s/metrics", cfg->metrics_listen);
    }
    if (!(e.zk = zf_zk_new(cfg->zk_connect, cfg->zk_session_timeout_ms, err,
                           sizeof err)) ||
        zf_zk_secure(e.zk, cfg->zk_auth, cfg->zk_acl, err, sizeof err) !=
            ZF_OK ||
        zf_zk_wait_connected(e.zk, cfg->zk_connect_timeout_ms, err,
                             sizeof err) != ZF_OK) {
        zf_error(LOG, "%s", err);
        goto out;
    }
    if (zf_source_subscribe(e.src, cfg, err, sizeof err) != ZF_OK) {
        zf_error(LOG, "%s", err);
        goto out;
    }
    zf_info(LOG, "running: %zu script(s), delivery %s", cfg->nscripts,
            cfg->delivery);
    e.progress_tty = isatty(STDERR_FILENO);
    e.stage_mark = zf_now_ns();
    e.script_mark = zf_sandbox_thread_ns();
    loop(&e);
    if (opts->exit_on_eof && e.progress_tty)
        progress(&e, 1);
    drain(&e, NULL); /* only left over when the loop itself failed */
    charge(&e, STAGE_OTHER);
    sample(&e, 1);
    report(&e, started);
    status = e.status;
out:
    zf_source_close(e.src); /* leaves the group: revoked partitions commit */
    for (size_t i = 0; i < e.nparts; i++)
        zf_partition_destroy(e.parts[i]);
    free(e.parts);
    zf_zk_destroy(e.zk);
    zf_dlq_destroy(e.dlq, 5000);
    zf_scriptset_destroy(e.scripts);
    free(e.batch);
    close(e.sigfd);
    zf_http_stop(http);
    zf_metrics_zkflow_free();
    return status;
}

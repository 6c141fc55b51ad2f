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
#include "zkflow/error.h"
#include "zkflow/jsonl.h"
#include "zkflow/log.h"
#include "zkflow/script.h"
#include "zkflow/source.h"
#include "zkflow/tracker.h"
#include "zkflow/watch.h"
#include "zkflow/zk.h"

/* Records taken from Kafka in one go before the loop tends to ZooKeeper. */
#define TAKE_BATCH 512
/* How long the final offset commit may take before zkflow gives up on it. */
#define COMMIT_WAIT_MS 30000
/* Editors write a file in several steps: reload once it has been quiet. */
#define RELOAD_SETTLE_MS 50

typedef struct engine {
    const zf_config_t *cfg;
    zf_run_opts_t opts;
    zf_script_t **scripts; /* parallel to cfg->scripts */
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
    zf_watch_t *watch;  /* script files; NULL when inotify is unavailable */
    int64_t *reload_at; /* per script: reload due then (ms), or 0 */
    uint64_t reloads, reload_rejects;
    uint64_t consumed, applied, skipped;
    uint64_t batches;   /* multis (or solo writes) sent */
    uint64_t coalesced; /* records left out of their batch by coalescing */
} engine_t;

static const char *const LOG = "engine";

static void fail(engine_t *e) {
    e->stopping = 1;
    e->status = ZF_EXIT_FAILURE;
}

/* The script options a [script] section asks for. */
static zf_script_opts_t script_opts(const zf_script_conf_t *sc) {
    return (zf_script_opts_t){
        .root = sc->root,
        .ops = sc->ops,
        .params = sc->params,
        .nparams = sc->nparams,
        .timeout_ms = sc->timeout_ms,
        .memory_mb = sc->memory_mb,
    };
}

zf_script_t **zf_engine_scripts_load(const zf_config_t *cfg, char *err,
                                     size_t errlen) {
    zf_script_t **s = calloc(cfg->nscripts ? cfg->nscripts : 1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cfg->nscripts; i++) {
        const zf_script_conf_t *sc = &cfg->scripts[i];
        const zf_script_opts_t opts = script_opts(sc);
        char why[1024];
        s[i] = zf_script_new(sc->name, sc->file, &opts, why, sizeof why);
        if (!s[i]) {
            snprintf(err, errlen, "%s:%d: [script %s]: %s", cfg->path,
                     sc->file_line, sc->name, why);
            zf_engine_scripts_free(cfg, s);
            return NULL;
        }
    }
    return s;
}

void zf_engine_scripts_free(const zf_config_t *cfg, zf_script_t **s) {
    if (!s)
        return;
    for (size_t i = 0; i < cfg->nscripts; i++)
        zf_script_destroy(s[i]);
    free(s);
}

static zf_script_t *script_for(engine_t *e, const char *topic) {
    const zf_script_conf_t *sc = zf_config_script_for_topic(e->cfg, topic);
    return sc ? e->scripts[sc - e->cfg->scripts] : NULL;
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
    if (p->paused && p->nentries <= (size_t)e->cfg->max_queued_records / 2) {
        zf_source_pause(e->src, p->topic, p->partition, 0);
        p->paused = 0;
    }
}

/* Run the ZooKeeper side until no op of partition p (or, with p NULL, none
 * at all) is in flight. Outcomes arrive even when ZooKeeper is away: retries
 * end with the session, so this always returns. */
static void drain(engine_t *e, const zf_partition_t *p) {
    while (p ? p->nsent > 0 : zf_zk_inflight(e->zk) > 0) {
        struct pollfd pfd = {.fd = zf_zk_fd(e->zk), .events = POLLIN};
        poll(&pfd, 1, zf_zk_next_timeout_ms(e->zk));
        zf_zk_process(e->zk);
    }
}

static void on_assigned(void *ctx, const zf_tp_t *tps, size_t n) {
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
        p->script = script_for(e, p->topic);
        const zf_script_conf_t *sc = zf_config_script_for_topic(e->cfg, p->topic);
        p->coalesce = sc && sc->coalesce == 1;
        if (e->opts.exit_on_eof)
            p->end = zf_source_end_offset(e->src, p->topic, p->partition);
        e->parts[e->nparts++] = p;
    }
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
        if (!lost)
            store_progress(e, p);
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
        zf_partition_destroy(p);
    }
}

static void on_applied(void *ctx, zf_err_t rc, const char *why) {
    zf_entry_t *en = ctx;
    zf_partition_t *p = en->part;
    engine_t *e = p->owner;
    if (rc == ZF_OK) {
        zf_entry_applied(en);
        e->applied++;
        return;
    }
    if (rc == ZF_EAGAIN) {
        zf_entry_failed(en); /* back in the queue, behind the refused one */
        return;
    }
    zf_error(LOG, "script %s: %s (record %s [%d] offset %lld); stopping "
                  "without committing it",
             zf_script_name(p->script), why, p->topic, p->partition,
             (long long)en->offset);
    /* Not applied, so never committable: the record stays for a restart,
     * and nothing after it in this partition may overtake it. */
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
    p->next_offset = p->position = rec->offset + 1;
    e->consumed++;

    zf_oplist_t ops = {0};
    char err[2048];
    if (zf_script_transform(p->script, rec, &ops, err, sizeof err) != ZF_OK) {
        zf_error(LOG, "script %s: %s (record %s [%d] offset %lld); stopping "
                      "without committing it",
                 zf_script_name(p->script), err, rec->topic, rec->partition,
                 (long long)rec->offset);
        zf_oplist_free(&ops);
        fail(e); /* records before this one are still applied */
        return;
    }
    zf_entry_t *en = zf_partition_push(p, rec->offset);
    if (!en) {
        zf_error(LOG, "out of memory");
        abort();
    }
    en->ops = ops; /* now owned by the entry */
    if (e->opts.dry_run)
        print_ops(rec->offset, &en->ops);
    if (en->ops.n == 0 || e->opts.dry_run) {
        zf_entry_applied(en);
        e->skipped += en->ops.n == 0;
    }
    if (!p->paused && p->nentries >= (size_t)e->cfg->max_queued_records) {
        zf_source_pause(e->src, p->topic, p->partition, 1);
        p->paused = 1;
    }
}

/* Poll the consumer, which also serves rebalances. While stopping, records
 * are let go untouched (not stored, so consumed again next time). */
static void take_records(engine_t *e) {
    zf_record_t rec;
    e->kafka_pending = 0;
    for (int n = 0; n < TAKE_BATCH; n++) {
        switch (zf_source_next(e->src, &rec)) {
        case ZF_SOURCE_NONE:
            return;
        case ZF_SOURCE_EOF: {
            zf_partition_t *p = find_part(e, rec.topic, rec.partition);
            if (p && rec.offset > p->position)
                p->position = rec.offset;
            break;
        }
        case ZF_SOURCE_RECORD:
            if (!e->stopping)
                take_record(e, &rec);
            break;
        }
    }
    e->kafka_pending = 1; /* stopped early: the wake-up pipe may stay quiet */
}

static size_t oplist_bytes(const zf_oplist_t *l) {
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += strlen(l->ops[i].path) + l->ops[i].datalen;
    return n;
}

/* Send the next batch of every idle partition: the ops of its consecutive
 * queued records, up to batch_max_ops and batch_max_bytes, as one multi.
 * One batch per partition is in flight at a time, so a batch that must be
 * rewritten and sent again can never be overtaken by a later one.
 * Returns how many records wait to be sent. */
static size_t dispatch(engine_t *e) {
    size_t waiting = 0;
    for (size_t i = 0; i < e->nparts; i++) {
        zf_partition_t *p = e->parts[i];
        store_progress(e, p);
        if (p->blocked)
            continue;
        zf_entry_t *en = zf_partition_next_queued(p);
        if (!en)
            continue;
        waiting++;
        if (p->nsent > 0)
            continue;
        size_t n = 0, ops = 0, bytes = 0;
        for (; en && n < e->batch_cap; en = en->next) {
            if (en->state != ZF_ENTRY_QUEUED)
                continue; /* a skipped record: nothing to send */
            int alone = !zf_zk_batchable(&en->ops);
            size_t b = oplist_bytes(&en->ops);
            if (n > 0 && (alone || ops + en->ops.n > (size_t)e->cfg->batch_max_ops ||
                          bytes + b > (size_t)e->cfg->batch_max_bytes))
                break;
            e->batch[n++] = (zf_zk_item_t){&en->ops, en};
            ops += en->ops.n;
            bytes += b;
            zf_entry_sent(en);
            if (alone)
                break;
        }
        if (p->coalesce && n > 1)
            e->coalesced += zf_zk_coalesce(e->batch, n);
        zf_zk_apply(e->zk, e->batch, n, on_applied);
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

/* Load script i again and, if the new version compiles and initialises,
 * swap it in between two records; otherwise keep the running one. Records
 * already transformed keep the ops the old version gave them. */
static void reload_script(engine_t *e, size_t i) {
    const zf_script_conf_t *sc = &e->cfg->scripts[i];
    zf_script_t *old = e->scripts[i];
    const zf_script_opts_t opts = script_opts(sc);
    char err[2048];
    zf_script_t *s = zf_script_new(sc->name, sc->file, &opts, err, sizeof err);
    if (!s) {
        e->reload_rejects++;
        zf_error(LOG, "script %s: reload rejected, version %s keeps running: %s",
                 sc->name, zf_script_version(old), err);
        return;
    }
    if (strcmp(zf_script_version(s), zf_script_version(old)) == 0) {
        zf_debug(LOG, "script %s: unchanged (version %s)", sc->name,
                 zf_script_version(old));
        zf_script_destroy(s);
        return;
    }
    for (size_t k = 0; k < e->nparts; k++)
        if (e->parts[k]->script == old)
            e->parts[k]->script = s;
    e->scripts[i] = s;
    e->reloads++;
    zf_info(LOG, "script %s: reloaded, version %s -> %s", sc->name,
            zf_script_version(old), zf_script_version(s));
    zf_script_destroy(old);
}

static void on_script_changed(void *ctx, int id) {
    engine_t *e = ctx;
    e->reload_at[id] = zf_now_ms() + RELOAD_SETTLE_MS;
}

/* Reload the scripts whose time has come; returns the ms until the next
 * one is due, or -1. */
static int reload_due(engine_t *e) {
    int64_t now = zf_now_ms(), next = -1;
    for (size_t i = 0; i < e->cfg->nscripts; i++) {
        if (!e->reload_at[i])
            continue;
        if (e->reload_at[i] <= now) {
            e->reload_at[i] = 0;
            reload_script(e, i);
        } else if (next < 0 || e->reload_at[i] - now < next) {
            next = e->reload_at[i] - now;
        }
    }
    return (int)next;
}

static void on_signal(engine_t *e) {
    struct signalfd_siginfo si;
    while (read(e->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            zf_info(LOG, "SIGHUP: reloading every script");
            for (size_t i = 0; i < e->cfg->nscripts; i++)
                e->reload_at[i] = zf_now_ms();
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

static void loop(engine_t *e) {
    for (;;) {
        take_records(e);
        check_services(e);
        /* After a failure, records taken before it are still applied, so
         * the committed offsets reach up to the failed record. */
        size_t waiting = dispatch(e);
        if (ended(e, waiting))
            return;

        struct pollfd pfd[4] = {
            {.fd = e->sigfd, .events = POLLIN},
            {.fd = zf_zk_fd(e->zk), .events = POLLIN},
            {.fd = zf_source_fd(e->src), .events = POLLIN},
            {.fd = e->watch ? zf_watch_fd(e->watch) : -1, .events = POLLIN},
        };
        int timeout = zf_zk_next_timeout_ms(e->zk);
        int reload = reload_due(e);
        if (reload >= 0 && (timeout < 0 || reload < timeout))
            timeout = reload;
        if (e->kafka_pending)
            timeout = 0;
        else if (e->commit_since)
            timeout = 10; /* the commit's result has no descriptor */
        else if (timeout < 0 || timeout > 1000)
            timeout = 1000; /* also keeps checking the services' health */
        if (poll(pfd, 4, timeout) < 0 && errno != EINTR) {
            zf_error(LOG, "poll: %s", strerror(errno));
            fail(e);
            return;
        }
        if (pfd[0].revents)
            on_signal(e);
        if (pfd[3].revents)
            zf_watch_read(e->watch, on_script_changed, e);
        zf_zk_process(e->zk);
    }
}

static void report(const engine_t *e, int64_t started_ms) {
    double secs = (double)(zf_now_ms() - started_ms) / 1000.0;
    zf_info(LOG, "finished: consumed=%llu applied=%llu skipped=%llu in %.2f s "
                 "(%.0f records/s, %llu ZooKeeper batches, %llu script "
                 "reloads, %llu rejected, %llu coalesced)",
            (unsigned long long)e->consumed, (unsigned long long)e->applied,
            (unsigned long long)e->skipped, secs,
            secs > 0 ? (double)e->consumed / secs : 0.0,
            (unsigned long long)e->batches, (unsigned long long)e->reloads,
            (unsigned long long)e->reload_rejects,
            (unsigned long long)e->coalesced);
}

int zf_engine_run(const zf_config_t *cfg, const zf_run_opts_t *opts) {
    engine_t e = {.cfg = cfg, .opts = *opts, .sigfd = -1,
                  .status = ZF_EXIT_OK};
    char err[2048];
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
    /* A batch holds at most batch_max_ops records (each has an op). */
    e.batch_cap = (size_t)cfg->batch_max_ops;
    if (!(e.batch = calloc(e.batch_cap, sizeof *e.batch))) {
        zf_error(LOG, "out of memory");
        goto out;
    }
    if (!(e.scripts = zf_engine_scripts_load(cfg, err, sizeof err))) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    if (!(e.reload_at = calloc(cfg->nscripts, sizeof *e.reload_at))) {
        zf_error(LOG, "out of memory");
        goto out;
    }
    /* Scripts reload when their file changes (and on SIGHUP). */
    if (!(e.watch = zf_watch_new(err, sizeof err)))
        zf_warn(LOG, "%s: scripts reload on SIGHUP only", err);
    for (size_t i = 0; i < cfg->nscripts; i++) {
        const zf_script_conf_t *sc = &cfg->scripts[i];
        zf_info(LOG, "script %s: version %s from %s", sc->name,
                zf_script_version(e.scripts[i]), sc->file);
        if (e.watch && zf_watch_add(e.watch, sc->file, (int)i, err,
                                    sizeof err) != 0)
            zf_warn(LOG, "script %s: %s: it reloads on SIGHUP only", sc->name,
                    err);
    }
    zf_err_t rc = zf_source_new(cfg, opts->exit_on_eof, &handlers, &e, &e.src,
                                err, sizeof err);
    if (rc != ZF_OK) {
        fprintf(stderr, "%s\n", err);
        status = rc == ZF_ECONFIG ? ZF_EXIT_USAGE : ZF_EXIT_FAILURE;
        goto out;
    }
    status = ZF_EXIT_FAILURE;
    if (!(e.zk = zf_zk_new(cfg->zk_connect, cfg->zk_session_timeout_ms, err,
                           sizeof err)) ||
        zf_zk_wait_connected(e.zk, cfg->zk_connect_timeout_ms, err,
                             sizeof err) != ZF_OK) {
        zf_error(LOG, "%s", err);
        goto out;
    }
    if (zf_source_start(e.src, err, sizeof err) != ZF_OK) {
        zf_error(LOG, "%s", err);
        goto out;
    }
    zf_info(LOG, "running: %zu script(s), delivery %s", cfg->nscripts,
            cfg->delivery);
    loop(&e);
    drain(&e, NULL); /* only left over when the loop itself failed */
    report(&e, started);
    status = e.status;
out:
    zf_source_close(e.src); /* leaves the group: revoked partitions commit */
    for (size_t i = 0; i < e.nparts; i++)
        zf_partition_destroy(e.parts[i]);
    free(e.parts);
    zf_zk_destroy(e.zk);
    zf_engine_scripts_free(cfg, e.scripts);
    zf_watch_destroy(e.watch);
    free(e.reload_at);
    free(e.batch);
    close(e.sigfd);
    return status;
}

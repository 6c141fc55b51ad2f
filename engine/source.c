#include "zkflow/source.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zkflow/clock.h"
#include "zkflow/log.h"
#include "zkflow/metrics.h"

/* How often zkflow_consumer_lag is refreshed. */
#define LAG_EVERY_MS 1000
/* Messages taken from librdkafka's consumer queue in one call. What a call
 * costs beyond each message's own share (the queue wait, the clock, the
 * poll-interval bookkeeping) is then paid once per batch: 581 -> 392
 * instructions per record in the bench. A few dozen are enough for that,
 * and few records are held when a partition is paused or revoked. */
#define TAKE_MAX 64

/* A rebalance that arrived while a batch was being taken: handled once the
 * call returns, see on_rebalance. */
typedef struct deferred {
    rd_kafka_resp_err_t err;
    rd_kafka_topic_partition_list_t *parts; /* owned copy */
} deferred_t;

struct zf_source {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* the consumer queue, for io events */
    rd_kafka_queue_t *commits; /* results of zf_source_commit_start */
    int commits_pending;
    rd_kafka_resp_err_t commit_err;
    int pipe[2];             /* librdkafka writes [1] when the queue fills */
    zf_source_handlers_t h;
    void *ctx;
    const zf_config_t *cfg;
    rd_kafka_message_t *held; /* the record handed out last */
    zf_header_t *headers;     /* its headers */
    size_t headers_cap;
    /* Taken from the consumer queue and not handed out yet, in queue order:
     * taken[next..ntaken). librdkafka counts them as consumed (a paused
     * partition resumes after them), so each is handed out or, when its
     * partition is revoked, destroyed. */
    rd_kafka_message_t *taken[TAKE_MAX];
    size_t ntaken, next;
    int taking;              /* inside rd_kafka_consume_batch_queue */
    deferred_t *deferred;    /* rebalances served meanwhile, in order */
    size_t ndeferred, deferred_cap;
    int fatal;
    char fatal_msg[512];
    int64_t lag_at; /* next zkflow_consumer_lag refresh (ms) */
};

/* Keys zkflow sets itself; refusing them keeps the delivery promise. */
static const char *const managed_keys[] = {
    "enable.auto.offset.store", "rebalance_cb", "offset_commit_cb", NULL,
};

static void on_log(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
    (void)rk;
    zf_log_level_t l = zf_log_level_of_syslog(level);
    zf_log(l, "kafka", "%s: %s", fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
    zf_source_t *src = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
        if (!src->fatal) {
            src->fatal = 1;
            snprintf(src->fatal_msg, sizeof src->fatal_msg,
                     "Kafka client failed: %s: %s", rd_kafka_err2name(orig),
                     why);
        }
        zf_error("kafka", "%s", src->fatal_msg);
        return;
    }
    /* Transient: librdkafka retries by itself (brokers down, timeouts). */
    zf_warn("kafka", "%s: %s", rd_kafka_err2name(err), reason);
}

static zf_tp_t *to_tps(const rd_kafka_topic_partition_list_t *parts) {
    zf_tp_t *tps = calloc((size_t)parts->cnt + 1, sizeof *tps);
    if (!tps)
        return NULL;
    for (int i = 0; i < parts->cnt; i++) {
        tps[i].topic = parts->elems[i].topic;
        tps[i].partition = parts->elems[i].partition;
        tps[i].start = -1;
    }
    return tps;
}

static zf_series_t *lag_series(const char *topic, int32_t partition) {
    char part[16];
    snprintf(part, sizeof part, "%d", (int)partition);
    return zf_metric_series(zf_m.consumer_lag, topic, part);
}

/* zkflow_consumer_lag of every assigned partition: its high watermark, as
 * last seen in a fetch (no request is made), minus the fetch position. A
 * partition nothing was fetched from yet has no position and keeps its
 * last value, or none. */
static void update_lag(zf_source_t *src) {
    rd_kafka_topic_partition_list_t *a = NULL;
    if (!zf_m.consumer_lag || rd_kafka_assignment(src->rk, &a) != 0)
        return;
    rd_kafka_position(src->rk, a);
    for (int i = 0; i < a->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &a->elems[i];
        int64_t lo, hi;
        if (tp->offset < 0 ||
            rd_kafka_get_watermark_offsets(src->rk, tp->topic, tp->partition,
                                           &lo, &hi) != 0 ||
            hi < 0)
            continue;
        zf_series_set(lag_series(tp->topic, tp->partition),
                      (double)(hi > tp->offset ? hi - tp->offset : 0));
    }
    rd_kafka_topic_partition_list_destroy(a);
}

static void count_assigned(rd_kafka_t *rk) {
    rd_kafka_topic_partition_list_t *a = NULL;
    if (!zf_m.assigned || rd_kafka_assignment(rk, &a) != 0)
        return;
    zf_series_set(zf_metric_series(zf_m.assigned), (double)a->cnt);
    rd_kafka_topic_partition_list_destroy(a);
}

static void handle_rebalance(zf_source_t *src, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_t *rk = src->rk;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    zf_tp_t *tps = to_tps(parts);
    if (!tps) {
        zf_error("kafka", "out of memory in rebalance");
        abort();
    }
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        zf_info("kafka", "assigned %d partition(s)", parts->cnt);
        src->h.assigned(src->ctx, tps, (size_t)parts->cnt);
        for (int i = 0; i < parts->cnt; i++)
            if (tps[i].start >= 0)
                parts->elems[i].offset = tps[i].start;
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, parts);
    } else {
        if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            zf_error("kafka", "rebalance failed: %s", rd_kafka_err2str(err));
        int lost = rd_kafka_assignment_lost(rk);
        zf_info("kafka", "%s %d partition(s)", lost ? "lost" : "revoked",
                parts->cnt);
        src->h.revoked(src->ctx, tps, (size_t)parts->cnt, lost);
        for (int i = 0; i < parts->cnt; i++)
            zf_series_hide(lag_series(tps[i].topic, tps[i].partition));
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        zf_error("kafka", "changing the assignment failed: %s",
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (rerr) {
        zf_error("kafka", "changing the assignment failed: %s",
                 rd_kafka_err2str(rerr));
    }
    count_assigned(rk);
    free(tps);
}

/* The rebalance callback. Outside rd_kafka_consume_batch_queue (consumer
 * close) it is handled at once. Inside, the batch being taken may already
 * hold records of partitions about to be revoked, which must not be handed
 * out after the revoked handler ran: the rebalance waits until the call
 * returns (take), which first drops those records. Nothing is fetched for a
 * partition before its assign, and the group waits for the assign or
 * unassign, so holding it back that long changes nothing else. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
    zf_source_t *src = opaque;
    (void)rk;
    if (!src->taking) {
        handle_rebalance(src, err, parts);
        return;
    }
    if (src->ndeferred == src->deferred_cap) {
        size_t cap = src->deferred_cap ? 2 * src->deferred_cap : 4;
        deferred_t *v = realloc(src->deferred, cap * sizeof *v);
        if (!v) {
            zf_error("kafka", "out of memory in rebalance");
            abort();
        }
        src->deferred = v;
        src->deferred_cap = cap;
    }
    rd_kafka_topic_partition_list_t *copy =
        rd_kafka_topic_partition_list_copy(parts);
    src->deferred[src->ndeferred++] = (deferred_t){err, copy};
}

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                    char *why, size_t whylen) {
    return rd_kafka_conf_set(conf, key, value, why, whylen) == RD_KAFKA_CONF_OK
               ? 0
               : -1;
}

static int has_key(const zf_config_t *cfg, const char *key) {
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (strcmp(cfg->kafka[i].key, key) == 0)
            return 1;
    return 0;
}

/* Build the librdkafka configuration. Returns NULL with err set. */
static rd_kafka_conf_t *make_conf(const zf_config_t *cfg, int exit_on_eof,
                                  char *err, size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char why[512];
    for (size_t i = 0; i < cfg->nkafka; i++) {
        const zf_kv_t *kv = &cfg->kafka[i];
        for (size_t m = 0; managed_keys[m]; m++) {
            if (strcmp(kv->key, managed_keys[m]) == 0) {
                snprintf(err, errlen, "%s:%d: %s is managed by zkflow and "
                                      "cannot be set",
                         cfg->path, kv->line, kv->key);
                rd_kafka_conf_destroy(conf);
                return NULL;
            }
        }
        if (conf_set(conf, kv->key, kv->value, why, sizeof why) != 0) {
            /* librdkafka quotes a value it rejects: keep secrets out. */
            zf_config_redact(cfg, why, sizeof why);
            snprintf(err, errlen, "%s:%d: %s", cfg->path, kv->line, why);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    if ((!has_key(cfg, "auto.offset.reset") &&
         conf_set(conf, "auto.offset.reset", "earliest", why, sizeof why)) ||
        (!has_key(cfg, "partition.assignment.strategy") &&
         conf_set(conf, "partition.assignment.strategy", "cooperative-sticky",
                  why, sizeof why)) ||
        /* zkflow queues records itself (max_queued_records); librdkafka's
         * default prefetch of 64 MB on top of that only costs memory. The
         * cap counts the consumer queue all partitions share, and
         * librdkafka 2.0 refetches for a full queue only when its broker
         * thread next wakes (up to a second later), so a small cap starves
         * the engine. Bench (1M records of 200 bytes, 6 partitions, with
         * max_queued_records 10000), seconds and peak RSS: 8 MB 19.3 s /
         * 77-84 MB; 12 MB 15.3 s / 81 MB; 16 MB 13.3-15.3 s / 92-94 MB;
         * 64 MB 9.8-15.3 s / 117-121 MB. */
        (!has_key(cfg, "queued.max.messages.kbytes") &&
         conf_set(conf, "queued.max.messages.kbytes", "12288", why,
                  sizeof why)) ||
        conf_set(conf, "enable.auto.offset.store", "false", why, sizeof why) ||
        (exit_on_eof &&
         conf_set(conf, "enable.partition.eof", "true", why, sizeof why))) {
        snprintf(err, errlen, "%s: %s", cfg->path, why);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    return conf;
}

zf_err_t zf_source_check_config(const zf_config_t *cfg, char *err,
                                size_t errlen) {
    rd_kafka_conf_t *conf = make_conf(cfg, 0, err, errlen);
    if (!conf)
        return ZF_ECONFIG;
    rd_kafka_conf_destroy(conf);
    return ZF_OK;
}

zf_err_t zf_source_subscribe(zf_source_t *src, const zf_config_t *cfg,
                             char *err, size_t errlen) {
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; i < cfg->nscripts; i++)
        for (size_t t = 0; t < cfg->scripts[i].ntopics; t++)
            rd_kafka_topic_partition_list_add(topics, cfg->scripts[i].topic[t],
                                              RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr = rd_kafka_subscribe(src->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (rerr) {
        snprintf(err, errlen, "cannot subscribe: %s", rd_kafka_err2str(rerr));
        return ZF_EKAFKA;
    }
    return ZF_OK;
}

zf_err_t zf_source_new(const zf_config_t *cfg, int exit_on_eof,
                       const zf_source_handlers_t *h, void *ctx,
                       zf_source_t **out, char *err, size_t errlen) {
    *out = NULL;
    zf_source_t *src = calloc(1, sizeof *src);
    if (!src) {
        snprintf(err, errlen, "out of memory");
        return ZF_ENOMEM;
    }
    src->pipe[0] = src->pipe[1] = -1;
    src->h = *h;
    src->ctx = ctx;
    src->cfg = cfg;
    rd_kafka_conf_t *conf = make_conf(cfg, exit_on_eof, err, errlen);
    if (!conf) {
        free(src);
        return ZF_ECONFIG;
    }
    rd_kafka_conf_set_opaque(conf, src);
    char why[512];
    src->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!src->rk) {
        rd_kafka_conf_destroy(conf);
        zf_config_redact(cfg, why, sizeof why);
        snprintf(err, errlen, "%s: %s", cfg->path, why);
        free(src);
        return ZF_ECONFIG;
    }
    conf = NULL; /* now owned by src->rk */
    rd_kafka_poll_set_consumer(src->rk);
    src->queue = rd_kafka_queue_get_consumer(src->rk);
    src->commits = rd_kafka_queue_new(src->rk);
    if (pipe2(src->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        zf_source_close(src);
        return ZF_ESYS;
    }
    rd_kafka_queue_io_event_enable(src->queue, src->pipe[1], "1", 1);
    *out = src;
    return ZF_OK;
}

int zf_source_fd(const zf_source_t *src) { return src->pipe[0]; }

static void release_held(zf_source_t *src) {
    if (src->held) {
        rd_kafka_message_destroy(src->held);
        src->held = NULL;
    }
}

/* Destroy the taken records of the partitions in parts, keeping the order
 * of the others. */
static void drop_taken(zf_source_t *src,
                       const rd_kafka_topic_partition_list_t *parts) {
    size_t keep = src->next;
    for (size_t i = src->next; i < src->ntaken; i++) {
        rd_kafka_message_t *m = src->taken[i];
        int drop = 0;
        for (int j = 0; m->rkt && j < parts->cnt && !drop; j++)
            drop = parts->elems[j].partition == m->partition &&
                   strcmp(parts->elems[j].topic,
                          rd_kafka_topic_name(m->rkt)) == 0;
        if (drop)
            rd_kafka_message_destroy(m);
        else
            src->taken[keep++] = m;
    }
    src->ntaken = keep;
}

/* Take up to TAKE_MAX messages from the consumer queue into src->taken
 * (which is empty), then run the rebalances served meanwhile. Returns how
 * many messages librdkafka gave, before revoked partitions' are dropped. */
static size_t take(zf_source_t *src) {
    src->taking = 1;
    ssize_t n = rd_kafka_consume_batch_queue(src->queue, 0, src->taken,
                                             TAKE_MAX);
    src->taking = 0;
    src->next = 0;
    src->ntaken = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < src->ndeferred; i++) {
        deferred_t *d = &src->deferred[i];
        if (d->err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
            drop_taken(src, d->parts);
        handle_rebalance(src, d->err, d->parts);
        rd_kafka_topic_partition_list_destroy(d->parts);
    }
    src->ndeferred = 0;
    return n > 0 ? (size_t)n : 0;
}

/* Refill src->taken once it is used up. Returns 0 when the queue is empty;
 * the wake-up pipe is drained before the queue is found empty, so a record
 * arriving after that writes to it again. */
static int refill(zf_source_t *src) {
    int drained = 0;
    if (zf_m.consumer_lag && zf_now_ms() >= src->lag_at) {
        update_lag(src);
        src->lag_at = zf_now_ms() + LAG_EVERY_MS;
    }
    for (;;) {
        size_t given = take(src);
        if (src->ntaken > 0)
            return 1;
        if (given > 0)
            continue; /* all of revoked partitions: look again */
        if (drained)
            return 0;
        char buf[64];
        while (read(src->pipe[0], buf, sizeof buf) > 0)
            ;
        drained = 1;
    }
}

static int fill_headers(zf_source_t *src, rd_kafka_message_t *m,
                        zf_record_t *rec) {
    rd_kafka_headers_t *hdrs;
    rec->headers = NULL;
    rec->nheaders = 0;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    size_t n = rd_kafka_header_cnt(hdrs);
    if (n > src->headers_cap) {
        zf_header_t *v = realloc(src->headers, n * sizeof *v);
        if (!v)
            return -1;
        src->headers = v;
        src->headers_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        zf_header_t *hd = &src->headers[i];
        rd_kafka_header_get_all(hdrs, i, &hd->name, &hd->value, &hd->len);
    }
    rec->headers = src->headers;
    rec->nheaders = n;
    return 0;
}

zf_source_event_t zf_source_next(zf_source_t *src, zf_record_t *rec) {
    release_held(src);
    for (;;) {
        if (src->next == src->ntaken && !refill(src))
            return ZF_SOURCE_NONE;
        rd_kafka_message_t *m = src->taken[src->next++];
        memset(rec, 0, sizeof *rec);
        if (m->rkt) {
            rec->topic = rd_kafka_topic_name(m->rkt);
            rec->partition = m->partition;
            rec->offset = m->offset;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            src->held = m;
            return ZF_SOURCE_EOF;
        }
        if (m->err) {
            zf_log(m->err == RD_KAFKA_RESP_ERR__FATAL ? ZF_LOG_ERROR
                                                      : ZF_LOG_WARN,
                   "kafka", "%s%s%s: %s", rec->topic ? "topic " : "",
                   rec->topic ? rec->topic : "", rec->topic ? "" : "consumer",
                   rd_kafka_message_errstr(m));
            if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
                if (!src->fatal) {
                    src->fatal = 1;
                    snprintf(src->fatal_msg, sizeof src->fatal_msg,
                             "cannot consume: %s", rd_kafka_message_errstr(m));
                }
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        rd_kafka_timestamp_type_t tstype;
        rec->timestamp = rd_kafka_message_timestamp(m, &tstype);
        rec->key = m->key;
        rec->key_len = m->key_len;
        rec->value = m->payload;
        rec->value_len = m->len;
        if (fill_headers(src, m, rec) != 0) {
            zf_error("kafka", "out of memory reading headers");
            abort();
        }
        src->held = m;
        return ZF_SOURCE_RECORD;
    }
}

zf_err_t zf_source_status(const zf_source_t *src, char *err, size_t errlen) {
    if (!src->fatal)
        return ZF_OK;
    snprintf(err, errlen, "%s", src->fatal_msg);
    return ZF_EKAFKA;
}

static rd_kafka_topic_partition_list_t *one_tp(const char *topic,
                                               int32_t partition,
                                               int64_t offset) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    return l;
}

zf_err_t zf_source_store(zf_source_t *src, const char *topic,
                         int32_t partition, int64_t next_offset) {
    rd_kafka_topic_partition_list_t *l = one_tp(topic, partition, next_offset);
    rd_kafka_resp_err_t rerr = rd_kafka_offsets_store(src->rk, l);
    if (!rerr)
        rerr = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (rerr) {
        zf_warn("kafka", "cannot store offset %lld of %s [%d]: %s",
                (long long)next_offset, topic, partition,
                rd_kafka_err2str(rerr));
        return ZF_EKAFKA;
    }
    return ZF_OK;
}

void zf_source_pause(zf_source_t *src, const char *topic, int32_t partition,
                     int pause) {
    rd_kafka_topic_partition_list_t *l =
        one_tp(topic, partition, RD_KAFKA_OFFSET_INVALID);
    rd_kafka_resp_err_t rerr = pause ? rd_kafka_pause_partitions(src->rk, l)
                                     : rd_kafka_resume_partitions(src->rk, l);
    if (rerr)
        zf_warn("kafka", "cannot %s %s [%d]: %s", pause ? "pause" : "resume",
                topic, partition, rd_kafka_err2str(rerr));
    rd_kafka_topic_partition_list_destroy(l);
}

int zf_source_behind(zf_source_t *src, const char *topic, int32_t partition,
                     int64_t next_offset) {
    int64_t lo, hi;
    return rd_kafka_get_watermark_offsets(src->rk, topic, partition, &lo,
                                          &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
           hi > next_offset;
}

void zf_source_fetch_now(zf_source_t *src, const char *topic,
                         int32_t partition, int64_t next_offset) {
    /* Asynchronous (no timeout): the seek takes effect in the broker
     * thread, and records of the old fetch still on their way are dropped
     * by their version, or (at most) handed out in order from next_offset
     * on, where the caller ignores what it already took. */
    rd_kafka_topic_partition_list_t *l = one_tp(topic, partition, next_offset);
    rd_kafka_error_t *error = rd_kafka_seek_partitions(src->rk, l, 0);
    rd_kafka_topic_partition_list_destroy(l);
    if (error) {
        zf_debug("kafka", "cannot seek %s [%d]: %s", topic, (int)partition,
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

int64_t zf_source_end_offset(zf_source_t *src, const char *topic,
                             int32_t partition) {
    int64_t lo, hi;
    rd_kafka_resp_err_t rerr = rd_kafka_query_watermark_offsets(
        src->rk, topic, partition, &lo, &hi, 10000);
    if (rerr) {
        zf_warn("kafka", "cannot read the end of %s [%d]: %s", topic,
                partition, rd_kafka_err2str(rerr));
        return -1;
    }
    return hi;
}

zf_err_t zf_source_commit(zf_source_t *src, char *err, size_t errlen) {
    rd_kafka_resp_err_t rerr = rd_kafka_commit(src->rk, NULL, 0);
    if (rerr && rerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        snprintf(err, errlen, "offset commit failed: %s",
                 rd_kafka_err2str(rerr));
        return ZF_EKAFKA;
    }
    return ZF_OK;
}

void zf_source_commit_start(zf_source_t *src) {
    rd_kafka_resp_err_t rerr =
        rd_kafka_commit_queue(src->rk, NULL, src->commits, NULL, NULL);
    if (rerr) {
        src->commit_err = rerr; /* refused at once: no result will follow */
        return;
    }
    src->commits_pending++;
}

int zf_source_commit_result(zf_source_t *src, char *err, size_t errlen) {
    rd_kafka_event_t *ev;
    while (src->commits_pending > 0 &&
           (ev = rd_kafka_queue_poll(src->commits, 0))) {
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
            src->commits_pending--;
            src->commit_err = rd_kafka_event_error(ev);
        }
        rd_kafka_event_destroy(ev);
    }
    if (src->commits_pending > 0)
        return -1;
    if (src->commit_err && src->commit_err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        snprintf(err, errlen, "offset commit failed: %s",
                 rd_kafka_err2str(src->commit_err));
        return ZF_EKAFKA;
    }
    return ZF_OK;
}

void zf_source_close(zf_source_t *src) {
    if (!src)
        return;
    release_held(src);
    while (src->next < src->ntaken)
        rd_kafka_message_destroy(src->taken[src->next++]);
    if (src->rk) {
        rd_kafka_consumer_close(src->rk);
        if (src->queue)
            rd_kafka_queue_destroy(src->queue);
        if (src->commits)
            rd_kafka_queue_destroy(src->commits);
        rd_kafka_destroy(src->rk);
    }
    for (int i = 0; i < 2; i++)
        if (src->pipe[i] >= 0)
            close(src->pipe[i]);
    free(src->headers);
    free(src->deferred);
    free(src);
}

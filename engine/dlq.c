#include "zkflow/dlq.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zkflow/log.h"

struct zf_dlq {
    rd_kafka_t *rk;
    rd_kafka_queue_t *main; /* delivery reports land here */
    int pipe[2];            /* librdkafka writes [1] when `main` fills */
    zf_dlq_done_fn *done;   /* NULL once outcomes are no longer wanted */
    void *ctx;
    size_t inflight;
};

/* What travels with a message to its delivery report: the source record's
 * position. */
typedef struct ticket {
    int32_t partition;
    int64_t offset;
    char topic[];
} ticket_t;

static const char *const LOG = "dlq";

static void on_log(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
    (void)rk;
    zf_log_level_t l = zf_log_level_of_syslog(level);
    zf_log(l, "kafka", "dlq producer: %s: %s", fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
    (void)rk;
    (void)opaque;
    /* Transient ones are retried by librdkafka; a message that cannot be
     * delivered for good comes back in its delivery report. */
    zf_warn(LOG, "producer: %s: %s", rd_kafka_err2name(err), reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
    (void)rk;
    zf_dlq_t *d = opaque;
    ticket_t *t = m->_private;
    d->inflight--;
    if (d->done) {
        char why[512] = "";
        if (m->err)
            snprintf(why, sizeof why, "%s: %s", rd_kafka_err2name(m->err),
                     rd_kafka_err2str(m->err));
        d->done(d->ctx, t->topic, t->partition, t->offset,
                m->err ? ZF_EKAFKA : ZF_OK, why);
    }
    free(t);
}

/* Names of the properties librdkafka marks consumer-only ("C"), from its own
 * property table, as one string "\nname\nname\n...". NULL when out of
 * memory (then nothing is left out). */
static char *consumer_only_keys(void) {
    char *table = NULL, *names = NULL;
    size_t tlen = 0, nlen = 0;
    FILE *t = open_memstream(&table, &tlen);
    if (!t)
        return NULL;
    rd_kafka_conf_properties_show(t);
    fclose(t);
    FILE *n = open_memstream(&names, &nlen);
    if (!n) {
        free(table);
        return NULL;
    }
    fputc('\n', n);
    /* Rows look like "name   |  C  | range | default | ...". */
    char *save = NULL;
    for (char *line = strtok_r(table, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *bar = strchr(line, '|');
        if (!bar)
            continue;
        char scope[8] = "";
        if (sscanf(bar + 1, " %7s", scope) != 1 || strcmp(scope, "C") != 0)
            continue;
        size_t len = strcspn(line, " |");
        fprintf(n, "%.*s\n", (int)len, line);
    }
    fclose(n);
    free(table);
    return names;
}

static int listed(const char *names, const char *key) {
    char pat[512];
    snprintf(pat, sizeof pat, "\n%s\n", key);
    return names && strstr(names, pat) != NULL;
}

static int has_key(const zf_config_t *cfg, const char *key) {
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (strcmp(cfg->kafka[i].key, key) == 0)
            return 1;
    return 0;
}

zf_err_t zf_dlq_new(const zf_config_t *cfg, zf_dlq_done_fn *done, void *ctx,
                    zf_dlq_t **out, char *err, size_t errlen) {
    *out = NULL;
    zf_dlq_t *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return ZF_ENOMEM;
    }
    d->pipe[0] = d->pipe[1] = -1;
    d->done = done;
    d->ctx = ctx;
    zf_err_t rc = ZF_EKAFKA;
    char why[512];
    char *skip = consumer_only_keys();
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; i < cfg->nkafka; i++) {
        const zf_kv_t *kv = &cfg->kafka[i];
        if (listed(skip, kv->key))
            continue; /* consumer-only: the producer would warn about it */
        if (rd_kafka_conf_set(conf, kv->key, kv->value, why, sizeof why) !=
            RD_KAFKA_CONF_OK) {
            zf_config_redact(cfg, why, sizeof why);
            snprintf(err, errlen, "%s:%d: %s", cfg->path, kv->line, why);
            rc = ZF_ECONFIG;
            goto err;
        }
    }
    /* A partition waits for its dead letter's acknowledgement before it
     * sends anything after it: do not hold messages back for batching. */
    if (!has_key(cfg, "linger.ms") && !has_key(cfg, "queue.buffering.max.ms") &&
        rd_kafka_conf_set(conf, "linger.ms", "0", why, sizeof why) !=
            RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "%s: %s", cfg->path, why);
        goto err;
    }
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    if (!(d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why))) {
        snprintf(err, errlen, "cannot create the dead-letter producer: %s",
                 why);
        goto err;
    }
    conf = NULL; /* now owned by the producer */
    d->main = rd_kafka_queue_get_main(d->rk);
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        rc = ZF_ESYS;
        goto err;
    }
    rd_kafka_queue_io_event_enable(d->main, d->pipe[1], "1", 1);
    free(skip);
    *out = d;
    return ZF_OK;
err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(skip);
    zf_dlq_destroy(d, 0);
    return rc;
}

/* Add a header whose value is a string. */
static rd_kafka_resp_err_t add(rd_kafka_headers_t *h, const char *name,
                               const char *value) {
    return rd_kafka_header_add(h, name, -1, value, -1);
}

zf_err_t zf_dlq_send(zf_dlq_t *d, const char *topic, const zf_record_t *rec,
                     const zf_dlq_failure_t *f, char *err, size_t errlen) {
    size_t tlen = strlen(rec->topic) + 1;
    ticket_t *t = malloc(sizeof *t + tlen);
    rd_kafka_headers_t *h = rd_kafka_headers_new(rec->nheaders + 8);
    if (!t || !h) {
        free(t);
        if (h)
            rd_kafka_headers_destroy(h);
        snprintf(err, errlen, "out of memory");
        return ZF_ENOMEM;
    }
    t->partition = rec->partition;
    t->offset = rec->offset;
    memcpy(t->topic, rec->topic, tlen);

    /* The record's own headers first, in order (duplicates kept), then
     * what zkflow says about the failure. */
    for (size_t i = 0; i < rec->nheaders; i++)
        rd_kafka_header_add(h, rec->headers[i].name, -1,
                            rec->headers[i].value,
                            (ssize_t)rec->headers[i].len);
    char partition[16], offset[24];
    snprintf(partition, sizeof partition, "%" PRId32, rec->partition);
    snprintf(offset, sizeof offset, "%" PRId64, rec->offset);
    add(h, "zkflow.stage", f->stage);
    add(h, "zkflow.error", f->error);
    if (f->zk_error)
        add(h, "zkflow.zk_error", f->zk_error);
    add(h, "zkflow.script", f->script);
    add(h, "zkflow.script_version", f->script_version);
    add(h, "zkflow.topic", rec->topic);
    add(h, "zkflow.partition", partition);
    add(h, "zkflow.offset", offset);

    rd_kafka_resp_err_t rerr = rd_kafka_producev(
        d->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY((void *)rec->key, rec->key_len),
        RD_KAFKA_V_VALUE((void *)rec->value, rec->value_len),
        RD_KAFKA_V_TIMESTAMP(rec->timestamp >= 0 ? rec->timestamp : 0),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
    if (rerr) {
        /* The headers stay ours when the produce is refused. */
        rd_kafka_headers_destroy(h);
        free(t);
        snprintf(err, errlen, "producing to %s: %s: %s", topic,
                 rd_kafka_err2name(rerr), rd_kafka_err2str(rerr));
        return ZF_EKAFKA;
    }
    d->inflight++;
    return ZF_OK;
}

zf_err_t zf_dlq_check_topic(zf_dlq_t *d, const char *topic, int timeout_ms,
                            char *err, size_t errlen) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(d->rk, topic, NULL);
    if (!rkt) {
        snprintf(err, errlen, "dlq_topic %s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return ZF_EKAFKA;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rerr = rd_kafka_metadata(d->rk, 0, rkt, &md,
                                                 timeout_ms);
    if (!rerr && md->topic_cnt == 1)
        rerr = md->topics[0].err;
    if (rerr)
        snprintf(err, errlen, "dlq_topic %s: %s", topic,
                 rd_kafka_err2str(rerr));
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rerr ? ZF_EKAFKA : ZF_OK;
}

int zf_dlq_fd(const zf_dlq_t *d) { return d ? d->pipe[0] : -1; }

void zf_dlq_process(zf_dlq_t *d) {
    if (!d)
        return;
    char buf[64];
    /* Drain the wake-up pipe first: a report queued after this point
     * writes it again. */
    while (read(d->pipe[0], buf, sizeof buf) > 0)
        ;
    rd_kafka_poll(d->rk, 0);
}

size_t zf_dlq_inflight(const zf_dlq_t *d) { return d ? d->inflight : 0; }

void zf_dlq_destroy(zf_dlq_t *d, int flush_ms) {
    if (!d)
        return;
    d->done = NULL;
    if (d->rk) {
        if (flush_ms > 0 && d->inflight > 0 &&
            rd_kafka_flush(d->rk, flush_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
            zf_warn(LOG, "%zu dead letter(s) still unsent after %d ms; they "
                         "were not committed and will be sent again",
                    d->inflight, flush_ms);
        /* Unsent messages come back as reports: free their tickets. */
        rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(d->rk, 0);
    }
    if (d->main) {
        rd_kafka_queue_io_event_enable(d->main, -1, NULL, 0);
        rd_kafka_queue_destroy(d->main);
    }
    if (d->rk)
        rd_kafka_destroy(d->rk);
    for (int i = 0; i < 2; i++)
        if (d->pipe[i] >= 0)
            close(d->pipe[i]);
    free(d);
}

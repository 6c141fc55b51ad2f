#include "zkflow/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 8
#define MAX_BOUNDS 32

/* SECONDS: a counter kept in nanoseconds, rendered in seconds. */
typedef enum kind { COUNTER, GAUGE, HISTOGRAM, SECONDS } kind_t;

struct zf_series {
    _Atomic(zf_series_t *) next;
    zf_metric_t *f;
    char **values;              /* one per label name */
    char *labels;               /* rendered: a="x",b="y" ("" when none) */
    atomic_uint_least64_t value; /* counter: count; gauge: double's bits */
    atomic_int hidden;
    atomic_uint_least64_t *buckets; /* histogram: per bucket, not cumulative */
    atomic_uint_least64_t sum;  /* histogram: double's bits */
};

struct zf_metric {
    _Atomic(zf_metric_t *) next;
    zf_metrics_t *reg;
    kind_t kind;
    char *name, *help;
    char **labels;
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    _Atomic(zf_series_t *) head;
    zf_series_t *tail; /* under reg->lock */
};

struct zf_metrics {
    pthread_mutex_t lock; /* creation only: readers never take it */
    _Atomic(zf_metric_t *) head;
    zf_metric_t *tail;    /* under lock */
};

/* ---------------------------------------------------------------- values */

static uint64_t bits_of(double v) {
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double double_of(uint64_t b) {
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* Atomically add v to a double stored as bits. */
static void add_double(atomic_uint_least64_t *a, double v) {
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(
        a, &old, bits_of(double_of(old) + v), memory_order_relaxed,
        memory_order_relaxed))
        ;
}

static void show(zf_series_t *s) {
    if (atomic_load_explicit(&s->hidden, memory_order_relaxed))
        atomic_store_explicit(&s->hidden, 0, memory_order_relaxed);
}

void zf_series_inc(zf_series_t *s, uint64_t n) {
    if (!s || (s->f->kind != COUNTER && s->f->kind != SECONDS))
        return;
    atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
    show(s);
}

void zf_series_set(zf_series_t *s, double v) {
    if (!s || s->f->kind != GAUGE)
        return;
    atomic_store_explicit(&s->value, bits_of(v), memory_order_relaxed);
    show(s);
}

void zf_series_add(zf_series_t *s, double v) {
    if (!s || s->f->kind != GAUGE)
        return;
    add_double(&s->value, v);
    show(s);
}

void zf_series_observe(zf_series_t *s, double v) {
    if (!s || s->f->kind != HISTOGRAM)
        return;
    size_t i = 0;
    while (i < s->f->nbounds && v > s->f->bounds[i])
        i++; /* le: a bucket counts values up to and including its bound */
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    add_double(&s->sum, v);
    show(s);
}

void zf_series_hide(zf_series_t *s) {
    if (s)
        atomic_store_explicit(&s->hidden, 1, memory_order_relaxed);
}

double zf_series_value(const zf_series_t *s) {
    if (!s)
        return 0;
    uint64_t v;
    switch (s->f->kind) {
    case COUNTER:
        return (double)atomic_load_explicit(&s->value, memory_order_relaxed);
    case SECONDS:
        return (double)atomic_load_explicit(&s->value, memory_order_relaxed) /
               1e9;
    case GAUGE:
        return double_of(atomic_load_explicit(&s->value, memory_order_relaxed));
    case HISTOGRAM:
        v = 0;
        for (size_t i = 0; i <= s->f->nbounds; i++)
            v += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        return (double)v;
    }
    return 0;
}

/* ------------------------------------------------------------- registry */

zf_metrics_t *zf_metrics_new(void) {
    zf_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    atomic_init(&m->head, NULL);
    return m;
}

static void free_strings(char **v, size_t n) {
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void series_free(zf_series_t *s) {
    if (!s)
        return;
    free_strings(s->values, s->f->nlabels);
    free(s->labels);
    free((void *)s->buckets);
    free(s);
}

static void metric_free(zf_metric_t *f) {
    if (!f)
        return;
    zf_series_t *s = atomic_load(&f->head);
    while (s) {
        zf_series_t *next = atomic_load(&s->next);
        series_free(s);
        s = next;
    }
    free(f->name);
    free(f->help);
    free_strings(f->labels, f->nlabels);
    free(f->bounds);
    free(f);
}

void zf_metrics_destroy(zf_metrics_t *m) {
    if (!m)
        return;
    zf_metric_t *f = atomic_load(&m->head);
    while (f) {
        zf_metric_t *next = atomic_load(&f->next);
        metric_free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int valid_name(const char *s, int colons) {
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || (colons && c == ':')))
            return 0;
    }
    return 1;
}

/* Split "a,b" into label names. Returns 0, or -1 (invalid or no memory). */
static int split_labels(zf_metric_t *f, const char *labels) {
    if (!labels || !*labels)
        return 0;
    f->labels = calloc(MAX_LABELS, sizeof *f->labels);
    if (!f->labels)
        return -1;
    const char *p = labels;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (f->nlabels == MAX_LABELS ||
            !(f->labels[f->nlabels] = strndup(p, n)))
            return -1;
        const char *l = f->labels[f->nlabels++];
        if (!valid_name(l, 0) || strncmp(l, "__", 2) == 0 ||
            (f->kind == HISTOGRAM && strcmp(l, "le") == 0))
            return -1;
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

static zf_metric_t *declare(zf_metrics_t *m, kind_t kind, const char *name,
                            const char *help, const char *labels,
                            const double *bounds, size_t nbounds) {
    if (!m || !valid_name(name, 1) || nbounds > MAX_BOUNDS)
        return NULL;
    for (size_t i = 1; i < nbounds; i++)
        if (!(bounds[i] > bounds[i - 1]))
            return NULL;
    pthread_mutex_lock(&m->lock);
    zf_metric_t *f = atomic_load_explicit(&m->head, memory_order_acquire);
    for (; f; f = atomic_load_explicit(&f->next, memory_order_acquire))
        if (strcmp(f->name, name) == 0)
            goto out;
    f = calloc(1, sizeof *f);
    if (!f)
        goto out;
    f->reg = m;
    f->kind = kind;
    atomic_init(&f->next, NULL);
    atomic_init(&f->head, NULL);
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->nbounds = nbounds;
    f->bounds = malloc((nbounds ? nbounds : 1) * sizeof *f->bounds);
    if (!f->name || !f->help || !f->bounds || split_labels(f, labels) != 0) {
        metric_free(f);
        f = NULL;
        goto out;
    }
    if (nbounds)
        memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
    /* Publish only once complete: readers may be walking the list. */
    if (m->tail)
        atomic_store_explicit(&m->tail->next, f, memory_order_release);
    else
        atomic_store_explicit(&m->head, f, memory_order_release);
    m->tail = f;
out:
    pthread_mutex_unlock(&m->lock);
    return f;
}

zf_metric_t *zf_metrics_counter(zf_metrics_t *m, const char *name,
                                const char *help, const char *labels) {
    return declare(m, COUNTER, name, help, labels, NULL, 0);
}

zf_metric_t *zf_metrics_gauge(zf_metrics_t *m, const char *name,
                              const char *help, const char *labels) {
    return declare(m, GAUGE, name, help, labels, NULL, 0);
}

zf_metric_t *zf_metrics_seconds(zf_metrics_t *m, const char *name,
                                const char *help, const char *labels) {
    return declare(m, SECONDS, name, help, labels, NULL, 0);
}

zf_metric_t *zf_metrics_histogram(zf_metrics_t *m, const char *name,
                                  const char *help, const char *labels,
                                  const double *bounds, size_t nbounds) {
    return declare(m, HISTOGRAM, name, help, labels, bounds, nbounds);
}

/* ----------------------------------------------------------------- text */

typedef struct buf {
    char *s;
    size_t n, cap;
    int oom;
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + n + 1 > cap)
            cap *= 2;
        char *v = realloc(b->s, cap);
        if (!v) {
            b->oom = 1;
            return;
        }
        b->s = v;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }

/* For numbers only: what it prints is cut at 127 bytes. */
static void printf_(buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void printf_(buf_t *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= 0)
        put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Escape backslash and newline (HELP text), and '"' too (label values). */
static void put_escaped(buf_t *b, const char *s, int quote) {
    for (; *s; s++) {
        if (*s == '\\')
            puts_(b, "\\\\");
        else if (*s == '\n')
            puts_(b, "\\n");
        else if (quote && *s == '"')
            puts_(b, "\\\"");
        else
            put(b, s, 1);
    }
}

/* The shortest of %.15g/%.17g that reads back as v; Prometheus spellings
 * for the special values. */
static void put_double(buf_t *b, double v) {
    if (isnan(v)) {
        puts_(b, "NaN");
        return;
    }
    if (isinf(v)) {
        puts_(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.15g", v);
    if (strtod(tmp, NULL) != v)
        snprintf(tmp, sizeof tmp, "%.17g", v);
    puts_(b, tmp);
}

/* name{labels[,extra]} or name when there are no labels at all. */
static void put_name(buf_t *b, const zf_metric_t *f, const char *suffix,
                     const zf_series_t *s, const char *extra) {
    puts_(b, f->name);
    puts_(b, suffix);
    int any = s->labels[0] != '\0';
    if (!any && !extra) {
        puts_(b, " ");
        return;
    }
    puts_(b, "{");
    puts_(b, s->labels);
    if (extra) {
        if (any)
            puts_(b, ",");
        puts_(b, extra);
    }
    puts_(b, "} ");
}

static void render_series(buf_t *b, const zf_metric_t *f,
                          const zf_series_t *s) {
    if (f->kind == COUNTER) {
        put_name(b, f, "", s, NULL);
        printf_(b, "%" PRIu64 "\n",
                (uint64_t)atomic_load_explicit(&s->value, memory_order_relaxed));
        return;
    }
    if (f->kind == GAUGE || f->kind == SECONDS) {
        uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
        put_name(b, f, "", s, NULL);
        put_double(b, f->kind == GAUGE ? double_of(v) : (double)v / 1e9);
        puts_(b, "\n");
        return;
    }
    uint64_t total = 0;
    for (size_t i = 0; i <= f->nbounds; i++) {
        total += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        buf_t le = {0};
        puts_(&le, "le=\"");
        if (i < f->nbounds)
            put_double(&le, f->bounds[i]);
        else
            puts_(&le, "+Inf");
        puts_(&le, "\"");
        if (le.oom) {
            b->oom = 1;
            return;
        }
        put_name(b, f, "_bucket", s, le.s);
        free(le.s);
        printf_(b, "%" PRIu64 "\n", total);
    }
    put_name(b, f, "_sum", s, NULL);
    put_double(b, double_of(atomic_load_explicit(&s->sum,
                                                 memory_order_relaxed)));
    puts_(b, "\n");
    put_name(b, f, "_count", s, NULL);
    printf_(b, "%" PRIu64 "\n", total);
}

char *zf_metrics_render(zf_metrics_t *m, size_t *len) {
    if (!m)
        return NULL;
    static const char *const types[] = {"counter", "gauge", "histogram",
                                        "counter"};
    buf_t b = {0};
    puts_(&b, ""); /* an empty registry renders as "" */
    for (zf_metric_t *f = atomic_load_explicit(&m->head, memory_order_acquire);
         f; f = atomic_load_explicit(&f->next, memory_order_acquire)) {
        puts_(&b, "# HELP ");
        puts_(&b, f->name);
        puts_(&b, " ");
        put_escaped(&b, f->help, 0);
        puts_(&b, "\n# TYPE ");
        puts_(&b, f->name);
        puts_(&b, " ");
        puts_(&b, types[f->kind]);
        puts_(&b, "\n");
        for (zf_series_t *s = atomic_load_explicit(&f->head,
                                                   memory_order_acquire);
             s; s = atomic_load_explicit(&s->next, memory_order_acquire))
            if (!atomic_load_explicit(&s->hidden, memory_order_relaxed))
                render_series(&b, f, s);
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    if (len)
        *len = b.n;
    return b.s;
}

/* --------------------------------------------------------------- series */

static zf_series_t *find(zf_metric_t *f, const char *const *values) {
    for (zf_series_t *s = atomic_load_explicit(&f->head, memory_order_acquire);
         s; s = atomic_load_explicit(&s->next, memory_order_acquire)) {
        size_t i = 0;
        while (i < f->nlabels &&
               strcmp(s->values[i], values[i] ? values[i] : "") == 0)
            i++;
        if (i == f->nlabels)
            return s;
    }
    return NULL;
}

static zf_series_t *series_new(zf_metric_t *f, const char *const *values) {
    zf_series_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->f = f;
    atomic_init(&s->next, NULL);
    atomic_init(&s->value, f->kind == GAUGE ? bits_of(0.0) : 0);
    atomic_init(&s->hidden, 0);
    atomic_init(&s->sum, bits_of(0.0));
    buf_t b = {0};
    puts_(&b, "");
    s->values = calloc(f->nlabels ? f->nlabels : 1, sizeof *s->values);
    if (!s->values)
        goto err;
    for (size_t i = 0; i < f->nlabels; i++) {
        if (!(s->values[i] = strdup(values[i] ? values[i] : "")))
            goto err;
        puts_(&b, i ? "," : "");
        puts_(&b, f->labels[i]);
        puts_(&b, "=\"");
        put_escaped(&b, s->values[i], 1);
        puts_(&b, "\"");
    }
    if (b.oom)
        goto err;
    s->labels = b.s;
    b.s = NULL;
    if (f->kind == HISTOGRAM) {
        s->buckets = calloc(f->nbounds + 1, sizeof *s->buckets);
        if (!s->buckets)
            goto err;
        for (size_t i = 0; i <= f->nbounds; i++)
            atomic_init(&s->buckets[i], 0);
    }
    return s;
err:
    free(b.s);
    series_free(s);
    return NULL;
}

zf_series_t *zf_metric_seriesv(zf_metric_t *f, const char *const *values) {
    if (!f)
        return NULL;
    zf_series_t *s = find(f, values);
    if (s)
        return s;
    zf_metrics_t *m = f->reg;
    pthread_mutex_lock(&m->lock);
    /* Another thread may have created it since the lock-free look. */
    if (!(s = find(f, values)) && (s = series_new(f, values))) {
        if (f->tail)
            atomic_store_explicit(&f->tail->next, s, memory_order_release);
        else
            atomic_store_explicit(&f->head, s, memory_order_release);
        f->tail = s;
    }
    pthread_mutex_unlock(&m->lock);
    return s;
}

zf_series_t *zf_metric_series(zf_metric_t *f, ...) {
    if (!f)
        return NULL;
    const char *values[MAX_LABELS];
    va_list ap;
    va_start(ap, f);
    for (size_t i = 0; i < f->nlabels; i++)
        values[i] = va_arg(ap, const char *);
    va_end(ap);
    return zf_metric_seriesv(f, values);
}

void zf_metric_inc(zf_metric_t *f, uint64_t n, ...) {
    if (!f || !n)
        return;
    const char *values[MAX_LABELS];
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < f->nlabels; i++)
        values[i] = va_arg(ap, const char *);
    va_end(ap);
    zf_series_inc(zf_metric_seriesv(f, values), n);
}

/* ------------------------------------------------------ zkflow's metrics */

void zf_metrics_zkflow_script(const char *script, const char *version,
                              const char *old) {
    static const char *const results[] = {"applied", "skipped", "dlq",
                                          "error"};
    if (!zf_m.reg)
        return;
    for (size_t k = 0; k < 4; k++)
        zf_metric_series(zf_m.records, script, results[k]);
    zf_metric_series(zf_m.script_reloads, script, "ok");
    zf_metric_series(zf_m.script_reloads, script, "rejected");
    if (old)
        zf_series_hide(zf_metric_series(zf_m.script_info, script, old));
    zf_series_set(zf_metric_series(zf_m.script_info, script, version), 1);
}

zf_zkflow_metrics_t zf_m;

int zf_metrics_zkflow_init(void) {
    static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200,
                                          500, 1000, 2000, 5000, 10000};
    static const double write_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                          0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                          2.5, 5, 10, 30};
    zf_metrics_zkflow_free();
    zf_metrics_t *m = zf_metrics_new();
    zf_zkflow_metrics_t z = {
        .reg = m,
        .records = zf_metrics_counter(
            m, "zkflow_records_total",
            "Records taken from Kafka, by script and outcome (applied, "
            "skipped, dlq, error).",
            "script,result"),
        .zk_ops = zf_metrics_counter(
            m, "zkflow_zk_ops_total",
            "Ops returned by scripts, by op and final ZooKeeper outcome "
            "(applied, refused, session_lost).",
            "op,result"),
        .zk_requests = zf_metrics_counter(
            m, "zkflow_zk_requests_total",
            "ZooKeeper client requests completed, by request (multi, exists, "
            "get_children, create) and result (ok or the error's name).",
            "request,result"),
        .zk_batch_ops = zf_metrics_histogram(
            m, "zkflow_zk_batch_ops", "ZooKeeper ops per multi sent.", "",
            batch_bounds, sizeof batch_bounds / sizeof *batch_bounds),
        .zk_write_seconds = zf_metrics_histogram(
            m, "zkflow_zk_write_seconds",
            "Time from handing a batch to ZooKeeper until its outcome is "
            "known (probes, rewrites and retries included).",
            "", write_bounds, sizeof write_bounds / sizeof *write_bounds),
        .inflight_ops = zf_metrics_gauge(
            m, "zkflow_inflight_ops",
            "Ops handed to ZooKeeper whose outcome is not known yet.", ""),
        .consumer_lag = zf_metrics_gauge(
            m, "zkflow_consumer_lag",
            "Records in an assigned partition after zkflow's fetch position "
            "(high watermark - position), refreshed about once a second.",
            "topic,partition"),
        .assigned = zf_metrics_gauge(
            m, "zkflow_assigned_partitions",
            "Kafka partitions assigned to this member.", ""),
        .script_reloads = zf_metrics_counter(
            m, "zkflow_script_reloads_total",
            "Script reloads, by script and result (ok, rejected).",
            "script,result"),
        .script_info = zf_metrics_gauge(
            m, "zkflow_script_info",
            "1 for the version of each script now running.",
            "script,version"),
        .zk_session_state = zf_metrics_gauge(
            m, "zkflow_zk_session_state",
            "ZooKeeper session: 1 connected, 0 connecting or disconnected, "
            "-1 expired or authentication failed.",
            ""),
        .engine_seconds = zf_metrics_seconds(
            m, "zkflow_engine_seconds_total",
            "Time of the engine thread, by stage: kafka (taking records), "
            "transform (scripts), zookeeper (planning, sending, "
            "completions), wait_zookeeper (records wait for a multi in "
            "flight), wait_kafka (nothing to send: waiting for records), "
            "held (a full partition held back), other.",
            "stage"),
        .zk_requests_inflight = zf_metrics_gauge(
            m, "zkflow_zk_requests_inflight",
            "ZooKeeper writes (multis, or single creates) whose outcome is "
            "not known yet, sampled by the engine.",
            ""),
        .queued = zf_metrics_gauge(
            m, "zkflow_queued_records",
            "Records of an assigned partition taken and not yet done "
            "(queued, in flight, or being dead-lettered), sampled.",
            "topic,partition"),
    };
    if (!z.records || !z.zk_ops || !z.zk_requests || !z.zk_batch_ops ||
        !z.zk_write_seconds || !z.inflight_ops || !z.consumer_lag ||
        !z.assigned || !z.script_reloads || !z.script_info ||
        !z.zk_session_state || !z.engine_seconds ||
        !z.zk_requests_inflight || !z.queued) {
        zf_metrics_destroy(m);
        return -1;
    }
    /* Series without labels show from the start, at 0. */
    zf_metric_series(z.zk_batch_ops);
    zf_metric_series(z.zk_write_seconds);
    zf_metric_series(z.inflight_ops);
    zf_metric_series(z.assigned);
    zf_metric_series(z.zk_session_state);
    zf_metric_series(z.zk_requests_inflight);
    zf_m = z;
    return 0;
}

int zf_metrics_zkflow_ready(void *ctx, char *why, size_t whylen) {
    (void)ctx;
    double zk = zf_series_value(zf_metric_series(zf_m.zk_session_state));
    if (zk != ZF_ZK_STATE_CONNECTED) {
        snprintf(why, whylen, "ZooKeeper session %s",
                 zk == ZF_ZK_STATE_EXPIRED ? "expired or refused"
                                           : "not connected");
        return 0;
    }
    if (zf_series_value(zf_metric_series(zf_m.assigned)) < 1) {
        snprintf(why, whylen, "no Kafka partition assigned");
        return 0;
    }
    return 1;
}

void zf_metrics_zkflow_free(void) {
    zf_metrics_destroy(zf_m.reg);
    memset(&zf_m, 0, sizeof zf_m);
}

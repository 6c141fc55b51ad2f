/* Metrics: a small registry of counters, gauges and histograms with labels,
 * rendered in the Prometheus text exposition format (version 0.0.4).
 *
 * A metric (a family: name, help, type, label names) holds series, one per
 * set of label values. Callers keep series pointers or look them up by label
 * values; every function accepts a NULL metric or series and then does
 * nothing, so code can count unconditionally and metrics cost nothing when
 * they are off (the zkflow set below is all NULL until initialised).
 *
 * Threads: the engine loop updates, the HTTP thread renders, and neither
 * ever waits for the other. Values are updated with atomic operations, no
 * lock. Metrics and series are only ever appended to their lists, never
 * removed before zf_metrics_destroy, and published with a release store, so
 * lookups and rendering walk the lists without a lock; only creating a
 * metric or a series takes the registry's mutex. A histogram is rendered
 * from one read of each bucket: its +Inf bucket and _count are the same
 * number, while _sum may already include an observation whose bucket is
 * not read yet (off by at most the observations made during the render). */
#ifndef ZKFLOW_METRICS_H
#define ZKFLOW_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct zf_metrics zf_metrics_t; /* a registry */
typedef struct zf_metric zf_metric_t;   /* a family */
typedef struct zf_series zf_series_t;   /* one label set of a family */

/* A new, empty registry, or NULL when out of memory. */
zf_metrics_t *zf_metrics_new(void);

/* Free the registry, its metrics and series; accepts NULL. No other thread
 * may use it any more (stop the HTTP endpoint first). */
void zf_metrics_destroy(zf_metrics_t *m);

/* Declare a metric. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]*; `labels` is
 * a comma-separated list of label names ("" or NULL: none); `help` is one
 * line of text (escaped when rendered). Declaring a name twice returns the
 * metric declared first. Returns NULL when m is NULL, a name is invalid, or
 * memory runs out. Strings are copied. */
zf_metric_t *zf_metrics_counter(zf_metrics_t *m, const char *name,
                                const char *help, const char *labels);
zf_metric_t *zf_metrics_gauge(zf_metrics_t *m, const char *name,
                              const char *help, const char *labels);
/* A counter of time: zf_series_inc adds nanoseconds, /metrics shows
 * seconds (a counter, by convention named *_seconds_total). */
zf_metric_t *zf_metrics_seconds(zf_metrics_t *m, const char *name,
                                const char *help, const char *labels);
/* `bounds`: the upper bounds of the buckets, strictly increasing, +Inf
 * left out (it is always added). At most 32 bounds. */
zf_metric_t *zf_metrics_histogram(zf_metrics_t *m, const char *name,
                                  const char *help, const char *labels,
                                  const double *bounds, size_t nbounds);

/* The series of `f` with these label values (one const char * per label
 * name, in declared order; none for a metric without labels), created at
 * value 0 on first use. Values are any text (escaped when rendered); a NULL
 * value counts as "". Returns NULL when f is NULL or memory runs out.
 * Lookup compares the values with the existing series: cheap for the few
 * series zkflow's metrics have, but keep the pointer in hot loops. */
zf_series_t *zf_metric_series(zf_metric_t *f, ...);
zf_series_t *zf_metric_seriesv(zf_metric_t *f, const char *const *values);

/* Counter: add n to the series with these label values (as for
 * zf_metric_series). Does nothing when n is 0 or f is NULL. */
void zf_metric_inc(zf_metric_t *f, uint64_t n, ...);

/* Counter: add n (a zf_metrics_seconds one: n ns). Gauge: set to v, or
 * add v (may be negative).
 * Histogram: count one observation of v. Each call is one or two atomic
 * operations; calling the wrong one for the metric's type does nothing. */
void zf_series_inc(zf_series_t *s, uint64_t n);
void zf_series_set(zf_series_t *s, double v);
void zf_series_add(zf_series_t *s, double v);
void zf_series_observe(zf_series_t *s, double v);

/* Leave the series out of the rendered text (e.g. the lag of a partition no
 * longer assigned, a script version no longer running) until its next
 * update. Its value is kept. */
void zf_series_hide(zf_series_t *s);

/* A counter's or gauge's value; a histogram's count. 0 for NULL. */
double zf_series_value(const zf_series_t *s);

/* Render every metric as Prometheus text: "# HELP" and "# TYPE" lines for
 * each metric, then one line per visible series (histograms: _bucket lines
 * with cumulative counts and an le label, _sum and _count). Returns a new
 * NUL-terminated string (caller frees; its length in *len if len is not
 * NULL), or NULL when m is NULL or memory runs out. Safe to call on any
 * thread while others update. */
char *zf_metrics_render(zf_metrics_t *m, size_t *len);

/* ------------------------------------------------------------------------
 * zkflow's own metrics (README "Metrics and health" says what each means).
 * One set per process, like the logger: the engine creates it when
 * metrics_listen is set; until then, and after zf_metrics_zkflow_free,
 * every pointer is NULL and counting through them does nothing. */
typedef struct zf_zkflow_metrics {
    zf_metrics_t *reg;
    zf_metric_t *records;          /* zkflow_records_total{script,result} */
    zf_metric_t *zk_ops;           /* zkflow_zk_ops_total{op,result} */
    zf_metric_t *zk_requests;      /* zkflow_zk_requests_total{request,result} */
    zf_metric_t *zk_batch_ops;     /* zkflow_zk_batch_ops */
    zf_metric_t *zk_write_seconds; /* zkflow_zk_write_seconds */
    zf_metric_t *inflight_ops;     /* zkflow_inflight_ops */
    zf_metric_t *consumer_lag;     /* zkflow_consumer_lag{topic,partition} */
    zf_metric_t *assigned;         /* zkflow_assigned_partitions */
    zf_metric_t *script_reloads;   /* zkflow_script_reloads_total{script,result} */
    zf_metric_t *script_info;      /* zkflow_script_info{script,version} */
    zf_metric_t *zk_session_state; /* zkflow_zk_session_state */
    zf_metric_t *engine_seconds;   /* zkflow_engine_seconds_total{stage} */
    zf_metric_t *zk_requests_inflight; /* zkflow_zk_requests_inflight */
    zf_metric_t *queued;           /* zkflow_queued_records{topic,partition} */
} zf_zkflow_metrics_t;

extern zf_zkflow_metrics_t zf_m;

/* Values of zkflow_zk_session_state. */
enum {
    ZF_ZK_STATE_EXPIRED = -1, /* expired or authentication failed: fatal */
    ZF_ZK_STATE_CONNECTING = 0,
    ZF_ZK_STATE_CONNECTED = 1,
};

/* Create the registry and declare every zkflow metric in zf_m. Call on the
 * engine thread before any other thread uses zf_m. Returns 0, or -1 when
 * out of memory (zf_m is then all NULL). */
int zf_metrics_zkflow_init(void);

/* A script now runs `version`: zkflow_script_info{script,version} is 1
 * (and the series of `old`, if not NULL, hidden); its records and reloads
 * series exist, so every outcome shows, at 0 at first. */
void zf_metrics_zkflow_script(const char *script, const char *version,
                              const char *old);

/* zkflow's readiness as its metrics show it, for /readyz (a
 * zf_http_ready_fn; ctx unused): 1 when the ZooKeeper session is connected
 * and at least one partition is assigned, else 0 with the reason in why.
 * Safe on any thread. */
int zf_metrics_zkflow_ready(void *ctx, char *why, size_t whylen);

/* Free what zf_metrics_zkflow_init made and reset zf_m to NULLs. No other
 * thread may be using it. Accepts being called without init. */
void zf_metrics_zkflow_free(void);

#endif

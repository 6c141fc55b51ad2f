/* Metrics registry: the Prometheus text it renders (HELP/TYPE lines,
 * escaping, labels, histogram buckets), hidden series, invalid
 * declarations, NULL safety, updates from several threads, and zkflow's
 * own set and readiness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zkflow/metrics.h"

/* Render m and compare with the expected text exactly. */
static void expect_text(zf_metrics_t *m, const char *want) {
    size_t len = 0;
    char *got = zf_metrics_render(m, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(got));
    if (strcmp(got, want) != 0)
        fail_msg("rendered:\n%s\nexpected:\n%s", got, want);
    free(got);
}

static void test_empty_registry(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    expect_text(m, "");
    zf_metrics_destroy(m);
}

static void test_counter_with_labels(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    zf_metric_t *c = zf_metrics_counter(m, "zkflow_records_total",
                                        "Records by outcome.",
                                        "script,result");
    assert_non_null(c);
    zf_series_inc(zf_metric_series(c, "devices", "applied"), 3);
    zf_metric_inc(c, 2, "devices", "applied");
    zf_metric_inc(c, 1, "devices", "error");
    zf_metric_inc(c, 0, "devices", "skipped"); /* n = 0 creates nothing */
    expect_text(m,
                "# HELP zkflow_records_total Records by outcome.\n"
                "# TYPE zkflow_records_total counter\n"
                "zkflow_records_total{script=\"devices\",result=\"applied\"} 5\n"
                "zkflow_records_total{script=\"devices\",result=\"error\"} 1\n");
    assert_true(zf_series_value(zf_metric_series(c, "devices", "applied")) ==
                5);
    zf_metrics_destroy(m);
}

static void test_gauge_without_labels(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    zf_metric_t *g = zf_metrics_gauge(m, "inflight", "In flight.", NULL);
    zf_series_t *s = zf_metric_series(g);
    expect_text(m, "# HELP inflight In flight.\n# TYPE inflight gauge\n"
                   "inflight 0\n");
    zf_series_set(s, 2.5);
    zf_series_add(s, -4);
    expect_text(m, "# HELP inflight In flight.\n# TYPE inflight gauge\n"
                   "inflight -1.5\n");
    zf_series_set(s, 0.1);
    expect_text(m, "# HELP inflight In flight.\n# TYPE inflight gauge\n"
                   "inflight 0.1\n");
    zf_series_set(s, INFINITY);
    expect_text(m, "# HELP inflight In flight.\n# TYPE inflight gauge\n"
                   "inflight +Inf\n");
    zf_series_set(s, NAN);
    expect_text(m, "# HELP inflight In flight.\n# TYPE inflight gauge\n"
                   "inflight NaN\n");
    zf_series_set(s, 1e21);
    expect_text(m, "# HELP inflight In flight.\n# TYPE inflight gauge\n"
                   "inflight 1e+21\n");
    zf_metrics_destroy(m);
}

/* A time counter: nanoseconds in, seconds out, typed counter. */
static void test_seconds(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    zf_metric_t *t = zf_metrics_seconds(m, "busy_seconds_total", "Busy.",
                                        "stage");
    zf_series_inc(zf_metric_series(t, "a"), 1500000000);
    zf_series_inc(zf_metric_series(t, "a"), 250);
    zf_series_set(zf_metric_series(t, "a"), 7); /* not a gauge: ignored */
    expect_text(m, "# HELP busy_seconds_total Busy.\n"
                   "# TYPE busy_seconds_total counter\n"
                   "busy_seconds_total{stage=\"a\"} 1.50000025\n");
    assert_true(zf_series_value(zf_metric_series(t, "a")) == 1.50000025);
    zf_metrics_destroy(m);
}

/* Label values: backslash, double quote and newline are escaped; HELP text:
 * backslash and newline (a quote stays as it is). */
static void test_escaping(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    zf_metric_t *g = zf_metrics_gauge(m, "esc", "a \"quoted\" \\ help\nline",
                                      "v");
    zf_series_set(zf_metric_series(g, "C:\\dir \"x\"\nnext"), 1);
    zf_series_set(zf_metric_series(g, NULL), 2); /* NULL is "" */
    expect_text(m, "# HELP esc a \"quoted\" \\\\ help\\nline\n"
                   "# TYPE esc gauge\n"
                   "esc{v=\"C:\\\\dir \\\"x\\\"\\nnext\"} 1\n"
                   "esc{v=\"\"} 2\n");
    zf_metrics_destroy(m);
}

static void test_histogram(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    static const double bounds[] = {0.005, 0.1, 1};
    zf_metric_t *h = zf_metrics_histogram(m, "write_seconds", "Write time.",
                                          "op", bounds, 3);
    assert_non_null(h);
    zf_series_t *s = zf_metric_series(h, "multi");
    zf_series_observe(s, 0.005); /* on a bound: counted in it (le) */
    zf_series_observe(s, 0.05);
    zf_series_observe(s, 0.25);
    zf_series_observe(s, 7);
    expect_text(m, "# HELP write_seconds Write time.\n"
                   "# TYPE write_seconds histogram\n"
                   "write_seconds_bucket{op=\"multi\",le=\"0.005\"} 1\n"
                   "write_seconds_bucket{op=\"multi\",le=\"0.1\"} 2\n"
                   "write_seconds_bucket{op=\"multi\",le=\"1\"} 3\n"
                   "write_seconds_bucket{op=\"multi\",le=\"+Inf\"} 4\n"
                   "write_seconds_sum{op=\"multi\"} 7.305\n"
                   "write_seconds_count{op=\"multi\"} 4\n");
    assert_true(zf_series_value(s) == 4);
    zf_metrics_destroy(m);
}

static void test_histogram_without_labels(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    static const double bounds[] = {1, 10};
    zf_metric_t *h = zf_metrics_histogram(m, "batch_ops", "Ops.", "", bounds,
                                          2);
    zf_series_observe(zf_metric_series(h), 10);
    expect_text(m, "# HELP batch_ops Ops.\n# TYPE batch_ops histogram\n"
                   "batch_ops_bucket{le=\"1\"} 0\n"
                   "batch_ops_bucket{le=\"10\"} 1\n"
                   "batch_ops_bucket{le=\"+Inf\"} 1\n"
                   "batch_ops_sum 10\nbatch_ops_count 1\n");
    zf_metrics_destroy(m);
}

/* A hidden series leaves the text until its next update; the value stays. */
static void test_hide(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    zf_metric_t *g = zf_metrics_gauge(m, "lag", "Lag.", "topic,partition");
    zf_series_set(zf_metric_series(g, "t", "0"), 5);
    zf_series_set(zf_metric_series(g, "t", "1"), 7);
    zf_series_hide(zf_metric_series(g, "t", "0"));
    expect_text(m, "# HELP lag Lag.\n# TYPE lag gauge\n"
                   "lag{topic=\"t\",partition=\"1\"} 7\n");
    zf_series_add(zf_metric_series(g, "t", "0"), 1);
    expect_text(m, "# HELP lag Lag.\n# TYPE lag gauge\n"
                   "lag{topic=\"t\",partition=\"0\"} 6\n"
                   "lag{topic=\"t\",partition=\"1\"} 7\n");
    zf_metrics_destroy(m);
}

static void test_declarations(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    static const double bad[] = {1, 1};
    static const double good[] = {1};
    assert_null(zf_metrics_counter(m, "9starts_with_digit", "", NULL));
    assert_null(zf_metrics_counter(m, "has-dash", "", NULL));
    assert_null(zf_metrics_counter(m, "", "", NULL));
    assert_null(zf_metrics_counter(m, "ok", "", "a,,b"));
    assert_null(zf_metrics_counter(m, "ok", "", "__reserved"));
    assert_null(zf_metrics_counter(m, "ok", "", "no:colon"));
    assert_null(zf_metrics_histogram(m, "h", "", "le", good, 1));
    assert_null(zf_metrics_histogram(m, "h", "", NULL, bad, 2));
    zf_metric_t *a = zf_metrics_counter(m, "ns:name_1", "first", "x");
    assert_non_null(a);
    /* The same name again: the metric declared first. */
    assert_ptr_equal(zf_metrics_gauge(m, "ns:name_1", "second", NULL), a);
    /* Wrong-type updates do nothing. */
    zf_series_t *s = zf_metric_series(a, "v");
    zf_series_set(s, 9);
    zf_series_observe(s, 9);
    expect_text(m, "# HELP ns:name_1 first\n# TYPE ns:name_1 counter\n"
                   "ns:name_1{x=\"v\"} 0\n");
    zf_metrics_destroy(m);
}

/* Names and label values longer than any internal buffer come out whole. */
static void test_long_names(void **state) {
    (void)state;
    char name[301], label[301], value[2001], want[4096];
    memset(name, 'n', 300);
    name[300] = '\0';
    memset(label, 'l', 300);
    label[300] = '\0';
    memset(value, 'v', 2000);
    value[2000] = '\0';
    zf_metrics_t *m = zf_metrics_new();
    zf_metric_t *g = zf_metrics_gauge(m, name, "h", label);
    zf_series_set(zf_metric_series(g, value), 1);
    snprintf(want, sizeof want, "# HELP %s h\n# TYPE %s gauge\n%s{%s=\"%s\"} 1\n",
             name, name, name, label, value);
    expect_text(m, want);
    zf_metrics_destroy(m);
}

/* Metrics off: every call on NULL is a no-op. */
static void test_null_safe(void **state) {
    (void)state;
    assert_null(zf_metrics_counter(NULL, "a", "", NULL));
    assert_null(zf_metric_series(NULL, "x"));
    zf_metric_inc(NULL, 1, "x", "y");
    zf_series_inc(NULL, 1);
    zf_series_set(NULL, 1);
    zf_series_add(NULL, 1);
    zf_series_observe(NULL, 1);
    zf_series_hide(NULL);
    assert_true(zf_series_value(NULL) == 0);
    assert_null(zf_metrics_render(NULL, NULL));
    zf_metrics_destroy(NULL);
    assert_null(zf_m.records);
    zf_metric_inc(zf_m.records, 1, "s", "applied");
    zf_metrics_zkflow_script("s", "v1", NULL);
    zf_metrics_zkflow_free();
}

/* Several threads create series and count while another renders: no count
 * is lost and every render is well formed. */
#define THREADS 4
#define PER_THREAD 20000

static zf_metric_t *shared;

static void *counting(void *arg) {
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < PER_THREAD; i++)
        zf_metric_inc(shared, 1, names[(i + (int)(intptr_t)arg) % 4]);
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    zf_metrics_t *m = zf_metrics_new();
    shared = zf_metrics_counter(m, "n", "", "k");
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, counting, (void *)(intptr_t)i);
    for (int r = 0; r < 50; r++) {
        char *text = zf_metrics_render(m, NULL);
        assert_non_null(text);
        assert_true(strncmp(text, "# HELP n \n# TYPE n counter\n", 26) == 0);
        free(text);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    double total = 0;
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        total += zf_series_value(zf_metric_series(shared, names[i]));
    assert_true(total == THREADS * PER_THREAD);
    zf_metrics_destroy(m);
}

/* zkflow's set: every metric declared; readiness follows the session state
 * and the assigned partitions; a reload moves script_info. */
static void test_zkflow_set(void **state) {
    (void)state;
    char why[128];
    assert_int_equal(zf_metrics_zkflow_init(), 0);
    assert_int_equal(zf_metrics_zkflow_ready(NULL, why, sizeof why), 0);
    assert_string_equal(why, "ZooKeeper session not connected");
    zf_series_set(zf_metric_series(zf_m.zk_session_state),
                  ZF_ZK_STATE_CONNECTED);
    assert_int_equal(zf_metrics_zkflow_ready(NULL, why, sizeof why), 0);
    assert_string_equal(why, "no Kafka partition assigned");
    zf_series_set(zf_metric_series(zf_m.assigned), 3);
    assert_int_equal(zf_metrics_zkflow_ready(NULL, why, sizeof why), 1);
    zf_series_set(zf_metric_series(zf_m.zk_session_state),
                  ZF_ZK_STATE_EXPIRED);
    assert_int_equal(zf_metrics_zkflow_ready(NULL, why, sizeof why), 0);
    assert_string_equal(why, "ZooKeeper session expired or refused");

    zf_metrics_zkflow_script("dev", "v1", NULL);
    zf_metrics_zkflow_script("dev", "v2", "v1");
    char *text = zf_metrics_render(zf_m.reg, NULL);
    assert_non_null(text);
    static const char *const want[] = {
        "# TYPE zkflow_records_total counter\n",
        "zkflow_records_total{script=\"dev\",result=\"applied\"} 0\n",
        "zkflow_records_total{script=\"dev\",result=\"skipped\"} 0\n",
        "zkflow_records_total{script=\"dev\",result=\"dlq\"} 0\n",
        "zkflow_records_total{script=\"dev\",result=\"error\"} 0\n",
        "# TYPE zkflow_zk_ops_total counter\n",
        "# TYPE zkflow_zk_requests_total counter\n",
        "# TYPE zkflow_zk_batch_ops histogram\n",
        "zkflow_zk_batch_ops_count 0\n",
        "# TYPE zkflow_zk_write_seconds histogram\n",
        "zkflow_zk_write_seconds_bucket{le=\"+Inf\"} 0\n",
        "zkflow_inflight_ops 0\n",
        "# TYPE zkflow_consumer_lag gauge\n",
        "zkflow_assigned_partitions 3\n",
        "zkflow_script_reloads_total{script=\"dev\",result=\"rejected\"} 0\n",
        "zkflow_script_info{script=\"dev\",version=\"v2\"} 1\n",
        "zkflow_zk_session_state -1\n",
        "# TYPE zkflow_engine_seconds_total counter\n",
        "zkflow_zk_requests_inflight 0\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(text, want[i]))
            fail_msg("missing %s in:\n%s", want[i], text);
    assert_null(strstr(text, "version=\"v1\""));
    free(text);
    zf_metrics_zkflow_free();
    assert_null(zf_m.reg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_registry),
        cmocka_unit_test(test_counter_with_labels),
        cmocka_unit_test(test_gauge_without_labels),
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_without_labels),
        cmocka_unit_test(test_hide),
        cmocka_unit_test(test_declarations),
        cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_null_safe),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_zkflow_set),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}

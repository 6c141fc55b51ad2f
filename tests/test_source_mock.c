/* The Kafka side against librdkafka's mock cluster, for faults a real
 * broker cannot be made to produce on demand: request errors on offset
 * commits, fetches and heartbeats. Fault injection only; the main path is
 * tested against a real Kafka broker (tests/integration.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>

#include "helpers.h"
#include "zkflow/clock.h"
#include "zkflow/config.h"
#include "zkflow/log.h"
#include "zkflow/source.h"

/* Kafka protocol request types (ApiKey). */
#define API_FETCH 1
#define API_OFFSET_COMMIT 8
#define API_HEARTBEAT 12

#define N 300

static rd_kafka_t *host; /* the handle the mock cluster lives in */
static rd_kafka_mock_cluster_t *mc;

#define NPARTS 4 /* partitions of topic "t4" */

/* What a consumer saw. */
typedef struct seen {
    int count[N];   /* deliveries per offset */
    int assigned, revoked;
    int owns[NPARTS]; /* "t4" partitions assigned now */
} seen_t;

static void on_assigned(void *ctx, zf_tp_t *tps, size_t n) {
    seen_t *s = ctx;
    s->assigned += (int)n;
    for (size_t i = 0; i < n; i++)
        if (strcmp(tps[i].topic, "t4") == 0)
            s->owns[tps[i].partition] = 1;
}

static void on_revoked(void *ctx, const zf_tp_t *tps, size_t n, int lost) {
    seen_t *s = ctx;
    (void)lost;
    s->revoked += (int)n;
    for (size_t i = 0; i < n; i++)
        if (strcmp(tps[i].topic, "t4") == 0)
            s->owns[tps[i].partition] = 0;
}

static int setup(void **state) {
    (void)state;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err,
                          sizeof err) != RD_KAFKA_CONF_OK ||
        !(host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err)) ||
        !(mc = rd_kafka_handle_mock_cluster(host)))
        fail_msg("mock cluster: %s", err);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "t", 1, 1), 0);
    for (int i = 0; i < N; i++) {
        char v[16];
        int len = snprintf(v, sizeof v, "%d", i);
        assert_int_equal(rd_kafka_producev(host, RD_KAFKA_V_TOPIC("t"),
                                           RD_KAFKA_V_VALUE(v, (size_t)len),
                                           RD_KAFKA_V_MSGFLAGS(
                                               RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_mock_topic_create(mc, "t4", NPARTS, 1), 0);
    for (int i = 0; i < N * NPARTS; i++) {
        char v[16];
        int len = snprintf(v, sizeof v, "%d", i / NPARTS);
        assert_int_equal(rd_kafka_producev(host, RD_KAFKA_V_TOPIC("t4"),
                                           RD_KAFKA_V_PARTITION(i % NPARTS),
                                           RD_KAFKA_V_VALUE(v, (size_t)len),
                                           RD_KAFKA_V_MSGFLAGS(
                                               RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(host, 10000), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    rd_kafka_destroy(host);
    return 0;
}

/* A consumer of `topic` in `group` with the source's own settings. */
static zf_config_t *config_of(const char *group, const char *topic) {
    char text[1024];
    snprintf(text, sizeof text,
             "[kafka]\nbootstrap.servers = %s\ngroup.id = %s\n"
             "session.timeout.ms = 6000\nheartbeat.interval.ms = 500\n"
             "[zookeeper]\nconnect = 127.0.0.1:1\n"
             "[script s]\nfile = s.lua\ntopics = %s\n",
             rd_kafka_mock_cluster_bootstraps(mc), group, topic);
    zf_config_t *cfg;
    char err[1024];
    if (zf_config_load(write_temp("mock.ini", text), &cfg, err, sizeof err) !=
        ZF_OK)
        fail_msg("%s", err);
    return cfg;
}

static zf_config_t *config(const char *group) { return config_of(group, "t"); }

/* Consume until offset N-1 was seen (or timeout_ms passed), storing each
 * record's next offset as the engine does once a record is applied.
 * Returns the number of records delivered. */
static int consume(zf_source_t *src, seen_t *s, int timeout_ms) {
    int64_t deadline = zf_now_ms() + timeout_ms;
    int delivered = 0;
    while (zf_now_ms() < deadline && !s->count[N - 1]) {
        zf_record_t rec;
        zf_source_event_t ev = zf_source_next(src, &rec);
        if (ev == ZF_SOURCE_RECORD) {
            assert_true(rec.offset >= 0 && rec.offset < N);
            s->count[rec.offset]++;
            delivered++;
            zf_source_store(src, rec.topic, rec.partition, rec.offset + 1);
        } else if (ev == ZF_SOURCE_NONE) {
            struct pollfd pfd = {.fd = zf_source_fd(src), .events = POLLIN};
            poll(&pfd, 1, 50);
        }
        char err[512];
        if (zf_source_status(src, err, sizeof err) != ZF_OK)
            fail_msg("source failed: %s", err);
    }
    return delivered;
}

/* Commit what is stored, retrying a failed commit as the engine does.
 * Returns the number of failed attempts before it went through. */
static int commit(zf_source_t *src) {
    int failures = 0;
    int64_t deadline = zf_now_ms() + 30000;
    zf_source_commit_start(src);
    for (;;) {
        char err[512];
        int rc = zf_source_commit_result(src, err, sizeof err);
        if (rc == ZF_OK)
            return failures;
        if (rc > 0) {
            failures++;
            zf_source_commit_start(src);
        }
        if (zf_now_ms() > deadline)
            fail_msg("commit did not go through in 30 s (%d failures)",
                     failures);
        zf_record_t rec;
        if (zf_source_next(src, &rec) == ZF_SOURCE_NONE)
            poll(NULL, 0, 20);
    }
}

static zf_source_t *start(const zf_config_t *cfg, seen_t *s) {
    static const zf_source_handlers_t h = {on_assigned, on_revoked};
    zf_source_t *src;
    char err[1024];
    if (zf_source_new(cfg, 0, &h, s, &src, err, sizeof err) != ZF_OK ||
        zf_source_subscribe(src, cfg, err, sizeof err) != ZF_OK)
        fail_msg("%s", err);
    return src;
}

/* Offset commits that fail (coordinator moving, timeouts) are retried
 * until the offsets are committed: a new member of the group then starts
 * after the last stored record and receives nothing. */
static void test_commit_errors(void **state) {
    (void)state;
    zf_config_t *cfg = config("g-commit");
    seen_t s = {0};
    zf_source_t *src = start(cfg, &s);
    assert_int_equal(consume(src, &s, 30000), N);
    rd_kafka_mock_push_request_errors(
        mc, API_OFFSET_COMMIT, 3, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS);
    commit(src);
    zf_source_close(src);

    seen_t again = {0};
    src = start(cfg, &again);
    /* Assigned, and nothing comes: everything was committed. */
    int64_t deadline = zf_now_ms() + 20000;
    while (!again.assigned && zf_now_ms() < deadline)
        consume(src, &again, 100);
    assert_true(again.assigned > 0);
    assert_int_equal(consume(src, &again, 2000), 0);
    zf_source_close(src);
    zf_config_destroy(cfg);
}

/* Fetches that fail are retried: every record arrives, once, in order. */
static void test_fetch_errors(void **state) {
    (void)state;
    zf_config_t *cfg = config("g-fetch");
    rd_kafka_mock_push_request_errors(
        mc, API_FETCH, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    seen_t s = {0};
    zf_source_t *src = start(cfg, &s);
    assert_int_equal(consume(src, &s, 30000), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(s.count[i], 1);
    zf_source_close(src);
    zf_config_destroy(cfg);
}

/* Heartbeats answered with "rebalance in progress" make the member rejoin;
 * consumption goes on from the stored offsets, so no record is lost. */
static void test_heartbeat_errors(void **state) {
    (void)state;
    zf_config_t *cfg = config("g-heartbeat");
    seen_t s = {0};
    zf_source_t *src = start(cfg, &s);
    int64_t deadline = zf_now_ms() + 20000;
    while (!s.assigned && zf_now_ms() < deadline)
        consume(src, &s, 100);
    assert_true(s.assigned > 0);
    rd_kafka_mock_push_request_errors(
        mc, API_HEARTBEAT, 3, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS);
    consume(src, &s, 30000);
    for (int i = 0; i < N; i++)
        if (s.count[i] < 1)
            fail_msg("offset %d never delivered", i);
    zf_source_close(src);
    zf_config_destroy(cfg);
}

/* The engine pauses a partition while records it already took from the
 * source may still come (the source takes several at a time), and resumes
 * it later: every record arrives once, in order, none lost. */
static void test_pause_resume_order(void **state) {
    (void)state;
    zf_config_t *cfg = config("g-pause");
    seen_t s = {0};
    zf_source_t *src = start(cfg, &s);
    int64_t deadline = zf_now_ms() + 60000;
    int64_t last = -1;
    int pauses = 0, while_paused = 0;
    while (!s.count[N - 1] && zf_now_ms() < deadline) {
        zf_record_t rec;
        zf_source_event_t ev = zf_source_next(src, &rec);
        if (ev == ZF_SOURCE_NONE) {
            struct pollfd pfd = {.fd = zf_source_fd(src), .events = POLLIN};
            poll(&pfd, 1, 50);
            continue;
        }
        if (ev != ZF_SOURCE_RECORD)
            continue;
        assert_int_equal(rec.offset, last + 1);
        last = rec.offset;
        s.count[rec.offset]++;
        zf_source_store(src, rec.topic, rec.partition, rec.offset + 1);
        if (rec.offset % 37 == 5) {
            /* Paused: what comes meanwhile was taken before the pause. */
            zf_source_pause(src, "t", 0, 1);
            pauses++;
            for (int i = 0; i < 20; i++) {
                ev = zf_source_next(src, &rec);
                if (ev == ZF_SOURCE_RECORD) {
                    assert_int_equal(rec.offset, last + 1);
                    last = rec.offset;
                    s.count[rec.offset]++;
                    while_paused++;
                } else if (ev == ZF_SOURCE_NONE) {
                    poll(NULL, 0, 10);
                }
            }
            zf_source_pause(src, "t", 0, 0);
        }
    }
    assert_true(pauses > 5);
    assert_true(while_paused > 0); /* the case this test is about */
    for (int i = 0; i < N; i++)
        assert_int_equal(s.count[i], 1);
    zf_source_close(src);
    zf_config_destroy(cfg);
}

/* A second member joins while the first has records taken ahead: after a
 * partition's revoked handler ran, none of its records is handed out (the
 * engine would take them as its own otherwise). */
static void test_no_record_after_revoke(void **state) {
    (void)state;
    zf_config_t *cfg = config_of("g-revoke", "t4");
    seen_t a = {0}, b = {0};
    zf_source_t *first = start(cfg, &a);
    int64_t deadline = zf_now_ms() + 20000;
    while (a.assigned < NPARTS && zf_now_ms() < deadline) {
        zf_record_t rec;
        if (zf_source_next(first, &rec) == ZF_SOURCE_NONE)
            poll(NULL, 0, 20);
    }
    assert_int_equal(a.assigned, NPARTS);
    zf_source_t *second = start(cfg, &b);
    /* Both take slowly, so fetched records wait when the rebalance comes. */
    int records = 0;
    deadline = zf_now_ms() + 30000;
    while ((a.revoked == 0 || b.assigned == 0) && zf_now_ms() < deadline) {
        zf_record_t rec;
        for (int i = 0; i < 5; i++) {
            zf_source_event_t ev = zf_source_next(first, &rec);
            if (ev == ZF_SOURCE_RECORD) {
                if (!a.owns[rec.partition])
                    fail_msg("record of t4 [%d] offset %lld after its revoke",
                             rec.partition, (long long)rec.offset);
                records++;
            }
        }
        zf_source_next(second, &rec);
        poll(NULL, 0, 5);
    }
    assert_true(a.revoked > 0);
    assert_true(b.assigned > 0);
    assert_true(records > 0);
    /* And after: only records of what the first member still owns. */
    for (int i = 0; i < 200; i++) {
        zf_record_t rec;
        if (zf_source_next(first, &rec) == ZF_SOURCE_RECORD &&
            !a.owns[rec.partition])
            fail_msg("record of t4 [%d] offset %lld after its revoke",
                     rec.partition, (long long)rec.offset);
        zf_source_next(second, &rec);
    }
    zf_source_close(second);
    zf_source_close(first);
    zf_config_destroy(cfg);
}

int main(void) {
    zf_log_set_level(getenv("VERBOSE") ? ZF_LOG_DEBUG : ZF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_errors),
        cmocka_unit_test(test_fetch_errors),
        cmocka_unit_test(test_heartbeat_errors),
        cmocka_unit_test(test_pause_resume_order),
        cmocka_unit_test(test_no_record_after_revoke),
    };
    return cmocka_run_group_tests_name("source (mock cluster)", tests, setup,
                                       teardown);
}

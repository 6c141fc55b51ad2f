/* The dead-letter producer without a broker: which [kafka] keys it takes,
 * FILE:LINE for a key it refuses, and sends still in flight at destroy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>

#include "helpers.h"
#include "zkflow/config.h"
#include "zkflow/dlq.h"

#define ZK_AND_SCRIPT                                                          \
    "[zookeeper]\nconnect = 127.0.0.1:1\n"                                     \
    "[script s]\nfile = s.lua\ntopics = t\non_error = dlq\n"                   \
    "dlq_topic = t.dead\n"

static char err[2048];
static int calls;

static void done(void *ctx, const char *topic, int32_t partition,
                 int64_t offset, zf_err_t rc, const char *why) {
    (void)ctx, (void)topic, (void)partition, (void)offset, (void)rc,
        (void)why;
    calls++;
}

static zf_config_t *load(const char *text) {
    const char *path = write_temp("dlq.ini", text);
    zf_config_t *cfg;
    if (zf_config_load(path, &cfg, err, sizeof err) != ZF_OK)
        fail_msg("config: %s", err);
    return cfg;
}

/* Consumer-only keys (group.id, auto.offset.reset, enable.auto.commit,
 * fetch.wait.max.ms) are left out without a word (librdkafka would warn
 * about each); shared and producer keys are taken. */
static void test_keys(void **state) {
    (void)state;
    zf_config_t *cfg = load("[kafka]\nbootstrap.servers = 127.0.0.1:1\n"
                            "group.id = g\nauto.offset.reset = earliest\n"
                            "enable.auto.commit = false\n"
                            "fetch.wait.max.ms = 10\nclient.id = me\n"
                            "acks = all\n" ZK_AND_SCRIPT);
    const char *logs = write_temp("dlq.log", "");
    int saved = dup(STDERR_FILENO);
    int fd = open(logs, O_WRONLY | O_TRUNC);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO); /* the logger writes there */
    zf_dlq_t *d;
    zf_err_t rc = zf_dlq_new(cfg, done, NULL, &d, err, sizeof err);
    if (rc == ZF_OK)
        zf_dlq_destroy(d, 0);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    assert_int_equal(rc, ZF_OK);
    char text[8192] = "";
    FILE *fp = fopen(logs, "r");
    assert_non_null(fp);
    text[fread(text, 1, sizeof text - 1, fp)] = '\0';
    fclose(fp);
    if (strstr(text, "consumer property"))
        fail_msg("the producer was given consumer-only keys: %s", text);
    zf_config_destroy(cfg);

    cfg = load("[kafka]\nbootstrap.servers = 127.0.0.1:1\ngroup.id = g\n"
               ZK_AND_SCRIPT);
    assert_int_equal(zf_dlq_new(cfg, done, NULL, &d, err, sizeof err), ZF_OK);
    assert_true(zf_dlq_fd(d) >= 0);
    assert_int_equal(zf_dlq_inflight(d), 0);
    zf_dlq_destroy(d, 0);
    zf_config_destroy(cfg);

    /* A producer property with a bad value: the line that set it. */
    cfg = load("[kafka]\nbootstrap.servers = 127.0.0.1:1\ngroup.id = g\n"
               "acks = sometimes\n" ZK_AND_SCRIPT);
    d = (zf_dlq_t *)1;
    assert_int_equal(zf_dlq_new(cfg, done, NULL, &d, err, sizeof err),
                     ZF_ECONFIG);
    assert_null(d);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:4: ", cfg->path);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("expected '%s...', got '%s'", prefix, err);
    zf_config_destroy(cfg);

    /* No descriptor and nothing in flight without a producer. */
    assert_int_equal(zf_dlq_fd(NULL), -1);
    assert_int_equal(zf_dlq_inflight(NULL), 0);
    zf_dlq_process(NULL);
    zf_dlq_destroy(NULL, 0);
}

/* Sends that never reach a broker: in flight until destroy, which drops
 * them without calling `done` (they were never committed). */
static void test_unsent_at_destroy(void **state) {
    (void)state;
    zf_config_t *cfg = load("[kafka]\nbootstrap.servers = 127.0.0.1:1\n"
                            "group.id = g\n" ZK_AND_SCRIPT);
    zf_dlq_t *d;
    assert_int_equal(zf_dlq_new(cfg, done, NULL, &d, err, sizeof err), ZF_OK);
    zf_header_t h[] = {{"trace", "t-1", 3}, {"empty", NULL, 0}};
    zf_record_t rec = {.topic = "t", .partition = 1, .offset = 7,
                       .timestamp = 1700000000000, .key = "k", .key_len = 1,
                       .value = "v", .value_len = 1, .headers = h,
                       .nheaders = 2};
    zf_dlq_failure_t f = {"transform", "s.lua:3: boom", NULL, "s",
                          "0123456789ab"};
    assert_int_equal(zf_dlq_send(d, "t.dead", &rec, &f, err, sizeof err),
                     ZF_OK);
    rec.key = NULL; /* a null key, a tombstone */
    rec.value = NULL;
    f.stage = "zookeeper";
    f.zk_error = "ZNONODE";
    assert_int_equal(zf_dlq_send(d, "t.dead", &rec, &f, err, sizeof err),
                     ZF_OK);
    assert_int_equal(zf_dlq_inflight(d), 2);
    zf_dlq_process(d);
    calls = 0;
    zf_dlq_destroy(d, 0);
    assert_int_equal(calls, 0);
    zf_config_destroy(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_unsent_at_destroy),
    };
    return cmocka_run_group_tests_name("dlq", tests, NULL, NULL);
}

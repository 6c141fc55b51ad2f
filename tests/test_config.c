/* Configuration parsing: good files, and every kind of bad input reported as
 * FILE:LINE with the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "zkflow/config.h"
#include "zkflow/op.h"
#include "zkflow/source.h"

#define GOOD_KAFKA "[kafka]\nbootstrap.servers = 127.0.0.1:9092\ngroup.id = g\n"
#define GOOD_ZK "[zookeeper]\nconnect = 127.0.0.1:2181\n"
#define GOOD_SCRIPT "[script s]\nfile = s.lua\ntopics = t\n"

static char err[2048];

/* Load `text` as x.ini and expect a failure whose message starts with
 * "PATH:LINE: " and contains `what`. */
static void expect_error(const char *text, int line, const char *what) {
    const char *path = write_temp("x.ini", text);
    zf_config_t *cfg = (zf_config_t *)1;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_ECONFIG);
    assert_null(cfg);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, what))
        fail_msg("expected '%s...%s', got '%s'", prefix, what, err);
}

static void test_good(void **state) {
    (void)state;
    const char *path = write_temp(
        "good.ini", "; comment\n" GOOD_KAFKA "auto.offset.reset = latest\n\n"
                    "[zookeeper]\nconnect = h1:2181,h2:2181/chroot\n"
                    "session_timeout_ms = 5000\n"
                    "[engine]\nmax_queued_records = 10\n"
                    "[script devices]\nfile = lua/devices.lua\n"
                    "topics = a, b ,c\nroot = /devices\n"
                    "[script other]\nfile = /abs/o.lua\ntopics = d\n");
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(cfg->nkafka, 3);
    assert_string_equal(cfg->kafka[2].key, "auto.offset.reset");
    assert_string_equal(cfg->kafka[2].value, "latest");
    assert_int_equal(cfg->kafka[2].line, 5);
    assert_string_equal(cfg->zk_connect, "h1:2181,h2:2181/chroot");
    assert_int_equal(cfg->zk_session_timeout_ms, 5000);
    assert_int_equal(cfg->zk_connect_timeout_ms, 15000); /* default */
    assert_string_equal(cfg->delivery, "at_least_once");
    assert_int_equal(cfg->max_queued_records, 10);
    assert_int_equal(cfg->nscripts, 2);

    const zf_script_conf_t *s = &cfg->scripts[0];
    assert_string_equal(s->name, "devices");
    char want[512];
    snprintf(want, sizeof want, "%.*s/lua/devices.lua",
             (int)(strrchr(path, '/') - path), path);
    assert_string_equal(s->file, want); /* relative to the config's dir */
    assert_int_equal(s->file_line, 13);
    assert_int_equal(s->ntopics, 3);
    assert_string_equal(s->topic[1], "b");
    assert_string_equal(s->root, "/devices");
    assert_string_equal(cfg->scripts[1].file, "/abs/o.lua");
    assert_string_equal(cfg->scripts[1].root, "/");
    assert_ptr_equal(zf_config_script_for_topic(cfg, "c"), &cfg->scripts[0]);
    assert_ptr_equal(zf_config_script_for_topic(cfg, "d"), &cfg->scripts[1]);
    assert_null(zf_config_script_for_topic(cfg, "e"));
    assert_int_equal(zf_source_check_config(cfg, err, sizeof err), ZF_OK);
    zf_config_destroy(cfg);
}

static void test_missing_file(void **state) {
    (void)state;
    zf_config_t *cfg;
    assert_int_equal(
        zf_config_load("/nonexistent/zkflow.ini", &cfg, err, sizeof err),
        ZF_ECONFIG);
    assert_string_equal(err,
                        "/nonexistent/zkflow.ini: cannot open: No such file "
                        "or directory");
}

static void test_unknown_section(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK "[zoo]\nconnect = x\n" GOOD_SCRIPT, 6,
                 "unknown section [zoo]");
    /* An empty unknown section is still found. */
    expect_error(GOOD_KAFKA "[nothing]\n" GOOD_ZK GOOD_SCRIPT, 4,
                 "unknown section [nothing]");
}

static void test_unknown_key(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\nfiles = x\n", 8,
                 "unknown key 'files' in [script]");
    expect_error(GOOD_KAFKA GOOD_ZK "timeout = 3\n" GOOD_SCRIPT, 6,
                 "unknown key 'timeout' in [zookeeper]");
    expect_error("connect = x\n" GOOD_KAFKA GOOD_ZK GOOD_SCRIPT, 1,
                 "outside any section");
}

static void test_bad_numbers(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK "session_timeout_ms = ten\n" GOOD_SCRIPT, 6,
                 "session_timeout_ms: 'ten' is not a whole number");
    expect_error(GOOD_KAFKA GOOD_ZK "session_timeout_ms = 10s\n" GOOD_SCRIPT, 6,
                 "is not a whole number");
    expect_error(GOOD_KAFKA GOOD_ZK "session_timeout_ms = 5\n" GOOD_SCRIPT, 6,
                 "5 is out of range");
    expect_error(GOOD_KAFKA GOOD_ZK "[engine]\nmax_queued_records = 0\n"
                     GOOD_SCRIPT,
                 7, "out of range");
}

static void test_bad_values(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK "[engine]\ndelivery = maybe\n" GOOD_SCRIPT,
                 7, "delivery: 'maybe' is not one of: at_least_once");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "root = devices\n", 9,
                 "root: 'devices': path must start with '/'");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "root = /a//b\n", 9,
                 "empty component");
    expect_error(GOOD_KAFKA GOOD_ZK "[script bad name]\nfile = a\ntopics = t\n",
                 6, "script name 'bad name'");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect =\n" GOOD_SCRIPT, 5,
                 "connect has an empty value");
}

static void test_missing_required(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_SCRIPT, 6, "[zookeeper] needs a 'connect' key");
    expect_error(GOOD_KAFKA "[zookeeper]\nsession_timeout_ms = 2000\n"
                     GOOD_SCRIPT,
                 4, "[zookeeper] needs a 'connect' key");
    expect_error(GOOD_ZK GOOD_SCRIPT, 5, "missing section [kafka]");
    expect_error("[kafka]\ngroup.id = g\n" GOOD_ZK GOOD_SCRIPT, 1,
                 "needs 'bootstrap.servers'");
    expect_error("[kafka]\nbootstrap.servers = b\n" GOOD_ZK GOOD_SCRIPT, 1,
                 "needs 'group.id'");
    expect_error(GOOD_KAFKA GOOD_ZK, 5, "no [script NAME] section");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\ntopics = t\n", 6,
                 "[script s] needs a 'file' key");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\n", 6,
                 "[script s] needs a 'topics' key");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\ntopics = ,\n", 6,
                 "lists no topics");
}

static void test_duplicates(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "[script s]\nfile = b\n", 9,
                 "[script s] appears twice (first on line 6)");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "[script u]\nfile = b\n"
                                                "topics = x, t\n",
                 9, "topic 't' is routed to both [script s] and [script u]");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = a\ntopics = t,t\n", 6,
                 "topic 't' is listed twice");
    expect_error(GOOD_KAFKA GOOD_ZK "connect = again\n" GOOD_SCRIPT, 6,
                 "connect is set twice");
    expect_error(GOOD_KAFKA "group.id = h\n" GOOD_ZK GOOD_SCRIPT, 4,
                 "group.id is set twice (first on line 3)");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT GOOD_ZK, 9,
                 "section [zookeeper] appears twice (first on line 4)");
}

static void test_syntax(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA "this is not ini\n" GOOD_ZK GOOD_SCRIPT, 4,
                 "syntax error");
    char text[1024];
    snprintf(text, sizeof text, GOOD_KAFKA GOOD_ZK "[script s]\nfile = %0300d\n",
             0);
    expect_error(text, 7, "line is longer than");
}

static void test_kafka_keys(void **state) {
    (void)state;
    const char *path = write_temp(
        "k.ini", GOOD_KAFKA "no.such.property = 1\n" GOOD_ZK GOOD_SCRIPT);
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(zf_source_check_config(cfg, err, sizeof err), ZF_ECONFIG);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:4: ", path);
    assert_memory_equal(err, prefix, strlen(prefix));
    assert_non_null(strstr(err, "no.such.property"));
    zf_config_destroy(cfg);

    path = write_temp("m.ini", GOOD_KAFKA "enable.auto.offset.store = true\n"
                                   GOOD_ZK GOOD_SCRIPT);
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(zf_source_check_config(cfg, err, sizeof err), ZF_ECONFIG);
    assert_non_null(strstr(err, ":4: enable.auto.offset.store is managed"));
    zf_config_destroy(cfg);
}

static void test_script_keys(void **state) {
    (void)state;
    const char *path = write_temp(
        "keys.ini", GOOD_KAFKA GOOD_ZK "[engine]\nbatch_max_ops = 50\n"
                    "[script s]\nfile = s.lua\ntopics = t\n"
                    "ops = set, delete\ntimeout_ms = 0\nmemory_mb = 8\n"
                    "coalesce = true\n"
                    "param.root = /flags\nparam.x-y = 1 2\n");
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(cfg->batch_max_ops, 50);
    assert_int_equal(cfg->batch_max_bytes, 512000); /* default */
    assert_int_equal(cfg->max_queued_records, 20000);
    const zf_script_conf_t *sc = &cfg->scripts[0];
    assert_int_equal(sc->ops, ZF_OP_BIT(ZF_OP_SET) | ZF_OP_BIT(ZF_OP_DELETE));
    assert_int_equal(sc->timeout_ms, 0);
    assert_int_equal(sc->memory_mb, 8);
    assert_int_equal(sc->coalesce, 1);
    assert_int_equal(sc->nparams, 2);
    assert_string_equal(sc->params[0].key, "root");
    assert_string_equal(sc->params[0].value, "/flags");
    assert_string_equal(sc->params[1].key, "x-y");
    assert_string_equal(sc->params[1].value, "1 2");
    zf_config_destroy(cfg);

    path = write_temp("defaults.ini", GOOD_KAFKA GOOD_ZK GOOD_SCRIPT);
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(cfg->scripts[0].ops, ZF_OP_ALL);
    assert_int_equal(cfg->scripts[0].timeout_ms, 100);
    assert_int_equal(cfg->scripts[0].memory_mb, 64);
    assert_int_equal(cfg->scripts[0].coalesce, 0);
    assert_int_equal(cfg->scripts[0].nparams, 0);
    zf_config_destroy(cfg);

    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "ops = set, remove\n", 6,
                 "[script s] ops: unknown op 'remove'");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "param.a b = 1\n", 9,
                 "param.a b: a parameter name is letters");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "param.a = 1\nparam.a = 2\n",
                 10, "param.a is set twice (first on line 9)");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "coalesce = yes\n", 9,
                 "coalesce: 'yes' is not true or false");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "timeout_ms = -1\n", 9,
                 "timeout_ms: -1 is out of range");
    expect_error(GOOD_KAFKA GOOD_ZK "[engine]\nbatch_max_bytes = 2000000\n"
                     GOOD_SCRIPT,
                 7, "batch_max_bytes: 2000000 is out of range");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_kafka_keys),
        cmocka_unit_test(test_script_keys),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}

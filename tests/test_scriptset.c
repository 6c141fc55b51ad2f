/* Fixtures and the script set: checks before a swap, reloads that are
 * taken or rejected, configuration reloads. No services needed (scripts in
 * files only; znode-stored scripts are covered by the integration tests). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "zkflow/clock.h"
#include "zkflow/fixture.h"
#include "zkflow/log.h"
#include "zkflow/scriptset.h"

static char err[4096];

#define SKIP_PROBE                                                            \
    "return function(rec)\n"                                                  \
    "  if rec.key == 'probe' then return nil end\n"                           \
    "  return '/t/' .. rec.key, V\n"                                          \
    "end\n"

static zf_script_t *load(const char *name, const char *text) {
    const char *path = write_temp(name, text);
    zf_script_t *s = zf_script_new("s", path, &zf_script_opts_default, err,
                                   sizeof err);
    if (!s)
        fail_msg("load failed: %s", err);
    return s;
}

static zf_fixture_text_t texts(const char *records, const char *expected) {
    return (zf_fixture_text_t){
        .records_name = "r.jsonl",
        .records = records,
        .records_len = records ? strlen(records) : 0,
        .expected_name = "e.jsonl",
        .expected = expected,
        .expected_len = expected ? strlen(expected) : 0,
    };
}

static void test_fixture_check(void **state) {
    (void)state;
    zf_script_t *s = load("f.lua", "local V = 'a'\n" SKIP_PROBE);
    size_t n = 99;
    zf_fixture_text_t fx = texts(NULL, NULL);
    assert_int_equal(zf_fixture_check(s, &fx, 0, &n, err, sizeof err), ZF_OK);
    assert_int_equal(n, 0);

    /* Matching results; comments and blank lines are not records. */
    fx = texts("# probe\n{\"key\":\"probe\"}\n\n{\"key\":\"k\"}\n",
               "{\"offset\":0,\"skip\":true}\n"
               "{\"offset\":1,\"ops\":[{\"op\":\"upsert\",\"path\":\"/t/k\","
               "\"data\":\"a\"}]}\n");
    assert_int_equal(zf_fixture_check(s, &fx, 0, &n, err, sizeof err), ZF_OK);
    assert_int_equal(n, 2);

    /* A difference names the expected file's line and both sides. */
    fx = texts("{\"key\":\"probe\"}\n{\"key\":\"k\"}\n",
               "{\"offset\":0,\"skip\":true}\n\n{\"offset\":1,\"skip\":true}\n");
    assert_int_equal(zf_fixture_check(s, &fx, 0, &n, err, sizeof err),
                     ZF_ERECORD);
    assert_string_equal(err, "e.jsonl:3: expected {\"offset\":1,\"skip\":true}, "
                             "got {\"offset\":1,\"ops\":[{\"op\":\"upsert\","
                             "\"path\":\"/t/k\",\"data\":\"a\"}]}");

    /* More expected lines than records. */
    fx = texts("{\"key\":\"probe\"}\n",
               "{\"offset\":0,\"skip\":true}\n{\"offset\":1,\"skip\":true}\n");
    assert_int_equal(zf_fixture_check(s, &fx, 0, &n, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "e.jsonl:2: expected {\"offset\":1,"
                                "\"skip\":true}, but the records ran out"));

    /* Records alone: each must transform without error. */
    zf_script_t *bad = load("g.lua", "return function(rec)\n"
                                     "  if rec.key == 'x' then error('no x') end\n"
                                     "end\n");
    fx = texts("{\"key\":\"a\"}\n{\"key\":\"x\"}\n", NULL);
    assert_int_equal(zf_fixture_check(bad, &fx, 0, &n, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "r.jsonl: record 2: "));
    assert_non_null(strstr(err, "g.lua:2: no x"));
    fx = texts("{\"key\":\"a\"}\n", NULL);
    assert_int_equal(zf_fixture_check(bad, &fx, 0, &n, err, sizeof err), ZF_OK);
    assert_int_equal(n, 1);

    /* Expected results without records; malformed lines. */
    fx = texts(NULL, "{\"offset\":0,\"skip\":true}\n");
    assert_int_equal(zf_fixture_check(s, &fx, 0, &n, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "expected results without records"));
    fx = texts("{\"key\":1}\n", NULL);
    assert_int_equal(zf_fixture_check(s, &fx, 0, &n, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "r.jsonl:1: "));
    fx = texts("{}\n", "{\"offset\":0,\n");
    assert_int_equal(zf_fixture_check(s, &fx, 0, &n, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "e.jsonl:1: "));
    zf_script_destroy(bad);
    zf_script_destroy(s);
}

static void test_fixture_files(void **state) {
    (void)state;
    write_temp("ff.records.jsonl", "{\"key\":\"probe\"}\n");
    write_temp("ff.expected.jsonl", "{\"offset\":0,\"skip\":true}\n");
    zf_script_t *s = load("ff.lua", "local V = 'a'\n" SKIP_PROBE);
    size_t n = 0;
    assert_int_equal(zf_fixture_check_files(s, zf_script_file(s), 0, &n, err,
                                            sizeof err),
                     ZF_OK);
    assert_int_equal(n, 1);
    write_temp("ff.expected.jsonl", "{\"offset\":0,\"error\":\"x\"}\n");
    assert_int_equal(zf_fixture_check_files(s, zf_script_file(s), 0, &n, err,
                                            sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "/ff.expected.jsonl:1: expected "));
    zf_script_destroy(s);
}

/* A config with one or two sections over the same directory as the
 * scripts; returns its path. */
static const char *write_config(const char *sections) {
    char text[2048];
    snprintf(text, sizeof text,
             "[kafka]\nbootstrap.servers = b\ngroup.id = g\n"
             "[zookeeper]\nconnect = 127.0.0.1:1\n%s",
             sections);
    return write_temp("set.ini", text);
}

static const char *version_of(zf_scriptset_t *set, const char *topic) {
    zf_script_t *s = zf_scriptset_for_topic(set, topic);
    return s ? zf_script_version(s) : NULL;
}

static void test_reloads(void **state) {
    (void)state;
    write_temp("r.lua", "local V = 'v1'\n" SKIP_PROBE);
    write_temp("r.records.jsonl", "{\"key\":\"probe\"}\n");
    write_temp("r.expected.jsonl", "{\"offset\":0,\"skip\":true}\n");
    const char *path = write_config("[script r]\nfile = r.lua\ntopics = t\n");
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    zf_scriptset_t *set;
    assert_int_equal(zf_scriptset_new(cfg, 0, &set, err, sizeof err), ZF_OK);
    char v1[32];
    snprintf(v1, sizeof v1, "%s", version_of(set, "t"));
    assert_null(zf_scriptset_for_topic(set, "other"));

    /* Unchanged text: nothing to swap. */
    zf_scriptset_reload_all(set);
    assert_int_equal(zf_scriptset_process(set), 0);

    /* Broken versions are rejected and counted; v1 keeps running. */
    const char *broken[] = {
        "return function(rec) end end\n",          /* syntax */
        "error('init fails')\n",                   /* raises at load */
        "return 42\n",                             /* no function */
        "local V = 'v2'\nreturn function(rec) return '/t/x', V end\n",
        /* ^ fails its fixture: the probe is not skipped */
    };
    for (size_t i = 0; i < 4; i++) {
        write_temp("r.lua", broken[i]);
        zf_scriptset_reload_all(set);
        assert_int_equal(zf_scriptset_process(set), 0);
        assert_string_equal(version_of(set, "t"), v1);
    }
    zf_scriptset_entry_t en = zf_scriptset_entry(set, 0);
    assert_int_equal(en.rejected, 4);
    assert_int_equal(en.reloads, 0);

    /* A good version is swapped in, with fresh state. */
    write_temp("r.lua", "local V = 'v3'\nn = (n or 0) + 1\n"
                        "return function(rec)\n"
                        "  if rec.key == 'probe' then return nil end\n"
                        "  return '/t/' .. rec.key, V .. n\nend\n");
    zf_scriptset_reload_all(set);
    assert_int_equal(zf_scriptset_process(set), 1);
    assert_string_not_equal(version_of(set, "t"), v1);
    zf_record_t rec = {.topic = "t", .key = "k", .key_len = 1};
    zf_oplist_t ops = {0};
    assert_int_equal(zf_script_transform(zf_scriptset_for_topic(set, "t"),
                                         &rec, &ops, err, sizeof err),
                     ZF_OK);
    assert_int_equal(ops.n, 1);
    /* Its top level ran once in this state: the fixture's run was in
     * another one. */
    assert_memory_equal(ops.ops[0].data, "v31", 3);
    zf_oplist_free(&ops);
    en = zf_scriptset_entry(set, 0);
    assert_int_equal(en.reloads, 1);
    uint64_t reloads, rejected;
    zf_scriptset_counts(set, &reloads, &rejected);
    assert_int_equal(reloads, 1);
    assert_int_equal(rejected, 4);
    zf_scriptset_destroy(set);
    zf_config_destroy(cfg);
}

/* A script whose every record takes 50 ms of CPU: well under its own
 * timeout_ms, slow only together. */
#define SLOW_SCRIPT                                                           \
    "return function(rec)\n"                                                  \
    "  local t = os.clock()\n"                                                \
    "  while os.clock() - t < 0.05 do end\n"                                  \
    "end\n"

/* Fixture records that each pass under timeout_ms but, 100 of them, take
 * 5 s together: refused at load (check) and at reload, once they pass
 * fixtures_timeout_ms, within it plus one record's limit, by a message
 * naming it; the running version stays. */
static void test_fixtures_time_bound(void **state) {
    (void)state;
    char records[4096] = "";
    for (int i = 0; i < 100; i++)
        strcat(records, "{\"key\":\"k\"}\n");
    write_temp("slow.records.jsonl", records);
    write_temp("slow.lua", SLOW_SCRIPT);
    const char *path = write_config("[script slow]\nfile = slow.lua\n"
                                    "topics = t\ntimeout_ms = 500\n"
                                    "fixtures_timeout_ms = 400\n");
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(cfg->scripts[0].fixtures_timeout_ms, 400);
    zf_scriptset_t *set;
    int64_t t0 = zf_now_ms();
    assert_int_equal(zf_scriptset_new(cfg, 0, &set, err, sizeof err),
                     ZF_ECONFIG);
    int64_t took = zf_now_ms() - t0;
    /* 400 ms, one record's 500 ms at most, and slack for a busy machine
     * or valgrind (it took 5 s and more before the bound). */
    if (took > 2400)
        fail_msg("refused after %lld ms", (long long)took);
    if (!strstr(err, "[script slow]: version ") ||
        !strstr(err, "fails its fixtures: ") ||
        !strstr(err, "slow.records.jsonl: stopped at record ") ||
        !strstr(err, "over fixtures_timeout_ms = 400 (all fixture records "
                     "together)"))
        fail_msg("unexpected: %s", err);

    /* At reload: the fast version runs, the slow one is refused as fast. */
    write_temp("slow.lua", "return function(rec) end\n");
    assert_int_equal(zf_scriptset_new(cfg, 0, &set, err, sizeof err), ZF_OK);
    char v1[32];
    snprintf(v1, sizeof v1, "%s", version_of(set, "t"));
    write_temp("slow.lua", SLOW_SCRIPT);
    zf_scriptset_reload_all(set);
    t0 = zf_now_ms();
    assert_int_equal(zf_scriptset_process(set), 0);
    took = zf_now_ms() - t0;
    if (took > 2400)
        fail_msg("reload refused after %lld ms", (long long)took);
    assert_string_equal(version_of(set, "t"), v1);
    assert_int_equal(zf_scriptset_entry(set, 0).rejected, 1);
    zf_scriptset_destroy(set);
    zf_config_destroy(cfg);
}

static void test_reconfigure(void **state) {
    (void)state;
    write_temp("a.lua", "local V = 'a'\n" SKIP_PROBE);
    write_temp("b.lua", "local V = 'b'\n" SKIP_PROBE);
    const char *path = write_config("[script a]\nfile = a.lua\ntopics = ta\n");
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    zf_scriptset_t *set;
    assert_int_equal(zf_scriptset_new(cfg, 0, &set, err, sizeof err), ZF_OK);
    zf_script_t *a = zf_scriptset_for_topic(set, "ta");

    /* Added section: its topic is new; the unchanged one keeps its script. */
    write_config("[script a]\nfile = a.lua\ntopics = ta\n"
                 "[script b]\nfile = b.lua\ntopics = tb\n");
    int topics_changed = 0;
    assert_int_equal(zf_scriptset_reconfigure(set, &topics_changed), 1);
    assert_true(topics_changed);
    assert_ptr_equal(zf_scriptset_for_topic(set, "ta"), a);
    assert_non_null(zf_scriptset_for_topic(set, "tb"));
    assert_int_equal(zf_scriptset_count(set), 2);

    /* A broken file, or a broken new script, changes nothing. */
    write_config("[script a]\nfile = a.lua\ntopics = ta\nbogus\n");
    assert_int_equal(zf_scriptset_reconfigure(set, &topics_changed), 0);
    write_temp("c.lua", "return 1\n");
    write_config("[script a]\nfile = a.lua\ntopics = ta\n"
                 "[script c]\nfile = c.lua\ntopics = tc\n");
    assert_int_equal(zf_scriptset_reconfigure(set, &topics_changed), 0);
    assert_int_equal(zf_scriptset_count(set), 2);
    assert_ptr_equal(zf_scriptset_for_topic(set, "ta"), a);
    assert_null(zf_scriptset_for_topic(set, "tc"));

    /* Changed section (new param): a new script; removed section: gone. */
    write_config("[script a]\nfile = a.lua\ntopics = ta\nparam.x = 1\n");
    assert_int_equal(zf_scriptset_reconfigure(set, &topics_changed), 1);
    assert_true(topics_changed);
    assert_ptr_not_equal(zf_scriptset_for_topic(set, "ta"), a);
    assert_null(zf_scriptset_for_topic(set, "tb"));
    assert_string_equal(zf_scriptset_config(set)->scripts[0].params[0].key,
                        "x");
    uint64_t reloads, rejected;
    zf_scriptset_counts(set, &reloads, &rejected);
    assert_int_equal(reloads, 1);
    assert_int_equal(rejected, 2);
    zf_scriptset_destroy(set);
    zf_config_destroy(cfg);
}

int main(void) {
    zf_log_set_level(ZF_LOG_ERROR + (getenv("VERBOSE") ? 3 : 0));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_check),
        cmocka_unit_test(test_fixture_files),
        cmocka_unit_test(test_reloads),
        cmocka_unit_test(test_reconfigure),
        cmocka_unit_test(test_fixtures_time_bound),
    };
    return cmocka_run_group_tests_name("scriptset", tests, NULL, NULL);
}

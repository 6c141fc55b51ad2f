/* Log lines: the text format (control characters escaped, so a message is
 * one line whatever it holds), the JSON format (escaping of quotes,
 * backslashes, control characters and bytes that are not UTF-8; cutting a
 * long message keeps the object whole), and the level and format names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "zkflow/log.h"

/* 2026-11-28T01:02:03.456Z */
static const struct timeval when = {.tv_sec = 1795827723, .tv_usec = 456789};

static char line[8192];

static const char *json(const char *component, const char *msg) {
    size_t n = zf_log_format_line(line, sizeof line, ZF_LOG_JSON, &when,
                                  ZF_LOG_WARN, component, msg);
    assert_int_equal(n, strlen(line));
    assert_true(n > 0 && line[n - 1] == '\n');
    return line;
}

/* The line must parse as one JSON object with msg equal to `want`. */
static void expect_msg(const char *want) {
    json_error_t jerr;
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        fail_msg("not JSON (%s): %s", jerr.text, line);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), want);
    assert_int_equal(json_object_size(o), 4);
    json_decref(o);
}

static void test_text(void **state) {
    (void)state;
    zf_log_format_line(line, sizeof line, ZF_LOG_TEXT, &when, ZF_LOG_INFO,
                       "engine", "running: 1 script(s)\n");
    assert_string_equal(line, "2026-11-28T01:02:03.456Z INFO  engine: "
                              "running: 1 script(s)\n");
}

static const char *text(const char *component, const char *msg) {
    size_t n = zf_log_format_line(line, sizeof line, ZF_LOG_TEXT, &when,
                                  ZF_LOG_ERROR, component, msg);
    assert_int_equal(n, strlen(line));
    assert_true(n > 0 && line[n - 1] == '\n');
    /* One line, whatever the message holds. */
    assert_int_equal(strcspn(line, "\n\r"), n - 1);
    return line;
}

/* A record's value that reaches an error message cannot forge a line. */
static void test_text_escaping(void **state) {
    (void)state;
    const char *forged = "2026-11-28T01:02:03.456Z INFO  engine: all good";
    char msg[256];
    snprintf(msg, sizeof msg, "devices.lua:7: bad id 'x\n%s\r\n%s'", forged,
             forged);
    text("script", msg);
    assert_string_equal(line,
                        "2026-11-28T01:02:03.456Z ERROR script: devices.lua:7: "
                        "bad id 'x\\n2026-11-28T01:02:03.456Z INFO  engine: "
                        "all good\\r\\n2026-11-28T01:02:03.456Z INFO  "
                        "engine: all good'\n");

    /* Other C0 controls, DEL, C1 controls (terminal escapes such as CSI,
     * U+009B) and bytes that are not UTF-8 become \xHH; tabs \t;
     * backslashes and well-formed UTF-8 stay as they are. */
    text("engine", "a\tb\x01\x1b[31mred\x7f c\xc2\x9b" "2J \xff\xc0 "
                   "caf\xc3\xa9 \xe2\x82\xac C:\\x\\n");
    assert_string_equal(line,
                        "2026-11-28T01:02:03.456Z ERROR engine: a\\tb\\x01"
                        "\\x1b[31mred\\x7f c\\xc2\\x9b2J \\xff\\xc0 "
                        "caf\xc3\xa9 \xe2\x82\xac C:\\x\\n\n");

    /* The component too. */
    text("eng\nine", "m");
    assert_string_equal(line, "2026-11-28T01:02:03.456Z ERROR eng\\nine: m\n");
}

/* Cutting a long text line never splits an escape and keeps the newline. */
static void test_text_cut(void **state) {
    (void)state;
    char small[160];
    char msg[1000];
    for (size_t i = 0; i < sizeof msg - 1; i++)
        msg[i] = "\n\x01\xc3\xa9x"[i % 5];
    msg[sizeof msg - 1] = '\0';
    for (size_t cap = 128; cap <= sizeof small; cap++) {
        size_t n = zf_log_format_line(small, cap, ZF_LOG_TEXT, &when,
                                      ZF_LOG_ERROR, "engine", msg);
        assert_true(n < cap);
        assert_int_equal(n, strlen(small));
        assert_int_equal(strcspn(small, "\n"), n - 1);
        /* The body is whole escapes: \n, \x01, e-acute, x, in turn. */
        const char *b = strstr(small, "engine: ") + 8;
        for (size_t k = 0; b[0] != '\n'; k++) {
            static const char *const unit[] = {"\\n", "\\x01",
                                               "\xc3\xa9", "x"};
            const char *u = unit[k % 4];
            if (strncmp(b, u, strlen(u)) != 0)
                fail_msg("cap %zu: '%s' at '%s'", cap, u, b);
            b += strlen(u);
        }
    }
}

static void test_json_fields(void **state) {
    (void)state;
    json("zookeeper", "connection lost\n");
    assert_string_equal(line, "{\"ts\":\"2026-11-28T01:02:03.456Z\","
                              "\"level\":\"warn\",\"component\":\"zookeeper\","
                              "\"msg\":\"connection lost\"}\n");
    expect_msg("connection lost");
}

static void test_json_escaping(void **state) {
    (void)state;
    json("engine", "say \"hi\" \\ path C:\\x");
    assert_non_null(strstr(line, "\"msg\":\"say \\\"hi\\\" \\\\ path C:\\\\x\""));
    expect_msg("say \"hi\" \\ path C:\\x");

    json("engine", "a\nb\tc\rd\be\ff\x01g\x1fh\x7fi");
    assert_non_null(strstr(line, "a\\nb\\tc\\rd\\be\\ff\\u0001g\\u001fh\\u007fi"));
    expect_msg("a\nb\tc\rd\be\ff\x01g\x1fh\x7fi");

    /* C1 controls (U+0080-U+009F) are control characters too. */
    json("engine", "csi \xc2\x9b" "2J nel \xc2\x85 a0 \xc2\xa0");
    assert_non_null(strstr(line, "csi \\u009b2J nel \\u0085 a0 \xc2\xa0\""));
    expect_msg("csi \xc2\x9b" "2J nel \xc2\x85 a0 \xc2\xa0");

    /* Well-formed UTF-8 passes as it is. */
    json("engine", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    expect_msg("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");

    /* Stray, overlong, surrogate and cut sequences become U+FFFD. */
    json("engine", "x\xff y\xc0\xaf z\xed\xa0\x80 w\xe2\x82");
    assert_non_null(strstr(line, "x\\ufffd y\\ufffd\\ufffd "
                                 "z\\ufffd\\ufffd\\ufffd w\\ufffd\\ufffd"));
    expect_msg("x\xef\xbf\xbd y\xef\xbf\xbd\xef\xbf\xbd "
               "z\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
               "w\xef\xbf\xbd\xef\xbf\xbd");

    json("eng\"ine", "m");
    assert_non_null(strstr(line, "\"component\":\"eng\\\"ine\""));
}

/* A message longer than the buffer is cut between characters; the line is
 * still one JSON object, and never longer than the buffer. */
static void test_json_cut(void **state) {
    (void)state;
    char small[160];
    char msg[1000];
    for (size_t i = 0; i < sizeof msg - 1; i++)
        msg[i] = "\"\\\n\xc3\xa9"[i % 5];
    msg[sizeof msg - 1] = '\0';
    for (size_t cap = 128; cap <= sizeof small; cap++) {
        size_t n = zf_log_format_line(small, cap, ZF_LOG_JSON, &when,
                                      ZF_LOG_ERROR, "engine", msg);
        assert_true(n < cap);
        assert_int_equal(n, strlen(small));
        json_error_t jerr;
        json_t *o = json_loads(small, 0, &jerr);
        if (!o)
            fail_msg("cap %zu: not JSON (%s): %s", cap, jerr.text, small);
        json_decref(o);
    }
    size_t n = zf_log_format_line(small, 128, ZF_LOG_TEXT, &when,
                                  ZF_LOG_ERROR, "engine", msg);
    assert_true(n < 128 && small[n - 1] == '\n');
}

static void test_names(void **state) {
    (void)state;
    zf_log_level_t l = ZF_LOG_INFO;
    zf_log_format_t f = ZF_LOG_TEXT;
    assert_int_equal(zf_log_parse_level("debug", &l), 0);
    assert_int_equal(l, ZF_LOG_DEBUG);
    assert_int_equal(zf_log_parse_level("error", &l), 0);
    assert_int_equal(l, ZF_LOG_ERROR);
    assert_int_equal(zf_log_parse_level("verbose", &l), -1);
    assert_int_equal(l, ZF_LOG_ERROR);
    assert_int_equal(zf_log_parse_format("json", &f), 0);
    assert_int_equal(f, ZF_LOG_JSON);
    assert_int_equal(zf_log_parse_format("xml", &f), -1);
    assert_int_equal(f, ZF_LOG_JSON);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_text_escaping),
        cmocka_unit_test(test_text_cut),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_cut),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}

/* JSON lines: record lines in (defaults, every field, every malformed kind),
 * result lines out (each op field rule, skip, error, binary data), and the
 * semantic comparison used by `zkflow test --expect`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "zkflow/jsonl.h"
#include "zkflow/script.h"

static char err[1024];

/* Parse `line` (index 7) and expect success with a record. */
static zf_jsonl_record_t *parse(const char *line) {
    zf_jsonl_record_t *r = NULL;
    zf_err_t rc = zf_jsonl_parse_record(line, strlen(line), 7, &r, err,
                                        sizeof err);
    if (rc != ZF_OK)
        fail_msg("'%s': %s", line, err);
    assert_non_null(r);
    return r;
}

/* Parse `line` and expect ZF_ERECORD with a message containing `what`. */
static void parse_error(const char *line, const char *what) {
    zf_jsonl_record_t *r = (zf_jsonl_record_t *)1;
    err[0] = '\0';
    assert_int_equal(
        zf_jsonl_parse_record(line, strlen(line), 0, &r, err, sizeof err),
        ZF_ERECORD);
    assert_null(r);
    if (!strstr(err, what))
        fail_msg("'%s': expected '%s' in '%s'", line, what, err);
}

static void test_defaults(void **state) {
    (void)state;
    zf_jsonl_record_t *r = parse("{}\n");
    assert_string_equal(r->rec.topic, "test");
    assert_int_equal(r->rec.partition, 0);
    assert_int_equal(r->rec.offset, 7); /* the index */
    assert_int_equal(r->rec.timestamp, -1);
    assert_null(r->rec.key);
    assert_int_equal(r->rec.key_len, 0);
    assert_null(r->rec.value);
    assert_int_equal(r->rec.value_len, 0);
    assert_int_equal(r->rec.nheaders, 0);
    zf_jsonl_record_free(r);
}

static void test_every_field(void **state) {
    (void)state;
    zf_jsonl_record_t *r = parse(
        "{\"topic\":\"devices\",\"partition\":3,\"offset\":42,"
        "\"timestamp\":1795820543500,\"key\":\"d-1\",\"value\":\"v\\u0000w\","
        "\"headers\":[{\"name\":\"a\",\"value\":\"1\"},{\"name\":\"b\"},"
        "{\"name\":\"a\",\"value\":null},{\"name\":\"c\",\"value\":\"\"}]}\r\n");
    assert_string_equal(r->rec.topic, "devices");
    assert_int_equal(r->rec.partition, 3);
    assert_int_equal(r->rec.offset, 42);
    assert_int_equal(r->rec.timestamp, 1795820543500LL);
    assert_int_equal(r->rec.key_len, 3);
    assert_memory_equal(r->rec.key, "d-1", 3);
    assert_int_equal(r->rec.value_len, 3); /* binary-safe: NUL inside */
    assert_memory_equal(r->rec.value, "v\0w", 3);
    assert_int_equal(r->rec.nheaders, 4); /* order and duplicates kept */
    assert_string_equal(r->rec.headers[0].name, "a");
    assert_int_equal(r->rec.headers[0].len, 1);
    assert_memory_equal(r->rec.headers[0].value, "1", 1);
    assert_string_equal(r->rec.headers[1].name, "b");
    assert_null(r->rec.headers[1].value);
    assert_string_equal(r->rec.headers[2].name, "a");
    assert_null(r->rec.headers[2].value);
    assert_string_equal(r->rec.headers[3].name, "c");
    assert_non_null(r->rec.headers[3].value); /* empty, not null */
    assert_int_equal(r->rec.headers[3].len, 0);
    zf_jsonl_record_free(r);
}

static void test_headers_object(void **state) {
    (void)state;
    zf_jsonl_record_t *r =
        parse("{\"headers\":{\"trace\":\"t-1\",\"empty\":null,\"z\":\"é\"}}");
    assert_int_equal(r->rec.nheaders, 3); /* in file order */
    assert_string_equal(r->rec.headers[0].name, "trace");
    assert_memory_equal(r->rec.headers[0].value, "t-1", 3);
    assert_string_equal(r->rec.headers[1].name, "empty");
    assert_null(r->rec.headers[1].value);
    assert_string_equal(r->rec.headers[2].name, "z");
    assert_int_equal(r->rec.headers[2].len, 2);
    zf_jsonl_record_free(r);

    r = parse("{\"headers\":[]}");
    assert_int_equal(r->rec.nheaders, 0);
    zf_jsonl_record_free(r);
    r = parse("{\"headers\":{}}");
    assert_int_equal(r->rec.nheaders, 0);
    zf_jsonl_record_free(r);
}

static void test_null_key_value(void **state) {
    (void)state;
    zf_jsonl_record_t *r =
        parse("{\"key\":null,\"value\":null,\"timestamp\":null}");
    assert_null(r->rec.key);
    assert_null(r->rec.value);
    assert_int_equal(r->rec.timestamp, -1);
    zf_jsonl_record_free(r);

    r = parse("{\"key\":\"\",\"value\":\"\",\"timestamp\":-1}");
    assert_non_null(r->rec.key); /* empty is not null */
    assert_int_equal(r->rec.key_len, 0);
    assert_non_null(r->rec.value);
    assert_int_equal(r->rec.value_len, 0);
    assert_int_equal(r->rec.timestamp, -1);
    zf_jsonl_record_free(r);
}

static void value_is(const char *line, const char *value) {
    zf_jsonl_record_t *r = parse(line);
    assert_non_null(r->rec.value);
    assert_int_equal(r->rec.value_len, strlen(value));
    assert_memory_equal(r->rec.value, value, strlen(value));
    assert_int_equal(((const char *)r->rec.value)[r->rec.value_len], '\0');
    zf_jsonl_record_free(r);
}

static void test_json_values(void **state) {
    (void)state;
    /* Objects and arrays become compact JSON text, keys in file order. */
    value_is("{\"value\": {\"id\": \"d-1\", \"type\": \"status\", "
                 "\"tags\": [1, 2.5, true, null, {}], \"a\": \"\\\"é\\n\"}}",
                 "{\"id\":\"d-1\",\"type\":\"status\",\"tags\":[1,2.5,true,"
                 "null,{}],\"a\":\"\\\"é\\n\"}");
    value_is("{\"value\":[]}", "[]");
    /* Numbers keep the form a person wrote, not 21.300000000000001. */
    value_is("{\"value\":{\"t\":21.3,\"u\":0.1,\"v\":1e300,\"w\":2.0}}",
                 "{\"t\":21.3,\"u\":0.1,\"v\":1e+300,\"w\":2.0}");
    value_is("{\"value\":42}", "42");
    value_is("{\"value\":false}", "false");
    value_is("{\"value\":\"plain text\"}", "plain text");
}

static void test_base64(void **state) {
    (void)state;
    zf_jsonl_record_t *r =
        parse("{\"key_base64\":\"AP8=\",\"value_base64\":\"aGVsbG8\"}");
    assert_int_equal(r->rec.key_len, 2);
    assert_memory_equal(r->rec.key, "\x00\xff", 2);
    assert_int_equal(r->rec.value_len, 5);
    assert_memory_equal(r->rec.value, "hello", 5);
    zf_jsonl_record_free(r);

    const char *samples[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *coded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                           "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char *t = zf_jsonl_base64_encode(samples[i], strlen(samples[i]));
        assert_string_equal(t, coded[i]);
        size_t n;
        char *back = zf_jsonl_base64_decode(t, strlen(t), &n);
        assert_int_equal(n, strlen(samples[i]));
        assert_memory_equal(back, samples[i], n);
        free(back);
        free(t);
    }
    size_t n;
    assert_null(zf_jsonl_base64_decode("a", 1, &n));
    assert_null(zf_jsonl_base64_decode("ab!d", 4, &n));
}

static void test_blank_and_comments(void **state) {
    (void)state;
    const char *skipped[] = {"", "\n", "  \t\r\n", "# a comment",
                             "   # indented {\"value\":1}"};
    for (size_t i = 0; i < sizeof skipped / sizeof skipped[0]; i++) {
        zf_jsonl_record_t *r = (zf_jsonl_record_t *)1;
        assert_true(zf_jsonl_is_blank(skipped[i], strlen(skipped[i])));
        assert_int_equal(zf_jsonl_parse_record(skipped[i], strlen(skipped[i]),
                                               0, &r, err, sizeof err),
                         ZF_OK);
        assert_null(r);
    }
    assert_false(zf_jsonl_is_blank(" {}", 3));
}

static void test_malformed(void **state) {
    (void)state;
    parse_error("{\"value\": \"x\"", "invalid JSON at column");
    parse_error("{\"value\": 'x'}", "invalid JSON at column 11");
    parse_error("{} {}", "invalid JSON");
    parse_error("[1, 2]", "a record must be a JSON object, not an array");
    parse_error("\"text\"", "a record must be a JSON object, not a string");
    parse_error("{\"value\":\"a\",\"value\":\"b\"}", "duplicate");
    parse_error("{\"vaule\":\"x\"}", "unknown field 'vaule'");
    parse_error("{\"value\":\"\\ud800\"}", "invalid JSON");
}

static void test_wrong_types(void **state) {
    (void)state;
    parse_error("{\"topic\":1}", "topic must be a string, not an integer");
    parse_error("{\"topic\":\"\"}", "topic must be a non-empty string");
    parse_error("{\"topic\":\"a\\u0000b\"}", "without NUL");
    parse_error("{\"partition\":\"1\"}",
                "partition must be an integer, not a string");
    parse_error("{\"partition\":-1}", "partition -1 is out of range");
    parse_error("{\"partition\":2147483648}", "out of range");
    parse_error("{\"offset\":1.5}",
                "offset must be an integer, not a number with a fraction");
    parse_error("{\"offset\":-1}", "offset -1 is out of range");
    parse_error("{\"timestamp\":-2}", "timestamp -2 is out of range");
    parse_error("{\"timestamp\":\"now\"}", "timestamp must be an integer");
    parse_error("{\"key\":{}}", "key must be a string or null, not an object");
    parse_error("{\"key\":1}", "key must be a string or null, not an integer");
    parse_error("{\"key_base64\":\"!!\"}", "key_base64 is not valid base64");
    parse_error("{\"value_base64\":[]}",
                "value_base64 must be a string or null, not an array");
    parse_error("{\"value\":\"a\",\"value_base64\":\"YQ==\"}",
                "value and value_base64 cannot both be given");
    parse_error("{\"headers\":\"a=b\"}",
                "headers must be an array of {\"name\": ..., \"value\": ...} "
                "or an object, not a string");
    parse_error("{\"headers\":[\"a\"]}",
                "headers[0] must be an object with name and value");
    parse_error("{\"headers\":[{\"name\":\"a\"},{\"value\":\"b\"}]}",
                "headers[1] has no name");
    parse_error("{\"headers\":[{\"name\":1}]}",
                "headers[0]: name must be a string, not an integer");
    parse_error("{\"headers\":[{\"name\":\"a\",\"value\":1}]}",
                "headers[0]: header value must be a string or null, not an "
                "integer");
    parse_error("{\"headers\":[{\"name\":\"a\",\"vlue\":\"x\"}]}",
                "headers[0]: unknown field 'vlue'");
    parse_error("{\"headers\":{\"a\":true}}",
                "headers.a: header value must be a string or null, not a "
                "boolean");
    parse_error("{\"headers\":[{\"name\":\"a\\u0000\"}]}",
                "header name contains a NUL byte");
}

/* ------------------------------------------------------------------------
 * Result lines */

static zf_op_t *push(zf_oplist_t *l, zf_op_type_t type, const char *path,
                     const char *data, size_t datalen) {
    zf_op_t *op = zf_oplist_push(l);
    assert_non_null(op);
    op->type = type;
    op->path = strdup(path);
    if (data) {
        op->data = malloc(datalen + 1);
        memcpy(op->data, data, datalen);
        op->data[datalen] = '\0';
        op->datalen = datalen;
    }
    return op;
}

static void expect_line(int64_t offset, const zf_oplist_t *l,
                        const char *error, const char *want) {
    char *line = zf_jsonl_format_result(offset, l, error);
    assert_non_null(line);
    assert_string_equal(line, want);
    free(line);
}

static void test_format_skip_and_error(void **state) {
    (void)state;
    zf_oplist_t l = {0};
    expect_line(3, &l, NULL, "{\"offset\":3,\"skip\":true}");
    expect_line(4, NULL, NULL, "{\"offset\":4,\"skip\":true}");
    expect_line(9007199254740993LL, NULL, NULL,
                "{\"offset\":9007199254740993,\"skip\":true}");
    expect_line(5, NULL, "t.lua:4: bad \"q\"\\ \n\ttab",
                "{\"offset\":5,\"error\":\"t.lua:4: bad \\\"q\\\"\\\\ "
                "\\n\\ttab\"}");
    /* An error wins over ops; invalid UTF-8 in it becomes U+FFFD. */
    push(&l, ZF_OP_SET, "/a", NULL, 0);
    expect_line(6, &l, "t.lua:1: not a number: \xff\xfe!",
                "{\"offset\":6,\"error\":\"t.lua:1: not a number: "
                "\xef\xbf\xbd\xef\xbf\xbd!\"}");
    zf_oplist_free(&l);
}

/* `zkflow test` never prints two different invalid paths alike: the
 * result lines of a script that returns each of them differ. */
static void test_invalid_paths_print_apart(void **state) {
    (void)state;
    static const struct {
        const char *p;
        size_t len;
    } paths[] = {
        {"/a\xff", 3},         {"/a\xfe", 3},    {"/a\xef\xbf\xbd", 5},
        {"/a\\xff", 6},        {"/a\x00", 3},    {"/a\\x00", 6},
        {"/a\x01", 3},         {"/a\x7f", 3},    {"/a\xc2\x80", 4},
        {"/a\xed\xa0\x80", 5}, {"/a\xed\xa0", 4}, {"/a\n", 3},
        {"/a\\n", 4},          {"/a\\", 3},      {"/a\\\\", 4},
    };
    enum { N = sizeof paths / sizeof *paths };
    const char *file = write_temp("p.lua", "return function(r) return "
                                           "r.key, 'v' end\n");
    zf_script_t *s = zf_script_new("p", file, &zf_script_opts_default, err,
                                   sizeof err);
    assert_non_null(s);
    char *lines[N];
    for (size_t i = 0; i < N; i++) {
        zf_record_t rec = {.topic = "t", .key = paths[i].p,
                           .key_len = paths[i].len, .timestamp = -1};
        zf_oplist_t l = {0};
        zf_err_t rc = zf_script_transform(s, &rec, &l, err, sizeof err);
        lines[i] = zf_jsonl_format_result(0, &l, rc == ZF_OK ? NULL : err);
        assert_non_null(lines[i]);
        zf_oplist_free(&l);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = i + 1; j < N; j++)
            if (strcmp(lines[i], lines[j]) == 0)
                fail_msg("paths %zu and %zu both print as %s", i, j,
                         lines[i]);
    for (size_t i = 0; i < N; i++)
        free(lines[i]);
    zf_script_destroy(s);
}

static void test_format_ops(void **state) {
    (void)state;
    zf_oplist_t l = {0};
    push(&l, ZF_OP_UPSERT, "/devices/d-1/state", "{\"on\":true}", 11);
    expect_line(0, &l, NULL,
                "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":\"/devices/"
                "d-1/state\",\"data\":\"{\\\"on\\\":true}\"}]}");
    zf_oplist_clear(&l);

    /* No data: no "data" key; empty data: "data":"". */
    push(&l, ZF_OP_CREATE, "/a", NULL, 0);
    push(&l, ZF_OP_CREATE, "/b", "", 0);
    /* version only when not ZF_VERSION_ANY (0 is a real version) */
    push(&l, ZF_OP_SET, "/c", "x", 1)->version = 0;
    push(&l, ZF_OP_SET, "/d", "y", 1);
    push(&l, ZF_OP_CHECK, "/e", NULL, 0)->version = 7;
    zf_op_t *op = push(&l, ZF_OP_DELETE, "/f", NULL, 0);
    op->recursive = 1;
    op->version = 3;
    push(&l, ZF_OP_DELETE, "/g", NULL, 0);
    /* mode only for create, and not when persistent */
    push(&l, ZF_OP_CREATE, "/h-", "s", 1)->mode = ZF_MODE_SEQUENTIAL;
    push(&l, ZF_OP_CREATE, "/i", NULL, 0)->mode = ZF_MODE_CONTAINER;
    op = push(&l, ZF_OP_CREATE, "/j", "t", 1);
    op->mode = ZF_MODE_TTL;
    op->ttl_ms = 30000;
    expect_line(
        12, &l, NULL,
        "{\"offset\":12,\"ops\":["
        "{\"op\":\"create\",\"path\":\"/a\"},"
        "{\"op\":\"create\",\"path\":\"/b\",\"data\":\"\"},"
        "{\"op\":\"set\",\"path\":\"/c\",\"data\":\"x\",\"version\":0},"
        "{\"op\":\"set\",\"path\":\"/d\",\"data\":\"y\"},"
        "{\"op\":\"check\",\"path\":\"/e\",\"version\":7},"
        "{\"op\":\"delete\",\"path\":\"/f\",\"version\":3,\"recursive\":true},"
        "{\"op\":\"delete\",\"path\":\"/g\"},"
        "{\"op\":\"create\",\"path\":\"/h-\",\"data\":\"s\","
        "\"mode\":\"sequential\"},"
        "{\"op\":\"create\",\"path\":\"/i\",\"mode\":\"container\"},"
        "{\"op\":\"create\",\"path\":\"/j\",\"data\":\"t\",\"mode\":\"ttl\","
        "\"ttl\":30000}]}");
    zf_oplist_free(&l);
}

static void test_format_binary(void **state) {
    (void)state;
    zf_oplist_t l = {0};
    /* Valid UTF-8, NUL included, stays text. */
    push(&l, ZF_OP_UPSERT, "/é", "a\0b é\x7f", 7);
    /* Anything else is base64. */
    push(&l, ZF_OP_UPSERT, "/bin", "\x00\xff\xfe", 3);
    push(&l, ZF_OP_UPSERT, "/overlong", "\xc0\xaf", 2);
    push(&l, ZF_OP_UPSERT, "/surrogate", "\xed\xa0\x80", 3);
    expect_line(1, &l, NULL,
                "{\"offset\":1,\"ops\":["
                "{\"op\":\"upsert\",\"path\":\"/é\",\"data\":\"a\\u0000b "
                "é\x7f\"},"
                "{\"op\":\"upsert\",\"path\":\"/bin\",\"data_base64\":\"AP/+\"},"
                "{\"op\":\"upsert\",\"path\":\"/overlong\","
                "\"data_base64\":\"wK8=\"},"
                "{\"op\":\"upsert\",\"path\":\"/surrogate\","
                "\"data_base64\":\"7aCA\"}]}");
    zf_oplist_free(&l);
}

/* ------------------------------------------------------------------------
 * Comparison */

static int eq(const char *actual, const char *expected) {
    int rc = zf_jsonl_equal(actual, expected, err, sizeof err);
    assert_true(rc == 0 || rc == 1);
    return rc;
}

static void test_equal(void **state) {
    (void)state;
    const char *a = "{\"offset\":1,\"ops\":[{\"op\":\"set\",\"path\":\"/a\","
                    "\"data\":\"x\",\"version\":2}]}";
    assert_true(eq(a, a));
    /* Key order and spacing do not matter. */
    assert_true(eq(a, " { \"ops\" : [ {\"version\":2, \"data\":\"x\", "
                      "\"path\":\"/a\", \"op\":\"set\"} ], \"offset\": 1 } "));
    /* Values, missing and extra keys, and op order do. */
    assert_false(eq(a, "{\"offset\":1,\"ops\":[{\"op\":\"set\",\"path\":\"/a\","
                       "\"data\":\"x\",\"version\":3}]}"));
    assert_false(eq(a, "{\"offset\":1,\"ops\":[{\"op\":\"set\",\"path\":\"/a\","
                       "\"data\":\"x\"}]}"));
    assert_false(eq(a, "{\"offset\":1,\"ops\":[{\"op\":\"set\",\"path\":\"/a\","
                       "\"data\":\"x\",\"version\":2,\"mode\":\"ttl\"}]}"));
    assert_false(eq(a, "{\"offset\":2,\"ops\":[{\"op\":\"set\",\"path\":\"/a\","
                       "\"data\":\"x\",\"version\":2}]}"));
    assert_false(eq("{\"offset\":0,\"ops\":[{\"op\":\"delete\",\"path\":\"/a\"},"
                    "{\"op\":\"delete\",\"path\":\"/b\"}]}",
                    "{\"offset\":0,\"ops\":[{\"op\":\"delete\",\"path\":\"/b\"},"
                    "{\"op\":\"delete\",\"path\":\"/a\"}]}"));
    assert_true(eq("{\"offset\":0,\"skip\":true}", "{\"skip\":true,\"offset\":0}"));
    assert_false(eq("{\"offset\":0,\"skip\":true}", "{\"offset\":0,\"ops\":[]}"));
    assert_true(eq("{\"offset\":0,\"error\":\"f.lua:3: boom\"}",
                   "{\"error\":\"f.lua:3: boom\",\"offset\":0}"));
    assert_false(eq("{\"offset\":0,\"error\":\"f.lua:3: boom\"}",
                    "{\"offset\":0,\"error\":\"f.lua:4: boom\"}"));
    /* An actual line that is not JSON equals nothing. */
    assert_false(eq("{oops", "{}"));
}

static void test_equal_json_data(void **state) {
    (void)state;
    const char *a = "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":\"/a\","
                    "\"data\":\"{\\\"status\\\":\\\"on\\\",\\\"at\\\":5}\"}]}";
    /* JSON payloads compare as documents: key order, spacing, ... */
    assert_true(eq(a, "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":\"/a\","
                      "\"data\":\"{\\\"at\\\": 5, \\\"status\\\": \\\"on\\\"}\"}]}"));
    /* ... or written unquoted in the expected line. */
    assert_true(eq(a, "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":\"/a\","
                      "\"data\":{\"at\":5,\"status\":\"on\"}}]}"));
    assert_false(eq(a, "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":\"/a\","
                       "\"data\":{\"at\":6,\"status\":\"on\"}}]}"));
    assert_false(eq(a, "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":\"/a\","
                       "\"data\":{\"at\":5}}]}"));
    /* Text that is not JSON compares as text. */
    const char *t = "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":\"/a\","
                    "\"data\":\"on\"}]}";
    assert_true(eq(t, t));
    assert_false(eq(t, "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":"
                       "\"/a\",\"data\":\"\\\"on\\\"\"}]}"));
    assert_false(eq(t, "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":"
                       "\"/a\",\"data\":\"off\"}]}"));
    /* A JSON string document is not the bare text. */
    const char *q = "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":\"/a\","
                    "\"data\":\"\\\"on\\\"\"}]}";
    assert_true(eq(q, "{\"offset\":0,\"ops\":[{\"op\":\"upsert\",\"path\":"
                      "\"/a\",\"data\":\" \\\"on\\\" \"}]}"));
    assert_false(eq(q, t));
    /* Numbers: 1 and 1.0 differ, as they do in the bytes. */
    assert_false(eq("{\"ops\":[{\"data\":\"1\"}]}", "{\"ops\":[{\"data\":\"1.0\"}]}"));
    assert_true(eq("{\"ops\":[{\"data\":\"1\"}]}", "{\"ops\":[{\"data\":1}]}"));
}

static void test_equal_bad_expected(void **state) {
    (void)state;
    assert_int_equal(zf_jsonl_equal("{}", "{\"offset\":", err, sizeof err), -1);
    assert_non_null(strstr(err, "invalid JSON at column"));
    assert_int_equal(zf_jsonl_equal("{}", "", err, sizeof err), -1);
}

/* What is formatted compares equal to itself after a reparse, with keys
 * shuffled: a round trip through the expected-file format. */
static void test_round_trip(void **state) {
    (void)state;
    zf_oplist_t l = {0};
    push(&l, ZF_OP_UPSERT, "/bin", "\x01\xff", 2);
    zf_op_t *op = push(&l, ZF_OP_CREATE, "/t", "{\"b\":1,\"a\":[2]}", 15);
    op->mode = ZF_MODE_TTL;
    op->ttl_ms = 5;
    char *line = zf_jsonl_format_result(0, &l, NULL);
    assert_true(eq(line, line));
    assert_true(eq(line, "{\"ops\":[{\"data_base64\":\"Af8=\",\"path\":\"/bin\","
                         "\"op\":\"upsert\"},{\"ttl\":5,\"mode\":\"ttl\","
                         "\"data\":{\"a\":[2],\"b\":1},\"path\":\"/t\","
                         "\"op\":\"create\"}],\"offset\":0}"));
    free(line);
    zf_oplist_free(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_headers_object),
        cmocka_unit_test(test_null_key_value),
        cmocka_unit_test(test_json_values),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_blank_and_comments),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_format_skip_and_error),
        cmocka_unit_test(test_invalid_paths_print_apart),
        cmocka_unit_test(test_format_ops),
        cmocka_unit_test(test_format_binary),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_equal_json_data),
        cmocka_unit_test(test_equal_bad_expected),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests_name("jsonl", tests, NULL, NULL);
}

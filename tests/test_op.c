/* Op validation: paths, roots, names, size limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zkflow/op.h"

/* Rules of a root, every op allowed, no reserved subtree. */
#define ROOT(r) (&(zf_op_rules_t){.root = (r), .allowed = ZF_OP_ALL})

static int path_ok(const char *p) {
    char err[128];
    return zf_path_check(p, strlen(p), err, sizeof err) == ZF_OK;
}

static void test_paths(void **state) {
    (void)state;
    assert_true(path_ok("/"));
    assert_true(path_ok("/a"));
    assert_true(path_ok("/devices/d-1/state"));
    assert_true(path_ok("/a.b/..c/é"));
    assert_false(path_ok(""));
    assert_false(path_ok("a/b"));
    assert_false(path_ok("/a/"));
    assert_false(path_ok("/a//b"));
    assert_false(path_ok("/a/./b"));
    assert_false(path_ok("/a/.."));
    assert_false(path_ok("/a\nb"));
    char err[128];
    assert_int_equal(zf_path_check("/a\0b", 4, err, sizeof err), ZF_ERECORD);
    assert_string_equal(err, "path has a NUL byte at byte 2");
}

/* What the ZooKeeper 3.8 server refuses, and what it takes (each checked
 * against a real server with zoo_create: ZBADARGUMENTS, or created). */
static void test_paths_zookeeper_refuses(void **state) {
    (void)state;
    static const char *const refused[] = {
        "/a\x7f",                 /* DEL */
        "/a\xc2\x80",             /* U+0080, C1 control */
        "/a\xc2\x9f",             /* U+009F */
        "/a\xe9",                 /* not UTF-8: a lone lead byte */
        "/a\xff",                 /* not UTF-8 */
        "/a\x80",                 /* not UTF-8: a lone continuation byte */
        "/a\xc0\x80",             /* overlong NUL */
        "/a\xe0\x80\xaf",         /* overlong '/' */
        "/a\xed\xa0\x80",         /* a surrogate, encoded */
        "/a\xee\x80\x80",         /* U+E000, private use */
        "/a\xef\xa3\xbf",         /* U+F8FF */
        "/a\xef\xbf\xb0",         /* U+FFF0 */
        "/a\xef\xbf\xbd",         /* U+FFFD */
        "/a\xef\xbf\xbf",         /* U+FFFF */
        "/a\xf0\x9f\x98\x80",     /* U+1F600: a surrogate pair in UTF-16 */
        "/a\xf4\x90\x80\x80",     /* above U+10FFFF */
        "/a\xc3",                 /* cut short */
        "/a\xe2\x82",             /* cut short */
    };
    static const char *const taken[] = {
        "/a\xc2\xa0",     /* U+00A0 */
        "/a\xc3\xa9",     /* U+00E9 */
        "/a\xed\x9f\xbf", /* U+D7FF */
        "/a\xef\xa4\x80", /* U+F900 */
        "/a\xef\xbf\xaf", /* U+FFEF */
        "/a\xe2\x82\xac/b\xe6\x97\xa5\xe6\x9c\xac", /* U+20AC, U+65E5... */
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (path_ok(refused[i]))
            fail_msg("refused[%zu] passed", i);
    for (size_t i = 0; i < sizeof taken / sizeof *taken; i++)
        if (!path_ok(taken[i]))
            fail_msg("taken[%zu] refused", i);
    char err[128];
    assert_int_equal(zf_path_check("/ab\xff", 4, err, sizeof err), ZF_ERECORD);
    assert_string_equal(err, "path is not valid UTF-8 at byte 3");
    assert_int_equal(zf_path_check("/a/\xee\x80\x80", 6, err, sizeof err),
                     ZF_ERECORD);
    assert_string_equal(err, "path has a character ZooKeeper refuses in "
                             "paths (U+E000) at byte 3");
    /* zf_path_explain shows the path, escaped. */
    assert_int_equal(zf_path_explain("/a\0b\xff", 5, err, sizeof err),
                     ZF_ERECORD);
    assert_string_equal(err, "path /a\\x00b\\xff has a NUL byte at byte 2");
}

/* UTF-8 as Java decodes it: the next code point of s[*i..len), or -1 (and
 * one byte consumed) for bytes that are not UTF-8. Written out case by
 * case from the Unicode table of well-formed sequences (Table 3-7). */
static long java_next(const unsigned char *s, size_t len, size_t *i) {
    unsigned char c = s[*i];
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf;
    long v;
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    if (c >= 0xc2 && c <= 0xdf)
        need = 1, v = c & 0x1f;
    else if (c == 0xe0)
        need = 2, v = 0, lo = 0xa0;
    else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
        need = 2, v = c & 0x0f;
    else if (c == 0xed)
        need = 2, v = 0xd, hi = 0x9f;
    else if (c == 0xf0)
        need = 3, v = 0, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3)
        need = 3, v = c & 0x07;
    else if (c == 0xf4)
        need = 3, v = 4, hi = 0x8f;
    else {
        (*i)++;
        return -1;
    }
    if (*i + need >= len) { /* cut short */
        (*i)++;
        return -1;
    }
    for (size_t k = 1; k <= need; k++) {
        unsigned char b = s[*i + k];
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) {
            (*i)++;
            return -1;
        }
        v = (v << 6) | (b & 0x3f);
    }
    *i += need + 1;
    return v;
}

/* ZooKeeper's PathUtils.validatePath, transcribed: the path decoded as
 * Java does (bytes that are not UTF-8 become U+FFFD) into UTF-16 units,
 * then the server's checks on those units. *bad is set to the byte where
 * the first refused character starts, or to len. The reference for
 * zf_path_check. */
static int zookeeper_takes(const char *path, size_t len, size_t *bad) {
    unsigned units[256];
    size_t at[256], n = 0;
    for (size_t i = 0; i < len;) {
        size_t start = i;
        long cp = java_next((const unsigned char *)path, len, &i);
        if (cp < 0)
            cp = 0xfffd;
        if (cp >= 0x10000) { /* a surrogate pair */
            units[n] = 0xd800 + (unsigned)((cp - 0x10000) >> 10);
            at[n++] = start;
            units[n] = 0xdc00 + (unsigned)((cp - 0x10000) & 0x3ff);
        } else {
            units[n] = (unsigned)cp;
        }
        at[n++] = start;
    }
    *bad = len;
    if (n == 0 || units[0] != '/')
        return 0;
    if (n == 1)
        return 1;
    if (units[n - 1] == '/')
        return 0;
    unsigned lastc = '/';
    for (size_t i = 1; i < n; lastc = units[i], i++) {
        unsigned c = units[i];
        if (c == 0) {
            *bad = at[i];
            return 0;
        } else if (c == '/' && lastc == '/') {
            return 0;
        } else if (c == '.' && lastc == '.') {
            if (units[i - 2] == '/' && (i + 1 == n || units[i + 1] == '/'))
                return 0;
        } else if (c == '.') {
            if (units[i - 1] == '/' && (i + 1 == n || units[i + 1] == '/'))
                return 0;
        } else if ((c > 0 && c <= 0x1f) || (c >= 0x7f && c <= 0x9f) ||
                   (c >= 0xd800 && c <= 0xf8ff) || c >= 0xfff0) {
            *bad = at[i];
            return 0;
        }
    }
    return 1;
}

/* Many paths of every length up to 40 from pieces that matter ('/', '.',
 * control characters, characters ZooKeeper takes and refuses, bytes that
 * are not UTF-8, sequences cut short): the same verdict as ZooKeeper's
 * own check, and a refused character reported at its own byte. */
static void test_paths_against_reference(void **state) {
    (void)state;
    static const char *const pieces[] = {
        "/", "/", "/", ".", ".", "a", "Z", "0", "-", " ", "\\",
        "\x01", "\x1f", "\x7f", "\x00", "\xc3\xa9", "\xc2\xa0", "\xc2\x80",
        "\xc2\x9f", "\xed\x9f\xbf", "\xed\xa0\x80", "\xee\x80\x80",
        "\xef\xa3\xbf", "\xef\xa4\x80", "\xef\xbf\xaf", "\xef\xbf\xb0",
        "\xef\xbf\xbd", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
        "\xf4\x90\x80\x80", "\xe0\x80\xaf", "\xc0\x80", "\xc1\xbf", "\xff",
        "\x80", "\xbf", "\xe2\x82", "\xf0\x9f", "\xe9",
    };
    static const size_t npieces = sizeof pieces / sizeof *pieces;
    unsigned seed = 12345;
    char err[128];
    for (int round = 0; round < 300000; round++) {
        char buf[48];
        size_t want_len = (size_t)(round % 41), len = 0;
        if (round % 3)
            buf[len++] = '/';
        while (len < want_len) {
            seed = seed * 1103515245u + 12345u;
            const char *p = pieces[(seed >> 16) % npieces];
            size_t plen = p[0] ? strlen(p) : 1; /* "\x00" is one NUL */
            /* Mostly valid paths too: no control bytes, no '//', no '.'. */
            if (round % 5 == 0 && (plen == 1 && ((unsigned char)p[0] < 0x20 ||
                                                 p[0] == 0x7f || p[0] == '.' ||
                                                 (p[0] == '/' && len &&
                                                  buf[len - 1] == '/'))))
                continue;
            if (len + plen > want_len)
                plen = want_len - len; /* cut short */
            memcpy(buf + len, p, plen);
            len += plen;
        }
        buf[len] = '\0';
        size_t bad;
        int want = zookeeper_takes(buf, len, &bad);
        zf_err_t got = zf_path_check(buf, len, err, sizeof err);
        if ((got == ZF_OK) != want)
            fail_msg("round %d, %zu bytes: got %d, want %d (%s)", round, len,
                     (int)got, want, got == ZF_OK ? "ok" : err);
        const char *at = strstr(err, "at byte ");
        if (got != ZF_OK && at && bad != len) {
            char want_err[64];
            snprintf(want_err, sizeof want_err, "at byte %zu", bad);
            if (strcmp(at, want_err) != 0)
                fail_msg("round %d: '%s', want %s", round, err, want_err);
        }
    }
}

/* Different strings never look alike once escaped, and the escaped form
 * holds no control character and only valid UTF-8. */
static void test_escape(void **state) {
    (void)state;
    char a[64], b[64];
    assert_string_equal(zf_op_escape("/a\xff", 3, a, sizeof a), "/a\\xff");
    assert_string_equal(zf_op_escape("/a\\xff", 6, a, sizeof a),
                        "/a\\\\xff");
    assert_string_equal(zf_op_escape("/a\xef\xbf\xbd", 5, a, sizeof a),
                        "/a\xef\xbf\xbd");
    assert_string_equal(zf_op_escape("a\0\n\x1b[1m\xc2\x9b", 9, a, sizeof a),
                        "a\\x00\\x0a\\x1b[1m\\xc2\\x9b");
    assert_string_equal(zf_op_escape("/\xc3\xa9t\xc3\xa9", 6, a, sizeof a),
                        "/\xc3\xa9t\xc3\xa9");
    /* Too long: the head, "...", the tail, within the room. */
    char big[300];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    zf_op_escape(big, sizeof big, a, 40);
    assert_int_equal(strlen(a), 39);
    assert_memory_equal(a, big, 24);
    assert_memory_equal(a + 24, "...", 3);
    assert_memory_equal(a + 27, big + sizeof big - 12, 12);

    /* Random short strings of bytes that matter: equal escapes only for
     * equal strings. */
    static const unsigned char bytes[] = {'\\', 'x', 'f', '0', 0x00, 0x0a,
                                          0x7f, 0xc2, 0x80, 0x9b, 0xa0,
                                          0xc3, 0xa9, 0xff, 0xef, 0xbf};
    unsigned seed = 99;
    for (int round = 0; round < 200000; round++) {
        unsigned char x[6], y[6];
        size_t lx = (size_t)(round % 6), ly = (size_t)((round / 6) % 6);
        for (size_t i = 0; i < 6; i++) {
            seed = seed * 1103515245u + 12345u;
            x[i] = bytes[(seed >> 16) % sizeof bytes];
            seed = seed * 1103515245u + 12345u;
            y[i] = bytes[(seed >> 16) % sizeof bytes];
        }
        if (round % 4 == 0) { /* often the same but for one byte */
            memcpy(y, x, 6);
            ly = lx;
            if (lx)
                y[round % lx] = bytes[(seed >> 8) % sizeof bytes];
        }
        zf_op_escape((char *)x, lx, a, sizeof a);
        zf_op_escape((char *)y, ly, b, sizeof b);
        int same = lx == ly && memcmp(x, y, lx) == 0;
        if (same != (strcmp(a, b) == 0))
            fail_msg("round %d: '%s' and '%s'", round, a, b);
        size_t alen = strlen(a);
        for (size_t i = 0; i < alen;) {
            long c = java_next((const unsigned char *)a, alen, &i);
            if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
                fail_msg("round %d: '%s' holds %ld", round, a, c);
        }
    }
}

static void test_under(void **state) {
    (void)state;
    assert_true(zf_path_is_under("/x/y", "/"));
    assert_true(zf_path_is_under("/devices", "/devices"));
    assert_true(zf_path_is_under("/devices/a", "/devices"));
    assert_false(zf_path_is_under("/devicesX/a", "/devices"));
    assert_false(zf_path_is_under("/dev", "/devices"));
}

static void test_names(void **state) {
    (void)state;
    zf_op_type_t t;
    const char *names[] = {"upsert", "create", "set", "delete", "check"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(zf_op_parse_type(names[i], &t), 0);
        assert_string_equal(zf_op_name(t), names[i]);
    }
    assert_int_equal(zf_op_parse_type("remove", &t), -1);
    assert_int_equal(zf_op_parse_type("SET", &t), -1);
    zf_create_mode_t m;
    const char *modes[] = {"persistent", "sequential", "container", "ttl"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(zf_mode_parse(modes[i], &m), 0);
        assert_string_equal(zf_mode_name(m), modes[i]);
    }
    assert_int_equal(zf_mode_parse("ephemeral", &m), -1);
}

static zf_op_t op_of(zf_op_type_t type, const char *path) {
    zf_op_t op = {.type = type, .path = (char *)path,
                  .version = ZF_VERSION_ANY};
    return op;
}

/* Validate op (root "/", every op allowed); expect failure mentioning what,
 * or success when what is NULL. */
static void expect_op(const zf_op_t *op, const char *what) {
    char err[256] = "";
    zf_err_t rc = zf_op_validate(op, ROOT("/"), err, sizeof err);
    if (!what) {
        if (rc != ZF_OK)
            fail_msg("unexpected error: %s", err);
        return;
    }
    assert_int_equal(rc, ZF_ERECORD);
    if (!strstr(err, what))
        fail_msg("expected '%s' in '%s'", what, err);
}

static void test_validate(void **state) {
    (void)state;
    char err[256];
    zf_op_t op = op_of(ZF_OP_SET, "/app/x");
    assert_int_equal(zf_op_validate(&op, ROOT("/app"), err, sizeof err),
                     ZF_OK);
    assert_int_equal(zf_op_validate(&op, ROOT("/other"), err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "outside the script's root /other"));
    const zf_op_rules_t upserts = {"/", ZF_OP_BIT(ZF_OP_UPSERT), NULL, 0};
    assert_int_equal(zf_op_validate(&op, &upserts, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "op set is not allowed"));

    zf_op_t del = op_of(ZF_OP_DELETE, "/");
    expect_op(&del, "cannot delete '/'");
    zf_op_t nopath = op_of(ZF_OP_UPSERT, NULL);
    expect_op(&nopath, "needs a path");
}

/* Validate op under rules; expect failure mentioning what, or success
 * when what is NULL. */
static void expect_rules(const zf_op_t *op, const zf_op_rules_t *rules,
                         const char *what) {
    char err[512] = "";
    zf_err_t rc = zf_op_validate(op, rules, err, sizeof err);
    if (!what) {
        if (rc != ZF_OK)
            fail_msg("%s: unexpected error: %s", op->path, err);
        return;
    }
    if (rc != ZF_ERECORD || !strstr(err, what))
        fail_msg("%s: expected '%s' in '%s'", op->path, what, err);
}

/* A sequential create makes the path plus a counter: at the root itself,
 * that node lies outside the root. */
static void test_sequential_root(void **state) {
    (void)state;
    const zf_op_rules_t *tenant = ROOT("/tenant-a");
    zf_op_t op = op_of(ZF_OP_CREATE, "/tenant-a");
    op.mode = ZF_MODE_SEQUENTIAL;
    expect_rules(&op, tenant, "makes /tenant-a0000000001 and so on, outside "
                              "the script's root /tenant-a");
    op.path = "/tenant-a/n-";
    expect_rules(&op, tenant, NULL);
    op.path = "/tenant-a/x/n-";
    expect_rules(&op, tenant, NULL);
    op.path = "/tenant";
    expect_rules(&op, tenant, "outside the script's root");
    op.mode = ZF_MODE_PERSISTENT; /* the root itself is in the root */
    op.path = "/tenant-a";
    expect_rules(&op, tenant, NULL);
    op.mode = ZF_MODE_SEQUENTIAL;
    op.path = "/n-";
    expect_rules(&op, ROOT("/"), NULL);
}

/* ZooKeeper's /zookeeper, and the subtrees of the rules, are refused to
 * every op that can touch them, whatever the root. */
static void test_reserved(void **state) {
    (void)state;
    static const zf_reserved_t mine[] = {
        {"/zkflow/offsets", "[engine] offsets_root"},
        {"/zkflow/scripts/s", "the script of [script s]"},
    };
    const zf_op_rules_t rules = {.root = "/", .allowed = ZF_OP_ALL,
                                 .reserved = mine, .nreserved = 2};
    static const struct {
        zf_op_type_t type;
        const char *path;
        int seq, recursive;
        const char *what; /* NULL: allowed */
    } cases[] = {
        {ZF_OP_UPSERT, "/zookeeper", 0, 0, "in /zookeeper (ZooKeeper's own"},
        {ZF_OP_SET, "/zookeeper/quota/x", 0, 0, "in /zookeeper ("},
        {ZF_OP_CHECK, "/zookeeper/config", 0, 0, "in /zookeeper ("},
        {ZF_OP_UPSERT, "/zookeeperx", 0, 0, NULL},
        {ZF_OP_CREATE, "/zookeeper", 1, 0, NULL}, /* /zookeeper0000000001 */
        {ZF_OP_CREATE, "/zookeeper/q-", 1, 0, "sequential create at "
                                              "/zookeeper/q- can make a node "
                                              "in /zookeeper"},
        {ZF_OP_UPSERT, "/zkflow/offsets", 0, 0,
         "path /zkflow/offsets is in /zkflow/offsets ([engine] offsets_root)"
         ", which scripts may not write"},
        {ZF_OP_DELETE, "/zkflow/offsets/g/t/0", 0, 0, "([engine] offsets_root"},
        {ZF_OP_UPSERT, "/zkflow/offsets2", 0, 0, NULL},
        {ZF_OP_UPSERT, "/zkflow", 0, 0, NULL},
        {ZF_OP_DELETE, "/zkflow", 0, 0, NULL}, /* fails if it has children */
        {ZF_OP_DELETE, "/zkflow", 0, 1,
         "a recursive delete of /zkflow would delete /zkflow/offsets"},
        {ZF_OP_DELETE, "/zkflow/offsets", 0, 1, "is in /zkflow/offsets"},
        {ZF_OP_DELETE, "/zkflow/other", 0, 1, NULL},
        {ZF_OP_SET, "/zkflow/scripts/s", 0, 0, "(the script of [script s])"},
        {ZF_OP_UPSERT, "/zkflow/scripts/s/x", 0, 0, "(the script of"},
        {ZF_OP_UPSERT, "/zkflow/scripts/t", 0, 0, NULL},
        {ZF_OP_CREATE, "/zkflow/scripts/s", 1, 0, NULL}, /* s0000000001 */
        {ZF_OP_CREATE, "/zkflow/offsets/n-", 1, 0, "can make a node in "
                                                   "/zkflow/offsets"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        zf_op_t op = op_of(cases[i].type, cases[i].path);
        op.mode = cases[i].seq ? ZF_MODE_SEQUENTIAL : ZF_MODE_PERSISTENT;
        op.recursive = cases[i].recursive;
        if (cases[i].type == ZF_OP_CHECK)
            op.version = 1;
        expect_rules(&op, &rules, cases[i].what);
    }
    /* A sequential create whose counter can spell out a reserved name. */
    static const zf_reserved_t counted[] = {{"/q/n0000000042", "a test"}};
    const zf_op_rules_t r2 = {.root = "/", .allowed = ZF_OP_ALL,
                              .reserved = counted, .nreserved = 1};
    zf_op_t op = op_of(ZF_OP_CREATE, "/q/n");
    op.mode = ZF_MODE_SEQUENTIAL;
    expect_rules(&op, &r2, "can make a node in /q/n0000000042");
    op.path = "/q/n0";
    expect_rules(&op, &r2, NULL); /* 11 more characters: never */
}

static void test_fields(void **state) {
    (void)state;
    zf_op_t op = op_of(ZF_OP_CHECK, "/a");
    expect_op(&op, "check needs a version");
    op.version = 3;
    expect_op(&op, NULL);
    op.data = "x";
    expect_op(&op, "check takes no data");

    op = op_of(ZF_OP_UPSERT, "/a");
    op.version = 1;
    expect_op(&op, "upsert takes no version");
    op = op_of(ZF_OP_SET, "/a");
    op.version = 7;
    expect_op(&op, NULL);
    op.version = -2;
    expect_op(&op, "version must be 0 or more");

    op = op_of(ZF_OP_SET, "/a");
    op.mode = ZF_MODE_SEQUENTIAL;
    expect_op(&op, "set takes no mode");
    op = op_of(ZF_OP_CREATE, "/a");
    op.mode = ZF_MODE_TTL;
    expect_op(&op, "mode ttl needs a ttl");
    op.ttl_ms = 5000;
    expect_op(&op, NULL);
    op.mode = ZF_MODE_CONTAINER;
    expect_op(&op, "ttl goes with mode ttl only");
    op = op_of(ZF_OP_CREATE, "/");
    op.mode = ZF_MODE_SEQUENTIAL;
    expect_op(&op, "needs a name prefix");

    op = op_of(ZF_OP_CREATE, "/a");
    op.mode = ZF_MODE_TTL;
    op.ttl_ms = ZF_OP_MAX_TTL_MS; /* 2^40 - 1: a real server takes it */
    expect_op(&op, NULL);
    op.ttl_ms = ZF_OP_MAX_TTL_MS + 1; /* and refuses this */
    expect_op(&op, "ttl must be at most 1099511627775 ms");

    op = op_of(ZF_OP_DELETE, "/a");
    op.recursive = 1;
    expect_op(&op, NULL);
    op.version = 2;
    expect_op(&op, "a recursive delete takes no version");
    op = op_of(ZF_OP_CREATE, "/a");
    op.recursive = 1;
    expect_op(&op, "create takes no recursive flag");
    op = op_of(ZF_OP_DELETE, "/a");
    op.data = "x";
    expect_op(&op, "delete takes no data");
}

/* An op's request size counts its overhead, and for an upsert the create
 * of each ancestor it may make: a deep path costs the sum of its prefixes,
 * which no record may use to build a multi over jute.maxbuffer. */
static void test_request_bytes(void **state) {
    (void)state;
    const size_t o = ZF_OP_OVERHEAD;
    assert_int_equal(zf_op_request_bytes(ZF_OP_SET, "/a/bc", 5, 10),
                     5 + 10 + o);
    /* Ancestors /a (2 bytes) and /a/bc (5 bytes) may be created. */
    assert_int_equal(zf_op_request_bytes(ZF_OP_UPSERT, "/a/bc/d", 7, 10),
                     7 + 10 + o + (2 + o) + (5 + o));
    assert_int_equal(zf_op_request_bytes(ZF_OP_UPSERT, "/a", 2, 0), 2 + o);
    /* 2,000 levels of "/a": 4 kB of path, about 4 MB of parent creates. */
    char path[4001];
    for (int i = 0; i < 2000; i++)
        memcpy(path + 2 * i, "/a", 2);
    path[4000] = '\0';
    char err[256];
    zf_oplist_t l = {0};
    zf_op_t *op = zf_oplist_push(&l);
    op->type = ZF_OP_UPSERT;
    op->path = strdup(path);
    assert_int_equal(zf_oplist_validate(&l, ROOT("/"), err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "over the limit of 1000000 bytes"));
    op->type = ZF_OP_SET; /* no parents: fits */
    assert_int_equal(zf_oplist_validate(&l, ROOT("/"), err, sizeof err),
                     ZF_OK);
    assert_int_equal(l.bytes, 4000 + o);
    zf_oplist_free(&l);
}

static void test_oplist(void **state) {
    (void)state;
    char err[256];
    zf_oplist_t l = {0};
    zf_op_t *a = zf_oplist_push(&l);
    assert_int_equal(a->version, ZF_VERSION_ANY);
    a->type = ZF_OP_SET;
    a->path = strdup("/a");
    /* Just at the limit: path, data and the op's overhead. */
    a->datalen = ZF_OP_MAX_BYTES - 2 - ZF_OP_OVERHEAD; /* data not read */
    assert_int_equal(zf_oplist_validate(&l, ROOT("/"), err, sizeof err),
                     ZF_OK);
    assert_int_equal(l.bytes, ZF_OP_MAX_BYTES);
    zf_op_t *b = zf_oplist_push(&l);
    b->type = ZF_OP_UPSERT;
    b->path = strdup("/b");
    assert_int_equal(zf_oplist_validate(&l, ROOT("/"), err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "over the limit"));
    l.ops[0].datalen = 0;
    b->path[0] = 'b';
    assert_int_equal(zf_oplist_validate(&l, ROOT("/"), err, sizeof err),
                     ZF_ERECORD);
    assert_string_equal(err, "op 2: path bb must start with '/'");
    b->path[0] = '/';
    b->type = ZF_OP_CREATE;
    b->mode = ZF_MODE_TTL;
    b->ttl_ms = 1000;
    assert_int_equal(zf_oplist_validate(&l, ROOT("/"), err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "op 2: a ttl node cannot be created in a list"));
    b->mode = ZF_MODE_CONTAINER;
    b->ttl_ms = 0;
    assert_int_equal(zf_oplist_validate(&l, ROOT("/"), err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(
        strstr(err, "op 2: a container node cannot be created in a list"));
    zf_oplist_free(&l);
    assert_int_equal(l.n, 0);
    assert_null(l.ops);
}

/* A packed list: one op and its strings in one allocation, read like any
 * list, validated, freed whole; pushing a second op gives the first one
 * strings of its own; a cleared list (buffer kept) can be packed again. */
static void test_packed(void **state) {
    (void)state;
    char err[256];
    zf_oplist_t l = {0};
    zf_op_t *op = zf_oplist_push_packed(&l, "/a/bX", 4, "d\0e", 3);
    assert_non_null(op);
    assert_int_equal(l.n, 1);
    assert_true(l.packed);
    assert_ptr_equal(op, &l.ops[0]);
    assert_int_equal(op->version, ZF_VERSION_ANY);
    assert_int_equal(op->type, ZF_OP_UPSERT);
    assert_string_equal(op->path, "/a/b");
    assert_int_equal(op->datalen, 3);
    assert_memory_equal(op->data, "d\0e", 4); /* NUL-terminated too */
    assert_null(zf_oplist_push_packed(&l, "/c", 2, NULL, 0)); /* not empty */
    assert_int_equal(zf_oplist_validate(&l, ROOT("/a"), err, sizeof err),
                     ZF_OK);
    assert_int_equal(zf_oplist_validate(&l, ROOT("/b"), err, sizeof err),
                     ZF_ERECORD);

    zf_op_t *b = zf_oplist_push(&l);
    assert_non_null(b);
    assert_false(l.packed);
    assert_int_equal(l.n, 2);
    b->path = strdup("/a/c");
    assert_string_equal(l.ops[0].path, "/a/b");
    assert_memory_equal(l.ops[0].data, "d\0e", 4);
    assert_int_equal(l.ops[0].datalen, 3);
    zf_oplist_clear(&l); /* keeps the buffer */
    assert_non_null(l.ops);

    op = zf_oplist_push_packed(&l, "/x", 2, NULL, 0);
    assert_non_null(op);
    assert_null(op->data);
    assert_int_equal(op->datalen, 0);
    assert_string_equal(op->path, "/x");
    zf_oplist_clear(&l);
    assert_int_equal(l.n, 0);
    assert_false(l.packed);
    assert_non_null(zf_oplist_push_packed(&l, "/y", 2, "", 0));
    assert_non_null(l.ops[0].data);
    assert_string_equal(l.ops[0].data, "");
    zf_oplist_free(&l);
    assert_null(l.ops);
    assert_int_equal(l.cap, 0);

    /* A small list's memory goes to the next one; a big one's (its data
     * over the size kept) is its own, and packed all the same. */
    assert_non_null(zf_oplist_push_packed(&l, "/s", 2, "1", 1));
    const zf_op_t *was = l.ops;
    zf_oplist_free(&l);
    assert_non_null(zf_oplist_push_packed(&l, "/t", 2, "22", 2));
    assert_ptr_equal(l.ops, was);
    assert_string_equal(l.ops[0].data, "22");
    zf_oplist_free(&l);
    char big[1000];
    memset(big, 'b', sizeof big);
    assert_non_null(zf_oplist_push_packed(&l, "/u", 2, big, sizeof big));
    assert_true(l.packed);
    assert_int_equal(l.ops[0].datalen, sizeof big);
    assert_memory_equal(l.ops[0].data, big, sizeof big);
    assert_non_null(zf_oplist_push(&l)); /* unpacks the big one */
    assert_memory_equal(l.ops[0].data, big, sizeof big);
    l.ops[1].path = strdup("/v");
    zf_oplist_free(&l);
}

/* A record of one op (no version) in list l. */
static void one_op(zf_oplist_t *l, zf_op_type_t type, const char *path) {
    zf_op_t *op = zf_oplist_push(l);
    assert_non_null(op);
    op->type = type;
    op->path = strdup(path);
}

static void test_coalesce(void **state) {
    (void)state;
    enum { N = 11 };
    zf_oplist_t l[N] = {{0}};
    one_op(&l[0], ZF_OP_UPSERT, "/d/a");  /* replaced by 2 */
    one_op(&l[1], ZF_OP_UPSERT, "/d/b");  /* replaced by 3 */
    one_op(&l[2], ZF_OP_UPSERT, "/d/a");  /* not: 4 is below /d/a */
    one_op(&l[3], ZF_OP_UPSERT, "/d/b");  /* not: 5 is a set, not an upsert */
    one_op(&l[4], ZF_OP_UPSERT, "/d/a/x");
    one_op(&l[5], ZF_OP_SET, "/d/b");     /* not: 6 is above /d/b */
    one_op(&l[6], ZF_OP_CHECK, "/d");
    one_op(&l[7], ZF_OP_SET, "/e/b");     /* replaced by 8 */
    one_op(&l[8], ZF_OP_SET, "/e/b");     /* not: 9 has two ops */
    one_op(&l[9], ZF_OP_SET, "/e/b");
    one_op(&l[9], ZF_OP_SET, "/e/c");
    one_op(&l[10], ZF_OP_UPSERT, "/e/c"); /* the last: never */
    const zf_oplist_t *lists[N];
    for (int i = 0; i < N; i++)
        lists[i] = &l[i];
    unsigned char drop[N];
    memset(drop, 7, sizeof drop);
    assert_int_equal(zf_oplist_coalesce(lists, N, drop), 3);
    static const unsigned char want[N] = {1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    assert_memory_equal(drop, want, N);

    /* A version makes a set unsuitable, as the earlier or the later one. */
    l[8].ops[0].version = 3;
    assert_int_equal(zf_oplist_coalesce(lists, N, drop), 2);
    assert_int_equal(drop[7], 0);
    l[8].ops[0].version = ZF_VERSION_ANY;
    l[7].ops[0].version = 0;
    assert_int_equal(zf_oplist_coalesce(lists, N, drop), 2);
    assert_int_equal(drop[7], 0);

    /* "/" is above every path. */
    zf_oplist_t root = {0}, first = {0}, last = {0};
    one_op(&first, ZF_OP_UPSERT, "/x");
    one_op(&root, ZF_OP_CHECK, "/");
    one_op(&last, ZF_OP_UPSERT, "/x");
    const zf_oplist_t *three[] = {&first, &root, &last};
    assert_int_equal(zf_oplist_coalesce(three, 3, drop), 0);
    three[1] = &l[1]; /* /d/b: unrelated to /x */
    assert_int_equal(zf_oplist_coalesce(three, 3, drop), 1);
    assert_int_equal(drop[0], 1);
    /* A path that merely starts like another is unrelated. */
    zf_oplist_t xy = {0};
    one_op(&xy, ZF_OP_UPSERT, "/xy");
    three[1] = &xy;
    assert_int_equal(zf_oplist_coalesce(three, 3, drop), 1);

    for (int i = 0; i < N; i++)
        zf_oplist_free(&l[i]);
    zf_oplist_free(&root);
    zf_oplist_free(&first);
    zf_oplist_free(&last);
    zf_oplist_free(&xy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_paths_zookeeper_refuses),
        cmocka_unit_test(test_paths_against_reference),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_under),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_sequential_root),
        cmocka_unit_test(test_reserved),
        cmocka_unit_test(test_request_bytes),
        cmocka_unit_test(test_oplist),
        cmocka_unit_test(test_packed),
        cmocka_unit_test(test_coalesce),
    };
    return cmocka_run_group_tests_name("op", tests, NULL, NULL);
}

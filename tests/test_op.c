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
}

/* zf_path_check as first written, a byte at a time: the reference for
 * the word-at-a-time one. */
static int path_ok_slowly(const char *path, size_t len) {
    if (len == 0 || path[0] != '/')
        return 0;
    if (len == 1)
        return 1;
    if (path[len - 1] == '/')
        return 0;
    size_t comp = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/') {
            unsigned char c = (unsigned char)path[i];
            if (c < 0x20 || c == 0x7f)
                return 0;
            continue;
        }
        size_t clen = i - comp;
        if (clen == 0 || (clen == 1 && path[comp] == '.') ||
            (clen == 2 && path[comp] == '.' && path[comp + 1] == '.'))
            return 0;
        comp = i + 1;
    }
    return 1;
}

/* Many paths of every length up to 40 from bytes that matter ('/', '.',
 * control characters, 0x7f, 0x80 and up, letters): the same verdict as
 * the reference, and a control character reported at its own byte. */
static void test_paths_against_reference(void **state) {
    (void)state;
    static const unsigned char bytes[] = {'/', '/', '.', '.', 'a', 'Z', '0',
                                          0x00, 0x01, 0x1f, 0x20, 0x7e,
                                          0x7f, 0x80, 0x9f, 0xe9, 0xff, '-'};
    unsigned seed = 12345;
    char err[128];
    for (int round = 0; round < 200000; round++) {
        char buf[48];
        size_t len = (size_t)(round % 41);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (char)bytes[(seed >> 16) % sizeof bytes];
        }
        if (len && round % 3)
            buf[0] = '/';
        /* Mostly valid paths too: control bytes replaced, no '//'. */
        if (round % 5 == 0)
            for (size_t i = 1; i < len; i++)
                if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f ||
                    (buf[i] == '/' && buf[i - 1] == '/') || buf[i] == '.')
                    buf[i] = 'x';
        /* ... and some of those spoilt by one control character. */
        static const char ctl[] = {0x00, 0x01, 0x1f, 0x7f};
        if (round % 10 == 0 && len > 1) {
            seed = seed * 1103515245u + 12345u;
            buf[1 + (seed >> 16) % (len - 1)] = ctl[(seed >> 8) % 4];
        }
        buf[len] = '\0';
        int want = path_ok_slowly(buf, len);
        zf_err_t got = zf_path_check(buf, len, err, sizeof err);
        if ((got == ZF_OK) != want)
            fail_msg("round %d, %zu bytes: got %d, want %d", round, len,
                     (int)got, want);
        size_t first = 0;
        for (size_t i = 1; i < len && !first; i++)
            if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
                first = i;
        if (got != ZF_OK && strstr(err, "control character")) {
            char want_err[64];
            snprintf(want_err, sizeof want_err, "at byte %zu", first);
            assert_non_null(strstr(err, want_err));
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
    zf_err_t rc = zf_op_validate(op, "/", ZF_OP_ALL, err, sizeof err);
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
    assert_int_equal(zf_op_validate(&op, "/app", ZF_OP_ALL, err, sizeof err),
                     ZF_OK);
    assert_int_equal(zf_op_validate(&op, "/other", ZF_OP_ALL, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "outside the script's root /other"));
    assert_int_equal(zf_op_validate(&op, "/", ZF_OP_BIT(ZF_OP_UPSERT), err,
                                    sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "op set is not allowed"));

    zf_op_t del = op_of(ZF_OP_DELETE, "/");
    expect_op(&del, "cannot delete '/'");
    zf_op_t nopath = op_of(ZF_OP_UPSERT, NULL);
    expect_op(&nopath, "needs a path");
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

static void test_oplist(void **state) {
    (void)state;
    char err[256];
    zf_oplist_t l = {0};
    zf_op_t *a = zf_oplist_push(&l);
    assert_int_equal(a->version, ZF_VERSION_ANY);
    a->type = ZF_OP_SET;
    a->path = strdup("/a");
    a->datalen = ZF_OP_MAX_BYTES - 2; /* data itself not read */
    assert_int_equal(zf_oplist_validate(&l, "/", ZF_OP_ALL, err, sizeof err),
                     ZF_OK);
    zf_op_t *b = zf_oplist_push(&l);
    b->type = ZF_OP_UPSERT;
    b->path = strdup("/b");
    assert_int_equal(zf_oplist_validate(&l, "/", ZF_OP_ALL, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "over the limit"));
    l.ops[0].datalen = 0;
    b->path[0] = 'b';
    assert_int_equal(zf_oplist_validate(&l, "/", ZF_OP_ALL, err, sizeof err),
                     ZF_ERECORD);
    assert_string_equal(err, "op 2: path must start with '/'");
    b->path[0] = '/';
    b->type = ZF_OP_CREATE;
    b->mode = ZF_MODE_TTL;
    b->ttl_ms = 1000;
    assert_int_equal(zf_oplist_validate(&l, "/", ZF_OP_ALL, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "op 2: a ttl node cannot be created in a list"));
    b->mode = ZF_MODE_CONTAINER;
    b->ttl_ms = 0;
    assert_int_equal(zf_oplist_validate(&l, "/", ZF_OP_ALL, err, sizeof err),
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
    assert_int_equal(zf_oplist_validate(&l, "/a", ZF_OP_ALL, err, sizeof err),
                     ZF_OK);
    assert_int_equal(zf_oplist_validate(&l, "/b", ZF_OP_ALL, err, sizeof err),
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
        cmocka_unit_test(test_paths_against_reference),
        cmocka_unit_test(test_under),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_oplist),
        cmocka_unit_test(test_packed),
        cmocka_unit_test(test_coalesce),
    };
    return cmocka_run_group_tests_name("op", tests, NULL, NULL);
}

/* Op validation: paths, roots, names, size limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_under),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_oplist),
    };
    return cmocka_run_group_tests_name("op", tests, NULL, NULL);
}

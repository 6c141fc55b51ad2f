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
    const char *names[] = {"upsert", "create", "set", "delete"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(zf_op_parse_type(names[i], &t), 0);
        assert_string_equal(zf_op_name(t), names[i]);
    }
    assert_int_equal(zf_op_parse_type("remove", &t), -1);
    assert_int_equal(zf_op_parse_type("SET", &t), -1);
}

static void test_validate(void **state) {
    (void)state;
    char err[256];
    zf_op_t op = {.type = ZF_OP_SET, .path = "/app/x"};
    assert_int_equal(zf_op_validate(&op, "/app", err, sizeof err), ZF_OK);
    assert_int_equal(zf_op_validate(&op, "/other", err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "outside the script's root /other"));

    op.datalen = ZF_OP_MAX_BYTES;
    assert_int_equal(zf_op_validate(&op, "/", err, sizeof err), ZF_ERECORD);
    assert_non_null(strstr(err, "over the limit"));
    op.datalen = ZF_OP_MAX_BYTES - strlen(op.path);
    assert_int_equal(zf_op_validate(&op, "/", err, sizeof err), ZF_OK);

    zf_op_t del = {.type = ZF_OP_DELETE, .path = "/"};
    assert_int_equal(zf_op_validate(&del, "/", err, sizeof err), ZF_ERECORD);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_under),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_validate),
    };
    return cmocka_run_group_tests_name("op", tests, NULL, NULL);
}

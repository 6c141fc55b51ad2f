/* The tracker: the oldest queued entry as entries are sent, applied,
 * refused and dropped; the committable prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "zkflow/tracker.h"

/* The oldest QUEUED entry found the slow way, for comparison. */
static zf_entry_t *first_queued(const zf_partition_t *p) {
    for (zf_entry_t *e = p->head; e; e = e->next)
        if (e->state == ZF_ENTRY_QUEUED)
            return e;
    return NULL;
}

static void test_next_queued(void **state) {
    (void)state;
    zf_partition_t *p = zf_partition_new("t", 0);
    assert_non_null(p);
    assert_null(zf_partition_next_queued(p));
    zf_entry_t *e[6];
    for (int i = 0; i < 6; i++)
        assert_non_null(e[i] = zf_partition_push(p, 10 + i));
    assert_ptr_equal(zf_partition_next_queued(p), e[0]);

    zf_entry_applied(e[1]); /* a skipped record, not at the front */
    assert_ptr_equal(zf_partition_next_queued(p), e[0]);
    zf_entry_sent(e[0]); /* the batch: e0, e2, e3 */
    assert_ptr_equal(zf_partition_next_queued(p), e[2]);
    zf_entry_sent(e[2]);
    zf_entry_sent(e[3]);
    assert_ptr_equal(zf_partition_next_queued(p), e[4]);
    assert_int_equal(p->nsent, 3);

    /* e2 refused: e3 goes back to the queue, then e2 after handling. */
    zf_entry_applied(e[0]);
    zf_entry_failed(e[3]);
    assert_ptr_equal(zf_partition_next_queued(p), e[3]);
    zf_entry_failed(e[2]);
    assert_ptr_equal(zf_partition_next_queued(p), e[2]);
    assert_ptr_equal(zf_partition_next_queued(p), first_queued(p));
    assert_int_equal(p->nsent, 0);

    assert_int_equal(zf_partition_release(p), 1);
    assert_int_equal(p->committable, 12);
    assert_ptr_equal(p->head, e[2]);

    zf_entry_sent(e[2]);
    zf_entry_sent(e[3]);
    zf_entry_sent(e[4]);
    zf_entry_t *e6 = zf_partition_push(p, 16);
    assert_ptr_equal(zf_partition_next_queued(p), e[5]);
    zf_partition_drop_queued(p); /* e5 and e6 */
    assert_null(zf_partition_next_queued(p));
    assert_ptr_equal(p->tail, e[4]);
    (void)e6;
    assert_non_null(e6 = zf_partition_push(p, 15));
    assert_ptr_equal(zf_partition_next_queued(p), e6);
    zf_entry_applied(e6);
    assert_null(zf_partition_next_queued(p));
    assert_ptr_equal(zf_partition_next_queued(p), first_queued(p));
    zf_partition_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_queued),
    };
    return cmocka_run_group_tests_name("tracker", tests, NULL, NULL);
}

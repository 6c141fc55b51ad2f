/* The tracker: DEAD entries hold the committable offset back until they are
 * done, kept record copies own all their bytes, and the oldest queued entry
 * is found as entries are sent, applied, refused and dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "zkflow/tracker.h"

static void test_dead_holds_commit(void **state) {
    (void)state;
    zf_partition_t *p = zf_partition_new("t", 0);
    assert_non_null(p);
    zf_entry_t *a = zf_partition_push(p, 10);
    zf_entry_t *b = zf_partition_push(p, 11);
    zf_entry_t *c = zf_partition_push(p, 12);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);

    zf_entry_sent(a);
    zf_entry_sent(b);
    assert_int_equal(p->nsent, 2);
    zf_entry_applied(a);
    zf_entry_dead(b); /* ZooKeeper refused it: now being dead-lettered */
    assert_int_equal(p->nsent, 0);
    assert_int_equal(p->ndead, 1);
    zf_entry_dead(b); /* twice is once */
    assert_int_equal(p->ndead, 1);
    zf_entry_applied(c);

    /* Only the prefix before the dead letter is committable. */
    assert_int_equal(zf_partition_release(p), 1);
    assert_int_equal(p->committable, 11);
    assert_ptr_equal(p->head, b);
    assert_null(zf_partition_next_queued(p));
    assert_ptr_equal(zf_partition_find(p, 11), b);
    assert_ptr_equal(zf_partition_find(p, 12), c);
    assert_null(zf_partition_find(p, 10)); /* released */

    /* A stop drops queued entries, never a dead letter in flight. */
    zf_entry_t *d = zf_partition_push(p, 13);
    zf_partition_drop_queued(p);
    assert_null(zf_partition_find(p, 13));
    assert_ptr_equal(zf_partition_find(p, 11), b);
    (void)d;

    /* Acknowledged: the partition moves past it. */
    zf_entry_applied(b);
    assert_int_equal(p->ndead, 0);
    assert_int_equal(zf_partition_release(p), 1);
    assert_int_equal(p->committable, 13);
    assert_int_equal(p->nentries, 0);
    zf_partition_destroy(p);
}

static void test_keep_copies_the_record(void **state) {
    (void)state;
    char key[] = "k1", value[] = "v\0alue", hname[] = "trace", hval[] = "t-1";
    zf_header_t headers[] = {
        {hname, hval, 3},
        {"empty", NULL, 0}, /* a header without a value */
        {hname, "t-2", 3},  /* duplicates kept */
    };
    zf_record_t rec = {
        .topic = "events", .partition = 2, .offset = 99, .timestamp = 1234,
        .key = key, .key_len = 2, .value = value, .value_len = 6,
        .headers = headers, .nheaders = 3,
    };
    zf_partition_t *p = zf_partition_new("events", 2);
    zf_entry_t *e = zf_partition_push(p, 99);
    assert_int_equal(zf_entry_keep(e, &rec), 0);
    /* The original's bytes may go away: the copy must not change. */
    memset(key, 'x', sizeof key);
    memset(value, 'x', sizeof value);
    memset(hval, 'x', sizeof hval);
    memset(hname, 'x', sizeof hname);

    const zf_record_t *k = e->kept;
    assert_non_null(k);
    assert_string_equal(k->topic, "events");
    assert_int_equal(k->partition, 2);
    assert_int_equal(k->offset, 99);
    assert_int_equal(k->timestamp, 1234);
    assert_int_equal(k->key_len, 2);
    assert_memory_equal(k->key, "k1", 2);
    assert_int_equal(k->value_len, 6);
    assert_memory_equal(k->value, "v\0alue", 6);
    assert_int_equal(k->nheaders, 3);
    assert_string_equal(k->headers[0].name, "trace");
    assert_int_equal(k->headers[0].len, 3);
    assert_memory_equal(k->headers[0].value, "t-1", 3);
    assert_string_equal(k->headers[1].name, "empty");
    assert_null(k->headers[1].value);
    assert_string_equal(k->headers[2].name, "trace");
    assert_memory_equal(k->headers[2].value, "t-2", 3);

    /* Null key and value, no headers: kept as such; keeping again
     * replaces the copy. */
    zf_record_t bare = {.topic = "events", .partition = 2, .offset = 99,
                        .timestamp = -1};
    assert_int_equal(zf_entry_keep(e, &bare), 0);
    assert_null(e->kept->key);
    assert_null(e->kept->value);
    assert_null(e->kept->headers);
    assert_int_equal(e->kept->timestamp, -1);
    zf_partition_destroy(p); /* frees the copy with its entry */
}

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

/* Released and dropped entries are reused for later records, each as
 * good as new: no ops, no kept record, QUEUED, in the right partition. */
static void test_entries_reused(void **state) {
    (void)state;
    zf_partition_t *p = zf_partition_new("t", 0);
    assert_non_null(p);
    zf_entry_t *a = zf_partition_push(p, 1);
    zf_entry_t *b = zf_partition_push(p, 2);
    assert_non_null(zf_oplist_push_packed(&a->ops, "/a", 2, "x", 1));
    zf_record_t rec = {.topic = "t", .value = "v", .value_len = 1};
    assert_int_equal(zf_entry_keep(a, &rec), 0);
    zf_entry_sent(a);
    zf_entry_applied(a);
    assert_int_equal(zf_partition_release(p), 1);
    assert_int_equal(p->committable, 2);
    zf_entry_t *c = zf_partition_push(p, 3);
    assert_ptr_equal(c, a); /* a's memory, reused */
    assert_int_equal(c->offset, 3);
    assert_int_equal(c->state, ZF_ENTRY_QUEUED);
    assert_int_equal(c->ops.n, 0);
    assert_null(c->ops.ops);
    assert_null(c->kept);
    assert_null(c->next);
    assert_ptr_equal(c->part, p);
    assert_ptr_equal(p->head, b);
    assert_ptr_equal(p->tail, c);
    assert_ptr_equal(b->next, c);
    assert_ptr_equal(zf_partition_next_queued(p), b);
    zf_partition_drop_queued(p); /* b and c */
    assert_null(p->head);
    assert_int_equal(p->nentries, 0);
    zf_entry_t *d = zf_partition_push(p, 4);
    assert_true(d == b || d == c);
    assert_ptr_equal(p->head, d);
    assert_ptr_equal(zf_partition_next_queued(p), d);
    zf_partition_destroy(p); /* frees held and spare entries alike */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_holds_commit),
        cmocka_unit_test(test_keep_copies_the_record),
        cmocka_unit_test(test_next_queued),
        cmocka_unit_test(test_entries_reused),
    };
    return cmocka_run_group_tests_name("tracker", tests, NULL, NULL);
}

#include "zkflow/tracker.h"

#include <stdlib.h>
#include <string.h>

zf_partition_t *zf_partition_new(const char *topic, int32_t partition) {
    zf_partition_t *p = calloc(1, sizeof *p);
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->next_offset = p->committable = p->stored = p->end = p->position = -1;
    p->fence.version = -1;
    p->fence.next = -1;
    return p;
}

/* An entry leaves the partition: its contents freed, the entry itself kept
 * as a spare for the next record (a calloc and a free per record saved).
 * The spares never outnumber the entries once held together, which
 * max_queued_records bounds; they go with the partition. */
static void entry_free(zf_partition_t *p, zf_entry_t *e) {
    zf_oplist_free(&e->ops);
    free(e->kept);
    e->next = p->spare;
    p->spare = e;
}

void zf_partition_destroy(zf_partition_t *p) {
    if (!p)
        return;
    while (p->head) {
        zf_entry_t *e = p->head;
        p->head = e->next;
        zf_oplist_free(&e->ops);
        free(e->kept);
        free(e);
    }
    while (p->spare) {
        zf_entry_t *e = p->spare;
        p->spare = e->next;
        free(e);
    }
    free(p->topic);
    free(p->fence.path);
    free(p);
}

zf_entry_t *zf_partition_push(zf_partition_t *p, int64_t offset) {
    zf_entry_t *e = p->spare;
    if (e) {
        p->spare = e->next;
        memset(e, 0, sizeof *e);
    } else if (!(e = calloc(1, sizeof *e))) {
        return NULL;
    }
    e->offset = offset;
    e->part = p;
    if (p->tail)
        p->tail->next = e;
    else
        p->head = e;
    p->tail = e;
    if (!p->queued)
        p->queued = e;
    p->nentries++;
    return e;
}

/* Kept up to date instead of searched from the head: the head is followed
 * by up to a whole batch of sent entries, and the engine asks every time it
 * dispatches. */
zf_entry_t *zf_partition_next_queued(const zf_partition_t *p) {
    return p->queued;
}

/* e leaves the QUEUED state: when it was the oldest queued entry, the next
 * queued one after it is (none before it is queued). */
static void leave_queued(zf_entry_t *e) {
    zf_partition_t *p = e->part;
    if (p->queued != e)
        return;
    zf_entry_t *x = e->next;
    while (x && x->state != ZF_ENTRY_QUEUED)
        x = x->next;
    p->queued = x;
}

void zf_entry_sent(zf_entry_t *e) {
    e->state = ZF_ENTRY_SENT;
    e->part->nsent++;
    leave_queued(e);
}

void zf_entry_failed(zf_entry_t *e) {
    zf_partition_t *p = e->part;
    if (e->state == ZF_ENTRY_SENT)
        p->nsent--;
    e->state = ZF_ENTRY_QUEUED;
    if (!p->queued || e->offset < p->queued->offset)
        p->queued = e;
}

void zf_entry_applied(zf_entry_t *e) {
    if (e->state == ZF_ENTRY_SENT)
        e->part->nsent--;
    if (e->state == ZF_ENTRY_DEAD)
        e->part->ndead--;
    e->state = ZF_ENTRY_APPLIED;
    leave_queued(e);
}

void zf_entry_dead(zf_entry_t *e) {
    if (e->state == ZF_ENTRY_SENT)
        e->part->nsent--;
    if (e->state != ZF_ENTRY_DEAD)
        e->part->ndead++;
    e->state = ZF_ENTRY_DEAD;
    leave_queued(e);
}

/* Copy len bytes to *at (NULL stays NULL) and advance it. */
static const void *put(char **at, const void *src, size_t len) {
    if (!src)
        return NULL;
    char *dst = *at;
    memcpy(dst, src, len);
    *at += len;
    return dst;
}

int zf_entry_keep(zf_entry_t *e, const zf_record_t *rec) {
    size_t topic = strlen(rec->topic) + 1;
    size_t size = sizeof *rec + rec->nheaders * sizeof *rec->headers + topic +
                  rec->key_len + rec->value_len;
    for (size_t i = 0; i < rec->nheaders; i++)
        size += strlen(rec->headers[i].name) + 1 + rec->headers[i].len;
    zf_record_t *k = malloc(size);
    if (!k)
        return -1;
    *k = *rec;
    zf_header_t *h = (zf_header_t *)(k + 1);
    char *at = (char *)(h + rec->nheaders);
    k->headers = rec->nheaders ? h : NULL;
    k->topic = put(&at, rec->topic, topic);
    k->key = put(&at, rec->key, rec->key_len);
    k->value = put(&at, rec->value, rec->value_len);
    for (size_t i = 0; i < rec->nheaders; i++) {
        h[i].name = put(&at, rec->headers[i].name,
                        strlen(rec->headers[i].name) + 1);
        h[i].value = put(&at, rec->headers[i].value, rec->headers[i].len);
        h[i].len = rec->headers[i].len;
    }
    free(e->kept);
    e->kept = k;
    return 0;
}

zf_entry_t *zf_partition_find(const zf_partition_t *p, int64_t offset) {
    for (zf_entry_t *e = p->head; e; e = e->next)
        if (e->offset == offset)
            return e;
    return NULL;
}

int zf_partition_release(zf_partition_t *p) {
    int moved = 0;
    while (p->head && p->head->state == ZF_ENTRY_APPLIED) {
        zf_entry_t *e = p->head;
        p->committable = e->offset + 1;
        p->head = e->next;
        if (!p->head)
            p->tail = NULL;
        p->nentries--;
        entry_free(p, e);
        moved = 1;
    }
    return moved;
}

void zf_partition_drop_queued(zf_partition_t *p) {
    zf_entry_t **pp = &p->head;
    p->tail = NULL;
    p->queued = NULL;
    while (*pp) {
        zf_entry_t *e = *pp;
        if (e->state == ZF_ENTRY_QUEUED) {
            *pp = e->next;
            p->nentries--;
            entry_free(p, e);
            continue;
        }
        p->tail = e;
        pp = &e->next;
    }
}

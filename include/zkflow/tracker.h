/* The tracker: per assigned partition, the records taken from Kafka in offset
 * order, and which of them are fully applied. Only the contiguous applied
 * prefix may be committed, so a crash replays rather than skips.
 *
 * Entries are owned by their partition; their addresses stay stable until
 * they are popped, so a pointer to one can wait on an asynchronous write. */
#ifndef ZKFLOW_TRACKER_H
#define ZKFLOW_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#include "zkflow/op.h"
#include "zkflow/record.h"
#include "zkflow/zk.h"

typedef enum zf_entry_state {
    ZF_ENTRY_QUEUED = 0, /* transformed, not sent yet */
    ZF_ENTRY_SENT,       /* its op is being applied */
    ZF_ENTRY_APPLIED,    /* effect durable in ZooKeeper, or nothing to do */
    ZF_ENTRY_DEAD,       /* failed; waiting for its dead-letter produce to be
                            acknowledged (not in flight to ZooKeeper) */
} zf_entry_state_t;

typedef struct zf_entry {
    int64_t offset;
    zf_oplist_t ops;       /* what the record's transform returned (owned) */
    zf_entry_state_t state;
    zf_record_t *kept;     /* a copy of the record, kept only when its script
                              dead-letters failures (owned; NULL otherwise) */
    struct zf_partition *part;
    struct zf_entry *next;
} zf_entry_t;

typedef struct zf_partition {
    char *topic;
    int32_t partition;
    void *owner;           /* the engine holding it (borrowed) */
    void *script;          /* the engine's script for this topic (borrowed) */
    zf_entry_t *head;      /* oldest unreleased record */
    zf_entry_t *tail;
    zf_entry_t *queued;    /* the oldest QUEUED entry, or NULL (kept by the
                              functions below) */
    size_t nentries;
    size_t nsent;          /* entries in state SENT */
    size_t ndead;          /* entries in state DEAD */
    int64_t next_offset;   /* offset expected next from Kafka; -1 unknown */
    int64_t committable;   /* last applied + 1; -1 when nothing applied */
    int64_t stored;        /* last offset handed to the consumer for commit */
    int64_t end;           /* --exit-on-eof: end offset when assigned; -1 */
    int64_t position;      /* consumed up to here (next offset); -1 unknown */
    int paused;
    int coalesce;          /* its script coalesces batches (zf_zk_coalesce) */
    int blocked;           /* a record failed here: send nothing after it */
    zf_zk_fence_t fence;   /* exactly-once: its position znode (path owned;
                              NULL with at-least-once) */
    int writing_position;  /* exactly-once: a write of the position alone
                              (no record's ops) is in flight */
    int no_position;       /* exactly-once: write no position here any more
                              (fenced, or such a write failed) */
    int64_t behind_since;  /* exactly-once: since when (ms) the position
                              trails `committable` with nothing queued or
                              in flight to carry it; 0 when it does not */
    zf_entry_t *spare;     /* entries released, kept for reuse (owned; only
                              the functions below touch them) */
} zf_partition_t;

/* New empty partition state; NULL when out of memory. */
zf_partition_t *zf_partition_new(const char *topic, int32_t partition);

/* Free the partition and every entry it holds; accepts NULL. */
void zf_partition_destroy(zf_partition_t *p);

/* Append an entry for `offset` (which must be above every held offset) and
 * return it, QUEUED and without op; NULL when out of memory. */
zf_entry_t *zf_partition_push(zf_partition_t *p, int64_t offset);

/* The oldest QUEUED entry, or NULL. */
zf_entry_t *zf_partition_next_queued(const zf_partition_t *p);

/* Move an entry to SENT, to APPLIED, or (its write failed) back to QUEUED;
 * keeps the partition's counts. */
void zf_entry_sent(zf_entry_t *e);
void zf_entry_applied(zf_entry_t *e);
void zf_entry_failed(zf_entry_t *e);

/* Move an entry to DEAD (out of the SENT count if it was sent). Only
 * zf_entry_applied moves it on; until then the partition's committable
 * offset stays below it, and the engine sends nothing after it. */
void zf_entry_dead(zf_entry_t *e);

/* Keep a copy of the record in e->kept (topic, key, value, headers and
 * timestamp, in one allocation freed with the entry). Returns 0, or -1
 * when out of memory. */
int zf_entry_keep(zf_entry_t *e, const zf_record_t *rec);

/* The held entry for `offset`, or NULL (released, dropped, never taken). */
zf_entry_t *zf_partition_find(const zf_partition_t *p, int64_t offset);

/* Release applied entries from the head, advancing `committable`.
 * Returns 1 when committable moved, 0 otherwise. */
int zf_partition_release(zf_partition_t *p);

/* Drop every QUEUED entry (their records will be consumed again). SENT
 * entries stay: their outcome is still to come. */
void zf_partition_drop_queued(zf_partition_t *p);

#endif

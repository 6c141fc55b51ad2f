/* The Kafka side: a librdkafka high-level consumer in a consumer group.
 *
 * Offsets are never stored automatically: the engine stores a partition's
 * next offset with zf_source_store once everything before it is applied, and
 * the consumer commits stored offsets (periodically, and on zf_source_commit).
 * All functions run on the engine thread; rebalance handlers are called from
 * inside zf_source_next. */
#ifndef ZKFLOW_SOURCE_H
#define ZKFLOW_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "zkflow/config.h"
#include "zkflow/error.h"
#include "zkflow/record.h"

typedef struct zf_source zf_source_t;

typedef struct zf_tp {
    const char *topic; /* borrowed for the duration of the call */
    int32_t partition;
    int64_t start;     /* `assigned` may set where consuming starts; -1
                          (the default): the committed offset */
} zf_tp_t;

typedef struct zf_source_handlers {
    /* Partitions were added to this member's assignment. Setting
     * tps[i].start makes partition i start at that offset. */
    void (*assigned)(void *ctx, zf_tp_t *tps, size_t n);
    /* Partitions are about to be taken away. Called before the consumer lets
     * them go, so their final offsets can still be stored and committed;
     * `lost` means another member may already own them (do not commit).
     * From then on zf_source_next hands out no record of them (until they
     * are assigned again). */
    void (*revoked)(void *ctx, const zf_tp_t *tps, size_t n, int lost);
} zf_source_handlers_t;

typedef enum zf_source_event {
    ZF_SOURCE_NONE = 0, /* nothing waiting now */
    ZF_SOURCE_RECORD,   /* *rec holds a record */
    ZF_SOURCE_EOF,      /* rec->topic/partition reached offset rec->offset */
} zf_source_event_t;

/* Check that librdkafka accepts every [kafka] key, without connecting.
 * Returns ZF_OK or ZF_ECONFIG with "FILE:LINE: message" in err. */
zf_err_t zf_source_check_config(const zf_config_t *cfg, char *err,
                                size_t errlen);

/* Create the consumer from cfg->kafka (each key passed on unchanged, except
 * that zkflow manages enable.auto.offset.store and, with exit_on_eof,
 * enable.partition.eof). Defaults zkflow sets unless the file does:
 * auto.offset.reset=earliest, partition.assignment.strategy=
 * cooperative-sticky, queued.max.messages.kbytes=8192. Nothing is consumed and
 * the group is not joined before zf_source_subscribe.
 * Returns ZF_OK, ZF_ECONFIG with "FILE:LINE: message" in err for a key
 * librdkafka refuses, or ZF_EKAFKA. cfg must outlive the source. */
zf_err_t zf_source_new(const zf_config_t *cfg, int exit_on_eof,
                       const zf_source_handlers_t *h, void *ctx,
                       zf_source_t **out, char *err, size_t errlen);

/* Subscribe to every topic of cfg's scripts (cfg is only read during the
 * call), replacing any earlier subscription: a rebalance then assigns the
 * new topics' partitions and revokes those of topics left out.
 * Returns ZF_OK or ZF_EKAFKA. */
zf_err_t zf_source_subscribe(zf_source_t *src, const zf_config_t *cfg,
                             char *err, size_t errlen);

/* A descriptor that becomes readable when zf_source_next may have work. */
int zf_source_fd(const zf_source_t *src);

/* Take the next record or event without blocking. A returned record stays
 * valid until the next call of zf_source_next or zf_source_close.
 * Errors from the client are logged here; a fatal one makes
 * zf_source_status report it. */
zf_source_event_t zf_source_next(zf_source_t *src, zf_record_t *rec);

/* ZF_OK, or ZF_EKAFKA with the reason once the consumer failed for good. */
zf_err_t zf_source_status(const zf_source_t *src, char *err, size_t errlen);

/* Store `next_offset` (last applied + 1) of a partition for commit.
 * Returns ZF_OK or ZF_EKAFKA (e.g. the partition is no longer assigned). */
zf_err_t zf_source_store(zf_source_t *src, const char *topic,
                         int32_t partition, int64_t next_offset);

/* Pause (pause=1) or resume fetching one partition. Never blocks. Records
 * of the partition already taken from the client (a few dozen at most) are
 * still handed out by zf_source_next after a pause; resuming continues right
 * after the last of them, so nothing is skipped or repeated. */
void zf_source_pause(zf_source_t *src, const char *topic, int32_t partition,
                     int pause);

/* Whether the broker has records of the partition from next_offset on, as
 * far as the last fetch told (no request is made). Never fails: 0 when
 * unknown. */
int zf_source_behind(zf_source_t *src, const char *topic, int32_t partition,
                     int64_t next_offset);

/* Have the client fetch a partition from next_offset (the next offset the
 * caller needs) now. librdkafka 2.0 looks again at a partition it stopped
 * fetching for a full prefetch queue only when its broker thread next wakes,
 * up to a second later, so a caller that empties the queue sooner waits for
 * records the broker has; a seek to next_offset wakes it. Call only when
 * zf_source_next has nothing (so nothing of the partition is buffered) and
 * the partition is not paused. Never blocks; errors (e.g. the partition was
 * revoked meanwhile) are only logged at debug level. */
void zf_source_fetch_now(zf_source_t *src, const char *topic,
                         int32_t partition, int64_t next_offset);

/* The partition's high watermark (its end), asking the broker; -1 on error. */
int64_t zf_source_end_offset(zf_source_t *src, const char *topic,
                             int32_t partition);

/* Commit stored offsets now and wait for the result. ZF_OK when committed or
 * when nothing was waiting to be committed. Only for use inside a rebalance
 * handler: elsewhere a rebalance in progress can hold the commit until the
 * group gives up on this member; use zf_source_commit_start instead. */
zf_err_t zf_source_commit(zf_source_t *src, char *err, size_t errlen);

/* Start committing the stored offsets without waiting. Keep calling
 * zf_source_next (which serves rebalances) until zf_source_commit_result
 * gives the outcome. Never blocks. */
void zf_source_commit_start(zf_source_t *src);

/* Outcome of the commits started so far: ZF_OK once the last one succeeded
 * (or had nothing to commit), ZF_EKAFKA with the reason in err if it failed,
 * or -1 while one is still under way. Never blocks. */
int zf_source_commit_result(zf_source_t *src, char *err, size_t errlen);

/* Leave the group (revoked handlers run), close and free. Accepts NULL. */
void zf_source_close(zf_source_t *src);

#endif

/* Dead letters: records that failed under `on_error = dlq`, produced to their
 * script's dlq_topic with a librdkafka producer (one per engine).
 *
 * A dead letter is the original record (key, value, headers, timestamp) with
 * headers added that say what failed (see README, "When a record fails"):
 *   zkflow.stage           transform | validate | zookeeper
 *   zkflow.error           the message, with FILE:LINE for a script's errors
 *   zkflow.zk_error        ZooKeeper's error name (stage zookeeper only)
 *   zkflow.script          the [script] section's name
 *   zkflow.script_version  zf_script_version of the script that ran
 *   zkflow.topic, zkflow.partition, zkflow.offset   where the record was read
 *
 * The producer takes the [kafka] keys librdkafka does not mark as consumer-
 * only (bootstrap.servers, security.*, sasl.*, ssl.*, client.id, producer
 * properties, ...); consumer-only keys (group.id, auto.offset.reset, ...) are
 * left out without a word. A send is final once its delivery report arrives,
 * through zf_dlq_process on the caller's thread. Not thread-safe: one thread
 * uses it. */
#ifndef ZKFLOW_DLQ_H
#define ZKFLOW_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "zkflow/config.h"
#include "zkflow/error.h"
#include "zkflow/record.h"

typedef struct zf_dlq zf_dlq_t;

/* What failed, for the zkflow.* headers; every string is borrowed for the
 * duration of zf_dlq_send. */
typedef struct zf_dlq_failure {
    const char *stage;          /* "transform", "validate" or "zookeeper" */
    const char *error;          /* the error message */
    const char *zk_error;       /* e.g. "ZNONODE"; NULL: no header */
    const char *script;         /* section name */
    const char *script_version; /* zf_script_version */
} zf_dlq_failure_t;

/* Called once per accepted zf_dlq_send, from inside zf_dlq_process, with the
 * source record's topic/partition/offset: rc ZF_OK when the broker has the
 * dead letter, ZF_EKAFKA with the reason when producing failed for good
 * (librdkafka's retries and message.timeout.ms are spent, or the topic does
 * not exist). `topic` and `why` are borrowed for the call. */
typedef void zf_dlq_done_fn(void *ctx, const char *topic, int32_t partition,
                            int64_t offset, zf_err_t rc, const char *why);

/* Create the producer from cfg's [kafka] keys (see above). `done` and ctx
 * receive the outcomes. Returns ZF_OK and *out, ZF_ECONFIG with
 * "FILE:LINE: message" in err for a key the producer refuses (secrets
 * redacted), or ZF_EKAFKA. cfg is only read during the call. */
zf_err_t zf_dlq_new(const zf_config_t *cfg, zf_dlq_done_fn *done, void *ctx,
                    zf_dlq_t **out, char *err, size_t errlen);

/* Start producing `rec` (borrowed; copied) to `topic` with the headers of
 * `f`. Never blocks. Returns ZF_OK when the send is under way (its outcome
 * comes to `done` later), or ZF_EKAFKA with the reason in err when
 * librdkafka refused it at once (then `done` is not called). */
zf_err_t zf_dlq_send(zf_dlq_t *d, const char *topic, const zf_record_t *rec,
                     const zf_dlq_failure_t *f, char *err, size_t errlen);

/* Ask the cluster (blocking, for at most timeout_ms) whether `topic`
 * exists; a broker that creates topics on first use may create it here.
 * Returns ZF_OK, or ZF_EKAFKA with the reason in err. */
zf_err_t zf_dlq_check_topic(zf_dlq_t *d, const char *topic, int timeout_ms,
                            char *err, size_t errlen);

/* A descriptor that becomes readable when delivery reports wait; -1 for a
 * NULL d. */
int zf_dlq_fd(const zf_dlq_t *d);

/* Serve waiting delivery reports (calling `done`). Never blocks; accepts
 * NULL. */
void zf_dlq_process(zf_dlq_t *d);

/* Sends whose outcome is still to come; 0 for a NULL d. */
size_t zf_dlq_inflight(const zf_dlq_t *d);

/* Give sends in flight up to flush_ms to reach the broker (their outcomes are
 * not reported: the records were not committed, so a later run sends them
 * again), then free everything. Accepts NULL. */
void zf_dlq_destroy(zf_dlq_t *d, int flush_ms);

#endif

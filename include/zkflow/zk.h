/* The ZooKeeper side: one session, ops applied asynchronously.
 *
 * The ZooKeeper client calls back on its own completion thread; this module
 * only queues those results there and hands them to the caller's thread in
 * zf_zk_process(), so `done` callbacks never run on a library thread.
 *
 * Outcomes reported to `done` follow zkflow's op semantics:
 * create of an existing node (not sequential) and delete of an absent node
 * are successes; upsert creates missing parents; a recursive delete removes
 * the subtree; a list of ops is applied atomically (one multi); connection
 * loss is retried (after a backoff) until the outcome is known, so `done`
 * sees only final results. */
#ifndef ZKFLOW_ZK_H
#define ZKFLOW_ZK_H

#include <stddef.h>

#include "zkflow/error.h"
#include "zkflow/op.h"

typedef struct zf_zk zf_zk_t;

/* Called once per zf_zk_apply, on the thread that calls zf_zk_process.
 * rc is ZF_OK when the op took effect, else ZF_ERECORD (the op was refused,
 * `why` says why) or ZF_EZK (the session is gone: outcome unknown). */
typedef void zf_zk_done_fn(void *ctx, zf_err_t rc, const char *why);

/* Start connecting to `connect` (a ZooKeeper connection string, optionally
 * with a /chroot suffix). Returns NULL with the reason in err on failure. The
 * session is not established yet: see zf_zk_wait_connected. */
zf_zk_t *zf_zk_new(const char *connect, int session_timeout_ms, char *err,
                   size_t errlen);

/* Block until the session is connected, for at most timeout_ms.
 * Returns ZF_OK or ZF_EZK with a message in err. */
zf_err_t zf_zk_wait_connected(zf_zk_t *zk, int timeout_ms, char *err,
                              size_t errlen);

/* A descriptor that becomes readable when zf_zk_process has work. */
int zf_zk_fd(const zf_zk_t *zk);

/* Milliseconds until a retry is due (0: now), or -1 when none is waiting. */
int zf_zk_next_timeout_ms(const zf_zk_t *zk);

/* Start applying one record's ops (ops->n >= 1, validated). The list is
 * borrowed: it must stay valid and unchanged until `done` has been called.
 * Never calls `done` from inside this call. */
void zf_zk_apply(zf_zk_t *zk, const zf_oplist_t *ops, zf_zk_done_fn *done,
                 void *ctx);

/* Handle queued completions and session events, resend due retries, and
 * call `done` for every op whose outcome is now known. Never blocks. */
void zf_zk_process(zf_zk_t *zk);

/* Number of applied ops whose `done` has not been called yet. */
size_t zf_zk_inflight(const zf_zk_t *zk);

/* ZF_OK while the session is usable; ZF_EZK with the reason once it expired
 * or authentication failed (this slice does not re-establish sessions). */
zf_err_t zf_zk_status(const zf_zk_t *zk, char *err, size_t errlen);

/* Close the session (once) and free the handle; accepts NULL. Ops still in
 * flight are abandoned without their `done` being called: drain first. */
void zf_zk_destroy(zf_zk_t *zk);

#endif

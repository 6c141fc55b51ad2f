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
 * sees only final results. An expired session is replaced by a new one
 * (the dead handle closed once, on the caller's thread) and the ops whose
 * outcome it left unknown are sent again, as after a connection loss: at
 * least once, not exactly once. */
#ifndef ZKFLOW_ZK_H
#define ZKFLOW_ZK_H

#include <stddef.h>
#include <stdint.h>

#include "zkflow/error.h"
#include "zkflow/op.h"

typedef struct zf_zk zf_zk_t;

/* Called once per record given to zf_zk_apply, in the order given, on the
 * thread that calls zf_zk_process. rc is ZF_OK when the record's ops took
 * effect; ZF_ERECORD when ZooKeeper refused one of them (`why` says which
 * and why; nothing of that record was applied); ZF_EAGAIN when an earlier
 * record of the same batch was refused, so this one was not attempted
 * (apply it again later); ZF_EZK when the handle is gone for good
 * (authentication failed; outcome unknown); ZF_EFENCED when the batch
 * carried a fence and another owner wrote the partition's position
 * (nothing of the batch was applied). */
typedef void zf_zk_done_fn(void *ctx, zf_err_t rc, const char *why);

/* One record of a batch: its ops (borrowed: valid and unchanged until its
 * `done` call) and the context handed back to `done`. */
typedef struct zf_zk_item {
    const zf_oplist_t *ops; /* validated; empty only when coalesced away */
    void *ctx;
    int64_t next_offset;    /* its offset + 1: the position once applied */
} zf_zk_item_t;

/* Exactly-once: a partition's position znode, written (as the decimal text
 * of the next offset to consume) by the same multi as a batch's ops, with
 * the version this owner last saw, so a stale owner's batch fails whole.
 * Owned by the caller; must stay valid while a batch using it is in flight,
 * and only one such batch may be in flight at a time. */
typedef struct zf_zk_fence {
    char *path;
    int32_t version; /* updated as batches apply; -1: not created yet */
    int64_t next;    /* the offset the znode holds, as last read or written
                        by this owner; -1: none yet */
} zf_zk_fence_t;

/* Read a position znode (with create_parents, also create its missing
 * parents): ZF_OK with *next_offset, fence->next and fence->version set,
 * or all three -1 when it does not exist yet; ZF_EZK with the reason in err. Blocks for at
 * most the session timeout; never call it from a `done` callback. */
zf_err_t zf_zk_read_position(zf_zk_t *zk, zf_zk_fence_t *fence,
                             int create_parents, int64_t *next_offset,
                             char *err, size_t errlen);

/* Start connecting to `connect` (a ZooKeeper connection string, optionally
 * with a /chroot suffix). Returns NULL with the reason in err on failure. The
 * session is not established yet: see zf_zk_wait_connected. */
zf_zk_t *zf_zk_new(const char *connect, int session_timeout_ms, char *err,
                   size_t errlen);

/* Authenticate the session with `auth` ("SCHEME:CREDENTIALS", NULL or ""
 * for none) and give the znodes zkflow creates the ACL named `acl` (open,
 * creator_all, read_only_world; NULL: open). Call before any op. Returns
 * ZF_OK or ZF_EZK with the reason (never the credentials) in err. */
zf_err_t zf_zk_secure(zf_zk_t *zk, const char *auth, const char *acl,
                      char *err, size_t errlen);

/* Block until the session is connected, for at most timeout_ms.
 * Returns ZF_OK or ZF_EZK with a message in err. */
zf_err_t zf_zk_wait_connected(zf_zk_t *zk, int timeout_ms, char *err,
                              size_t errlen);

/* A descriptor that becomes readable when zf_zk_process has work. */
int zf_zk_fd(const zf_zk_t *zk);

/* Milliseconds until a retry is due (0: now), or -1 when none is waiting. */
int zf_zk_next_timeout_ms(const zf_zk_t *zk);

/* True when a record's ops can share a multi with other records' ops; a
 * ttl or container create (which the 3.8 C client cannot put in a multi)
 * or a recursive delete (whose subtree is listed first) must go alone. */
int zf_zk_batchable(const zf_oplist_t *ops);

/* Coalesce a batch before zf_zk_apply (a script with coalesce = true):
 * every item that zf_oplist_coalesce leaves out gets an empty op list
 * (static, never freed), so nothing of it is sent and zf_zk_apply reports
 * it with the rest of the batch, in order, like any other item. The items'
 * ops are only read. Returns how many were left out; never fails (when out
 * of memory, none). */
size_t zf_zk_coalesce(zf_zk_item_t *items, size_t n);

/* Start applying a batch of records in order, as one ZooKeeper multi: their
 * effects are all applied together, or (when one record is refused) the
 * records before it are, and those from it on are not. A record that is
 * not zf_zk_batchable must be given alone (n == 1). The items array is
 * copied. With a fence (else NULL), the multi also writes the position
 * after the last record applied; after a lost connection the position is
 * read back to learn whether the batch applied before it is sent again.
 * A batch of one item with no ops and a fence writes only the position
 * (records that wrote nothing, up to that item's next_offset).
 * Never calls `done` from inside this call. */
void zf_zk_apply(zf_zk_t *zk, const zf_zk_item_t *items, size_t n,
                 zf_zk_fence_t *fence, zf_zk_done_fn *done);

/* Handle queued completions and session events, resend due retries, and
 * call `done` for every op whose outcome is now known. Never blocks. */
void zf_zk_process(zf_zk_t *zk);

/* Inside a `done` call reporting ZF_ERECORD: the name of ZooKeeper's error
 * code for the refusal ("ZNONODE", "ZBADVERSION", ...); NULL elsewhere.
 * Never fails. */
const char *zf_zk_refusal(const zf_zk_t *zk);

/* The name of a ZooKeeper client return code ("ZNONODE"; "ZUNKNOWN" for a
 * code this client version does not define). Never fails. */
const char *zf_zk_code_name(int rc);

/* Number of records given to zf_zk_apply whose `done` is still to come. */
size_t zf_zk_inflight(const zf_zk_t *zk);

/* Number of zf_zk_apply calls (batches) whose outcome is still to come. */
size_t zf_zk_requests_inflight(const zf_zk_t *zk);

/* ZF_OK while the handle is usable (also while it reconnects or replaces an
 * expired session); ZF_EZK with the reason once authentication failed or a
 * new session could not be opened. */
zf_err_t zf_zk_status(const zf_zk_t *zk, char *err, size_t errlen);

/* Log callback for zookeeper_init2: the client's lines through zf_log, at
 * their own level, a line repeated within 10 s printed once. Thread-safe. */
void zf_zk_client_log(const char *message);

/* Close the session (once) and free the handle; accepts NULL. Ops still in
 * flight are abandoned without their `done` being called: drain first. */
void zf_zk_destroy(zf_zk_t *zk);

#endif

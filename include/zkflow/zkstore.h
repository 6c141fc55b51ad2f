/* Scripts kept in znodes (`source = zk:/PATH`): read them, watch them, and
 * publish new versions.
 *
 * A script at PATH may have fixtures in the znodes PATH.records.jsonl and
 * PATH.expected.jsonl beside it. The store has its own ZooKeeper session,
 * apart from the writer's, so watching scripts never waits behind batches of
 * writes. Its functions block for at most the session's timeout and must
 * run on one thread; watch events are handed to that thread through
 * zf_zkstore_fd / zf_zkstore_read. */
#ifndef ZKFLOW_ZKSTORE_H
#define ZKFLOW_ZKSTORE_H

#include <stddef.h>

#include "zkflow/error.h"
#include "zkflow/fixture.h"

typedef struct zf_zkstore zf_zkstore_t;

/* Connect to ZooKeeper (`connect`, `auth` and `acl` as in [zookeeper]; see
 * zf_zk_secure), waiting up to connect_timeout_ms. Returns the store, or
 * NULL with the reason in err. */
zf_zkstore_t *zf_zkstore_new(const char *connect, int session_timeout_ms,
                             int connect_timeout_ms, const char *auth,
                             const char *acl, char *err, size_t errlen);

/* Close the session and free; accepts NULL. */
void zf_zkstore_destroy(zf_zkstore_t *zs);

/* A script as stored: its text and its fixtures' texts (NULL when absent). */
typedef struct zf_zkscript {
    char *text;
    size_t len;
    char *records, *expected;
    size_t records_len, expected_len;
    char *records_name, *expected_name; /* "zk:PATH.records.jsonl", ... */
} zf_zkscript_t;

/* Read the script at `path` and its fixtures. With watch, the store also
 * watches the script znode (once: read it again to keep watching), so its
 * next change or creation is reported by zf_zkstore_read.
 * Returns ZF_OK with *out filled (free with zf_zkscript_free), ZF_ENOENT
 * when the script znode does not exist, or ZF_EZK with the reason. */
zf_err_t zf_zkstore_get(zf_zkstore_t *zs, const char *path, int watch,
                        zf_zkscript_t *out, char *err, size_t errlen);

void zf_zkscript_free(zf_zkscript_t *s); /* frees the contents only */

/* The fixtures of a script read by zf_zkstore_get (pointers into s). */
zf_fixture_text_t zf_zkscript_fixtures(const zf_zkscript_t *s);

/* A descriptor that becomes readable when watch events are waiting. */
int zf_zkstore_fd(const zf_zkstore_t *zs);

/* Call changed(ctx, path) for each watched script znode that changed, was
 * created or deleted since the last call (the watch is then used up). After
 * the session expired, a new one is made and every watched path is
 * reported. Never blocks for long; may be called when nothing is waiting. */
void zf_zkstore_read(zf_zkstore_t *zs,
                     void (*changed)(void *ctx, const char *path), void *ctx);

/* Publish a script: in one transaction, write `text` to `path` (creating
 * missing parents) and write or delete the fixture znodes beside it
 * (records / expected NULL: delete). Every watching zkflow instance then
 * reloads it. Returns ZF_OK or ZF_EZK with the reason. */
zf_err_t zf_zkstore_publish(zf_zkstore_t *zs, const char *path,
                            const char *text, size_t len,
                            const char *records, size_t records_len,
                            const char *expected, size_t expected_len,
                            char *err, size_t errlen);

#endif

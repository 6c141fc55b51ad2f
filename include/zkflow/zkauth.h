/* ZooKeeper authentication and ACLs ([zookeeper] auth and acl), the same for
 * every session zkflow opens: the writer's and the script store's. */
#ifndef ZKFLOW_ZKAUTH_H
#define ZKFLOW_ZKAUTH_H

#include <stddef.h>
#include <zookeeper/zookeeper.h>

/* Add `auth` ("SCHEME:CREDENTIALS", e.g. "digest:user:password"; NULL or
 * "" for none) to a new session. Wrong credentials show up later: digest
 * refuses nothing at once, but ops on nodes whose ACL does not admit the
 * identity fail with ZNOAUTH, and a scheme the server rejects ends the
 * session (ZOO_AUTH_FAILED_STATE). Returns 0, or -1 with the reason in err
 * (which never contains the credentials). */
int zf_zkauth_add(zhandle_t *zh, const char *auth, char *err, size_t errlen);

/* Create the missing parents of `path` (not path itself), empty, with
 * `acl`, by synchronous calls on zh (never from a library callback).
 * Returns ZOK (parents that exist already are fine) or a ZooKeeper code;
 * ZSYSTEMERROR when out of memory. */
int zf_zkauth_create_parents(zhandle_t *zh, struct ACL_vector *acl,
                             const char *path);

/* The ACL for znodes zkflow creates: "open" (anyone may do anything),
 * "creator_all" (only the authenticated identity), "read_only_world"
 * (the identity may do anything, anyone may read). Unknown names: open.
 * The result is static. */
struct ACL_vector *zf_zkauth_acl(const char *name);

#endif

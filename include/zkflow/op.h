/* Operations: what a script asks ZooKeeper to do, and their validation.
 *
 * A record's transform yields an op list: zero ops (skip), one op, or several
 * ops that are applied atomically (one ZooKeeper multi). Lists own their ops,
 * ops own their strings (or, in a packed list, the list owns its one op and
 * its strings as one allocation). Ops are produced by the script module,
 * validated here, and executed by the zk module. */
#ifndef ZKFLOW_OP_H
#define ZKFLOW_OP_H

#include <stddef.h>
#include <stdint.h>

#include "zkflow/error.h"

typedef enum zf_op_type {
    ZF_OP_UPSERT = 0, /* set; when absent create it, and missing parents */
    ZF_OP_CREATE,     /* create; already there = success (not sequential) */
    ZF_OP_SET,        /* set the data of an existing node */
    ZF_OP_DELETE,     /* delete; already absent = success */
    ZF_OP_CHECK,      /* version guard: fails the list unless it matches */
    ZF_OP_NTYPES
} zf_op_type_t;

/* Bit of an op type in an allow-list such as zf_script_opts_t.ops. */
#define ZF_OP_BIT(t) (1u << (t))
#define ZF_OP_ALL ((1u << ZF_OP_NTYPES) - 1)

typedef enum zf_create_mode {
    ZF_MODE_PERSISTENT = 0,
    ZF_MODE_SEQUENTIAL, /* persistent, with a counter appended by ZooKeeper */
    ZF_MODE_CONTAINER,  /* removed by the server once its last child goes */
    ZF_MODE_TTL,        /* removed when unmodified for ttl_ms and childless */
} zf_create_mode_t;

#define ZF_VERSION_ANY (-1)

typedef struct zf_op {
    zf_op_type_t type;
    char *path;        /* owned, NUL-terminated absolute path */
    char *data;        /* owned, may be NULL: a znode without data */
    size_t datalen;
    int32_t version;   /* set, delete: expected version or ZF_VERSION_ANY;
                          check: the version required */
    zf_create_mode_t mode; /* create only */
    int64_t ttl_ms;    /* create with ZF_MODE_TTL only; > 0 */
    int recursive;     /* delete only: also every node below */
} zf_op_t;

typedef struct zf_oplist {
    zf_op_t *ops;
    size_t n;
    size_t cap;
    int packed; /* nonzero: ops holds one op followed by its path and data,
                   all one allocation (see zf_oplist_push_packed) */
    size_t bytes; /* the most its ops take in a ZooKeeper request
                     (zf_op_request_bytes); set by zf_oplist_validate */
} zf_oplist_t;

/* ZooKeeper refuses requests over jute.maxbuffer (1 MiB - 1 by default):
 * the client sees the connection close, and sending the request again
 * loops for ever (oversized requests have also destabilised servers). What
 * one record's ops take in a request (zf_op_request_bytes) must stay under
 * this many bytes, checked before anything of it is copied or sent. */
#define ZF_OP_MAX_BYTES (1000 * 1000)

/* What one op takes in a multi request besides its path and data, at most:
 * the op's header, length fields, version or flags, and an ACL. */
#define ZF_OP_OVERHEAD 128

/* The most an op of `type` with a path of plen bytes and datalen bytes of
 * data takes in a ZooKeeper request: path, data and ZF_OP_OVERHEAD, plus,
 * for an upsert, a create of each ancestor it may have to make (so a deep
 * path costs the sum of its prefixes). Never fails. */
size_t zf_op_request_bytes(zf_op_type_t type, const char *path, size_t plen,
                           size_t datalen);

/* The longest ttl ZooKeeper takes (2^40 - 1 ms, about 34 years): the server
 * keeps it in the low 40 bits of the node's ephemeral owner. */
#define ZF_OP_MAX_TTL_MS ((int64_t)0xffffffffff)

/* The op's name as a script writes it ("upsert", ...). Never fails. */
const char *zf_op_name(zf_op_type_t type);

/* Parse an op name. Returns 0 and sets *out, or -1 for an unknown name. */
int zf_op_parse_type(const char *name, zf_op_type_t *out);

/* The mode's name as a script writes it ("persistent", ...). Never fails. */
const char *zf_mode_name(zf_create_mode_t mode);

/* Parse a mode name. Returns 0 and sets *out, or -1 for an unknown name. */
int zf_mode_parse(const char *name, zf_create_mode_t *out);

/* Check that path[0..len) is a znode path the ZooKeeper server takes
 * (its PathUtils.validatePath): starts with '/', no trailing '/', no empty,
 * "." or ".." component, and only valid UTF-8 without NUL, control
 * characters (U+0001-U+001F, U+007F-U+009F), U+D800-U+F8FF, U+FFF0-U+FFFF
 * or characters above U+FFFF (the server checks UTF-16, where those are
 * surrogates). Returns ZF_OK, or ZF_ERECORD with the reason in err
 * ("path has a NUL byte at byte 3"; the caller shows the path, as
 * zf_op_validate does, escaped). */
zf_err_t zf_path_check(const char *path, size_t len, char *err, size_t errlen);

/* zf_path_check, with the path in the message, shown as zf_op_escape
 * does: "path /a\x00b has a NUL byte at byte 2". */
zf_err_t zf_path_explain(const char *path, size_t len, char *err,
                         size_t errlen);

/* True when path is root itself or lies below it. Both must be valid paths;
 * root "/" contains everything. Never fails. */
int zf_path_is_under(const char *path, const char *root);

/* The UTF-8 character at s[0..len), len > 0: its length (1 to 4), its code
 * point in *cp; or 0 when the bytes there are not well-formed UTF-8 (a
 * stray or missing continuation byte, an overlong form, a surrogate, above
 * U+10FFFF). */
size_t zf_utf8_char(const char *s, size_t len, uint32_t *cp);

/* s[0..len) written for a message into out (outlen > 0 bytes, always
 * NUL-terminated): valid UTF-8 stays as it is, except control characters
 * (C0, DEL, C1), which become \xNN per byte like every byte that is not
 * UTF-8, and '\' becomes "\\". So different strings never look alike,
 * and none can break a line. When it does not fit, the middle is cut out
 * and replaced by "...". Returns out. */
const char *zf_op_escape(const char *s, size_t len, char *out, size_t outlen);

/* A subtree no op may touch, even inside the script's root: zkflow's own
 * znodes ([engine] offsets_root, the znodes of source = zk: scripts). */
typedef struct zf_reserved {
    const char *path;  /* a valid path other than "/" */
    const char *owner; /* what it is, for messages ("[engine] offsets_root") */
} zf_reserved_t;

/* What ops may do. An op touches a subtree when its path lies in it, when
 * it is a sequential create that can make a node in it (the node's name is
 * the path plus a counter of 10 characters), or when it is a recursive
 * delete of a node above it. */
typedef struct zf_op_rules {
    const char *root;              /* ops touch this subtree only ("/": all);
                                      a sequential create's node must lie
                                      below it whatever the counter */
    unsigned allowed;              /* op types allowed (ZF_OP_BIT flags) */
    const zf_reserved_t *reserved; /* nreserved subtrees no op may touch, */
    size_t nreserved;              /* besides ZooKeeper's own /zookeeper */
} zf_op_rules_t;

/* Validate one op: a valid path (zf_path_check), within the rules, and
 * fields that fit its type (e.g. a check needs a version, ttl only with
 * mode ttl and at most ZF_OP_MAX_TTL_MS). Returns ZF_OK or ZF_ERECORD with
 * the reason in err. */
zf_err_t zf_op_validate(const zf_op_t *op, const zf_op_rules_t *rules,
                        char *err, size_t errlen);

/* Validate a whole list: every op, plus the byte budget (zf_op_check_bytes
 * of the ops' zf_op_request_bytes, which is left in l->bytes) and what a
 * ZooKeeper multi cannot hold (a ttl or container create in a list of more
 * than one op). Errors name the op's position ("op 2: ..."). */
zf_err_t zf_oplist_validate(zf_oplist_t *l, const zf_op_rules_t *rules,
                            char *err, size_t errlen);

/* The byte budget: ZF_OK when `bytes` of request (zf_op_request_bytes)
 * fit in ZF_OP_MAX_BYTES, else ZF_ERECORD with the reason in err. For a
 * check before anything is copied. */
zf_err_t zf_op_check_bytes(size_t bytes, char *err, size_t errlen);

/* Coalescing (a script's `coalesce = true`). lists[0..n) are the op lists
 * of consecutive records of one batch, in order. Sets drop[i] to 1 when
 * record i can be left out: its ops are exactly one set or upsert without a
 * version, a later record j (at most ZF_COALESCE_WINDOW records on) is
 * exactly one op of the same type on the same path without a version, and
 * no record between them has an op on that path, above it or below it.
 * Every other drop[i] is 0. Leaving those records out gives every znode the
 * data it would have had (fewer versions on the way). Returns how many are
 * dropped. Never fails. */
#define ZF_COALESCE_WINDOW 256
size_t zf_oplist_coalesce(const zf_oplist_t **lists, size_t n,
                          unsigned char *drop);

/* Append a zeroed op (version ZF_VERSION_ANY) and return it; NULL when out
 * of memory. On a packed list, its op first gets strings of its own. */
zf_op_t *zf_oplist_push(zf_oplist_t *l);

/* Make the empty list l hold one op, zeroed as by zf_oplist_push, with a
 * copy of path[0..plen) as its path and, unless data is NULL, a copy of
 * data[0..datalen) as its data (both NUL-terminated), in one allocation
 * with the op itself: the commonest record (one op from a path and a
 * payload) costs one allocation instead of three. The list is packed: its
 * op's path and data must not be freed or replaced on their own (only
 * through zf_oplist_clear / zf_oplist_free). Small lists reuse the memory
 * of lists freed before (up to 1 MiB of it is kept; thread-safe). Returns
 * the op; NULL when out of memory or when l is not empty (l is unchanged
 * then). */
zf_op_t *zf_oplist_push_packed(zf_oplist_t *l, const char *path, size_t plen,
                               const char *data, size_t datalen);

/* Free every op and empty the list (its buffer is kept for reuse). */
void zf_oplist_clear(zf_oplist_t *l);

/* zf_oplist_clear, then free the buffer; the list may be reused after. */
void zf_oplist_free(zf_oplist_t *l);

/* Free what the op owns and zero it; accepts a zeroed op. Never on the op
 * of a packed list. */
void zf_op_clear(zf_op_t *op);

#endif

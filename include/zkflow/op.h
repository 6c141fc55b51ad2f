/* Operations: what a script asks ZooKeeper to do, and their validation.
 *
 * An op owns its path and data. Ops are produced by the script module,
 * validated here, and executed by the zk module. */
#ifndef ZKFLOW_OP_H
#define ZKFLOW_OP_H

#include <stddef.h>

#include "zkflow/error.h"

typedef enum zf_op_type {
    ZF_OP_UPSERT = 0, /* set; when absent create it, and missing parents */
    ZF_OP_CREATE,     /* create a persistent node; already there = success */
    ZF_OP_SET,        /* set the data of an existing node */
    ZF_OP_DELETE,     /* delete a leaf node; already absent = success */
} zf_op_type_t;

typedef struct zf_op {
    zf_op_type_t type;
    char *path;     /* owned, NUL-terminated, validated absolute path */
    char *data;     /* owned, may be NULL for an empty znode */
    size_t datalen;
} zf_op_t;

/* ZooKeeper refuses requests over jute.maxbuffer (1 MiB - 1 by default), and
 * oversized requests have destabilised servers: path plus data of one op must
 * stay under this many bytes, checked before anything is sent. */
#define ZF_OP_MAX_BYTES (1000 * 1000)

/* The op's name as a script writes it ("upsert", ...). Never fails. */
const char *zf_op_name(zf_op_type_t type);

/* Parse an op name. Returns 0 and sets *out, or -1 for an unknown name. */
int zf_op_parse_type(const char *name, zf_op_type_t *out);

/* Check that path[0..len) is a valid absolute znode path: starts with '/',
 * no trailing '/', no empty, "." or ".." component, no control characters,
 * no NUL. Returns ZF_OK, or ZF_ERECORD with the reason in err. */
zf_err_t zf_path_check(const char *path, size_t len, char *err, size_t errlen);

/* True when path is root itself or lies below it. Both must be valid paths;
 * root "/" contains everything. Never fails. */
int zf_path_is_under(const char *path, const char *root);

/* Validate an op against a script's root and the size limit. Returns ZF_OK or
 * ZF_ERECORD with the reason in err. */
zf_err_t zf_op_validate(const zf_op_t *op, const char *root, char *err,
                        size_t errlen);

/* Free what the op owns and zero it; accepts a zeroed op. */
void zf_op_clear(zf_op_t *op);

#endif

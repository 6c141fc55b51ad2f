/* Scripts: one sandbox per [script] section, which runs the user's transform
 * on records and turns what it returns into a validated op list.
 *
 * What a transform may return (see README, "Writing a transform"):
 *   nil                       skip the record
 *   path, payload, op         one op (op defaults to "upsert")
 *   { op = ..., path = ... }  one op table
 *   { {...}, {...} }          a list of op tables, applied atomically
 *
 * A script is not thread-safe: one thread uses it at a time. */
#ifndef ZKFLOW_SCRIPT_H
#define ZKFLOW_SCRIPT_H

#include <stddef.h>

#include "zkflow/config.h"
#include "zkflow/error.h"
#include "zkflow/op.h"
#include "zkflow/record.h"

typedef struct zf_script zf_script_t;

typedef struct zf_script_opts {
    const char *root;      /* subtree the script may write; "/" for all */
    unsigned ops;          /* allowed op types (ZF_OP_BIT flags) */
    const zf_kv_t *params; /* the script's `params` table, as strings */
    size_t nparams;
    int timeout_ms;        /* per-record time limit; 0 = none */
    int memory_mb;         /* memory limit of the whole state; 0 = none */
    const zf_config_t *config; /* the configuration the script runs under,
                                  or NULL: its zkflow znodes ([engine]
                                  offsets_root, every source = zk: script
                                  and its fixtures) are refused to the
                                  script, as ZooKeeper's /zookeeper is */
} zf_script_opts_t;

/* Defaults: root "/", every op, no params, 100 ms, 64 MB, no config. */
extern const zf_script_opts_t zf_script_opts_default;

/* Load the Lua file `file` (text only, never bytecode) into a new sandbox,
 * run it, and keep the function it returns. `name` labels log lines; opts
 * is copied (what it points to is needed during the call only). Returns
 * the script, or NULL with "FILE:LINE: message" (or "FILE: message") in err
 * when the file cannot be read, does not compile, raises, exceeds a limit,
 * or does not return a function, or when root lies in a subtree refused to
 * scripts. */
zf_script_t *zf_script_new(const char *name, const char *file,
                           const zf_script_opts_t *opts, char *err,
                           size_t errlen);

/* Like zf_script_new, with the source text given (len bytes, borrowed)
 * instead of read from a file; `file` only names it in versions' log lines
 * and error messages (e.g. "zk:/zkflow/scripts/devices"). */
zf_script_t *zf_script_new_text(const char *name, const char *file,
                                const char *src, size_t len,
                                const zf_script_opts_t *opts, char *err,
                                size_t errlen);

/* Free the sandbox and everything the script owns; accepts NULL. */
void zf_script_destroy(zf_script_t *s);

const char *zf_script_name(const zf_script_t *s);
const char *zf_script_file(const zf_script_t *s);

/* The script's version: 12 hex digits of a hash of its source text, so two
 * loads of the same text have the same version. Never fails. */
const char *zf_script_version(const zf_script_t *s);

/* Call the transform on one record and append its ops to `out`, which the
 * caller provides empty and owns.
 * - ZF_OK: out holds the ops (none when the record is to be skipped);
 * - ZF_ERECORD: the script raised, ran out of time or memory, returned
 *   something invalid, or an op failed validation; err holds
 *   "FILE:LINE: reason" and out is left empty.
 * The script's Lua stack is left as it was found. */
zf_err_t zf_script_transform(zf_script_t *s, const zf_record_t *rec,
                             zf_oplist_t *out, char *err, size_t errlen);

/* After zf_script_transform returned ZF_ERECORD: 1 when the transform ran to
 * its end but what it returned failed validation (not an op, an op outside
 * `root`, in a subtree refused to scripts or not allowed, over
 * ZF_OP_MAX_BYTES), 0 when the script itself
 * failed (raised, ran out of time or memory). Never fails. */
int zf_script_failed_validation(const zf_script_t *s);

#endif

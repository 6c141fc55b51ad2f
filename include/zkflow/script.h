/* Scripts: one LuaJIT state per [script] section, which runs the user's
 * transform on records and turns what it returns into a validated op.
 *
 * A script state is not thread-safe: one thread uses it at a time. */
#ifndef ZKFLOW_SCRIPT_H
#define ZKFLOW_SCRIPT_H

#include <stddef.h>

#include "zkflow/error.h"
#include "zkflow/op.h"
#include "zkflow/record.h"

typedef struct zf_script zf_script_t;

/* Load the Lua file `file` (text only, never bytecode) into a new state, run
 * it, and keep the function it returns. `name` labels log lines; `root` is
 * the subtree the script may write. Returns the script, or NULL with
 * "FILE:LINE: message" (or "FILE: message") in err when the file cannot be
 * read, does not compile, raises, or does not return a function. */
zf_script_t *zf_script_new(const char *name, const char *file,
                           const char *root, char *err, size_t errlen);

/* Free the state and everything the script owns; accepts NULL. */
void zf_script_destroy(zf_script_t *s);

const char *zf_script_name(const zf_script_t *s);

/* Call the transform on one record.
 * - ZF_OK with *has_op = 1: *op holds the op to apply (caller owns it and
 *   frees it with zf_op_clear);
 * - ZF_OK with *has_op = 0: the script returned nil, skip the record;
 * - ZF_ERECORD: the script raised, returned something invalid, or the op
 *   failed validation; err holds "FILE:LINE: reason" and *op is untouched.
 * The Lua stack is left as it was found. */
zf_err_t zf_script_transform(zf_script_t *s, const zf_record_t *rec,
                             zf_op_t *op, int *has_op, char *err,
                             size_t errlen);

#endif

/* JSON lines: sample records in, one result line per record out.
 *
 * This is the format of `zkflow test` and of `zkflow run --dry-run`.
 *
 * A record line is one JSON object; every field is optional:
 *   topic      string                    default "test"
 *   partition  integer 0..2^31-1         default 0
 *   offset     integer >= 0              default: the record's index in its
 *                                        file (0-based, records only)
 *   timestamp  integer ms, or null/-1    default -1 (absent)
 *   key        string or null            default null
 *   value      string or null; any other JSON value (object, array, number,
 *              boolean) is used as its compact JSON text     default null
 *   key_base64, value_base64             the bytes, base64-encoded (for
 *              binary keys and values); not together with key / value
 *   headers    [{"name": N, "value": V}, ...] or {N: V, ...}; V a string
 *              or null (absent "value" = null)
 * Unknown fields and duplicate fields are errors, so typos do not pass
 * silently. Blank lines and lines whose first non-blank character is '#'
 * are not records.
 *
 * A result line is, with keys in this order:
 *   {"offset":N,"ops":[OP,...]}   the ops the transform returned
 *   {"offset":N,"skip":true}      it returned no op
 *   {"offset":N,"error":"..."}    it failed ("FILE:LINE: reason")
 * where OP is {"op":..., "path":...} followed, only when they say
 * something, by "data" (when the op has data; "data_base64" instead when the
 * data is not valid UTF-8), "version" (when not ZF_VERSION_ANY), "mode"
 * (create with a mode other than persistent), "ttl" (ms, mode ttl) and
 * "recursive":true. */
#ifndef ZKFLOW_JSONL_H
#define ZKFLOW_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include "zkflow/error.h"
#include "zkflow/op.h"
#include "zkflow/record.h"

/* A record parsed from a line, owning its memory. `rec` points into the
 * other fields; treat them as private. */
typedef struct zf_jsonl_record {
    zf_record_t rec;
    char *topic;
    char *key;
    char *value;
    zf_header_t *headers; /* names and values are owned, malloc'd */
} zf_jsonl_record_t;

/* True when line[0..len) is not a record: only blanks, or a comment (first
 * non-blank character '#'). Never fails. */
int zf_jsonl_is_blank(const char *line, size_t len);

/* Parse line[0..len) (a trailing "\n" or "\r\n" is allowed). `index` is the
 * default offset: the number of records before this one in the file.
 * - ZF_OK with *out NULL: a blank or comment line (zf_jsonl_is_blank);
 * - ZF_OK with a new record in *out (free it with zf_jsonl_record_free);
 * - ZF_ERECORD: the line is malformed, *out is NULL and err says why
 *   (without the "FILE:LINE: " prefix, which is the caller's);
 * - ZF_ENOMEM. */
zf_err_t zf_jsonl_parse_record(const char *line, size_t len, int64_t index,
                               zf_jsonl_record_t **out, char *err,
                               size_t errlen);

/* Free a parsed record; accepts NULL. */
void zf_jsonl_record_free(zf_jsonl_record_t *r);

/* The result line of one record: an error line when `error` is not NULL
 * (invalid UTF-8 in it is replaced by U+FFFD), else a skip line when `ops`
 * is NULL or empty, else an ops line. Returns a new NUL-terminated string
 * without a newline (caller frees it), or NULL when out of memory. */
char *zf_jsonl_format_result(int64_t offset, const zf_oplist_t *ops,
                             const char *error);

/* Compare two result lines semantically: both are parsed, so key order and
 * spacing do not matter. In addition, an op's "data" matches when both
 * sides hold the same JSON document: a string of JSON text on one side
 * equals the same text with other spacing or key order, or the document
 * itself written unquoted on the expected side
 * ("data":{"on":true} matches "data":"{\"on\": true}"). Lua's table order,
 * and so json.encode's key order, changes from run to run.
 * Returns 1 when equal, 0 when different, -1 when `expected` is not valid
 * JSON (err says why) or out of memory. An `actual` line that is not valid
 * JSON never equals anything. */
int zf_jsonl_equal(const char *actual, const char *expected, char *err,
                   size_t errlen);

/* Base64 (RFC 4648, with padding) of src[0..len): a new NUL-terminated
 * string (caller frees it), or NULL when out of memory. */
char *zf_jsonl_base64_encode(const void *src, size_t len);

/* Decode base64 text (padding optional, no whitespace): a new buffer of
 * *outlen bytes plus a NUL (caller frees it), or NULL when the text is not
 * base64 or out of memory. */
char *zf_jsonl_base64_decode(const char *text, size_t len, size_t *outlen);

#endif

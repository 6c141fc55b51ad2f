/* fuzz_jsonl: engine/jsonl.c, the `zkflow test` JSON-lines format, and
 * engine/fixture.c that reads it. The input is a file of record lines: run
 * through zf_fixture_run with a small transform (under the sandbox's memory
 * limit) that uses every record field, its results compared with the same
 * text read as expected results (zf_expected_parse). Each line is also
 * parsed alone: a record's key and value must come back from base64, and
 * its result line must be JSON equal to itself; any line that is JSON must
 * equal itself. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz.h"
#include "zkflow/fixture.h"
#include "zkflow/jsonl.h"
#include "zkflow/op.h"
#include "zkflow/script.h"

static zf_script_t *script;

/* Every record field reaches the result: an error with the key's bytes
 * when the key starts with '!', a skip for the key "skip", else ops whose
 * data holds the value and the headers. */
static const char script_src[] =
    "return function(r)\n"
    "  local k = r.key or ''\n"
    "  if k:sub(1, 1) == '!' then error(k, 0) end\n"
    "  if k == 'skip' then return nil end\n"
    "  local h = {}\n"
    "  for i, x in ipairs(r.headers) do\n"
    "    h[i] = x.name .. '=' .. tostring(x.value) .. '/' ..\n"
    "           tostring(r.headers[x.name])\n"
    "  end\n"
    "  local path = '/r/' .. r.topic:gsub('[^%w]', '_') .. '/' ..\n"
    "               r.partition .. '/' .. r.offset\n"
    "  if k == 'list' then\n"
    "    return {{path = path, data = r.value},\n"
    "            {op = 'create', path = path .. '/h', data = table.concat(h, "
    "',')},\n"
    "            {op = 'check', path = path, version = r.timestamp or 0}}\n"
    "  end\n"
    "  return path, r.value, #k > 0 and k or nil\n"
    "end\n";

static void close_script(void) { zf_script_destroy(script); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char err[1024];
    zf_script_opts_t o = zf_script_opts_default;
    o.timeout_ms = 0; /* the transform is short; no watchdog needed */
    script = zf_script_new_text("fuzz", "jsonl.lua", script_src,
                                strlen(script_src), &o, err, sizeof err);
    if (!script)
        FUZZ_FAIL("%s", err);
    atexit(close_script);
    return 0;
}

/* One line alone. */
static void check_line(const char *line, size_t len, int64_t index) {
    zf_jsonl_record_t *r;
    char err[1024];
    zf_err_t rc = zf_jsonl_parse_record(line, len, index, &r, err,
                                        sizeof err);
    if (rc != ZF_OK && rc != ZF_ERECORD)
        FUZZ_FAIL("zf_jsonl_parse_record returned %s", zf_strerror(rc));
    if (zf_jsonl_is_blank(line, len) && (rc != ZF_OK || r))
        FUZZ_FAIL("a blank line was a record or an error");
    if (rc == ZF_OK && r) {
        const void *bytes[2] = {r->rec.key, r->rec.value};
        size_t lens[2] = {r->rec.key_len, r->rec.value_len};
        for (int i = 0; i < 2; i++) {
            if (!bytes[i])
                continue;
            char *b64 = zf_jsonl_base64_encode(bytes[i], lens[i]);
            size_t n;
            char *back = b64 ? zf_jsonl_base64_decode(b64, strlen(b64), &n)
                             : NULL;
            if (!back || n != lens[i] || memcmp(back, bytes[i], n) != 0)
                FUZZ_FAIL("base64 of %zu bytes did not come back", lens[i]);
            free(b64);
            free(back);
        }
        zf_oplist_t ops = {0};
        zf_op_t *op = zf_oplist_push(&ops);
        if (!op || !(op->path = strdup(r->rec.topic)))
            FUZZ_FAIL("out of memory");
        if (r->rec.value) {
            op->data = malloc(r->rec.value_len + 1);
            if (!op->data)
                FUZZ_FAIL("out of memory");
            memcpy(op->data, r->rec.value, r->rec.value_len);
            op->datalen = r->rec.value_len;
        }
        char *out = zf_jsonl_format_result(r->rec.offset, &ops, NULL);
        if (!out || zf_jsonl_equal(out, out, err, sizeof err) != 1)
            FUZZ_FAIL("result line not JSON: %s", out ? out : "(null)");
        free(out);
        zf_oplist_free(&ops);
        zf_jsonl_record_free(r);
    }
    /* The comparison of `zkflow test`: a line that is JSON equals itself. */
    char *z = strndup(line, len);
    if (!z)
        FUZZ_FAIL("out of memory");
    if (strlen(z) == len && zf_jsonl_equal(z, z, err, sizeof err) == 0)
        FUZZ_FAIL("a JSON line is not equal to itself");
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    int64_t index = 0;
    for (size_t at = 0; at < size;) {
        const char *nl = memchr(text + at, '\n', size - at);
        size_t len = nl ? (size_t)(nl - text) - at + 1 : size - at;
        check_line(text + at, len, index++);
        at += len;
    }

    char err[4096];
    zf_expected_t *exp = NULL;
    zf_err_t rc = zf_expected_parse("fuzz.expected.jsonl", text, size, &exp,
                                    err, sizeof err);
    if (rc != ZF_OK && rc != ZF_ECONFIG)
        FUZZ_FAIL("zf_expected_parse returned %s", zf_strerror(rc));
    if (size > 0) { /* fmemopen refuses an empty buffer */
        FILE *fp = fmemopen((void *)text, size, "r");
        if (!fp)
            FUZZ_FAIL("fmemopen failed");
        zf_fixture_stats_t st;
        rc = zf_fixture_run(script, fp, "fuzz.records.jsonl", exp, NULL, NULL,
                            &st, err, sizeof err);
        fclose(fp);
        if (rc != ZF_OK && rc != ZF_ECONFIG)
            FUZZ_FAIL("zf_fixture_run returned %s", zf_strerror(rc));
        if (rc == ZF_OK && exp && st.matched + st.differed < st.records)
            FUZZ_FAIL("%zu records, %zu compared", st.records,
                      st.matched + st.differed);
    }
    zf_expected_free(exp);
    return 0;
}

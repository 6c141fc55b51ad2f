/* Scripts: record → Lua table, Lua results → ops, errors with FILE:LINE,
 * and the sandbox's first walls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "zkflow/config.h"
#include "zkflow/script.h"
#include "zkflow/scriptset.h"

static char err[2048];

static const zf_header_t two_headers[] = {
    {"trace", "t1", 2},
    {"trace", "t2", 2},
    {"empty", NULL, 0},
};

static const zf_record_t rec = {
    .topic = "devices",
    .partition = 3,
    .offset = 1234567890123,
    .timestamp = 1700000000123,
    .key = "k1",
    .key_len = 2,
    .value = "{\"id\":\"d7\",\"status\":\"on\"}",
    .value_len = 25,
    .headers = two_headers,
    .nheaders = 3,
};

static zf_script_t *load(const char *text, const char *root) {
    const char *path = write_temp("s.lua", text);
    zf_script_opts_t opts = zf_script_opts_default;
    opts.root = root;
    zf_script_t *s = zf_script_new("s", path, &opts, err, sizeof err);
    if (!s)
        fail_msg("load failed: %s", err);
    return s;
}

/* Run text on rec; expect an op list (caller frees it). */
static zf_oplist_t run_ops(const char *text, const zf_record_t *r) {
    zf_script_t *s = load(text, "/");
    zf_oplist_t l = {0};
    if (zf_script_transform(s, r, &l, err, sizeof err) != ZF_OK)
        fail_msg("transform failed: %s", err);
    zf_script_destroy(s);
    return l;
}

/* Run text on rec; expect exactly one op and return it (caller clears). */
static zf_op_t run_op(const char *text, const zf_record_t *r) {
    zf_oplist_t l = run_ops(text, r);
    assert_int_equal(l.n, 1);
    /* A copy with strings of its own: the list may be packed. */
    zf_op_t op = l.ops[0];
    op.path = strdup(op.path);
    if (op.data) {
        op.data = malloc(op.datalen + 1);
        memcpy(op.data, l.ops[0].data, op.datalen + 1);
    }
    zf_oplist_free(&l);
    return op;
}

/* Run text on rec; expect a record error containing `what`, with the
 * message starting "PATH:LINE:". */
static void run_error(const char *text, const char *root, int line,
                      const char *what) {
    zf_script_t *s = load(text, root);
    zf_oplist_t l = {0};
    assert_int_equal(zf_script_transform(s, &rec, &l, err, sizeof err),
                     ZF_ERECORD);
    assert_int_equal(l.n, 0);
    zf_oplist_free(&l);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:%d: ", write_temp("s.lua", text),
             line);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, what))
        fail_msg("expected '%s...%s', got '%s'", prefix, what, err);
    zf_script_destroy(s);
}

static void test_three_values(void **state) {
    (void)state;
    zf_op_t op = run_op("return function(r) return '/a/' .. r.key, r.value end",
                        &rec);
    assert_int_equal(op.type, ZF_OP_UPSERT);
    assert_string_equal(op.path, "/a/k1");
    assert_int_equal(op.datalen, rec.value_len);
    assert_memory_equal(op.data, rec.value, rec.value_len);
    zf_op_clear(&op);

    const char *ops[] = {"create", "set", "upsert"};
    for (size_t i = 0; i < 3; i++) {
        char text[128];
        snprintf(text, sizeof text,
                 "return function(r) return '/x', 'd', '%s' end", ops[i]);
        op = run_op(text, &rec);
        assert_string_equal(zf_op_name(op.type), ops[i]);
        assert_int_equal(op.datalen, 1);
        zf_op_clear(&op);
    }
    op = run_op("return function(r) return '/x', 'ignored', 'delete' end", &rec);
    assert_int_equal(op.type, ZF_OP_DELETE);
    assert_null(op.data);
    zf_op_clear(&op);

    /* nil payload: an empty znode; binary payloads pass unchanged */
    op = run_op("return function(r) return '/x' end", &rec);
    assert_null(op.data);
    zf_op_clear(&op);
    op = run_op("return function(r) return '/x', 'a\\0b\\255' end", &rec);
    assert_int_equal(op.datalen, 4);
    assert_memory_equal(op.data, "a\0b\xff", 4);
    zf_op_clear(&op);
}

/* zf_script_failed_validation tells a script that failed (raised, time or
 * memory limit) from one whose returned ops failed validation. */
static void test_failure_stage(void **state) {
    (void)state;
    static const struct {
        const char *text;
        const char *root;
        int invalid;
    } cases[] = {
        {"return function(r) error('boom') end", "/", 0},
        {"return function(r) while true do end end", "/", 0},
        {"return function(r) local t = {} while true do t[#t + 1] = "
         "string.rep('x', 1000) .. #t end end", "/", 0},
        {"return function(r) return '/elsewhere/x', 'v' end", "/app", 1},
        {"return function(r) return 'relative', 'v' end", "/", 1},
        {"return function(r) return '/x', 'v', 'rename' end", "/", 1},
        {"return function(r) return 42 end", "/", 1},
        {"return function(r) return '/x', string.rep('x', 1000001) end", "/",
         1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zf_script_t *s = load(cases[i].text, cases[i].root);
        zf_oplist_t l = {0};
        assert_int_equal(zf_script_transform(s, &rec, &l, err, sizeof err),
                         ZF_ERECORD);
        if (zf_script_failed_validation(s) != cases[i].invalid)
            fail_msg("case %zu (%s): expected invalid=%d", i, err,
                     cases[i].invalid);
        zf_oplist_free(&l);
        zf_script_destroy(s);
    }
}

static void test_skip(void **state) {
    (void)state;
    const char *skips[] = {"return function(r) return nil end",
                           "return function(r) end",
                           "return function(r) return {} end"};
    for (size_t i = 0; i < 3; i++) {
        zf_script_t *s = load(skips[i], "/");
        zf_oplist_t l = {0};
        assert_int_equal(zf_script_transform(s, &rec, &l, err, sizeof err),
                         ZF_OK);
        assert_int_equal(l.n, 0);
        zf_oplist_free(&l);
        zf_script_destroy(s);
    }
}

static void test_record_fields(void **state) {
    (void)state;
    zf_op_t op = run_op(
        "return function(r)\n"
        "  local h = {}\n"
        "  for i, x in ipairs(r.headers) do\n"
        "    h[#h + 1] = x.name .. '=' .. tostring(x.value)\n"
        "  end\n"
        "  return '/r', table.concat({r.topic, r.partition,\n"
        "    string.format('%d', r.offset), string.format('%d', r.timestamp),\n"
        "    r.key, r.value, table.concat(h, ',')}, '|')\n"
        "end\n",
        &rec);
    assert_string_equal(op.data, "devices|3|1234567890123|1700000000123|k1|"
                                 "{\"id\":\"d7\",\"status\":\"on\"}|"
                                 "trace=t1,trace=t2,empty=nil");
    zf_op_clear(&op);

    /* Null key and value (a tombstone) and no timestamp read as nil. */
    zf_record_t tomb = {.topic = "t", .partition = 0, .offset = 5,
                        .timestamp = -1};
    op = run_op("return function(r) return '/t', tostring(r.key) .. "
                "tostring(r.value) .. tostring(r.timestamp) .. #r.headers end",
                &tomb);
    assert_string_equal(op.data, "nilnilnil0");
    zf_op_clear(&op);
}

static void test_json_and_state(void **state) {
    (void)state;
    zf_script_t *s = load("local json = require('json')\n"
                          "local n = 0\n"
                          "return function(r)\n"
                          "  n = n + 1\n"
                          "  local ev = json.decode(r.value)\n"
                          "  return '/d/' .. ev.id, json.encode({n = n})\n"
                          "end\n",
                          "/d");
    for (int i = 1; i <= 3; i++) {
        zf_oplist_t l = {0};
        assert_int_equal(zf_script_transform(s, &rec, &l, err, sizeof err),
                         ZF_OK);
        assert_int_equal(l.n, 1);
        assert_string_equal(l.ops[0].path, "/d/d7");
        char want[32];
        snprintf(want, sizeof want, "{\"n\":%d}", i); /* state persists */
        assert_string_equal(l.ops[0].data, want);
        zf_oplist_free(&l);
    }
    zf_script_destroy(s);
}

static void test_errors(void **state) {
    (void)state;
    run_error("return function(r)\n  error('boom')\nend\n", "/", 2, "boom");
    run_error("return function(r)\n  local x = nil\n  return x.y\nend\n", "/",
              3, "attempt to index");
    /* Raised inside a C function: the script's line is still named. */
    run_error("local json = require('json')\nreturn function(r)\n\n"
              "  local v = json.decode('{bad')\nend\n",
              "/", 4, "Expected");
    /* A tail call leaves no frame of the script: the function's line. */
    run_error("local json = require('json')\nreturn function(r)\n\n"
              "  return json.decode('{bad')\nend\n",
              "/", 2, "Expected");
    run_error("return function(r)\n  error({code = 1})\nend\n", "/", 2,
              "error object is a table value");
    /* Invalid results name the function's line. */
    run_error("\nreturn function(r) return '/x', 'd', 'remove' end\n", "/", 2,
              "unknown op 'remove'");
    run_error("return function(r) return 42 end\n", "/", 1,
              "an op table or a list of op tables; got a number");
    run_error("return function(r) return '/x', {} end\n", "/", 1,
              "payload must be a string or nil, not a table");
    run_error("return function(r) return 'x/y' end\n", "/", 1,
              "path x/y must start with '/'");
    run_error("return function(r) return '/a/../b' end\n", "/", 1,
              "'.' or '..' component");
    run_error("return function(r) return '/etc/x' end\n", "/devices", 1,
              "outside the script's root /devices");
    run_error("return function(r) return '/x', string.rep('a', 1000000) end\n",
              "/", 1, "over the limit");
}

static void test_load_errors(void **state) {
    (void)state;
    const char *path = write_temp("bad.lua", "return function(r)\n  if then\nend\n");
    assert_null(zf_script_new("s", path, &zf_script_opts_default, err, sizeof err));
    char want[512];
    snprintf(want, sizeof want, "%s:2:", path);
    assert_memory_equal(err, want, strlen(want));

    path = write_temp("notfn.lua", "return 42\n");
    assert_null(zf_script_new("s", path, &zf_script_opts_default, err, sizeof err));
    assert_non_null(strstr(err, "must return a function, it returned number"));

    path = write_temp("raise.lua", "local x = 1\nerror('init failed')\n");
    assert_null(zf_script_new("s", path, &zf_script_opts_default, err, sizeof err));
    snprintf(want, sizeof want, "%s:2: init failed", path);
    assert_string_equal(err, want);

    /* Running out of memory while loading still names the file. */
    path = write_temp("big.lua", "local t = string.rep('x', 32 * 1024 * 1024)\n"
                                 "return function(r) end\n");
    zf_script_opts_t small = zf_script_opts_default;
    small.memory_mb = 16;
    assert_null(zf_script_new("s", path, &small, err, sizeof err));
    snprintf(want, sizeof want, "%s: memory limit of 16 MB exceeded", path);
    assert_string_equal(err, want);

    assert_null(zf_script_new("s", "/nonexistent.lua", &zf_script_opts_default, err,
                          sizeof err));
    assert_non_null(strstr(err, "/nonexistent.lua: cannot open"));

    /* Precompiled bytecode is refused: only source text is loaded. */
    path = write_temp("bc.lua", "\033LJ\002\000return");
    assert_null(zf_script_new("s", path, &zf_script_opts_default, err, sizeof err));
    assert_non_null(strstr(err, "wrong mode"));
}

static void test_sandbox(void **state) {
    (void)state;
    zf_op_t op = run_op(
        "return function(r)\n"
        "  return '/s', table.concat({type(io), type(os.execute), type(dofile),\n"
        "    type(loadfile), type(load), type(loadstring), type(string.dump),\n"
        "    type(package), type(debug), type(ffi), type(jit)}, ',')\n"
        "end\n",
        &rec);
    assert_string_equal(op.data, "nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,nil");
    zf_op_clear(&op);
    run_error("return function(r)\n  local m = require('os')\nend\n", "/", 2,
              "module 'os' is not available");
    run_error("return function(r)\n  local ffi = require('ffi')\nend\n", "/",
              2, "module 'ffi' is not available");
}

static void test_op_tables(void **state) {
    (void)state;
    zf_oplist_t l = run_ops(
        "return function(r)\n"
        "  return { op = 'create', path = '/s/n-', data = 'x',\n"
        "           mode = 'sequential' }\n"
        "end\n",
        &rec);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.ops[0].type, ZF_OP_CREATE);
    assert_int_equal(l.ops[0].mode, ZF_MODE_SEQUENTIAL);
    assert_string_equal(l.ops[0].path, "/s/n-");
    assert_string_equal(l.ops[0].data, "x");
    zf_oplist_free(&l);

    zf_op_t op = run_op("return function(r) return { op = 'create', "
                        "path = '/t', mode = 'ttl', ttl = 60000 } end",
                        &rec);
    assert_int_equal(op.mode, ZF_MODE_TTL);
    assert_int_equal(op.ttl_ms, 60000);
    zf_op_clear(&op);

    /* A list: every field, in order; op defaults to upsert. */
    l = run_ops("return function(r) return {\n"
                "  { path = '/a', data = 'd' },\n"
                "  { op = 'set', path = '/b', data = '', version = 4 },\n"
                "  { op = 'create', path = '/c' },\n"
                "  { op = 'delete', path = '/d', recursive = true },\n"
                "  { op = 'check', path = '/e', version = 0 },\n"
                "  { op = 'create', path = '/f', mode = 'sequential' },\n"
                "} end\n",
                &rec);
    assert_int_equal(l.n, 6);
    assert_int_equal(l.ops[0].type, ZF_OP_UPSERT);
    assert_int_equal(l.ops[1].type, ZF_OP_SET);
    assert_int_equal(l.ops[1].version, 4);
    assert_int_equal(l.ops[1].datalen, 0);
    assert_non_null(l.ops[1].data); /* "" is data, unlike nil */
    assert_int_equal(l.ops[2].mode, ZF_MODE_PERSISTENT);
    assert_null(l.ops[2].data);
    assert_true(l.ops[3].recursive);
    assert_int_equal(l.ops[4].type, ZF_OP_CHECK);
    assert_int_equal(l.ops[4].version, 0);
    assert_int_equal(l.ops[5].mode, ZF_MODE_SEQUENTIAL);
    zf_oplist_free(&l);
}

static void test_op_table_errors(void **state) {
    (void)state;
    run_error("return function(r) return { path = '/a', colour = 'red' } end",
              "/", 1, "unknown field 'colour' in an op table");
    run_error("return function(r) return { op = 'set' } end", "/", 1,
              "an op table needs a path");
    run_error("return function(r) return { path = '/a', version = 1.5, "
              "op = 'set' } end",
              "/", 1, "version must be a whole number");
    run_error("return function(r) return { path = '/a', version = 'x', "
              "op = 'set' } end",
              "/", 1, "version must be a number, not a string");
    run_error("return function(r) return { op = 'create', path = '/a', "
              "mode = 'ephemeral' } end",
              "/", 1, "unknown mode 'ephemeral'");
    run_error("return function(r) return { op = 'create', path = '/a', "
              "mode = 'ttl', ttl = 0 } end",
              "/", 1, "ttl must be more than 0 ms");
    run_error("return function(r) return { op = 'delete', path = '/a', "
              "recursive = 1 } end",
              "/", 1, "recursive must be true or false");
    run_error("return function(r) return { path = '/a', data = 5 } end", "/",
              1, "data must be a string, not a number");
    run_error("return function(r) return { 'x' } end", "/", 1,
              "item 1 of the list is a string, not an op table");
    run_error("return function(r) return { { path = '/a' }, "
              "{ op = 'check', path = '/b' } } end",
              "/", 1, "op 2: check needs a version");
    run_error("return function(r) return { { path = '/a' }, "
              "{ op = 'create', path = '/t', mode = 'ttl', ttl = 5 } } end",
              "/", 1, "op 2: a ttl node cannot be created in a list");
    run_error("return function(r) return { { path = '/ok' }, { path = '/x/y' } } "
              "end",
              "/ok", 1, "op 2: path /x/y is outside the script's root /ok");
    run_error("return function(r)\n"
              "  local l = {}\n"
              "  for i = 1, 3 do l[i] = { path = '/b' .. i, data = "
              "string.rep('x', 400000) } end\n"
              "  return l\n"
              "end\n",
              "/", 1, "over the limit of 1000000 bytes per record");
}

/* The peak resident size since the last reset, and the current one (kB):
 * /proc/self/status. Writing 5 to clear_refs resets the peak (Linux 4.0). */
static long status_kb(const char *field) {
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, field, n) == 0)
            kb = atol(line + n);
    if (fp)
        fclose(fp);
    return kb;
}

/* The byte budget is checked before an op's path or data is copied: a list
 * of 100 ops sharing one 4 MB string is refused without 400 MB of copies. */
static void test_budget_before_copies(void **state) {
    (void)state;
    zf_script_t *s = load(
        "local big = string.rep('x', 4 * 1024 * 1024)\n"
        "return function(r)\n"
        "  local l = {}\n"
        "  for i = 1, 100 do l[i] = { path = '/b/' .. i, data = big } end\n"
        "  return l\n"
        "end\n",
        "/");
    FILE *fp = fopen("/proc/self/clear_refs", "w");
    if (fp) {
        fputs("5", fp);
        fclose(fp);
    }
    long before = status_kb("VmRSS:");
    zf_oplist_t l = {0};
    assert_int_equal(zf_script_transform(s, &rec, &l, err, sizeof err),
                     ZF_ERECORD);
    long peak = status_kb("VmHWM:");
    /* The data, the paths and ZF_OP_OVERHEAD per op (what is counted
     * before copying; an upsert's parents come on top once copied): */
    size_t bytes = 100 * (4 * 1024 * 1024 + ZF_OP_OVERHEAD);
    for (int i = 1; i <= 100; i++)
        bytes += (size_t)snprintf(NULL, 0, "/b/%d", i);
    char want[256];
    snprintf(want, sizeof want, "%zu bytes of ZooKeeper request (paths, "
                                "data, %d per op, the parents an upsert may "
                                "create), over the limit of 1000000 bytes "
                                "per record",
             bytes, ZF_OP_OVERHEAD);
    if (!strstr(err, want))
        fail_msg("expected '%s' in '%s'", want, err);
    assert_int_equal(l.n, 0);
    if (before < 0 || peak < 0)
        skip();
    if (peak - before > 64 * 1024) /* the old way: +400 MB */
        fail_msg("the resident size grew by %ld kB", peak - before);
    zf_oplist_free(&l);
    zf_script_destroy(s);
}

/* A field name matches by all its bytes: "path\0" is an unknown field, not
 * a second path (which overrode the first and leaked it); so are op and
 * mode names with a NUL. */
static void test_field_names_with_nul(void **state) {
    (void)state;
    run_error("return function(r) return { path = '/a', ['path\\0'] = '/b' } "
              "end",
              "/", 1, "unknown field 'path\\x00' in an op table");
    run_error("return function(r) return { path = '/a', ['data\\0x'] = 'd' } "
              "end",
              "/", 1, "unknown field 'data\\x00x' in an op table");
    run_error("return function(r) return { path = '/a', op = 'set\\0x' } end",
              "/", 1, "unknown op 'set\\x00x'");
    run_error("return function(r) return '/a', 'd', 'set\\0' end", "/", 1,
              "unknown op 'set\\x00'");
    run_error("return function(r) return { op = 'create', path = '/a', "
              "mode = 'ttl\\0', ttl = 5 } end",
              "/", 1, "unknown mode 'ttl\\x00'");
}

/* A list of ops holds items 1..n and nothing else: nothing is left out
 * silently. */
static void test_list_holes_and_keys(void **state) {
    (void)state;
    run_error("return function(r) return { [1] = { path = '/a' }, "
              "[3] = { path = '/c' } } end",
              "/", 1, "item 2 of the list is missing");
    run_error("return function(r) local l = { { path = '/a' }, "
              "{ path = '/b' }, { path = '/c' } } l[2] = nil return l end",
              "/", 1, "item 2 of the list is missing");
    run_error("return function(r) return { { path = '/a' }, "
              "{ path = '/b' }, n = 2 } end",
              "/", 1, "a list of ops has the key 'n' besides its items");
    run_error("return function(r) return { { path = '/a' }, op = 'set' } end",
              "/", 1, "a list of ops has the key 'op' besides its items");
    run_error("return function(r) return { { path = '/a' }, [2.5] = "
              "{ path = '/b' } } end",
              "/", 1, "a list of ops has a number key besides its items");
    run_error("return function(r) return { { path = '/a' }, [true] = 1 } end",
              "/", 1, "a list of ops has a boolean key besides its items");
    zf_oplist_t l = run_ops("return function(r) return { { path = '/a' }, "
                            "{ path = '/b' } } end",
                            &rec);
    assert_int_equal(l.n, 2);
    zf_oplist_free(&l);
}

/* Paths as the ZooKeeper server takes them, shown escaped in messages; the
 * root holds a sequential create's node; ZooKeeper's ttl limit. */
static void test_zookeeper_rules(void **state) {
    (void)state;
    run_error("return function(r) return '/a\\255' end", "/", 1,
              "path /a\\xff is not valid UTF-8 at byte 2");
    run_error("return function(r) return '/a\\0b' end", "/", 1,
              "path /a\\x00b has a NUL byte at byte 2");
    run_error("return function(r) return { path = '/a\\0b' } end", "/", 1,
              "path /a\\x00b has a NUL byte at byte 2");
    run_error("return function(r) return '/a\\239\\191\\189' end", "/", 1,
              "has a character ZooKeeper refuses in paths (U+FFFD)");
    run_error("return function(r) return '/zookeeper/quota/x' end", "/", 1,
              "path /zookeeper/quota/x is in /zookeeper (ZooKeeper's own "
              "subtree)");
    run_error("return function(r) return { op = 'create', path = '/t', "
              "mode = 'sequential' } end",
              "/t", 1, "a sequential create at /t makes /t0000000001");
    run_error("return function(r) return { op = 'create', path = '/t/x', "
              "mode = 'ttl', ttl = 2^40 } end",
              "/t", 1, "ttl must be at most 1099511627775 ms");
    zf_op_t op = run_op("return function(r) return { op = 'create', "
                        "path = '/t/x', mode = 'ttl', ttl = 2^40 - 1 } end",
                        &rec);
    assert_int_equal(op.ttl_ms, 1099511627775LL);
    zf_op_clear(&op);
}

/* The subtrees of zkflow's own znodes in the configuration are refused:
 * [engine] offsets_root, and a zk: script's znode and its fixtures. */
static void test_zkflow_znodes(void **state) {
    (void)state;
    char *lua = strdup(write_temp("w.lua", "return function(r) return "
                                           "r.key end\n"));
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[kafka]\nbootstrap.servers = 127.0.0.1:9092\ngroup.id = g\n"
             "[zookeeper]\nconnect = 127.0.0.1:2181\n"
             "[engine]\noffsets_root = /zk/pos\n"
             "[script w]\nfile = %s\ntopics = t\n"
             "[script z]\nsource = zk:/zk/scripts/z\ntopics = u\n"
             "[script inside]\nfile = %s\ntopics = v\nroot = /zk/pos/mine\n",
             lua, lua);
    zf_config_t *cfg;
    if (zf_config_load(write_temp("c.ini", ini), &cfg, err, sizeof err) !=
        ZF_OK)
        fail_msg("%s", err);
    zf_script_opts_t opts = zf_scriptset_opts(&cfg->scripts[0]);
    zf_script_t *s = zf_script_new("w", lua, &opts, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    static const struct {
        const char *path, *what; /* what: NULL when allowed */
    } cases[] = {
        {"/zk/pos", "path /zk/pos is in /zk/pos ([engine] offsets_root)"},
        {"/zk/pos/g/t/0", "is in /zk/pos ([engine] offsets_root), which "
                          "scripts may not write"},
        {"/zk/scripts/z", "is in /zk/scripts/z (the script of [script z])"},
        {"/zk/scripts/z.records.jsonl", "(a fixture of [script z])"},
        {"/zk/scripts/z.expected.jsonl", "(a fixture of [script z])"},
        {"/zk/scripts/y", NULL},
        {"/zk/position", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        zf_record_t r = rec;
        r.key = cases[i].path;
        r.key_len = strlen(cases[i].path);
        zf_oplist_t l = {0};
        zf_err_t rc = zf_script_transform(s, &r, &l, err, sizeof err);
        if (!cases[i].what ? rc != ZF_OK
                           : rc != ZF_ERECORD || !strstr(err, cases[i].what))
            fail_msg("%s: got %d '%s'", cases[i].path, (int)rc,
                     rc == ZF_OK ? "" : err);
        if (cases[i].what)
            assert_true(zf_script_failed_validation(s));
        zf_oplist_free(&l);
    }
    zf_script_destroy(s);

    /* A root inside them: the script could write nothing. */
    opts = zf_scriptset_opts(&cfg->scripts[2]);
    assert_null(zf_script_new("inside", lua, &opts, err, sizeof err));
    assert_non_null(strstr(err, "root /zk/pos/mine lies in /zk/pos ([engine] "
                                "offsets_root), which scripts may not write"));
    zf_config_destroy(cfg);
    free(lua);
}

static void test_headers_lookup(void **state) {
    (void)state;
    zf_op_t op = run_op("return function(r) return '/h', "
                        "r.headers.trace .. tostring(r.headers.empty) .. "
                        "tostring(r.headers.none) end",
                        &rec);
    assert_string_equal(op.data, "t2nilnil"); /* the last one of a name */
    zf_op_clear(&op);
}

static void test_params_and_allowed_ops(void **state) {
    (void)state;
    const char *path = write_temp("p.lua", "return function(r) return "
                                           "params.root .. '/' .. r.key, "
                                           "params.greeting end\n");
    zf_kv_t params[] = {{"root", "/p", 1}, {"greeting", "hello", 2}};
    zf_script_opts_t opts = zf_script_opts_default;
    opts.params = params;
    opts.nparams = 2;
    opts.ops = ZF_OP_BIT(ZF_OP_SET);
    zf_script_t *s = zf_script_new("p", path, &opts, err, sizeof err);
    assert_non_null(s);
    zf_oplist_t l = {0};
    /* The params arrive; the default op (upsert) is not allowed here. */
    assert_int_equal(zf_script_transform(s, &rec, &l, err, sizeof err),
                     ZF_ERECORD);
    assert_non_null(strstr(err, "op upsert is not allowed for this script"));
    zf_script_destroy(s);
    opts.ops = ZF_OP_ALL;
    s = zf_script_new("p", path, &opts, err, sizeof err);
    assert_int_equal(zf_script_transform(s, &rec, &l, err, sizeof err), ZF_OK);
    assert_string_equal(l.ops[0].path, "/p/k1");
    assert_string_equal(l.ops[0].data, "hello");
    zf_oplist_free(&l);
    zf_script_destroy(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_values),
        cmocka_unit_test(test_skip),
        cmocka_unit_test(test_failure_stage),
        cmocka_unit_test(test_record_fields),
        cmocka_unit_test(test_json_and_state),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_sandbox),
        cmocka_unit_test(test_op_tables),
        cmocka_unit_test(test_op_table_errors),
        cmocka_unit_test(test_budget_before_copies),
        cmocka_unit_test(test_field_names_with_nul),
        cmocka_unit_test(test_list_holes_and_keys),
        cmocka_unit_test(test_zookeeper_rules),
        cmocka_unit_test(test_zkflow_znodes),
        cmocka_unit_test(test_headers_lookup),
        cmocka_unit_test(test_params_and_allowed_ops),
    };
    return cmocka_run_group_tests_name("script", tests, NULL, NULL);
}

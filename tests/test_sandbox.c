/* Sandbox: what a script can reach, what it cannot, log(), the zk module,
 * and the time and memory limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <valgrind/valgrind.h>

#include "helpers.h"
#include "zkflow/sandbox.h"

#define MB (1024 * 1024)

/* Limits small enough to keep the suite fast (and bearable under
 * valgrind), large enough for every legitimate snippet below. */
static const zf_sandbox_limits_t test_limits = {50, 16 * MB};

/* For the few tests that run long C functions or many instructions but are
 * not about the time limit: the watchdog stops a call at the first VM
 * instruction after its deadline, and under valgrind on a loaded machine
 * these can take more than 50 ms. The limits stay on (the JIT off). */
#define SLOW_TIMEOUT_MS 2000

static char err[1024];

static zf_sandbox_t *new_sandbox(int timeout_ms, size_t memory_bytes) {
    zf_sandbox_limits_t lim = {timeout_ms, memory_bytes};
    zf_sandbox_t *sb = zf_sandbox_new("t", &lim, err, sizeof err);
    if (!sb)
        fail_msg("zf_sandbox_new: %s", err);
    return sb;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Load and run src with one result, through the sandbox. Leaves the
 * result (or the error) as the only value on the stack; returns the
 * status of the load or of the call. */
static int run(zf_sandbox_t *sb, const char *src) {
    lua_State *L = zf_sandbox_lua(sb);
    lua_settop(L, 0);
    int rc = zf_sandbox_load(sb, src, strlen(src), "=t");
    if (rc == 0)
        rc = zf_sandbox_pcall(sb, 0, 1, 0);
    assert_int_equal(lua_gettop(L), 1);
    return rc;
}

/* Run src, expect success, and return its result as a string (or the
 * type name of a non-string result). */
static const char *eval(zf_sandbox_t *sb, const char *src) {
    static char out[4096];
    int rc = run(sb, src);
    lua_State *L = zf_sandbox_lua(sb);
    if (rc != 0)
        fail_msg("'%s' failed: %s", src, lua_tostring(L, -1));
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                   : luaL_typename(L, -1);
    snprintf(out, sizeof out, "%s", s);
    lua_settop(L, 0);
    return out;
}

/* Run src, expect status `want` with a message containing `what`. */
static void expect_error(zf_sandbox_t *sb, const char *src, int want,
                         const char *what) {
    int rc = run(sb, src);
    lua_State *L = zf_sandbox_lua(sb);
    const char *msg = lua_tostring(L, -1);
    if (rc != want || !msg || !strstr(msg, what))
        fail_msg("'%s': expected status %d with '%s', got %d: %s", src, want,
                 what, rc, msg ? msg : luaL_typename(L, -1));
    lua_settop(L, 0);
}

/* ---- environment --------------------------------------------------------- */

static void test_removed_globals(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    static const char *const absent[] = {
        /* load code */
        "dofile", "loadfile", "load", "loadstring", "module",
        /* other functions' environments */
        "getfenv", "setfenv",
        /* the collector; userdata with __gc */
        "collectgarbage", "gcinfo", "newproxy",
        /* libraries that reach the host or the VM */
        "io", "debug", "package", "jit", "ffi", "cjson",
    };
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        char src[128];
        snprintf(src, sizeof src, "return type(%s)", absent[i]);
        if (strcmp(eval(sb, src), "nil") != 0)
            fail_msg("global %s is reachable", absent[i]);
    }
    zf_sandbox_destroy(sb);
}

static void test_kept_globals(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    static const char *const fns[] = {
        "assert", "error",    "ipairs",       "next",    "pairs",
        "pcall",  "xpcall",   "select",       "tonumber", "tostring",
        "type",   "unpack",   "rawget",       "rawset",  "rawequal",
        "setmetatable", "getmetatable", "require", "log", "print",
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        char src[128];
        snprintf(src, sizeof src, "return type(%s)", fns[i]);
        if (strcmp(eval(sb, src), "function") != 0)
            fail_msg("global %s is missing", fns[i]);
    }
    assert_string_equal(eval(sb, "return _G == _G._G and _VERSION"),
                        "Lua 5.1");
    /* The libraries work. */
    assert_string_equal(eval(sb, "return ('abc'):upper() .. string.rep('-', 2)"
                                 " .. table.concat({1, 2}, ',')"
                                 " .. math.floor(2.5) .. bit.band(7, 12)"),
                        "ABC--1,224");
    /* Globals are the script's own: it may define and rawset them. */
    assert_string_equal(eval(sb, "x = 1; rawset(_G, 'y', 2); return "
                                 "tostring(x + y)"),
                        "3");
    zf_sandbox_t *other = new_sandbox(0, 0);
    assert_string_equal(eval(other, "return type(x)"), "nil");
    zf_sandbox_destroy(other);
    zf_sandbox_destroy(sb);
}

/* Every function a script can reach through tables, from _G, the string
 * metatable and the two modules. Anything new must be added here on
 * purpose. */
static void test_reachable_functions(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(SLOW_TIMEOUT_MS,
                                   test_limits.memory_bytes);
    const char *walk =
        "local seen, out = {}, {}\n"
        "local function keys(t)\n"
        "  local ks = {}\n"
        "  for k in pairs(t) do ks[#ks + 1] = k end\n"
        "  table.sort(ks, function(a, b) return tostring(a) < tostring(b) "
        "end)\n"
        "  return ks\n"
        "end\n"
        "local function walk(v, path)\n"
        "  if type(v) == 'function' then\n"
        "    out[#out + 1] = path\n"
        "  elseif type(v) == 'table' and not seen[v] then\n"
        "    seen[v] = true\n"
        "    for _, k in ipairs(keys(v)) do\n"
        "      walk(rawget(v, k), path .. '.' .. tostring(k))\n"
        "    end\n"
        "    walk(getmetatable(v), path .. '.<mt>')\n"
        "  end\n"
        "end\n"
        "walk(_G, '_G')\n"
        "walk(getmetatable(''), 'string<mt>')\n"
        "walk(require('json'), 'json')\n"
        "walk(require('zk'), 'zk')\n"
        "return table.concat(out, ' ')\n";
    assert_string_equal(
        eval(sb, walk),
        "_G.assert _G.bit.arshift _G.bit.band _G.bit.bnot _G.bit.bor "
        "_G.bit.bswap _G.bit.bxor _G.bit.lshift _G.bit.rol _G.bit.ror "
        "_G.bit.rshift _G.bit.tobit _G.bit.tohex _G.coroutine.create "
        "_G.coroutine.isyieldable _G.coroutine.resume _G.coroutine.running "
        "_G.coroutine.status _G.coroutine.wrap _G.coroutine.yield _G.error "
        "_G.getmetatable _G.ipairs _G.log _G.math.abs _G.math.acos "
        "_G.math.asin _G.math.atan _G.math.atan2 _G.math.ceil _G.math.cos "
        "_G.math.cosh _G.math.deg _G.math.exp _G.math.floor _G.math.fmod "
        "_G.math.frexp _G.math.ldexp _G.math.log _G.math.log10 _G.math.max "
        "_G.math.min _G.math.modf _G.math.pow _G.math.rad _G.math.random "
        "_G.math.randomseed _G.math.sin _G.math.sinh _G.math.sqrt "
        "_G.math.tan _G.math.tanh _G.next _G.os.clock _G.os.date _G.os.time "
        "_G.pairs _G.pcall _G.print _G.rawequal _G.rawget _G.rawset "
        "_G.require _G.select _G.setmetatable _G.string.byte _G.string.char "
        "_G.string.find _G.string.format _G.string.gmatch _G.string.gsub "
        "_G.string.len _G.string.lower _G.string.match _G.string.rep "
        "_G.string.reverse _G.string.sub _G.string.upper _G.table.concat "
        "_G.table.foreach _G.table.foreachi _G.table.getn _G.table.insert "
        "_G.table.maxn _G.table.move _G.table.remove _G.table.sort "
        "_G.tonumber _G.tostring _G.type _G.unpack _G.xpcall json.decode "
        "json.encode zk.check "
        "zk.create zk.delete zk.set zk.upsert");
    /* print is log, not a write to the daemon's stdout. */
    assert_string_equal(eval(sb, "return tostring(print == log)"), "true");
    zf_sandbox_destroy(sb);
}

static void test_string_without_dump(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    assert_string_equal(eval(sb, "return type(string.dump)"), "nil");
    assert_string_equal(eval(sb, "return type(('').dump)"), "nil");
    assert_string_equal(eval(sb, "return type(getmetatable('').__index.dump)"),
                        "nil");
    expect_error(sb, "return string.dump(function() end)", LUA_ERRRUN,
                 "attempt to call field 'dump' (a nil value)");
    /* The string metatable leads back to string, and nowhere else. */
    assert_string_equal(
        eval(sb, "return tostring(getmetatable('').__index == string)"),
        "true");
    assert_string_equal(eval(sb, "local n = 0 for k in pairs(getmetatable(''))"
                                 " do n = n + 1 end return tostring(n)"),
                        "1");
    zf_sandbox_destroy(sb);
}

static void test_os_only_time_date_clock(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    assert_string_equal(eval(sb, "local ks = {} for k in pairs(os) do "
                                 "ks[#ks + 1] = k end table.sort(ks) "
                                 "return table.concat(ks, ',')"),
                        "clock,date,time");
    static const char *const absent[] = {"execute", "exit",    "getenv",
                                         "remove",  "rename",  "tmpname",
                                         "setlocale", "difftime"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        char src[128];
        snprintf(src, sizeof src, "return type(os.%s)", absent[i]);
        if (strcmp(eval(sb, src), "nil") != 0)
            fail_msg("os.%s is reachable", absent[i]);
    }
    assert_string_equal(eval(sb, "return type(os.time())"), "number");
    assert_string_equal(eval(sb, "return type(os.clock())"), "number");
    assert_string_equal(eval(sb, "return os.date('!%Y-%m-%d %H:%M:%S', 86399)"),
                        "1970-01-01 23:59:59");
    assert_string_equal(eval(sb, "local t = os.date('!*t', 0) return "
                                 "t.year .. '-' .. t.month .. '-' .. t.day .. "
                                 "' ' .. t.wday .. ' ' .. tostring(t.isdst)"),
                        "1970-1-1 5 false");
    assert_string_equal(eval(sb, "return os.date('!%Ey|%%|%n', 0)"),
                        "70|%|\n");
    assert_string_equal(eval(sb, "return type(os.date())"), "string");
    assert_string_equal(
        eval(sb, "return tostring(os.time({year = 2020, month = 1, day = 1}) > "
                 "0)"),
        "true");
    zf_sandbox_destroy(sb);
}

/* Invalid conversions are errors, never whatever the C library makes of
 * them; times that do not fit a time_t are errors too. */
static void test_os_date_bad_input(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(SLOW_TIMEOUT_MS,
                                   test_limits.memory_bytes);
    expect_error(sb, "return os.date('%Q')", LUA_ERRRUN,
                 "invalid conversion specifier '%Q'");
    expect_error(sb, "return os.date('abc%')", LUA_ERRRUN,
                 "invalid conversion specifier '%'");
    expect_error(sb, "return os.date('%E')", LUA_ERRRUN,
                 "invalid conversion specifier '%E'");
    expect_error(sb, "return os.date('%Ez')", LUA_ERRRUN,
                 "invalid conversion specifier '%Ez'");
    expect_error(sb, "return os.date('%5d')", LUA_ERRRUN,
                 "invalid conversion specifier '%5'");
    expect_error(sb, "return os.date('%c', 1e300)", LUA_ERRRUN,
                 "time out of range");
    expect_error(sb, "return os.date('%c', 0/0)", LUA_ERRRUN,
                 "time out of range");
    expect_error(sb, "return os.date('*t', -1/0)", LUA_ERRRUN,
                 "time out of range");
    expect_error(sb, "return os.date({})", LUA_ERRRUN, "string expected");
    /* A long format is fine; its size is the script's memory. */
    assert_string_equal(
        eval(sb, "return tostring(#os.date(string.rep('%Y', 10000), 0))"),
        "40000");
    zf_sandbox_destroy(sb);
}

static void test_coroutines(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    assert_string_equal(
        eval(sb, "local gen = coroutine.wrap(function()\n"
                 "  for i = 1, 3 do coroutine.yield(i) end\n"
                 "end)\n"
                 "return gen() .. gen() .. gen()"),
        "123");
    zf_sandbox_destroy(sb);
}

/* ---- loading code ------------------------------------------------------- */

/* Bytecode made by an ordinary LuaJIT state. */
static void make_bytecode(char *buf, size_t *len) {
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, "return string.dump(function() "
                                      "return 'escaped' end)"),
                     0);
    size_t n;
    const char *p = lua_tolstring(L, -1, &n);
    assert_true(n < *len);
    memcpy(buf, p, n);
    *len = n;
    lua_close(L);
}

static void test_no_bytecode(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    lua_State *L = zf_sandbox_lua(sb);
    char bc[4096];
    size_t len = sizeof bc;
    make_bytecode(bc, &len);
    assert_int_equal(bc[0], '\033');

    /* The host's own loader takes text only. */
    assert_int_equal(zf_sandbox_load(sb, bc, len, "=bc"), LUA_ERRSYNTAX);
    assert_string_equal(lua_tostring(L, -1),
                        "attempt to load chunk with wrong mode");
    lua_settop(L, 0);

    /* No function in the script's reach loads a chunk of any kind. */
    lua_pushlstring(L, bc, len);
    lua_setglobal(L, "bc");
    static const char *const routes[] = {
        "return loadstring(bc)()",
        "return load(function() local s = bc bc = nil return s end)()",
        "return dofile('/dev/null')",
        "return loadfile('/dev/null')",
        "return require('bc')",
        "return module('m')",
        "return string.dump(print)",
        "return getmetatable('').__index.dump(print)",
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = run(sb, routes[i]);
        if (rc == 0)
            fail_msg("'%s' succeeded", routes[i]);
        lua_settop(L, 0);
    }
    /* Text loads as before. */
    assert_string_equal(eval(sb, "return 'text ok'"), "text ok");
    zf_sandbox_destroy(sb);
}

static void test_no_fenv_no_collector(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    expect_error(sb, "return getfenv(0)", LUA_ERRRUN,
                 "global 'getfenv' (a nil value)");
    expect_error(sb, "return setfenv(1, {})", LUA_ERRRUN,
                 "global 'setfenv' (a nil value)");
    expect_error(sb, "return collectgarbage('stop')", LUA_ERRRUN,
                 "global 'collectgarbage' (a nil value)");
    expect_error(sb, "return newproxy(true)", LUA_ERRRUN,
                 "global 'newproxy' (a nil value)");
    expect_error(sb, "return gcinfo()", LUA_ERRRUN,
                 "global 'gcinfo' (a nil value)");
    zf_sandbox_destroy(sb);
}

/* Indirect routes to the host: through _G, the string metatable, error
 * objects, metatables. None leads anywhere. */
static void test_escape_attempts(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    static const char *const nil_exprs[] = {
        "_G.io",
        "_G['os'].execute",
        "rawget(_G, 'io')",
        "rawget(os, 'getenv')",
        "getmetatable('').__index.os",
        "getmetatable('').__index.io",
        "('').os",
        "getmetatable(_G)",
        "getmetatable(os)",
        "getmetatable(require('json'))",
        "require('json').new",
        "require('json').encode_keep_buffer",
    };
    for (size_t i = 0; i < sizeof nil_exprs / sizeof nil_exprs[0]; i++) {
        char src[256];
        snprintf(src, sizeof src, "return type(%s)", nil_exprs[i]);
        if (strcmp(eval(sb, src), "nil") != 0)
            fail_msg("%s is not nil", nil_exprs[i]);
    }
    /* A metatable set by the script stays the script's business. */
    assert_string_equal(eval(sb, "getmetatable('').__index = function() "
                                 "return 'x' end return ('abc').anything"),
                        "x");
    /* An error object with metamethods reaches the host as an object; the
     * host never runs its __tostring outside a limited call. */
    lua_State *L = zf_sandbox_lua(sb);
    assert_int_equal(run(sb, "error(setmetatable({}, {__tostring = "
                             "function() while true do end end}))"),
                     LUA_ERRRUN);
    assert_int_equal(lua_type(L, -1), LUA_TTABLE);
    lua_settop(L, 0);
    zf_sandbox_destroy(sb);
}

static void test_require(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    assert_string_equal(
        eval(sb, "local json = require('json')\n"
                 "assert(require('cjson') == json and require('json') == json)"
                 "\nreturn json.encode(json.decode('{\"a\":[1,2]}'))"),
        "{\"a\":[1,2]}");
    assert_string_equal(eval(sb, "return type(require('zk').upsert)"),
                        "function");
    static const char *const others[] = {"os",     "io",      "ffi",
                                         "jit",    "debug",   "package",
                                         "string", "cjson.safe", "zk.x"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        char src[128], want[256];
        snprintf(src, sizeof src, "return require('%s')", others[i]);
        snprintf(want, sizeof want,
                 "module '%s' is not available to zkflow scripts "
                 "(available: json, zk)",
                 others[i]);
        expect_error(sb, src, LUA_ERRRUN, want);
    }
    expect_error(sb, "return require()", LUA_ERRRUN, "string expected");
    zf_sandbox_destroy(sb);
}

/* ---- log ---------------------------------------------------------------- */

/* Run `src` with stderr going to a file; return what was written. */
static const char *capture_stderr(zf_sandbox_t *sb, const char *src) {
    static char out[16384];
    char path[] = "/tmp/zkflow-test-stderr-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    int rc = run(sb, src);
    dup2(saved, STDERR_FILENO);
    close(saved);
    if (rc != 0)
        fail_msg("'%s' failed: %s", src,
                 lua_tostring(zf_sandbox_lua(sb), -1));
    lua_settop(zf_sandbox_lua(sb), 0);
    ssize_t n = pread(fd, out, sizeof out - 1, 0);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_log(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    const char *out = capture_stderr(
        sb, "log('hello', 1, nil, true, setmetatable({}, {__tostring = "
            "function() return 'obj' end}))");
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, " INFO  script: t: hello 1 nil true obj\n"));

    /* print is the same function; control characters cannot start a
     * line of their own. */
    out = capture_stderr(sb, "print('a\\nERROR forged\\r', '\\0')");
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "script: t: a\\nERROR forged\\x0d \\x00\n"));

    /* Long messages are cut, and still make one line. */
    out = capture_stderr(sb, "log(string.rep('x', 100000))");
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "xxx...\n"));

    expect_error(sb, "log(setmetatable({}, {__tostring = function() "
                     "return {} end}))",
                 LUA_ERRRUN, "'tostring' must return a string to 'log'");
    zf_sandbox_destroy(sb);
}

static void test_log_rate_limit(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    const char *out =
        capture_stderr(sb, "for i = 1, 25 do log('line', i) end");
    assert_int_equal(count_lines(out), 10);
    assert_non_null(strstr(out, "t: line 10\n"));
    assert_null(strstr(out, "t: line 11\n"));

    /* Still within the second: nothing. */
    out = capture_stderr(sb, "log('more')");
    assert_string_equal(out, "");

    /* Logging resumes in the next second, after one line that says how
     * many were dropped. */
    usleep(1100 * 1000);
    out = capture_stderr(sb, "log('again')");
    assert_int_equal(count_lines(out), 2);
    const char *dropped =
        strstr(out, "WARN  script: t: 16 log line(s) dropped (limit 10 per "
                    "second)\n");
    assert_non_null(dropped);
    assert_true(dropped < strstr(out, "t: again\n"));
    zf_sandbox_destroy(sb);
}

/* ---- zk module ---------------------------------------------------------- */

/* Lua that renders an op table as "k=v k=v" in key order. */
static const char show_fn[] =
    "local zk = require('zk')\n"
    "local function show(op)\n"
    "  local ks = {}\n"
    "  for k in pairs(op) do ks[#ks + 1] = k end\n"
    "  table.sort(ks)\n"
    "  for i, k in ipairs(ks) do ks[i] = k .. '=' .. tostring(op[k]) end\n"
    "  return table.concat(ks, ' ')\n"
    "end\n";

static const char *zk_op(zf_sandbox_t *sb, const char *expr) {
    char src[1024];
    snprintf(src, sizeof src, "%sreturn show(%s)", show_fn, expr);
    return eval(sb, src);
}

static void test_zk_constructors(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    assert_string_equal(zk_op(sb, "zk.upsert('/a/b', 'd')"),
                        "data=d op=upsert path=/a/b");
    assert_string_equal(zk_op(sb, "zk.upsert('/a/b')"), "op=upsert path=/a/b");
    assert_string_equal(zk_op(sb, "zk.set('/a', 'd')"),
                        "data=d op=set path=/a");
    assert_string_equal(zk_op(sb, "zk.set('/a', nil, 3)"),
                        "op=set path=/a version=3");
    assert_string_equal(zk_op(sb, "zk.create('/a', 'd')"),
                        "data=d op=create path=/a");
    /* Only mode and ttl are taken from opts. */
    assert_string_equal(
        zk_op(sb, "zk.create('/a', nil, {mode = 'ttl', ttl = 5000, "
                  "version = 1, junk = true})"),
        "mode=ttl op=create path=/a ttl=5000");
    assert_string_equal(
        zk_op(sb, "zk.create('/a', 'd', {mode = 'sequential'})"),
        "data=d mode=sequential op=create path=/a");
    assert_string_equal(zk_op(sb, "zk.delete('/a')"), "op=delete path=/a");
    /* Only version and recursive are taken from opts. */
    assert_string_equal(
        zk_op(sb, "zk.delete('/a', {version = 2, recursive = true, "
                  "mode = 'x'})"),
        "op=delete path=/a recursive=true version=2");
    assert_string_equal(zk_op(sb, "zk.check('/a', 7)"),
                        "op=check path=/a version=7");
    /* Each call builds a new table. */
    assert_string_equal(
        eval(sb, "local zk = require('zk') return "
                 "tostring(zk.upsert('/a') ~= zk.upsert('/a'))"),
        "true");
    zf_sandbox_destroy(sb);
}

static void test_zk_argument_errors(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    /* The error names the constructor and the script's line (a tail call
     * would leave no line to name). */
    expect_error(sb, "local zk = require('zk')\n\nlocal op = zk.upsert(nil, "
                     "'d')",
                 LUA_ERRRUN, "t:3: zk.upsert: path must be a string, not nil");
    expect_error(sb, "return require('zk').set({}, 'd')", LUA_ERRRUN,
                 "zk.set: path must be a string, not table");
    expect_error(sb, "return require('zk').create(42)", LUA_ERRRUN,
                 "zk.create: path must be a string, not number");
    expect_error(sb, "return require('zk').delete(true)", LUA_ERRRUN,
                 "zk.delete: path must be a string, not boolean");
    expect_error(sb, "return require('zk').check()", LUA_ERRRUN,
                 "zk.check: path must be a string, not nil");
    expect_error(sb, "return require('zk').upsert('/a', {})", LUA_ERRRUN,
                 "zk.upsert: data must be a string or nil, not table");
    expect_error(sb, "return require('zk').set('/a', 'd', '3')", LUA_ERRRUN,
                 "zk.set: version must be a number or nil, not string");
    expect_error(sb, "return require('zk').create('/a', 'd', 'ttl')",
                 LUA_ERRRUN, "zk.create: opts must be a table or nil, not "
                             "string");
    expect_error(sb, "return require('zk').delete('/a', 1)", LUA_ERRRUN,
                 "zk.delete: opts must be a table or nil, not number");
    expect_error(sb, "return require('zk').check('/a')", LUA_ERRRUN,
                 "zk.check: version must be a number, not nil");
    /* Replacing globals does not change how ops are built. */
    assert_string_equal(
        zk_op(sb, "(function() type = nil error = nil return "
                  "zk.upsert('/a') end)()"),
        "op=upsert path=/a");
    zf_sandbox_destroy(sb);
}

/* ---- time limit --------------------------------------------------------- */

/* Run src under a 50 ms limit: it must fail with the limit's message
 * within a bounded time (generous, for valgrind), and the state must
 * work afterwards. */
static void expect_timeout(zf_sandbox_t *sb, const char *src) {
    int64_t t0 = now_ms();
    int rc = run(sb, src);
    int64_t took = now_ms() - t0;
    lua_State *L = zf_sandbox_lua(sb);
    const char *msg = lua_tostring(L, -1);
    if (rc != LUA_ERRRUN || !msg ||
        !strstr(msg, "time limit of 50 ms exceeded"))
        fail_msg("'%s': expected the time limit, got %d: %s", src, rc,
                 msg ? msg : luaL_typename(L, -1));
    if (took < 50 || took > 3000)
        fail_msg("'%s': stopped after %lld ms", src, (long long)took);
    lua_settop(L, 0);
    assert_string_equal(eval(sb, "return 'alive'"), "alive");
}

static const char *const runaway_loops[] = {
    "while true do end",
    "for i = 1, math.huge do end",
    "repeat until false",
    "local function f() return f() end return f()",
    "local a, b\n"
    "function a(n) return b(n + 1) end\n"
    "function b(n) return a(n + 1) end\n"
    "return a(0)",
    "local t = {} while true do t[1] = (t[1] or 0) + 1 end",
    "string.gsub(string.rep('x', 10), '.', function() while true do end end)",
    "table.sort({3, 2, 1}, function(a, b) while true do end end)",
    "local co = coroutine.wrap(function() while true do end end) co()",
    "local co = coroutine.create(function() while true do "
    "coroutine.yield() end end)\n"
    "while true do coroutine.resume(co) end",
};

static void test_time_limit(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    for (size_t i = 0; i < sizeof runaway_loops / sizeof runaway_loops[0];
         i++)
        expect_timeout(sb, runaway_loops[i]);
    /* The limit is per call: many short calls add up to much more. */
    for (int i = 0; i < 10; i++)
        eval(sb, "local n = 0 for i = 1, 1000 do n = n + i end return n");
    zf_sandbox_destroy(sb);
}

/* Once the limit has passed, every instruction raises again, so pcall,
 * xpcall and coroutine.resume inside the script cannot swallow it. */
static void test_time_limit_not_catchable(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    static const char *const catchers[] = {
        "pcall(function() while true do end end) return 'caught'",
        "local ok, e = pcall(function() while true do end end)\n"
        "return 'caught: ' .. tostring(e)",
        "while true do pcall(function() while true do end end) end",
        "while true do pcall(error) end",
        "while true do pcall(function() end) end",
        "xpcall(function() while true do end end, function(e) return e end)\n"
        "return 'caught'",
        "xpcall(function() while true do end end,\n"
        "       function() while true do end end)\n"
        "return 'caught'",
        "local co = coroutine.create(function() while true do end end)\n"
        "coroutine.resume(co) return 'caught'",
        /* Swallowed, then returned at once: the call still fails. */
        "return pcall(function() while true do end end)",
    };
    for (size_t i = 0; i < sizeof catchers / sizeof catchers[0]; i++)
        expect_timeout(sb, catchers[i]);
    zf_sandbox_destroy(sb);
}

/* A message handler ("FILE:LINE: ..." in script.c) sees the limit's error,
 * also when the script swallowed it and returned. */
static int prefix_handler(lua_State *L) {
    lua_pushfstring(L, "H: %s", lua_tostring(L, 1));
    return 1;
}

static void test_time_limit_message_handler(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms,
                                   test_limits.memory_bytes);
    lua_State *L = zf_sandbox_lua(sb);
    static const char *const srcs[] = {
        "while true do end",
        "return pcall(function() while true do end end)",
    };
    for (size_t i = 0; i < 2; i++) {
        lua_pushcfunction(L, prefix_handler);
        assert_int_equal(
            zf_sandbox_load(sb, srcs[i], strlen(srcs[i]), "=t"), 0);
        assert_int_equal(zf_sandbox_pcall(sb, 0, LUA_MULTRET, -2),
                         LUA_ERRRUN);
        assert_int_equal(lua_gettop(L), 2);
        const char *msg = lua_tostring(L, -1);
        assert_non_null(msg);
        if (strncmp(msg, "H: ", 3) != 0 ||
            !strstr(msg, "time limit of 50 ms exceeded"))
            fail_msg("'%s': got '%s'", srcs[i], msg);
        lua_settop(L, 0);
    }
    zf_sandbox_destroy(sb);
}

/* A C function that calls back into the sandbox: the inner call is
 * stopped, and the outer call reports the limit even when the C function
 * swallows the inner error. */
static zf_sandbox_t *nested_sb;

static int call_nested(lua_State *L) {
    lua_pushvalue(L, 1);
    int rc = zf_sandbox_pcall(nested_sb, 0, 0, 0);
    lua_pushinteger(L, rc);
    return 1;
}

static void test_time_limit_nested_calls(void **state) {
    (void)state;
    nested_sb = new_sandbox(test_limits.timeout_ms, test_limits.memory_bytes);
    lua_State *L = zf_sandbox_lua(nested_sb);
    lua_pushcfunction(L, call_nested);
    lua_setglobal(L, "nested");
    assert_string_equal(eval(nested_sb, "return tostring(nested(function() "
                                        "end))"),
                        "0");
    expect_timeout(nested_sb,
                   "nested(function() while true do end end) return 'x'");
    zf_sandbox_destroy(nested_sb);
}

/* A call whose time went in a C function in tail position, with no VM
 * instruction after it for the hook, fails all the same (it used to return
 * the function's result as if nothing had happened), also when pcall
 * swallowed the error. */
static void test_time_limit_tail_call(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(5, 256 * MB);
    lua_State *L = zf_sandbox_lua(sb);
    /* 48 MB: string.upper takes ~30 ms on it here. */
    size_t len = 48 * MB;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, 'x', len);
    lua_pushlstring(L, big, len);
    free(big);
    lua_setglobal(L, "S");
    static const char *const srcs[] = {
        "return string.upper(S)",
        "return pcall(string.upper, S)",
    };
    for (size_t i = 0; i < 2; i++) {
        int rc = run(sb, srcs[i]);
        const char *msg = lua_tostring(L, -1);
        if (rc != LUA_ERRRUN || !msg ||
            !strstr(msg, "time limit of 5 ms exceeded"))
            fail_msg("'%s': expected the time limit, got %d: %.60s", srcs[i],
                     rc, msg ? msg : luaL_typename(L, -1));
        lua_settop(L, 0);
    }
    assert_string_equal(eval(sb, "return #S"), "number");
    zf_sandbox_destroy(sb);
}

static void test_no_limits(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(0, 0);
    /* Runs long enough to pass any small limit; the JIT is on here. */
    assert_string_equal(eval(sb, "local n = 0 for i = 1, 3e7 do n = n + 1 end "
                                 "return tostring(n)"),
                        "30000000");
    zf_sandbox_destroy(sb);
}

/* ---- the watchdog --------------------------------------------------------- */

/* Run src: it must fail with "time limit of MS ms exceeded", and the
 * state must work afterwards. */
static void expect_stopped(zf_sandbox_t *sb, const char *src, int ms) {
    char want[64];
    snprintf(want, sizeof want, "time limit of %d ms exceeded", ms);
    expect_error(sb, src, LUA_ERRRUN, want);
    assert_string_equal(eval(sb, "return 'alive'"), "alive");
}

/* Runaway loops, in pcall and in a coroutine, are stopped by the watchdog
 * under a limit other than the suite's. */
static void test_watchdog_stops_runaways(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(20, test_limits.memory_bytes);
    static const char *const srcs[] = {
        "while true do end",
        "pcall(function() while true do end end) return 'caught'",
        "local co = coroutine.wrap(function() while true do end end) co()",
        "local co = coroutine.create(function() while true do end end)\n"
        "return coroutine.resume(co)",
    };
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++)
            expect_stopped(sb, srcs[i], 20);
    zf_sandbox_destroy(sb);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Many calls that end around a tiny limit, some just before the watchdog
 * looks, some after: whatever signal is still on its way when a call ends
 * must not stop a later call. */
static void test_watchdog_stale_signals(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(2, test_limits.memory_bytes);
    lua_State *L = zf_sandbox_lua(sb);
    int stopped = 0;
    for (int i = 0; i < 300; i++) {
        /* About the limit in CPU time: ends just before or just after. */
        int rc = run(sb, "local t = os.clock()\n"
                         "while os.clock() - t < 0.0019 do end\n"
                         "return 1");
        if (rc != 0) {
            const char *msg = lua_tostring(L, -1);
            if (rc != LUA_ERRRUN || !msg ||
                !strstr(msg, "time limit of 2 ms exceeded"))
                fail_msg("got %d: %s", rc, msg ? msg : "?");
            stopped++;
        }
        lua_settop(L, 0);
        /* Short calls in between. */
        if (i % 10 == 0)
            assert_int_equal(run(sb, "return 1"), 0);
        lua_settop(L, 0);
    }
    (void)stopped; /* how many depends on the machine */
    sleep_ms(100); /* many ticks with nothing running */
    for (int i = 0; i < 20; i++)
        assert_string_equal(eval(sb, "return 'alive'"), "alive");
    zf_sandbox_destroy(sb);
}

/* Two sandboxes, two limits: each call is held to its own sandbox's, also
 * when a call of one runs inside a call of the other. */
static zf_sandbox_t *inner_sb;

static int call_inner(lua_State *L) {
    lua_State *IL = zf_sandbox_lua(inner_sb);
    const char *src = luaL_checkstring(L, 1);
    int rc = zf_sandbox_load(inner_sb, src, strlen(src), "=inner");
    if (rc == 0)
        rc = zf_sandbox_pcall(inner_sb, 0, 1, 0);
    lua_pushinteger(L, rc);
    lua_pushstring(L, lua_tostring(IL, -1));
    lua_settop(IL, 0);
    return 2;
}

static void test_watchdog_two_sandboxes(void **state) {
    (void)state;
    zf_sandbox_t *fast = new_sandbox(20, test_limits.memory_bytes);
    zf_sandbox_t *slow = new_sandbox(1000, test_limits.memory_bytes);
    expect_stopped(fast, "while true do end", 20);
    expect_stopped(slow, "while true do end", 1000);
    /* Longer than the fast sandbox's limit, far within the slow one's. */
    assert_string_equal(eval(slow, "local t = os.clock()\n"
                                   "while os.clock() - t < 0.06 do end\n"
                                   "return 'done'"),
                        "done");
    expect_stopped(fast, "while true do end", 20);
    /* The fast sandbox's runaway inside a call of the slow one. */
    inner_sb = fast;
    lua_State *L = zf_sandbox_lua(slow);
    lua_pushcfunction(L, call_inner);
    lua_setglobal(L, "inner");
    assert_string_equal(
        eval(slow, "local rc, msg = inner('while true do end')\n"
                   "local rc2, v = inner('return 7')\n"
                   "return rc .. ' ' .. msg .. ' ' .. rc2 .. ' ' .. v"),
        "2 time limit of 20 ms exceeded 0 7");
    zf_sandbox_destroy(fast);
    zf_sandbox_destroy(slow);
}

/* Sandboxes made, stopped and freed on two threads at once, while the
 * watchdog runs (valgrind checks that it never touches a freed one). */
typedef struct worker {
    int timeout_ms;
    int rounds;
    char failure[512]; /* empty if all went as expected */
} worker_t;

static void *worker_main(void *arg) {
    worker_t *w = arg;
    char why[256], want[64];
    snprintf(want, sizeof want, "time limit of %d ms exceeded", w->timeout_ms);
    for (int i = 0; i < w->rounds && !w->failure[0]; i++) {
        zf_sandbox_limits_t lim = {w->timeout_ms, 16 * MB};
        zf_sandbox_t *sb = zf_sandbox_new("w", &lim, why, sizeof why);
        if (!sb) {
            snprintf(w->failure, sizeof w->failure, "new: %s", why);
            break;
        }
        lua_State *L = zf_sandbox_lua(sb);
        static const char src[] = "while true do end";
        int rc = zf_sandbox_load(sb, src, strlen(src), "=w");
        if (rc == 0)
            rc = zf_sandbox_pcall(sb, 0, 0, 0);
        const char *msg = lua_tostring(L, -1);
        if (rc != LUA_ERRRUN || !msg || !strstr(msg, want))
            snprintf(w->failure, sizeof w->failure, "round %d: %d %s", i, rc,
                     msg ? msg : "?");
        /* Freed right after a kill: the watchdog may be about to look. */
        zf_sandbox_destroy(sb);
        /* And some that never run anything. */
        for (int j = 0; j < 5; j++)
            zf_sandbox_destroy(zf_sandbox_new("w", &lim, why, sizeof why));
    }
    return NULL;
}

static void test_watchdog_threads_and_free(void **state) {
    (void)state;
    worker_t w[2] = {{.timeout_ms = 10, .rounds = 10},
                     {.timeout_ms = 30, .rounds = 5}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        if (w[i].failure[0])
            fail_msg("worker %d: %s", i, w[i].failure);
    }
}

/* ---- C functions that run long ------------------------------------------- */

/* Under valgrind everything runs ~50 times slower: inputs are made this
 * many times smaller (they still take far longer than the limit there),
 * and a stopped call may end later. */
static int valgrind_scale(void) { return RUNNING_ON_VALGRIND ? 16 : 1; }

/* How long after its limit a stopped call may end here: the watchdog's
 * tick (a quarter of the limit) and a machine busy with other work. Each
 * source below ran for 0.5 s or more (seconds to hours for most) with
 * LuaJIT's own functions, with nothing to stop them. */
static int64_t late_ms(void) { return RUNNING_ON_VALGRIND ? 3000 : 100; }

/* Run src: it must fail with the time limit's error within late_ms() of
 * the limit, and the state must work afterwards. */
static void expect_stopped_in_time(zf_sandbox_t *sb, int limit_ms,
                                   const char *src) {
    char want[64];
    snprintf(want, sizeof want, "time limit of %d ms exceeded", limit_ms);
    int64_t t0 = now_ms();
    int rc = run(sb, src);
    int64_t took = now_ms() - t0;
    lua_State *L = zf_sandbox_lua(sb);
    const char *msg = lua_tostring(L, -1);
    if (rc != LUA_ERRRUN || !msg || !strstr(msg, want))
        fail_msg("'%.80s': expected the time limit, got %d: %.200s", src, rc,
                 msg ? msg : luaL_typename(L, -1));
    if (took > limit_ms + late_ms())
        fail_msg("'%.80s': stopped after %lld ms (limit %d ms)", src,
                 (long long)took, limit_ms);
    lua_settop(L, 0);
    assert_string_equal(eval(sb, "return 'alive'"), "alive");
}

/* Patterns whose backtracking takes exponential time, the same through
 * every function that matches, a tail call, a pcall and a method call;
 * string.find's plain search, quadratic here; table.insert at a position
 * that LuaJIT turns into -2^31 (2^31 moves); os.date with millions of
 * conversions. With LuaJIT's own functions, under this 50 ms limit: the
 * patterns 13-30 s each (and no error at all for the tail call and the
 * pcall), the gsub over a minute, the plain search 7-13 s, table.insert
 * 13-14 s, os.date 0.3-0.5 s. */
static void test_time_limit_slow_c_functions(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms, 64 * MB);
    static const char *const srcs[] = {
        "string.find(string.rep('a', 70), '.-.-.-.-.-.-b')",
        "return string.find(string.rep('a', 70), '.-.-.-.-.-.-b')",
        "return string.match(string.rep('a', 70), '.-.-.-.-.-.-b')",
        "for m in string.gmatch(string.rep('a', 70), '.-.-.-.-.-.-b') do end",
        "return string.gsub(string.rep('a', 300), '(.-)(.-)(.-)(.-)b', '%1')",
        "return pcall(string.find, string.rep('a', 70), '.-.-.-.-.-.-b')",
        "local s = string.rep('a', 70) return s:find('.-.-.-.-.-.-b')",
        "return string.find(string.rep('a', 4e6), string.rep('a', 1e5) .. "
        "'b', 1, true)",
        "table.insert({}, 1e10, 1)",
        "return #os.date(string.rep('%Y', 3e6))",
    };
    for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++)
        expect_stopped_in_time(sb, test_limits.timeout_ms, srcs[i]);
    zf_sandbox_destroy(sb);
}

/* Set global `name` to an array of n numbers, from C (no time limit). */
static void set_number_array(lua_State *L, const char *name, int n) {
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_pushnumber(L, (double)((int64_t)i * 7919 % 4000037));
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, name);
}

/* Set global `name` to a JSON array of n objects, from C. */
static void set_json_text(lua_State *L, const char *name, int n) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '[');
    for (int i = 0; i < n; i++) {
        char obj[128];
        snprintf(obj, sizeof obj,
                 "%s{\"id\":\"dev-%d\",\"n\":%d,\"ok\":true,\"tags\":[\"a\","
                 "\"b\"]}",
                 i ? "," : "", i, i);
        luaL_addstring(&b, obj);
    }
    luaL_addchar(&b, ']');
    luaL_pushresult(&b);
    lua_setglobal(L, name);
}

/* Work that grows with the data, on data as large as a big memory limit
 * allows: LuaJIT's own table.sort took 5 s here, table.concat 0.55 s,
 * json.encode 0.6 s, json.decode (28 MB) 0.7 s, string.rep (200 MB)
 * 0.7 s. */
static void test_time_limit_big_data(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(test_limits.timeout_ms, 512 * MB);
    lua_State *L = zf_sandbox_lua(sb);
    int scale = valgrind_scale();
    set_number_array(L, "T", 8000000 / scale);
    set_json_text(L, "J", 500000 / scale);
    /* Not scaled: copying runs at about the same speed under valgrind. */
    lua_pushinteger(L, 100000000);
    lua_setglobal(L, "N");
    static const char *const srcs[] = {
        "table.sort(T)",
        "return table.concat(T, ',')",
        "return require('json').encode(T)",
        "return require('json').decode(J)",
        "return string.rep('ab', N)",
    };
    for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++)
        expect_stopped_in_time(sb, test_limits.timeout_ms, srcs[i]);
    zf_sandbox_destroy(sb);
}

/* Set global `name` to an array of n small tables, from C. */
static void set_table_array(lua_State *L, const char *name, int n) {
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_createtable(L, 1, 0);
        lua_pushinteger(L, i);
        lua_rawseti(L, -2, 1);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, name);
}

/* Run src; it must end within late_ms() of the limit. Returns its status
 * (the message, if any, on the stack). */
static int run_in_time(zf_sandbox_t *sb, int limit_ms, const char *src) {
    int64_t t0 = now_ms();
    int rc = run(sb, src);
    int64_t took = now_ms() - t0;
    if (took > limit_ms + late_ms())
        fail_msg("'%.80s': took %lld ms (limit %d ms): %s", src,
                 (long long)took, limit_ms,
                 lua_tostring(zf_sandbox_lua(sb), -1));
    return rc;
}

/* The collector's work counts as the call's time: a state holding much
 * live data cannot make a call run past its limit, neither through the
 * collections the sandbox asks for when LuaJIT's collector falls behind
 * (here ~150 ms each for 200 MB of small tables; there were up to two per
 * call that did not count, so calls ran for 190-210 ms under a 50 ms
 * limit), nor through those that free what a call that broke the memory
 * limit left behind (one such, ~150 ms, after the call). What does not fit
 * in the failed call is done first in the next ones, within their time:
 * they may fail, until it is done. */
static void test_time_limit_collector(void **state) {
    (void)state;
    int scale = valgrind_scale(), limit = test_limits.timeout_ms;
    zf_sandbox_t *sb = new_sandbox(limit, 256 * MB / scale);
    lua_State *L = zf_sandbox_lua(sb);
    set_table_array(L, "T", 2400000 / scale);
    lua_pushinteger(L, 60 * MB / scale);
    lua_setglobal(L, "BOMB");
    for (int round = 0; round < 3; round++) {
        /* Garbage as fast as the script can make it. */
        int rc = run_in_time(sb, limit,
                             "local t = {}\n"
                             "for i = 1, 1e9 do t[i % 1000 + 1] = {i} end");
        assert_true(rc == LUA_ERRRUN || rc == LUA_ERRMEM);
        /* More than the room left, at once. */
        rc = run_in_time(sb, limit, "local s = string.rep('x', BOMB)");
        assert_true(rc == LUA_ERRRUN || rc == LUA_ERRMEM);
        int ok = 0;
        for (int i = 0; i < 20 && !ok; i++) {
            rc = run_in_time(sb, limit, "return #T");
            if (rc != 0)
                assert_non_null(strstr(lua_tostring(L, -1), "time limit"));
            ok = rc == 0;
        }
        assert_true(ok);
        lua_settop(L, 0);
    }
    zf_sandbox_destroy(sb);
}

/* ---- memory limit ------------------------------------------------------- */

static size_t lua_bytes(lua_State *L) {
    return (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 +
           (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
}

/* Run src: it must fail with the memory limit's message, and afterwards
 * the state must be back to little memory and work. */
static void expect_out_of_memory(zf_sandbox_t *sb, const char *src) {
    int rc = run(sb, src);
    lua_State *L = zf_sandbox_lua(sb);
    const char *msg = lua_tostring(L, -1);
    if (rc != LUA_ERRMEM || !msg ||
        strcmp(msg, "memory limit of 16 MB exceeded") != 0)
        fail_msg("'%s': expected the memory limit, got %d: %s", src, rc,
                 msg ? msg : luaL_typename(L, -1));
    lua_settop(L, 0);
    if (lua_bytes(L) > 2 * MB)
        fail_msg("'%s': %zu bytes still in use", src, lua_bytes(L));
    assert_string_equal(eval(sb, "return 'alive'"), "alive");
}

static const char *const memory_bombs[] = {
    "local t = {} while true do t[#t + 1] = {} end",
    "local t = {} local i = 0 while true do i = i + 1 t[i] = i end",
    "return string.rep('x', 2^30)",
    "return string.rep('x', 2^24, ',')",
    "local s = 'x' while true do s = s .. s end",
    "local t = {} while true do t[#t + 1] = string.rep('y', 10000) .. #t end",
    "local t = {} for i = 1, 1e9 do t[i] = 'x' .. i end",
    "local t = {} for i = 1, 1000 do t[i] = string.rep('z', 1e4) .. i end\n"
    "return table.concat(t)",
    "local json = require('json')\n"
    "return json.decode('[' .. string.rep('\"abcdefgh\",', 2e6) .. '1]')",
};

/* Memory only: no time limit to come first. */
static void test_memory_limit(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(0, 16 * MB);
    for (size_t i = 0; i < sizeof memory_bombs / sizeof memory_bombs[0]; i++)
        expect_out_of_memory(sb, memory_bombs[i]);
    zf_sandbox_destroy(sb);
}

static void test_memory_limit_with_time_limit(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(10000, 16 * MB);
    for (size_t i = 0; i < sizeof memory_bombs / sizeof memory_bombs[0]; i++)
        expect_out_of_memory(sb, memory_bombs[i]);
    zf_sandbox_destroy(sb);
}

/* The script catches the memory error and goes on: the call fails anyway,
 * at the next instruction. */
static void test_memory_limit_not_catchable(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(0, 16 * MB);
    static const char *const catchers[] = {
        "local ok = pcall(string.rep, 'x', 2^30) return 'caught'",
        "return pcall(string.rep, 'x', 2^30)",
        "local t = {}\n"
        "while true do\n"
        "  pcall(function() t[#t + 1] = string.rep('x', 1e5) .. #t end)\n"
        "end",
        "local t = {}\n"
        "for i = 1, 1e9 do\n"
        "  local ok = pcall(function() t[#t + 1] = string.rep('x', 1e5) .. i "
        "end)\n"
        "  if not ok then t = {} end\n" /* free it all, and go again */
        "end",
        "local co = coroutine.create(function() local s = 'x' while true do "
        "s = s .. s end end)\n"
        "coroutine.resume(co) return 'caught'",
    };
    for (size_t i = 0; i < sizeof catchers / sizeof catchers[0]; i++)
        expect_out_of_memory(sb, catchers[i]);
    zf_sandbox_destroy(sb);
}

/* LuaJIT starts a collection cycle at twice the live size and has no
 * emergency collection: without help a script whose live data is over
 * half the limit would fail while most of what it allocated is garbage. */
static void test_memory_limit_collects_first(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(0, 4 * MB);
    assert_string_equal(
        eval(sb, "keep = {}\n"
                 "for i = 1, 2500 do keep[i] = string.rep('k', 1000) .. i end\n"
                 "local n = 0\n"
                 "for i = 1, 400 do\n"
                 "  n = n + #(string.rep('x', 50000) .. i)\n"
                 "end\n"
                 "return tostring(n)"),
        "20001092");
    /* The live data is still there: another call can use it. */
    assert_string_equal(eval(sb, "return tostring(#keep)"), "2500");
    zf_sandbox_destroy(sb);
}

/* The same with many small objects and garbage made a little at a time
 * over many calls, as transforms do: the collector is paced to finish its
 * cycles below the limit. */
static void test_memory_limit_half_full(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(1000, 8 * MB);
    assert_string_equal(eval(sb, "keep = {}\n"
                                 "for i = 1, 40000 do keep[i] = {i} end\n"
                                 "return 'kept'"),
                        "kept");
    assert_true(lua_bytes(zf_sandbox_lua(sb)) > 3 * MB);
    for (int i = 0; i < 300; i++)
        eval(sb, "local t = {} for i = 1, 500 do t[i] = {i, tostring(i)} end "
                 "return #t");
    assert_string_equal(eval(sb, "return tostring(#keep)"), "40000");
    zf_sandbox_destroy(sb);
}

/* Between calls the host may allocate freely: a refusal outside a
 * protected call would make LuaJIT panic. */
static void test_memory_host_allocations(void **state) {
    (void)state;
    zf_sandbox_t *sb = new_sandbox(0, 4 * MB);
    lua_State *L = zf_sandbox_lua(sb);
    assert_string_equal(eval(sb, "keep = {}\n"
                                 "for i = 1, 3300 do keep[i] = "
                                 "string.rep('k', 1000) .. i end\n"
                                 "return 'full'"),
                        "full");
    for (int i = 0; i < 2000; i++)
        lua_pushfstring(L, "host string %d %s", i, "padding padding padding");
    lua_createtable(L, 100000, 0);
    assert_true(lua_bytes(L) > 4 * MB);
    lua_settop(L, 0);
    /* A call then finds itself over the limit and fails cleanly. */
    assert_int_equal(run(sb, "return string.rep('x', 1e6)"), LUA_ERRMEM);
    lua_settop(L, 0);
    zf_sandbox_destroy(sb);
}

static void test_memory_limit_too_small(void **state) {
    (void)state;
    zf_sandbox_limits_t lim = {0, 16 * 1024};
    assert_null(zf_sandbox_new("t", &lim, err, sizeof err));
    assert_non_null(strstr(err, "memory limit of 16384 bytes is below what "
                                "the sandbox itself needs ("));
    /* 1 MB is enough for the environment and a little script. */
    zf_sandbox_t *sb = new_sandbox(0, 1 * MB);
    assert_string_equal(eval(sb, "return require('json').encode({1})"), "[1]");
    zf_sandbox_destroy(sb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_removed_globals),
        cmocka_unit_test(test_kept_globals),
        cmocka_unit_test(test_reachable_functions),
        cmocka_unit_test(test_string_without_dump),
        cmocka_unit_test(test_os_only_time_date_clock),
        cmocka_unit_test(test_os_date_bad_input),
        cmocka_unit_test(test_coroutines),
        cmocka_unit_test(test_no_bytecode),
        cmocka_unit_test(test_no_fenv_no_collector),
        cmocka_unit_test(test_escape_attempts),
        cmocka_unit_test(test_require),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_log_rate_limit),
        cmocka_unit_test(test_zk_constructors),
        cmocka_unit_test(test_zk_argument_errors),
        cmocka_unit_test(test_time_limit),
        cmocka_unit_test(test_time_limit_not_catchable),
        cmocka_unit_test(test_time_limit_message_handler),
        cmocka_unit_test(test_time_limit_nested_calls),
        cmocka_unit_test(test_time_limit_tail_call),
        cmocka_unit_test(test_no_limits),
        cmocka_unit_test(test_watchdog_stops_runaways),
        cmocka_unit_test(test_watchdog_stale_signals),
        cmocka_unit_test(test_watchdog_two_sandboxes),
        cmocka_unit_test(test_watchdog_threads_and_free),
        cmocka_unit_test(test_time_limit_slow_c_functions),
        cmocka_unit_test(test_time_limit_big_data),
        cmocka_unit_test(test_time_limit_collector),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_memory_limit_with_time_limit),
        cmocka_unit_test(test_memory_limit_not_catchable),
        cmocka_unit_test(test_memory_limit_collects_first),
        cmocka_unit_test(test_memory_limit_half_full),
        cmocka_unit_test(test_memory_host_allocations),
        cmocka_unit_test(test_memory_limit_too_small),
    };
    return cmocka_run_group_tests_name("sandbox", tests, NULL, NULL);
}

/* fuzz_json: engine/json.c, the scripts' json module, against lua-cjson
 * 2.1.0 (the module it copies) in one LuaJIT state, as tests/test_json.c
 * compares them: the input decoded by both, each decoded value encoded by
 * both, and the input read as a value tree (tree.lua) encoded by both, with
 * the same results, texts and error messages (json_diff.lua). Then decode
 * and encode again inside a sandbox with a 1 MiB memory limit, so that the
 * module's allocations fail at every point they can. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz.h" /* lua.h first: lua-cjson.h needs lua_State */
#include <lua5.1/lua-cjson.h>

#include "json_diff_lua.h"
#include "tree_lua.h"
#include "zkflow/sandbox.h"

static lua_State *L;      /* the plain state of the comparison */
static int check_ref;     /* json_diff.lua's check function */
static zf_sandbox_t *sb;  /* the limited one */
static int limited_ref;   /* its function */

/* Run in the sandbox with the input: decode and encode, where any error,
 * the memory limit's included, ends the call. */
static const char limited_src[] =
    "local json = require('json')\n"
    "return function(s)\n"
    "  local ok, v = pcall(json.decode, s)\n"
    "  if ok then pcall(json.encode, v) end\n"
    "  local res = parse(s)\n"
    "  return json.encode(res[1])\n"
    "end\n";

/* At exit, before LeakSanitizer looks: what the states hold is in memory
 * LuaJIT maps itself, which LeakSanitizer does not scan, so a malloc'd
 * block only a Lua value points to (lua-cjson's buffer) would be a leak. */
static void close_states(void) {
    lua_close(L);
    zf_sandbox_destroy(sb);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    L = fuzz_plain_state();
    lua_pushcfunction(L, luaopen_cjson);
    lua_call(L, 0, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "json");
    lua_call(L, 1, 1);
    fuzz_run_chunk(L, tree_lua, "=tree", 0);
    fuzz_run_chunk(L, json_diff_lua, "=json_diff", 3);
    check_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    char err[512];
    zf_sandbox_limits_t lim = {.timeout_ms = 0, .memory_bytes = 1u << 20};
    if (!(sb = zf_sandbox_new("fuzz", &lim, err, sizeof err)))
        FUZZ_FAIL("zf_sandbox_new: %s", err);
    char *src = fuzz_with_parse(tree_lua, limited_src);
    lua_State *S = zf_sandbox_lua(sb);
    if (zf_sandbox_load(sb, src, strlen(src), "=limited") != 0 ||
        zf_sandbox_pcall(sb, 0, 1, 0) != 0)
        FUZZ_FAIL("limited: %s", lua_tostring(S, -1));
    free(src);
    limited_ref = luaL_ref(S, LUA_REGISTRYINDEX);
    atexit(close_states);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != 0)
        FUZZ_FAIL("%s", lua_tostring(L, -1));

    lua_State *S = zf_sandbox_lua(sb);
    lua_rawgeti(S, LUA_REGISTRYINDEX, limited_ref);
    lua_pushlstring(S, (const char *)data, size);
    int rc = zf_sandbox_pcall(sb, 1, 0, 0);
    if (rc != 0 && rc != LUA_ERRRUN && rc != LUA_ERRMEM)
        FUZZ_FAIL("limited call: status %d: %s", rc, lua_tostring(S, -1));
    lua_settop(S, 0);
    return 0;
}

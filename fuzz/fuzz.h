/* Shared by the libFuzzer harnesses in this directory. */
#ifndef ZKFLOW_FUZZ_H
#define ZKFLOW_FUZZ_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zkflow/json.h"

/* A finding that no sanitizer reports by itself: say what, then abort, so
 * libFuzzer keeps the input as a crash. */
#define FUZZ_FAIL(...)                                                        \
    do {                                                                      \
        fprintf(stderr, "fuzz: " __VA_ARGS__);                                \
        fputc('\n', stderr);                                                  \
        abort();                                                              \
    } while (0)

/* A plain LuaJIT state with the standard libraries, where require("json")
 * is zkflow's json module (as in a sandbox). Aborts when it cannot. */
static inline lua_State *fuzz_plain_state(void) {
    lua_State *L = luaL_newstate();
    if (!L)
        FUZZ_FAIL("luaL_newstate failed");
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_pushcfunction(L, zf_json_open);
    lua_call(L, 0, 1);
    lua_setfield(L, -2, "json");
    lua_pop(L, 2);
    return L;
}

/* Run the chunk src (named name) with the nargs values on top of the stack
 * as its arguments; leaves its one result. Aborts on an error: the chunks
 * are the harnesses' own. */
static inline void fuzz_run_chunk(lua_State *L, const char *src,
                                  const char *name, int nargs) {
    if (luaL_loadbuffer(L, src, strlen(src), name) != 0)
        FUZZ_FAIL("%s", lua_tostring(L, -1));
    lua_insert(L, -nargs - 1);
    if (lua_pcall(L, nargs, 1, 0) != 0)
        FUZZ_FAIL("%s", lua_tostring(L, -1));
}

/* A new chunk (caller frees): `tree` (tree.lua's text) run as the local
 * `parse`, then `rest`. Aborts when out of memory. */
static inline char *fuzz_with_parse(const char *tree, const char *rest) {
    static const char fmt[] = "local parse = (function() %s end)()\n%s";
    size_t len = sizeof fmt + strlen(tree) + strlen(rest);
    char *src = malloc(len);
    if (!src)
        FUZZ_FAIL("out of memory");
    snprintf(src, len, fmt, tree, rest);
    return src;
}

#endif

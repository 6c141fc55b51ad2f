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
#include "zkflow/op.h"

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

/* zf_op_validate and zf_oplist_validate under `root` with every op type
 * allowed. Issue 15's fixes give them the rules as a struct (with
 * ZF_OP_MAX_TTL_MS); the other branch is the code before them, for as long
 * as both may be built. */
static inline zf_err_t fuzz_op_validate(const zf_op_t *op, const char *root,
                                        char *err, size_t errlen) {
#ifdef ZF_OP_MAX_TTL_MS
    zf_op_rules_t rules = {.root = root, .allowed = ZF_OP_ALL};
    return zf_op_validate(op, &rules, err, errlen);
#else
    return zf_op_validate(op, root, ZF_OP_ALL, err, errlen);
#endif
}

static inline zf_err_t fuzz_oplist_validate(const zf_oplist_t *l,
                                            const char *root, char *err,
                                            size_t errlen) {
#ifdef ZF_OP_MAX_TTL_MS
    zf_op_rules_t rules = {.root = root, .allowed = ZF_OP_ALL};
    return zf_oplist_validate(l, &rules, err, errlen);
#else
    return zf_oplist_validate(l, root, ZF_OP_ALL, err, errlen);
#endif
}

#endif

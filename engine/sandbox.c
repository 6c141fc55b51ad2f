#include "zkflow/sandbox.h"

#include <lauxlib.h>
#include <lua5.1/lua-cjson.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* First slice: the environment without limits yet. */

struct zf_sandbox {
    lua_State *L;
    char *name;
    zf_sandbox_limits_t lim;
};

static const char *const removed_globals[] = {
    "dofile", "loadfile", "load", "loadstring", "module", NULL,
};

/* require(name): the only modules a script can load. [-1, +1] */
static int sandbox_require(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    if (strcmp(name, "json") == 0 || strcmp(name, "cjson") == 0) {
        lua_pushvalue(L, lua_upvalueindex(1));
        return 1;
    }
    return luaL_error(L, "module '%s' is not available to zkflow scripts "
                         "(available: json)",
                      name);
}

/* Build the globals a script sees. [-0, +0] */
static int open_env(lua_State *L) {
    static const lua_CFunction libs[] = {luaopen_base, luaopen_string,
                                         luaopen_table, luaopen_math,
                                         luaopen_bit};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        lua_pushcfunction(L, libs[i]);
        lua_call(L, 0, 0);
    }
    for (size_t i = 0; removed_globals[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, removed_globals[i]);
    }
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    luaopen_cjson(L);
    lua_pushcclosure(L, sandbox_require, 1);
    lua_setglobal(L, "require");
    return 0;
}

zf_sandbox_t *zf_sandbox_new(const char *name, const zf_sandbox_limits_t *lim,
                             char *err, size_t errlen) {
    zf_sandbox_t *sb = calloc(1, sizeof *sb);
    if (!sb || !(sb->name = strdup(name))) {
        snprintf(err, errlen, "out of memory");
        free(sb);
        return NULL;
    }
    sb->lim = *lim;
    if (!(sb->L = luaL_newstate())) {
        snprintf(err, errlen, "cannot create a Lua state");
        zf_sandbox_destroy(sb);
        return NULL;
    }
    if (lua_cpcall(sb->L, open_env, NULL) != 0) {
        snprintf(err, errlen, "cannot set up the sandbox: %s",
                 lua_tostring(sb->L, -1));
        zf_sandbox_destroy(sb);
        return NULL;
    }
    return sb;
}

void zf_sandbox_destroy(zf_sandbox_t *sb) {
    if (!sb)
        return;
    if (sb->L)
        lua_close(sb->L);
    free(sb->name);
    free(sb);
}

lua_State *zf_sandbox_lua(zf_sandbox_t *sb) { return sb->L; }

int zf_sandbox_load(zf_sandbox_t *sb, const char *src, size_t len,
                    const char *chunkname) {
    /* Mode "t": text only. Crafted bytecode can break out of any sandbox. */
    return luaL_loadbufferx(sb->L, src, len, chunkname, "t");
}

int zf_sandbox_pcall(zf_sandbox_t *sb, int nargs, int nresults, int errfunc) {
    return lua_pcall(sb->L, nargs, nresults, errfunc);
}

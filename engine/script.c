#include "zkflow/script.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua5.1/lua-cjson.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct zf_script {
    lua_State *L;
    char *name;
    char *file;
    char *root;
    int fn_ref;  /* registry reference to the transform function */
    int fn_line; /* line where the transform function is defined */
};

/* Base functions that reach the file system or load code: never present. */
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
static void sandbox_open(lua_State *L) {
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
    /* string.dump would hand out bytecode, which can be crafted to escape. */
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    luaopen_cjson(L); /* pushes the module table */
    lua_pushcclosure(L, sandbox_require, 1);
    lua_setglobal(L, "require");
}

/* Message handler for lua_pcall: returns "FILE:LINE: message" where LINE is
 * the innermost line of the script's own chunk. When a tail call removed the
 * script's frame, LINE is where the transform is defined. Upvalue 1 is the
 * chunk name ("@FILE"), upvalue 2 that line (0 while loading). [-1, +1] */
static int on_error(lua_State *L) {
    const char *chunk = lua_tostring(L, lua_upvalueindex(1));
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "error object is a %s value",
                              luaL_typename(L, 1));
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline <= 0 || strcmp(ar.source, chunk) != 0)
            continue;
        /* Drop Lua's own "short_src:LINE: " prefix: it may be truncated. */
        size_t n = strlen(ar.short_src);
        if (strncmp(msg, ar.short_src, n) == 0 && msg[n] == ':') {
            const char *rest = strstr(msg + n + 1, ": ");
            if (rest)
                msg = rest + 2;
        }
        lua_pushfstring(L, "%s:%d: %s", chunk + 1, ar.currentline, msg);
        return 1;
    }
    int line = (int)lua_tointeger(L, lua_upvalueindex(2));
    if (line > 0)
        lua_pushfstring(L, "%s:%d: %s", chunk + 1, line, msg);
    else
        lua_pushfstring(L, "%s: %s", chunk + 1, msg);
    return 1;
}

/* Push the error handler for this script. [-0, +1] */
static void push_handler(zf_script_t *s) {
    lua_pushfstring(s->L, "@%s", s->file);
    lua_pushinteger(s->L, s->fn_line);
    lua_pushcclosure(s->L, on_error, 2);
}

static char *read_file(const char *path, size_t *len, char *err,
                       size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8192;
            char *b = realloc(buf, cap);
            if (!b) {
                snprintf(err, errlen, "%s: out of memory", path);
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(fp)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *len = n;
    return buf;
}

zf_script_t *zf_script_new(const char *name, const char *file,
                           const char *root, char *err, size_t errlen) {
    zf_script_t *s = calloc(1, sizeof *s);
    char *src = NULL;
    if (!s || !(s->name = strdup(name)) || !(s->file = strdup(file)) ||
        !(s->root = strdup(root))) {
        snprintf(err, errlen, "%s: out of memory", file);
        goto err;
    }
    s->fn_ref = LUA_NOREF;
    size_t len;
    if (!(src = read_file(file, &len, err, errlen)))
        goto err;
    if (!(s->L = luaL_newstate())) {
        snprintf(err, errlen, "%s: cannot create a Lua state", file);
        goto err;
    }
    lua_State *L = s->L;
    sandbox_open(L);

    push_handler(s);
    lua_pushfstring(L, "@%s", file);
    /* Mode "t": text only. Crafted bytecode can break out of any sandbox. */
    if (luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t") != 0) {
        /* The compiler's message already reads "FILE:LINE: ...". */
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto err;
    }
    lua_remove(L, -2); /* chunk name */
    if (lua_pcall(L, 0, 1, -2) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto err;
    }
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "%s: the script must return a function, "
                              "it returned %s",
                 file, luaL_typename(L, -1));
        goto err;
    }
    lua_Debug ar;
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">S", &ar);
    s->fn_line = ar.linedefined;
    s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    free(src);
    return s;
err:
    free(src);
    zf_script_destroy(s);
    return NULL;
}

void zf_script_destroy(zf_script_t *s) {
    if (!s)
        return;
    if (s->L)
        lua_close(s->L);
    free(s->name);
    free(s->file);
    free(s->root);
    free(s);
}

const char *zf_script_name(const zf_script_t *s) { return s->name; }

static void set_lstring(lua_State *L, const char *field, const void *p,
                        size_t len) {
    if (!p)
        return; /* absent field reads as nil */
    lua_pushlstring(L, p, len);
    lua_setfield(L, -2, field);
}

/* Push the record as a table. [-0, +1] */
static void push_record(lua_State *L, const zf_record_t *rec) {
    lua_createtable(L, 0, 7);
    lua_pushstring(L, rec->topic);
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, rec->partition);
    lua_setfield(L, -2, "partition");
    lua_pushnumber(L, (lua_Number)rec->offset);
    lua_setfield(L, -2, "offset");
    if (rec->timestamp >= 0) {
        lua_pushnumber(L, (lua_Number)rec->timestamp);
        lua_setfield(L, -2, "timestamp");
    }
    set_lstring(L, "key", rec->key, rec->key_len);
    set_lstring(L, "value", rec->value, rec->value_len);
    lua_createtable(L, (int)rec->nheaders, 0);
    for (size_t i = 0; i < rec->nheaders; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, rec->headers[i].name);
        lua_setfield(L, -2, "name");
        set_lstring(L, "value", rec->headers[i].value, rec->headers[i].len);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "headers");
}

static char *dup_lstring(const char *p, size_t len) {
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* Turn the three results at the top of the stack into *op. [-0, +0] */
static zf_err_t take_results(zf_script_t *s, zf_op_t *op, int *has_op,
                             char *why, size_t whylen) {
    lua_State *L = s->L;
    int base = lua_gettop(L) - 3;
    if (lua_isnil(L, base + 1)) {
        *has_op = 0;
        return ZF_OK;
    }
    if (lua_type(L, base + 1) != LUA_TSTRING) {
        snprintf(why, whylen, "expected path, payload, op or nil; the path "
                              "is a %s",
                 luaL_typename(L, base + 1));
        return ZF_ERECORD;
    }
    int dtype = lua_type(L, base + 2);
    if (dtype != LUA_TNIL && dtype != LUA_TSTRING) {
        snprintf(why, whylen, "the payload must be a string or nil, not a %s",
                 luaL_typename(L, base + 2));
        return ZF_ERECORD;
    }
    zf_op_t o = {.type = ZF_OP_UPSERT};
    if (!lua_isnil(L, base + 3)) {
        const char *name = lua_type(L, base + 3) == LUA_TSTRING
                               ? lua_tostring(L, base + 3)
                               : NULL;
        if (!name || zf_op_parse_type(name, &o.type) != 0) {
            snprintf(why, whylen, "unknown op '%s' (expected upsert, create, "
                                  "set or delete)",
                     name ? name : luaL_typename(L, base + 3));
            return ZF_ERECORD;
        }
    }
    size_t plen, dlen = 0;
    const char *path = lua_tolstring(L, base + 1, &plen);
    const char *data = dtype == LUA_TSTRING ? lua_tolstring(L, base + 2, &dlen)
                                            : NULL;
    if (strlen(path) != plen) {
        snprintf(why, whylen, "path contains a NUL byte");
        return ZF_ERECORD;
    }
    o.path = dup_lstring(path, plen);
    if (data && o.type != ZF_OP_DELETE) {
        o.data = dup_lstring(data, dlen);
        o.datalen = dlen;
    }
    if (!o.path || (data && o.type != ZF_OP_DELETE && !o.data)) {
        zf_op_clear(&o);
        snprintf(why, whylen, "out of memory");
        return ZF_ERECORD;
    }
    if (zf_op_validate(&o, s->root, why, whylen) != ZF_OK) {
        zf_op_clear(&o);
        return ZF_ERECORD;
    }
    *op = o;
    *has_op = 1;
    return ZF_OK;
}

zf_err_t zf_script_transform(zf_script_t *s, const zf_record_t *rec,
                             zf_op_t *op, int *has_op, char *err,
                             size_t errlen) {
    lua_State *L = s->L;
    int top = lua_gettop(L);
    push_handler(s);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
    push_record(L, rec);
    zf_err_t rc = ZF_OK;
    if (lua_pcall(L, 1, 3, top + 1) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        rc = ZF_ERECORD;
    } else {
        char why[512];
        rc = take_results(s, op, has_op, why, sizeof why);
        if (rc != ZF_OK)
            snprintf(err, errlen, "%s:%d: the transform returned an invalid "
                                  "op: %s",
                     s->file, s->fn_line, why);
    }
    lua_settop(L, top);
    return rc;
}

#include "zkflow/script.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zkflow/file.h"
#include "zkflow/sandbox.h"

struct zf_script {
    zf_sandbox_t *sb;
    char *name;
    char *file;
    zf_op_rules_t rules; /* root, ops, and the subtrees refused (owned) */
    zf_reserved_t *reserved;
    int fn_ref;  /* registry reference to the transform function */
    int fn_line; /* line where the transform function is defined */
    int handler_ref; /* the error handler (on_error), made once */
    int body_ref;    /* the protected body (transform), made once */
    char version[13]; /* short hash of the source text */
    int invalid; /* the last failed transform returned, but invalid ops */
};

const zf_script_opts_t zf_script_opts_default = {
    .root = "/",
    .ops = ZF_OP_ALL,
    .timeout_ms = 100,
    .memory_mb = 64,
};

/* Message handler for the sandbox's pcall: returns "FILE:LINE: message"
 * where LINE is the innermost line of the script's own chunk. When no frame
 * of the script is on the stack (a tail call, or an invalid result found
 * after the transform returned), LINE is where the transform is defined.
 * Upvalue 1 is the chunk name ("@FILE"), upvalue 2 that line (0 while
 * loading). [-1, +1] */
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
static void push_handler(zf_script_t *s, lua_State *L) {
    lua_pushfstring(L, "@%s", s->file);
    lua_pushinteger(L, s->fn_line);
    lua_pushcclosure(L, on_error, 2);
}

static int make_closures(lua_State *L);

/* Set the global `params` from opts. Runs protected. [-0, +0] */
static int set_params(lua_State *L) {
    const zf_script_opts_t *o = lua_touserdata(L, 1);
    lua_createtable(L, 0, (int)o->nparams);
    for (size_t i = 0; i < o->nparams; i++) {
        lua_pushstring(L, o->params[i].value);
        lua_setfield(L, -2, o->params[i].key);
    }
    lua_setglobal(L, "params");
    return 0;
}

zf_script_t *zf_script_new(const char *name, const char *file,
                           const zf_script_opts_t *opts, char *err,
                           size_t errlen) {
    size_t len;
    char *src = zf_read_file(file, &len, err, errlen);
    if (!src)
        return NULL;
    zf_script_t *s = zf_script_new_text(name, file, src, len, opts, err,
                                        errlen);
    free(src);
    return s;
}

/* Refuse the subtree path+suffix, which `owner` names, to the script:
 * kept in its rules when it lies within the root (no op can touch it
 * otherwise), unless `keep` is 0 (zf_op_validate checks it by itself).
 * Returns 0, or -1 with err set when the root lies in that subtree (the
 * script could write nothing) or when out of memory. */
static int reserve(zf_script_t *s, const char *path, const char *suffix,
                   const char *owner, int keep, char *err, size_t errlen) {
    char *p = NULL, *o = NULL;
    if (asprintf(&p, "%s%s", path, suffix) < 0)
        goto nomem;
    if (zf_path_is_under(s->rules.root, p)) {
        snprintf(err, errlen,
                 "%s: root %s lies in %s (%s), which scripts may not write",
                 s->file, s->rules.root, p, owner);
        free(p);
        return -1;
    }
    if (!keep || !zf_path_is_under(p, s->rules.root)) {
        free(p);
        return 0;
    }
    zf_reserved_t *v = realloc(s->reserved, (s->rules.nreserved + 1) *
                                                sizeof *v);
    if (v)
        s->rules.reserved = s->reserved = v;
    if (!v || !(o = strdup(owner))) {
        free(p);
        goto nomem;
    }
    v[s->rules.nreserved++] = (zf_reserved_t){.path = p, .owner = o};
    return 0;
nomem:
    snprintf(err, errlen, "%s: out of memory", s->file);
    return -1;
}

/* The rules of the script's ops: root and ops from opts, and the subtrees
 * that are not the script's to write. Returns -1 with err set on failure. */
static int make_rules(zf_script_t *s, const zf_script_opts_t *opts,
                      char *err, size_t errlen) {
    const zf_config_t *cfg = opts->config;
    if (!(s->rules.root = strdup(opts->root))) {
        snprintf(err, errlen, "%s: out of memory", s->file);
        return -1;
    }
    s->rules.allowed = opts->ops;
    if (reserve(s, "/zookeeper", "", "ZooKeeper's own subtree", 0, err,
                errlen) != 0 ||
        (cfg && reserve(s, cfg->offsets_root, "", "[engine] offsets_root", 1,
                        err, errlen) != 0))
        return -1;
    for (size_t i = 0; cfg && i < cfg->nscripts; i++) {
        const zf_script_conf_t *sc = &cfg->scripts[i];
        char owner[256];
        if (!sc->zk_path)
            continue;
        snprintf(owner, sizeof owner, "the script of [script %s]", sc->name);
        if (reserve(s, sc->zk_path, "", owner, 1, err, errlen) != 0)
            return -1;
        snprintf(owner, sizeof owner, "a fixture of [script %s]", sc->name);
        if (reserve(s, sc->zk_path, ".records.jsonl", owner, 1, err,
                    errlen) != 0 ||
            reserve(s, sc->zk_path, ".expected.jsonl", owner, 1, err,
                    errlen) != 0)
            return -1;
    }
    return 0;
}

zf_script_t *zf_script_new_text(const char *name, const char *file,
                                const char *src, size_t len,
                                const zf_script_opts_t *opts, char *err,
                                size_t errlen) {
    zf_script_t *s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(name)) || !(s->file = strdup(file))) {
        snprintf(err, errlen, "%s: out of memory", file);
        goto err;
    }
    if (make_rules(s, opts, err, errlen) != 0)
        goto err;
    s->fn_ref = s->handler_ref = s->body_ref = LUA_NOREF;
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the source */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)src[i]) * 1099511628211ull;
    snprintf(s->version, sizeof s->version, "%012llx",
             (unsigned long long)(h >> 16));
    zf_sandbox_limits_t lim = {
        .timeout_ms = opts->timeout_ms,
        .memory_bytes = (size_t)opts->memory_mb << 20,
    };
    char why[1024];
    if (!(s->sb = zf_sandbox_new(name, &lim, why, sizeof why))) {
        snprintf(err, errlen, "%s: %s", file, why);
        goto err;
    }
    lua_State *L = zf_sandbox_lua(s->sb);
    if (lua_cpcall(L, set_params, (void *)opts) != 0) {
        snprintf(err, errlen, "%s: %s", file, lua_tostring(L, -1));
        goto err;
    }
    push_handler(s, L);
    char *chunk = malloc(strlen(file) + 2);
    if (!chunk) {
        snprintf(err, errlen, "%s: out of memory", file);
        goto err;
    }
    sprintf(chunk, "@%s", file);
    int rc = zf_sandbox_load(s->sb, src, len, chunk);
    free(chunk);
    if (rc != 0) {
        /* The compiler's message already reads "FILE:LINE: ...". */
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto err;
    }
    rc = zf_sandbox_pcall(s->sb, 0, 1, -2);
    if (rc != 0) {
        /* The handler does not run for memory errors: add the file. */
        snprintf(err, errlen, rc == LUA_ERRMEM ? "%s: %s" : "%.0s%s", file,
                 lua_tostring(L, -1));
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
    if (lua_cpcall(L, make_closures, s) != 0) {
        snprintf(err, errlen, "%s: %s", file, lua_tostring(L, -1));
        goto err;
    }
    return s;
err:
    zf_script_destroy(s);
    return NULL;
}

void zf_script_destroy(zf_script_t *s) {
    if (!s)
        return;
    zf_sandbox_destroy(s->sb);
    free(s->name);
    free(s->file);
    free((char *)s->rules.root);
    for (size_t i = 0; i < s->rules.nreserved; i++) {
        free((char *)s->reserved[i].path);
        free((char *)s->reserved[i].owner);
    }
    free(s->reserved);
    free(s);
}

const char *zf_script_name(const zf_script_t *s) { return s->name; }
const char *zf_script_file(const zf_script_t *s) { return s->file; }
const char *zf_script_version(const zf_script_t *s) { return s->version; }

/* ------------------------------------------------------------------------
 * One record, inside the sandbox's protected call: build the record table,
 * call the transform, convert what it returned. Everything that allocates
 * happens here, so running out of memory is an error, never a panic. */

typedef struct call {
    zf_script_t *s;
    const zf_record_t *rec;
    zf_oplist_t *out;
    int returned; /* the transform returned: later errors are validation */
} call_t;

/* The record's field names, interned once as upvalues of the body closure
 * (make_closures), so building a record hashes no field name. */
enum {
    UV_TOPIC = 1,
    UV_PARTITION,
    UV_OFFSET,
    UV_TIMESTAMP,
    UV_KEY,
    UV_VALUE,
    UV_HEADERS,
    UV_NAME,
    UV_COUNT = UV_NAME
};
static const char *const field_names[UV_COUNT] = {
    "topic", "partition", "offset", "timestamp",
    "key",   "value",     "headers", "name",
};

/* t[upvalue uv] = the string p[0..len), in the table at the top; a NULL p
 * leaves the field absent (it reads as nil). [-0, +0] */
static void set_lstring(lua_State *L, int uv, const void *p, size_t len) {
    if (!p)
        return;
    lua_pushvalue(L, lua_upvalueindex(uv));
    lua_pushlstring(L, p, len);
    lua_rawset(L, -3);
}

/* Push the record as a table. The new table has no metatable, so raw sets
 * are what lua_setfield would do. Runs in the body closure (upvalues are
 * the field names). [-0, +1] */
static void push_record(lua_State *L, const zf_record_t *rec) {
    lua_createtable(L, 0, 7);
    lua_pushvalue(L, lua_upvalueindex(UV_TOPIC));
    lua_pushstring(L, rec->topic);
    lua_rawset(L, -3);
    lua_pushvalue(L, lua_upvalueindex(UV_PARTITION));
    lua_pushinteger(L, rec->partition);
    lua_rawset(L, -3);
    lua_pushvalue(L, lua_upvalueindex(UV_OFFSET));
    lua_pushnumber(L, (lua_Number)rec->offset);
    lua_rawset(L, -3);
    if (rec->timestamp >= 0) {
        lua_pushvalue(L, lua_upvalueindex(UV_TIMESTAMP));
        lua_pushnumber(L, (lua_Number)rec->timestamp);
        lua_rawset(L, -3);
    }
    set_lstring(L, UV_KEY, rec->key, rec->key_len);
    set_lstring(L, UV_VALUE, rec->value, rec->value_len);
    /* headers[i] = {name=, value=} in record order; headers[name] = the
     * value of the last header of that name. */
    lua_pushvalue(L, lua_upvalueindex(UV_HEADERS));
    lua_createtable(L, (int)rec->nheaders, (int)rec->nheaders);
    for (size_t i = 0; i < rec->nheaders; i++) {
        const zf_header_t *h = &rec->headers[i];
        lua_createtable(L, 0, 2);
        lua_pushvalue(L, lua_upvalueindex(UV_NAME));
        lua_pushstring(L, h->name);
        lua_rawset(L, -3);
        set_lstring(L, UV_VALUE, h->value, h->len);
        lua_rawseti(L, -2, (int)i + 1);
        if (h->value) {
            lua_pushstring(L, h->name);
            lua_pushlstring(L, h->value, h->len);
            lua_rawset(L, -3);
        }
    }
    lua_rawset(L, -3);
}

static int invalid(lua_State *L, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Raise "the transform returned an invalid op: ..." (never returns). */
static int invalid(lua_State *L, const char *fmt, ...) {
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return luaL_error(L, "the transform returned an invalid op: %s", why);
}

/* Room for a string from the script shown in a message. */
#define SHOWN 160

/* The string at idx as a message shows it (zf_op_escape). */
static const char *shown(lua_State *L, int idx, char *buf) {
    size_t n;
    const char *p = lua_tolstring(L, idx, &n);
    return zf_op_escape(p, n, buf, SHOWN);
}

/* The path p[0..n) must not hold a NUL, which would cut it short once
 * copied: raise zf_path_explain's message then. */
static void check_nul(lua_State *L, const char *p, size_t n) {
    char why[512];
    if (memchr(p, '\0', n) && zf_path_explain(p, n, why, sizeof why) != ZF_OK)
        invalid(L, "%s", why);
}

/* The value at idx, of Lua type `type`, when it is a name: a string
 * without a NUL (which would cut it short as a C string). NULL otherwise. */
static inline const char *name_at(lua_State *L, int idx, int type) {
    size_t n;
    const char *p = type == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
    return p && strlen(p) == n ? p : NULL;
}

static char *dup_lstring(lua_State *L, const char *p, size_t len) {
    char *s = malloc(len + 1);
    if (!s)
        luaL_error(L, "out of memory");
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* The paths, data and ZF_OP_OVERHEAD of the ops at idx: a list of op
 * tables or one. */
static size_t result_bytes(lua_State *L, int idx, int is_list) {
    static const char *const fields[] = {"path", "data"};
    size_t bytes = 0;
    int n = is_list ? (int)lua_objlen(L, idx) : 1;
    for (int i = 1; i <= n; i++) {
        if (is_list)
            lua_rawgeti(L, idx, i);
        else
            lua_pushvalue(L, idx);
        for (int f = 0; f < 2 && lua_istable(L, -1); f++) {
            lua_pushstring(L, fields[f]);
            lua_rawget(L, -2);
            if (lua_type(L, -1) == LUA_TSTRING)
                bytes += lua_objlen(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        bytes += ZF_OP_OVERHEAD;
    }
    return bytes;
}

/* The ops being converted: the list they go to, and the bytes of request
 * taken so far (paths, data, ZF_OP_OVERHEAD per op; the parents an upsert
 * may create are added by zf_oplist_validate), checked against the budget
 * before each copy. */
typedef struct taking {
    zf_oplist_t *out;
    size_t bytes;
    int idx;     /* what the transform returned (absolute) */
    int is_list; /* a list of op tables, or one op table */
} taking_t;

/* Count n more bytes; over the budget, raise (nothing more is copied). */
static void count_bytes(lua_State *L, taking_t *t, size_t n) {
    char why[256];
    t->bytes += n;
    if (t->bytes > ZF_OP_MAX_BYTES) {
        size_t total = result_bytes(L, t->idx, t->is_list);
        zf_op_check_bytes(total > t->bytes ? total : t->bytes, why,
                          sizeof why);
        invalid(L, "%s", why);
    }
}

/* The string at idx copied into *dst (nil leaves *dst NULL), counted. */
static void take_string(lua_State *L, taking_t *t, int idx, const char *what,
                        char **dst, size_t *len) {
    int type = lua_type(L, idx);
    if (type == LUA_TNIL)
        return;
    if (type != LUA_TSTRING)
        invalid(L, "%s must be a string, not a %s", what,
                lua_typename(L, type));
    size_t n;
    const char *p = lua_tolstring(L, idx, &n);
    if (!len)
        check_nul(L, p, n); /* a path */
    count_bytes(L, t, n);
    *dst = dup_lstring(L, p, n);
    if (len)
        *len = n;
}

static int64_t take_integer(lua_State *L, int idx, const char *what) {
    if (lua_type(L, idx) != LUA_TNUMBER)
        invalid(L, "%s must be a number, not a %s", what,
                luaL_typename(L, idx));
    lua_Number v = lua_tonumber(L, idx);
    if (v != floor(v) || v < -1 || v > 9007199254740992.0)
        invalid(L, "%s must be a whole number", what);
    return (int64_t)v;
}

/* The fields of an op table. A key matches by all its bytes: "path\0" is
 * not "path", but an unknown field. */
enum field { F_OP, F_PATH, F_DATA, F_VERSION, F_MODE, F_TTL, F_RECURSIVE,
             F_UNKNOWN };

static enum field field_of(const char *k, size_t n) {
#define IS(name) (n == sizeof(name) - 1 && memcmp(k, name, n) == 0)
    if (IS("path"))
        return F_PATH;
    if (IS("op"))
        return F_OP;
    if (IS("data"))
        return F_DATA;
    if (IS("version"))
        return F_VERSION;
    if (IS("mode"))
        return F_MODE;
    if (IS("ttl"))
        return F_TTL;
    if (IS("recursive"))
        return F_RECURSIVE;
    return F_UNKNOWN;
#undef IS
}

/* Convert the op table at idx (absolute) into a new op of the list. */
static void take_op_table(lua_State *L, taking_t *t, int idx) {
    char buf[SHOWN];
    count_bytes(L, t, ZF_OP_OVERHEAD);
    zf_op_t *op = zf_oplist_push(t->out);
    if (!op)
        luaL_error(L, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            invalid(L, "an op table has a %s key (fields are op, path, data, "
                       "version, mode, ttl, recursive)",
                    luaL_typename(L, -2));
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        int vt = lua_type(L, -1);
        const char *name;
        switch (field_of(k, klen)) {
        case F_OP:
            if (!(name = name_at(L, -1, vt)) ||
                zf_op_parse_type(name, &op->type) != 0)
                invalid(L, "unknown op '%s' (expected upsert, create, set, "
                           "delete or check)",
                        vt == LUA_TSTRING ? shown(L, -1, buf)
                                          : luaL_typename(L, -1));
            break;
        case F_PATH:
            take_string(L, t, -1, "path", &op->path, NULL);
            break;
        case F_DATA:
            take_string(L, t, -1, "data", &op->data, &op->datalen);
            break;
        case F_VERSION: {
            int64_t v = take_integer(L, -1, "version");
            if (v > INT32_MAX)
                invalid(L, "version is too large");
            op->version = (int32_t)v;
            break;
        }
        case F_MODE:
            if (!(name = name_at(L, -1, vt)) ||
                zf_mode_parse(name, &op->mode) != 0)
                invalid(L, "unknown mode '%s' (expected persistent, "
                           "sequential, container or ttl)",
                        vt == LUA_TSTRING ? shown(L, -1, buf)
                                          : luaL_typename(L, -1));
            break;
        case F_TTL:
            op->ttl_ms = take_integer(L, -1, "ttl");
            if (op->ttl_ms <= 0)
                invalid(L, "ttl must be more than 0 ms");
            break;
        case F_RECURSIVE:
            if (vt != LUA_TBOOLEAN)
                invalid(L, "recursive must be true or false");
            op->recursive = lua_toboolean(L, -1);
            break;
        case F_UNKNOWN:
            invalid(L, "unknown field '%s' in an op table (fields are op, "
                       "path, data, version, mode, ttl, recursive)",
                    shown(L, -2, buf));
        }
        lua_pop(L, 1);
    }
    if (!op->path)
        invalid(L, "an op table needs a path");
}

/* The list at idx must hold items 1..n and nothing else: a hole or another
 * key would leave ops out. Returns n. */
static size_t list_length(lua_State *L, int idx) {
    size_t n = lua_objlen(L, idx), count = 0;
    char buf[SHOWN];
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        lua_Number k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1)
                                                      : 0;
        if (k >= 1 && k == floor(k))
            continue; /* an index: too large ones are holes, below */
        if (lua_type(L, -1) == LUA_TSTRING)
            invalid(L, "a list of ops has the key '%s' besides its items "
                       "(op tables only, at 1, 2, 3...)",
                    shown(L, -1, buf));
        invalid(L, "a list of ops has a %s key besides its items (op tables "
                   "only, at 1, 2, 3...)",
                luaL_typename(L, -1));
    }
    if (count != n) { /* keys are indexes, but not just 1..n: a hole */
        size_t i = 1;    /* n + 1 is nil at least */
        for (;; i++) {
            lua_rawgeti(L, idx, (int)i);
            int hole = lua_isnil(L, -1);
            lua_pop(L, 1);
            if (hole)
                break;
        }
        invalid(L, "item %zu of the list is missing (a list of ops must "
                   "have no holes)",
                i);
    }
    return n;
}

/* The results at base+1..base+3 into out. */
static void take_results(lua_State *L, int base, zf_oplist_t *out) {
    int t = lua_type(L, base + 1);
    if (t == LUA_TNIL)
        return; /* skip */
    if (t == LUA_TSTRING) { /* path, payload, op */
        /* Checked first, then copied with the op in one allocation. */
        size_t plen, dlen = 0;
        const char *path = lua_tolstring(L, base + 1, &plen);
        check_nul(L, path, plen);
        int dt = lua_type(L, base + 2);
        if (dt != LUA_TNIL && dt != LUA_TSTRING)
            invalid(L, "the payload must be a string or nil, not a %s",
                    luaL_typename(L, base + 2));
        zf_op_type_t type = ZF_OP_UPSERT;
        int ot = lua_type(L, base + 3);
        char buf[SHOWN], why[256];
        const char *name;
        if (ot != LUA_TNIL && (!(name = name_at(L, base + 3, ot)) ||
                               zf_op_parse_type(name, &type) != 0))
            invalid(L, "unknown op '%s' (expected upsert, create, set, "
                       "delete or check)",
                    ot == LUA_TSTRING ? shown(L, base + 3, buf)
                                      : lua_typename(L, ot));
        const char *data = NULL; /* a delete's payload means nothing */
        if (type != ZF_OP_DELETE && dt == LUA_TSTRING)
            data = lua_tolstring(L, base + 2, &dlen);
        if (zf_op_check_bytes(zf_op_request_bytes(type, path, plen, dlen), why,
                              sizeof why) != ZF_OK)
            invalid(L, "%s", why);
        zf_op_t *op = zf_oplist_push_packed(out, path, plen, data, dlen);
        if (!op)
            luaL_error(L, "out of memory");
        op->type = type;
        return;
    }
    if (t != LUA_TTABLE)
        invalid(L, "expected nil, path/payload/op, an op table or a list of "
                   "op tables; got a %s",
                luaL_typename(L, base + 1));
    taking_t tk = {.out = out, .idx = base + 1};
    lua_rawgeti(L, base + 1, 1);
    tk.is_list = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!tk.is_list) {
        lua_pushnil(L);
        int empty = !lua_next(L, base + 1);
        if (!empty)
            lua_pop(L, 2);
        if (!empty)
            take_op_table(L, &tk, base + 1);
        return; /* {} is an empty list: skip */
    }
    size_t n = list_length(L, base + 1);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, base + 1, (int)i);
        if (!lua_istable(L, -1))
            invalid(L, "item %zu of the list is a %s, not an op table", i,
                    luaL_typename(L, -1));
        take_op_table(L, &tk, lua_gettop(L));
        lua_pop(L, 1);
    }
}

/* The protected body of zf_script_transform; upvalues: field_names.
 * [-1, +0] */
static int transform(lua_State *L) {
    call_t *c = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->fn_ref);
    push_record(L, c->rec);
    int base = lua_gettop(L) - 2;
    lua_call(L, 1, 3);
    c->returned = 1;
    take_results(L, base, c->out);
    char why[1024];
    if (zf_oplist_validate(c->out, &c->s->rules, why, sizeof why) != ZF_OK)
        return luaL_error(L, "the transform returned an invalid op: %s", why);
    return 0;
}

/* Make, once, the closures every record uses: the error handler and the
 * body with its field names; both are kept in the registry. Runs
 * protected (lua_cpcall), with the script as the light userdata. */
static int make_closures(lua_State *L) {
    zf_script_t *s = lua_touserdata(L, 1);
    push_handler(s, L);
    s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    for (int i = 0; i < UV_COUNT; i++)
        lua_pushstring(L, field_names[i]);
    lua_pushcclosure(L, transform, UV_COUNT);
    s->body_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

zf_err_t zf_script_transform(zf_script_t *s, const zf_record_t *rec,
                             zf_oplist_t *out, char *err, size_t errlen) {
    lua_State *L = zf_sandbox_lua(s->sb);
    int top = lua_gettop(L);
    call_t c = {s, rec, out, 0};
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->handler_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->body_ref);
    lua_pushlightuserdata(L, &c);
    zf_err_t rc = ZF_OK;
    int status = zf_sandbox_pcall(s->sb, 1, 0, top + 1);
    if (status == LUA_ERRMEM) {
        /* The handler does not run for memory errors: add the location. */
        snprintf(err, errlen, "%s:%d: %s", s->file, s->fn_line,
                 lua_tostring(L, -1));
        zf_oplist_clear(out);
        rc = ZF_ERECORD;
    } else if (status != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        zf_oplist_clear(out);
        rc = ZF_ERECORD;
    }
    s->invalid = rc != ZF_OK && status != LUA_ERRMEM && c.returned;
    lua_settop(L, top);
    return rc;
}

int zf_script_failed_validation(const zf_script_t *s) { return s->invalid; }

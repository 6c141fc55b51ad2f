/* fuzz_transform: engine/script.c's reading of what a transform returns
 * (nil; path, payload, op; an op table; a list of op tables) and its
 * validation (engine/op.c), under the sandbox's default limits (100 ms,
 * 64 MB). The transform reads the record's value, the fuzz input, as a
 * value tree (tree.lua: JSON, or Lua-like tables with any keys, holes,
 * NUL bytes, shared values and cycles) and returns its first three
 * values. It runs for a script with root "/" and one with root "/t". An
 * accepted op list must validate again, and must be what the value said
 * (transform_oracle.lua, on the same tree read in a plain state); either
 * way the `zkflow test` line of the outcome must be JSON, and the call
 * must not have malloc'ed more than MAX_MALLOC at once (op data is bounded
 * by ZF_OP_MAX_BYTES: a list sharing one big string must be refused before
 * it is copied once per op). FUZZ_DEBUG=1 prints each call's outcome. */
#include <sanitizer/allocator_interface.h>
#include <stddef.h>
#include <stdint.h>

#include "fuzz.h"
#include "transform_oracle_lua.h"
#include "tree_lua.h"
#include "zkflow/jsonl.h"
#include "zkflow/op.h"
#include "zkflow/script.h"

static const char *const roots[] = {"/", "/t"};
#define NSCRIPTS (sizeof roots / sizeof roots[0])
static zf_script_t *scripts[NSCRIPTS];
static lua_State *L;  /* the oracle's plain state */
static int check_ref; /* transform_oracle.lua's check function */

/* malloc'ed bytes a transform call may hold at once: ZF_OP_MAX_BYTES of
 * paths and data, the op array of the longest list tree.lua makes (10000
 * ops), messages, with room to spare. Lua's memory is not malloc'ed: LuaJIT
 * maps its own. */
#define MAX_MALLOC (4u << 20)

/* malloc'ed and not yet freed by this thread since tracking began, and the
 * peak of it (sanitizer hooks; frees of older blocks may make it negative). */
static __thread int tracking;
static __thread long long live, peak;

static void on_malloc(const volatile void *p, size_t n) {
    (void)p;
    if (tracking && (live += (long long)n) > peak)
        peak = live;
}

static void on_free(const volatile void *p) {
    if (tracking && p)
        live -= (long long)__sanitizer_get_allocated_size(p);
}

static const char script_src[] =
    "return function(r)\n"
    "  local res = parse(r.value or '')\n"
    "  return res[1], res[2], res[3]\n"
    "end\n";

static void close_states(void) {
    for (size_t i = 0; i < NSCRIPTS; i++)
        zf_script_destroy(scripts[i]);
    lua_close(L);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char *src = fuzz_with_parse(tree_lua, script_src), err[1024];
    for (size_t i = 0; i < NSCRIPTS; i++) {
        zf_script_opts_t o = zf_script_opts_default;
        o.root = roots[i];
        scripts[i] = zf_script_new_text("fuzz", "transform.lua", src,
                                        strlen(src), &o, err, sizeof err);
        if (!scripts[i])
            FUZZ_FAIL("%s", err);
    }
    free(src);
    L = fuzz_plain_state();
    fuzz_run_chunk(L, tree_lua, "=tree", 0);
    fuzz_run_chunk(L, transform_oracle_lua, "=transform_oracle", 1);
    check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    atexit(close_states);
    if (!__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free))
        FUZZ_FAIL("cannot install the malloc hooks");
    return 0;
}

/* Push the ops as the oracle takes them. */
static void push_ops(const zf_oplist_t *ops) {
    lua_createtable(L, (int)ops->n, 0);
    for (size_t i = 0; i < ops->n; i++) {
        const zf_op_t *op = &ops->ops[i];
        lua_createtable(L, 0, 7);
        lua_pushstring(L, zf_op_name(op->type));
        lua_setfield(L, -2, "op");
        lua_pushstring(L, op->path);
        lua_setfield(L, -2, "path");
        if (op->data) {
            lua_pushlstring(L, op->data, op->datalen);
            lua_setfield(L, -2, "data");
        }
        lua_pushnumber(L, op->version);
        lua_setfield(L, -2, "version");
        lua_pushstring(L, zf_mode_name(op->mode));
        lua_setfield(L, -2, "mode");
        lua_pushnumber(L, (lua_Number)op->ttl_ms);
        lua_setfield(L, -2, "ttl");
        lua_pushboolean(L, op->recursive);
        lua_setfield(L, -2, "recursive");
        lua_rawseti(L, -2, (int)i + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    zf_record_t rec = {.topic = "t", .timestamp = -1,
                       .value = size ? data : (const void *)"",
                       .value_len = size};
    for (size_t i = 0; i < NSCRIPTS; i++) {
        zf_oplist_t ops = {0};
        char err[2048], why[512];
        live = peak = 0;
        tracking = 1;
        zf_err_t rc = zf_script_transform(scripts[i], &rec, &ops, err,
                                          sizeof err);
        tracking = 0;
        if (getenv("FUZZ_DEBUG"))
            fprintf(stderr, "root %s: %zu ops, %lld bytes at the peak: %s\n",
                    roots[i], ops.n, peak, rc == ZF_OK ? "ok" : err);
        if (peak > MAX_MALLOC)
            FUZZ_FAIL("root %s: the transform held %lld malloc'ed bytes at "
                      "once (%s)",
                      roots[i], peak, rc == ZF_OK ? "accepted" : err);
        if (rc != ZF_OK && rc != ZF_ERECORD)
            FUZZ_FAIL("root %s: zf_script_transform returned %s", roots[i],
                      zf_strerror(rc));
        if (rc != ZF_OK && ops.n != 0)
            FUZZ_FAIL("root %s: %zu ops left after an error", roots[i],
                      ops.n);
        char *line = zf_jsonl_format_result(0, &ops,
                                            rc == ZF_OK ? NULL : err);
        if (!line)
            FUZZ_FAIL("zf_jsonl_format_result failed");
        if (zf_jsonl_equal(line, line, why, sizeof why) != 1)
            FUZZ_FAIL("root %s: the result line is not JSON: %s", roots[i],
                      line);
        free(line);
        if (rc == ZF_OK) {
            zf_op_rules_t rules = {.root = roots[i], .allowed = ZF_OP_ALL};
            if (zf_oplist_validate(&ops, &rules, why, sizeof why) != ZF_OK)
                FUZZ_FAIL("root %s: accepted, then invalid: %s", roots[i],
                          why);
            lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
            lua_pushstring(L, roots[i]);
            lua_pushlstring(L, (const char *)data, size);
            push_ops(&ops);
            if (lua_pcall(L, 3, 1, 0) != 0)
                FUZZ_FAIL("oracle: %s", lua_tostring(L, -1));
            if (!lua_isnil(L, -1))
                FUZZ_FAIL("root %s: %s", roots[i], lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        zf_oplist_free(&ops);
    }
    return 0;
}

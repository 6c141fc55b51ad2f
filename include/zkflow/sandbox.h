/* Sandbox: a LuaJIT state holding only what a transform may use, with a
 * per-call time limit and a memory limit.
 *
 * What a script sees: the base functions without the ones that load code or
 * reach the host (dofile, loadfile, load, loadstring, module, getfenv,
 * setfenv, collectgarbage, newproxy), string (without string.dump), table,
 * math, bit, os.time, os.date, os.clock, log(...) (rate limited), and
 * require("json") (lua-cjson) and require("zk") (op constructors). No io,
 * os (beyond time), package, debug, ffi or jit. Only source text is loaded.
 *
 * A sandbox is used by one thread at a time. */
#ifndef ZKFLOW_SANDBOX_H
#define ZKFLOW_SANDBOX_H

#include <lua.h>
#include <stddef.h>

typedef struct zf_sandbox zf_sandbox_t;

typedef struct zf_sandbox_limits {
    int timeout_ms;      /* per zf_sandbox_pcall; 0 = no limit */
    size_t memory_bytes; /* everything the state allocates; 0 = no limit */
} zf_sandbox_limits_t;

/* A new state with the script environment. `name` (copied) labels what the
 * script logs. Returns NULL with the reason in err. */
zf_sandbox_t *zf_sandbox_new(const char *name, const zf_sandbox_limits_t *lim,
                             char *err, size_t errlen);

/* Close the state and free the sandbox; accepts NULL. */
void zf_sandbox_destroy(zf_sandbox_t *sb);

/* The sandbox's Lua state (owned by the sandbox). */
lua_State *zf_sandbox_lua(zf_sandbox_t *sb);

/* Compile source text (never bytecode) as a chunk named `chunkname`
 * ("@FILE" for files). Same contract as luaL_loadbufferx: 0 with the
 * function pushed, or an error code with the message pushed. [-0, +1] */
int zf_sandbox_load(zf_sandbox_t *sb, const char *src, size_t len,
                    const char *chunkname);

/* lua_pcall with the limits armed for the duration of the call; same
 * contract as lua_pcall. A call that runs past the time limit fails with a
 * message containing "time limit of N ms exceeded"; one whose allocations
 * pass the memory limit with "memory limit of N MB exceeded". Neither can be
 * caught by pcall inside the script. [-(nargs+1), +(nresults|1)] */
int zf_sandbox_pcall(zf_sandbox_t *sb, int nargs, int nresults, int errfunc);

#endif

/* Sandbox: a LuaJIT state holding only what a transform may use, with a
 * per-call time limit and a memory limit.
 *
 * What a script sees:
 * - the base functions except those that load code, reach other functions'
 *   environments or the collector (dofile, loadfile, load, loadstring,
 *   module, getfenv, setfenv, collectgarbage, gcinfo, newproxy); xpcall
 *   calls its handler after unwinding (a handler cannot see the stack
 *   anyway without the debug library); print is log;
 * - coroutine, string (without string.dump), table, math, bit;
 * - os.time, os.date, os.clock; os.date raises on conversion specifiers
 *   C99 does not define and on times a time_t cannot hold;
 * - log(...): tostring of each argument, joined by spaces, one INFO line
 *   "NAME: message" (control characters escaped, cut at 2000 bytes); at most
 *   10 lines a second per sandbox, then one WARN line with the number
 *   dropped once logging resumes (or when the sandbox is destroyed);
 * - require("json") (json.h: decode, encode, null, as lua-cjson's; "cjson"
 *   is the same module) and require("zk") (op table constructors:
 *   upsert, set, create, delete, check); any other name raises "module 'X'
 *   is not available to zkflow scripts (available: json, zk)".
 * No io, package, debug, ffi or jit, nothing else of os. Only source text is
 * loaded. Each sandbox is its own state: globals never cross sandboxes.
 *
 * Limits (both enforced only inside zf_sandbox_pcall; 0 turns one off):
 * - time: the JIT is off (count hooks do not fire in compiled code) and a
 *   count hook compares a monotonic clock with the call's deadline every
 *   1000 VM instructions. It is wall-clock time, so a thread kept off the
 *   CPU for the whole limit also fails. A C function that runs long by
 *   itself (a pathological string.find pattern, json.decode of a huge
 *   string) cannot be interrupted: the call fails at the first VM
 *   instruction after it returns.
 * - memory: every byte the state allocates counts, including the ~35 KB
 *   of the environment itself; an allocation that would pass the limit is
 *   refused. Not counted: the C stack.
 * Once a limit is hit, every further VM instruction of the call raises the
 * limit's error again, so pcall, xpcall or coroutine.resume cannot swallow
 * it, and the call fails even if the script returns. The state stays
 * usable: after a memory error it is collected at once.
 * With neither limit set the state runs with the JIT on and no hook.
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
 * script logs. Setup is never limited, but fails when the environment alone
 * passes lim->memory_bytes. Returns NULL with the reason in err. */
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
 * contract as lua_pcall. A call that runs past the time limit fails with
 * LUA_ERRRUN and a message containing "time limit of N ms exceeded", as
 * returned by the message handler at errfunc (which sees the error where
 * the script was stopped; when the script swallowed it and returned, it is
 * called after the call with the bare message). One whose allocations pass
 * the memory limit fails with LUA_ERRMEM and exactly "memory limit of N MB
 * exceeded" (N = memory_bytes / 2^20, "%g"); as for any LUA_ERRMEM, the
 * handler does not run, so the message names no line. Neither can be
 * caught by pcall inside the script. The handler should be a C function: a
 * Lua handler would run without the time limit while the limit's error is
 * raised. Allocations made outside a call (by the host, between calls) are
 * counted but never refused. A call made from inside another (a C function
 * calling back) runs under the outer call's deadline, and the outer call
 * reports a limit hit in the inner one. [-(nargs+1), +(nresults|1)] */
int zf_sandbox_pcall(zf_sandbox_t *sb, int nargs, int nresults, int errfunc);

#endif

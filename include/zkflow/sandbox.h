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
 * - time: the JIT is off (hooks do not fire in compiled code) and a call
 *   runs with no hook. One process-wide watchdog thread (started by the
 *   first sandbox with a time limit, ended at exit) looks at the running
 *   calls every tick, a quarter of the smallest timeout_ms of the existing
 *   sandboxes within 1..25 ms; for a call past its deadline it sends
 *   ZF_SANDBOX_SIGNAL (a real-time signal, SIGRTMIN + 4 unless defined
 *   otherwise at build time) to the thread running it, whose handler
 *   installs a count hook that stops the call at its next VM instruction.
 *   So a runaway call is stopped within about one tick after its deadline
 *   (timeout_ms 100: by ~125 ms), and a call that returns past its
 *   deadline fails whatever it returned (a tail call included). It is
 *   wall-clock time, so a thread kept off the CPU for the whole limit also
 *   fails. A C function is not stopped from outside; those a script can
 *   make run long look at the clock as they go (zf_sandbox_check_time)
 *   and raise the limit's error within microseconds of the deadline:
 *   string.find, match, gmatch, gsub, rep, table.concat, insert, sort
 *   (stoplib.h), json.decode and encode, os.date. What is left does at
 *   most one pass over data no larger than the memory limit (string.upper
 *   of a 28 MB string: ~30 ms here), after which the call fails. The
 *   host must leave the signal's handler alone and not block the signal
 *   on threads that run calls (each such thread unblocks it on its first
 *   call); it is installed with SA_RESTART, but poll, epoll_wait,
 *   nanosleep and the like may return EINTR on a thread that ran an
 *   overdue call.
 * - memory: every byte the state allocates counts, including the ~35 KB
 *   of the environment itself; an allocation that would pass the limit is
 *   refused. Not counted: the C stack.
 * The collector's work for a call counts against its time limit like
 * anything else the call does: when LuaJIT's collector falls behind, the
 * sandbox finishes its cycle in steps, and stops at the deadline like the
 * rest. Once a limit is hit, every further VM instruction of the call
 * raises the limit's error again, so pcall, xpcall or coroutine.resume
 * cannot swallow it, and the call fails even if the script returns. The
 * state stays usable: after a memory error, what the call left is
 * collected within its time limit, and what does not fit is collected
 * first in the next call, within that call's limit (which the next call
 * may run out of: it then fails with the time limit, and the one after
 * goes on with the collection).
 * With neither limit set the state runs with the JIT on and no hook.
 *
 * A sandbox is used by one thread at a time; different sandboxes may run
 * on different threads at once. A call of one sandbox made inside a call of
 * another (a C function calling back) is held to its own limit; the outer
 * call's time limit takes effect once the inner call returns. */
#ifndef ZKFLOW_SANDBOX_H
#define ZKFLOW_SANDBOX_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

typedef struct zf_sandbox zf_sandbox_t;

typedef struct zf_sandbox_limits {
    int timeout_ms;      /* per zf_sandbox_pcall; 0 = no limit */
    size_t memory_bytes; /* everything the state allocates; 0 = no limit */
} zf_sandbox_limits_t;

/* A new state with the script environment. `name` (copied) labels what the
 * script logs. Setup is never limited, but fails when the environment alone
 * passes lim->memory_bytes, or (time limit only) when the watchdog thread
 * cannot be started. Returns NULL with the reason in err. */
zf_sandbox_t *zf_sandbox_new(const char *name, const zf_sandbox_limits_t *lim,
                             char *err, size_t errlen);

/* Close the state and free the sandbox (taken off the watchdog's list
 * first); accepts NULL. Never while one of its calls runs. */
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

/* Nanoseconds the calling thread has spent in zf_sandbox_pcall calls of
 * sandboxes with a time limit (from the clock readings the limit takes
 * anyway), since the thread started. Never fails. */
int64_t zf_sandbox_thread_ns(void);

/* For C functions a script can call that may run long (stoplib.h, json):
 * when the current zf_sandbox_pcall of the sandbox owning L is past its
 * time limit, stop it here with the limit's error, which, as the hook's,
 * the script cannot catch: every VM instruction after it raises it again,
 * and zf_sandbox_pcall reports the limit. Otherwise returns. Does nothing
 * for a state that is not a sandbox's, outside zf_sandbox_pcall, or
 * without a time limit. A few loads and a clock read (~25 ns): call it
 * every few tens of microseconds of work, where raising an error is safe
 * (nothing held that only the C function would release). */
void zf_sandbox_check_time(lua_State *L);

#endif

/* Sandbox: the environment a transform sees, and its time and memory limits.
 *
 * How the limits work (the contract is in sandbox.h):
 *
 * - Memory: the state's allocator is replaced (lua_setallocf) by one that
 *   counts bytes and passes the work on to LuaJIT's own allocator, which
 *   does Lua's many small objects in fewer instructions than glibc's malloc
 *   (bench/transform.c, trivial mapping under callgrind: 5,967 instead of
 *   6,529 instructions per record). Inside zf_sandbox_pcall an allocation
 *   that would take the state past the limit is refused, and LuaJIT raises
 *   "not enough memory". Outside it (setup, loading, whatever the host
 *   pushes between calls) nothing is refused: a refusal there would make
 *   LuaJIT panic, and that memory is the host's.
 *   LuaJIT has no emergency collection, and by default its collector starts
 *   a cycle only at twice the live size, so a script whose live data is
 *   over a third of the limit would be refused while garbage is still
 *   around. So the collector is paced for the limit (pace_gc), and when it
 *   falls behind anyway the allocator asks the hook, the one place where
 *   the collector may run mid-call, for a full collection. It runs in
 *   LuaJIT's incremental steps and stops at the call's deadline (collect):
 *   a full collection of a state of tens of MB of small objects takes
 *   longer than the default time limit, and one that could not be stopped
 *   (LUA_GCCOLLECT) held the thread for it. What a call that broke the
 *   memory limit left behind is collected within its time too, and the
 *   rest first thing in the next call (gc_owed).
 *
 * - Time: with the JIT off (a compiled loop never looks at hooks, so it
 *   could not be stopped; the memory limit needs the hook too, so either
 *   limit turns the JIT off) and no hook at all while a call runs normally.
 *   zf_sandbox_pcall notes the call's deadline and marks the call running
 *   (a few plain stores beside the clock read it always did). One
 *   process-wide watchdog thread, started with the first time-limited
 *   sandbox, wakes every tick (a quarter of the smallest timeout_ms among
 *   the sandboxes, within 1..25 ms: 25 ms for the default 100 ms) and, for
 *   a call past its deadline, sends ZF_SANDBOX_SIGNAL to the thread running
 *   it (tgkill). The handler, on that thread, finds the call among the
 *   thread's running calls by its sequence number and installs a count
 *   hook of 1 (lua_sethook, the way LuaJIT's own interpreter stops a script
 *   on SIGINT): the hook, on the next VM instruction, compares the clock
 *   with the deadline itself and kills the call. So a runaway call is
 *   stopped within about one tick after its deadline. A call that returns
 *   past its deadline fails too, whatever it returned: zf_sandbox_pcall
 *   looks at the clock once the call is over (the watchdog may not have
 *   looked yet, and a C function in tail position leaves no instruction
 *   for the hook). The watchdog keeps signalling every tick while the
 *   call runs past its deadline, so a signal that finds the state busy
 *   (see below) only delays the kill by a tick. In LuaJIT the hook
 *   belongs to the whole state (global_State), not to one coroutine, so
 *   coroutines are covered too.
 *   What this saves: a resting count hook (the previous design: every 1000
 *   instructions) sends every VM instruction through LuaJIT's hook
 *   dispatch, whatever the count. bench/transform.c, Lua-heavy mapping
 *   (~1,100 VM instructions per record), 100 ms + 64 MB, callgrind: 34.6k
 *   machine instructions per record with that hook, 24.7k now (64 MB
 *   alone: 24.0k); trivial and JSON mappings, few VM instructions: within
 *   noise (5.95k, 12.4k). In CPU time the hook dispatch cost less than its
 *   instruction count suggests (~3-5% on the Lua-heavy mapping here).
 *
 *   The hook only fires between VM instructions, so a C function is on
 *   its own until it returns; stopping it from outside (a signal handler
 *   that longjmps out) would leave a malloc lock held or a table half
 *   rebuilt. So the library functions a script can make run long do
 *   their work in steps and call zf_sandbox_check_time every few tens of
 *   microseconds, which raises the limit's error, from a point where
 *   nothing is half done, once the clock is past the deadline: stoplib.c
 *   (string patterns, string.rep, table.concat, insert, sort), json.c,
 *   os.date below. It costs a load of the allocator's userdata, two
 *   compares and a clock read per check.
 *
 * - Once a limit is hit, the sandbox is "killed" until zf_sandbox_pcall
 *   returns: the hook runs on every instruction and raises the limit's
 *   error each time, so pcall, xpcall or coroutine.resume inside the script
 *   gain at most one instruction. zf_sandbox_pcall then reports the limit
 *   whatever the call's own outcome, and repairs the state (hook off;
 *   after a memory kill, a full collection).
 *
 * The hook is installed or changed with lua_sethook(), which rewrites
 * LuaJIT's dispatch table, so it is never called per record: only a kill,
 * a collection request or the watchdog's signal installs it, and the hook
 * removes itself when it has nothing left to do. lua_sethook() is also
 * called from inside the allocator; LuaJIT's own profiler changes the
 * dispatch table from a signal handler at arbitrary points in the same
 * way, and with the JIT off nothing is being recorded.
 * The signal handler never writes across threads: it runs on the thread of
 * the call it stops. It does nothing while the host itself is inside
 * lua_sethook() for that state (set_hook marks it), and nothing for a call
 * other than the one the watchdog saw overdue: a signal that arrives after
 * its call ended (it is sent while the call runs, but delivered a little
 * later) finds no such call and is dropped. Even a stray hook could not
 * kill a call early: the hook decides from the call's own deadline. The
 * handler may interrupt LuaJIT updating g->hookmask (read-modify-write,
 * e.g. hook_leave on an error) and have its count hook lost; the next
 * tick's signal installs it again.
 * The signal is a real-time one no library in the daemon uses; nobody else
 * sends it and the watchdog targets one thread by its id, so the threads of
 * librdkafka, the ZooKeeper client and libmicrohttpd never receive it (and
 * their handler run would find no call of theirs and do nothing). It is
 * installed with SA_RESTART; calls that never restart (poll, epoll_wait,
 * nanosleep) may return EINTR on a thread that ran an overdue call, which
 * the engine's loops tolerate. A thread unblocks the signal for itself on
 * its first time-limited call. */
#include "zkflow/sandbox.h"

#include <errno.h>
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zkflow/clock.h"
#include "zkflow/json.h"
#include "zkflow/log.h"
#include "zkflow/stoplib.h"

/* The signal the watchdog sends to a thread running an overdue call.
 * Real-time signals are not used by the daemon or its libraries (main.c
 * and engine.c take SIGINT, SIGTERM and SIGHUP through a signalfd). */
#ifndef ZF_SANDBOX_SIGNAL
#define ZF_SANDBOX_SIGNAL (SIGRTMIN + 4)
#endif

/* The watchdog's tick: timeout_ms / TICK_DIVISOR, within [TICK_MIN_NS,
 * TICK_MAX_NS], the smallest over the time-limited sandboxes. A runaway
 * call runs at most about a tick past its limit (25% of it, or 25 ms); a
 * tick costs a wakeup and a look at each sandbox (a few microseconds), so
 * even the 1 ms floor is cheap, and the default 100 ms gives 40 a second. */
#define TICK_DIVISOR 4
#define TICK_MIN_NS 1000000
#define TICK_MAX_NS 25000000

/* While the collector runs for the sandbox, it looks at the clock every
 * this many of LuaJIT's incremental steps (each a few microseconds). */
#define GC_STEPS_PER_CHECK 4

/* os.date: format characters between two looks at the clock. */
#define DATE_CHARS_PER_CHECK 4096

/* After a memory kill, allocations may go this far past the limit, so that
 * raising and formatting the error itself does not fail. */
#define KILL_SLACK_BYTES (1024 * 1024)

/* log(): lines per second per sandbox. */
#define LOG_LINES_PER_SEC 10
/* log(): longest message kept; zf_log lines are cut at 4 KB anyway. */
#define LOG_MAX_BYTES 2000

typedef enum kill_reason { KILL_NONE = 0, KILL_TIME, KILL_MEMORY } kill_t;

typedef enum hook_mode {
    HOOK_OFF, /* no hook: a call running normally, or no call */
    HOOK_HOT, /* every instruction: killed, a collection is due, or the
                 watchdog saw the call overdue */
} hook_mode_t;

struct zf_sandbox {
    lua_State *L;
    char *name;
    zf_sandbox_limits_t lim;
    int limited;         /* either limit set: JIT off, checks on */
    int watched;         /* on the watchdog's list (time limit) */

    /* Memory: bytes the state holds, counted by the allocator. */
    size_t used;
    size_t gc_trigger;   /* full collection when used passes this */
    size_t check_above;  /* gc_trigger during a call, else SIZE_MAX */
    lua_Alloc base_alloc; /* LuaJIT's allocator, which does the work */
    void *base_ud;
    int gc_wanted;       /* the allocator asked the hook to collect */
    int gc_cycles;       /* cycle ends the collection under way still
                            waits for (collect()); 0: none under way */
    size_t gc_before;    /* used when it started */
    int gc_owed;         /* collections still owed after a memory kill
                            (collect_left_over): the next call does them
                            first */

    /* The current call. */
    int depth;           /* zf_sandbox_pcall nesting; limits apply if > 0 */
    int64_t deadline_ns; /* CLOCK_MONOTONIC */
    kill_t killed;
    /* What is installed; also written by the signal handler (same thread). */
    volatile hook_mode_t hook;
    volatile sig_atomic_t in_sethook; /* set_hook at work: handler keeps off */

    /* Time limit: the watchdog's view of the current call. Written by the
     * thread running the call, read by the watchdog thread. */
    uint64_t seq;                 /* the current (or last) call's number */
    _Atomic uint64_t wd_state;    /* seq << 1, | 1 while the call runs */
    _Atomic int64_t wd_deadline;  /* deadline_ns, for the watchdog */
    _Atomic int wd_tid;           /* thread running the call */
    _Atomic uint64_t wd_kick;     /* seq of the call last signalled for */
    zf_sandbox_t *wd_next, *wd_prev; /* the watchdog's list (wd.lock) */
    zf_sandbox_t *outer;          /* the thread's next running call */

    char time_msg[64];   /* "time limit of N ms exceeded" */
    char mem_msg[64];    /* "memory limit of N MB exceeded" */

    /* log() rate limit: a fixed one-second window. */
    int64_t log_window_ms;
    unsigned log_lines;
    unsigned long log_dropped;
};

/* zf_sandbox_thread_ns: time in time-limited calls on this thread. */
static _Thread_local int64_t thread_call_ns;

int64_t zf_sandbox_thread_ns(void) { return thread_call_ns; }

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Take LuaJIT's own count of the state's bytes (exact, also after a failed
 * allocation). */
static void sync_used(zf_sandbox_t *sb) {
    sb->used = (size_t)lua_gc(sb->L, LUA_GCCOUNT, 0) * 1024 +
               (size_t)lua_gc(sb->L, LUA_GCCOUNTB, 0);
}

/* ---- hook --------------------------------------------------------------- */

static void sandbox_hook(lua_State *L, lua_Debug *ar);

/* Install the hook in `mode` unless it is already there. Never fails.
 * The watchdog's signal handler leaves the state alone meanwhile. */
static void set_hook(zf_sandbox_t *sb, hook_mode_t mode) {
    if (sb->hook == mode)
        return;
    sb->in_sethook = 1;
    atomic_signal_fence(memory_order_seq_cst);
    sb->hook = mode;
    if (mode == HOOK_OFF)
        lua_sethook(sb->L, NULL, 0, 0);
    else
        lua_sethook(sb->L, sandbox_hook, LUA_MASKCOUNT, 1);
    atomic_signal_fence(memory_order_seq_cst);
    sb->in_sethook = 0;
}

static int clamp_int(double v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : (int)v;
}

/* Pace the collector for the memory limit, taking sb->used as the live
 * size (exact right after a full collection, an upper bound otherwise).
 * LuaJIT starts a cycle at `pause`% of the live size (default 200) and does
 * `stepmul`% of an allocation's size in collection work (default 200), so
 * by default a state holding L bytes may reach 2L and more before garbage
 * goes: past the limit once L is over a third of it. With R the room left
 * (limit - L):
 * - LuaJIT starts a cycle at L + R/2, and works fast enough to finish it
 *   within the next R/2 bytes (a cycle's work is about the bytes held);
 *   with a small live size this is LuaJIT's default pacing;
 * - should it not keep up, the allocator asks the hook for a full
 *   collection at L + 3R/4 (the last quarter being room for what one
 *   instruction may allocate before the hook runs), or at least 1/16 of
 *   the limit above L, so that data growing towards the limit causes a few
 *   full collections rather than one per shrinking step. */
static void pace_gc(zf_sandbox_t *sb) {
    size_t limit = sb->lim.memory_bytes;
    if (!limit) {
        sb->gc_trigger = sb->check_above = SIZE_MAX;
        return;
    }
    size_t live = sb->used;
    size_t room = live < limit ? limit - live : 0;
    double start = (double)live + (double)(room / 2);
    double pause = live ? 100 * start / (double)live : 200;
    double stepmul = room / 2 ? 200 * start / (double)(room / 2) : 1000;
    lua_gc(sb->L, LUA_GCSETPAUSE, clamp_int(pause, 100, 200));
    lua_gc(sb->L, LUA_GCSETSTEPMUL, clamp_int(stepmul, 200, 1000));
    size_t gap = room / 4 * 3 > limit / 16 ? room / 4 * 3 : limit / 16;
    sb->gc_trigger = gap < room ? live + gap : limit;
    sb->check_above = sb->depth > 0 ? sb->gc_trigger : SIZE_MAX;
}

/* A full collection for the memory limit: what LUA_GCCOLLECT does (the
 * cycle under way finished, then one whole cycle), but in LuaJIT's
 * incremental steps, so that it can stop at `deadline` (CLOCK_MONOTONIC
 * ns, 0 for none). LUA_GCCOLLECT cannot be stopped, and takes ~1-2 ms per
 * MB of small objects here (60-140 ms for a 62 MB state of small tables);
 * the longest single step measured in that state was 4 ms, and 20 ms with
 * 4 MB strings being collected. Paced before (the end of a cycle sets
 * LuaJIT's next threshold from the pause) and after (from what is live).
 * Returns 0 when done, -1 when out of time: the work done stays done, and
 * the next collection goes on from there. Only where the collector may
 * run: the hook, or outside calls. */
static int collect(zf_sandbox_t *sb, int64_t deadline) {
    if (sb->gc_cycles == 0) {
        pace_gc(sb);
        sb->gc_cycles = 2;
        sb->gc_before = sb->used;
    }
    for (int steps = 0; sb->gc_cycles > 0; steps++) {
        if (deadline && steps % GC_STEPS_PER_CHECK == 0 &&
            now_ns() >= deadline)
            return -1;
        sb->gc_cycles -= lua_gc(sb->L, LUA_GCSTEP, 0);
    }
    sync_used(sb);
    pace_gc(sb);
    return 0;
}

/* The collections after a memory kill, which free what the call left
 * behind. A collection only halves LuaJIT's scratch buffer (which a string
 * bomb leaves large), so go on while collecting still pays. Until
 * `deadline` as collect(); returns 0 or -1 likewise. */
static int collect_left_over(zf_sandbox_t *sb, int64_t deadline) {
    while (sb->gc_owed > 0) {
        if (collect(sb, deadline) != 0)
            return -1;
        sb->gc_owed--;
        if (sb->used > sb->gc_before - sb->gc_before / 8)
            sb->gc_owed = 0;
    }
    return 0;
}

typedef struct collect_job {
    zf_sandbox_t *sb;
    int64_t deadline;
    int rc;
} collect_job_t;

/* collect_left_over for lua_cpcall, whose argument is a collect_job_t.
 * [-0, +0] */
static int collect_left_over_cp(lua_State *L) {
    collect_job_t *job = lua_touserdata(L, 1);
    job->rc = collect_left_over(job->sb, job->deadline);
    return 0;
}

/* Outside a call: collect_left_over under lua_cpcall (the collector may
 * not raise outside a protected call). Returns 0 when done (or the
 * collector failed: then it is not tried again), -1 when `deadline` came
 * first: the rest stays owed. */
static int pay_gc_owed(zf_sandbox_t *sb, int64_t deadline) {
    collect_job_t job = {sb, deadline, 0};
    if (lua_cpcall(sb->L, collect_left_over_cp, &job) != 0) {
        lua_pop(sb->L, 1);
        sb->gc_owed = 0;
    }
    return job.rc;
}

static zf_sandbox_t *sandbox_of(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* Count hook (installed only when there is something to do): enforces a
 * kill, runs a requested collection, and checks the deadline; then removes
 * itself, unless killed. Runs inside the script's call, so it may raise. */
static void sandbox_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    zf_sandbox_t *sb = sandbox_of(L);
    if (sb->depth == 0) { /* Lua run by the host outside zf_sandbox_pcall */
        set_hook(sb, HOOK_OFF);
        return;
    }
    if (!sb->killed && sb->gc_wanted) {
        /* The call's time, as everything the thread does for it: with a
         * large live set the collection can take a good part of the limit
         * (collect()), and a call that runs out of time in it fails. */
        sb->gc_wanted = 0;
        if (collect(sb, sb->watched ? sb->deadline_ns : 0) != 0)
            sb->killed = KILL_TIME;
    }
    /* Also when the watchdog's signal installed the hook: it only says
     * "look now"; the call's own deadline decides. */
    if (!sb->killed && sb->lim.timeout_ms > 0 && now_ns() >= sb->deadline_ns)
        sb->killed = KILL_TIME;
    if (!sb->killed) {
        set_hook(sb, HOOK_OFF);
        return;
    }
    /* From now on every instruction raises again: see the top comment. */
    set_hook(sb, HOOK_HOT);
    lua_pushstring(L, sb->killed == KILL_TIME ? sb->time_msg : sb->mem_msg);
    lua_error(L);
}

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

void zf_sandbox_check_time(lua_State *L) {
    void *ud;
    if (lua_getallocf(L, &ud) != sandbox_alloc)
        return; /* not a sandbox's state */
    zf_sandbox_t *sb = ud;
    if (sb->depth == 0 || !sb->watched)
        return;
    if (!sb->killed) {
        if (now_ns() < sb->deadline_ns)
            return;
        sb->killed = KILL_TIME;
    }
    /* As the hook does: every further instruction raises again. */
    set_hook(sb, HOOK_HOT);
    lua_pushstring(L, sb->killed == KILL_TIME ? sb->time_msg : sb->mem_msg);
    lua_error(L);
}

/* ---- allocator ---------------------------------------------------------- */

/* The slow path of sandbox_alloc: growth that took sb->used past
 * sb->check_above (the collection trigger inside a call, SIZE_MAX outside).
 * sb->used already includes the growth. */
static __attribute__((noinline)) void *
alloc_checked(zf_sandbox_t *sb, void *ptr, size_t osize, size_t nsize) {
    if (sb->depth > 0 && sb->lim.memory_bytes) {
        size_t cap = sb->lim.memory_bytes;
        if (sb->killed == KILL_MEMORY)
            cap += KILL_SLACK_BYTES;
        if (sb->used > cap) {
            sb->used -= nsize - osize;
            if (!sb->killed)
                sb->killed = KILL_MEMORY;
            set_hook(sb, HOOK_HOT);
            return NULL; /* LuaJIT raises "not enough memory" */
        }
        if (!sb->gc_wanted) {
            sb->gc_wanted = 1;
            set_hook(sb, HOOK_HOT);
        }
    }
    return sb->base_alloc(sb->base_ud, ptr, osize, nsize);
}

/* lua_Alloc around LuaJIT's own allocator: counts the state's bytes and,
 * inside a call, refuses to pass the memory limit (alloc_checked).
 * Shrinking and freeing never fail. The count is taken before the real
 * allocation, which keeps this a tail call (it runs ~16 times per record);
 * should LuaJIT's allocator itself fail (the host is out of memory), the
 * count is too high until the next sync_used(), after a collection. */
static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    zf_sandbox_t *sb = ud;
    if (!ptr)
        osize = 0;
    sb->used += nsize - osize; /* modulo 2^64: shrinking subtracts */
    if (nsize > osize && sb->used > sb->check_above)
        return alloc_checked(sb, ptr, osize, nsize);
    return sb->base_alloc(sb->base_ud, ptr, osize, nsize);
}

/* ---- log(...) ------------------------------------------------------------ */

/* Append s[0..len) to buf (size LOG_MAX_BYTES + 1, *n used) with control
 * characters escaped, so one call is one log line that cannot forge
 * others. Returns 0 once the buffer is full. */
static int log_append(char *buf, size_t *n, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[4];
        size_t k = 0;
        if (c == '\n') {
            esc[k++] = '\\';
            esc[k++] = 'n';
        } else if (c == '\t' || (c >= 0x20 && c != 0x7f)) {
            esc[k++] = (char)c;
        } else {
            esc[k++] = '\\';
            esc[k++] = 'x';
            esc[k++] = hex[c >> 4];
            esc[k++] = hex[c & 15];
        }
        if (*n + k > LOG_MAX_BYTES)
            return 0;
        memcpy(buf + *n, esc, k);
        *n += k;
    }
    return 1;
}

static void log_report_dropped(zf_sandbox_t *sb) {
    if (sb->log_dropped)
        zf_log(ZF_LOG_WARN, "script",
               "%s: %lu log line(s) dropped (limit %d per second)", sb->name,
               sb->log_dropped, LOG_LINES_PER_SEC);
    sb->log_dropped = 0;
}

/* log(...): tostring each argument, join with spaces, write one INFO line.
 * At most LOG_LINES_PER_SEC lines per second; the rest are counted and
 * reported in one line when logging resumes. Upvalue 1: the sandbox,
 * upvalue 2: the original tostring. [-0, +0] */
static int sandbox_log(lua_State *L) {
    zf_sandbox_t *sb = lua_touserdata(L, lua_upvalueindex(1));
    int64_t now = zf_now_ms();
    if (now - sb->log_window_ms >= 1000) {
        sb->log_window_ms = now;
        sb->log_lines = 0;
        log_report_dropped(sb);
    }
    if (sb->log_lines >= LOG_LINES_PER_SEC) {
        sb->log_dropped++; /* arguments not even converted: stays cheap */
        return 0;
    }
    sb->log_lines++;
    char buf[LOG_MAX_BYTES + 4];
    size_t n = 0;
    int nargs = lua_gettop(L), room = 1;
    for (int i = 1; i <= nargs && room; i++) {
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (!s)
            return luaL_error(L, "'tostring' must return a string to 'log'");
        room = (i == 1 || log_append(buf, &n, " ", 1)) &&
               log_append(buf, &n, s, len);
        lua_pop(L, 1);
    }
    if (!room) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    zf_log(ZF_LOG_INFO, "script", "%s: %s", sb->name, buf);
    return 0;
}

/* ---- os.date ------------------------------------------------------------ */

/* Conversions strftime is given, one at a time: C99's, and the E and O
 * modifiers where C99 allows them (the list Lua 5.3 uses). Anything else is
 * an error rather than whatever the C library makes of it. */
static const char *const date_convs[] = {
    "a", "A", "b", "B", "c", "C", "d", "D", "e", "F", "g", "G", "h",
    "H", "I", "j", "m", "M", "n", "p", "r", "R", "S", "t", "T", "u",
    "U", "V", "w", "W", "x", "X", "y", "Y", "z", "Z", "%", "Ec", "EC",
    "Ex", "EX", "Ey", "EY", "Od", "Oe", "OH", "OI", "Om", "OM", "OS", "Ou",
    "OU", "OV", "Ow", "OW", "Oy", NULL,
};

static void set_date_field(lua_State *L, const char *k, int v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* os.date([format [, time]]) as in Lua 5.1, but thread-safe (gmtime_r,
 * localtime_r), with invalid conversion specifiers and times that cannot be
 * represented raising errors. [-0, +1] */
static int sandbox_os_date(lua_State *L) {
    const char *fmt = luaL_optstring(L, 1, "%c");
    time_t t;
    if (lua_isnoneornil(L, 2)) {
        t = time(NULL);
    } else {
        lua_Number x = luaL_checknumber(L, 2);
        /* Outside this range converting to time_t is undefined. */
        if (!(x > -1e15 && x < 1e15))
            return luaL_argerror(L, 2, "time out of range");
        t = (time_t)x;
    }
    int utc = *fmt == '!';
    if (utc)
        fmt++;
    struct tm tm;
    if (!(utc ? gmtime_r(&t, &tm) : localtime_r(&t, &tm)))
        return luaL_argerror(L, 2, "time out of range");
    if (strcmp(fmt, "*t") == 0) {
        lua_createtable(L, 0, 9);
        set_date_field(L, "sec", tm.tm_sec);
        set_date_field(L, "min", tm.tm_min);
        set_date_field(L, "hour", tm.tm_hour);
        set_date_field(L, "day", tm.tm_mday);
        set_date_field(L, "month", tm.tm_mon + 1);
        set_date_field(L, "year", tm.tm_year + 1900);
        set_date_field(L, "wday", tm.tm_wday + 1);
        set_date_field(L, "yday", tm.tm_yday + 1);
        lua_pushboolean(L, tm.tm_isdst);
        lua_setfield(L, -2, "isdst");
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t n = 0;
    for (const char *p = fmt; *p; p++) {
        /* A format of millions of conversions runs for seconds. */
        if (++n % DATE_CHARS_PER_CHECK == 0)
            zf_sandbox_check_time(L);
        if (*p != '%') {
            luaL_addchar(&b, *p);
            continue;
        }
        size_t len = 0;
        for (size_t i = 0; date_convs[i]; i++) {
            size_t k = strlen(date_convs[i]);
            if (strncmp(p + 1, date_convs[i], k) == 0) {
                len = k;
                break;
            }
        }
        if (!len) {
            char conv[3] = {p[1], '\0', '\0'};
            if ((p[1] == 'E' || p[1] == 'O') && p[2])
                conv[1] = p[2];
            return luaL_argerror(
                L, 1,
                lua_pushfstring(L, "invalid conversion specifier '%%%s'",
                                conv));
        }
        char spec[4] = "%", out[256];
        memcpy(spec + 1, p + 1, len);
        spec[len + 1] = '\0';
        luaL_addlstring(&b, out, strftime(out, sizeof out, spec, &tm));
        p += len;
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- require and the zk module ----------------------------------------- */

/* The zk module: constructors for op tables, in the format the script
 * module reads (engine/script.c). They check argument types only; paths,
 * modes and versions are validated with the op (engine/op.c). Library
 * functions are captured as locals, so a script that replaces globals does
 * not change how ops are built. */
static const char zk_module_src[] =
    "local type, error = type, error\n"
    "local function arg(fn, name, v, want, optional)\n"
    "  if type(v) ~= want and not (optional and v == nil) then\n"
    "    error('zk.' .. fn .. ': ' .. name .. ' must be a ' .. want ..\n"
    "          (optional and ' or nil' or '') .. ', not ' .. type(v), 3)\n"
    "  end\n"
    "end\n"
    "local zk = {}\n"
    "function zk.upsert(path, data)\n"
    "  arg('upsert', 'path', path, 'string')\n"
    "  arg('upsert', 'data', data, 'string', true)\n"
    "  return { op = 'upsert', path = path, data = data }\n"
    "end\n"
    "function zk.set(path, data, version)\n"
    "  arg('set', 'path', path, 'string')\n"
    "  arg('set', 'data', data, 'string', true)\n"
    "  arg('set', 'version', version, 'number', true)\n"
    "  return { op = 'set', path = path, data = data, version = version }\n"
    "end\n"
    "function zk.create(path, data, opts)\n"
    "  arg('create', 'path', path, 'string')\n"
    "  arg('create', 'data', data, 'string', true)\n"
    "  arg('create', 'opts', opts, 'table', true)\n"
    "  local op = { op = 'create', path = path, data = data }\n"
    "  if opts then op.mode, op.ttl = opts.mode, opts.ttl end\n"
    "  return op\n"
    "end\n"
    "function zk.delete(path, opts)\n"
    "  arg('delete', 'path', path, 'string')\n"
    "  arg('delete', 'opts', opts, 'table', true)\n"
    "  local op = { op = 'delete', path = path }\n"
    "  if opts then op.version, op.recursive = opts.version, opts.recursive "
    "end\n"
    "  return op\n"
    "end\n"
    "function zk.check(path, version)\n"
    "  arg('check', 'path', path, 'string')\n"
    "  arg('check', 'version', version, 'number')\n"
    "  return { op = 'check', path = path, version = version }\n"
    "end\n"
    "return zk\n";

/* xpcall(f, handler, ...) that calls the handler after unwinding, from a
 * plain pcall. LuaJIT's own xpcall calls the handler at the error, and
 * when the error is the hook's the handler runs inside the hook, where
 * hooks are off: `xpcall(loop, function() while true do end end)` would
 * never stop. Without the debug library a handler cannot look at the stack,
 * so when it runs makes no difference to a script. Results as LuaJIT's:
 * true and f's results, or false and the handler's first result, or false
 * and "error in error handling". */
static const char xpcall_src[] =
    "local pcall, type, error = pcall, type, error\n"
    "local function finish(handler, ok, ...)\n"
    "  if ok then return true, ... end\n"
    "  local hok, v = pcall(handler, (...))\n"
    "  if not hok then return false, 'error in error handling' end\n"
    "  return false, v\n"
    "end\n"
    "return function(f, handler, ...)\n"
    "  if type(handler) ~= 'function' then\n"
    "    error(\"bad argument #2 to 'xpcall' (function expected, got \" ..\n"
    "          type(handler) .. ')', 2)\n"
    "  end\n"
    "  return finish(handler, pcall(f, ...))\n"
    "end\n";

/* require(name): "json" (alias "cjson") and "zk", nothing else. Upvalue 1:
 * the json module, upvalue 2: the zk module. [-1, +1] */
static int sandbox_require(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    if (strcmp(name, "json") == 0 || strcmp(name, "cjson") == 0) {
        lua_pushvalue(L, lua_upvalueindex(1));
        return 1;
    }
    if (strcmp(name, "zk") == 0) {
        lua_pushvalue(L, lua_upvalueindex(2));
        return 1;
    }
    return luaL_error(L, "module '%s' is not available to zkflow scripts "
                         "(available: json, zk)",
                      name);
}

/* ---- setup -------------------------------------------------------------- */

/* Base library entries a script does not get: they load code (dofile,
 * loadfile, load, loadstring, module), reach other functions' environments
 * (getfenv, setfenv), control or observe the collector (collectgarbage,
 * gcinfo), or make userdata with __gc, which would run outside any call
 * (newproxy); and the jit library, opened for unlimited states only.
 * require, print and xpcall are replaced below. */
static const char *const removed_globals[] = {
    "dofile", "loadfile", "load",    "loadstring",    "module", "getfenv",
    "setfenv", "gcinfo",  "newproxy", "collectgarbage", "jit",   NULL,
};

/* Call a luaopen_* function, dropping what it returns. [-0, +0] */
static void open_lib(lua_State *L, lua_CFunction open) {
    lua_pushcfunction(L, open);
    lua_call(L, 0, 0);
}

/* Build the globals a script sees. Runs under lua_cpcall, so allocation
 * failures are errors, not panics. The argument is the sandbox. [-0, +0] */
static int open_env(lua_State *L) {
    zf_sandbox_t *sb = lua_touserdata(L, 1);
    open_lib(L, luaopen_base); /* also coroutine */
    open_lib(L, luaopen_string);
    open_lib(L, luaopen_table);
    open_lib(L, luaopen_math);
    open_lib(L, luaopen_bit);
    /* Library functions the time limit could not stop otherwise. */
    if (sb->lim.timeout_ms > 0)
        zf_stoplib_open(L);
    /* The JIT only starts once its library is opened. A limited state keeps
     * it off: count hooks do not fire inside compiled traces. */
    if (sb->limited)
        luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    else
        open_lib(L, luaopen_jit);

    /* os: time, date, clock only. */
    lua_pushcfunction(L, luaopen_os);
    lua_call(L, 0, 1);
    lua_createtable(L, 0, 3);
    lua_getfield(L, -2, "time");
    lua_setfield(L, -2, "time");
    lua_getfield(L, -2, "clock");
    lua_setfield(L, -2, "clock");
    lua_pushcfunction(L, sandbox_os_date);
    lua_setfield(L, -2, "date");
    lua_setglobal(L, "os");
    lua_pop(L, 1);

    /* The libraries register themselves in the registry's _LOADED too; the
     * registry is out of a script's reach, but leave nothing there. */
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        lua_setfield(L, -2, "os");
        lua_pushnil(L);
        lua_setfield(L, -2, "jit");
    }
    lua_pop(L, 1);

    for (size_t i = 0; removed_globals[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, removed_globals[i]);
    }
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    if (luaL_loadbuffer(L, xpcall_src, sizeof xpcall_src - 1, "=xpcall"))
        return lua_error(L);
    lua_call(L, 0, 1);
    lua_setglobal(L, "xpcall");

    /* log, and print as its alias: stdout is not the script's. */
    lua_pushlightuserdata(L, sb);
    lua_getglobal(L, "tostring");
    lua_pushcclosure(L, sandbox_log, 2);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "log");
    lua_setglobal(L, "print");

    /* require: json and zk, each loaded once. */
    zf_json_open(L);
    if (luaL_loadbuffer(L, zk_module_src, sizeof zk_module_src - 1, "=zk"))
        return lua_error(L);
    lua_call(L, 0, 1);
    lua_pushcclosure(L, sandbox_require, 2);
    lua_setglobal(L, "require");

    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

/* ---- watchdog (time limit) ----------------------------------------------- */

/* The time-limited sandboxes, and the one thread that watches their calls.
 * See the top comment. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* CLOCK_MONOTONIC; a sandbox came */
    int started;
    int stop;             /* exit(): the thread ends */
    pthread_t thread;
    int signo;
    pid_t pid;
    zf_sandbox_t *list;   /* time-limited sandboxes, under lock */
} wd = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Per thread: the innermost running time-limited call (its sandbox; each
 * links to the next outer one), and the thread's id for tgkill (0 until
 * its first time-limited call, which also unblocks the signal). Only this
 * thread and its signal handler touch them. */
static __thread zf_sandbox_t *running;
static __thread pid_t thread_tid;

/* On the thread that runs the overdue call: install the count hook on
 * that call's state. Async-signal-safe: lua_sethook only writes the
 * state's hook fields and dispatch table. */
static void on_watchdog_signal(int signo) {
    (void)signo;
    int saved = errno;
    for (zf_sandbox_t *sb = running; sb; sb = sb->outer) {
        if (sb->in_sethook ||
            atomic_load_explicit(&sb->wd_kick, memory_order_relaxed) !=
                sb->seq)
            continue;
        /* Not skipped when already HOT: LuaJIT may have lost the count
         * bit (see the top comment), and installing it again is cheap. */
        sb->hook = HOOK_HOT;
        lua_sethook(sb->L, sandbox_hook, LUA_MASKCOUNT, 1);
    }
    errno = saved;
}

static int64_t tick_ns(int timeout_ms) {
    int64_t t = (int64_t)timeout_ms * 1000000 / TICK_DIVISOR;
    return t < TICK_MIN_NS ? TICK_MIN_NS : t > TICK_MAX_NS ? TICK_MAX_NS : t;
}

/* The watchdog thread: every tick, signal the thread of each call past its
 * deadline; with no time-limited sandbox, sleep until one comes. */
static void *watchdog_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&wd.lock);
    while (!wd.stop) {
        if (!wd.list) {
            pthread_cond_wait(&wd.wake, &wd.lock);
            continue;
        }
        int64_t now = now_ns(), tick = TICK_MAX_NS;
        for (zf_sandbox_t *sb = wd.list; sb; sb = sb->wd_next) {
            int64_t t = tick_ns(sb->lim.timeout_ms);
            if (t < tick)
                tick = t;
            /* Read the call's deadline and thread as a seqlock reader:
             * both belong to call `state` if the state is the same after. */
            uint64_t state =
                atomic_load_explicit(&sb->wd_state, memory_order_acquire);
            if (!(state & 1))
                continue;
            int64_t deadline =
                atomic_load_explicit(&sb->wd_deadline, memory_order_relaxed);
            int tid = atomic_load_explicit(&sb->wd_tid, memory_order_relaxed);
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&sb->wd_state, memory_order_relaxed) !=
                    state ||
                now < deadline)
                continue;
            /* The call may end before the signal lands: the handler then
             * finds no call numbered state >> 1 and does nothing. Should
             * the thread have exited, tgkill fails (ESRCH); were its id
             * taken by a new thread meanwhile, that thread's handler would
             * find no such call either. */
            atomic_store_explicit(&sb->wd_kick, state >> 1,
                                  memory_order_release);
            tgkill(wd.pid, tid, wd.signo);
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t at = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + tick;
        ts.tv_sec = at / 1000000000;
        ts.tv_nsec = at % 1000000000;
        pthread_cond_timedwait(&wd.wake, &wd.lock, &ts);
    }
    pthread_mutex_unlock(&wd.lock);
    return NULL;
}

/* At exit: end the watchdog thread, so that it is not left running (and
 * valgrind finds nothing of it). Signals already sent still land on
 * threads whose handler finds no call and does nothing. */
static void watchdog_stop(void) {
    if (getpid() != wd.pid)
        return; /* a forked child: the thread is not there */
    pthread_mutex_lock(&wd.lock);
    wd.stop = 1;
    pthread_cond_signal(&wd.wake);
    pthread_mutex_unlock(&wd.lock);
    pthread_join(wd.thread, NULL);
}

/* Start the watchdog (once per process; it ends at exit) and install the
 * handler. Under wd.lock. The thread blocks every signal: those meant for
 * the process go to the daemon's own threads. Returns 0, or -1 with the
 * reason in err. */
static int watchdog_start(char *err, size_t errlen) {
    if (wd.started)
        return 0;
    wd.signo = ZF_SANDBOX_SIGNAL;
    wd.pid = getpid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_watchdog_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&wd.wake, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0 || sigaction(wd.signo, &sa, NULL) != 0) {
        snprintf(err, errlen, "cannot set up the time limit: %s",
                 strerror(rc ? rc : errno));
        if (rc == 0)
            pthread_cond_destroy(&wd.wake);
        return -1;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&wd.thread, NULL, watchdog_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the time limit's watchdog "
                              "thread: %s",
                 strerror(rc));
        pthread_cond_destroy(&wd.wake);
        return -1;
    }
    wd.started = 1;
    atexit(watchdog_stop);
    return 0;
}

/* Add a time-limited sandbox to the watchdog's list (starting the
 * watchdog if needed). Returns 0, or -1 with the reason in err. */
static int watchdog_add(zf_sandbox_t *sb, char *err, size_t errlen) {
    pthread_mutex_lock(&wd.lock);
    int rc = watchdog_start(err, errlen);
    if (rc == 0) {
        sb->wd_prev = NULL;
        sb->wd_next = wd.list;
        if (wd.list)
            wd.list->wd_prev = sb;
        wd.list = sb;
        pthread_cond_signal(&wd.wake); /* perhaps a shorter tick now */
    }
    pthread_mutex_unlock(&wd.lock);
    return rc;
}

/* Take sb off the list: the watchdog never looks at it again. */
static void watchdog_remove(zf_sandbox_t *sb) {
    pthread_mutex_lock(&wd.lock);
    if (sb->wd_prev)
        sb->wd_prev->wd_next = sb->wd_next;
    else
        wd.list = sb->wd_next;
    if (sb->wd_next)
        sb->wd_next->wd_prev = sb->wd_prev;
    pthread_mutex_unlock(&wd.lock);
}

/* A time-limited call starts on this thread: publish its deadline (already
 * in sb->deadline_ns) and thread to the watchdog, and make it findable by
 * the signal handler. A few stores; no lock, no syscall but once per
 * thread. */
static void call_begin(zf_sandbox_t *sb) {
    if (!thread_tid) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, wd.signo);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        thread_tid = gettid();
    }
    sb->seq++;
    sb->outer = running;
    /* Seqlock writer: the previous call's end is seen before these. */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&sb->wd_deadline, sb->deadline_ns,
                          memory_order_relaxed);
    atomic_store_explicit(&sb->wd_tid, thread_tid, memory_order_relaxed);
    atomic_store_explicit(&sb->wd_state, sb->seq << 1 | 1,
                          memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    running = sb;
    atomic_signal_fence(memory_order_seq_cst);
}

/* The call has returned: the watchdog and the handler leave it alone from
 * now on. A hook the handler installed too late stays for the caller to
 * remove. */
static void call_end(zf_sandbox_t *sb) {
    atomic_store_explicit(&sb->wd_state, sb->seq << 1, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    running = sb->outer;
    atomic_signal_fence(memory_order_seq_cst);
}

/* ---- public ------------------------------------------------------------- */

zf_sandbox_t *zf_sandbox_new(const char *name, const zf_sandbox_limits_t *lim,
                             char *err, size_t errlen) {
    zf_sandbox_t *sb = calloc(1, sizeof *sb);
    if (!sb || !(sb->name = strdup(name))) {
        snprintf(err, errlen, "out of memory");
        free(sb);
        return NULL;
    }
    sb->lim = *lim;
    if (sb->lim.timeout_ms < 0)
        sb->lim.timeout_ms = 0;
    sb->limited = sb->lim.timeout_ms > 0 || sb->lim.memory_bytes > 0;
    sb->gc_trigger = SIZE_MAX;
    sb->check_above = SIZE_MAX;
    sb->hook = HOOK_OFF;
    sb->log_window_ms = INT64_MIN / 2;
    snprintf(sb->time_msg, sizeof sb->time_msg, "time limit of %d ms exceeded",
             sb->lim.timeout_ms);
    snprintf(sb->mem_msg, sizeof sb->mem_msg, "memory limit of %g MB exceeded",
             (double)sb->lim.memory_bytes / (1024 * 1024));

    /* LuaJIT's own allocator does the work, wrapped by one that counts (see
     * the top comment); what the state holds so far is its starting count.
     * Unlike lua_newstate() with a malloc-based allocator, this is cheaper
     * per object and works on LuaJIT builds without GC64 too, where
     * lua_newstate() returns NULL. */
    if (!(sb->L = luaL_newstate())) {
        snprintf(err, errlen, "cannot create a Lua state: out of memory");
        zf_sandbox_destroy(sb);
        return NULL;
    }
    sb->base_alloc = lua_getallocf(sb->L, &sb->base_ud);
    sync_used(sb);
    lua_setallocf(sb->L, sandbox_alloc, sb);
    if (lua_cpcall(sb->L, open_env, sb) != 0) {
        snprintf(err, errlen, "cannot set up the sandbox: %s",
                 lua_tostring(sb->L, -1));
        zf_sandbox_destroy(sb);
        return NULL;
    }
    if (sb->lim.memory_bytes && sb->used >= sb->lim.memory_bytes) {
        snprintf(err, errlen,
                 "memory limit of %zu bytes is below what the sandbox "
                 "itself needs (%zu bytes)",
                 sb->lim.memory_bytes, sb->used);
        zf_sandbox_destroy(sb);
        return NULL;
    }
    pace_gc(sb);
    if (sb->lim.timeout_ms > 0) {
        if (watchdog_add(sb, err, errlen) != 0) {
            zf_sandbox_destroy(sb);
            return NULL;
        }
        sb->watched = 1;
    }
    return sb;
}

void zf_sandbox_destroy(zf_sandbox_t *sb) {
    if (!sb)
        return;
    log_report_dropped(sb);
    if (sb->watched)
        watchdog_remove(sb); /* before the state goes */
    if (sb->L) {
        /* lua_close frees LuaJIT's allocator as a whole only when it finds
         * that allocator installed; with ours it would leak its arena
         * (~200 KB per sandbox). */
        if (sb->base_alloc)
            lua_setallocf(sb->L, sb->base_alloc, sb->base_ud);
        lua_close(sb->L);
    }
    free(sb->name);
    free(sb);
}

lua_State *zf_sandbox_lua(zf_sandbox_t *sb) { return sb->L; }

int zf_sandbox_load(zf_sandbox_t *sb, const char *src, size_t len,
                    const char *chunkname) {
    /* Mode "t": text only. Crafted bytecode can break out of any sandbox. */
    return luaL_loadbufferx(sb->L, src, len, chunkname, "t");
}

/* Push the error for a limit: `msg` passed through the message handler at
 * `errfunc` (0 for none), as lua_pcall would have. The handler is the
 * host's; it runs with the limits off. [-0, +1] */
static void push_limit_error(lua_State *L, const char *msg, int errfunc) {
    if (errfunc) {
        lua_pushvalue(L, errfunc);
        lua_pushstring(L, msg);
        if (lua_pcall(L, 1, 1, 0) == 0 && lua_isstring(L, -1))
            return;
        lua_pop(L, 1);
    }
    lua_pushstring(L, msg);
}

/* After a killed call: make the outcome the limit's error, whatever the
 * script did with it, and put the state back in order. `base` is the stack
 * top below the called function, `errfunc` the handler's absolute index or
 * 0. Returns the status to report. */
static int finish_kill(zf_sandbox_t *sb, int status, int base, int errfunc) {
    lua_State *L = sb->L;
    kill_t why = sb->killed;
    if (why == KILL_MEMORY) {
        /* As lua_pcall does for LUA_ERRMEM: the bare message, no handler.
         * The script may have caught the first "not enough memory" and been
         * stopped by the hook later; it makes no difference to the caller. */
        lua_settop(L, base);
        lua_pushstring(L, sb->mem_msg);
    } else {
        /* Keep the handler's version ("FILE:LINE: ...") when the hook's
         * error reached it. When the script swallowed it and returned at
         * once, or the handler itself failed, make one. */
        const char *got = status != 0 ? lua_tostring(L, -1) : NULL;
        if (!got || !strstr(got, sb->time_msg)) {
            lua_settop(L, base);
            push_limit_error(L, sb->time_msg, errfunc);
        }
    }
    sb->killed = KILL_NONE;
    sb->gc_wanted = 0;
    set_hook(sb, HOOK_OFF);
    if (why == KILL_MEMORY) {
        /* Free what the script left behind, within the call's time; what
         * does not fit is owed, and the next call pays it first. */
        sb->gc_owed = 8;
        pay_gc_owed(sb, sb->watched ? sb->deadline_ns : 0);
    }
    return why == KILL_MEMORY ? LUA_ERRMEM : LUA_ERRRUN;
}

int zf_sandbox_pcall(zf_sandbox_t *sb, int nargs, int nresults, int errfunc) {
    lua_State *L = sb->L;
    if (!sb->limited)
        return lua_pcall(L, nargs, nresults, errfunc);
    if (sb->depth > 0) {
        /* Nested (a C function inside a call calls back): the outer call's
         * deadline and kill apply; the outer call reports them. */
        sb->depth++;
        int status = lua_pcall(L, nargs, nresults, errfunc);
        sb->depth--;
        return status;
    }
    int base = lua_gettop(L) - nargs - 1;
    if (errfunc < 0)
        errfunc = lua_gettop(L) + errfunc + 1;
    if (sb->watched) {
        sb->deadline_ns = now_ns() + (int64_t)sb->lim.timeout_ms * 1000000;
        call_begin(sb);
    }
    if (sb->gc_owed &&
        pay_gc_owed(sb, sb->watched ? sb->deadline_ns : 0) != 0) {
        /* Out of time before the script could start. */
        call_end(sb); /* watched: without a deadline it always ends */
        lua_settop(L, base);
        push_limit_error(L, sb->time_msg, errfunc);
        return LUA_ERRRUN;
    }
    sb->depth = 1;
    sb->check_above = sb->gc_trigger;
    int status = lua_pcall(L, nargs, nresults, errfunc);
    sb->depth = 0;
    sb->check_above = SIZE_MAX;
    if (sb->watched) {
        call_end(sb);
        /* Past its deadline, the call fails whatever it returned: the
         * watchdog may not have looked yet, or the time went in a C
         * function with no VM instruction after it (a tail call). */
        int64_t now = now_ns();
        thread_call_ns += now - (sb->deadline_ns -
                                 (int64_t)sb->lim.timeout_ms * 1000000);
        if (!sb->killed && now >= sb->deadline_ns)
            sb->killed = KILL_TIME;
    }
    if (sb->killed)
        return finish_kill(sb, status, base, errfunc);
    /* A collection asked for with no instruction after it, or the
     * watchdog's hook installed as the call was ending. */
    sb->gc_wanted = 0;
    set_hook(sb, HOOK_OFF);
    return status;
}

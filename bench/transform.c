/* The per-record cost of running a transform, without Kafka or ZooKeeper.
 *
 * Four mappings: a trivial one, one that decodes a ~70-byte JSON value,
 * a Lua-heavy one that shows what the time limit costs when the script
 * itself does most of the work, and "devices": bench/devices.lua on
 * 200-byte values shaped as bench/run.sh's (json.decode + json.encode).
 * Each runs:
 *
 *   - through the sandbox API directly (a C function that builds the record
 *     table, calls the transform and reads its results, run by
 *     zf_sandbox_pcall), under several limit settings and against plain
 *     LuaJIT with the JIT on;
 *   - through zf_script_new + zf_script_transform, the real per-record
 *     path (record table, call, op conversion and validation), with the
 *     default limits (100 ms, 64 MB) and with none.
 *
 * Usage: bench_transform [-n RECORDS] [-r REPEATS] [-m MAPPING]
 * Each figure is the best of REPEATS runs (default 3) of RECORDS records
 * (default 1,000,000; the Lua-heavy mapping runs a fifth of them), timed
 * in CPU time of the one thread. On a shared machine the figures move by
 * 10-20% from run to run; for exact comparisons count instructions, one
 * profile per setup:
 *   valgrind --tool=callgrind --dump-after=run_api --dump-after=run_script \
 *       build/bench_transform -n 100000 -r 1 -m trivial
 * (callgrind.out.PID.1 to .7 follow the order of the printed rows). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zkflow/json.h"
#include "zkflow/op.h"
#include "zkflow/sandbox.h"
#include "zkflow/script.h"

typedef struct mapping {
    const char *name;
    const char *src;
    int heavy;   /* runs RECORDS / 5 */
    double goal; /* records/s on one core through zf_script_transform */
} mapping_t;

static const mapping_t mappings[] = {
    {"trivial",
     "return function(r) return '/devices/' .. r.key, r.value, 'set' end\n",
     0, 1000000},
    {"json",
     "local json = require('json')\n"
     "return function(r)\n"
     "  local ev = json.decode(r.value)\n"
     "  return '/devices/' .. ev.site .. '/' .. ev.id, r.value\n"
     "end\n",
     0, 500000},
    {"lua-heavy",
     "return function(r)\n"
     "  local h = 0\n"
     "  for i = 1, 200 do h = (h * 31 + i) % 1000003 end\n"
     "  return '/h/' .. h, r.value\n"
     "end\n",
     1, 0},
    /* bench/devices.lua on values shaped as bench/run.sh makes them. */
    {"devices",
     "local json = require('json')\n"
     "return function(rec)\n"
     "  local ev = json.decode(rec.value)\n"
     "  return '/bench/devices/' .. ev.id,\n"
     "         json.encode({ status = ev.status, site = ev.site, seq = ev.seq,"
     " fw = ev.fw })\n"
     "end\n",
     0, 0},
};
#define NMAPPINGS (sizeof mappings / sizeof mappings[0])

/* 1000 distinct records, reused round robin; dev_recs have the 200-byte
 * values of bench/run.sh, for the "devices" mapping. */
#define NRECS 1000
static zf_record_t recs[NRECS], dev_recs[NRECS];
static char keys[NRECS][16];
static char values[NRECS][128];
static char dev_values[NRECS][256];

static const zf_record_t *records_for(const mapping_t *m) {
    return strcmp(m->name, "devices") == 0 ? dev_recs : recs;
}

static void make_records(void) {
    static const char *const sites[] = {"berlin", "lisbon", "oslo", "rome"};
    for (int i = 0; i < NRECS; i++) {
        snprintf(keys[i], sizeof keys[i], "d-%d", i);
        snprintf(values[i], sizeof values[i],
                 "{\"id\":\"d-%d\",\"status\":\"%s\",\"site\":\"%s\","
                 "\"at\":1795820543500}",
                 i, i % 3 ? "online" : "offline", sites[i % 4]);
        recs[i] = (zf_record_t){
            .topic = "devices",
            .partition = i % 6,
            .timestamp = 1795820543500,
            .key = keys[i],
            .key_len = strlen(keys[i]),
            .value = values[i],
            .value_len = strlen(values[i]),
        };
        /* As bench/run.sh's generate(), padded to 200 bytes. */
        int n = snprintf(dev_values[i], sizeof dev_values[i],
                         "{\"id\":\"dev-%d\",\"seq\":%d,\"ts\":%.0f,"
                         "\"status\":\"%s\",\"site\":\"site-%d\","
                         "\"fw\":\"1.%d.%d\",\"temp\":%.1f,\"battery\":%d,"
                         "\"note\":\"",
                         i, i, 1795820543500.0 + i, i % 10 ? "online" : "offline",
                         i % 37, i % 4, i % 10, 15 + (i % 200) / 10.0,
                         100 - i % 100);
        snprintf(dev_values[i] + n, sizeof dev_values[i] - (size_t)n,
                 "%.*s\"}", 200 - 2 - n,
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        dev_recs[i] = recs[i];
        dev_recs[i].key = keys[i];
        dev_recs[i].value = dev_values[i];
        dev_recs[i].value_len = strlen(dev_values[i]);
    }
}

/* CPU time of this thread: the machine may be shared, and the figure
 * wanted is what one core does. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why) {
    fprintf(stderr, "bench_transform: %s: %s\n", what, why);
    exit(1);
}

/* ---- the sandbox API directly ------------------------------------------ */

typedef struct call {
    int fn_ref;
    const zf_record_t *rec;
    int64_t offset;
    size_t bytes; /* a sink, so the results are really read */
} call_t;

/* Per record, inside the protected call: the record table {topic=,
 * partition=, offset=, key=, value=}, the transform, its three results
 * read as script.c reads them. [-1, +0] */
static int call_transform(lua_State *L) {
    call_t *c = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn_ref);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, c->rec->topic);
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, c->rec->partition);
    lua_setfield(L, -2, "partition");
    lua_pushnumber(L, (lua_Number)c->offset);
    lua_setfield(L, -2, "offset");
    lua_pushlstring(L, c->rec->key, c->rec->key_len);
    lua_setfield(L, -2, "key");
    lua_pushlstring(L, c->rec->value, c->rec->value_len);
    lua_setfield(L, -2, "value");
    lua_call(L, 1, 3);
    size_t plen = 0, dlen = 0;
    if (lua_type(L, -3) != LUA_TSTRING)
        return luaL_error(L, "no path");
    lua_tolstring(L, -3, &plen);
    if (lua_type(L, -2) == LUA_TSTRING)
        lua_tolstring(L, -2, &dlen);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "bad op");
    c->bytes += plen + dlen;
    return 0;
}

typedef struct setup {
    const char *label;
    int plain;               /* luaL_newstate + luaL_openlibs, JIT on */
    zf_sandbox_limits_t lim; /* otherwise a sandbox with these */
} setup_t;

static const setup_t setups[] = {
    {"sandbox, 100 ms + 64 MB", 0, {100, 64u << 20}},
    {"sandbox, 100 ms only", 0, {100, 0}},
    {"sandbox, 64 MB only", 0, {0, 64u << 20}},
    {"sandbox, no limits", 0, {0, 0}},
    {"plain LuaJIT, JIT on", 1, {0, 0}},
};
#define NSETUPS (sizeof setups / sizeof setups[0])

/* Seconds for n records of mapping m under setup su. */
/* Not inlined: callgrind's --dump-after=run_api gives one profile per
 * setup. */
__attribute__((noinline)) static double run_api(const setup_t *su,
                                                const mapping_t *m, long n) {
    char err[512];
    zf_sandbox_t *sb = NULL;
    lua_State *L;
    if (su->plain) {
        if (!(L = luaL_newstate()))
            die(su->label, "cannot create a state");
        luaL_openlibs(L);
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "preload");
        lua_pushcfunction(L, zf_json_open);
        lua_setfield(L, -2, "json");
        lua_pop(L, 2);
    } else {
        if (!(sb = zf_sandbox_new("bench", &su->lim, err, sizeof err)))
            die(su->label, err);
        L = zf_sandbox_lua(sb);
    }
    int rc = sb ? zf_sandbox_load(sb, m->src, strlen(m->src), "=bench")
                : luaL_loadbuffer(L, m->src, strlen(m->src), "=bench");
    if (rc != 0 || (sb ? zf_sandbox_pcall(sb, 0, 1, 0)
                       : lua_pcall(L, 0, 1, 0)) != 0)
        die(m->name, lua_tostring(L, -1));
    call_t c = {.fn_ref = luaL_ref(L, LUA_REGISTRYINDEX)};
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        c.rec = &records_for(m)[i % NRECS];
        c.offset = i;
        lua_pushcfunction(L, call_transform);
        lua_pushlightuserdata(L, &c);
        rc = sb ? zf_sandbox_pcall(sb, 1, 0, 0) : lua_pcall(L, 1, 0, 0);
        if (rc != 0)
            die(su->label, lua_tostring(L, -1));
    }
    double t = now_s() - t0;
    if (sb)
        zf_sandbox_destroy(sb);
    else
        lua_close(L);
    return t;
}

/* ---- zf_script_transform ----------------------------------------------- */

__attribute__((noinline)) static double
run_script(const zf_script_opts_t *opts, const mapping_t *m, long n) {
    char path[] = "/tmp/zkflow-bench-XXXXXX.lua";
    int fd = mkstemps(path, 4);
    if (fd < 0 || write(fd, m->src, strlen(m->src)) < 0)
        die(path, "cannot write the script");
    close(fd);
    char err[1024];
    zf_script_t *s = zf_script_new("bench", path, opts, err, sizeof err);
    unlink(path);
    if (!s)
        die(m->name, err);
    zf_oplist_t out = {0};
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        zf_record_t rec = records_for(m)[i % NRECS];
        rec.offset = i;
        if (zf_script_transform(s, &rec, &out, err, sizeof err) != ZF_OK) {
            fprintf(stderr, "record %ld: ", i);
            die(m->name, err);
        }
        zf_oplist_clear(&out);
    }
    double t = now_s() - t0;
    zf_oplist_free(&out);
    zf_script_destroy(s);
    return t;
}

/* ---- report ------------------------------------------------------------- */

static void print_row(const char *label, long n, double t, double base) {
    printf("  %-34s %10.0f rec/s %8.1f ns/rec", label, (double)n / t,
           t / (double)n * 1e9);
    if (base > 0)
        printf("   %+6.1f%% vs. no limits", (t / base - 1) * 100);
    printf("\n");
}

int main(int argc, char **argv) {
    long records = 1000000;
    int repeats = 3, opt;
    const char *only = NULL;
    while ((opt = getopt(argc, argv, "n:r:m:")) != -1) {
        if (opt == 'n')
            records = atol(optarg);
        else if (opt == 'r')
            repeats = atoi(optarg);
        else if (opt == 'm')
            only = optarg;
        else {
            fprintf(stderr,
                    "usage: %s [-n RECORDS] [-r REPEATS] [-m trivial|json|"
                    "lua-heavy|devices]\n",
                    argv[0]);
            return 2;
        }
    }
    if (records <= 0 || repeats <= 0)
        die("usage", "RECORDS and REPEATS must be positive");
    make_records();

    zf_script_opts_t unlimited = zf_script_opts_default;
    unlimited.timeout_ms = 0;
    unlimited.memory_mb = 0;
    struct {
        const char *label;
        const zf_script_opts_t *opts;
    } script_setups[] = {
        {"zf_script_transform, 100 ms + 64 MB", &zf_script_opts_default},
        {"zf_script_transform, no limits", &unlimited},
    };

    for (size_t mi = 0; mi < NMAPPINGS; mi++) {
        const mapping_t *m = &mappings[mi];
        if (only && strcmp(only, m->name) != 0)
            continue;
        long n = m->heavy ? records / 5 : records;
        if (n <= 0)
            n = 1;
        printf("%s (%ld records, best of %d)\n", m->name, n, repeats);
        /* Repeats go round the setups, so that a change in the machine's
         * load does not fall on one setup only. */
        double best[NSETUPS], sbest[2];
        for (size_t si = 0; si < NSETUPS; si++)
            best[si] = 1e300;
        sbest[0] = sbest[1] = 1e300;
        for (int r = 0; r < repeats; r++) {
            for (size_t si = 0; si < NSETUPS; si++) {
                double t = run_api(&setups[si], m, n);
                if (t < best[si])
                    best[si] = t;
            }
            for (size_t si = 0; si < 2; si++) {
                double t = run_script(script_setups[si].opts, m, n);
                if (t < sbest[si])
                    sbest[si] = t;
            }
        }
        double nolimits = best[3]; /* "sandbox, no limits" */
        for (size_t si = 0; si < NSETUPS; si++)
            print_row(setups[si].label, n, best[si], si == 3 ? 0 : nolimits);
        print_row(script_setups[0].label, n, sbest[0], sbest[1]);
        print_row(script_setups[1].label, n, sbest[1], 0);
        if (m->goal > 0) {
            double rate = (double)n / sbest[0];
            printf("  goal for zf_script_transform with limits: >= %.0f "
                   "rec/s: %s\n",
                   m->goal, rate >= m->goal ? "met" : "NOT met");
        }
        fflush(stdout);
    }
    return 0;
}

/* stoplib: zkflow's own versions of the LuaJIT library functions that can
 * run for long inside one call, written so that the sandbox's time limit
 * can stop them midway (sandbox.h, zf_sandbox_check_time).
 *
 * Replaced (LuaJIT 2.1's behaviour kept: the same results, the same
 * errors, the same order of evaluation; tests/test_stoplib.c compares them
 * with LuaJIT's on many inputs):
 * - string.find, string.match, string.gmatch, string.gsub: Lua 5.1
 *   patterns, whose backtracking can take exponential time
 *   (`string.find(string.rep("a", 50), ".-.-.-.-.-.-b")`); string.find's
 *   plain search, quadratic at worst;
 * - string.rep: one pass over its result, up to the memory limit;
 * - table.concat, table.sort (n log n comparisons, quadratic at worst),
 *   table.insert (a loop of up to 2^31 moves for a position far below 1).
 * Each checks the time every few tens of microseconds of work. In a state
 * that is not a sandbox's, or has no time limit, the check does nothing
 * and they behave as LuaJIT's. */
#ifndef ZKFLOW_STOPLIB_H
#define ZKFLOW_STOPLIB_H

#include <lua.h>

/* Replace those functions in the tables at globals "string" and "table"
 * (which the string metatable's __index shares) of L. They keep nothing
 * of L's; a script that changes the tables changes what it gets, as with
 * LuaJIT's. Raises on allocation failure. [-0, +0] */
void zf_stoplib_open(lua_State *L);

#endif

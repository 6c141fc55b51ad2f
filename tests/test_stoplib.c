/* stoplib: zkflow's string.find, match, gmatch, gsub, rep and
 * table.concat, insert, sort against LuaJIT's own.
 *
 * The same Lua program runs in two plain states, one with LuaJIT's
 * functions and one with stoplib's: it calls them on random patterns,
 * subjects, replacements, tables and arguments (a seeded generator, so
 * both states see the same calls) and writes down every outcome, results
 * and error messages alike. The two transcripts must be identical. The
 * program itself only uses LuaJIT's functions (saved before stoplib
 * replaces them), so that what it writes down does not depend on what is
 * tested. How the time limit stops these functions is in
 * tests/test_sandbox.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <valgrind/valgrind.h>

#include "zkflow/stoplib.h"

/* The program. Its argument: LuaJIT's own functions it may use, and the
 * number of rounds. Returns the transcript, one outcome per line. */
static const char harness[] =
    "local orig, rounds = ...\n"
    "local fmt, concat, random = orig.format, orig.concat, orig.random\n"
    "local gsub = orig.gsub\n"
    "local char, rep, select, type, pcall, tostring =\n"
    "  orig.char, orig.rep, select, type, pcall, tostring\n"
    "local out, nout = {}, 0\n"
    "local function emit(s) nout = nout + 1 out[nout] = s end\n"
    "local function show(ok, ...)\n"
    "  local parts = { ok and 'ok' or 'err' }\n"
    "  for i = 1, select('#', ...) do\n"
    "    local v = select(i, ...)\n"
    "    local t = type(v)\n"
    "    parts[#parts + 1] =\n"
    "      t == 'string' and gsub(fmt('%q', v), '\\\n', 'n')\n"
    "      or t == 'number' and fmt('%.17g', v) or t\n"
    "  end\n"
    "  return concat(parts, ' ')\n"
    "end\n"
    "local function pick(t) return t[random(#t)] end\n"
    "local function rstr(maxlen, set)\n"
    "  local t = {}\n"
    "  for i = 1, random(0, maxlen) do t[i] = pick(set) end\n"
    "  return concat(t)\n"
    "end\n"
    /* Subjects: the characters patterns treat specially, and a few more. */
    "local letters = { 'a', 'b', 'a', 'b', 'c', '(', ')', '[', ']', '%',\n"
    "  '-', '.', ' ', '1', 'A', '\\0', '\\n', 'x', '_', '\\200' }\n"
    "local tokens = { 'a', 'b', 'c', 'x', ' ', '\\0', '.', '%a', '%d', '%s',\n"
    "  '%w', '%p', '%l', '%u', '%x', '%c', '%g', '%z', '%A', '%D', '%S',\n"
    "  '%W', '%Z', '%.', '%%', '%(', '%-', '[ab]', '[^a]', '[a-c]', '[%d_]',\n"
    "  '[]]', '[^]]', '[a-]', '[%a-z]', '[%]', '*', '+', '-', '?', '^', '$',\n"
    "  '(', ')', '()', '%1', '%2', '%3', '%0', '%9', '%b()', '%bab', '%b',\n"
    "  '%ba', '%f[%w]', '%f[a]', '%f[^a]', '%fa', '%f', '%', '[', '[^',\n"
    "  'a*', 'b+', '.-', 'a?', '(a)', '(.-)', '(%w+)' }\n"
    "local function rpat(ntok)\n"
    "  local t = {}\n"
    "  for i = 1, random(0, ntok) do t[i] = pick(tokens) end\n"
    "  return (random(4) == 1 and '^' or '') .. concat(t)\n"
    "end\n"
    "local inits = { 'nil', 1, 2, 0, -1, -3, 5, 11, 20, -20, 1e10, -1e10,\n"
    "  2^31, 2^32 + 1, '2', 2.7, -2.7, 0/0, math.huge, -math.huge, 'x' }\n"
    "local function arg(t)\n"
    "  local v = pick(t)\n"
    "  if v ~= 'nil' then return v end\n"
    "end\n"
    "local mt = {\n"
    "  __index = function(t, k) return k == 'c' and 'C' or nil end }\n"
    "local repls = { 'x', '%0', '[%1]', '%2%1', '%%', 'a%', '%a', '', '%3',\n"
    "  7, 1.5, { a = 'T', b = false, ab = 1, [''] = 'E', ['1'] = {} },\n"
    "  setmetatable({}, mt),\n"
    "  function(a, b)\n"
    "    if a == 'a' then return nil elseif a == 'b' then return false\n"
    "    elseif b then return tostring(a) .. '+' .. tostring(b)\n"
    "    elseif a == '' then return {} else return 42 end\n"
    "  end,\n"
    "  function(...) return select('#', ...) end,\n"
    "  true }\n"
    "local maxns = { 'nil', 0, 1, 2, -1, 1e10, 2^32, '2', 2.5, 'x' }\n"
    "local function call_patterns(s, p, init)\n"
    "  emit('> ' .. show(true, s, p, init))\n"
    "  emit(show(pcall(string.find, s, p, init)))\n"
    "  emit(show(pcall(string.find, s, p, init, random(2) == 1)))\n"
    "  emit(show(pcall(string.match, s, p, init)))\n"
    /* Raised from a Lua function: the message names its line. */
    "  emit(show(pcall(function() return string.match(s, p) end)))\n"
    "  emit(show(pcall(function()\n"
    "    return (s):find(p, 1, random(3) == 1)\n"
    "  end)))\n"
    "  local ok, it = pcall(string.gmatch, s, p)\n"
    "  if not ok then emit(show(ok, it)) else\n"
    "    for k = 1, 25 do\n"
    "      local r = { pcall(it) }\n"
    "      emit(show(orig.unpack(r, 1, orig.maxn(r))))\n"
    "      if not r[1] or r[2] == nil then break end\n"
    "    end\n"
    "  end\n"
    "  emit(show(pcall(string.gsub, s, p, pick(repls), arg(maxns))))\n"
    "end\n"
    "for round = 1, rounds do\n"
    "  local s, p = rstr(10, letters), rpat(6)\n"
    "  call_patterns(s, p, arg(inits))\n"
    /* Longer subjects, shorter patterns. */
    "  call_patterns(rstr(60, letters), rpat(3), arg(inits))\n"
    /* Arguments of other types. */
    "  if random(20) == 1 then\n"
    "    local odd = { 'nil', 12.5, 123, {}, true, 'ab' }\n"
    "    call_patterns(arg(odd), arg(odd), arg(odd))\n"
    "  end\n"
    "end\n"
    /* Every byte against every class. */
    "for c = 0, 255 do\n"
    "  local line = {}\n"
    "  for _, cl in ipairs({ 'a', 'c', 'd', 'g', 'l', 'p', 's', 'u', 'w',\n"
    "      'x', 'z', 'A', 'C', 'D', 'G', 'L', 'P', 'S', 'U', 'W', 'X', 'Z',\n"
    "      '.' }) do\n"
    "    for _, p in ipairs({ '%' .. cl, '[%' .. cl .. ']',\n"
    "        '[^%' .. cl .. ']' }) do\n"
    "      line[#line + 1] = show(pcall(string.find, char(c), p))\n"
    "    end\n"
    "  end\n"
    "  line[#line + 1] = show(pcall(string.find, char(c), '[+--]'))\n"
    "  line[#line + 1] =\n"
    "    show(pcall(string.match, 'x' .. char(c) .. 'y', '%f[%w]%w+'))\n"
    "  emit(concat(line, ';'))\n"
    "end\n"
    /* Patterns nested past the limit, and many captures. */
    "for n = 150, 260, 10 do\n"
    "  emit(show(pcall(string.find, rep('a', 300), rep('a?', n))))\n"
    "  emit(show(pcall(string.find, rep('a', n), rep('(a)', n))))\n"
    "  emit(show(pcall(string.match, rep('a', 40), rep('(a)', n % 40))))\n"
    "end\n"
    /* string.rep. */
    "local reps = { -1, 0, 1, 2, 3, 5, 2.5, '3', 1e10, -1e10, 2^31 - 1, 'x',\n"
    "  'nil' }\n"
    "for round = 1, rounds do\n"
    "  local seps = { 'nil', '', ',', '--', 7 }\n"
    "  emit(show(pcall(string.rep, rstr(3, letters), arg(reps), arg(seps))))\n"
    "end\n"
    /* Tables. */
    "local nums = { 0, -0, 1, -1, 1.5, 1e15, 1e100, -1e-300, 2^53, 1/0, -1/0,\n"
    "  123456789012345, 0.1, 0/0, -(0/0), 99999999999999, -99999999999999,\n"
    "  1e14, 2^63, 5e-324, 1/3, -2^31, 1e14 - 0.5 }\n"
    "local function rvalue(holes)\n"
    "  local r = random(holes and 14 or 12)\n"
    "  if r <= 6 then return rstr(3, letters) elseif r <= 9 then\n"
    "    return pick(nums) elseif r == 10 then\n"
    "    return (random() - 0.5) * 10 ^ random(-20, 20)\n"
    "  elseif r == 11 then return true\n"
    "  elseif r == 12 then return {} else return nil end\n"
    "end\n"
    "local function rtable(maxn, holes)\n"
    "  local t = {}\n"
    "  for i = 1, random(0, maxn) do t[i] = rvalue(holes) end\n"
    "  return t\n"
    "end\n"
    "local function dump(t)\n"
    "  local parts = { '#' .. #t }\n"
    "  for k = -4, 14 do\n"
    "    local v = rawget(t, k)\n"
    "    if v ~= nil then parts[#parts + 1] = k .. '=' .. show(true, v) end\n"
    "  end\n"
    "  return concat(parts, ' ')\n"
    "end\n"
    "local idx = { 'nil', 1, 0, -1, 2, 3, 5, 9, 20, '2', 2.5, 1e10, -1e10,\n"
    "  'x' }\n"
    "for round = 1, rounds do\n"
    "  local t = rtable(9, false)\n"
    "  local seps = { 'nil', '', ',', 12, {} }\n"
    "  emit(show(pcall(table.concat, t, arg(seps), arg(idx), arg(idx))))\n"
    "  emit(show(pcall(table.concat, t, arg(seps))))\n"
    "  t = rtable(8, true)\n"
    "  local r = random(6)\n"
    "  local ok, e\n"
    "  local ins = { -3, -1, 0, 1, 2, 3, 5, 8, 12, '2', 2.5, 'x' }\n"
    "  if r == 1 then ok, e = pcall(table.insert, t)\n"
    "  elseif r == 2 then ok, e = pcall(table.insert, t, 'v')\n"
    "  elseif r == 3 then ok, e = pcall(table.insert, t, 1, 2, 3)\n"
    "  elseif r == 4 then ok, e = pcall(table.insert, 'notatable', 1)\n"
    "  else ok, e = pcall(table.insert, t, pick(ins), 'v') end\n"
    "  emit(show(ok, e) .. ' ' .. dump(t))\n"
    "end\n"
    "local cmps = {\n"
    "  'nil',\n"
    "  function(a, b) return a < b end,\n"
    "  function(a, b) return a > b end,\n"
    "  function(a, b) return random(2) == 1 end,\n"
    "  function(a, b) return true end,\n"
    "  function(a, b) return false end,\n"
    "  function(a, b)\n"
    "    local ta, tb = type(a), type(b)\n"
    "    if ta ~= tb then return ta < tb end\n"
    "    return (ta == 'string' or ta == 'number') and a < b\n"
    "  end,\n"
    "  function(a, b)\n"
    "    if random(50) == 1 then error('cmp') end\n"
    "    return a < b\n"
    "  end,\n"
    "  42 }\n"
    "for round = 1, rounds do\n"
    "  local t, n = {}, pick({ 0, 1, 2, 3, 4, 5, 8, 12, 30, 100, 300 })\n"
    "  local kind = random(5)\n"
    "  for i = 1, n do\n"
    "    if kind == 1 then t[i] = random(10)\n"
    "    elseif kind == 2 then t[i] = random()\n"
    "    elseif kind == 3 then t[i] = rstr(3, letters)\n"
    "    elseif kind == 4 then t[i] = n - i\n"
    "    else t[i] = rvalue(true) end\n"
    "  end\n"
    "  local ok, e = pcall(table.sort, t, arg(cmps))\n"
    "  local parts = { show(ok, e), '#' .. #t }\n"
    "  for i = 1, n do parts[#parts + 1] = show(true, t[i]) end\n"
    "  emit(concat(parts, ' '))\n"
    "end\n"
    "emit(show(pcall(table.sort, 'x')))\n"
    "return concat(out, '\\n')\n";

/* Run the program in a new state, with stoplib's functions or LuaJIT's,
 * seeded with `seed`; returns its transcript (malloc'd). */
static char *transcript(int with_stoplib, int seed, int rounds) {
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    /* As in a sandbox with a time limit, where stoplib is used. (With the
     * JIT on, LuaJIT 2.1 here crashed in a compiled loop calling
     * string.rep with a count of 2^31 - 1.) */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    /* The program's own tools, from LuaJIT. */
    int rc = luaL_dostring(L, "orig = { format = string.format, concat = "
                              "table.concat, random = math.random, char = "
                              "string.char, rep = string.rep, unpack = "
                              "unpack, gsub = string.gsub, maxn = "
                              "table.maxn }");
    assert_int_equal(rc, 0);
    if (with_stoplib)
        zf_stoplib_open(L);
    assert_int_equal(luaL_loadbuffer(L, harness, sizeof harness - 1, "=h"), 0);
    lua_getglobal(L, "orig");
    lua_pushinteger(L, rounds);
    lua_getglobal(L, "math");
    lua_getfield(L, -1, "randomseed");
    lua_pushinteger(L, seed);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    if (lua_pcall(L, 2, 1, 0) != 0)
        fail_msg("%s: %s", with_stoplib ? "stoplib" : "LuaJIT",
                 lua_tostring(L, -1));
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, s, len + 1);
    lua_close(L);
    return copy;
}

/* The first line where the two transcripts differ, as a failure. */
static void compare(const char *want, const char *got) {
    if (strcmp(want, got) == 0)
        return;
    size_t i = 0, line = 1;
    while (want[i] && want[i] == got[i]) {
        if (want[i] == '\n')
            line++;
        i++;
    }
    size_t from = i;
    while (from > 0 && want[from - 1] != '\n')
        from--;
    const char *we = strchr(want + from, '\n'), *ge = strchr(got + from, '\n');
    int wl = we ? (int)(we - want - from) : (int)strlen(want + from);
    int gl = ge ? (int)(ge - got - from) : (int)strlen(got + from);
    /* The last input line ("> ...") before it. */
    size_t in = from;
    while (in > 0 && !(want[in] == '>' && want[in - 1] == '\n'))
        in--;
    const char *ie = strchr(want + in, '\n');
    fail_msg("line %zu differs:\n  input:   %.*s\n  LuaJIT:  %.*s\n  stoplib: "
             "%.*s",
             line, ie ? (int)(ie - want - in) : 0, want + in,
             wl > 600 ? 600 : wl, want + from, gl > 600 ? 600 : gl,
             got + from);
}

static void test_same_as_luajit(void **state) {
    (void)state;
    /* Under valgrind (~50 times slower), a sixth of them. */
    int seeds = RUNNING_ON_VALGRIND ? 2 : 12;
    for (int seed = 1; seed <= seeds; seed++) {
        char *want = transcript(0, seed, 1500);
        char *got = transcript(1, seed, 1500);
        compare(want, got);
        free(want);
        free(got);
    }
}

/* The transcript covers what it should: results and errors of each kind. */
static void test_transcript_covers_errors(void **state) {
    (void)state;
    char *t = transcript(1, 1, 1500);
    static const char *const wanted[] = {
        "malformed pattern (ends with '%')",
        "malformed pattern (missing ']')",
        "missing '[' after '%f' in pattern",
        "unbalanced pattern",
        "invalid capture index",
        "invalid pattern capture",
        "unfinished capture",
        "pattern too complex",
        "too many captures",
        "invalid replacement value (a table)",
        "string/function/table expected",
        "h:", /* a message with the caller's line */
        "invalid value (table) at index",
        "invalid order function for sorting",
        "wrong number of arguments to 'insert'",
        "attempt to compare",
        "bad argument #3 to '?' (number expected, got string)",
        "not enough memory",
        "ok 1 3",
        "ok \"",
    };
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++)
        if (!strstr(t, wanted[i]))
            fail_msg("the transcript never has: %s", wanted[i]);
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_luajit),
        cmocka_unit_test(test_transcript_covers_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

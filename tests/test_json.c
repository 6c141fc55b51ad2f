/* json: zkflow's module against lua-cjson 2.1.0 (linked into this test
 * only), on hand-written edge cases and generated values: the same encode
 * output byte for byte, the same decoded values, the same error messages.
 * Then the memory limit: encode and decode fail on it without leaking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua5.1/lua-cjson.h>
#include <lualib.h>
#include <string.h>

#include "zkflow/json.h"
#include "zkflow/sandbox.h"

/* Runs with cj (lua-cjson) and zj (zkflow's json) as arguments. Returns the
 * number of comparisons, or raises with the first differences. */
static const char differential_src[] =
    "local cj, zj = ...\n"
    "local fails, count = {}, 0\n"
    "local function q(s) return string.format('%q', tostring(s)):sub(1, 300) "
    "end\n"
    "local function fail(msg)\n"
    "  fails[#fails + 1] = msg\n"
    "  if #fails >= 10 then error(table.concat(fails, '\\n')) end\n"
    "end\n"
    /* Same value: numbers bit for bit (NaN is NaN, -0 is -0), tables
     * deeply, no metatables. */
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if a ~= a then return b ~= b end\n"
    "    return a == b and (a ~= 0 or 1 / a == 1 / b)\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if getmetatable(a) or getmetatable(b) then return false end\n"
    "  for k, v in pairs(a) do\n"
    "    if not same(v, rawget(b, k)) then return false end\n"
    "  end\n"
    "  for k in pairs(b) do\n"
    "    if rawget(a, k) == nil then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "local function check_decode(s, ...)\n"
    "  count = count + 1\n"
    "  local ok1, v1 = pcall(cj.decode, s, ...)\n"
    "  local ok2, v2 = pcall(zj.decode, s, ...)\n"
    "  if ok1 ~= ok2 or (not ok1 and v1 ~= v2) then\n"
    "    return fail('decode ' .. q(s) .. ': lua-cjson ' .. q(v1) ..\n"
    "                ', zkflow ' .. q(v2))\n"
    "  end\n"
    "  if ok1 and not same(v1, v2) then\n"
    "    return fail('decode ' .. q(s) .. ': other value')\n"
    "  end\n"
    "end\n"
    "local function check_encode(v, ...)\n"
    "  count = count + 1\n"
    "  local ok1, s1 = pcall(cj.encode, v, ...)\n"
    "  local ok2, s2 = pcall(zj.encode, v, ...)\n"
    "  if ok1 ~= ok2 or s1 ~= s2 then\n"
    "    return fail('encode: lua-cjson ' .. q(s1) .. ', zkflow ' .. q(s2))\n"
    "  end\n"
    "  if ok1 then check_decode(s1) end\n"
    "end\n"
    /* Hand-written texts. */
    "local texts = {\n"
    "  '', ' ', '\\t\\r\\n', 'null', 'true', 'false', '0', '-0', '1', '-1',\n"
    "  ' 1 ', '1 2', '[]', '{}', '[ ]', '{ }', '[1,2,3]', '[1,]', '[,1]',\n"
    "  '[1 2]', '{\"a\":1,}', '{\"a\" 1}', '{\"a\":}', '{a:1}', '{1:2}',\n"
    "  '{\"a\":1 \"b\":2}', '{\"a\":1,\"a\":2}', '[[[]]]', '[{}]', '{\"\":[]}',\n"
    "  '\"\"', '\"abc\"', '\"abc', '\"a\\\\\"', '\"\\\\\"\"', '\"\\\\/\"',\n"
    "  '\"\\\\b\\\\f\\\\n\\\\r\\\\t\"', '\"\\\\q\"', '\"\\\\u0041\"', "
    "'\"\\\\u00e9\"',\n"
    "  '\"\\\\u20AC\"', '\"\\\\u0000\"', '\"\\\\ud83d\\\\ude00\"', "
    "'\"\\\\ud83d\"',\n"
    "  '\"\\\\ude00\"', '\"\\\\ud83dx\"', '\"\\\\ud83d\\\\u0041\"', "
    "'\"\\\\u12\"',\n"
    "  '\"\\\\u12g4\"', '\"\\\\uD800\\\\uDC00\"', '\"\\\\uDBFF\\\\uDFFF\"',\n"
    "  '\"x\\\\u00e9y\\\\nz\"', '\"\\\\', '\"\\\\u', '\"\\\\u004',\n"
    "  '\"tab\\there\"', '\"\\1\\31\"', '\"\\255\\254\"',\n"
    "  '1.5', '-1.5', '0.1', '1e5', '1E5', '1e+5', '1e-5', '1.5e3', '01',\n"
    "  '00', '-01', '0x10', '0X1f', '-0x10', '0x', '1.', '.5', '-.5', '-',\n"
    "  '--1', '+1', '+', '1e', '1e+', 'inf', '-inf', 'Inf', 'INF', "
    "'Infinity',\n"
    "  '-Infinity', 'nan', 'NaN', '-nan', 'NAN', 'nan(123)', 'infinit',\n"
    "  'tru', 'truex', 'nul', 'nulll', 'fals', 'False', 'NULL', 'x', '@',\n"
    "  '1p5', '0x1p5', '123456789012345', '1234567890123456',\n"
    "  '12345678901234567890', '-123456789012345', '999999999999999',\n"
    "  '9007199254740993', '0.000000000000001', '1234567.89012345',\n"
    "  '1234567.890123456', '1.7976931348623157e308', '1e309', '-1e309',\n"
    "  '5e-324', '1e-400', '0.1e1', '100000000000000000000000',\n"
    "  '[1,\"a\",true,false,null,{\"x\":[]}]', '{\"a\":{\"b\":{\"c\":null}}}',\n"
    "  ']', '}', ',', ':', '[}', '{]', '{\"a\":1]', '[1}', '{\"a\"', '{\"a\":',\n"
    "  '[', '{', '[\"a\",', 'a\\0', '\\0a', '1\\0x', '[1]\\0junk', '\"a\\0b\"',\n"
    "  '\\0', '1\\0', ' \\0', '[1,\\0]', '{\"a\\0\":1}',\n"
    "  '\\239\\187\\191{}', '\\f1', '\\v1',\n"
    "}\n"
    "for _, s in ipairs(texts) do check_decode(s) end\n"
    "check_decode(12) check_decode(1.5) check_decode() check_decode(nil)\n"
    "check_decode('1', 2) check_decode({}) check_decode(true)\n"
    /* Nesting: 1000 levels decode and encode, 1001 do not. */
    "for _, n in ipairs({999, 1000, 1001, 1200}) do\n"
    "  check_decode(string.rep('[', n) .. string.rep(']', n))\n"
    "  check_decode(string.rep('{\"a\":', n) .. '1' .. string.rep('}', n))\n"
    "  check_decode(string.rep('[1,', n) .. string.rep(']', n))\n"
    "  local t = {} local c = t\n"
    "  for i = 2, n do c[1] = {} c = c[1] end\n"
    "  check_encode(t)\n"
    "  t = {} c = t\n"
    "  for i = 2, n do c.k = {x = i} c = c.k end\n"
    "  check_encode(t)\n"
    "end\n"
    /* Large containers: past the members kept on the stack. */
    "for _, n in ipairs({63, 64, 65, 128, 129, 1000, 20000}) do\n"
    "  local a, o = {}, {}\n"
    "  for i = 1, n do a[i] = i * 1.5 o['k' .. i] = {i, 'v' .. i} end\n"
    "  check_encode(a) check_encode(o)\n"
    "  local parts = {}\n"
    "  for i = 1, n do parts[i] = '\"d\":' .. i end\n"
    "  check_decode('{' .. table.concat(parts, ',') .. '}')\n"
    "end\n"
    /* Deep nesting with many members at each level. */
    "do\n"
    "  local s = ''\n"
    "  for i = 1, 200 do s = s .. '[' .. string.rep('1,', 60) end\n"
    "  check_decode(s .. string.rep(']', 200))\n"
    "  s = ''\n"
    "  for i = 1, 300 do\n"
    "    s = s .. '{'\n"
    "    for j = 1, 70 do s = s .. '\"k' .. j .. '\":' .. j .. ',' end\n"
    "    s = s .. '\"n\":'\n"
    "  end\n"
    "  check_decode(s .. '1' .. string.rep('}', 300))\n"
    "end\n"
    /* Encode: Lua values. */
    "local f = function() end\n"
    "local values = {\n"
    "  {}, {1, 2, 3}, {1, nil, 3}, {nil, nil, 3}, {[1] = 1, [10] = 10},\n"
    "  {[11] = 1}, {[1] = 1, [11] = 1}, {[1] = 1, [2] = 2, [12] = 3},\n"
    "  {[0] = 1}, {[-1] = 1}, {[1.5] = 1}, {[1] = 1, x = 2}, {x = 1},\n"
    "  {[1e10] = 1}, {[2^31] = 1}, {[2^31 - 1] = 1}, {[1] = 1, [2^40] = 2},\n"
    "  {['1'] = 1}, {[1] = 'a', ['2'] = 'b'}, {[true] = 1}, {[f] = 1},\n"
    "  {[{}] = 1}, {a = f}, {f}, f, coroutine.create(f), cj.null, {cj.null},\n"
    "  {a = cj.null}, 0/0, 1/0, -1/0, {0/0}, {[1/0] = 1}, {x = 1/0},\n"
    "  0, -0.0, 1, -1, 0.5, 1/3, -1/3, 1e14, 1e14 - 1, -1e14, -1e14 + 1,\n"
    "  1e15, 2^53, 2^63, -2^63, 1e300, 5e-324, 1e-5, 0.1, 123456.789,\n"
    "  99999999999999.5, 12345678901234.5, 100, 1e21, 3.14159265358979,\n"
    "  '', 'abc', '/', '\\0', '\\127', '\\128\\255', 'a\"b\\\\c/d',\n"
    "  'caf\\195\\169', true, false, {true, false}, {[1.0] = 'x'},\n"
    "  {[2] = 'two', [1] = 'one'}, {[1] = 1, [3] = 3, [5] = 5, [20] = 1},\n"
    "}\n"
    "for i = 1, 5000 do if i % 3 == 0 then values[#values + 1] = {[i] = i} "
    "end end\n"
    "local all = {} for c = 0, 255 do all[#all + 1] = string.char(c) end\n"
    "values[#values + 1] = table.concat(all)\n"
    "values[#values + 1] = {[table.concat(all)] = table.concat(all)}\n"
    "values[#values + 1] = string.rep('a\\n\\1/', 5000)\n"
    "for i = 1, #values do check_encode(values[i]) end\n"
    "check_encode() check_encode(nil) check_encode(1, 2)\n"
    "check_encode(setmetatable({}, {__index = function() return 1 end}))\n"
    "check_encode(setmetatable({1, 2}, {__len = function() return 5 end}))\n"
    /* Generated values: encoded, then the texts decoded, also with
     * whitespace added and with bytes changed, cut or dropped. */
    "math.randomseed(20261128)\n"
    "local R = math.random\n"
    "local strs = {'', 'id', 'status', 'a/b', 'tab\\tnl\\n', 'q\"b\\\\', "
    "'\\0z', '\\127', 'caf\\195\\169', '\\240\\159\\152\\128', "
    "'\\1\\2\\31', 'site-12', 'x'}\n"
    "local nums = {0, -0.0, 1, -1, 0.1, 1/3, 1e14, 1e14 - 1, -1e14 + 1, "
    "123456789012345, 2^53, 1e300, 5e-324, 1e-7, 3.14159, -2.5, 1e15, "
    "12345.678, 1795820543500, 15.3, 99}\n"
    "local function rstring()\n"
    "  if R() < 0.6 then return strs[R(#strs)] end\n"
    "  local t = {}\n"
    "  for i = 1, R(0, 12) do t[i] = string.char(R(0, 255)) end\n"
    "  return table.concat(t)\n"
    "end\n"
    "local function rnumber()\n"
    "  local r = R()\n"
    "  if r < 0.3 then return nums[R(#nums)] end\n"
    "  if r < 0.6 then return R(-1e6, 1e6) end\n"
    "  if r < 0.8 then return (R() - 0.5) * 10 ^ R(-20, 20) end\n"
    "  return R(-1e6, 1e6) / 10 ^ R(0, 4)\n"
    "end\n"
    "local function rvalue(depth)\n"
    "  local r = R(1, depth > 4 and 5 or 8)\n"
    "  if r <= 2 then return rstring()\n"
    "  elseif r == 3 then return rnumber()\n"
    "  elseif r == 4 then return R() < 0.5\n"
    "  elseif r == 5 then return R() < 0.5 and cj.null or rnumber()\n"
    "  elseif r <= 6 then\n"
    "    local t = {}\n"
    "    for i = 1, R(0, 8) do t[i] = rvalue(depth + 1) end\n"
    "    return t\n"
    "  end\n"
    "  local t = {}\n"
    "  for i = 1, R(0, 12) do t[rstring()] = rvalue(depth + 1) end\n"
    "  if R() < 0.1 then t[R(-3, 20) + 0.0] = rvalue(depth + 1) end\n"
    "  return t\n"
    "end\n"
    "local ws = {' ', '\\t', '\\n', '\\r', '  '}\n"
    "for i = 1, 400 do\n"
    "  local v = rvalue(0)\n"
    "  check_encode(v)\n"
    "  local ok, s = pcall(cj.encode, v)\n"
    "  if ok then\n"
    "    check_decode((s:gsub('[,:%[%]{}]', function(c)\n"
    "      return R() < 0.3 and c .. ws[R(#ws)] or c end)))\n"
    "    for j = 1, 3 do\n"
    "      local p = R(1, #s + 1)\n"
    "      local c = string.char(R(0, 255))\n"
    "      local cuts = {s:sub(1, p - 1) .. c .. s:sub(p + 1),\n"
    "                    s:sub(1, p - 1) .. s:sub(p + 1), s:sub(1, p - 1),\n"
    "                    s:sub(1, p) .. '\\\\' .. s:sub(p + 1)}\n"
    "      check_decode(cuts[R(#cuts)])\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* Generated numbers: the fast paths against strtod. */
    "local function digits(n)\n"
    "  local t = {} for i = 1, n do t[i] = R(0, 9) end return table.concat(t)\n"
    "end\n"
    "for i = 1, 2000 do\n"
    "  local s = (R() < 0.3 and '-' or '') .. digits(R(1, 20))\n"
    "  if R() < 0.5 then s = s .. '.' .. digits(R(0, 20)) end\n"
    "  if R() < 0.2 then s = s .. ({'e', 'E'})[R(2)] .. ({'', '+', '-'})[R(3)] "
    ".. digits(R(0, 3)) end\n"
    "  check_decode(s)\n"
    "  check_decode('[' .. s .. ']')\n"
    "end\n"
    "if #fails > 0 then error(table.concat(fails, '\\n')) end\n"
    "return count\n";

static void test_same_as_lua_cjson(void **state) {
    (void)state;
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    assert_int_equal(luaL_loadbuffer(L, differential_src,
                                     sizeof differential_src - 1, "=diff"),
                     0);
    lua_pushcfunction(L, luaopen_cjson);
    lua_call(L, 0, 1);
    lua_pushcfunction(L, zf_json_open);
    lua_call(L, 0, 1);
    if (lua_pcall(L, 2, 1, 0) != 0)
        fail_msg("%s", lua_tostring(L, -1));
    /* Every check ran. */
    assert_true(lua_tonumber(L, -1) > 5000);
    lua_close(L);
}

/* Not compared: the order pairs() (hence json.encode) visits a decoded
 * object's keys. Under this LuaJIT it differs between states and processes
 * for the same keys even with lua-cjson (string hashing depends on more
 * than the bytes), so no script can rely on it. */

/* In a sandbox: encode and decode that pass the memory limit fail with the
 * limit's error (no malloc'ed buffer to leak: valgrind checks), and the
 * state works afterwards. */
static void test_memory_limit(void **state) {
    (void)state;
    zf_sandbox_limits_t lim = {0, 16u << 20};
    char err[256];
    zf_sandbox_t *sb = zf_sandbox_new("t", &lim, err, sizeof err);
    if (!sb)
        fail_msg("zf_sandbox_new: %s", err);
    lua_State *L = zf_sandbox_lua(sb);
    static const char *const bombs[] = {
        /* Output of 6 bytes per input byte: the buffer grows past 16 MB. */
        "local json = require('json')\n"
        "return json.encode({string.rep('\\1', 3e6)})",
        "local json = require('json')\n"
        "local t = {} for i = 1, 2e5 do t[i] = {i, 'abcdefgh'} end\n"
        "return json.encode({t, t, t})",
        /* The unescaped copy of an 8 MB string with escapes. */
        "local json = require('json')\n"
        "return json.decode('\"' .. string.rep('\\\\n', 4e6) .. '\"')",
        "local json = require('json')\n"
        "return json.decode('[' .. string.rep('{\"a\":[1,2]},', 3e5) .. "
        "'1]')",
    };
    for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) {
        lua_settop(L, 0);
        assert_int_equal(
            zf_sandbox_load(sb, bombs[i], strlen(bombs[i]), "=t"), 0);
        int rc = zf_sandbox_pcall(sb, 0, 1, 0);
        if (rc != LUA_ERRMEM)
            fail_msg("bomb %zu: %d %s", i, rc, lua_tostring(L, -1));
        assert_string_equal(lua_tostring(L, -1),
                            "memory limit of 16 MB exceeded");
    }
    /* Still works, and the same texts well under the limit. */
    static const char ok[] =
        "local json = require('json')\n"
        "local s = json.encode({string.rep('\\1', 1e5), x = json.null})\n"
        "local v = json.decode(s)\n"
        "assert(#v['1'] == 1e5 and v.x == json.null)\n"
        "return #s";
    lua_settop(L, 0);
    assert_int_equal(zf_sandbox_load(sb, ok, strlen(ok), "=t"), 0);
    if (zf_sandbox_pcall(sb, 0, 1, 0) != 0)
        fail_msg("%s", lua_tostring(L, -1));
    assert_int_equal(lua_tointeger(L, -1), 600000 + 17);
    zf_sandbox_destroy(sb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_lua_cjson),
        cmocka_unit_test(test_memory_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

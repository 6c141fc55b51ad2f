/* json: the JSON module scripts get from require("json") (alias "cjson").
 *
 * Behaves as lua-cjson 2.1.0 with its default settings does, for every
 * input and value a script can give it, so mappings written against
 * lua-cjson keep their output byte for byte and their error messages word
 * for word; it is cheaper per call (objects and arrays are built with
 * their final size, strings without escapes are pushed straight from the
 * input, plain integers are parsed and printed without strtod/snprintf).
 *
 * Module fields:
 * - json.decode(s): the Lua value of the JSON text s (a string, or a number
 *   Lua turns into one). Objects and arrays become tables (no metatable),
 *   null becomes json.null, numbers become Lua numbers. Raises
 *   "Expected <what> but found <token> at character <n>" on malformed text
 *   (also on anything after the value), "Found too many nested data
 *   structures (1001) at character <n>" past 1000 levels, "JSON parser does
 *   not support UTF-16 or UTF-32" when one of the first two bytes is 0.
 *   As lua-cjson: the text ends at its first NUL byte; numbers are what
 *   strtod reads (so also hex, inf, nan, a leading + or zeros).
 * - json.encode(v): the JSON text of v, without spaces. A table whose keys
 *   are all integers >= 1 is an array (holes become null) unless it has
 *   more than 10 slots and fewer than half of them used, which raises
 *   "Cannot serialise table: excessively sparse array"; any other table is
 *   an object (numeric keys become strings; other key types raise), an
 *   empty table is {}. Numbers print as "%.14g"; NaN and infinities raise.
 *   '/' is written as \/, control characters and DEL as \uXXXX (except
 *   \b \t \n \f \r), other bytes as they are. Functions, threads and
 *   userdata other than json.null raise "Cannot serialise <type>: type not
 *   supported"; more than 1000 nested tables raise.
 * - json.null: the light userdata NULL, as lua-cjson's cjson.null.
 * lua-cjson's configuration functions (encode_sparse_array,
 * decode_max_depth, ...) and json.new are not provided.
 *
 * Memory: everything either function allocates is Lua memory (strings,
 * tables, userdata buffers), so it counts against a sandbox's limit and is
 * collected when an error unwinds the call; nothing is malloc'ed. */
#ifndef ZKFLOW_JSON_H
#define ZKFLOW_JSON_H

#include <lua.h>

/* Push a new table {decode=, encode=, null=}. Usable as a lua_CFunction
 * (luaopen_* style): returns 1. Raises only when Lua cannot allocate the
 * table. [-0, +1] */
int zf_json_open(lua_State *L);

#endif

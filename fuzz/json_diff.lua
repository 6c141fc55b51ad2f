-- fuzz_json's comparison of zkflow's json module (zj) with lua-cjson 2.1.0
-- (cj), as tests/test_json.c makes it: the same decoded values (numbers bit
-- for bit, tables deeply), the same encoded text byte for byte (both encode
-- the same table, so pairs() visits its keys in the same order for both),
-- the same error messages. Returns check(s): s as JSON text decoded by both,
-- each result encoded by both; s read by tree.lua, its first value encoded
-- by both unless its text would pass LIMIT. Raises with the first
-- difference.
local cj, zj, parse = ...
local type, pcall, pairs, rawget, getmetatable, tostring = type, pcall, pairs,
    rawget, getmetatable, tostring
local format = string.format

local function q(v)
  return format("%q", tostring(v)):sub(1, 400)
end

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if a ~= a then return b ~= b end
    return a == b and (a ~= 0 or 1 / a == 1 / b)
  end
  if type(a) ~= "table" then return a == b end
  if getmetatable(a) or getmetatable(b) then return false end
  for k, v in pairs(a) do
    if not same(v, rawget(b, k)) then return false end
  end
  for k in pairs(b) do
    if rawget(a, k) == nil then return false end
  end
  return true
end

-- What the encoders may write for a tree: shared values are written each
-- time they are met, so a few references to a 4 MiB string make gigabytes
-- (and lua-cjson exits the process past 2 GiB).
local LIMIT, TOO_BIG, DEEP = 16777216, {}, {}
local function size(v, depth, acc)
  if acc > LIMIT then error(TOO_BIG) end
  if type(v) == "string" then return acc + 6 * #v + 2 end
  if type(v) ~= "table" then return acc + 24 end
  if depth > 1000 then error(DEEP) end -- both encoders stop here
  for k, x in pairs(v) do
    acc = size(x, depth + 1, size(k, depth + 1, acc))
  end
  return acc + 2
end

local function small(v)
  local ok, e = pcall(size, v, 1, 0)
  return ok or e == DEEP
end

local function check_encode(what, n, v)
  local ok1, s1, ok2, s2
  if n == 0 then -- no argument at all
    ok1, s1 = pcall(cj.encode)
    ok2, s2 = pcall(zj.encode)
  else
    ok1, s1 = pcall(cj.encode, v)
    ok2, s2 = pcall(zj.encode, v)
  end
  if ok1 ~= ok2 or s1 ~= s2 then
    error("encode " .. what .. ": lua-cjson " .. tostring(ok1) .. " " ..
          q(s1) .. ", zkflow " .. tostring(ok2) .. " " .. q(s2), 0)
  end
end

local function check_decode(s)
  local ok1, v1 = pcall(cj.decode, s)
  local ok2, v2 = pcall(zj.decode, s)
  if ok1 ~= ok2 or (not ok1 and v1 ~= v2) then
    error("decode: lua-cjson " .. tostring(ok1) .. " " .. q(v1) ..
          ", zkflow " .. tostring(ok2) .. " " .. q(v2), 0)
  end
  if ok1 and not same(v1, v2) then
    error("decode: other values", 0)
  end
  if ok1 then
    check_encode("of lua-cjson's decoded value", 1, v1)
    check_encode("of zkflow's decoded value", 1, v2)
  end
end

return function(s)
  check_decode(s)
  local res, n = parse(s)
  if small(res[1]) then check_encode("of the tree", n, res[1]) end
end

-- Fuzz bytes as Lua values: a lenient reader of a small language that is
-- both JSON and close to Lua's table constructors, so the seeds can be the
-- op lists of examples/*.expected.jsonl and the fuzzer can reach what a
-- script can build and JSON cannot say. Shared by fuzz_json (json.encode
-- of the value) and fuzz_transform (the value as a transform's return),
-- run in a sandbox and in a plain state: it only uses the string, table
-- and math libraries, and require("json").null.
--
--   "..." '...'     strings; escapes \n \t \r \b \f \a \v \" \' \\ \/,
--                   \xHH, \uXXXX (as UTF-8, surrogates too), \DDD (a byte,
--                   so \0 is a NUL); the rest of the bytes are taken as
--                   they are, NUL included
--   {...} [...]     a table: items separated by ',' or ';', closed by '}'
--                   or ']'; `KEY = VALUE` or `KEY : VALUE` sets any key
--                   (`1 = x`, `"path\0" = x`, `true: 1`), a bare value
--                   takes the next position as in Lua ({1, nil, 3} has a
--                   hole)
--   12 -1.5e3 0x1f  numbers (tonumber); nan inf -inf
--   true false nil null (json.null); other words are strings (`op=upsert`)
--   @N              the Nth value made so far (0-based, tables and strings
--                   built): shared values, cycles ({a = @0})
--   VALUE*N         a string repeated N times (at most 4 MiB), or a list
--                   of N references to a table (at most 10000); at most
--                   16 MiB and 100000 references in all, so that a few
--                   bytes of input do not take gigabytes
-- Top level: values separated by ','. Anything else is skipped, and an
-- unclosed table ends with the text.
-- parse(s) returns a list of the top-level values and their count.
local json = require("json")
local null = json.null
local byte, sub, find, rep, char = string.byte, string.sub, string.find,
    string.rep, string.char
local concat = table.concat
local tonumber, type, floor, min, max = tonumber, type, math.floor, math.min,
    math.max
local huge = math.huge
local MAXREP, MAXLIST, MAXDEPTH = 4194304, 10000, 1100

local escapes = {
  [97] = "\a", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r",
  [116] = "\t", [118] = "\v",
}

-- A code point below 0x10000 as UTF-8 (surrogates encoded as they are).
local function utf8(c)
  if c < 0x80 then return char(c) end
  if c < 0x800 then return char(0xc0 + floor(c / 64), 0x80 + c % 64) end
  return char(0xe0 + floor(c / 4096), 0x80 + floor(c / 64) % 64,
              0x80 + c % 64)
end

local words = {
  ["true"] = true, ["false"] = false, null = null, nan = 0 / 0, inf = huge,
}

local function parse(s)
  local pos, n = 1, #s
  local made, depth = {}, 0
  local bytes, refs = 16777216, 100000 -- what VALUE*N may still make
  local value, tbl

  -- Skip blanks; the next byte, or nil at the end.
  local function skip()
    local _, b = find(s, "^[ \t\r\n]+", pos)
    if b then pos = b + 1 end
    return byte(s, pos)
  end

  local function str(q)
    pos = pos + 1
    local parts = {}
    local stop = q == 34 and '["\\]' or "['\\]"
    while pos <= n do
      local a = find(s, stop, pos)
      if not a then
        parts[#parts + 1] = sub(s, pos)
        pos = n + 1
        break
      end
      parts[#parts + 1] = sub(s, pos, a - 1)
      pos = a + 1
      if byte(s, a) == q then break end
      local c = byte(s, pos)
      if not c then break end
      if c == 120 and find(s, "^%x%x", pos + 1) then -- \xHH
        parts[#parts + 1] = char(tonumber(sub(s, pos + 1, pos + 2), 16))
        pos = pos + 3
      elseif c == 117 and find(s, "^%x%x%x%x", pos + 1) then -- \uXXXX
        parts[#parts + 1] = utf8(tonumber(sub(s, pos + 1, pos + 4), 16))
        pos = pos + 5
      elseif c >= 48 and c <= 57 then -- \DDD
        local _, b = find(s, "^%d%d?%d?", pos)
        parts[#parts + 1] = char(tonumber(sub(s, pos, b)) % 256)
        pos = b + 1
      else
        parts[#parts + 1] = escapes[c] or char(c)
        pos = pos + 1
      end
    end
    local v = concat(parts)
    made[#made + 1] = v
    return v
  end

  local function number()
    local _, b = find(s, "^[-+]?[%w.]*", pos)
    local last = byte(s, b)
    if (last == 101 or last == 69 or last == 112 or last == 80) and
        find(s, "^[-+]", b + 1) then -- an exponent's sign
      _, b = find(s, "^[-+][%w.]*", b + 1)
    end
    local t = sub(s, pos, b)
    pos = b + 1
    local v = tonumber(t)
    if v ~= nil then return v end
    if t == "-inf" then return -huge end
    if t == "-nan" then return 0 / 0 end
    return t
  end

  -- One value at pos: true and the value, or false when there is none
  -- (a closer, the end, or a byte that means nothing, which is skipped).
  function value()
    local c = skip()
    if not c or c == 125 or c == 93 then return false end
    local v
    if c == 34 or c == 39 then
      v = str(c)
    elseif c == 123 or c == 91 then
      if depth >= MAXDEPTH then
        pos = pos + 1
        return false
      end
      v = tbl()
    elseif c == 64 then -- @N
      local _, b = find(s, "^%d*", pos + 1)
      v = made[(tonumber(sub(s, pos + 1, b)) or 0) + 1]
      pos = b + 1
    elseif (c >= 48 and c <= 57) or c == 45 or c == 43 or c == 46 then
      v = number()
    elseif find(s, "^[%a_]", pos) then
      local _, b = find(s, "^[%w_]+", pos)
      local w = sub(s, pos, b)
      pos = b + 1
      if w == "nil" then
        v = nil
      elseif words[w] ~= nil then
        v = words[w]
      else
        v = w
      end
    else
      pos = pos + 1
      return false
    end
    if skip() == 42 then -- VALUE*N
      pos = pos + 1
      skip()
      local a, b = find(s, "^%d+", pos)
      local k = 0
      if a then
        k = tonumber(sub(s, a, b))
        pos = b + 1
      end
      if type(v) == "string" then
        k = min(k, floor(min(MAXREP, bytes) / max(#v, 1)))
        v = rep(v, k)
        bytes = bytes - #v
        made[#made + 1] = v
      elseif type(v) == "table" then
        local l = {}
        k = min(k, MAXLIST, refs)
        refs = refs - k
        for i = 1, k do l[i] = v end
        made[#made + 1] = l
        v = l
      end
    end
    return true, v
  end

  function tbl()
    pos = pos + 1
    local t, i = {}, 0
    made[#made + 1] = t
    depth = depth + 1
    while true do
      local c = skip()
      if not c then break end
      if c == 125 or c == 93 then
        pos = pos + 1
        break
      end
      if c == 44 or c == 59 then
        pos = pos + 1
      else
        local ok, k = value()
        if ok then
          c = skip()
          if c == 61 or c == 58 then -- KEY = VALUE
            pos = pos + 1
            local _, v = value()
            if k ~= nil and k == k then t[k] = v end
          else
            i = i + 1
            if k ~= nil then t[i] = k end
          end
        end
      end
    end
    depth = depth - 1
    return t
  end

  local res, nres = {}, 0
  while skip() do
    local c = byte(s, pos)
    if c == 44 or c == 125 or c == 93 then
      pos = pos + 1
    else
      local ok, v = value()
      if ok then
        nres = nres + 1
        res[nres] = v
      end
    end
  end
  return res, nres
end

return parse

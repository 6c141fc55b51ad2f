-- fuzz_transform's check of an op list that zf_script_transform accepted,
-- against the value the transform returned (tree.lua, read again in a
-- plain state). Only what README ("What the transform returns") makes
-- certain is checked, so that tighter validation never trips it:
-- - each op is exactly what its op table or its path, payload, op said,
--   byte for byte, with the documented defaults;
-- - an op table has no field but op, path, data, version, mode, ttl and
--   recursive (a key "path\0" is an unknown field, not the path);
-- - a list gives one op per item, and has no other keys (no holes);
-- - every path is the script's root or below it, and a sequential create
--   is not the root itself (ZooKeeper would append its counter to the
--   root's name: a node outside the root).
-- Returns check(root, input, ops) -> nil, or what is wrong. ops: the list's
-- ops as tables {op=, path=, data=, version=, mode=, ttl=, recursive=}.
local parse = ...
local type, pairs, ipairs, next, rawget, tostring, floor = type, pairs,
    ipairs, next, rawget, tostring, math.floor
local format, sub = string.format, string.sub

local function q(v)
  return format("%q", tostring(v)):sub(1, 200)
end

local order = {"op", "path", "data", "version", "mode", "ttl", "recursive"}
local fields = {
  op = true, path = true, data = true, version = true, mode = true,
  ttl = true, recursive = true,
}

-- The op table t against the op it became; nil or what differs.
local function check_table(t, op, where)
  for k in pairs(t) do
    if type(k) ~= "string" or not fields[k] then
      return where .. " has the unknown field " .. q(k) ..
             ", yet it was accepted"
    end
  end
  local want = {
    op = t.op == nil and "upsert" or t.op,
    path = t.path,
    data = t.data,
    version = t.version == nil and -1 or t.version,
    mode = t.mode == nil and "persistent" or t.mode,
    ttl = t.ttl == nil and 0 or t.ttl,
    recursive = t.recursive == true,
  }
  for _, k in ipairs(order) do
    if op[k] ~= want[k] then
      return where .. ": its " .. k .. " " .. q(want[k]) .. " became " ..
             q(op[k])
    end
  end
end

local function check_value(v1, v2, v3, ops)
  local n = #ops
  if v1 == nil then
    if n ~= 0 then return "nil gave " .. n .. " op(s)" end
    return
  end
  if type(v1) == "string" then
    if n ~= 1 then return "path, payload, op gave " .. n .. " ops" end
    if v2 ~= nil and type(v2) ~= "string" then
      return "a payload of type " .. type(v2) .. " was accepted"
    end
    local op = ops[1]
    local want = v3 == nil and "upsert" or v3
    if op.op ~= want then return "op " .. q(want) .. " became " .. q(op.op) end
    if op.path ~= v1 then
      return "path " .. q(v1) .. " became " .. q(op.path)
    end
    local data = want ~= "delete" and v2 or nil
    if op.data ~= data then
      return "payload " .. q(data) .. " became " .. q(op.data)
    end
    if op.version ~= -1 or op.mode ~= "persistent" or op.ttl ~= 0 or
        op.recursive then
      return "path, payload, op gave an op with other fields"
    end
    return
  end
  if type(v1) ~= "table" then
    return "a " .. type(v1) .. " return value was accepted"
  end
  if rawget(v1, 1) == nil then
    if next(v1) == nil then
      if n ~= 0 then return "{} gave " .. n .. " op(s)" end
      return
    end
    if n ~= 1 then return "one op table gave " .. n .. " ops" end
    return check_table(v1, ops[1], "the op table")
  end
  local count = 0
  for k in pairs(v1) do
    count = count + 1
    if type(k) ~= "number" or k ~= floor(k) or k < 1 then
      return "a list with the key " .. q(k) .. " was accepted"
    end
  end
  for i = 1, count do
    if rawget(v1, i) == nil then
      return "a list with a hole at " .. i .. " (" .. count ..
             " items) was accepted"
    end
  end
  if n ~= count then
    return "a list of " .. count .. " items gave " .. n .. " ops"
  end
  for i = 1, n do
    local t = v1[i]
    if type(t) ~= "table" then
      return "item " .. i .. " is a " .. type(t) .. ", yet it was accepted"
    end
    local why = check_table(t, ops[i], "item " .. i)
    if why then return why end
  end
end

return function(root, input, ops)
  local res = parse(input)
  local why = check_value(res[1], res[2], res[3], ops)
  if why then return why end
  for i, op in pairs(ops) do
    local p = op.path
    if root ~= "/" and p ~= root and sub(p, 1, #root + 1) ~= root .. "/" then
      return "op " .. i .. ": path " .. q(p) .. " is outside the root " .. root
    end
    if op.op == "create" and op.mode == "sequential" and root ~= "/" and
        p == root then
      return "op " .. i .. ": a sequential create of the root " .. root ..
             " was accepted (ZooKeeper would create " .. root ..
             "0000000000, outside it)"
    end
  end
end

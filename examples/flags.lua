-- Feature flags published from a Kafka topic, with optimistic concurrency.
--
-- Each record's value is a JSON change to one flag:
--   {"flag": "checkout.new-ui", "value": true, "expected_version": 4}
--   {"flag": "search.boost", "value": {"title": 2.0}}
--   {"flag": "legacy.banner", "delete": true, "expected_version": 9}
--
-- A flag is the znode <root>/<flag>; its data is the value as JSON (a
-- string value is stored as it is). When the producer read the flag before
-- changing it, it sends the znode version it saw as "expected_version":
-- the write is then a `set` (or `delete`) guarded by that version, and a
-- flag changed meanwhile by someone else makes the record fail instead of
-- overwriting their change. Without expected_version the write is an
-- upsert (create the flag if it is new).
--
-- params.root (config `param.root = ...`, or `zkflow test --param
-- root=...`) says where flags live; default /flags.
local json = require("json")

local root = params.root or "/flags"

return function(rec)
  local ch = json.decode(rec.value)
  local name = ch.flag
  if type(name) ~= "string" or not name:match("^[%w_.-]+$") or name:match("^%.+$") then
    error("invalid flag name: " .. tostring(name))
  end
  local path = root .. "/" .. name

  if ch.delete then
    -- version nil = delete whatever version is there
    return { op = "delete", path = path, version = ch.expected_version }
  end
  if ch.value == nil then
    error("flag " .. name .. ": no value (send \"delete\": true to remove it)")
  end
  local data = type(ch.value) == "string" and ch.value or json.encode(ch.value)

  if ch.expected_version ~= nil then
    return { op = "set", path = path, data = data, version = ch.expected_version }
  end
  return { op = "upsert", path = path, data = data }
end

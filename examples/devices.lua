-- A device registry in ZooKeeper, kept from a Kafka topic of device events.
--
-- Records are keyed by device id. Values are JSON events:
--   {"type": "status", "status": "online", "site": "berlin", "firmware": "2.1.0"}
--   {"type": "heartbeat"}
-- and a record with a null value (a Kafka tombstone, as written when a
-- device is removed from a compacted topic) means the device is gone.
--
-- Mapping:
--   status event  → upsert /devices/<id>/state  {"status":..,"site":..,"firmware":..,"at":..}
--   heartbeat     → nothing (skip): liveness is not worth a ZooKeeper write
--   tombstone     → delete /devices/<id> and everything below it
--   anything else → an error for that record
--
-- Try it: build/zkflow test examples/devices.lua examples/devices.records.jsonl
local json = require("json")

local ROOT = "/devices"

-- A device id becomes one path component: refuse ids that would not.
local function device_path(id)
  if id == nil or id == "" then
    error("record has no key (the device id)")
  end
  if not id:match("^[%w_.:-]+$") or id == "." or id == ".." then
    error("invalid device id '" .. id .. "'")
  end
  return ROOT .. "/" .. id
end

return function(rec)
  local path = device_path(rec.key)

  if rec.value == nil then -- tombstone: the device was removed
    return { op = "delete", path = path, recursive = true }
  end

  local ev = json.decode(rec.value) -- raises on malformed JSON
  if ev.type == "heartbeat" then
    return nil
  elseif ev.type == "status" then
    if type(ev.status) ~= "string" then
      error("status event without a status")
    end
    -- rec.timestamp is nil when the record has none; json.encode then
    -- leaves "at" out.
    local state = {
      status = ev.status,
      site = ev.site,
      firmware = ev.firmware,
      at = rec.timestamp,
    }
    return { op = "upsert", path = path .. "/state", data = json.encode(state) }
  end
  error("unknown event type '" .. tostring(ev.type) .. "'")
end

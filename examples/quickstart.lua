-- A device registry in ZooKeeper, kept from a Kafka stream of device events.
--
-- Each record's value is a JSON event such as
--   {"id": "d-17", "type": "status", "status": "online", "site": "berlin"}
-- The transform returns path, payload, op (op defaults to "upsert"), or nil
-- to skip the record.
local json = require("json")

return function(rec)
  local ev = json.decode(rec.value)
  if ev.type == "heartbeat" then
    return nil -- nothing to store
  end
  local path = "/zkflow-demo/devices/" .. ev.id
  if ev.type == "retired" then
    return path, nil, "delete"
  end
  return path, json.encode({ status = ev.status, site = ev.site, at = rec.timestamp })
end

-- Service discovery: endpoints announced on a Kafka topic, mirrored into
-- ZooKeeper where clients list /services/<name>/instances.
--
-- Each record's value is a JSON event:
--   {"event": "service", "service": "payments"}
--   {"event": "register", "service": "payments", "id": "pay-1",
--    "host": "10.0.0.5", "port": 8080, "ttl_ms": 30000}
--   {"event": "register", "service": "batch", "host": "10.0.1.9", "port": 7000}
--   {"event": "deregister", "service": "payments", "id": "pay-1"}
--
-- service → upsert /services/<name>/instances (and its parents), so that
--   registrations have a parent: a create never makes missing parents, and
--   a TTL create cannot share a list with the upsert that would (see
--   README: a ttl create must be returned alone).
-- register with an id → a TTL node /services/<name>/instances/<id>. ZooKeeper
--   removes a TTL node once it has gone ttl milliseconds without a change
--   and has no children, so an instance that is never deregistered (it
--   crashed) disappears by itself. The server must run with
--   zookeeper.extendedTypesEnabled=true (scripts/services.sh does). Like
--   every create, registering an id that is already there leaves the node
--   as it is.
-- register without an id → a sequential node
--   /services/<name>/instances/instance-NNNNNNNNNN: ZooKeeper appends the
--   counter, so every registration gets a new node, in registration order.
--   A replayed record registers once more: use this for consumers that
--   tolerate duplicates, and prefer ids otherwise.
-- deregister → delete /services/<name>/instances/<id> (for a sequential
--   node, the id is its full name, e.g. instance-0000000007); deleting an
--   absent node succeeds.
--
-- params.ttl_ms sets the TTL when an event has none (default 30000).
local json = require("json")

local default_ttl = tonumber(params.ttl_ms) or 30000

local function instances(ev)
  if type(ev.service) ~= "string" then
    error("event without a service name")
  end
  return "/services/" .. ev.service .. "/instances"
end

return function(rec)
  if rec.value == nil then
    return nil -- tombstones of the compacted topic: nothing to do
  end
  local ev = json.decode(rec.value)

  if ev.event == "service" then
    return { op = "upsert", path = instances(ev) }
  elseif ev.event == "register" then
    local endpoint = json.encode({ host = ev.host, port = ev.port })
    if ev.id == nil then
      return { op = "create", path = instances(ev) .. "/instance-",
               data = endpoint, mode = "sequential" }
    end
    return { op = "create", path = instances(ev) .. "/" .. ev.id,
             data = endpoint, mode = "ttl", ttl = ev.ttl_ms or default_ttl }
  elseif ev.event == "deregister" then
    if ev.id == nil then
      error("deregister without an id")
    end
    return { op = "delete", path = instances(ev) .. "/" .. ev.id }
  end
  error("unknown event '" .. tostring(ev.event) .. "'")
end

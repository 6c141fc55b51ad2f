-- Orders: one record writes several znodes, all or nothing.
--
-- Records are keyed by order id; values are JSON events:
--   {"event": "placed", "customer": "c-7", "total": "59.90",
--    "items": [{"sku": "A-1", "qty": 2}]}
--   {"event": "items", "items": [...], "status_version": 0}
--   {"event": "shipped", "carrier": "dhl", "tracking": "JD01", "status_version": 1}
--   {"event": "cancelled", "customer": "c-7", "status_version": 0}
-- and a tombstone (null value) once the order is purged, with the customer
-- in a "customer" header.
--
-- The tree:
--   /orders/<id>                     {"customer":..,"total":..}
--   /orders/<id>/status              placed | shipped | cancelled
--   /orders/<id>/items               the items, as JSON
--   /orders/<id>/shipment            {"carrier":..,"tracking":..}
--   /customers/<c>/orders/<id>       index of a customer's orders (until cancelled)
--
-- Returning a list of ops makes them one ZooKeeper multi: either every op
-- of the record takes effect or none does, so readers never see an order
-- without its status, or an index entry without its order. The `zk` module
-- builds the op tables:
--   zk.upsert(path, data)      zk.set(path, data [, version])
--   zk.create(path, data [, {mode=, ttl=}])
--   zk.delete(path [, {version=, recursive=}])   zk.check(path, version)
-- "status_version" is the version of /orders/<id>/status that the producer
-- read: the change applies only if nobody changed the status since (a
-- shipped order cannot be cancelled by a stale request, and its items
-- cannot change).
local json = require("json")
local zk = require("zk")

-- cjson encodes an empty Lua table as {}: items are a list, even when empty.
local function encode_items(items)
  if type(items) ~= "table" then
    error("items must be a list")
  end
  if #items == 0 then
    return "[]"
  end
  return json.encode(items)
end

local function need(value, what)
  if value == nil then
    error(what .. " is missing")
  end
  return value
end

return function(rec)
  local id = need(rec.key, "the record key (order id)")
  local order = "/orders/" .. id
  local status = order .. "/status"

  if rec.value == nil then -- purged: the order and its index entry go
    local ops = { zk.delete(order, { recursive = true }) }
    local customer = rec.headers.customer
    if customer then
      ops[#ops + 1] = zk.delete("/customers/" .. customer .. "/orders/" .. id)
    end
    return ops
  end

  local ev = json.decode(rec.value)
  if ev.event == "placed" then
    local customer = need(ev.customer, "customer")
    return {
      zk.upsert(order, json.encode({ customer = customer, total = ev.total })),
      zk.upsert(status, "placed"),
      zk.upsert(order .. "/items", encode_items(ev.items or {})),
      zk.upsert("/customers/" .. customer .. "/orders/" .. id, nil),
    }
  elseif ev.event == "items" then
    return {
      zk.check(status, need(ev.status_version, "status_version")),
      zk.upsert(order .. "/items", encode_items(ev.items)),
    }
  elseif ev.event == "shipped" then
    return {
      zk.set(status, "shipped", ev.status_version),
      zk.create(order .. "/shipment",
                json.encode({ carrier = ev.carrier, tracking = ev.tracking })),
    }
  elseif ev.event == "cancelled" then
    return {
      zk.set(status, "cancelled", need(ev.status_version, "status_version")),
      zk.delete("/customers/" .. need(ev.customer, "customer") .. "/orders/" .. id),
    }
  end
  error("unknown event '" .. tostring(ev.event) .. "'")
end

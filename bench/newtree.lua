-- The benchmark's new-tree transform: devices.lua's payload, written to a
-- node of its own under a node of its own, ROOT/<id>/state, both new on a
-- first load (bench/run.sh gives every record of its dataset a new id).
local json = require("json")

return function(rec)
  local ev = json.decode(rec.value)
  return params.root .. "/" .. ev.id .. "/state",
         json.encode({ status = ev.status, site = ev.site, seq = ev.seq, fw = ev.fw })
end

-- The benchmark's transform: decode the record's JSON value and write a
-- re-encoded subset of its fields (~60 bytes) to /bench/devices/<id>.
-- bench/ceiling.c writes the same payload shape; keep the two in step.
local json = require("json")

return function(rec)
  local ev = json.decode(rec.value)
  return "/bench/devices/" .. ev.id,
         json.encode({ status = ev.status, site = ev.site, seq = ev.seq, fw = ev.fw })
end

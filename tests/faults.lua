-- Verification transform of tests/faults.sh: every record becomes one
-- sequential znode under params.root whose data names the record as
-- "topic/partition/offset", so a record applied twice shows up as two nodes
-- and a record never applied as none. The root itself is created by the
-- same list (create of an existing node is a success).
-- params.spin_us (optional): CPU time spent on each record first, so that
-- a backlog lasts a known time at the least, however fast the machine.
local root = params.root
local spin = (tonumber(params.spin_us) or 0) / 1e6
return function(rec)
  if spin > 0 then
    local till = os.clock() + spin
    while os.clock() < till do end
  end
  return {
    { op = "create", path = root },
    { op = "create", path = root .. "/r-", mode = "sequential",
      data = rec.topic .. "/" .. rec.partition .. "/" .. rec.offset },
  }
end

-- Verification transform of tests/faults.sh: every record becomes one
-- sequential znode under params.root whose data names the record as
-- "topic/partition/offset", so a record applied twice shows up as two nodes
-- and a record never applied as none. The root itself is created by the
-- same list (create of an existing node is a success).
local root = params.root
return function(rec)
  return {
    { op = "create", path = root },
    { op = "create", path = root .. "/r-", mode = "sequential",
      data = rec.topic .. "/" .. rec.partition .. "/" .. rec.offset },
  }
end

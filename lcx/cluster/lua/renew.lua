-- Extend the leader lease only if we still hold it (compare-and-PEXPIRE).
-- KEYS[1] leader lease; ARGV[1] our "<id>:<term>", ARGV[2] lease ms
-- Returns 1 when renewed, 0 when the lease is gone or held by another.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0

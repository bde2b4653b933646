-- Give the leader lease up only if we still hold it (compare-and-delete).
-- KEYS[1] leader lease; ARGV[1] our "<id>:<term>"
-- Returns 1 when deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

-- Take the leader lease if nobody holds it, with a new fencing term.
-- KEYS[1] leader lease, KEYS[2] term counter
-- ARGV[1] instance id, ARGV[2] lease ms, ARGV[3] highest term the caller has seen,
-- ARGV[4] "1" to acquire even though the term counter is missing
-- Returns {1, "<id>:<term>"} when acquired, {0, "<holder>:<term>"} when held by another,
-- {2, ""} when the caller has seen terms but the counter is gone: Redis lost its data
-- (restart without persistence, flush), and the last leader may still believe it leads
-- for up to one lease; the caller waits that long, then asks again with ARGV[4] = "1".
-- The term never goes below the caller's floor + 1, so a Redis that lost its data does
-- not hand out a term that was already used.
local current = redis.call('GET', KEYS[1])
if current then
  return {0, current}
end
local floor = tonumber(ARGV[3])
if floor > 0 and ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[2]) == 0 then
  return {2, ''}
end
local term = redis.call('INCR', KEYS[2])
if term <= floor then
  term = floor + 1
  redis.call('SET', KEYS[2], term)
end
local value = ARGV[1] .. ':' .. term
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}

-- Write this member's record with a server-side expiry, then read the live members.
-- KEYS[1] members set, KEYS[2] this member's record key
-- ARGV[1] instance id, ARGV[2] record (msgpack), ARGV[3] lease ms,
-- ARGV[4] member record key prefix (same hash tag as KEYS)
-- Returns {had, live}: had is 1 when this member's record still existed before this beat
-- (0: it had expired or Redis lost it, so the others may have counted us gone), live the
-- records of the live members; ids whose record expired are removed.
local had = redis.call('EXISTS', KEYS[2])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[1], ARGV[1])
local live = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local record = redis.call('GET', ARGV[4] .. id)
  if record then
    table.insert(live, record)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return {had, live}

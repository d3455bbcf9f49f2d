"""The Lua scripts the Redis online store runs: each one atomic on the server."""

from __future__ import annotations

APPLY = """
local p = ARGV[1]
local base = p .. (redis.call('GET', p .. 'gen') or '0') .. ':'
local high = tonumber(ARGV[2])
local low = tonumber(ARGV[3])
local track = ARGV[4]
local changed = 0
for i = 5, #ARGV, 3 do
  local view, ent, val = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local k = base .. 'r:' .. view .. ':' .. ent
  local cur = redis.call('GET', k)
  if not cur then
    redis.call('SET', k, val)
    redis.call('SADD', base .. 'e:' .. view, ent)
    redis.call('SADD', base .. 'views', view)
    changed = changed + 1
  elseif string.sub(cur, 1, 37) < string.sub(val, 1, 37) then
    redis.call('SET', k, val)
    changed = changed + 1
  end
end
if high >= 0 then
  local ak, pk = base .. 'applied' .. track, base .. 'pending' .. track
  local applied = tonumber(redis.call('GET', ak) or '0')
  if low <= 0 or low <= applied + 1 then
    if high > applied then applied = high end
    while true do
      local first = redis.call('ZRANGE', pk, 0, 0, 'WITHSCORES')
      if #first == 0 or tonumber(first[2]) > applied + 1 then break end
      local hi = tonumber(string.match(first[1], ':(%d+)$'))
      if hi > applied then applied = hi end
      redis.call('ZREM', pk, first[1])
    end
    redis.call('SET', ak, string.format('%.0f', applied))
  else
    redis.call('ZADD', pk, low, string.format('%.0f:%.0f', low, high))
  end
end
return changed
"""

# Aggregation rows, written before APPLY marks their seqs applied (a crash between the
# two replays them; adding a member twice changes nothing). ARGV: prefix, then
# (view, entity, member, bound) quads: unless bound is "", the members below it
# (event_timestamp <= the eviction cutoff) are evicted first.
APPLY_AGG = """
local p = ARGV[1]
local base = p .. (redis.call('GET', p .. 'gen') or '0') .. ':a:'
for i = 2, #ARGV, 4 do
  local k = base .. ARGV[i] .. ':' .. ARGV[i + 1]
  if ARGV[i + 3] ~= '' then
    redis.call('ZREMRANGEBYLEX', k, '-', '(' .. ARGV[i + 3])
  end
  redis.call('ZADD', k, 0, ARGV[i + 2])
end
return 0
"""

# Switch the live generation; returns the old one.
# ARGV: prefix, new gen, then (track, applied seq) pairs.
SWITCH = """
local p = ARGV[1]
local old = redis.call('GET', p .. 'gen') or '0'
for i = 3, #ARGV, 2 do
  redis.call('SET', p .. ARGV[2] .. ':applied' .. ARGV[i], ARGV[i + 1])
end
redis.call('SET', p .. 'gen', ARGV[2])
return old
"""

# [generation, applied seq of a track] read together. ARGV: prefix, track.
APPLIED = """
local p = ARGV[1]
local g = redis.call('GET', p .. 'gen') or '0'
return {g, redis.call('GET', p .. g .. ':applied' .. ARGV[2]) or '0'}
"""

COUNT = """
local p = ARGV[1]
local g = redis.call('GET', p .. 'gen') or '0'
return redis.call('SCARD', p .. g .. ':e:' .. ARGV[2])
"""

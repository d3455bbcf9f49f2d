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
# (view, entity, member, bound) quads: bound "" adds the member; bound "s" (a view whose
# rows are folded into a summary, see FOLD) adds it unless its seq is at or below the
# entity's summary mark (the first 19 digits of its summary key: every row at or below
# the mark is already in the summary or the sorted set, so a replayed row is never
# counted twice); any other bound evicts the members below it (event_timestamp <= the
# eviction cutoff) first.
APPLY_AGG = """
local p = ARGV[1]
local g = p .. (redis.call('GET', p .. 'gen') or '0') .. ':'
local base = g .. 'a:'
local marks = {}
for i = 2, #ARGV, 4 do
  local key = ARGV[i] .. ':' .. ARGV[i + 1]
  local k = base .. key
  local bound, m = ARGV[i + 3], ARGV[i + 2]
  local add = true
  if bound == 's' then
    local mark = marks[key]
    if mark == nil then
      mark = redis.call('GETRANGE', g .. 's:' .. key, 0, 18)
      marks[key] = mark
    end
    if mark ~= '' and string.sub(m, 19, 37) <= mark then add = false end
  elseif bound ~= '' then
    redis.call('ZREMRANGEBYLEX', k, '-', '(' .. bound)
  end
  if add then redis.call('ZADD', k, 0, m) end
end
return 0
"""

# What a fold reads, for many entities at once: [generation, applied seq of a track,
# then per entity its members below the bound and its summary (nil: none)], read in the
# live generation. ARGV: prefix, track, then ("VIEW:ENTITY", bound) pairs.
FOLD_READ = """
local p = ARGV[1]
local gen = redis.call('GET', p .. 'gen') or '0'
local g = p .. gen .. ':'
local out = {gen, redis.call('GET', g .. 'applied' .. ARGV[2]) or '0'}
for i = 3, #ARGV, 2 do
  out[#out + 1] = redis.call('ZRANGEBYLEX', g .. 'a:' .. ARGV[i], '-', '(' .. ARGV[i + 1])
  out[#out + 1] = redis.call('GET', g .. 's:' .. ARGV[i]) or false
end
return out
"""

# Fold rows into entity summaries: the summaries are computed by the caller (in Python,
# .aggsummary) from what it read; this applies them only where nothing changed since,
# the summary replaced and the folded members deleted in one step. ARGV: prefix, the
# generation read, the mark read (19 digits: the applied seq), then per entity: view,
# entity, the summary value read ("" none), the new value, the bound (the members
# folded are those below it with seq at or below the mark), their number and the SHA-1
# of them joined by newlines (the members are not sent back: the script selects them
# again and checks they are the ones read). An entity whose summary is no longer the
# one read, or whose members differ, is left as it is (folded later). Returns how many
# entities were folded (-1: the generation changed).
FOLD = """
local p = ARGV[1]
if (redis.call('GET', p .. 'gen') or '0') ~= ARGV[2] then return -1 end
local g = p .. ARGV[2] .. ':'
local mark = ARGV[3]
local done = 0
for i = 4, #ARGV, 7 do
  local key = ARGV[i] .. ':' .. ARGV[i + 1]
  local old, new, bound = ARGV[i + 2], ARGV[i + 3], '(' .. ARGV[i + 4]
  local n, digest = tonumber(ARGV[i + 5]), ARGV[i + 6]
  local sk, ak = g .. 's:' .. key, g .. 'a:' .. key
  if (redis.call('GET', sk) or '') == old then
    local all = redis.call('ZRANGEBYLEX', ak, '-', bound)
    local folded = {}
    for _, m in ipairs(all) do
      if string.sub(m, 19, 37) <= mark then folded[#folded + 1] = m end
    end
    if #folded == n and redis.sha1hex(table.concat(folded, '\\n')) == digest then
      if #folded == #all then
        redis.call('ZREMRANGEBYLEX', ak, '-', bound)
      else
        for _, m in ipairs(folded) do redis.call('ZREM', ak, m) end
      end
      redis.call('SET', sk, new)
      done = done + 1
    end
  end
end
return done
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

-- The response cache's store (for cache.lua): one per cache store of the data table, per Envoy
-- worker (every worker runs its own Lua state). Bound at render time as
-- `local store = (function() ... end)()`; returns { new, get, put }.
--
-- Least recently used first out, bounded in bytes: an entry counts its key, its body and a
-- fixed overhead. An entry expires `ttl` seconds after it was stored; an expired entry is
-- dropped when it is next looked up or reaches the end of the list. Nothing runs on a timer.
local M = {}

-- What an entry costs beyond its key and body (the Lua tables holding it), roughly.
M.OVERHEAD = 256

function M.new(max_bytes)
  return { map = {}, bytes = 0, max = max_bytes, count = 0, head = nil, tail = nil }
end

local function unlink(s, e)
  if e.prev ~= nil then e.prev.next = e.next else s.head = e.next end
  if e.next ~= nil then e.next.prev = e.prev else s.tail = e.prev end
  e.prev, e.next = nil, nil
end

local function push_front(s, e)
  e.next = s.head
  if s.head ~= nil then s.head.prev = e else s.tail = e end
  s.head = e
end

local function remove(s, e)
  unlink(s, e)
  s.map[e.key] = nil
  s.bytes = s.bytes - e.size
  s.count = s.count - 1
end

-- The value stored under key and when it was stored, or nil (absent or expired).
function M.get(s, key, now)
  local e = s.map[key]
  if e == nil then return nil end
  if e.expires <= now then
    remove(s, e)
    return nil
  end
  if s.head ~= e then
    unlink(s, e)
    push_front(s, e)
  end
  return e.value, e.stored
end

-- Stores value under key for ttl seconds; returns how many entries were evicted to make room
-- (nil when the entry alone is larger than the store).
function M.put(s, key, value, size, ttl, now)
  size = size + #key + M.OVERHEAD
  if size > s.max then return nil end
  local old = s.map[key]
  if old ~= nil then remove(s, old) end
  local evicted = 0
  while s.bytes + size > s.max do
    remove(s, s.tail)
    evicted = evicted + 1
  end
  local e = { key = key, value = value, size = size, stored = now, expires = now + ttl }
  push_front(s, e)
  s.map[key] = e
  s.bytes = s.bytes + size
  s.count = s.count + 1
  return evicted
end

return M

-- Provider credentials, shared by the downstream and the upstream filter: read from the
-- mounted secret file, trimmed, and cached per worker for DATA.secret_ttl_s, so that a rotated
-- Kubernetes Secret applies without a reload. Assembled at render time after the data table,
-- as `local read_secret = (function() ... end)()`.
local cache = {}
local gsub = string.gsub

return function(path)
  local now = os.time()
  local hit = cache[path]
  if hit ~= nil and now < hit.expires then return hit.value end
  local value = nil
  local f = io.open(path, "rb")
  if f ~= nil then
    value = f:read("*a")
    f:close()
    value = gsub(gsub(value, "^%s+", ""), "%s+$", "")
  end
  cache[path] = { value = value, expires = now + DATA.secret_ttl_s }
  return value
end

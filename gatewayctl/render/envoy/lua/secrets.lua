-- Secret files, shared by the filters: provider credentials and consumer keys, read from the
-- mounted Kubernetes Secret files, trimmed, and cached per worker for DATA.secret_ttl_s, so
-- that a rotated Secret applies without a reload. Bound at render time, after the data table,
-- as `local secrets = (function() ... end)()`; returns { read, keys, set_credential }.
local M = {}
local gsub = string.gsub

-- The file's content without surrounding whitespace; nil if it cannot be read.
local function read_file(path)
  local f = io.open(path, "rb")
  if f == nil then return nil end
  local value = f:read("*a") or ""
  f:close()
  return (gsub(gsub(value, "^%s+", ""), "%s+$", ""))
end

local cache = {}

-- read(path): one secret file (a provider credential).
function M.read(path)
  local now = os.time()
  local hit = cache[path]
  if hit ~= nil and now < hit.expires then return hit.value end
  local value = read_file(path)
  cache[path] = { value = value, expires = now + DATA.secret_ttl_s }
  return value
end

local keys = { expires = -1, by_key = {} }

-- keys(consumers): every consumer's key ({name, file} each) -> the consumer's name; the
-- files are read again together once the TTL has passed.
function M.keys(consumers)
  local now = os.time()
  if now >= keys.expires then
    local by_key = {}
    for _, c in ipairs(consumers) do
      local value = read_file(c.file)
      if value ~= nil and value ~= "" then by_key[value] = c.name end
    end
    keys = { expires = now + DATA.secret_ttl_s, by_key = by_key }
  end
  return keys.by_key
end

-- set_credential(h, hdrs, cred): the provider's credential header ({file, header, prefix});
-- a credential that cannot be read is logged, and the request goes on without it.
function M.set_credential(h, hdrs, cred)
  local value = M.read(cred.file)
  if value == nil or value == "" then
    h:logErr("gatewayctl: cannot read provider credential " .. cred.file)
  else
    hdrs:replace(cred.header, cred.prefix .. value)
  end
end

return M

-- A route's system prompt (for gateway.lua): one of its versions picked by weight, rendered
-- from the request's `prompt_variables`. Bound at render time as
-- `local prompts = (function() ... end)()`; returns { pick_version, render }.
local M = {}
local concat = table.concat

math.randomseed(os.time() + math.floor(os.clock() * 1000000))

local function pick_version(prompt)
  local roll = math.random(1, 100)
  local acc = 0
  for _, v in ipairs(prompt.versions) do
    acc = acc + v.weight
    if roll <= acc then return v end
  end
  return prompt.versions[#prompt.versions]
end

-- Returns the rendered text; or nil and the name of a missing required variable; or nil,
-- nil and true when the text would be longer than `limit` bytes (checked before it is built,
-- so a variable used many times cannot make a worker allocate more than that).
local function render_prompt(version, vars, limit)
  for _, name in ipairs(version.required) do
    local v = vars[name]
    if v == nil or v == json.null then return nil, name end
  end
  local out, size = {}, 0
  for i, part in ipairs(version.parts) do
    local v
    if part.var == nil then
      v = part.text
    else
      v = vars[part.var]
      if v == nil or v == json.null then
        v = part.default or ""
      elseif type(v) ~= "string" then
        v = json.encode(v)
      end
    end
    size = size + #v
    if size > limit then return nil, nil, true end
    out[i] = v
  end
  return concat(out)
end

M.pick_version, M.render = pick_version, render_prompt
return M

-- JSON strings (RFC 8259): the one encoder and the one scanner that finds where a string
-- ends. Bound at render time as `local jsonstring = (function() ... end)()`: before json.lua,
-- which uses both, and without it in the shared upstream filter, whose model splice
-- (target.lua) needs only these. Returns { encode, string_end }.
local M = {}
local byte, find, format, gsub = string.byte, string.find, string.format, string.gsub

local string_escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                         ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function escape_char(c)
  return string_escapes[c] or format("\\u%04x", byte(c))
end

-- s as a JSON string literal.
function M.encode(s)
  -- printable ASCII but `"` and `\`, or any byte >= 0x80: nothing to escape
  if find(s, '^[]-~ !#-[\128-\255]*$') then return '"' .. s .. '"' end
  return '"' .. gsub(s, '[%c"\\]', escape_char) .. '"'
end

-- The index of the `"` that ends the string whose text starts at i (after its opening quote),
-- or nil if it does not end.
function M.string_end(str, i)
  while true do
    local j = find(str, '["\\]', i)
    if j == nil or byte(str, j) == 34 then return j end
    i = j + 2
  end
end

return M

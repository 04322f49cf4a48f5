-- Redaction of personal data in a request body, before anything goes upstream (for
-- gateway.lua; the deny patterns see the original text). Bound at render time as
-- `local redact = (function() ... end)()`; returns { table = redact_table, email = ...,
-- string = redact_string }.
-- redact.table(v, kinds) rewrites every string of v in place but the string values of
-- NOT_REDACTED keys, with the redactors named in `kinds` (a set of email, ssn, credit-card, phone), and
-- returns true if any string changed.
local M = {}
local find, sub, gsub, byte = string.find, string.sub, string.gsub, string.byte
local concat = table.concat
local is_array = json.is_array

-- Redaction rewrites the strings the provider reads except these identifiers, whose rewriting
-- would break the tool round trip (a call's id, a function's name); the deny patterns still
-- see them. Identifiers are strings: an array or object under such a key (a schema property
-- named `name` or `id`, with its description) is redacted like any other.
local NOT_REDACTED = { model = true, role = true, type = true, name = true, id = true,
                       tool_call_id = true, call_id = true }

local function luhn_ok(digits)
  local sum, alt = 0, false
  for i = #digits, 1, -1 do
    local d = byte(digits, i) - 48
    if alt then d = d * 2; if d > 9 then d = d - 9 end end
    sum = sum + d
    alt = not alt
  end
  return sum % 10 == 0
end

local function redact_digit_runs(s, min_digits, max_digits, mark, check)
  if not find(s, "%d") then return s end
  return (gsub(s, "%f[%w%+]%+?%d[%d%-%.%s%(%)]*%d%f[%W]", function(run)
    local digits = gsub(run, "%D", "")
    if #digits >= min_digits and #digits <= max_digits and (check == nil or check(digits)) then
      return mark
    end
    return nil
  end))
end

-- Bytes of an address's local part: [%w%.%%%+%-_] (ASCII letters and digits, . % + - _).
local LOCAL_PART = {}
for c = 48, 57 do LOCAL_PART[c] = true end
for c = 65, 90 do LOCAL_PART[c] = true end
for c = 97, 122 do LOCAL_PART[c] = true end
for _, c in ipairs({ 46, 37, 43, 45, 95 }) do LOCAL_PART[c] = true end

-- The same result as gsub(s, "[%w%.%%%+%-_]+@[%w%-]+%.[%w%.%-]*%w", "[REDACTED_EMAIL]"),
-- without trying the pattern at every byte: a match needs an `@`, so start from each `@`, take
-- the local-part run before it (not reaching into the previous match) and match the domain
-- after it.
local function redact_email(s)
  local at = find(s, "@", 1, true)
  if at == nil then return s end
  local out, n, from = {}, 0, 1
  while at ~= nil do
    local ls = at
    while ls > from and LOCAL_PART[byte(s, ls - 1)] do ls = ls - 1 end
    if ls < at then
      local _, de = find(s, "^[%w%-]+%.[%w%.%-]*%w", at + 1)
      if de ~= nil then
        out[n + 1] = sub(s, from, ls - 1)
        out[n + 2] = "[REDACTED_EMAIL]"
        n = n + 2
        from = de + 1
      end
    end
    at = find(s, "@", at + 1, true)
  end
  if n == 0 then return s end
  out[n + 1] = sub(s, from)
  return concat(out)
end

local REDACTORS = {
  email = redact_email,
  ssn = function(s)
    return (gsub(s, "%f[%d]%d%d%d%-%d%d%-%d%d%d%d%f[%D]", "[REDACTED_SSN]"))
  end,
  ["credit-card"] = function(s)
    return redact_digit_runs(s, 13, 19, "[REDACTED_CREDIT_CARD]", luhn_ok)
  end,
  phone = function(s)
    return redact_digit_runs(s, 10, 15, "[REDACTED_PHONE]", nil)
  end,
}
-- Fixed order: the specific shapes first, so a card number is not taken for a phone number.
local REDACT_ORDER = { "email", "ssn", "credit-card", "phone" }

local function redact_string(s, kinds)
  for _, kind in ipairs(REDACT_ORDER) do
    if kinds[kind] then s = REDACTORS[kind](s) end
  end
  return s
end

-- Redacts every string of v in place but the string values of NOT_REDACTED keys; true if any
-- changed.
local function redact_table(v, kinds)
  local changed = false
  if is_array(v) then
    for i = 1, #v do
      local item = v[i]
      local t = type(item)
      if t == "string" then
        local r = redact_string(item, kinds)
        if r ~= item then v[i] = r; changed = true end
      elseif t == "table" and redact_table(item, kinds) then
        changed = true
      end
    end
    return changed
  end
  for k, item in pairs(v) do
    local t = type(item)
    if t == "string" then
      if not NOT_REDACTED[k] then
        local r = redact_string(item, kinds)
        if r ~= item then v[k] = r; changed = true end
      end
    elseif t == "table" and redact_table(item, kinds) then
      changed = true
    end
  end
  return changed
end

M.table, M.email, M.string = redact_table, redact_email, redact_string
return M

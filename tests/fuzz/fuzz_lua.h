/* fuzz_lua.h: Lua helpers the Lua-side harnesses share: a deep comparison that tells integers
 * from floats and treats NaN as equal to NaN (a round trip must keep both). */
#ifndef KNWB_FUZZ_LUA_H
#define KNWB_FUZZ_LUA_H

#define FUZZ_LUA_SAME \
    "function same(a, b, path)\n" \
    "  path = path or '$'\n" \
    "  if type(a) ~= type(b) then return false, path .. ': ' .. type(a) .. ' vs ' .. type(b) end\n" \
    "  if type(a) == 'number' then\n" \
    "    if math.type(a) ~= math.type(b) then return false, path .. ': ' .. math.type(a) .. ' vs ' .. math.type(b) end\n" \
    "    if a ~= a and b ~= b then return true end\n" \
    "    if a ~= b then return false, path .. ': ' .. string.format('%.17g vs %.17g', a, b) end\n" \
    "    if a == 0 and 1 / a ~= 1 / b then return false, path .. ': signed zero' end\n" \
    "    return true\n" \
    "  end\n" \
    "  if type(a) ~= 'table' then\n" \
    "    if a == b then return true end\n" \
    "    return false, path .. ': ' .. tostring(a) .. ' vs ' .. tostring(b)\n" \
    "  end\n" \
    "  if a == b then return true end\n" \
    "  for k, v in pairs(a) do\n" \
    "    local ok, why = same(v, b[k], path .. '.' .. tostring(k))\n" \
    "    if not ok then return false, why end\n" \
    "  end\n" \
    "  for k in pairs(b) do if a[k] == nil then return false, path .. '.' .. tostring(k) .. ': only after' end end\n" \
    "  return true\n" \
    "end\n"

#endif

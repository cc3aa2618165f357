-- build_vocab.lua: writes the cased BERT vocab.txt for knwb's default model.
--
-- Usage:   ./knwb data/build_vocab.lua [VOCAB_PATH]     (or: lua5.4 data/build_vocab.lua [VOCAB_PATH])
-- Reads:   facts.tsv and templates.yaml from the directory holding this script (data/)
-- Writes:  VOCAB_PATH (default models/default/vocab.txt; its directory must exist), nothing else.
--
-- Every template of every relation (held-out ones included) is rendered with every fact of that
-- relation. The sentences are split the way BERT's BasicTokenizer splits text when it does not
-- lower-case: on whitespace, and every ASCII punctuation character becomes a token of its own.
-- The vocabulary is, one token a line (id = line number from 0):
--   [PAD] [UNK] [CLS] [SEP] [MASK]                      ids 0..4
--   every corpus word, by descending frequency, ties in byte order
--   WordPiece fallback: each ASCII letter and digit, "##" + each letter and digit, and each ASCII
--   punctuation character (those not already present)
-- Pure Lua 5.4, standard library only; the output is deterministic.

local function fail(path, what)
    error(string.format("build_vocab: %s: %s", path, what), 0)
end

local function script_dir()
    local p = arg and arg[0] or ""
    local d = p:match("^(.*)/[^/]*$")
    if d == nil then return "." end
    if d == "" then return "/" end
    return d
end

local DIR = script_dir()
local FACTS = DIR .. "/facts.tsv"
local TEMPLATES = DIR .. "/templates.yaml"
local OUT = arg and arg[1] or "models/default/vocab.txt"

local function read_lines(path, expected)
    local f, err = io.open(path, "rb")
    if not f then fail(path, "cannot open (" .. tostring(err) .. "); expected " .. expected) end
    local lines = {}
    for line in f:lines() do lines[#lines + 1] = (line:gsub("\r$", "")) end
    f:close()
    if #lines == 0 then fail(path, "file is empty; expected " .. expected) end
    return lines
end

-- facts.tsv -> facts[relation] = { {subject, object}, ... } and the relation order
local function load_facts()
    local lines = read_lines(FACTS, "relation<TAB>subject<TAB>object lines (run data/build_facts.lua first)")
    if lines[1] ~= "relation\tsubject\tobject" then
        fail(FACTS, "header must be 'relation<TAB>subject<TAB>object'")
    end
    local facts, n = {}, 0
    for i = 2, #lines do
        local line = lines[i]
        if line ~= "" then
            local r, s, o = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
            if not r then fail(FACTS, "line " .. i .. " is not relation<TAB>subject<TAB>object") end
            facts[r] = facts[r] or {}
            facts[r][#facts[r] + 1] = { s, o }
            n = n + 1
        end
    end
    if n == 0 then fail(FACTS, "no facts") end
    return facts, n
end

-- templates.yaml, in the fixed layout this project writes:
--   ID:
--     label: TEXT
--     templates:
--       - {text: "...", held_out: true|false}
-- Blank lines and # comments are ignored; anything else is an error.
local function load_templates()
    local lines = read_lines(TEMPLATES, "relation templates in YAML")
    local rels, order, cur, in_list = {}, {}, nil, false
    for i, line in ipairs(lines) do
        local bare = line:gsub("%s+$", "")
        if bare == "" or bare:match("^%s*#") then
            -- skip
        elseif bare:match("^[%w_]+:$") then
            local id = bare:sub(1, -2)
            if rels[id] then fail(TEMPLATES, "line " .. i .. ": relation " .. id .. " defined twice") end
            cur = { id = id, templates = {} }
            rels[id] = cur
            order[#order + 1] = id
            in_list = false
        elseif cur and bare:match("^  label: .+$") then
            cur.label = bare:match("^  label: (.+)$")
        elseif cur and bare == "  templates:" then
            in_list = true
        elseif cur and in_list and bare:match("^    %- ") then
            local text, held = bare:match('^    %- {text: "([^"\\]*)", held_out: (%a+)}$')
            if not text or (held ~= "true" and held ~= "false") then
                fail(TEMPLATES, "line " .. i .. ': expected - {text: "...", held_out: true|false}')
            end
            local _, nx = text:gsub("%[X%]", "")
            local _, ny = text:gsub("%[Y%]", "")
            if nx ~= 1 or ny ~= 1 then
                fail(TEMPLATES, "line " .. i .. ": a template needs exactly one [X] and one [Y]")
            end
            cur.templates[#cur.templates + 1] = { text = text, held_out = held == "true" }
        else
            fail(TEMPLATES, "line " .. i .. ": unexpected line '" .. bare .. "'")
        end
    end
    if #order == 0 then fail(TEMPLATES, "no relations") end
    for _, id in ipairs(order) do
        if #rels[id].templates == 0 then fail(TEMPLATES, "relation " .. id .. " has no templates") end
    end
    return rels, order
end

-- ASCII punctuation as BERT's _is_punctuation sees it: 33-47, 58-64, 91-96, 123-126.
local function is_punct(b)
    return (b >= 33 and b <= 47) or (b >= 58 and b <= 64) or (b >= 91 and b <= 96) or (b >= 123 and b <= 126)
end

-- BasicTokenizer without lower-casing, for ASCII text.
local function basic_tokenize(text, count)
    for chunk in text:gmatch("%S+") do
        local word = {}
        for i = 1, #chunk do
            local b = chunk:byte(i)
            if is_punct(b) then
                if #word > 0 then count(table.concat(word)); word = {} end
                count(string.char(b))
            else
                word[#word + 1] = string.char(b)
            end
        end
        if #word > 0 then count(table.concat(word)) end
    end
end

local facts, nfacts = load_facts()
local rels, order = load_templates()
for r in pairs(facts) do
    if not rels[r] then fail(TEMPLATES, "no templates for relation " .. r .. " of " .. FACTS) end
end
for _, r in ipairs(order) do
    if not facts[r] then fail(FACTS, "no facts for relation " .. r .. " of " .. TEMPLATES) end
end

local freq = {}
local function count(tok) freq[tok] = (freq[tok] or 0) + 1 end
local nsent = 0
for _, r in ipairs(order) do
    for _, t in ipairs(rels[r].templates) do
        for _, f in ipairs(facts[r]) do
            local s = t.text:gsub("%[X%]", function() return f[1] end):gsub("%[Y%]", function() return f[2] end)
            if s:find("[\128-\255]") then fail(FACTS, "non-ASCII text in relation " .. r .. ": " .. s) end
            basic_tokenize(s, count)
            nsent = nsent + 1
        end
    end
end

-- Byte-order string comparison: unlike "<" it does not depend on the C library's locale.
local function byte_lt(a, b)
    for i = 1, math.min(#a, #b) do
        local x, y = a:byte(i), b:byte(i)
        if x ~= y then return x < y end
    end
    return #a < #b
end

local words = {}
for w in pairs(freq) do words[#words + 1] = w end
table.sort(words, function(a, b)
    if freq[a] ~= freq[b] then return freq[a] > freq[b] end
    return byte_lt(a, b)
end)

local vocab, seen = {}, {}
local function push(tok)
    if not seen[tok] then
        seen[tok] = true
        vocab[#vocab + 1] = tok
    end
end
for _, s in ipairs({ "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }) do push(s) end
for _, w in ipairs(words) do push(w) end
local nwords = #vocab - 5
local chars = {}
for c = string.byte("A"), string.byte("Z") do chars[#chars + 1] = string.char(c) end
for c = string.byte("a"), string.byte("z") do chars[#chars + 1] = string.char(c) end
for c = string.byte("0"), string.byte("9") do chars[#chars + 1] = string.char(c) end
for _, c in ipairs(chars) do push(c) end
for _, c in ipairs(chars) do push("##" .. c) end
for b = 33, 126 do
    if is_punct(b) then push(string.char(b)) end
end

local tmp = OUT .. ".tmp"
local f, err = io.open(tmp, "wb")
if not f then
    error("build_vocab: cannot write " .. tmp .. " (" .. tostring(err) .. "); does its directory exist?", 0)
end
f:write(table.concat(vocab, "\n"), "\n")
f:close()
local ok, rerr = os.rename(tmp, OUT)
if not ok then error("build_vocab: cannot rename " .. tmp .. " to " .. OUT .. ": " .. tostring(rerr), 0) end

print(string.format("%d sentences from %d facts x templates of %d relations; %d distinct words",
    nsent, nfacts, #order, nwords))
print(string.format("vocab size: %d -> %s", #vocab, OUT))

-- build_facts.lua: builds knwb's fact set from Debian data packages installed on this machine.
--
-- Usage:   ./knwb data/build_facts.lua [OUTDIR]      (or: lua5.4 data/build_facts.lua [OUTDIR])
-- Writes:  OUTDIR/facts.tsv      relation<TAB>subject<TAB>object, one fact a line, sorted
--          OUTDIR/relations.tsv  one row per relation: label, source, counts, majority baseline
-- OUTDIR defaults to the directory holding this script (data/).
--
-- Pure Lua 5.4, standard library only. Every source path is prefixed with the environment variable
-- KNWB_DATA_ROOT (default ""), so a test can point the builder at a fake tree. A missing, empty or
-- malformed source file stops the build with an error naming the file, and nothing is written
-- (outputs go to *.tmp files renamed at the very end). On a partial tree, a relation left with no
-- facts or with a majority baseline of 50% or more is dropped with a warning on stderr; the build
-- fails if no relation remains.
--
-- Sources (all read-only; see data/README.md for packages, versions and licenses):
--   unicode-cldr-core  /usr/share/unicode/cldr/common/main/en.xml
--                      /usr/share/unicode/cldr/common/supplemental/supplementalData.xml
--                      /usr/share/unicode/cldr/common/subdivisions/en.xml
--                      /usr/share/unicode/cldr/common/supplemental/subdivisions.xml
--   wordnet-base       /usr/share/wordnet/data.noun
--   tzdata             /usr/share/zoneinfo/zone.tab
-- (iso-codes is LGPL-2.1+; CLDR carries the same codes and English names under the permissive
-- Unicode license, so iso-codes is not read.)
--
-- Rules every fact obeys:
--   * the object is one word of ASCII letters (one token in a word-level vocabulary);
--   * the subject is 1..4 words of ASCII letters, spaces, hyphens, apostrophes and periods;
--     names with any other character (accents, digits, parentheses, commas) are dropped, never
--     transliterated, except that "&" becomes "and" and the typographic apostrophe becomes "'";
--   * country names that take the definite article in English get it as part of the subject
--     ("the Netherlands"); such countries are never used as objects;
--   * the object is not the subject and is not one of the subject's words;
--   * a subject that a relation's sources map to two different objects, or that also names
--     another place or person, is dropped (ambiguous), so no (relation, subject) pair occurs twice;
--   * over-represented objects are capped by a deterministic choice so that the relation's
--     majority baseline stays under MAX_BASELINE and the relation has at most MAX_PER_RELATION
--     facts. Country subjects are kept in order of population (CLDR territoryInfo), languages in
--     order of speakers, other subjects in order of a fixed string hash (FNV-1a).

local ROOT = os.getenv("KNWB_DATA_ROOT") or ""

local FILES = {
    en_xml      = ROOT .. "/usr/share/unicode/cldr/common/main/en.xml",
    supp_xml    = ROOT .. "/usr/share/unicode/cldr/common/supplemental/supplementalData.xml",
    subdiv_en   = ROOT .. "/usr/share/unicode/cldr/common/subdivisions/en.xml",
    subdiv_supp = ROOT .. "/usr/share/unicode/cldr/common/supplemental/subdivisions.xml",
    wn_noun     = ROOT .. "/usr/share/wordnet/data.noun",
    zone_tab    = ROOT .. "/usr/share/zoneinfo/zone.tab",
}

local MAX_PER_RELATION = 500
local MAX_BASELINE = 0.28

---------------------------------------------------------------------------------------------------
-- Utilities
---------------------------------------------------------------------------------------------------

local function fail(path, what)
    error(string.format("build_facts: %s: %s", path, what), 0)
end

local function slurp(path, expected)
    local f, err = io.open(path, "rb")
    if not f then fail(path, "cannot open (" .. tostring(err) .. "); expected " .. expected) end
    local s = f:read("a")
    f:close()
    if not s or #s == 0 then fail(path, "file is empty; expected " .. expected) end
    return s
end

local function script_dir()
    local p = arg and arg[0] or ""
    local d = p:match("^(.*)/[^/]*$")
    if d == nil then return "." end
    if d == "" then return "/" end
    return d
end

-- Byte-order string comparison: unlike "<" it does not depend on the C library's locale.
local function byte_lt(a, b)
    for i = 1, math.min(#a, #b) do
        local x, y = a:byte(i), b:byte(i)
        if x ~= y then return x < y end
    end
    return #a < #b
end

local function sorted_keys(t)
    local ks = {}
    for k in pairs(t) do ks[#ks + 1] = k end
    table.sort(ks, byte_lt)
    return ks
end

local function words_of(s)
    local w = {}
    for x in s:gmatch("%S+") do w[#w + 1] = x end
    return w
end

-- FNV-1a, 32 bit: a fixed, platform-independent order for "deterministic choice".
local function fnv1a(s)
    local h = 2166136261
    for i = 1, #s do
        h = h ~ s:byte(i)
        h = (h * 16777619) & 0xffffffff
    end
    return h
end

local function xml_decode(s)
    s = s:gsub("&(#?x?%w+);", function(e)
        if e == "amp" then return "&" end
        if e == "lt" then return "<" end
        if e == "gt" then return ">" end
        if e == "quot" then return '"' end
        if e == "apos" then return "'" end
        local hex = e:match("^#x(%x+)$")
        local dec = e:match("^#(%d+)$")
        local cp = hex and tonumber(hex, 16) or (dec and tonumber(dec))
        if cp then return utf8.char(cp) end
        return "&" .. e .. ";"
    end)
    return s
end

local function attr(attrs, name)
    local v = (" " .. attrs):match("%s" .. name .. "=\"([^\"]*)\"")
    return v and xml_decode(v) or nil
end

-- Normalises a display name before validation: "&" -> "and", typographic apostrophe -> "'",
-- underscores -> spaces, squeezed spaces.
local function clean_name(s)
    s = s:gsub("\u{2019}", "'"):gsub("_", " ")
    s = s:gsub("%s*&%s*", " and ")
    s = s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
    return s
end

-- Subject: 1..4 words of ASCII letters, spaces, hyphens, apostrophes, periods; starts with a letter.
local function valid_subject(s)
    if not s or s == "" then return false end
    if s:find("[^A-Za-z .'%-]") then return false end
    if not s:find("^[A-Za-z]") then return false end
    if s:find("  ") or s:find(" $") then return false end
    if select(2, s:gsub("%a", "")) < 2 then return false end
    if s:find("%-%-") or s:find(" %-") or s:find("%- ") or s:find("%-$") then return false end
    local n = #words_of(s)
    return n >= 1 and n <= 4
end

-- Object: one word of ASCII letters (at least 2).
local function valid_object(s)
    return s ~= nil and s:find("^[A-Za-z][A-Za-z]+$") ~= nil
end

-- Key used to match names from different sources: lower case, "St." -> saint, no "the"/"and",
-- letters only.
local function name_key(s)
    s = clean_name(s):lower():gsub("%f[%a]st%.", "saint "):gsub("[^a-z]+", " ")
    local out = {}
    for w in s:gmatch("%a+") do
        if w ~= "the" and w ~= "and" and w ~= "of" then out[#out + 1] = w end
    end
    return table.concat(out, " ")
end

-- Does the object occur as a word of the subject (case-insensitive)? Then the fact is trivial.
local function object_in_subject(subject, object)
    local o = object:lower()
    for w in subject:lower():gmatch("[a-z]+") do
        if w == o then return true end
    end
    return false
end

---------------------------------------------------------------------------------------------------
-- CLDR
---------------------------------------------------------------------------------------------------

local function section(s, path, tag, expected)
    local body = s:match("<" .. tag .. ">(.-)</" .. tag .. ">")
    if not body then fail(path, "no <" .. tag .. "> element; expected " .. expected) end
    return body
end

-- en.xml: English display names. Returns names[kind][code] = { main=, short=, variant= }.
local function load_en_names()
    local path = FILES.en_xml
    local s = slurp(path, "the CLDR English locale (ldml) with territory, language, script and currency names")
    if not s:find("<ldml", 1, true) then fail(path, "not an LDML document (no <ldml>)") end
    local out = { territory = {}, language = {}, script = {}, currency = {} }
    for _, kind in ipairs({ "territory", "language", "script" }) do
        local body = section(s, path, kind == "territory" and "territories" or kind .. "s",
            "English " .. kind .. " names")
        local n = 0
        for attrs, text in body:gmatch("<" .. kind .. "%s+([^>]-)>([^<]*)</" .. kind .. ">") do
            local code, alt = attr(attrs, "type"), attr(attrs, "alt")
            if code then
                local e = out[kind][code] or {}
                e[alt or "main"] = xml_decode(text)
                out[kind][code] = e
                n = n + 1
            end
        end
        if n == 0 then fail(path, "no <" .. kind .. "> names in <" .. (kind == "territory" and "territories" or kind .. "s") .. ">") end
    end
    local body = section(s, path, "currencies", "English currency names")
    local n = 0
    for attrs, inner in body:gmatch("<currency%s+([^>]-)>(.-)</currency>") do
        local code = attr(attrs, "type")
        local dn = inner:match("<displayName>([^<]*)</displayName>")
        if code and dn then
            out.currency[code] = { main = xml_decode(dn) }
            n = n + 1
        end
    end
    if n == 0 then fail(path, "no <currency> entries with a <displayName> in <currencies>") end
    return out
end

local function load_supplemental()
    local path = FILES.supp_xml
    local s = slurp(path, "CLDR supplementalData.xml")
    if not s:find("<supplementalData", 1, true) then fail(path, "no <supplementalData> root element") end
    local sup = {}

    -- territoryContainment: region -> children (current, non-grouping groups only)
    local tc = section(s, path, "territoryContainment", "UN M49 region containment")
    sup.children = {}
    for attrs in tc:gmatch("<group%s+([^>]-)/>") do
        local t, c = attr(attrs, "type"), attr(attrs, "contains")
        if t and c and not attr(attrs, "status") and attr(attrs, "grouping") ~= "true" then
            local list = sup.children[t] or {}
            for code in c:gmatch("%S+") do list[#list + 1] = code end
            sup.children[t] = list
        end
    end
    for _, r in ipairs({ "001", "002", "009", "142", "150" }) do
        if not sup.children[r] then fail(path, "territoryContainment lacks region " .. r) end
    end

    -- territoryCodes: which 2-letter codes are real ISO 3166 territories (numeric code < 900)
    sup.numeric = {}
    for attrs in s:gmatch("<territoryCodes%s+([^>]-)/>") do
        local t, num = attr(attrs, "type"), attr(attrs, "numeric")
        if t and num and tonumber(num) then sup.numeric[t] = tonumber(num) end
    end
    if not next(sup.numeric) then fail(path, "no <territoryCodes> with numeric codes") end

    -- territoryInfo: population and language populations with official status
    local ti = section(s, path, "territoryInfo", "territory populations and official languages")
    sup.population, sup.langs, sup.speakers = {}, {}, {}
    local nterr = 0
    for attrs, inner in ti:gmatch("<territory%s+([^>]-)>(.-)</territory>") do
        local t = attr(attrs, "type")
        local pop = tonumber(attr(attrs, "population") or "")
        if t and pop then
            nterr = nterr + 1
            sup.population[t] = pop
            local ls = {}
            for la in inner:gmatch("<languagePopulation%s+([^>]-)/>") do
                local code, pct = attr(la, "type"), tonumber(attr(la, "populationPercent") or "")
                if code and pct then
                    ls[#ls + 1] = { code = code, pct = pct, status = attr(la, "officialStatus") }
                    sup.speakers[code] = (sup.speakers[code] or 0) + pop * pct / 100
                end
            end
            sup.langs[t] = ls
        end
    end
    if nterr == 0 then fail(path, "territoryInfo has no <territory> with a population") end

    -- currencyData: region -> currently used, legal-tender currencies
    local cd = section(s, path, "currencyData", "currency usage by region")
    sup.currencies = {}
    local nreg = 0
    for attrs, inner in cd:gmatch("<region%s+([^>]-)>(.-)</region>") do
        local r = attr(attrs, "iso3166")
        if r then
            nreg = nreg + 1
            local cur = {}
            for ca in inner:gmatch("<currency%s+([^>]-)/>") do
                local code = attr(ca, "iso4217")
                if code and not attr(ca, "to") and attr(ca, "tender") ~= "false" then cur[#cur + 1] = code end
            end
            sup.currencies[r] = cur
        end
    end
    if nreg == 0 then fail(path, "currencyData has no <region iso3166=...> entries") end

    -- languageData: primary scripts per language (entries without alt="secondary")
    local ld = section(s, path, "languageData", "scripts of languages")
    sup.scripts = {}
    for attrs in ld:gmatch("<language%s+([^>]-)/>") do
        local code, scr = attr(attrs, "type"), attr(attrs, "scripts")
        if code and scr and not attr(attrs, "alt") then
            local set = sup.scripts[code] or {}
            for x in scr:gmatch("%S+") do set[x] = true end
            sup.scripts[code] = set
        end
    end
    if not next(sup.scripts) then fail(path, "languageData lists no primary scripts") end
    return sup
end

local function load_subdivisions()
    local p1, p2 = FILES.subdiv_en, FILES.subdiv_supp
    local s = slurp(p1, "CLDR English subdivision names")
    local names, n = {}, 0
    for attrs, text in s:gmatch("<subdivision%s+([^>]-)>([^<]*)</subdivision>") do
        local code = attr(attrs, "type")
        if code and not attr(attrs, "alt") then
            names[code] = xml_decode(text)
            n = n + 1
        end
    end
    if n == 0 then fail(p1, "no <subdivision> names") end
    local c = slurp(p2, "CLDR subdivisionContainment")
    local body = section(c, p2, "subdivisionContainment", "subdivision containment")
    local top, m = {}, 0
    for attrs in body:gmatch("<subgroup%s+([^>]-)/>") do
        local t, list = attr(attrs, "type"), attr(attrs, "contains")
        if t and list and t:find("^%u%u$") then
            local l = {}
            for code in list:gmatch("%S+") do l[#l + 1] = code end
            top[t] = l
            m = m + 1
        end
    end
    if m == 0 then fail(p2, "no <subgroup type=\"CC\"> entries for countries") end
    return names, top
end

---------------------------------------------------------------------------------------------------
-- WordNet (data.noun: offset lex_filenum ss_type w_cnt word lex_id ... p_cnt ptrs ... | gloss)
---------------------------------------------------------------------------------------------------

local function load_wordnet()
    local path = FILES.wn_noun
    local f, err = io.open(path, "rb")
    if not f then fail(path, "cannot open (" .. tostring(err) .. "); expected the WordNet 3.0 noun database") end
    local syn, n, lineno = {}, 0, 0
    for line in f:lines() do
        lineno = lineno + 1
        if line:sub(1, 2) ~= "  " and line ~= "" then
            local head, gloss = line:match("^(.-) | (.*)$")
            if not head then head, gloss = line, "" end
            local t = words_of(head)
            local off, lex, wc = t[1], t[2], tonumber(t[4] or "", 16)
            if not (off and off:find("^%d%d%d%d%d%d%d%d$") and wc and t[3] == "n") then
                f:close()
                fail(path, "line " .. lineno .. " is not a WordNet noun synset record")
            end
            local words = {}
            for i = 1, wc do words[i] = t[3 + 2 * i] end
            local i = 5 + 2 * wc
            local pc = tonumber(t[i] or "")
            if not pc then f:close(); fail(path, "line " .. lineno .. ": bad pointer count") end
            i = i + 1
            local ptrs = {}
            for k = 1, pc do
                if not t[i + 2] then f:close(); fail(path, "line " .. lineno .. ": truncated pointer list") end
                ptrs[k] = { t[i], t[i + 1] }
                i = i + 4
            end
            syn[off] = { words = words, ptrs = ptrs, gloss = gloss:gsub("%s+$", ""), lex = lex }
            n = n + 1
        end
    end
    f:close()
    if n == 0 then fail(path, "no synset records; expected the WordNet 3.0 noun database") end
    return syn
end

local function wn_targets(s, sym)
    local out = {}
    for _, p in ipairs(s.ptrs) do
        if p[1] == sym then out[#out + 1] = p[2] end
    end
    return out
end

-- The synset whose first lemma is `lemma` and that has the most instances (~i), or nil when
-- no such synset has any. `required` turns absence into an error.
local function wn_class(syn, lemma, required)
    local best, bestn
    for off, s in pairs(syn) do
        if s.words[1] == lemma then
            local n = #wn_targets(s, "~i")
            if not bestn or n > bestn or (n == bestn and byte_lt(off, best)) then best, bestn = off, n end
        end
    end
    if not best or bestn == 0 then
        if required then
            fail(FILES.wn_noun, "no synset '" .. lemma .. "' with instances; expected the WordNet 3.0 noun database")
        end
        return nil
    end
    return best
end

---------------------------------------------------------------------------------------------------
-- tzdata zone.tab: country code, coordinates, TZ name (Area/Location), comment
---------------------------------------------------------------------------------------------------

local function load_zones()
    local path = FILES.zone_tab
    local s = slurp(path, "the tzdata zone.tab table")
    local zones, lineno = {}, 0
    for line in (s .. "\n"):gmatch("([^\n]*)\n") do
        lineno = lineno + 1
        if line ~= "" and line:sub(1, 1) ~= "#" then
            local cc, coord, tz = line:match("^(%u%u)\t([%+%-][%d%+%-]+)\t([%w_/%-%+]+)")
            if not cc then fail(path, "line " .. lineno .. " is not 'CC<TAB>coordinates<TAB>TZ'") end
            local area, loc = tz:match("^([%a]+)/(.+)$")
            if not area then fail(path, "line " .. lineno .. ": TZ name '" .. tz .. "' is not Area/Location") end
            zones[#zones + 1] = { cc = cc, area = area, city = clean_name(loc:match("([^/]+)$")) }
        end
    end
    if #zones == 0 then fail(path, "no zone lines; expected CC<TAB>coordinates<TAB>TZ lines") end
    return zones
end

---------------------------------------------------------------------------------------------------
-- Fact collection, conflicts and caps
---------------------------------------------------------------------------------------------------

local Relation = {}
Relation.__index = Relation

local function new_relation(id, label, source, rank)
    return setmetatable({ id = id, label = label, source = source, rank = rank,
        cand = {}, order = {}, dropped = {} }, Relation)
end

-- Adds a candidate fact after validation; returns true when accepted as a candidate. A valid
-- subject with an unusable object (a multi-word name, say) is still remembered, so that the
-- subject counts as ambiguous if a usable object also turns up for it.
function Relation:add(subject, object)
    if not valid_subject(subject) then return false end
    if not valid_object(object) or subject == object or object_in_subject(subject, object) then
        self:block(subject, object)
        return false
    end
    local objs = self.cand[subject]
    if not objs then
        objs = {}
        self.cand[subject] = objs
        self.order[#self.order + 1] = subject
    end
    objs[object] = true
    return true
end

-- Records that `subject` also names something whose object for this relation is `object`
-- (possibly unknown): if that differs from the subject's fact, the subject is ambiguous.
function Relation:block(subject, object)
    if not subject then return end
    self.blocks = self.blocks or {}
    local b = self.blocks[subject] or {}
    b[object or "?"] = true
    self.blocks[subject] = b
end

-- Resolves conflicts (a subject mapped to several objects is dropped), then caps objects.
function Relation:finish()
    local facts = {}
    for _, subj in ipairs(self.order) do
        local objs = sorted_keys(self.cand[subj])
        local ok = #objs == 1
        for o in pairs(self.blocks and self.blocks[subj] or {}) do
            if o ~= objs[1] then ok = false end
        end
        if ok then facts[#facts + 1] = { subject = subj, object = objs[1] }
        else self.dropped[#self.dropped + 1] = subj end
    end
    -- group by object, each group in rank order
    local groups = {}
    for _, fct in ipairs(facts) do
        local g = groups[fct.object] or {}
        g[#g + 1] = fct
        groups[fct.object] = g
    end
    local rank = self.rank
    local maxn = 0
    for _, g in pairs(groups) do
        table.sort(g, function(a, b)
            local ra, rb = rank(a.subject), rank(b.subject)
            if ra ~= rb then return ra < rb end
            return byte_lt(a.subject, b.subject)
        end)
        if #g > maxn then maxn = #g end
    end
    -- largest per-object cap K meeting both the size limit and the baseline limit
    local K = maxn
    while K > 1 do
        local total = 0
        for _, g in pairs(groups) do total = total + math.min(#g, K) end
        if total <= MAX_PER_RELATION and K / total < MAX_BASELINE then break end
        K = K - 1
    end
    self.cap = K
    local out = {}
    for _, g in pairs(groups) do
        for i = 1, math.min(#g, K) do out[#out + 1] = g[i] end
    end
    table.sort(out, function(a, b) return byte_lt(a.subject, b.subject) end)
    self.facts = out
    -- statistics
    local counts, distinct = {}, 0
    for _, fct in ipairs(out) do
        if not counts[fct.object] then distinct = distinct + 1 end
        counts[fct.object] = (counts[fct.object] or 0) + 1
    end
    local mobj, mcount = nil, -1
    for _, o in ipairs(sorted_keys(counts)) do
        if counts[o] > mcount then mobj, mcount = o, counts[o] end
    end
    self.distinct = distinct
    self.majority_object = mobj or ""
    self.majority_baseline = (#out > 0) and mcount / #out or 0
end

---------------------------------------------------------------------------------------------------
-- Build
---------------------------------------------------------------------------------------------------

local en = load_en_names()
local sup = load_supplemental()
local subdiv_names, subdiv_top = load_subdivisions()
local syn = load_wordnet()
local zones = load_zones()

-- Countries: the leaf territories of CLDR's UN M49 containment that have an ISO numeric code
-- below 900 (this leaves out the EU, UN, "Outlying Oceania", Kosovo's user-assigned code and the
-- CLDR-only codes such as EA/IC/AC/TA).
local region_of = {}   -- country code -> M49 sub-region code
local function walk(region, top)
    for _, c in ipairs(sup.children[region] or {}) do
        if c:find("^%d%d%d$") then walk(c, top)
        elseif c:find("^%u%u$") and sup.numeric[c] and sup.numeric[c] < 900 then
            region_of[c] = region_of[c] or top
        end
    end
end
local CONTINENT = { ["002"] = "Africa", ["142"] = "Asia", ["150"] = "Europe", ["009"] = "Oceania",
    ["019"] = false }  -- the Americas: "North America"/"South America" are not single words
for _, r in ipairs(sup.children["001"]) do
    if r:find("^%d%d%d$") then walk(r, r) end
end
if not next(region_of) then fail(FILES.supp_xml, "territoryContainment yields no countries") end

-- English names that take "the".
local ARTICLE_EXACT = { Netherlands = true, Philippines = true, Bahamas = true, Gambia = true,
    Maldives = true, Comoros = true }
local ARTICLE_TAIL = { Islands = true, Republic = true, Territory = true, Territories = true,
    Emirates = true, Kingdom = true, States = true, Netherlands = true }
local function needs_article(name)
    if ARTICLE_EXACT[name] then return true end
    local w = words_of(name)
    if w[1] == "United" then return true end
    return #w > 1 and ARTICLE_TAIL[w[#w]] == true
end

-- Territories without a permanent population: templates such as "Residents of [X] pay with the
-- [Y]" would not make sense for them.
local UNINHABITED = { BV = true, HM = true, GS = true, TF = true, UM = true, IO = true }

local country = {}     -- code -> { name=, subject= (with article), object= (single word or nil), pop= }
local country_by_key = {}
for _, code in ipairs(sorted_keys(region_of)) do
    local e = en.territory[code]
    if e and not UNINHABITED[code] then
        local name
        -- "Hong Kong SAR China" -> short form "Hong Kong"
        local order = (e.main and e.main:find(" SAR ")) and { "short", "main", "variant" }
            or { "main", "short", "variant" }
        for _, alt in ipairs(order) do
            local n = e[alt] and clean_name(e[alt])
            if n and valid_subject(n) then name = n; break end
        end
        if name then
            local art = needs_article(name)
            local c = { code = code, name = name, subject = art and ("the " .. name) or name,
                object = (not art and valid_object(name)) and name or nil,
                pop = sup.population[code] or 0 }
            country[code] = c
            for _, alt in ipairs({ "main", "short", "variant" }) do
                if e[alt] then
                    local k = name_key(e[alt])
                    if k ~= "" and not country_by_key[k] then country_by_key[k] = code end
                end
            end
        end
    end
end
-- WordNet names of current countries that differ from every CLDR form.
local COUNTRY_ALIASES = { ["macedonia"] = "MK", ["burma"] = "MM" }
for k, code in pairs(COUNTRY_ALIASES) do
    if country[code] and not country_by_key[k] then country_by_key[k] = code end
end

-- most populous first
local pop_by_subject = {}
for _, c in pairs(country) do pop_by_subject[c.subject] = c.pop end
local function country_subject_rank(subject) return -(pop_by_subject[subject] or 0) end
local function hash_rank(subject) return fnv1a(subject) end

local relations = {}
local function relation(id, label, source, rank)
    local r = new_relation(id, label, source, rank)
    relations[#relations + 1] = r
    return r
end

-- tz city names per country, used to prefer the spelling tzdata uses (Kyiv, Chisinau, Tehran...)
local tz_cities = {}
for _, z in ipairs(zones) do
    tz_cities[z.cc] = tz_cities[z.cc] or {}
    tz_cities[z.cc][#tz_cities[z.cc] + 1] = z.city
end

-- Picks a name among WordNet lemmas: (1) a lemma equal to a tzdata location of the country
-- (so "Brussels" wins over "Bruxelles", "Tehran" over "Teheran"); (2) the first lemma, if it is
-- acceptable (a later lemma may be a mere short form, like "Vila" for Port Vila).
local function choose_place_name(lemmas, cc, ok)
    local set = {}
    for _, t in ipairs(cc and tz_cities[cc] or {}) do set[t] = true end
    for _, l in ipairs(lemmas) do
        if ok(l) and set[l] then return l end
    end
    if ok(lemmas[1]) then return lemmas[1] end
    return nil
end

local function is_generic_lemma(l)
    return l:find("capital") ~= nil or l:find("City of") ~= nil or l:find("Forbidden") ~= nil
end

local function lemmas_of(s)
    local out = {}
    for _, w in ipairs(s.words) do out[#out + 1] = clean_name(w) end
    return out
end

-- Finds the country a WordNet synset names via its lemmas (e.g. "capital of France"),
-- its gloss ("the capital and largest city of France") and finally its part holonyms.
local function match_country_at(text, pos)
    -- longest country name starting at pos (word boundary after)
    local rest = text:sub(pos)
    local words = {}
    for w in rest:gmatch("[%a%.'%-]+") do
        words[#words + 1] = w
        if #words >= 7 then break end
    end
    for n = #words, 1, -1 do
        local k = name_key(table.concat(words, " ", 1, n))
        if k ~= "" and country_by_key[k] then return country_by_key[k] end
    end
    return nil
end

local function capital_country(s)
    for _, l in ipairs(lemmas_of(s)) do
        local rest = l:match("^capital of (.+)$")
        if rest then
            local c = match_country_at(rest, 1)
            if c then return c end
        end
    end
    local g = s.gloss
    local cpos = g:find("capital")
    if cpos then
        local pos = cpos
        while true do
            local a, b = g:find("%f[%a]of ", pos)
            if not a then break end
            local c = match_country_at(g, b + 1)
            if c then return c end
            pos = b + 1
        end
    end
    for _, h in ipairs(wn_targets(s, "#p")) do
        for _, l in ipairs(syn[h].words) do
            local c = country_by_key[name_key(l)]
            if c then return c end
        end
    end
    return nil
end

---------------------------------------------------------------------------------------------------
-- P36 capital / P1376 capital of (WordNet national capitals)
---------------------------------------------------------------------------------------------------

-- Countries whose WordNet 3.0 (2006) capital is outdated, contested or misspelt; left out.
local CAPITAL_EXCLUDE = {
    MM = "capital moved from Yangon to Naypyidaw in 2005-2006",
    LK = "official capital is Sri Jayawardenepura Kotte, not Colombo",
    FM = "capital moved from Kolonia to Palikir in 1989",
    MY = "capital is Kuala Lumpur; Putrajaya is the administrative centre",
    IL = "status of Jerusalem is internationally contested",
    BI = "political capital moved from Bujumbura to Gitega in 2019",
    GQ = "capital being moved from Malabo to Ciudad de la Paz",
    ID = "2022 law moves the capital from Jakarta to Nusantara",
    CI = "WordNet misspells Yamoussoukro",
    BO = "La Paz is the seat of government; Sucre is the constitutional capital",
    TZ = "Dodoma is the official capital, not Dar es Salaam",
}
-- Preferred spellings where WordNet's first choice is dated: used only when the name is one of
-- the synset's lemmas or the tzdata location name of that country (Europe/Kyiv).
local CAPITAL_PREFERRED = { YE = "Sanaa", UA = "Kyiv", TM = "Ashgabat" }

local P36 = relation("P36", "capital", "WordNet 3.0 (wordnet-base) + CLDR 41 (unicode-cldr-core)",
    country_subject_rank)
local P1376 = relation("P1376", "capital of", "WordNet 3.0 (wordnet-base) + CLDR 41 (unicode-cldr-core)",
    hash_rank)
local capital_cities = {}   -- name -> true: kept out of P17/P131
do
    local cls = wn_class(syn, "national_capital", true)
    local offs = wn_targets(syn[cls], "~i")
    table.sort(offs, byte_lt)
    for _, off in ipairs(offs) do
        local s = syn[off]
        local cc = capital_country(s)
        if cc and country[cc] and not CAPITAL_EXCLUDE[cc] then
            local c = country[cc]
            local lemmas = lemmas_of(s)
            -- a capital named like its country (Kuwait, Luxembourg, Djibouti...) is left out
            local named_like_country = false
            for _, l in ipairs(lemmas) do
                if not is_generic_lemma(l) and (object_in_subject(l, c.name) or name_key(l) == name_key(c.name)) then
                    named_like_country = true
                end
            end
            local function ok(l) return valid_object(l) and not is_generic_lemma(l) end
            local cap = choose_place_name(lemmas, cc, ok)
            local pref = CAPITAL_PREFERRED[cc]
            if pref then
                for _, l in ipairs(lemmas) do if l == pref then cap = pref end end
                for _, l in ipairs(tz_cities[cc] or {}) do if l == pref then cap = pref end end
            end
            if cap and not named_like_country then
                P36:add(c.subject, cap)
                if c.object then P1376:add(cap, c.object) end
                capital_cities[cap] = true
            end
        end
    end
end

---------------------------------------------------------------------------------------------------
-- P30 continent (CLDR territoryContainment)
---------------------------------------------------------------------------------------------------

local P30 = relation("P30", "continent", "CLDR 41 (unicode-cldr-core) territoryContainment (UN M49)",
    country_subject_rank)
for _, code in ipairs(sorted_keys(country)) do
    local cont = CONTINENT[region_of[code]]
    if cont then P30:add(country[code].subject, cont) end
end

---------------------------------------------------------------------------------------------------
-- P37 official language (CLDR territoryInfo): countries with exactly one official language
---------------------------------------------------------------------------------------------------

local P37 = relation("P37", "official language", "CLDR 41 (unicode-cldr-core) territoryInfo",
    country_subject_rank)
for _, code in ipairs(sorted_keys(country)) do
    local off = {}
    for _, l in ipairs(sup.langs[code] or {}) do
        if l.status == "official" or l.status == "de_facto_official" then off[l.code] = true end
    end
    local codes = sorted_keys(off)
    if #codes == 1 and not codes[1]:find("_") then
        local ln = en.language[codes[1]]
        local name = ln and ln.main
        if name and valid_object(name) then P37:add(country[code].subject, name) end
    end
end

---------------------------------------------------------------------------------------------------
-- P38 currency (CLDR currencyData): the unit word of the country's current currency
---------------------------------------------------------------------------------------------------

-- CLDR 41 (2022) predates these changes.
local CURRENCY_EXCLUDE = {
    HR = "adopted the euro on 2023-01-01",
    BG = "adopted the euro on 2026-01-01",
    ZW = "introduced the Zimbabwe Gold (ZiG) in 2024",
}
local P38 = relation("P38", "currency", "CLDR 41 (unicode-cldr-core) currencyData",
    country_subject_rank)
for _, code in ipairs(sorted_keys(country)) do
    local curs = sup.currencies[code]
    if curs and #curs > 0 and not CURRENCY_EXCLUDE[code] then
        local units = {}
        for _, cur in ipairs(curs) do
            local n = en.currency[cur] and en.currency[cur].main
            local w = n and words_of(n)
            if w and #w > 0 then units[w[#w]] = true else units["?"] = true end
        end
        local u = sorted_keys(units)
        if #u == 1 and valid_object(u[1]) then P38:add(country[code].subject, u[1]) end
    end
end

---------------------------------------------------------------------------------------------------
-- P282 writing system (CLDR languageData): languages with exactly one primary script
---------------------------------------------------------------------------------------------------

-- CLDR's primary script for these is not the one the language is mostly written in today.
local SCRIPT_EXCLUDE = {
    lus = "Mizo is written in the Latin script (CLDR 41: Bangla)",
    swb = "Comorian is written in both Latin and Arabic script",
    zdj = "Comorian is written in both Latin and Arabic script",
    hnj = "Hmong Njua is mostly written in the Latin script (CLDR 41: Lao)",
    lad = "Ladino is now mostly written in the Latin script (CLDR 41: Hebrew)",
    bfq = "Badaga is written in Kannada and Tamil script",
}
local speakers_by_name = {}
local P282 = relation("P282", "writing system", "CLDR 41 (unicode-cldr-core) languageData",
    function(subject) return -(speakers_by_name[subject] or 0) end)   -- most spoken first
for _, lang in ipairs(sorted_keys(sup.scripts)) do
    local scr = sorted_keys(sup.scripts[lang])
    local ln = en.language[lang]
    if #scr == 1 and ln and ln.main and not lang:find("_") and not SCRIPT_EXCLUDE[lang] then
        local se = en.script[scr[1]]
        local sname = se and (se["stand-alone"] or se.main)
        local lname = clean_name(ln.main)
        if sname and P282:add(lname, sname) then
            speakers_by_name[lname] = (speakers_by_name[lname] or 0) + (sup.speakers[lang] or 0)
        end
    end
end

---------------------------------------------------------------------------------------------------
-- WordNet places: P17 country (cities, towns, ports) and P131 (city -> US state, Canadian province,
-- Australian state, Italian region); plus tzdata locations and CLDR subdivisions for P17.
---------------------------------------------------------------------------------------------------

-- Places whose country is contested: no fact is stated for them (WordNet holonyms and names).
local CONTESTED_WN = { ["Crimea"] = true, ["Kashmir"] = true, ["Jammu and Kashmir"] = true,
    ["West Bank"] = true, ["Gaza Strip"] = true, ["Golan Heights"] = true, ["Western Sahara"] = true,
    ["Abkhazia"] = true, ["South Ossetia"] = true, ["Transnistria"] = true, ["Northern Cyprus"] = true,
    ["Nagorno-Karabakh"] = true, ["Taiwan"] = true }
local CONTESTED_PLACES = { ["Jerusalem"] = true, ["East Jerusalem"] = true, ["Sevastopol"] = true,
    ["Simferopol"] = true, ["Yalta"] = true, ["Kerch"] = true, ["Gaza"] = true, ["Hebron"] = true,
    ["Bethlehem"] = true, ["Ramallah"] = true, ["Jericho"] = true, ["Nablus"] = true,
    ["Laayoune"] = true, ["El Aaiun"] = true, ["Srinagar"] = true, ["Sukhumi"] = true,
    ["Tskhinvali"] = true, ["Tiraspol"] = true, ["Stepanakert"] = true, ["Kyrenia"] = true,
    ["Famagusta"] = true, ["Ulster"] = true }
-- CLDR subdivisions left out: contested (Crimea, Sevastopol, Kosovo, Abkhazia, Transnistria,
-- Taiwan listed under China).
local SUBDIV_EXCLUDE = { ua40 = true, ua43 = true, rskm = true, geab = true, mdsn = true, cntw = true }
-- Truncated tzdata location names that are not the place's name.
local TZ_EXCLUDE = { ["Ho Chi Minh"] = true }

local P17 = relation("P17", "country",
    "WordNet 3.0 (wordnet-base) + tzdata 2025b zone.tab + CLDR 41 subdivisions (unicode-cldr-core)", hash_rank)
local P131 = relation("P131", "located in the administrative territorial entity",
    "WordNet 3.0 (wordnet-base)", hash_rank)

local STATE_CLASSES = { "American_state", "Canadian_province", "Australian_state", "Italian_region" }
local state_class = {}
for _, l in ipairs(STATE_CLASSES) do
    local c = wn_class(syn, l)
    if c then state_class[c] = true end
end
local function is_state(off)
    for _, h in ipairs(wn_targets(syn[off], "@i")) do
        if state_class[h] then return true end
    end
    return false
end
local function country_of_synset(off)
    if is_state(off) then return nil end
    for _, l in ipairs(syn[off].words) do
        local c = country_by_key[name_key(l)]
        if c then return c end
    end
    return nil
end
local function contested_synset(off)
    for _, l in ipairs(syn[off].words) do
        if CONTESTED_WN[clean_name(l)] then return true end
    end
    return false
end

-- Names of countries and of first-level divisions: a place sharing such a name ("Virginia,
-- Minnesota", "Maryland County, Liberia") is left out, as the name would be read as the region.
local region_names = {}
for _, c in pairs(country) do
    local e = en.territory[c.code]
    for _, alt in ipairs({ "main", "short", "variant" }) do
        if e[alt] then region_names[clean_name(e[alt])] = true end
    end
end
for cl in pairs(state_class) do
    for _, off in ipairs(wn_targets(syn[cl], "~i")) do
        for _, l in ipairs(lemmas_of(syn[off])) do region_names[l] = true end
    end
end

do
    local classes = {}
    for _, l in ipairs({ "city", "town", "port", "state_capital", "provincial_capital", "national_capital" }) do
        classes[#classes + 1] = wn_class(syn, l, l == "city")
    end
    local seen, offs = {}, {}
    for _, cl in ipairs(classes) do
        for _, off in ipairs(wn_targets(syn[cl], "~i")) do
            if not seen[off] then seen[off] = true; offs[#offs + 1] = off end
        end
    end
    table.sort(offs, byte_lt)
    for _, off in ipairs(offs) do
        local s = syn[off]
        local hol = wn_targets(s, "#p")
        local countries, states, contested = {}, {}, false
        for _, h in ipairs(hol) do
            if contested_synset(h) then contested = true end
            if is_state(h) then states[h] = true end
            local c = country_of_synset(h)
            if c then countries[c] = true end
        end
        if not next(countries) then
            -- one level up: city -> region/island/state -> country
            for _, h in ipairs(hol) do
                for _, h2 in ipairs(wn_targets(syn[h], "#p")) do
                    if contested_synset(h2) then contested = true end
                    local c = country_of_synset(h2)
                    if c then countries[c] = true end
                end
            end
        end
        local clist, slist = sorted_keys(countries), sorted_keys(states)
        local cobj = (#clist == 1) and (country[clist[1]].object or ("?" .. clist[1])) or "?"
        local sobj = (#slist == 1) and clean_name(syn[slist[1]].words[1]) or "?"
        local lemmas = lemmas_of(s)
        -- every name of this place marks the subject as taken by this place
        for _, l in ipairs(lemmas) do
            P17:block(l, cobj)
            P131:block(l, sobj)
        end
        local cc = (#clist == 1) and clist[1] or nil
        local name = choose_place_name(lemmas, cc, valid_subject)
        local excluded = contested or not name or capital_cities[name] or CONTESTED_PLACES[name]
            or CONTESTED_PLACES[lemmas[1]] or region_names[name]
        if not excluded then
            if #clist == 1 then P17:add(name, cobj) end
            if #slist == 1 then P131:add(name, sobj) end
        end
    end
end

-- tzdata locations (continental areas only; the ocean areas name islands, not towns)
local TZ_AREAS = { Africa = true, America = true, Asia = true, Australia = true, Europe = true }
for _, z in ipairs(zones) do
    local c = country[z.cc]
    if TZ_AREAS[z.area] and c and c.object and not capital_cities[z.city] and not region_names[z.city]
        and not CONTESTED_PLACES[z.city] and not TZ_EXCLUDE[z.city] then
        P17:add(z.city, c.object)
    end
end

-- CLDR first-level subdivisions. Names that are bare direction/generic words, that need "the"
-- ("Balearic Islands", "Northern Region"), or that read as a saint's name ("Saint Paul" parish)
-- are left out.
local GENERIC = {}
for w in ([[North South East West Northern Southern Eastern Western Central Centre Centrale
    Northeast Northwest Southeast Southwest Northeastern Northwestern Southeastern Southwestern
    Nord Sud Est Ouest Norte Sul Oeste Leste Este Oriental Occidental Littoral Maritime
    Capital Upper Lower Middle Coast Coastal Islands Island Region Province District Territory
    Federal National Greater Inner Outer Far Mid Governorate Municipality Department Prefecture
    County State City Area Zone Division Interior Lakes Valley Highlands Plateaux Savanes
    Atlantique Peninsula]]):gmatch("%a+") do GENERIC[w] = true end
local THE_TAIL = {}
for w in ([[Islands Republic Territory Territories Region Country District Province Coast Valley
    Cape Highlands Lowlands Mountains Lakes Emirates Area Zone Division Delta Plateau Savannah
    Basin Hills Islets Keys Isles Governorate Municipality Community Autonomy Peninsula]]):gmatch("%a+") do
    THE_TAIL[w] = true
end
local function subdivision_ok(name)
    if not valid_subject(name) then return false end
    local w = words_of(name)
    local all_generic = true
    for _, x in ipairs(w) do
        for part in x:gmatch("[^%-]+") do
            if not GENERIC[part] then all_generic = false end
        end
    end
    if all_generic then return false end
    if THE_TAIL[w[#w]] then return false end
    if w[1] == "United" or w[1] == "Saint" or w[1] == "St." or w[1] == "River" then return false end
    return true
end
for _, cc in ipairs(sorted_keys(subdiv_top)) do
    local c = country[cc]
    if c and c.object then
        for _, sd in ipairs(subdiv_top[cc]) do
            local name = subdiv_names[sd] and clean_name(subdiv_names[sd])
            if name and not SUBDIV_EXCLUDE[sd] and subdivision_ok(name) and not capital_cities[name]
                and not region_names[name] and not CONTESTED_PLACES[name] then
                P17:add(name, c.object)
            end
        end
    end
end

---------------------------------------------------------------------------------------------------
-- P106 occupation (WordNet people with exactly one instance-of class, which is an occupation)
---------------------------------------------------------------------------------------------------

local OCCUPATIONS = { "writer", "poet", "composer", "painter", "statesman", "physicist", "chemist",
    "architect", "dramatist", "philosopher", "actor", "actress", "mathematician", "historian",
    "explorer", "astronomer", "sculptor", "theologian", "inventor", "economist", "physiologist",
    "biochemist", "educator", "singer", "navigator", "psychologist", "politician", "industrialist",
    "dancer", "naturalist", "publisher", "comedian", "engineer", "businessman", "anthropologist",
    "diplomat", "journalist", "bacteriologist", "botanist", "conductor", "lexicographer", "linguist",
    "geneticist", "cartoonist", "golfer", "surgeon", "sociologist", "anatomist", "violinist",
    "novelist", "choreographer", "aviator", "financier", "photographer", "neurologist",
    "philologist", "psychiatrist", "biologist", "archeologist", "zoologist", "lyricist",
    "astronaut", "songwriter", "lawyer", "pianist", "prizefighter", "soldier", "ballplayer" }
local MIN_PER_OCCUPATION = 8

local P106 = relation("P106", "occupation", "WordNet 3.0 (wordnet-base)", hash_rank)
do
    -- one occupation class per lemma: the noun.person synset (lex file 18) with most instances
    local occ_of = {}
    for _, o in ipairs(OCCUPATIONS) do
        local best, bestn
        for off, s in pairs(syn) do
            if s.words[1] == o and s.lex == "18" then
                local n = #wn_targets(s, "~i")
                if not bestn or n > bestn or (n == bestn and byte_lt(off, best)) then best, bestn = off, n end
            end
        end
        if best and bestn > 0 then occ_of[best] = o end
    end
    if not next(occ_of) then fail(FILES.wn_noun, "no occupation classes (writer, poet...) with instances") end
    local per_occ = {}
    for _, off in ipairs(sorted_keys(syn)) do
        local s = syn[off]
        local hy = wn_targets(s, "@i")
        if s.lex == "18" and #hy >= 1 then
            local lemmas = lemmas_of(s)
            if #hy ~= 1 or not occ_of[hy[1]] then
                -- another person of the same name makes the name ambiguous
                for _, l in ipairs(lemmas) do P106:block(l, "?") end
            else
                local surname = words_of(lemmas[1])
                surname = surname[#surname]
                local best
                for _, l in ipairs(lemmas) do
                    local w = words_of(l)
                    if #w >= 2 and w[#w] == surname and valid_subject(l) then
                        if not best or #w < #words_of(best) then best = l end
                    end
                end
                if not best and #words_of(lemmas[1]) >= 2 and valid_subject(lemmas[1]) then best = lemmas[1] end
                if best then
                    local o = occ_of[hy[1]]
                    per_occ[o] = per_occ[o] or {}
                    per_occ[o][#per_occ[o] + 1] = best
                end
            end
        end
    end
    for _, o in ipairs(sorted_keys(per_occ)) do
        if #per_occ[o] >= MIN_PER_OCCUPATION then
            for _, name in ipairs(per_occ[o]) do P106:add(name, o) end
        end
    end
end

---------------------------------------------------------------------------------------------------
-- Finish, check, write
---------------------------------------------------------------------------------------------------

table.sort(relations, function(a, b) return byte_lt(a.id, b.id) end)
-- A relation counts only if it has facts and its majority baseline is under 50%; any other is
-- left out with a warning (this happens only with partial source trees, e.g. test fixtures).
local total, kept = 0, {}
for _, r in ipairs(relations) do
    r:finish()
    if #r.facts == 0 then
        io.stderr:write("build_facts: warning: relation " .. r.id .. " has no facts; left out\n")
    elseif r.majority_baseline >= 0.5 then
        io.stderr:write(string.format("build_facts: warning: relation %s has majority baseline %.3f >= 0.5; left out\n",
            r.id, r.majority_baseline))
    else
        kept[#kept + 1] = r
        total = total + #r.facts
    end
end
relations = kept
if #relations == 0 then
    local names = {}
    for _, k in ipairs(sorted_keys(FILES)) do names[#names + 1] = FILES[k] end
    error("build_facts: no relation has usable facts; check the sources: " .. table.concat(names, ", "), 0)
end

local outdir = arg and arg[1] or script_dir()
local function write_atomic(path, lines)
    local tmp = path .. ".tmp"
    local f, err = io.open(tmp, "wb")
    if not f then error("build_facts: cannot write " .. tmp .. ": " .. tostring(err), 0) end
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    return tmp
end

local fl = { "relation\tsubject\tobject" }
local rl = { "relation\tlabel\tsource\tfacts\tdistinct_objects\tmajority_object\tmajority_baseline" }
for _, r in ipairs(relations) do
    for _, fct in ipairs(r.facts) do
        fl[#fl + 1] = r.id .. "\t" .. fct.subject .. "\t" .. fct.object
    end
    rl[#rl + 1] = string.format("%s\t%s\t%s\t%d\t%d\t%s\t%.4f", r.id, r.label, r.source, #r.facts,
        r.distinct, r.majority_object, r.majority_baseline)
end
local t1 = write_atomic(outdir .. "/facts.tsv", fl)
local ok, t2 = pcall(write_atomic, outdir .. "/relations.tsv", rl)
if not ok then os.remove(t1); error(t2, 0) end
for _, p in ipairs({ { t1, outdir .. "/facts.tsv" }, { t2, outdir .. "/relations.tsv" } }) do
    local done, err = os.rename(p[1], p[2])
    if not done then error("build_facts: cannot rename " .. p[1] .. " to " .. p[2] .. ": " .. tostring(err), 0) end
end

print(string.format("%-6s %-50s %6s %8s %5s  %-12s %s", "id", "label", "facts", "objects", "cap",
    "majority", "baseline"))
for _, r in ipairs(relations) do
    print(string.format("%-6s %-50s %6d %8d %5d  %-12s %.4f", r.id, r.label, #r.facts, r.distinct, r.cap,
        r.majority_object, r.majority_baseline))
end
print(string.format("total facts: %d in %d relations -> %s/facts.tsv, %s/relations.tsv", total,
    #relations, outdir, outdir))

/* tokenizer_load.c: reads a model folder's tokenizer files into a kn_tokenizer (see tokenizer.h).
 * Which files decide, as in Hugging Face's AutoTokenizer: tokenizer.json when present (a fast
 * tokenizer: WordPiece or BPE model, normalizer, pre-tokenizer, post-processor, added tokens),
 * else vocab.json + merges.txt (slow GPT2Tokenizer / Qwen2Tokenizer), else vocab.txt (slow
 * BertTokenizer). tokenizer_config.json (and special_tokens_map.json, added_tokens.json) add the
 * special tokens, the added tokens, the BERT options and whether BOS/EOS are added; with no
 * tokenizer_config.json the class defaults apply (BertTokenizer: do_lower_case true). A key with a
 * value of the wrong type, a token it names that the vocabulary lacks, or a setting knwb cannot
 * honour is refused with the file and the key. */
#include "alloc.h"
#include "fileio.h"
#include "tokenizer_impl.h"
#include "unicode.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define JSON_MAX_BYTES ((size_t)256 << 20)  /* tokenizer.json: Llama-3's is 9 MB, Gemma's 17 MB */
#define CONFIG_MAX_BYTES ((size_t)16 << 20) /* tokenizer_config.json (chat templates, added tokens) */
#define TEXT_MAX_BYTES ((size_t)64 << 20)   /* vocab.txt, vocab.json, merges.txt */

static const char *const special_keys[KN_SPECIAL_COUNT] = {"pad_token", "unk_token", "cls_token", "sep_token",
                                                          "mask_token", "bos_token", "eos_token"};

typedef struct {
    const char *dir;
    kn_tokenizer *t;
    kn_err *err;
    json_t *cfg;          /* tokenizer_config.json, or NULL */
    json_t *stm;          /* special_tokens_map.json, or NULL */
    char cfg_path[4200];
} loader;

static void path_of(char *out, size_t cap, const char *dir, const char *name) {
    size_t n = strlen(dir);
    snprintf(out, cap, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

/* 1 when dir/name exists (as anything, a dangling link included: reading it then fails with a
 * message naming it), 0 when it does not. */
static int present(const char *dir, const char *name) {
    char p[4200];
    struct stat sb;
    path_of(p, sizeof p, dir, name);
    return lstat(p, &sb) == 0;
}

/* Reads dir/name whole and keeps its bytes to save them back; NULL on failure. */
static char *read_kept(loader *L, const char *name, size_t cap, const char *what, size_t *len) {
    char p[4200];
    path_of(p, sizeof p, L->dir, name);
    char *buf = kn_read_file(p, cap, what, len, L->err);
    if (!buf) return NULL;
    kn_tokenizer *t = L->t;
    char *copy = kn_malloc(*len + 1);
    if (!copy || t->nfiles == KN_TOK_MAX_FILES) {
        free(buf);
        free(copy);
        kn_fail(L->err, "%s: out of memory", p);
        return NULL;
    }
    memcpy(copy, buf, *len + 1);
    snprintf(t->files[t->nfiles].name, sizeof t->files[0].name, "%s", name);
    t->files[t->nfiles].data = copy;
    t->files[t->nfiles].len = *len;
    t->nfiles++;
    return buf;
}

static json_t *read_json(loader *L, const char *name, size_t cap, const char *what) {
    char p[4200];
    size_t len;
    path_of(p, sizeof p, L->dir, name);
    char *buf = read_kept(L, name, cap, what, &len);
    if (!buf) return NULL;
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!root) {
        kn_fail(L->err, "%s: invalid JSON at line %d column %d: %s", p, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        kn_fail(L->err, "%s: expected a JSON object at the top", p);
        return NULL;
    }
    return root;
}

/* A boolean key of tokenizer_config.json: 1/0, dflt when absent (or null when null_ok). */
static int cfg_bool(loader *L, const char *key, int dflt, int null_ok, int *out) {
    json_t *v = L->cfg ? json_object_get(L->cfg, key) : NULL;
    if (!v || (null_ok && json_is_null(v))) { *out = dflt; return 0; }
    if (!json_is_boolean(v))
        return kn_fail(L->err, "%s: \"%s\" must be true or false%s", L->cfg_path, key, null_ok ? " (or null)" : "");
    *out = json_is_true(v);
    return 0;
}

/* A token spelled as a string or as an AddedToken object {"content": ...}. */
static const char *token_content(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

/* ---- added tokens ---- */

static int add_token(loader *L, const char *content, size_t len, int id, int lstrip, int rstrip, int special,
                     const char *where) {
    kn_tokenizer *t = L->t;
    for (int i = 0; i < t->nadded; i++)
        if (t->added[i].id == id) {
            if (t->added[i].len == len && !memcmp(t->added[i].content, content, len)) {
                t->added[i].special |= special; /* listed twice (config and tokenizer.json) */
                return 0;
            }
            return kn_fail(L->err, "%s: added token \"%s\" has id %d, which is \"%s\"", where, content, id,
                           t->added[i].content);
        }
    if (len == 0) return kn_fail(L->err, "%s: added token %d is empty", where, id);
    if (kn_utf8_invalid_at(content, len) >= 0) return kn_fail(L->err, "%s: added token %d is not UTF-8", where, id);
    kn_added *a = kn_realloc(t->added, ((size_t)t->nadded + 1) * sizeof *a);
    if (!a) return kn_fail(L->err, "%s: out of memory", where);
    t->added = a;
    char *c = kn_malloc(len + 1);
    if (!c) return kn_fail(L->err, "%s: out of memory", where);
    memcpy(c, content, len);
    c[len] = '\0';
    a[t->nadded++] = (kn_added){c, len, id, lstrip, rstrip, special};
    return 0;
}

/* tokenizer.json added_tokens: [{id, content, single_word, lstrip, rstrip, normalized, special}]
 * or tokenizer_config.json added_tokens_decoder: {"id": {...}}. */
static int add_token_json(loader *L, json_t *o, int id, const char *where) {
    if (!json_is_object(o)) return kn_fail(L->err, "%s: expected an object", where);
    json_t *c = json_object_get(o, "content");
    if (!json_is_string(c)) return kn_fail(L->err, "%s: \"content\" must be a string", where);
    const char *bools[] = {"single_word", "lstrip", "rstrip", "special", "normalized"};
    int val[5] = {0};
    for (int i = 0; i < 5; i++) {
        json_t *v = json_object_get(o, bools[i]);
        if (v && !json_is_boolean(v)) return kn_fail(L->err, "%s: \"%s\" must be true or false", where, bools[i]);
        val[i] = v && json_is_true(v);
    }
    if (val[0])
        return kn_fail(L->err, "%s: added token \"%s\" has single_word true, which knwb does not implement", where,
                       json_string_value(c));
    return add_token(L, json_string_value(c), json_string_length(c), id, val[1], val[2], val[3], where);
}

static int max_added_id(json_t *list, int *max) {
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o) {
        json_t *id = json_object_get(o, "id");
        if (json_is_integer(id) && json_integer_value(id) >= 0 && json_integer_value(id) < (1 << 28) &&
            json_integer_value(id) > *max)
            *max = (int)json_integer_value(id);
    }
    return 0;
}

static int config_added_max(loader *L, int *max) {
    json_t *dec = L->cfg ? json_object_get(L->cfg, "added_tokens_decoder") : NULL;
    const char *key;
    json_t *v;
    if (!dec) return 0;
    if (!json_is_object(dec)) return kn_fail(L->err, "%s: \"added_tokens_decoder\" must be an object", L->cfg_path);
    json_object_foreach(dec, key, v) {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (*end || end == key || id < 0 || id >= (1 << 28) || errno)
            return kn_fail(L->err, "%s: added_tokens_decoder key \"%s\" is not a token id", L->cfg_path, key);
        if (id > *max) *max = (int)id;
    }
    return 0;
}

static int config_added(loader *L) {
    json_t *dec = L->cfg ? json_object_get(L->cfg, "added_tokens_decoder") : NULL;
    const char *key;
    json_t *v;
    json_object_foreach(dec, key, v) {
        char where[4400];
        snprintf(where, sizeof where, "%s added_tokens_decoder \"%s\"", L->cfg_path, key);
        if (add_token_json(L, v, atoi(key), where)) return -1;
    }
    return 0;
}

/* Puts every added token in the vocabulary: same id as an identical model token, or a new id. */
static int added_into_vocab(loader *L) {
    kn_tokenizer *t = L->t;
    for (int i = 0; i < t->nadded; i++) {
        kn_added *a = &t->added[i];
        int other = -1, rc = kn_strtab_set(&t->vocab, a->id, a->content, a->len, &other);
        if (rc == -3 && (t->vocab.len[a->id] != a->len || memcmp(t->vocab.tok[a->id], a->content, a->len)))
            return kn_fail(L->err, "%s: added token \"%s\" has id %d, which the vocabulary gives to \"%s\"", L->dir,
                           a->content, a->id, t->vocab.tok[a->id]);
        if (rc == -2 && other != a->id)
            return kn_fail(L->err, "%s: added token \"%s\" has id %d but the vocabulary has it as id %d", L->dir,
                           a->content, a->id, other);
        if (rc == -1) return kn_fail(L->err, "%s: out of memory", L->dir);
    }
    int gap = kn_strtab_missing(&t->vocab);
    if (gap >= 0)
        return kn_fail(L->err, "%s: no token has id %d (ids must run from 0 to %d without a gap)", L->dir, gap,
                       t->vocab.n - 1);
    return 0;
}

/* ---- special tokens ---- */

/* The token named by key in tokenizer_config.json (else special_tokens_map.json, else dflt):
 * its id, or -1 when it is null / absent and dflt is NULL or not in the vocabulary. A token named
 * by a file but missing from the vocabulary is refused. */
static int special_from_config(loader *L, int which, const char *dflt, int *id) {
    const char *key = special_keys[which];
    json_t *v = L->cfg ? json_object_get(L->cfg, key) : NULL;
    const char *file = L->cfg_path;
    char stm_path[4200];
    if (!v && L->stm) {
        v = json_object_get(L->stm, key);
        path_of(stm_path, sizeof stm_path, L->dir, "special_tokens_map.json");
        file = stm_path;
    }
    if (v && json_is_null(v)) { *id = -1; return 0; }
    if (v) {
        const char *s = token_content(v);
        if (!s) return kn_fail(L->err, "%s: \"%s\" must be a token string, an AddedToken object or null", file, key);
        *id = kn_strtab_find(&L->t->vocab, s, strlen(s));
        if (*id < 0) return kn_fail(L->err, "%s: %s \"%s\" is not in the vocabulary", file, key, s);
        return 0;
    }
    *id = dflt ? kn_strtab_find(&L->t->vocab, dflt, strlen(dflt)) : -1;
    return 0;
}

/* Special tokens that are not yet added tokens become added ones (slow tokenizers split the text
 * on every special token). */
static int specials_as_added(loader *L) {
    kn_tokenizer *t = L->t;
    for (int k = 0; k < KN_SPECIAL_COUNT; k++) {
        int id = t->special[k];
        if (id < 0) continue;
        if (add_token(L, t->vocab.tok[id], t->vocab.len[id], id, 0, 0, 1, L->dir)) return -1;
    }
    return 0;
}

/* post_processor: which special tokens go before and after a single text. */
static int post_processor(loader *L, json_t *pp, const char *file) {
    kn_tokenizer *t = L->t;
    if (!pp || json_is_null(pp)) return 0;
    const char *type = json_string_value(json_object_get(pp, "type"));
    char where[4400];
    snprintf(where, sizeof where, "%s post_processor \"%s\"", file, type ? type : "");
    if (!type) return kn_fail(L->err, "%s: no \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(pp, "processors"), *x;
        size_t i;
        if (!json_is_array(list)) return kn_fail(L->err, "%s: \"processors\" must be an array", where);
        json_array_foreach(list, i, x) if (post_processor(L, x, file)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) return 0; /* offsets only */
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(pp, "cls"), *sep = json_object_get(pp, "sep");
        const char *c = json_string_value(json_array_get(cls, 0)), *s = json_string_value(json_array_get(sep, 0));
        int ci = c ? kn_strtab_find(&t->vocab, c, strlen(c)) : -1, si = s ? kn_strtab_find(&t->vocab, s, strlen(s)) : -1;
        if (ci < 0 || si < 0) return kn_fail(L->err, "%s: \"cls\" and \"sep\" must name tokens of the vocabulary", where);
        t->prefix[0] = ci, t->nprefix = 1;
        t->suffix[0] = si, t->nsuffix = 1;
        return 0;
    }
    if (strcmp(type, "TemplateProcessing"))
        return kn_fail(L->err, "%s: unsupported post-processor (TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)", where);
    json_t *single = json_object_get(pp, "single"), *x;
    json_t *specials = json_object_get(pp, "special_tokens");
    size_t i;
    int seen_a = 0;
    if (!json_is_array(single)) return kn_fail(L->err, "%s: \"single\" must be an array", where);
    t->nprefix = t->nsuffix = 0;
    json_array_foreach(single, i, x) {
        json_t *sp = json_object_get(x, "SpecialToken");
        if (json_object_get(x, "Sequence")) {
            if (seen_a) return kn_fail(L->err, "%s: \"single\" holds the sequence twice", where);
            seen_a = 1;
            continue;
        }
        const char *name = json_string_value(json_object_get(sp, "id"));
        if (!name) return kn_fail(L->err, "%s: single[%zu] is neither a Sequence nor a SpecialToken", where, i);
        json_t *ids = json_object_get(json_object_get(specials, name), "ids");
        if (!json_is_array(ids) || json_array_size(ids) < 1)
            return kn_fail(L->err, "%s: special token \"%s\" has no ids in \"special_tokens\"", where, name);
        size_t j;
        json_t *idv;
        json_array_foreach(ids, j, idv) {
            json_int_t id = json_integer_value(idv);
            if (!json_is_integer(idv) || id < 0 || id >= t->vocab.n)
                return kn_fail(L->err, "%s: special token \"%s\" id is not in [0, %d)", where, name, t->vocab.n);
            int *list = seen_a ? t->suffix : t->prefix, *cnt = seen_a ? &t->nsuffix : &t->nprefix;
            if (*cnt == KN_TOK_MAX_AFFIX) return kn_fail(L->err, "%s: more than %d special tokens on one side", where, KN_TOK_MAX_AFFIX);
            list[(*cnt)++] = (int)id;
        }
    }
    if (!seen_a) return kn_fail(L->err, "%s: \"single\" has no Sequence", where);
    return 0;
}

/* ---- the three folder layouts ---- */

/* BERT options shared by the slow and fast paths: the config's keys when present. */
static int bert_options(loader *L, int lower_default, int strip_default, int chinese_default) {
    kn_wp *w = &L->t->wp;
    int strip;
    if (cfg_bool(L, "do_lower_case", lower_default, 0, &w->lower) ||
        cfg_bool(L, "tokenize_chinese_chars", chinese_default, 0, &w->chinese) ||
        cfg_bool(L, "strip_accents", strip_default, 1, &strip))
        return -1;
    w->strip_accents = strip < 0 ? w->lower : strip; /* null: follow do_lower_case */
    int basic;
    if (cfg_bool(L, "do_basic_tokenize", 1, 0, &basic)) return -1;
    if (!basic)
        return kn_fail(L->err, "%s: \"do_basic_tokenize\": false is not supported (knwb always runs BERT's basic tokenizer)", L->cfg_path);
    return 0;
}

static int load_vocab_txt(loader *L) {
    kn_tokenizer *t = L->t;
    char p[4200];
    size_t len;
    path_of(p, sizeof p, L->dir, "vocab.txt");
    char *buf = read_kept(L, "vocab.txt", TEXT_MAX_BYTES, "a vocab.txt", &len);
    if (!buf) return -1;
    char **toks;
    size_t *lens;
    int n, max_added = -1, rc = 0;
    if (kn_vocab_txt_lines(buf, len, p, &toks, &lens, &n, L->err)) { free(buf); return -1; }
    if (config_added_max(L, &max_added)) rc = -1;
    int total = max_added + 1 > n ? max_added + 1 : n;
    if (!rc && kn_strtab_init(&t->vocab, total)) rc = kn_fail(L->err, "%s: out of memory for %d tokens", p, n);
    for (int id = 0; id < n && !rc; id++) {
        long bad = kn_utf8_invalid_at(toks[id], lens[id]);
        int other = -1;
        if (bad >= 0) rc = kn_fail(L->err, "vocab file \"%s\" line %d: invalid UTF-8 at byte %ld of the token", p, id + 1, bad);
        else if ((rc = kn_strtab_set(&t->vocab, id, toks[id], lens[id], &other)) == -2)
            rc = kn_fail(L->err, "vocab file \"%s\": duplicate token \"%s\" on lines %d and %d (ids %d and %d)", p,
                         toks[id], other + 1, id + 1, other, id);
        else if (rc) rc = kn_fail(L->err, "%s: out of memory", p);
    }
    free(toks);
    free(lens);
    free(buf);
    if (rc) return -1;
    t->kind = KN_KIND_WORDPIECE;
    if (config_added(L) || added_into_vocab(L)) return -1;
    static const char *const dflt[KN_SPECIAL_COUNT] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", NULL, NULL};
    for (int k = 0; k < KN_SPECIAL_COUNT; k++)
        if (special_from_config(L, k, dflt[k], &t->special[k])) return -1;
    if (t->special[KN_SPECIAL_UNK] < 0) return kn_fail(L->err, "%s has no unknown token (unk_token, [UNK] by default)", p);
    if (specials_as_added(L)) return -1;
    /* BertTokenizer: do_lower_case true, strip_accents null, tokenize_chinese_chars true */
    if (bert_options(L, 1, -1, 1)) return -1;
    kn_wp *w = &t->wp;
    w->vocab = &t->vocab, w->unk = t->special[KN_SPECIAL_UNK], w->clean = 1, w->nfc = 0;
    memcpy(w->prefix, "##", 3), w->prefix_len = 2, w->max_chars = 100;
    /* never_split: the config's list and every special token */
    json_t *ns = L->cfg ? json_object_get(L->cfg, "never_split") : NULL, *x;
    size_t i, nn = ns && json_is_array(ns) ? json_array_size(ns) : 0;
    if (ns && !json_is_null(ns) && !json_is_array(ns))
        return kn_fail(L->err, "%s: \"never_split\" must be a list of strings or null", L->cfg_path);
    if (kn_strtab_init(&w->never, (int)nn + t->nadded)) return kn_fail(L->err, "%s: out of memory", p);
    int k = 0;
    json_array_foreach(ns, i, x) {
        if (!json_is_string(x) || json_string_length(x) >= 250)
            return kn_fail(L->err, "%s: never_split[%zu] must be a string shorter than 250 bytes", L->cfg_path, i);
        if (kn_strtab_set(&w->never, k, json_string_value(x), json_string_length(x), NULL) == -1)
            return kn_fail(L->err, "%s: out of memory", p);
        k++;
    }
    for (int j = 0; j < t->nadded; j++)
        if (t->added[j].special && t->added[j].len < 250 &&
            kn_strtab_set(&w->never, k++, t->added[j].content, t->added[j].len, NULL) == -1)
            return kn_fail(L->err, "%s: out of memory", p);
    w->never.n = k; /* duplicates left unset; the table only answers lookups */
    t->nprefix = t->nsuffix = 0;
    if (t->special[KN_SPECIAL_CLS] >= 0) t->prefix[t->nprefix++] = t->special[KN_SPECIAL_CLS];
    if (t->special[KN_SPECIAL_SEP] >= 0) t->suffix[t->nsuffix++] = t->special[KN_SPECIAL_SEP];
    return cfg_bool(L, "clean_up_tokenization_spaces", 1, 0, &t->cleanup);
}

/* Slow GPT2Tokenizer / Qwen2Tokenizer. */
static int load_vocab_merges(loader *L) {
    kn_tokenizer *t = L->t;
    char vp[4200], mp[4200];
    size_t vlen, mlen;
    path_of(vp, sizeof vp, L->dir, "vocab.json");
    path_of(mp, sizeof mp, L->dir, "merges.txt");
    json_t *vocab = read_json(L, "vocab.json", TEXT_MAX_BYTES, "a vocab.json");
    if (!vocab) return -1;
    int max_id = -1, rc = 0;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) if (json_is_integer(v) && json_integer_value(v) > max_id &&
                                           json_integer_value(v) < (1 << 28)) max_id = (int)json_integer_value(v);
    if (config_added_max(L, &max_id)) rc = -1;
    if (!rc) rc = kn_bpe_create(t, vocab, max_id + 1, vp, L->err);
    json_decref(vocab);
    if (rc) return -1;
    char *merges = read_kept(L, "merges.txt", TEXT_MAX_BYTES, "a merges.txt", &mlen);
    if (!merges) return -1;
    rc = kn_bpe_merges_txt(t, merges, mlen, mp, L->err);
    free(merges);
    (void)vlen;
    if (rc) return -1;
    const char *cls = L->cfg ? json_string_value(json_object_get(L->cfg, "tokenizer_class")) : NULL;
    int qwen = cls && !strncmp(cls, "Qwen2Tokenizer", 14);
    if (cls && strcmp(cls, "GPT2Tokenizer") && strcmp(cls, "GPT2TokenizerFast") && !qwen)
        return kn_fail(L->err, "%s: tokenizer_class \"%s\" with vocab.json + merges.txt is not supported "
                       "(GPT2Tokenizer, Qwen2Tokenizer; or give the folder a tokenizer.json)", L->cfg_path, cls);
    if (kn_bpe_slow_bytelevel(t, qwen ? kn_qwen2_regex : kn_gpt2_regex, mp, L->err)) return -1;
    t->text_nfc = qwen; /* Qwen2Tokenizer.prepare_for_tokenization: NFC */
    if (config_added(L) || added_into_vocab(L)) return -1;
    const char *eot = "<|endoftext|>";
    const char *dflt[KN_SPECIAL_COUNT] = {NULL, qwen ? NULL : eot, NULL, NULL, NULL, qwen ? NULL : eot, eot};
    if (qwen) dflt[KN_SPECIAL_PAD] = eot;
    for (int k = 0; k < KN_SPECIAL_COUNT; k++)
        if (special_from_config(L, k, dflt[k], &t->special[k])) return -1;
    if (specials_as_added(L)) return -1;
    if (cfg_bool(L, "add_prefix_space", 0, 0, &t->text_prefix_space)) return -1;
    return cfg_bool(L, "clean_up_tokenization_spaces", 0, 0, &t->cleanup);
}

static int load_tokenizer_json(loader *L) {
    kn_tokenizer *t = L->t;
    char p[4200];
    path_of(p, sizeof p, L->dir, "tokenizer.json");
    json_t *root = read_json(L, "tokenizer.json", JSON_MAX_BYTES, "a tokenizer.json");
    if (!root) return -1;
    int rc = -1;
    json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    const char *type = json_string_value(json_object_get(model, "type"));
    json_t *trunc = json_object_get(root, "truncation"), *pad = json_object_get(root, "padding");
    if (!json_is_object(model) || !type) { kn_fail(L->err, "%s: no \"model\" with a \"type\"", p); goto done; }
    if (trunc && !json_is_null(trunc)) { kn_fail(L->err, "%s: \"truncation\" must be null (knwb never truncates a prompt)", p); goto done; }
    if (pad && !json_is_null(pad)) { kn_fail(L->err, "%s: \"padding\" must be null", p); goto done; }
    if (!json_is_object(vocab)) { kn_fail(L->err, "%s: model.vocab must be an object token -> id", p); goto done; }
    if (added && !json_is_array(added)) { kn_fail(L->err, "%s: \"added_tokens\" must be an array", p); goto done; }
    int max_id = -1;
    const char *key;
    json_t *v, *x;
    size_t i;
    json_object_foreach(vocab, key, v) if (json_is_integer(v) && json_integer_value(v) > max_id &&
                                           json_integer_value(v) < (1 << 28)) max_id = (int)json_integer_value(v);
    max_added_id(added, &max_id);
    if (config_added_max(L, &max_id)) goto done;
    json_array_foreach(added, i, x) {
        char where[4400];
        snprintf(where, sizeof where, "%s added_tokens[%zu]", p, i);
        json_t *id = json_object_get(x, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > max_id) {
            kn_fail(L->err, "%s: \"id\" must be a token id", where);
            goto done;
        }
        if (add_token_json(L, x, (int)json_integer_value(id), where)) goto done;
    }
    if (!strcmp(type, "BPE")) {
        if (kn_bpe_create(t, vocab, max_id + 1, p, L->err) ||
            kn_bpe_merges_json(t, json_object_get(model, "merges"), p, L->err) ||
            kn_bpe_configure(t, model, json_object_get(root, "normalizer"), json_object_get(root, "pre_tokenizer"),
                             json_object_get(root, "decoder"), p, L->err))
            goto done;
    } else if (!strcmp(type, "WordPiece")) {
        if (kn_strtab_init(&t->vocab, max_id + 1)) { kn_fail(L->err, "%s: out of memory", p); goto done; }
        json_object_foreach(vocab, key, v) {
            json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
            int other;
            if (id < 0 || id > max_id) { kn_fail(L->err, "%s: model.vocab \"%s\" has no valid id", p, key); goto done; }
            int r = kn_strtab_set(&t->vocab, (int)id, key, strlen(key), &other);
            if (r == -3) { kn_fail(L->err, "%s: model.vocab entries \"%s\" and \"%s\" share id %d", p, t->vocab.tok[id], key, (int)id); goto done; }
            if (r) { kn_fail(L->err, "%s: out of memory", p); goto done; }
        }
        t->kind = KN_KIND_WORDPIECE;
        kn_wp *w = &t->wp;
        json_t *norm = json_object_get(root, "normalizer"), *pre = json_object_get(root, "pre_tokenizer");
        const char *ntype = json_string_value(json_object_get(norm, "type"));
        const char *ptype = json_string_value(json_object_get(pre, "type"));
        int lower = 0, strip = -1, chinese = 0, clean = 0;
        if (norm && !json_is_null(norm)) {
            if (!ntype || strcmp(ntype, "BertNormalizer")) {
                kn_fail(L->err, "%s: normalizer \"%s\" with a WordPiece model is not supported (BertNormalizer or null)", p, ntype ? ntype : "");
                goto done;
            }
            const char *bk[] = {"lowercase", "handle_chinese_chars", "clean_text"};
            int *bv[] = {&lower, &chinese, &clean};
            for (int k = 0; k < 3; k++) {
                json_t *b = json_object_get(norm, bk[k]);
                if (b && !json_is_boolean(b)) { kn_fail(L->err, "%s: normalizer.%s must be true or false", p, bk[k]); goto done; }
                *bv[k] = b ? json_is_true(b) : 1;
            }
            json_t *sa = json_object_get(norm, "strip_accents");
            if (sa && !json_is_null(sa) && !json_is_boolean(sa)) { kn_fail(L->err, "%s: normalizer.strip_accents must be true, false or null", p); goto done; }
            strip = sa && !json_is_null(sa) ? json_is_true(sa) : -1;
        }
        if (!ptype || strcmp(ptype, "BertPreTokenizer")) {
            kn_fail(L->err, "%s: pre_tokenizer \"%s\" with a WordPiece model is not supported (BertPreTokenizer)", p, ptype ? ptype : "null");
            goto done;
        }
        /* tokenizer_config.json's keys, when given, win (BertTokenizerFast rebuilds the normalizer) */
        if (bert_options(L, lower, strip, chinese)) goto done;
        w->vocab = &t->vocab, w->clean = clean, w->nfc = 0;
        json_t *unk = json_object_get(model, "unk_token"), *pre_s = json_object_get(model, "continuing_subword_prefix");
        json_t *mx = json_object_get(model, "max_input_chars_per_word");
        w->unk = json_is_string(unk) ? kn_strtab_find(&t->vocab, json_string_value(unk), json_string_length(unk)) : -1;
        if (w->unk < 0) { kn_fail(L->err, "%s: model.unk_token must name a token of the vocabulary", p); goto done; }
        const char *pfx = json_is_string(pre_s) ? json_string_value(pre_s) : "##";
        if (strlen(pfx) >= sizeof w->prefix) { kn_fail(L->err, "%s: model.continuing_subword_prefix is too long", p); goto done; }
        memcpy(w->prefix, pfx, strlen(pfx) + 1);
        w->prefix_len = strlen(pfx);
        w->max_chars = json_is_integer(mx) ? (int)json_integer_value(mx) : 100;
        if (mx && (!json_is_integer(mx) || json_integer_value(mx) < 1 || json_integer_value(mx) > 100000)) {
            kn_fail(L->err, "%s: model.max_input_chars_per_word must be an integer in [1, 100000]", p);
            goto done;
        }
        json_t *dec = json_object_get(root, "decoder");
        json_t *cu = json_object_get(dec, "cleanup");
        t->cleanup = json_is_boolean(cu) ? json_is_true(cu) : 1;
    } else {
        kn_fail(L->err, "%s: model type \"%s\" is not supported (BPE, WordPiece)", p, type);
        goto done;
    }
    if (config_added(L) || added_into_vocab(L)) goto done;
    if (t->kind != KN_KIND_WORDPIECE) {
        /* add_prefix_space in the config: HF's GPT-2/Llama fast classes rebuild the pipeline to
         * follow it, so a value that disagrees with tokenizer.json cannot be honoured here */
        int cfg_space, has = L->cfg && json_object_get(L->cfg, "add_prefix_space") &&
                                 !json_is_null(json_object_get(L->cfg, "add_prefix_space"));
        if (has && cfg_bool(L, "add_prefix_space", 0, 0, &cfg_space)) goto done;
        if (has && cfg_space != kn_bpe_prefix_space(t)) {
            kn_fail(L->err, "%s: \"add_prefix_space\": %s disagrees with %s, whose pipeline %s a space; "
                    "re-save the tokenizer so that tokenizer.json says it", L->cfg_path, cfg_space ? "true" : "false", p,
                    cfg_space ? "does not prepend" : "prepends");
            goto done;
        }
        if (cfg_bool(L, "clean_up_tokenization_spaces", 0, 0, &t->cleanup)) goto done;
    } else {
        int cu = t->cleanup;
        if (cfg_bool(L, "clean_up_tokenization_spaces", cu, 0, &t->cleanup)) goto done;
    }
    /* specials: tokenizer_config.json names them; else the model's unk and the post-processor's */
    if (post_processor(L, json_object_get(root, "post_processor"), p)) goto done;
    {
        const char *unk_name = NULL;
        json_t *unk = json_object_get(model, "unk_token");
        if (json_is_string(unk)) unk_name = json_string_value(unk);
        int wp = t->kind == KN_KIND_WORDPIECE;
        const char *dflt[KN_SPECIAL_COUNT] = {wp ? "[PAD]" : NULL, unk_name, wp ? "[CLS]" : NULL, wp ? "[SEP]" : NULL,
                                              wp ? "[MASK]" : NULL, NULL, NULL};
        for (int k = 0; k < KN_SPECIAL_COUNT; k++)
            if (special_from_config(L, k, dflt[k], &t->special[k])) goto done;
        int *bos = &t->special[KN_SPECIAL_BOS], *eos = &t->special[KN_SPECIAL_EOS];
        if (!wp && *bos < 0 && t->nprefix == 1 && !(L->cfg && json_object_get(L->cfg, "bos_token"))) *bos = t->prefix[0];
        if (!wp && *eos < 0 && t->nsuffix == 1 && !(L->cfg && json_object_get(L->cfg, "eos_token"))) *eos = t->suffix[0];
        if (wp && t->nprefix == 1 && t->special[KN_SPECIAL_CLS] < 0) t->special[KN_SPECIAL_CLS] = t->prefix[0];
        if (wp && t->nsuffix == 1 && t->special[KN_SPECIAL_SEP] < 0) t->special[KN_SPECIAL_SEP] = t->suffix[0];
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* add_bos_token / add_eos_token, when the config states them. The classes whose code reads them
 * (LlamaTokenizer(Fast) and its CodeLlama / Gemma kin rebuild the template; the slow
 * GPT2Tokenizer prepends BOS), and a config naming no class, follow them. Other classes take
 * BOS/EOS from tokenizer.json's post-processor alone and HF ignores the keys: a value that
 * disagrees with the template is refused rather than silently dropped. */
static int bos_eos_flags(loader *L, int slow_gpt2) {
    kn_tokenizer *t = L->t;
    if (t->kind == KN_KIND_WORDPIECE || !L->cfg) return 0;
    const char *cls = json_string_value(json_object_get(L->cfg, "tokenizer_class"));
    static const char *const rebuild[] = {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer",
                                          "CodeLlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast"};
    int follows = !cls;
    for (size_t i = 0; cls && i < sizeof rebuild / sizeof *rebuild; i++) follows |= !strcmp(cls, rebuild[i]);
    const char *keys[2] = {"add_bos_token", "add_eos_token"};
    int which[2] = {KN_SPECIAL_BOS, KN_SPECIAL_EOS};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(L->cfg, keys[k]);
        if (!v) continue;
        if (!json_is_boolean(v)) return kn_fail(L->err, "%s: \"%s\" must be true or false", L->cfg_path, keys[k]);
        int *list = k ? t->suffix : t->prefix, *cnt = k ? &t->nsuffix : &t->nprefix;
        int on = json_is_true(v);
        if (!follows && !(slow_gpt2 && k == 0)) {
            int id = t->special[which[k]];
            int template_has = *cnt == 1 && list[0] == id;
            if (on != template_has && !(!on && *cnt == 0))
                return kn_fail(L->err, "%s: \"%s\": %s, but a %s takes %s from tokenizer.json's post_processor, "
                               "which %s it (Hugging Face ignores the key); make the two agree", L->cfg_path, keys[k],
                               on ? "true" : "false", cls, k ? "EOS" : "BOS", template_has ? "adds" : "does not add");
            continue;
        }
        *cnt = 0;
        if (on) {
            if (t->special[which[k]] < 0)
                return kn_fail(L->err, "%s: \"%s\" is true but there is no %s", L->cfg_path, keys[k], special_keys[which[k]]);
            list[(*cnt)++] = t->special[which[k]];
        }
    }
    return 0;
}

static kn_tokenizer *tokenizer_new(void) {
    kn_tokenizer *t = kn_calloc(1, sizeof *t);
    if (t)
        for (int k = 0; k < KN_SPECIAL_COUNT; k++) t->special[k] = -1;
    return t;
}

kn_tokenizer *kn_tokenizer_load(const char *dir, kn_err *err) {
    if (!dir) { kn_fail(err, "kn_tokenizer_load: folder is NULL"); return NULL; }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        kn_fail(err, "%s: not a folder (a tokenizer is read from a model folder holding tokenizer.json, "
                "vocab.json + merges.txt, or vocab.txt)", dir);
        return NULL;
    }
    loader L = {.dir = dir, .err = err};
    kn_tokenizer *t = L.t = tokenizer_new();
    if (!t) { kn_fail(err, "%s: out of memory", dir); return NULL; }
    path_of(L.cfg_path, sizeof L.cfg_path, dir, "tokenizer_config.json");
    int rc = 0;
    if (present(dir, "tokenizer_config.json") &&
        !(L.cfg = read_json(&L, "tokenizer_config.json", CONFIG_MAX_BYTES, "a tokenizer_config.json")))
        rc = -1;
    if (!rc && present(dir, "special_tokens_map.json") &&
        !(L.stm = read_json(&L, "special_tokens_map.json", CONFIG_MAX_BYTES, "a special_tokens_map.json")))
        rc = -1;
    if (!rc && present(dir, "added_tokens.json"))
        rc = kn_fail(err, "%s/added_tokens.json: not read by knwb (its tokens would be missing); "
                     "list them in tokenizer_config.json's added_tokens_decoder", dir);
    if (!rc) {
        if (present(dir, "tokenizer.json")) rc = load_tokenizer_json(&L);
        else if (present(dir, "vocab.json") || present(dir, "merges.txt")) {
            if (!present(dir, "vocab.json") || !present(dir, "merges.txt"))
                rc = kn_fail(err, "%s: has %s but not %s (a byte-level BPE tokenizer needs both)", dir,
                             present(dir, "vocab.json") ? "vocab.json" : "merges.txt",
                             present(dir, "vocab.json") ? "merges.txt" : "vocab.json");
            else rc = load_vocab_merges(&L);
        } else if (present(dir, "vocab.txt")) rc = load_vocab_txt(&L);
        else if (present(dir, "tokenizer.model"))
            rc = kn_fail(err, "%s: only tokenizer.model (SentencePiece) is there; knwb reads tokenizer.json "
                         "(save the tokenizer with a fast tokenizer to write one)", dir);
        else
            rc = kn_fail(err, "%s: no tokenizer files (expected tokenizer.json, vocab.json + merges.txt, or vocab.txt)", dir);
    }
    if (!rc) rc = bos_eos_flags(&L, !present(dir, "tokenizer.json"));
    if (L.cfg) json_decref(L.cfg);
    if (L.stm) json_decref(L.stm);
    if (rc) { kn_tokenizer_free(t); return NULL; }
    return t;
}

kn_tokenizer *kn_tokenizer_wordpiece(const char *const *tokens, int n, int lower, kn_err *err) {
    if (!tokens || n <= 0 || n > (1 << 26)) { kn_fail(err, "kn_tokenizer_wordpiece: %d tokens (need 1 to 2^26)", n); return NULL; }
    kn_tokenizer *t = tokenizer_new();
    loader L = {.dir = "token list", .t = t, .err = err};
    snprintf(L.cfg_path, sizeof L.cfg_path, "token list");
    if (!t || kn_strtab_init(&t->vocab, n)) { kn_tokenizer_free(t); kn_fail(err, "token list: out of memory"); return NULL; }
    for (int i = 0; i < n; i++) {
        int other = -1, rc = tokens[i] ? kn_strtab_set(&t->vocab, i, tokens[i], strlen(tokens[i]), &other) : -4;
        if (rc == -4) kn_fail(err, "token list index %d: token is NULL", i);
        else if (tokens[i] && kn_utf8_invalid_at(tokens[i], strlen(tokens[i])) >= 0)
            rc = kn_fail(err, "token list index %d: invalid UTF-8", i);
        else if (rc == -2) kn_fail(err, "token list: duplicate token \"%s\" on indices %d and %d", tokens[i], other, i);
        else if (rc) kn_fail(err, "token list: out of memory");
        if (rc) { kn_tokenizer_free(t); return NULL; }
    }
    t->kind = KN_KIND_WORDPIECE;
    static const char *const dflt[KN_SPECIAL_COUNT] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", NULL, NULL};
    for (int k = 0; k < KN_SPECIAL_COUNT; k++) special_from_config(&L, k, dflt[k], &t->special[k]);
    if (t->special[KN_SPECIAL_UNK] < 0) {
        kn_tokenizer_free(t);
        kn_fail(err, "token list has no [UNK] token");
        return NULL;
    }
    kn_wp *w = &t->wp;
    w->vocab = &t->vocab, w->unk = t->special[KN_SPECIAL_UNK], w->lower = lower ? 1 : 0;
    w->strip_accents = w->lower, w->chinese = 1, w->clean = 1, w->nfc = 0;
    memcpy(w->prefix, "##", 3), w->prefix_len = 2, w->max_chars = 100;
    int rc = specials_as_added(&L);
    if (!rc && kn_strtab_init(&w->never, t->nadded)) rc = kn_fail(err, "token list: out of memory");
    for (int j = 0; j < t->nadded && !rc; j++)
        if (kn_strtab_set(&w->never, j, t->added[j].content, t->added[j].len, NULL) == -1) rc = kn_fail(err, "token list: out of memory");
    if (rc) { kn_tokenizer_free(t); return NULL; }
    if (t->special[KN_SPECIAL_CLS] >= 0) t->prefix[t->nprefix++] = t->special[KN_SPECIAL_CLS];
    if (t->special[KN_SPECIAL_SEP] >= 0) t->suffix[t->nsuffix++] = t->special[KN_SPECIAL_SEP];
    t->cleanup = 1;
    return t;
}

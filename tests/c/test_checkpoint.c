/* test_checkpoint.c: loading and saving checkpoints (core/safetensors.c, core/model.c).
 *
 * 1. Malformed safetensors files are refused with a message that names what is wrong, and never
 *    crash: synthetic files written byte by byte here (8-byte little-endian header length, JSON
 *    header, data) and corrupted copies of the `odd` fixture: a 3-byte file, a header length
 *    larger than the file, a file cut inside the header and one cut inside the data, data_offsets
 *    past the end, overlapping tensors (also when an empty tensor sits between them), unknown
 *    dtypes, a byte count that does not match shape x dtype, a non-JSON header, and a shape
 *    whose element count overflows. Also: F16/BF16 values convert exactly, and a header whose
 *    length leaves the F32 data unaligned still loads (as a copy) with the same logits.
 * 2. Bad model folders: a tensor whose shape does not fit config.json, a missing tensor,
 *    config.json missing a key / with hidden_size not divisible by the heads / not JSON /
 *    with hidden_act "relu", vocab.txt without [MASK] or with a size other than vocab_size,
 *    and a folder that does not exist.
 * 3. The BF16 fixture loads.
 * 4. Save and reload: `odd`, `gamma` (old LayerNorm.gamma/beta names, no decoder tensor) and a
 *    kn_model_create'd model come back with bit-identical weights and logits; the saved folder
 *    holds the four files and uses the standard names. kn_model_create is deterministic per seed.
 * Every file is written under a mkdtemp directory in /tmp that is removed at the end. */
#include "bert.h"
#include "edit.h"
#include "check.h"
#include "safetensors.h"
#include "wordpiece.h"

#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX "tests/fixtures/ref/"

static char tmp[64]; /* the mkdtemp directory */

/* ---------------------------------------------------------------- file helpers */

static char *tpath(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmp, name);
    return buf;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) printf("# cannot write %s\n", path);
    if (f) fclose(f);
}

/* Copies a fixture folder's config.json, model.safetensors and vocab.txt into tmp/dst. */
static void copy_fixture(const char *name, const char *dst, char *dir, size_t n) {
    tpath(dir, n, dst);
    mkdir(dir, 0777);
    const char *files[] = { "config.json", "model.safetensors", "vocab.txt" };
    for (int i = 0; i < 3; i++) {
        char src[256], out[256];
        size_t len;
        snprintf(src, sizeof src, FIX "%s/%s", name, files[i]);
        snprintf(out, sizeof out, "%s/%s", dir, files[i]);
        char *data = slurp(src, &len);
        if (data) spit(out, data, len);
        free(data);
    }
}

/* In dir/file, replaces the first occurrence of `from` by `to` (from == NULL: appends `to`).
 * Works on binary files; safetensors headers are edited with same-length strings. */
static void patch(const char *dir, const char *file, const char *from, const char *to) {
    char path[256];
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *data = slurp(path, &len);
    char *at = from ? memmem(data, len, from, strlen(from)) : data + len;
    if (!data || !at) {
        printf("# patch: \"%s\" not found in %s\n", from ? from : "", path);
        free(data);
        return;
    }
    size_t fl = from ? strlen(from) : 0, tl = strlen(to), head = (size_t)(at - data);
    char *out = malloc(len - fl + tl + 1);
    memcpy(out, data, head);
    memcpy(out + head, to, tl);
    memcpy(out + head + tl, at + fl, len - head - fl);
    spit(path, out, len - fl + tl);
    free(out);
    free(data);
}

static void cut(const char *path, uint64_t len) {
    if (truncate(path, (off_t)len) != 0) printf("# cannot truncate %s\n", path);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}
static void rm_tree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A synthetic safetensors file: header length (hlen < 0: the JSON's real length) as 8 bytes
 * little-endian, the JSON, then data_len bytes of data (0, 1, 2, ...). */
static void write_st(const char *path, int64_t hlen, const char *json, size_t data_len) {
    size_t jl = strlen(json);
    uint64_t h = hlen < 0 ? jl : (uint64_t)hlen;
    unsigned char *buf = malloc(8 + jl + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(h >> (8 * i));
    memcpy(buf + 8, json, jl);
    for (size_t i = 0; i < data_len; i++) buf[8 + jl + i] = (unsigned char)i;
    spit(path, buf, 8 + jl + data_len);
    free(buf);
}

/* ---------------------------------------------------------------- expectations */

/* st_open / kn_model_load must fail and the message must contain every needle. */
#define NEEDLES(...) ((const char *[]){ __VA_ARGS__, NULL })

static void needles_in(const char *what, const char *msg, const char **needles) {
    for (int i = 0; needles[i]; i++) CHECK_MSG(msg, needles[i], what);
}

static void expect_st_fail(const char *what, const char *path, const char **needles) {
    kn_err err = { "" };
    st_file *f = st_open(path, &err);
    CHECK(f == NULL, "%s: st_open refuses the file", what);
    if (f) { st_close(f); return; }
    needles_in(what, err.msg, needles);
}

static void expect_load_fail(const char *what, const char *dir, const char **needles) {
    kn_err err = { "" };
    kn_model *m = kn_model_load(dir, &err);
    CHECK(m == NULL, "%s: kn_model_load refuses the folder", what);
    if (m) { kn_model_free(m); return; }
    needles_in(what, err.msg, needles);
}

/* Runs st_open in a child process, so that a crash or a sanitizer abort inside core is reported
 * as a failed check instead of ending this test. Returns 1 if the child saw st_open refuse the
 * file with a message containing needle; describes the outcome in out. */
static int st_refuses_in_child(const char *path, const char *needle, char *out, size_t n) {
    int fd[2];
    if (pipe(fd) != 0) { snprintf(out, n, "pipe failed"); return 0; }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        kn_err err = { "" };
        st_file *f = st_open(path, &err);
        if (f) { st_close(f); _exit(2); }
        ssize_t w = write(fd[1], err.msg, strlen(err.msg));
        (void)w;
        _exit(0);
    }
    close(fd[1]);
    char msg[KN_ERRLEN] = "";
    size_t got = 0;
    ssize_t r;
    while (got + 1 < sizeof msg && (r = read(fd[0], msg + got, sizeof msg - 1 - got)) > 0) got += (size_t)r;
    msg[got] = '\0';
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) { snprintf(out, n, "child killed by signal %d", WTERMSIG(status)); return 0; }
    int code = WEXITSTATUS(status);
    if (code == 2) { snprintf(out, n, "the file was accepted"); return 0; }
    if (code != 0) { snprintf(out, n, "child exited with status %d (sanitizer report above?)", code); return 0; }
    snprintf(out, n, "%s", msg);
    return strstr(msg, needle) != NULL;
}

/* ---------------------------------------------------------------- forward helper */

/* Logits [B*T, V] of a fixed batch (second row padded after 6 tokens), malloc'd; NULL on error. */
enum { B = 2, T = 9 };
static float *logits_of(const kn_model *m) {
    int V = m->cfg.vocab_size, ids[B * T], types[B * T], attn[B * T], rows[B * T];
    for (int i = 0; i < B * T; i++) {
        int t = i % T;
        ids[i] = t == 0 ? 2 : t == 3 ? 4 : 5 + (i * 7) % (V - 5);
        types[i] = i < T && t >= 5;
        attn[i] = i < T || t < 6;
        rows[i] = i;
    }
    kn_err err = { "" };
    bert_acts *a = bert_acts_new(&m->cfg, B, T, B * T, &err);
    if (!a || bert_forward(m, a, ids, types, attn, B, T, rows, B * T, NULL, 0, &err) != 0) {
        printf("# forward failed: %s\n", err.msg);
        bert_acts_free(a);
        return NULL;
    }
    float *out = malloc(sizeof(float) * B * T * V);
    memcpy(out, a->logits, sizeof(float) * B * T * V);
    bert_acts_free(a);
    return out;
}

/* 1 if both models have the same parameter table and every weight is bit-identical. */
static int same_weights(const kn_model *a, const kn_model *b) {
    if (a->nparams != b->nparams || a->nweights != b->nweights) return 0;
    for (int i = 0; i < a->nparams; i++)
        if (strcmp(a->params[i].name, b->params[i].name) != 0 || a->params[i].numel != b->params[i].numel ||
            memcmp(a->params[i].data, b->params[i].data, sizeof(float) * a->params[i].numel) != 0)
            return 0;
    return 1;
}

static int same_logits(const kn_model *a, const kn_model *b) {
    float *la = logits_of(a), *lb = logits_of(b);
    int same = la && lb && a->cfg.vocab_size == b->cfg.vocab_size &&
               memcmp(la, lb, sizeof(float) * B * T * a->cfg.vocab_size) == 0;
    free(la);
    free(lb);
    return same;
}

/* ---------------------------------------------------------------- 1. safetensors */

static void test_synthetic_safetensors(void) {
    printf("# synthetic safetensors files\n");
    char p[256];
    tpath(p, sizeof p, "syn.safetensors");
    kn_err err = { "" };

    /* a well-formed file, so the failures below are about the one thing each breaks */
    write_st(p, -1, "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    st_file *f = st_open(p, &err);
    CHECK(f && f->n == 1 && f->tensors[0].numel == 4 && f->tensors[0].ndim == 2, "well-formed synthetic file opens (%s)",
          f ? "ok" : err.msg);
    st_close(f);

    /* F16 and BF16 data converts to float32: 1, -2, the smallest subnormal 2^-24, +inf */
    {
        const unsigned char raw[16] = { 0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0x00, 0x7C,   /* F16 */
                                        0x80, 0x3F, 0x00, 0xC0, 0x00, 0x00, 0x80, 0x7F }; /* BF16 */
        const char *json = "{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                           "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[8,16]}}";
        size_t jl = strlen(json);
        unsigned char *buf = malloc(8 + jl + 16);
        for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)jl >> (8 * i));
        memcpy(buf + 8, json, jl);
        memcpy(buf + 8 + jl, raw, 16);
        spit(p, buf, 8 + jl + 16);
        free(buf);
        f = st_open(p, &err);
        float h[4] = { 0 }, b[4] = { 0 };
        const st_tensor *th = f ? st_find(f, "h") : NULL, *tb = f ? st_find(f, "b") : NULL;
        if (th && tb) { st_to_f32(th, h); st_to_f32(tb, b); }
        CHECK(th && tb && h[0] == 1 && h[1] == -2 && h[2] == ldexpf(1, -24) && isinf(h[3]) && h[3] > 0,
              "F16 [1, -2, 2^-24, inf] converts exactly (got %g %g %g %g)", h[0], h[1], h[2], h[3]);
        CHECK(th && tb && b[0] == 1 && b[1] == -2 && b[2] == 0 && isinf(b[3]) && b[3] > 0,
              "BF16 [1, -2, 0, inf] converts exactly (got %g %g %g %g)", b[0], b[1], b[2], b[3]);
        st_close(f);
    }

    write_st(p, -1, "", 0);
    cut(p, 3);
    expect_st_fail("3-byte file", p, NEEDLES("truncated", "3 bytes"));

    write_st(p, 1000, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_st_fail("oversized header length", p, NEEDLES("header length 1000", "exceeds the file"));

    write_st(p, -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    expect_st_fail("data_offsets past the end", p, NEEDLES("'a'", "[0, 16]", "past the end", "8 bytes"));

    write_st(p, -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", 16);
    expect_st_fail("reversed data_offsets", p, NEEDLES("'a'", "not an ordered range"));

    write_st(p, -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24);
    expect_st_fail("overlapping tensors", p, NEEDLES("'a'", "'b'", "overlap"));

    /* an empty tensor lying between two overlapping ones must not hide the overlap */
    write_st(p, -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                    "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
    expect_st_fail("overlap behind an empty tensor", p, NEEDLES("'a'", "'c'", "overlap"));

    /* every safetensors dtype is read (a model refuses only the ones it would compute with);
     * their byte ranges are validated with their own element sizes */
    write_st(p, -1, "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                    "\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[16,19]}}", 19);
    {
        st_file *f = st_open(p, &err);
        CHECK(f && st_find(f, "ids") && st_find(f, "ids")->dtype == ST_I64 && st_find(f, "m")->dtype == ST_BOOL,
              "I64 and BOOL tensors are read (%s)", f ? "ok" : err.msg);
        st_close(f);
    }
    write_st(p, -1, "{\"w\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16);
    expect_st_fail("dtype F64 with 16 bytes for 3 elements", p, NEEDLES("'w'", "16 bytes", "F64 need 24"));
    write_st(p, -1, "{\"w\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16);
    expect_st_fail("unknown dtype", p, NEEDLES("Q7", "'w'", "unknown dtype"));

    write_st(p, -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16);
    expect_st_fail("shape/offset size mismatch (F32)", p, NEEDLES("'a'", "16 bytes", "need 12"));
    write_st(p, -1, "{\"h\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16);
    expect_st_fail("shape/offset size mismatch (BF16)", p, NEEDLES("'h'", "16 bytes", "BF16 need 12"));

    write_st(p, -1, "{\"a\": not json}", 0);
    expect_st_fail("non-JSON header", p, NEEDLES("not valid JSON", "byte"));
    write_st(p, -1, "[1, 2, 3]", 0);
    expect_st_fail("header that is a JSON array", p, NEEDLES("not a JSON object"));
    write_st(p, -1, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_st_fail("entry without dtype", p, NEEDLES("'a'", "dtype"));
    write_st(p, -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_st_fail("negative shape", p, NEEDLES("'a'", "shape[0]"));

    /* shape [2^40, 2^40]: each dimension is within the per-dimension limit, but the product
     * overflows int64 (signed overflow; 2^80 wraps to 0, which matches data_offsets [0, 0]).
     * Run in a child: under UBSan the overflow aborts the process. */
    write_st(p, -1, "{\"big\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,0]}}", 0);
    char got[KN_ERRLEN + 64];
    int ok = st_refuses_in_child(p, "too large", got, sizeof got);
    CHECK(ok, "shape whose element count overflows: refused as \"too large\" without UB (got: %s)", got);
}

static void test_fixture_safetensors(void) {
    printf("# corrupted copies of the odd fixture's model.safetensors\n");
    char dir[256], st[300];
    size_t len;
    snprintf(st, sizeof st, FIX "odd/model.safetensors");
    char *orig = slurp(st, &len);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)(unsigned char)orig[i] << (8 * i);
    free(orig);

    copy_fixture("odd", "cut_data", dir, sizeof dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    cut(st, 8 + hlen + (len - 8 - hlen) / 2);
    expect_st_fail("cut in the middle of the data", st, NEEDLES("model.safetensors", "past the end", "truncated"));
    expect_load_fail("folder with a cut model.safetensors", dir, NEEDLES("model.safetensors", "truncated"));

    copy_fixture("odd", "cut_header", dir, sizeof dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    cut(st, 100);
    char want[64];
    snprintf(want, sizeof want, "header length %llu", (unsigned long long)hlen);
    expect_st_fail("cut inside the header", st, NEEDLES(want, "exceeds the file", "100 bytes"));

    /* a header 2 bytes longer (trailing spaces): the F32 data is no longer 4-byte aligned, so the
     * loader must copy it instead of using it in place; the model is otherwise the same */
    copy_fixture("odd", "unaligned", dir, sizeof dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    orig = slurp(st, &len);
    char *moved = malloc(len + 2);
    uint64_t h2 = hlen + 2;
    for (int i = 0; i < 8; i++) moved[i] = (char)(h2 >> (8 * i));
    memcpy(moved + 8, orig + 8, hlen);
    moved[8 + hlen] = moved[9 + hlen] = ' ';
    memcpy(moved + 10 + hlen, orig + 8 + hlen, len - 8 - hlen);
    spit(st, moved, len + 2);
    free(moved);
    free(orig);
    kn_err err = { "" };
    kn_model *a = kn_model_load(dir, &err), *b = kn_model_load(FIX "odd", &err);
    CHECK(a && b && a->owned_len == a->nweights && same_logits(a, b),
          "unaligned F32 data: loads as a converted copy with bit-identical logits (%s)", a && b ? "ok" : err.msg);
    kn_model_free(a);
    kn_model_free(b);

    copy_fixture("odd", "past_end", dir, sizeof dir);
    patch(dir, "model.safetensors", "\"cls.predictions.transform.dense.weight\":{\"data_offsets\":[141532,146716]",
          "\"cls.predictions.transform.dense.weight\":{\"data_offsets\":[141532,946716]");
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    expect_st_fail("fixture: data_offsets past the end", st,
                   NEEDLES("'cls.predictions.transform.dense.weight'", "946716", "past the end"));

    copy_fixture("odd", "overlap", dir, sizeof dir);
    patch(dir, "model.safetensors", "\"bert.embeddings.LayerNorm.weight\":{\"data_offsets\":[144,288]",
          "\"bert.embeddings.LayerNorm.weight\":{\"data_offsets\":[100,244]");
    expect_load_fail("fixture: overlapping tensors", dir,
                     NEEDLES("'bert.embeddings.LayerNorm.bias'", "'bert.embeddings.LayerNorm.weight'", "overlap"));

    copy_fixture("odd", "dtype", dir, sizeof dir);
    patch(dir, "model.safetensors", "\"bert.embeddings.LayerNorm.weight\":{\"data_offsets\":[144,288],\"dtype\":\"F32\"",
          "\"bert.embeddings.LayerNorm.weight\":{\"data_offsets\":[144,288],\"dtype\":\"F64\"");
    expect_load_fail("fixture: dtype F64", dir, NEEDLES("F64", "'bert.embeddings.LayerNorm.weight'"));

    copy_fixture("odd", "size", dir, sizeof dir);
    patch(dir, "model.safetensors", "\"bert.embeddings.LayerNorm.weight\":{\"data_offsets\":[144,288],\"dtype\":\"F32\",\"shape\":[36]",
          "\"bert.embeddings.LayerNorm.weight\":{\"data_offsets\":[144,288],\"dtype\":\"F32\",\"shape\":[35]");
    expect_load_fail("fixture: size does not match shape", dir,
                     NEEDLES("'bert.embeddings.LayerNorm.weight'", "144 bytes", "need 140"));

    copy_fixture("odd", "notjson", dir, sizeof dir);
    patch(dir, "model.safetensors", "{\"__metadata__\"", "[\"__metadata__\"");
    expect_load_fail("fixture: header is not JSON", dir, NEEDLES("model.safetensors", "not valid JSON"));
}

/* ---------------------------------------------------------------- 2. model folders */

static void test_bad_folders(void) {
    printf("# bad model folders\n");
    char dir[256];

    copy_fixture("gamma", "shape", dir, sizeof dir);
    patch(dir, "config.json", "\"intermediate_size\": 64", "\"intermediate_size\": 48");
    expect_load_fail("intermediate_size 48 against 64-wide tensors", dir,
                     NEEDLES("'bert.encoder.layer.1.output.dense.weight'", "[32, 64]", "[32, 48]"));

    copy_fixture("odd", "missing", dir, sizeof dir);
    patch(dir, "model.safetensors", "\"bert.encoder.layer.1.output.dense.weight\"", "\"bert.encoder.layer.1.output.dense.weighX\"");
    expect_load_fail("missing tensor", dir, NEEDLES("'bert.encoder.layer.1.output.dense.weight'", "missing", "model.safetensors"));

    copy_fixture("gamma", "nokey", dir, sizeof dir);
    patch(dir, "config.json", "\"hidden_size\": 32,", "");
    expect_load_fail("config.json without hidden_size", dir, NEEDLES("\"hidden_size\"", "config.json", "missing"));

    copy_fixture("gamma", "heads", dir, sizeof dir);
    patch(dir, "config.json", "\"num_attention_heads\": 4", "\"num_attention_heads\": 5");
    expect_load_fail("hidden_size 32 with 5 heads", dir,
                     NEEDLES("config.json", "hidden_size 32 is not divisible by num_attention_heads 5"));

    /* line 9 of the fixture's config.json is `  "hidden_size": 32,` */
    copy_fixture("gamma", "badjson", dir, sizeof dir);
    patch(dir, "config.json", "\"hidden_size\": 32,", "\"hidden_size\": 32 oops,");
    expect_load_fail("config.json that is not JSON", dir, NEEDLES("config.json:9:", "invalid JSON"));

    copy_fixture("gamma", "quickgelu", dir, sizeof dir);
    patch(dir, "config.json", "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"quick_gelu\"");
    expect_load_fail("hidden_act quick_gelu", dir, NEEDLES("config.json", "hidden_act", "\"quick_gelu\"", "\"gelu_new\"", "\"relu\""));

    copy_fixture("gamma", "nomask", dir, sizeof dir);
    patch(dir, "vocab.txt", "[MASK]\n", "[MASQ]\n");
    expect_load_fail("vocab.txt without [MASK]", dir, NEEDLES("vocab.txt", "[MASK]"));

    copy_fixture("gamma", "vocabsize", dir, sizeof dir);
    patch(dir, "vocab.txt", NULL, "extra\n");
    expect_load_fail("vocab.txt with 61 tokens for vocab_size 60", dir, NEEDLES("vocab.txt", "61 tokens", "vocab_size 60"));

    copy_fixture("gamma", "noweights", dir, sizeof dir);
    char st[300];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    remove(st);
    expect_load_fail("folder without model.safetensors", dir, NEEDLES("model.safetensors", "no weights"));

    expect_load_fail("folder that does not exist", FIX "does-not-exist", NEEDLES(FIX "does-not-exist", "not a model folder"));
    expect_load_fail("a hub name, not a folder", "bert-base-cased",
                     NEEDLES("bert-base-cased", "does not download", "config.json", "vocab.txt", "model.safetensors"));
}

/* ---------------------------------------------------------------- 2b. BERT folders in the wild */

/* Copies every file of a fixture folder into tmp/dst. */
static void copy_folder(const char *name, const char *dst, char *dir, size_t n) {
    tpath(dir, n, dst);
    mkdir(dir, 0777);
    char src[256];
    snprintf(src, sizeof src, FIX "%s", name);
    DIR *d = opendir(src);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char from[600], to[600];
        size_t len;
        snprintf(from, sizeof from, "%s/%s", src, e->d_name);
        snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
        char *data = slurp(from, &len);
        if (data) spit(to, data, len);
        free(data);
    }
    if (d) closedir(d);
}

static void test_wild_folders(void) {
    printf("# BERT folders in the wild: refusals\n");
    char dir[256], path[300];

    /* a tensor the model computes with must have a float dtype (same-size I32 in place of F32) */
    copy_fixture("odd", "i32", dir, sizeof dir);
    patch(dir, "model.safetensors", "\"bert.embeddings.LayerNorm.weight\":{\"data_offsets\":[144,288],\"dtype\":\"F32\"",
          "\"bert.embeddings.LayerNorm.weight\":{\"data_offsets\":[144,288],\"dtype\":\"I32\"");
    expect_load_fail("a used tensor of dtype I32", dir, NEEDLES("'bert.embeddings.LayerNorm.weight'", "dtype I32", "F32, F16 or BF16"));

    /* a stored decoder that differs from the embeddings while config.json ties them */
    copy_folder("bert_untied", "tiedconflict", dir, sizeof dir);
    patch(dir, "config.json", "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
    expect_load_fail("tied config, different stored decoder", dir,
                     NEEDLES("'cls.predictions.decoder.weight'", "differs from the word embeddings", "tie_word_embeddings"));
    /* untied without a decoder */
    copy_fixture("gamma", "nodecoder", dir, sizeof dir);
    patch(dir, "config.json", "\"hidden_size\": 32,", "\"hidden_size\": 32, \"tie_word_embeddings\": false,");
    expect_load_fail("untied config without a decoder", dir,
                     NEEDLES("'cls.predictions.decoder.weight'", "missing", "tie_word_embeddings false"));
    copy_fixture("gamma", "tiebad", dir, sizeof dir);
    patch(dir, "config.json", "\"hidden_size\": 32,", "\"hidden_size\": 32, \"tie_word_embeddings\": 0,");
    expect_load_fail("tie_word_embeddings not a boolean", dir, NEEDLES("config.json", "tie_word_embeddings", "true or false"));

    /* shards: one missing, one tensor placed in the wrong shard */
    copy_folder("bert_sharded", "shardmissing", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    remove(path);
    expect_load_fail("a shard named by the index is missing", dir,
                     NEEDLES("model.safetensors.index.json", "\"model-00002-of-00002.safetensors\"", "missing"));
    copy_folder("bert_sharded", "shardwrong", dir, sizeof dir);
    patch(dir, "model.safetensors.index.json", "\"bert.embeddings.LayerNorm.bias\": \"model-00001-of-00002.safetensors\"",
          "\"bert.embeddings.LayerNorm.bias\": \"model-00002-of-00002.safetensors\"");
    expect_load_fail("the index places a tensor in the wrong shard", dir,
                     NEEDLES("'bert.embeddings.LayerNorm.bias'", "model-00002-of-00002.safetensors", "where the index places it"));
    copy_folder("bert_sharded", "shardpath", dir, sizeof dir);
    patch(dir, "model.safetensors.index.json", "\"bert.embeddings.LayerNorm.bias\": \"model-00001-of-00002.safetensors\"",
          "\"bert.embeddings.LayerNorm.bias\": \"../model-00001-of-00002.safetensors\"");
    expect_load_fail("a shard outside the folder", dir, NEEDLES("weight_map[\"bert.embeddings.LayerNorm.bias\"]", "a file in the model folder"));

    /* an I64 buffer that knwb skips is still validated: its byte range must match its shape */
    copy_folder("bert_i64pos", "i64bad", dir, sizeof dir);
    patch(dir, "model.safetensors", "\"bert.embeddings.position_ids\":{\"data_offsets\":[0,96],\"dtype\":\"I64\",\"shape\":[1,12]",
          "\"bert.embeddings.position_ids\":{\"data_offsets\":[0,96],\"dtype\":\"I64\",\"shape\":[1,13]");
    expect_load_fail("an unused I64 buffer whose bytes do not fit its shape", dir, NEEDLES("'bert.embeddings.position_ids'", "96 bytes", "I64 need 104"));

    /* pytorch_model.bin only */
    expect_load_fail("pytorch_model.bin only", FIX "bert_torchbin", NEEDLES("pytorch_model.bin", "safetensors"));
}

/* ---------------------------------------------------------------- 2c. hardening (issue 13) */

static void test_hardening(void) {
    printf("# absurd sizes, non-finite weights and results\n");
    char dir[256], path[300];
    kn_err err = { "" };

    /* sizes that used to overflow the parameter count or the weight count: refused by the
     * config's bounds, before any allocation */
    copy_fixture("odd", "layers", dir, sizeof dir);
    patch(dir, "config.json", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 134217728");
    expect_load_fail("num_hidden_layers 134217728", dir, NEEDLES("config.json", "\"num_hidden_layers\" = 134217728", "out of range [1, 1024]"));
    copy_fixture("odd", "hidden", dir, sizeof dir);
    patch(dir, "config.json", "\"hidden_size\": 36", "\"hidden_size\": 1073741824");
    expect_load_fail("hidden_size 1073741824", dir, NEEDLES("config.json", "\"hidden_size\" = 1073741824", "out of range [1, 65536]"));
    /* a plausible layer count that the file does not hold */
    copy_fixture("odd", "layers9", dir, sizeof dir);
    patch(dir, "config.json", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 9");
    expect_load_fail("num_hidden_layers 9 for a 3-layer file", dir,
                     NEEDLES("'bert.encoder.layer.8.output.dense.weight'", "missing", "num_hidden_layers 9"));

    /* a NaN weight: refused at load with the tensor and the first flat index */
    copy_fixture("odd", "nan", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file *f = st_open(path, &err);
    const st_tensor *t = f ? st_find(f, "bert.encoder.layer.1.intermediate.dense.weight") : NULL;
    long off = t ? (long)((char *)t->data - (char *)f->map) : -1;
    st_close(f);
    FILE *fp = off > 0 ? fopen(path, "r+b") : NULL;
    float bad[2] = { NAN, INFINITY };
    int wrote = fp && fseek(fp, off + 5 * 4, SEEK_SET) == 0 && fwrite(bad, 4, 2, fp) == 2;
    if (fp) fclose(fp);
    CHECK(wrote, "NaN written into layer 1's intermediate.dense.weight at flat index 5");
    expect_load_fail("a NaN weight", dir,
                     NEEDLES("'bert.encoder.layer.1.intermediate.dense.weight'", "non-finite", "nan", "flat index 5"));

    /* non-finite results: an intervention value that is not finite is refused; one that
     * overflows, or an edited value slot that does, stops the forward at the layer it reached */
    kn_model *m = kn_model_load(FIX "odd", &err);
    CHECK(m != NULL, "odd loads (%s)", m ? "ok" : err.msg);
    if (!m) return;
    int ids[6] = { 2, 7, 4, 9, 11, 3 }, head = 2;
    bert_acts *a = bert_acts_new(&m->cfg, 1, 6, 1, &err);
    kn_intervention iv = { .layer = 1, .row = -1, .pos = 2, .op = KN_SET, .n = 0, .scalar = NAN };
    int rc = bert_forward(m, a, ids, NULL, NULL, 1, 6, &head, 1, &iv, 1, &err);
    CHECK(rc != 0, "a NaN intervention value is refused");
    if (rc) needles_in("NaN intervention", err.msg, NEEDLES("intervention 1", "not finite"));
    iv.scalar = 3e38f;
    rc = bert_forward(m, a, ids, NULL, NULL, 1, 6, &head, 1, &iv, 1, &err);
    CHECK(rc != 0, "an intervention that overflows stops the forward");
    if (rc) needles_in("overflowing intervention", err.msg, NEEDLES("layer 1's output is non-finite", "position 2"));
    float *col = malloc(sizeof(float) * m->cfg.hidden);
    for (int r = 0; r < m->cfg.hidden; r++) col[r] = 3e38f;
    int l = 2, slot = 4;
    kn_edit *e = kn_edit_slots(m, 1, &l, &slot, col, "overflow", &err);
    iv = (kn_intervention){ .layer = 2, .row = -1, .pos = -1, .op = KN_SET, .n = 1, .idx = &slot, .scalar = 4.0f };
    rc = e ? bert_forward(m, a, ids, NULL, NULL, 1, 6, &head, 1, &iv, 1, &err) : 0;
    CHECK(e && rc != 0, "an edited value slot that overflows stops the forward");
    if (rc) needles_in("overflowing edit", err.msg, NEEDLES("layer 2's output is non-finite", "edited value slot"));
    if (e) kn_edit_undo(m, e, &err);
    rc = bert_forward(m, a, ids, NULL, NULL, 1, 6, &head, 1, NULL, 0, &err);
    CHECK(rc == 0, "after undoing the edit the forward is finite again (%s)", rc ? err.msg : "ok");
    free(col);
    bert_acts_free(a);
    kn_model_free(m);
}

/* ---------------------------------------------------------------- 3, 4. loading and saving */

static void test_save_reload(const char *name) {
    printf("# save and reload %s\n", name);
    char src[256], sub[64], dir[256], path[300];
    snprintf(src, sizeof src, FIX "%s", name);
    snprintf(sub, sizeof sub, "saved_%s", name);
    tpath(dir, sizeof dir, sub);
    kn_err err = { "" };
    kn_model *m = kn_model_load(src, &err);
    CHECK(m != NULL, "%s: load (%s)", name, m ? "ok" : err.msg);
    if (!m) return;
    int rc = kn_model_save(m, dir, &err);
    CHECK(rc == 0, "%s: kn_model_save (%s)", name, rc ? err.msg : "ok");
    const char *files[] = { "config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json" };
    int present = 0;
    struct stat sb;
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        present += stat(path, &sb) == 0 && sb.st_size > 0;
    }
    CHECK(present == 4, "%s: saved folder holds config.json, model.safetensors, vocab.txt, tokenizer_config.json (%d of 4)",
          name, present);

    /* the saved file uses the standard names: no gamma/beta, no tied decoder */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file *f = st_open(path, &err);
    if (f) {
        int old = 0;
        for (int i = 0; i < f->n; i++) old += strstr(f->tensors[i].name, ".gamma") || strstr(f->tensors[i].name, ".beta");
        /* the decoder is saved exactly when it is untied (HF omits a tied one) */
        int dec = st_find(f, "cls.predictions.decoder.weight") != NULL;
        CHECK(old == 0 && st_find(f, "bert.embeddings.LayerNorm.weight") && st_find(f, "bert.embeddings.LayerNorm.bias") &&
              st_find(f, "cls.predictions.bias") && dec == m->cfg.untied && f->n == m->nparams,
              "%s: saved tensors use the standard names (%d tensors, %d gamma/beta, decoder %s, model %s)", name, f->n, old,
              dec ? "present" : "omitted", m->cfg.untied ? "untied" : "tied");
        if (m->cfg.untied) {
            const kn_param *p = kn_model_param(m, "cls.predictions.decoder.weight");
            const st_tensor *t = st_find(f, "cls.predictions.decoder.weight");
            CHECK(p && t && memcmp(p->data, t->data, sizeof(float) * p->numel) == 0 &&
                  memcmp(p->data, m->w.word_emb, sizeof(float) * p->numel) != 0,
                  "%s: the saved decoder is the model's own, not the word embeddings", name);
        }
        st_close(f);
        snprintf(path, sizeof path, "%s/config.json", dir);
        size_t len;
        char *cj = slurp(path, &len);
        CHECK(cj && strstr(cj, m->cfg.untied ? "\"tie_word_embeddings\": false" : "\"tie_word_embeddings\": true") &&
              strstr(cj, m->cfg.act_name),
              "%s: saved config.json says tie_word_embeddings %s and hidden_act \"%s\"", name, m->cfg.untied ? "false" : "true",
              m->cfg.act_name);
        free(cj);
        f = NULL;
        st_close(f);
    } else {
        CHECK(0, "%s: saved model.safetensors opens (%s)", name, err.msg);
    }

    kn_model *r = kn_model_load(dir, &err);
    CHECK(r != NULL, "%s: reload (%s)", name, r ? "ok" : err.msg);
    if (r) {
        CHECK(memcmp(&r->cfg, &m->cfg, sizeof m->cfg) == 0, "%s: reloaded config equals the original", name);
        CHECK(same_weights(m, r), "%s: every reloaded weight is bit-identical", name);
        CHECK(same_logits(m, r), "%s: logits of the reloaded model are bit-identical", name);
    }
    kn_model_free(r);
    kn_model_free(m);
}

static kn_model *create(const bert_config *cfg, uint64_t seed) {
    kn_err err = { "" };
    kn_vocab *v = kn_vocab_load(FIX "odd/vocab.txt", 0, &err);
    kn_model *m = v ? kn_model_create(cfg, seed, v, &err) : NULL; /* takes the vocabulary */
    if (!m) {
        printf("# create failed: %s\n", err.msg);
        kn_vocab_free(v);
    }
    return m;
}

static void test_create(void) {
    printf("# kn_model_create\n");
    kn_err err = { "" };
    bert_config cfg;
    int rc = bert_config_load(FIX "odd/config.json", &cfg, &err);
    CHECK(rc == 0, "odd config.json parses (%s)", rc ? err.msg : "ok");
    if (rc) return;
    kn_model *a = create(&cfg, 7), *b = create(&cfg, 7), *c = create(&cfg, 8);
    CHECK(a && b && c, "three models created");
    if (a && b && c) {
        CHECK(same_weights(a, b), "same seed: every weight bit-identical");
        int matrices = 0, differ = 0;
        for (int i = 0; i < a->nparams; i++) {
            if (a->params[i].ndim != 2) continue;
            matrices++;
            differ += memcmp(a->params[i].data, c->params[i].data, sizeof(float) * a->params[i].numel) != 0;
        }
        CHECK(matrices > 0 && differ == matrices, "different seeds: %d of %d weight matrices differ", differ, matrices);
        const kn_param *ln = kn_model_param(a, "bert.encoder.layer.0.output.LayerNorm.weight");
        const kn_param *bias = kn_model_param(a, "bert.encoder.layer.0.output.LayerNorm.bias");
        CHECK(ln && bias && ln->data[0] == 1.0f && bias->data[0] == 0.0f, "LayerNorm starts at weight 1, bias 0");

        char dir[256];
        tpath(dir, sizeof dir, "created");
        rc = kn_model_save(a, dir, &err);
        CHECK(rc == 0, "created model saves (%s)", rc ? err.msg : "ok");
        kn_model *r = kn_model_load(dir, &err);
        CHECK(r != NULL, "created model reloads (%s)", r ? "ok" : err.msg);
        if (r) {
            CHECK(same_weights(a, r), "created model: every reloaded weight is bit-identical");
            CHECK(same_logits(a, r), "created model: reloaded logits are bit-identical");
        }
        kn_model_free(r);
    }
    kn_model_free(a);
    kn_model_free(b);
    kn_model_free(c);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/knwb-checkpoint-XXXXXX");
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }

    test_synthetic_safetensors();
    test_fixture_safetensors();
    test_bad_folders();

    kn_err err = { "" };
    kn_model *bf = kn_model_load(FIX "bf16", &err);
    CHECK(bf != NULL, "bf16 fixture loads (%s)", bf ? "ok" : err.msg);
    kn_model_free(bf);

    test_wild_folders();
    test_hardening();
    test_save_reload("odd");
    test_save_reload("gamma");
    test_save_reload("bert_untied");
    test_save_reload("bert_noprefix");
    test_save_reload("bert_decbias");
    test_save_reload("bert_i64pos");
    test_save_reload("bert_gelu_new");
    test_save_reload("bert_f16");
    test_save_reload("bert_sharded");
    test_create();

    rm_tree(tmp);
    struct stat sb;
    CHECK(stat(tmp, &sb) != 0, "temporary directory removed");
    return check_done();
}

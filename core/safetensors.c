/* safetensors.c: mmap reader and atomic writer of safetensors files (see safetensors.h).
 * The header is parsed with jansson. Validation is strict because a wrong offset here would
 * silently become wrong numbers everywhere: sizes must match shapes, ranges must lie inside
 * the file and must not overlap. */
#include "safetensors.h"
#include "alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* the format's own limit is 100 MB of header */

static const struct { const char *name; int size; } dtypes[ST_NDTYPES] = {
    [ST_F32] = { "F32", 4 },   [ST_F16] = { "F16", 2 },   [ST_BF16] = { "BF16", 2 }, [ST_F64] = { "F64", 8 },
    [ST_I64] = { "I64", 8 },   [ST_I32] = { "I32", 4 },   [ST_I16] = { "I16", 2 },   [ST_I8] = { "I8", 1 },
    [ST_U64] = { "U64", 8 },   [ST_U32] = { "U32", 4 },   [ST_U16] = { "U16", 2 },   [ST_U8] = { "U8", 1 },
    [ST_BOOL] = { "BOOL", 1 }, [ST_F8_E4M3] = { "F8_E4M3", 1 }, [ST_F8_E5M2] = { "F8_E5M2", 1 },
};

static int dtype_size(enum st_dtype d) { return d >= 0 && d < ST_NDTYPES ? dtypes[d].size : 0; }
int st_dtype_size(enum st_dtype d) { return dtype_size(d); }
int st_is_float(enum st_dtype d) { return d == ST_F32 || d == ST_F16 || d == ST_BF16; }

const char *st_dtype_name(enum st_dtype d) { return d >= 0 && d < ST_NDTYPES ? dtypes[d].name : "?"; }

void st_close(st_file *f) {
    if (!f) return;
    if (f->map && f->map != MAP_FAILED) munmap(f->map, f->map_len);
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    free(f);
}

static int cmp_begin(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int parse_entry(st_file *f, st_tensor *t, const char *name, json_t *v, uint64_t data_len,
                       kn_err *err) {
    const char *p = f->path;
    if (!json_is_object(v)) return kn_fail(err, "%s: tensor '%s': header entry is not an object", p, name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return kn_fail(err, "%s: tensor '%s': missing \"dtype\"", p, name);
    const char *d = json_string_value(dt);
    int known = 0;
    for (int k = 0; k < ST_NDTYPES && !known; k++)
        if (strcmp(d, dtypes[k].name) == 0) { t->dtype = (enum st_dtype)k; known = 1; }
    if (!known)
        return kn_fail(err, "%s: tensor '%s': unknown dtype \"%s\" (the safetensors dtypes are F64 F32 F16 BF16 "
                       "F8_E4M3 F8_E5M2 I64 I32 I16 I8 U64 U32 U16 U8 BOOL)", p, name, d);
    if (!json_is_array(sh) || json_array_size(sh) > 8)
        return kn_fail(err, "%s: tensor '%s': \"shape\" must be an array of at most 8 integers", p, name);
    t->ndim = (int)json_array_size(sh);
    t->numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *e = json_array_get(sh, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > (1LL << 40))
            return kn_fail(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", p, name, i);
        t->shape[i] = json_integer_value(e);
        /* check before multiplying: the product of two legal dimensions can overflow */
        if (t->shape[i] != 0 && t->numel > (1LL << 40) / t->shape[i])
            return kn_fail(err, "%s: tensor '%s': shape is too large", p, name);
        t->numel *= t->shape[i];
    }
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)))
        return kn_fail(err, "%s: tensor '%s': \"data_offsets\" must be [begin, end]", p, name);
    json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b)
        return kn_fail(err, "%s: tensor '%s': data_offsets [%lld, %lld] are not an ordered range", p, name,
                       (long long)b, (long long)e);
    if ((uint64_t)e > data_len)
        return kn_fail(err, "%s: tensor '%s': data_offsets [%lld, %lld] point past the end of the data (%llu bytes; file truncated?)",
                       p, name, (long long)b, (long long)e, (unsigned long long)data_len);
    if ((uint64_t)(e - b) != (uint64_t)t->numel * dtype_size(t->dtype))
        return kn_fail(err, "%s: tensor '%s': %lld bytes at offset %lld, but shape and dtype %s need %lld",
                       p, name, (long long)(e - b), (long long)b, d, (long long)(t->numel * dtype_size(t->dtype)));
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    return 0;
}

st_file *st_open(const char *path, kn_err *err) {
    st_file *f = kn_calloc(1, sizeof *f);
    if (!f) { kn_fail(err, "%s: out of memory", path); return NULL; }
    json_t *root = NULL;
    f->path = kn_strdup(path);
    if (!f->path) { kn_fail(err, "%s: out of memory", path); goto fail; }
    int fd = open(path, O_RDONLY);
    if (fd < 0) { kn_fail(err, "%s: cannot open: %s", path, strerror(errno)); goto fail; }
    struct stat sb;
    if (fstat(fd, &sb) != 0) { kn_fail(err, "%s: cannot stat: %s", path, strerror(errno)); close(fd); goto fail; }
    if (sb.st_size < 8) {
        kn_fail(err, "%s: truncated: %lld bytes, too short for the 8-byte header length", path, (long long)sb.st_size);
        close(fd);
        goto fail;
    }
    f->map_len = (size_t)sb.st_size;
    /* Private and writable: value-slot edits and training write copy-on-write pages. */
    f->map = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) { kn_fail(err, "%s: mmap failed: %s", path, strerror(errno)); goto fail; }
    uint64_t hlen;
    memcpy(&hlen, f->map, 8); /* the format is little-endian, as is every machine knwb targets */
    if (hlen > ST_MAX_HEADER || hlen > f->map_len - 8) {
        kn_fail(err, "%s: header length %llu exceeds the file (%zu bytes; truncated or not safetensors)",
                path, (unsigned long long)hlen, f->map_len);
        goto fail;
    }
    json_error_t jerr;
    root = json_loadb((const char *)f->map + 8, hlen, 0, &jerr);
    if (!root) { kn_fail(err, "%s: header is not valid JSON at byte %d: %s", path, jerr.position + 8, jerr.text); goto fail; }
    if (!json_is_object(root)) { kn_fail(err, "%s: header is not a JSON object", path); goto fail; }
    uint64_t data_off = 8 + hlen, data_len = f->map_len - data_off;
    f->tensors = kn_calloc(json_object_size(root) + 1, sizeof *f->tensors);
    if (!f->tensors) { kn_fail(err, "%s: out of memory for %zu tensor entries", path, json_object_size(root)); goto fail; }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        st_tensor *t = &f->tensors[f->n];
        t->name = kn_strdup(key);
        if (!t->name) { kn_fail(err, "%s: out of memory", path); goto fail; }
        f->n++;
        if (parse_entry(f, t, key, val, data_len, err) != 0) goto fail;
        t->data = (char *)f->map + data_off + t->begin;
    }
    /* overlapping ranges would alias two tensors: refuse. Walk the non-empty ranges in order of
     * their start, remembering the one that reaches furthest (an empty tensor between two
     * overlapping ones must not hide them). */
    st_tensor *sorted = kn_calloc((size_t)f->n + 1, sizeof *sorted);
    if (!sorted) { kn_fail(err, "%s: out of memory", path); goto fail; }
    memcpy(sorted, f->tensors, sizeof *sorted * f->n);
    qsort(sorted, f->n, sizeof *sorted, cmp_begin);
    const st_tensor *reach = NULL;
    for (int i = 0; i < f->n; i++) {
        if (sorted[i].end == sorted[i].begin) continue;
        if (reach && sorted[i].begin < reach->end) {
            kn_fail(err, "%s: tensors '%s' and '%s' overlap (bytes %llu..%llu and %llu..%llu)", path,
                    reach->name, sorted[i].name, (unsigned long long)reach->begin,
                    (unsigned long long)reach->end, (unsigned long long)sorted[i].begin,
                    (unsigned long long)sorted[i].end);
            free(sorted);
            goto fail;
        }
        if (!reach || sorted[i].end > reach->end) reach = &sorted[i];
    }
    free(sorted);
    json_decref(root);
    return f;
fail:
    if (root) json_decref(root);
    st_close(f);
    return NULL;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float out;
    if (exp == 0) {
        out = ldexpf((float)mant, -24); /* subnormal (or zero) */
        if (sign) out = -out;
        return out;
    }
    uint32_t bits = exp == 31 ? sign | 0x7f800000u | (mant << 13) : sign | ((exp + 112) << 23) | (mant << 13);
    memcpy(&out, &bits, 4);
    return out;
}

void st_to_f32(const st_tensor *t, float *dst) {
    const unsigned char *src = t->data;
    if (!st_is_float(t->dtype)) return; /* callers check st_is_float first */
    for (int64_t i = 0; i < t->numel; i++) {
        if (t->dtype == ST_F32) { memcpy(dst + i, src + 4 * i, 4); continue; }
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        if (t->dtype == ST_BF16) {
            uint32_t bits = (uint32_t)h << 16;
            memcpy(dst + i, &bits, 4);
        } else {
            dst[i] = half_to_float(h);
        }
    }
}

int st_write(const char *path, int n, const char *const *names, const int *ndim,
             const int64_t (*shapes)[8], const float *const *data, kn_err *err) {
    json_t *root = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        json_t *sh = json_array();
        for (int d = 0; d < ndim[i]; d++) {
            numel *= shapes[i][d];
            json_array_append_new(sh, json_integer(shapes[i][d]));
        }
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string("F32"));
        json_object_set_new(e, "shape", sh);
        json_t *o = json_array();
        json_array_append_new(o, json_integer((json_int_t)off));
        json_array_append_new(o, json_integer((json_int_t)(off + 4 * numel)));
        json_object_set_new(e, "data_offsets", o);
        json_object_set_new(root, names[i], e);
        off += 4 * (uint64_t)numel;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (!hdr) return kn_fail(err, "%s: cannot encode the header", path);
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) { free(hdr); return kn_fail(err, "%s: cannot write: %s", tmp, strerror(errno)); }
    uint64_t hlen = padded;
    int ok = fwrite(&hlen, 8, 1, fp) == 1 && fwrite(hdr, 1, hl, fp) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    free(hdr);
    for (int i = 0; ok && i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < ndim[i]; d++) numel *= shapes[i][d];
        ok = fwrite(data[i], 4, (size_t)numel, fp) == (size_t)numel;
    }
    if (fclose(fp) != 0) ok = 0;
    if (!ok) { unlink(tmp); return kn_fail(err, "%s: write failed: %s", tmp, strerror(errno)); }
    if (rename(tmp, path) != 0) { unlink(tmp); return kn_fail(err, "%s: cannot rename into place: %s", path, strerror(errno)); }
    return 0;
}

/* fuzz_safetensors.c: the safetensors reader (core/safetensors.c) on arbitrary files.
 * Property: st_open either refuses the file with a message or returns tensors whose ranges lie
 * inside the file, do not overlap and match their shape and dtype; converting every tensor to
 * float32 then reads only its own bytes (ASan checks that), and st_find finds each by name. */
#include "fuzz_common.h"
#include "safetensors.h"

static size_t dsize(enum st_dtype d) { return d == ST_F32 ? 4 : 2; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path(0, "model.safetensors");
    fuzz_write(path, data, size);
    kn_err err = { "" };
    st_file *f = st_open(path, &err);
    if (!f) {
        FUZZ_CHECK(err.msg[0] != '\0', "st_open failed without a message");
        return 0;
    }
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->tensors[i];
        FUZZ_CHECK(t->end >= t->begin && (t->end - t->begin) == (uint64_t)t->numel * dsize(t->dtype),
                   "tensor '%s': range does not match its shape", t->name);
        FUZZ_CHECK((const char *)t->data + (t->end - t->begin) <= (const char *)f->map + f->map_len,
                   "tensor '%s' reaches past the mapping", t->name);
        FUZZ_CHECK(st_find(f, t->name) != NULL, "st_find misses '%s'", t->name);
        float *dst = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        if (!dst) abort();
        st_to_f32(t, dst);
        free(dst);
    }
    st_close(f);
    return 0;
}

/* safetensors.h: reading and writing the safetensors format (Hugging Face's weight files).
 * A file is an 8-byte little-endian header length N, N bytes of JSON naming each tensor's dtype,
 * shape and [begin, end) byte range in the data that follows. Files are mmap'd privately
 * (copy-on-write), so F32 tensors are used in place and edits never reach the file on disk.
 * Every malformed file is refused with a message naming the file, the tensor and the offset. */
#ifndef KNWB_SAFETENSORS_H
#define KNWB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum st_dtype { ST_F32, ST_F16, ST_BF16 };

typedef struct st_tensor {
    char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[8];
    int64_t numel;
    uint64_t begin, end;  /* byte offsets relative to the data section */
    void *data;           /* points into the mapping */
} st_tensor;

typedef struct st_file {
    char *path;
    void *map;
    size_t map_len;
    int n;
    st_tensor *tensors;
} st_file;

st_file *st_open(const char *path, kn_err *err);
void st_close(st_file *f);
/* The tensor of that name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);
/* Copies a tensor into dst as float32 (converting F16/BF16). */
void st_to_f32(const st_tensor *t, float *dst);
const char *st_dtype_name(enum st_dtype d);

/* Writes n F32 tensors (names[i], ndim[i], shapes[i], data[i]) to path atomically
 * (temporary file + rename), with an 8-byte-aligned header. */
int st_write(const char *path, int n, const char *const *names, const int *ndim,
             const int64_t (*shapes)[8], const float *const *data, kn_err *err);

#endif

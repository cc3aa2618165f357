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

/* The float dtypes knwb computes with come first; the others are read (their byte ranges are
 * validated like any tensor's) so that a checkpoint carrying buffers knwb does not use (HF's I64
 * position_ids, a BOOL attention mask, an F64 head) still loads. st_is_float says which a model
 * may use; the loader refuses any other for a tensor it needs, naming it. */
enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16, ST_U8,
                ST_BOOL, ST_F8_E4M3, ST_F8_E5M2, ST_NDTYPES };

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
/* 1 for F32, F16, BF16: the dtypes st_to_f32 converts. */
int st_is_float(enum st_dtype d);
/* Bytes per element of a dtype. */
int st_dtype_size(enum st_dtype d);
/* Copies a tensor into dst as float32 (converting F16/BF16); only for st_is_float dtypes. */
void st_to_f32(const st_tensor *t, float *dst);
const char *st_dtype_name(enum st_dtype d);

/* Writes n F32 tensors (names[i], ndim[i], shapes[i], data[i]) to path atomically
 * (temporary file + rename), with an 8-byte-aligned header. */
int st_write(const char *path, int n, const char *const *names, const int *ndim,
             const int64_t (*shapes)[8], const float *const *data, kn_err *err);

#endif

/* fileio.h: reading and writing files so that bad input cannot hang or flood knwb and a killed
 * process never leaves a half-written output.
 * - Readers open only regular files (or symlinks to one): a FIFO, a device or a directory is
 *   refused before anything blocks, and whole-file reads have a size cap stated in the message.
 * - Writers go to a unique temporary name beside the target, check every write, fsync, close
 *   (checked) and rename over the target, then fsync the folder: a reader sees the old file or
 *   the new one, never a mix. A model folder is written whole into a sibling folder and swapped
 *   in with one atomic rename (kn_dir_replace).
 * - A fault-injection hook makes the n-th write-side operation fail, so tests can "kill" a save
 *   at every point and check what is left.
 * Temporary names contain ".knwb-tmp-"; loaders never read such names. */
#ifndef KNWB_FILEIO_H
#define KNWB_FILEIO_H

#include <stddef.h>

#include "error.h"

/* Opens path read-only, refusing anything but a regular file (symlinks are followed; a dangling
 * or looping link is an error naming it). Never blocks on a FIFO. Returns an fd or -1. */
int kn_open_regular(const char *path, kn_err *err);

/* Reads a whole regular file into a new buffer with a NUL after the last byte (the file may hold
 * NULs itself: *len is the byte count). Refuses files larger than max_bytes, saying so with both
 * sizes; `what` names the kind of file in that message ("a config.json"). Free with free(). */
char *kn_read_file(const char *path, size_t max_bytes, const char *what, size_t *len, kn_err *err);

/* An output file being written under a temporary name. */
typedef struct kn_atomic_file {
    char path[4096];   /* the final name */
    char tmp[4096];    /* the temporary name beside it */
    int fd;            /* -1 once closed */
} kn_atomic_file;

/* Creates the temporary file (mode 0644 minus the umask) in path's folder. */
int kn_atomic_open(kn_atomic_file *f, const char *path, kn_err *err);
/* Writes all n bytes (retrying partial writes). On failure the file is aborted. */
int kn_atomic_write(kn_atomic_file *f, const void *buf, size_t n, kn_err *err);
/* fsync, close, rename over path, fsync the folder. On failure the temporary file is removed and
 * path is untouched. */
int kn_atomic_commit(kn_atomic_file *f, kn_err *err);
/* Closes and removes the temporary file (safe to call twice, or after a failed call). */
void kn_atomic_abort(kn_atomic_file *f);
/* The three steps for a buffer already in memory. */
int kn_write_file_atomic(const char *path, const void *data, size_t len, kn_err *err);

/* Appends len bytes at the end of a regular file (created, mode 0666 minus the umask, if absent),
 * checking every write, then fsync (when sync) and a checked close. *offset (if not NULL) is
 * where the bytes begin. On failure the file is cut back to its old length, so an append is
 * all or nothing as far as a reader of the file's length can tell. For stores and logs that
 * grow by records; a killed process may still leave a partial tail, which readers must check. */
int kn_append_file(const char *path, const void *data, size_t len, int sync, long long *offset, kn_err *err);

/* mkdir -p, without a shell: every missing component is created (mode 0777 minus the umask).
 * An existing non-directory component is an error naming it. */
int kn_mkdirs(const char *path, kn_err *err);

/* Makes a new, empty, uniquely named folder beside dir (dir need not exist) to write a complete
 * replacement into; its name is written to out (cap bytes). */
int kn_dir_stage(const char *dir, char *out, size_t cap, kn_err *err);
/* Puts the folder `staged` (from kn_dir_stage, fully written and fsync'ed) in place of dir in one
 * atomic step (renameat2 RENAME_EXCHANGE when dir exists, rename otherwise), so that a process
 * killed at any point leaves dir as the old folder or the new one. Regular files of the old
 * folder that the new one lacks (a model card, a neurons file) are carried over first, as hard
 * links (copies where links fail). The old folder is then removed. On failure dir is untouched
 * and staged is removed. Stale staging folders of dir left by a killed process are removed. */
int kn_dir_replace(const char *staged, const char *dir, kn_err *err);
/* Removes a staging folder and the files in it (after a failed save). */
void kn_dir_discard(const char *staged);

/* Fault injection for tests: after kn_io_fail_after(n) with n >= 1, the n-th write-side
 * operation from then on (a write, fsync, rename, link or mkdir done by this file's functions)
 * fails with EIO, and so does every later one until kn_io_fail_after(0). */
void kn_io_fail_after(long n);
/* Write-side operations done since the last kn_io_fail_after call (to size a kill test). */
long kn_io_ops(void);

#endif

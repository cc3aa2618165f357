/* fileio.c: regular-file reads with caps, atomic writes, mkdir -p and atomic folder replacement
 * (see fileio.h for the contract). POSIX + Linux's renameat2; no shell is ever run. */
#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define TMP_MARK ".knwb-tmp-"

/* ---------------------------------------------------------------- fault injection */

static long fail_at, ops_done;

void kn_io_fail_after(long n) { fail_at = n > 0 ? n : 0; ops_done = 0; }
long kn_io_ops(void) { return ops_done; }

/* Counts one write-side operation; true when it must fail. */
static int injected(void) {
    ops_done++;
    if (fail_at && ops_done >= fail_at) { errno = EIO; return 1; }
    return 0;
}

/* ---------------------------------------------------------------- reading */

int kn_open_regular(const char *path, kn_err *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        struct stat lb;
        if (errno == ENOENT && lstat(path, &lb) == 0 && S_ISLNK(lb.st_mode))
            return kn_fail(err, "%s: a symbolic link to nothing (dangling)", path);
        if (errno == ELOOP) return kn_fail(err, "%s: a loop of symbolic links", path);
        return kn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return kn_fail(err, "%s: not a regular file (%s); knwb reads only regular files", path,
                       S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO" :
                       S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device" : S_ISSOCK(sb.st_mode) ? "a socket" : "a special file");
    /* O_NONBLOCK: should the path be swapped for a FIFO after the stat, open still cannot block */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return kn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return kn_fail(err, "%s: not a regular file; knwb reads only regular files", path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

static void human(char *out, size_t cap, double bytes) {
    if (bytes >= 1e9) snprintf(out, cap, "%.1f GB", bytes / 1e9);
    else if (bytes >= 1e6) snprintf(out, cap, "%.1f MB", bytes / 1e6);
    else if (bytes >= 1e3) snprintf(out, cap, "%.1f kB", bytes / 1e3);
    else snprintf(out, cap, "%.0f bytes", bytes);
}

char *kn_read_file(const char *path, size_t max_bytes, const char *what, size_t *len, kn_err *err) {
    int fd = kn_open_regular(path, err);
    if (fd < 0) return NULL;
    struct stat sb;
    char *buf = NULL;
    if (fstat(fd, &sb) != 0) { kn_fail(err, "%s: cannot read: %s", path, strerror(errno)); goto fail; }
    if ((unsigned long long)sb.st_size > max_bytes) {
        char got[32], cap[32];
        human(got, sizeof got, (double)sb.st_size);
        human(cap, sizeof cap, (double)max_bytes);
        kn_fail(err, "%s: %s is more than %s may hold (%s)", path, got, what ? what : "this file", cap);
        goto fail;
    }
    size_t n = (size_t)sb.st_size, got = 0;
    buf = malloc(n + 1);
    if (!buf) { kn_fail(err, "%s: out of memory reading %zu bytes", path, n); goto fail; }
    /* read to the end, not to st_size: a file that grows meanwhile is cut at the cap, not overrun */
    for (;;) {
        if (got == n) {
            char probe;
            ssize_t r = read(fd, &probe, 1);
            if (r == 0) break;
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) { kn_fail(err, "%s: read failed: %s", path, strerror(errno)); goto fail; }
            kn_fail(err, "%s: the file grew while it was read (more than %s may hold?)", path, what ? what : "this file");
            goto fail;
        }
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { kn_fail(err, "%s: read failed: %s", path, strerror(errno)); goto fail; }
        if (r == 0) { n = got; break; }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
fail:
    free(buf);
    close(fd);
    return NULL;
}

/* ---------------------------------------------------------------- atomic files */

static void dir_of(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, cap, ".");
    else if (slash == path) snprintf(out, cap, "/");
    else snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

static int fsync_dir(const char *dir, kn_err *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return kn_fail(err, "%s: cannot open folder to sync it: %s", dir, strerror(errno));
    int rc = injected() ? -1 : fsync(fd);
    /* some file systems cannot fsync a directory (EINVAL): the rename is still done */
    if (rc != 0 && errno != EINVAL) { int e = errno; close(fd); return kn_fail(err, "%s: fsync failed: %s", dir, strerror(e)); }
    close(fd);
    return 0;
}

int kn_atomic_open(kn_atomic_file *f, const char *path, kn_err *err) {
    f->fd = -1;
    f->tmp[0] = 0;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!*base) return kn_fail(err, "%s: not a file name", path);
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    if (snprintf(f->path, sizeof f->path, "%s", path) >= (int)sizeof f->path ||
        snprintf(f->tmp, sizeof f->tmp, "%s/.%s" TMP_MARK "XXXXXX", dir, base) >= (int)sizeof f->tmp)
        return kn_fail(err, "%s: path too long", path);
    if (injected()) { f->tmp[0] = 0; return kn_fail(err, "%s: cannot create a temporary file: %s", path, strerror(errno)); }
    int fd = mkstemp(f->tmp);
    if (fd < 0) { int e = errno; f->tmp[0] = 0; return kn_fail(err, "%s: cannot create a temporary file in %s: %s", path, dir, strerror(e)); }
    /* mkstemp makes 0600; outputs are ordinary files, readable as the umask allows */
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    f->fd = fd;
    return 0;
}

void kn_atomic_abort(kn_atomic_file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp[0]) unlink(f->tmp);
    f->tmp[0] = 0;
}

int kn_atomic_write(kn_atomic_file *f, const void *buf, size_t n, kn_err *err) {
    const char *p = buf;
    while (n > 0) {
        if (f->fd < 0) return kn_fail(err, "%s: write to a closed file", f->path);
        ssize_t w = injected() ? -1 : write(f->fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            kn_atomic_abort(f);
            return kn_fail(err, "%s: write failed: %s", f->path, strerror(e));
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int kn_atomic_commit(kn_atomic_file *f, kn_err *err) {
    if (f->fd < 0) return kn_fail(err, "%s: commit of a closed file", f->path);
    if (injected() || fsync(f->fd) != 0) {
        int e = errno;
        kn_atomic_abort(f);
        return kn_fail(err, "%s: fsync failed: %s", f->path, strerror(e));
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) {
        int e = errno;
        kn_atomic_abort(f);
        return kn_fail(err, "%s: close failed: %s", f->path, strerror(e));
    }
    if (injected() || rename(f->tmp, f->path) != 0) {
        int e = errno;
        kn_atomic_abort(f);
        return kn_fail(err, "%s: cannot rename the finished file into place: %s", f->path, strerror(e));
    }
    f->tmp[0] = 0;
    char dir[4096];
    dir_of(f->path, dir, sizeof dir);
    return fsync_dir(dir, err);
}

int kn_write_file_atomic(const char *path, const void *data, size_t len, kn_err *err) {
    kn_atomic_file f;
    if (kn_atomic_open(&f, path, err) != 0) return -1;
    if (kn_atomic_write(&f, data, len, err) != 0) return -1;
    return kn_atomic_commit(&f, err);
}

int kn_append_file(const char *path, const void *data, size_t len, int sync, long long *offset, kn_err *err) {
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return kn_fail(err, "%s: not a regular file; knwb appends only to regular files", path);
    if (injected()) return kn_fail(err, "%s: cannot open to append: %s", path, strerror(errno));
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0) return kn_fail(err, "%s: cannot open to append: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return kn_fail(err, "%s: not a regular file; knwb appends only to regular files", path);
    }
    off_t start = sb.st_size;
    const char *p = data;
    size_t n = len;
    int e = 0;
    while (n > 0) {
        ssize_t w = injected() ? -1 : write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { e = w < 0 ? errno : ENOSPC; break; }
        p += w;
        n -= (size_t)w;
    }
    if (!e && sync && (injected() || fsync(fd) != 0)) e = errno ? errno : EIO;
    if (e) {
        if (ftruncate(fd, start) != 0) { /* the reader's checks catch the tail */ }
        close(fd);
        return kn_fail(err, "%s: append failed: %s", path, strerror(e));
    }
    if (close(fd) != 0) return kn_fail(err, "%s: close failed: %s", path, strerror(errno));
    if (offset) *offset = (long long)start;
    return 0;
}

/* ---------------------------------------------------------------- folders */

int kn_mkdirs(const char *path, kn_err *err) {
    size_t n = strlen(path);
    if (n == 0) return kn_fail(err, "empty folder name");
    char *p = malloc(n + 1);
    if (!p) return kn_fail(err, "%s: out of memory", path);
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        struct stat sb;
        if (stat(p, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) {
                kn_fail(err, "%s: cannot create folder %s: %s exists and is not a folder", path, path, p);
                free(p);
                return -1;
            }
        } else if (injected() || (mkdir(p, 0777) != 0 && errno != EEXIST)) {
            kn_fail(err, "%s: cannot create folder %s: %s", path, p, strerror(errno));
            free(p);
            return -1;
        }
        p[i] = c;
    }
    free(p);
    return 0;
}

/* dir without trailing slashes, and its parent and last component */
static int split_dir(const char *dir, char *clean, char *parent, char *base, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n == 0 || n >= cap) return -1;
    memcpy(clean, dir, n);
    clean[n] = 0;
    dir_of(clean, parent, cap);
    const char *b = strrchr(clean, '/');
    snprintf(base, cap, "%s", b ? b + 1 : clean);
    return (strcmp(base, ".") == 0 || strcmp(base, "..") == 0) ? -1 : 0;
}

int kn_dir_stage(const char *dir, char *out, size_t cap, kn_err *err) {
    char clean[4096], parent[4096], base[4096];
    if (split_dir(dir, clean, parent, base, sizeof clean) != 0) return kn_fail(err, "%s: not a usable folder name", dir);
    if (kn_mkdirs(parent, err) != 0) return -1;
    if (snprintf(out, cap, "%s/.%s" TMP_MARK "XXXXXX", parent, base) >= (int)cap) return kn_fail(err, "%s: path too long", dir);
    if (injected() || !mkdtemp(out)) {
        kn_fail(err, "%s: cannot create a staging folder in %s: %s", dir, parent, strerror(errno));
        out[0] = 0;
        return -1;
    }
    return 0;
}

/* Removes a flat folder knwb made (files and links only). */
static void remove_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[8192];
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

void kn_dir_discard(const char *staged) {
    if (staged && *staged) remove_flat(staged);
}

static int copy_file(const char *from, const char *to, kn_err *err) {
    size_t n;
    char *buf = kn_read_file(from, (size_t)1 << 40, "a carried-over file", &n, err);
    if (!buf) return -1;
    int rc = kn_write_file_atomic(to, buf, n, err);
    free(buf);
    return rc;
}

/* Links (or copies) every regular file and symlink of old that staged lacks into staged;
 * refuses folders inside old, which a whole-folder swap would drop. */
static int carry_over(const char *old, const char *staged, kn_err *err) {
    DIR *d = opendir(old);
    if (!d) return kn_fail(err, "%s: cannot list the folder being replaced: %s", old, strerror(errno));
    struct dirent *e;
    char from[8192], to[8192];
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strstr(e->d_name, TMP_MARK)) continue;
        snprintf(from, sizeof from, "%s/%s", old, e->d_name);
        snprintf(to, sizeof to, "%s/%s", staged, e->d_name);
        struct stat sb;
        if (lstat(to, &sb) == 0) continue; /* the new folder has its own */
        if (lstat(from, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            rc = kn_fail(err, "%s: holds a folder (%s); knwb replaces a model folder whole and does not move folders inside it: save to another folder",
                         old, e->d_name);
        } else if (S_ISLNK(sb.st_mode)) {
            char target[4096];
            ssize_t n = readlink(from, target, sizeof target - 1);
            if (n < 0) { rc = kn_fail(err, "%s: cannot read link: %s", from, strerror(errno)); break; }
            target[n] = 0;
            if (injected() || symlink(target, to) != 0) rc = kn_fail(err, "%s: cannot recreate link: %s", to, strerror(errno));
        } else if (S_ISREG(sb.st_mode)) {
            if (injected()) rc = kn_fail(err, "%s: cannot carry over: %s", from, strerror(errno));
            else if (link(from, to) != 0) rc = copy_file(from, to, err);
        }
    }
    closedir(d);
    return rc;
}

/* Removes staging folders of dir that a killed save left behind (not `keep`). */
static void remove_stale(const char *parent, const char *base, const char *keep) {
    DIR *d = opendir(parent);
    if (!d) return;
    char prefix[4200], p[8192];
    snprintf(prefix, sizeof prefix, ".%s" TMP_MARK, base);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        snprintf(p, sizeof p, "%s/%s", parent, e->d_name);
        if (strcmp(p, keep) == 0) continue;
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_flat(p);
    }
    closedir(d);
}

int kn_dir_replace(const char *staged, const char *dir, kn_err *err) {
    char clean[4096], parent[4096], base[4096];
    if (split_dir(dir, clean, parent, base, sizeof clean) != 0) {
        kn_dir_discard(staged);
        return kn_fail(err, "%s: not a usable folder name", dir);
    }
    struct stat sb;
    int exists = lstat(clean, &sb) == 0;
    if (exists && !S_ISDIR(sb.st_mode)) {
        kn_dir_discard(staged);
        return kn_fail(err, "%s: exists and is not a folder", clean);
    }
    if ((exists && carry_over(clean, staged, err) != 0) || fsync_dir(staged, err) != 0) {
        kn_dir_discard(staged);
        return -1;
    }
    if (exists) {
        if (injected() || renameat2(AT_FDCWD, staged, AT_FDCWD, clean, RENAME_EXCHANGE) != 0) {
            int e = errno;
            kn_dir_discard(staged);
            return kn_fail(err, "%s: cannot swap the new folder in: %s", clean, strerror(e));
        }
        remove_flat(staged); /* now the old folder */
    } else if (injected() || rename(staged, clean) != 0) {
        int e = errno;
        kn_dir_discard(staged);
        return kn_fail(err, "%s: cannot move the new folder into place: %s", clean, strerror(e));
    }
    remove_stale(parent, base, staged);
    return fsync_dir(parent, err);
}

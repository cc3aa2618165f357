/* test_fileio.c: core/fileio.c and core/alloc.c: readers refuse special files and oversized
 * files with a message; atomic writes and folder replacement leave the old or the new content
 * whenever the n-th write-side operation fails (a kill at every point); mkdir -p without a
 * shell; checked sizes; allocation failure injection. */
#include "alloc.h"
#include "check.h"
#include "fileio.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* the file's content, or "" when missing */
static const char *slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    buf[0] = 0;
    if (!f) return buf;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* entries of dir whose name holds the temporary mark */
static int leftovers(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += strstr(e->d_name, ".knwb-tmp-") != NULL;
    if (d) closedir(d);
    return n;
}

static void test_readers(void) {
    char p[512], q[512];
    kn_err err;
    size_t n;
    snprintf(p, sizeof p, "%s/fifo", root);
    mkfifo(p, 0600);
    CHECK(kn_open_regular(p, &err) < 0, "a FIFO is refused without blocking");
    CHECK_MSG(err.msg, "a FIFO", "FIFO");
    CHECK(kn_read_file(root, 100, "x", &n, &err) == NULL, "a directory is refused");
    CHECK_MSG(err.msg, "a directory", "directory");
    CHECK(kn_read_file("/dev/zero", 100, "a vocabulary", &n, &err) == NULL, "/dev/zero is refused");
    CHECK_MSG(err.msg, "a device", "device");
    snprintf(p, sizeof p, "%s/dangling", root);
    symlink("nowhere-at-all", p);
    CHECK(kn_open_regular(p, &err) < 0, "a dangling link is refused");
    CHECK_MSG(err.msg, "dangling", "dangling link");
    snprintf(p, sizeof p, "%s/loop1", root);
    snprintf(q, sizeof q, "%s/loop2", root);
    symlink("loop2", p);
    symlink("loop1", q);
    CHECK(kn_open_regular(p, &err) < 0, "a link loop is refused");
    CHECK_MSG(err.msg, "loop", "link loop");
    snprintf(p, sizeof p, "%s/big.json", root);
    put(p, "0123456789abcdef");
    CHECK(kn_read_file(p, 10, "a config.json", &n, &err) == NULL, "a file over its cap is refused");
    CHECK_MSG(err.msg, "16 bytes is more than a config.json may hold (10 bytes)", "cap message");
    char *s = kn_read_file(p, 16, "a config.json", &n, &err);
    CHECK(s && n == 16 && strcmp(s, "0123456789abcdef") == 0, "a file at its cap is read whole, NUL-terminated");
    free(s);
    snprintf(q, sizeof q, "%s/link.json", root);
    symlink("big.json", q);
    s = kn_read_file(q, 100, "x", &n, &err);
    CHECK(s && n == 16, "a symlink to a regular file is read");
    free(s);
    snprintf(p, sizeof p, "%s/nul.txt", root);
    FILE *f = fopen(p, "w");
    fwrite("a\0b", 1, 3, f);
    fclose(f);
    s = kn_read_file(p, 100, "x", &n, &err);
    CHECK(s && n == 3 && s[2] == 'b', "NUL bytes inside a file are kept, the length says where it ends");
    free(s);
}

static void test_atomic_kill(void) {
    char p[512], buf[256];
    kn_err err;
    snprintf(p, sizeof p, "%s/out.txt", root);
    put(p, "old content");
    kn_io_fail_after(0);
    CHECK(kn_write_file_atomic(p, "new", 3, &err) == 0, "atomic write");
    long ops = kn_io_ops();
    CHECK(strcmp(slurp(p, buf, sizeof buf), "new") == 0 && leftovers(root) == 0, "new content, no temporary left (%ld operations)", ops);
    put(p, "old content");
    int all_ok = 1, failed = 0;
    for (long k = 1; k <= ops; k++) {
        put(p, "old content");
        kn_io_fail_after(k);
        int rc = kn_write_file_atomic(p, "new", 3, &err);
        kn_io_fail_after(0);
        const char *got = slurp(p, buf, sizeof buf);
        /* a failure after the rename (the folder's fsync) is reported, and the new file is in place */
        int fine = strcmp(got, "new") == 0 || (rc != 0 && strcmp(got, "old content") == 0);
        failed += rc != 0;
        if (!fine || leftovers(root) != 0) { all_ok = 0; printf("  kill at %ld: rc %d, content '%s', leftovers %d\n", k, rc, got, leftovers(root)); }
    }
    CHECK(all_ok && failed >= ops - 1, "a failure at each of the %ld operations leaves the old file or the new one, never a temporary (%d failed)", ops, failed);
}

static void test_mkdirs(void) {
    char p[512];
    kn_err err;
    snprintf(p, sizeof p, "%s/a/b/c", root);
    CHECK(kn_mkdirs(p, &err) == 0, "mkdir -p makes every level");
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && S_ISDIR(sb.st_mode), "the folder exists");
    CHECK(kn_mkdirs(p, &err) == 0, "mkdir -p of an existing folder succeeds");
    snprintf(p, sizeof p, "%s/out.txt/x", root);
    CHECK(kn_mkdirs(p, &err) != 0, "a file in the way is refused");
    CHECK_MSG(err.msg, "is not a folder", "file in the way");
    snprintf(p, sizeof p, "%s/--version", root);
    CHECK(kn_mkdirs(p, &err) == 0 && stat(p, &sb) == 0, "a name that looks like an option is just a name");
}

/* writes a two-file model-like folder into a staging folder and swaps it in */
static int save_folder(const char *dir, const char *tag, kn_err *err) {
    char st[4096], p[8192];
    if (kn_dir_stage(dir, st, sizeof st, err) != 0) return -1;
    const char *names[] = { "config.json", "weights.bin" };
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", st, names[i]);
        char body[64];
        snprintf(body, sizeof body, "%s %s", tag, names[i]);
        if (kn_write_file_atomic(p, body, strlen(body), err) != 0) { kn_dir_discard(st); return -1; }
    }
    return kn_dir_replace(st, dir, err);
}

/* "old", "new", or "mixed" */
static const char *folder_state(const char *dir) {
    char p[512], a[128], b[128], c[128];
    snprintf(p, sizeof p, "%s/config.json", dir); slurp(p, a, sizeof a);
    snprintf(p, sizeof p, "%s/weights.bin", dir); slurp(p, b, sizeof b);
    snprintf(p, sizeof p, "%s/README.md", dir); slurp(p, c, sizeof c);
    if (strcmp(c, "card") != 0) return "lost README";
    if (strcmp(a, "old config.json") == 0 && strcmp(b, "old weights.bin") == 0) return "old";
    if (strcmp(a, "new config.json") == 0 && strcmp(b, "new weights.bin") == 0) return "new";
    return "mixed";
}

static void test_dir_replace(void) {
    char dir[512], p[600];
    kn_err err;
    snprintf(dir, sizeof dir, "%s/model", root);
    CHECK(save_folder(dir, "old", &err) == 0, "a folder saved where none was");
    snprintf(p, sizeof p, "%s/README.md", dir);
    put(p, "card");
    kn_io_fail_after(0);
    CHECK(save_folder(dir, "new", &err) == 0 && strcmp(folder_state(dir), "new") == 0, "replaced, the model card carried over");
    long ops = kn_io_ops();
    int all_ok = 1, failed = 0;
    for (long k = 1; k <= ops; k++) {
        kn_io_fail_after(0);
        save_folder(dir, "old", &err);
        kn_io_fail_after(k);
        int rc = save_folder(dir, "new", &err);
        kn_io_fail_after(0);
        const char *s = folder_state(dir);
        failed += rc != 0;
        if (!(strcmp(s, "new") == 0 || (rc != 0 && strcmp(s, "old") == 0)) || leftovers(root) != 0) {
            all_ok = 0;
            printf("  kill at %ld: rc %d, folder %s, leftovers %d (%s)\n", k, rc, s, leftovers(root), err.msg);
        }
    }
    CHECK(all_ok && failed >= ops - 2, "a failure at each of the %ld operations of a folder save leaves the old folder or the new one (%d failed)", ops, failed);
    /* a killed process leaves its staging folder; the next save removes it */
    char st[4096];
    kn_dir_stage(dir, st, sizeof st, &err);
    CHECK(leftovers(root) == 1, "a staging folder, as a killed save leaves it");
    CHECK(save_folder(dir, "new", &err) == 0 && leftovers(root) == 0, "the next save removes the stale staging folder");
    snprintf(p, sizeof p, "%s/sub", dir);
    mkdir(p, 0777);
    CHECK(save_folder(dir, "old", &err) != 0 && strcmp(folder_state(dir), "new") == 0, "a folder holding a folder is not replaced");
    CHECK_MSG(err.msg, "holds a folder (sub)", "folder inside");
    CHECK(leftovers(root) == 0, "nothing left behind by the refused save");
}

static void test_alloc(void) {
    size_t s;
    int64_t i;
    CHECK(kn_mul_size(SIZE_MAX / 2, 3, &s) != 0, "size product overflow detected");
    CHECK(kn_mul_size(1u << 20, 1u << 10, &s) == 0 && s == (size_t)1 << 30, "size product");
    CHECK(kn_mul_i64(INT64_MAX / 2, 3, &i) != 0 && kn_mul_i64(-1, 3, &i) != 0, "int64 overflow and negatives refused");
    CHECK(kn_add_i64(INT64_MAX, 1, &i) != 0, "int64 sum overflow detected");
    CHECK(kn_calloc(SIZE_MAX / 4, 8) == NULL, "calloc with an overflowing count fails cleanly");
    kn_alloc_fail_after(2);
    void *a = kn_malloc(8), *b = kn_malloc(8), *c = kn_malloc(8);
    kn_alloc_fail_after(0);
    CHECK(a && !b && !c, "failure injection: the 2nd allocation and later ones fail");
    free(a);
    void *al = kn_aligned_alloc(100);
    CHECK(al && ((uintptr_t)al % 64) == 0, "aligned allocation of a size that is not a multiple of 64");
    free(al);
}

int main(void) {
    snprintf(root, sizeof root, "%s/knwb-fileio-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    test_readers();
    test_atomic_kill();
    test_mkdirs();
    test_dir_replace();
    test_alloc();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) printf("note: could not remove %s\n", root);
    return check_done();
}

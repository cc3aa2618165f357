/* sgemm_ceiling.c: how fast this machine's OpenBLAS runs cblas_sgemm on the shapes that knwb's
 * attribution uses, i.e. the ceiling that knwb's effective GFLOP/s is compared against.
 *
 *   cc -O2 bench/sgemm_ceiling.c $(pkg-config --cflags --libs openblas) -o bench/out/sgemm_ceiling
 *   OPENBLAS_NUM_THREADS=2 bench/out/sgemm_ceiling [seconds-per-shape]
 *
 * It is linked against the same libopenblas as knwb (pkg-config openblas) and takes its thread
 * count the same way (OPENBLAS_NUM_THREADS). Shapes, with R = 20 rows (the 20 IG steps) x
 * T = 12 tokens = 240 GEMM rows, C = 768, F = 3072, V = 28996, row-major as in
 * core/kernels.c:
 *   fwd_*: linear_forward        C[M,N] = A[M,K] . W[N,K]^T   (NoTrans, Trans)
 *   bwd_*: linear_backward_input C[M,N] = D[M,K] . W[K,N]     (NoTrans, NoTrans)
 * plus the reference shape M = 240 (20 x 12), N = 3072, K = 768.
 * For each shape: a warm-up call, then rounds of calls lasting >= the given seconds (default
 * 0.25 s); the best round's rate is reported. Output: one JSON line on stdout. */
#define _POSIX_C_SOURCE 199309L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* provided by OpenBLAS (declared in its cblas.h on most versions; repeated here to be safe) */
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);
extern int openblas_get_num_threads(void);

typedef struct shape { const char *name; int M, N, K, trans_b; } shape;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill(float *x, long n, unsigned *s) {
    for (long i = 0; i < n; i++) {
        *s = *s * 1664525u + 1013904223u;
        x[i] = ((float)(*s >> 8) / 16777216.0f - 0.5f) * 0.1f;
    }
}

static void run(const shape *sh, const float *A, const float *W, float *Cm) {
    if (sh->trans_b) /* A[M,K] . W[N,K]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, sh->M, sh->N, sh->K, 1.0f, A, sh->K, W, sh->K, 1.0f, Cm, sh->N);
    else /* A[M,K] . W[K,N] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, sh->M, sh->N, sh->K, 1.0f, A, sh->K, W, sh->N, 1.0f, Cm, sh->N);
}

int main(int argc, char **argv) {
    double min_seconds = argc > 1 ? atof(argv[1]) : 0.25;
    if (!(min_seconds > 0)) min_seconds = 0.25;
    const int R = 20 * 12, C = 768, F = 3072, V = 28996, H = 20;
    const shape shapes[] = {
        { "ref_240x3072x768", 240, F, C, 1 },
        { "fwd_qkvo", R, C, C, 1 },   { "fwd_ffn_in", R, F, C, 1 },  { "fwd_ffn_out", R, C, F, 1 },
        { "bwd_qkvo", R, C, C, 0 },   { "bwd_ffn_in", R, C, F, 0 },  { "bwd_ffn_out", R, F, C, 0 },
        { "fwd_decoder", H, V, C, 1 }, { "bwd_decoder", H, C, V, 0 },
    };
    int n = (int)(sizeof shapes / sizeof shapes[0]);
    long maxa = 0, maxw = 0, maxc = 0;
    for (int i = 0; i < n; i++) {
        long a = (long)shapes[i].M * shapes[i].K, w = (long)shapes[i].N * shapes[i].K, c = (long)shapes[i].M * shapes[i].N;
        if (a > maxa) maxa = a;
        if (w > maxw) maxw = w;
        if (c > maxc) maxc = c;
    }
    float *A = malloc(sizeof(float) * maxa), *W = malloc(sizeof(float) * maxw), *Cm = calloc(maxc, sizeof(float));
    if (!A || !W || !Cm) { fprintf(stderr, "sgemm_ceiling: out of memory\n"); return 1; }
    unsigned s = 12345;
    fill(A, maxa, &s);
    fill(W, maxw, &s);
    printf("{\"engine\":\"sgemm\",\"openblas_threads\":%d,\"openblas_config\":\"%s\",\"openblas_core\":\"%s\",\"shapes\":{",
           openblas_get_num_threads(), openblas_get_config(), openblas_get_corename());
    for (int i = 0; i < n; i++) {
        const shape *sh = &shapes[i];
        double flops = 2.0 * sh->M * sh->N * sh->K, best = 0;
        run(sh, A, W, Cm);
        for (int round = 0; round < 3; round++) {
            long calls = 0;
            double t0 = now(), t;
            do { run(sh, A, W, Cm); calls++; t = now() - t0; } while (t < min_seconds / 3 || calls < 3);
            double rate = flops * calls / t / 1e9;
            if (rate > best) best = rate;
        }
        printf("%s\"%s\":{\"M\":%d,\"N\":%d,\"K\":%d,\"trans_b\":%s,\"gflops\":%.2f}", i ? "," : "", sh->name, sh->M, sh->N,
               sh->K, sh->trans_b ? "true" : "false", best);
        fflush(stdout);
    }
    printf("}}\n");
    free(A); free(W); free(Cm);
    return 0;
}

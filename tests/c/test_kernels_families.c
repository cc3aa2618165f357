/* test_kernels_families.c: the kernels that GPT-2 and Llama/Mistral/Qwen2 add to core/kernels.h,
 * and the one attention core that BERT now shares with them.
 *
 * - BERT bit-identity: attention_forward/attention_backward (now thin wrappers over attn_*) and
 *   attn_* with NKV = NH, Tq = T, causal = 0 give byte-identical ctx, att, dq, dk, dv to a
 *   verbatim copy of knwb's original attention kernels kept below, on random padded batches.
 * - Against the PyTorch reference (tests/ref/gen_kernels.py, fixtures in
 *   tests/fixtures/ref/kernels/): Conv1D-layout linear (a fused weight's column blocks), RMSNorm,
 *   tanh GELU (HF gelu_new and gelu_pytorch_tanh), erf GELU, ReLU, SiLU, SwiGLU, the RoPE
 *   inverse frequencies / cos-sin tables / rotation for default, linear and llama3 scaling, and
 *   causal grouped-query attention (plain and sliding window) with a left-padded row, forward
 *   and gradients.
 * - Central finite differences (fd_check.h: double-precision scalar sum(g * out), float
 *   perturbations) and accumulation (a second backward call doubles the result) for every new
 *   forward/backward pair, on odd sizes (N=5, C=6 or 7, NH=6 over NKV=2, hd=8, T=7).
 * - Invariants: RoPE keeps each pair's norm, its backward inverts its forward, q'.k' depends
 *   only on the position difference; causal attention gives exactly 0 to future, padded and
 *   out-of-window keys; a query subset equals the full computation's rows (forward and
 *   backward); GQA equals MHA on explicitly repeated key/value heads.
 * - Refusals: odd head width, bad rope settings, inconsistent attention dims, each named. */
#include "check.h"
#include "fd_check.h"
#include "kernels.h"
#include "safetensors.h"

#include <cblas.h>
#include <jansson.h>

#define FIXTURE_DIR "tests/fixtures/ref/kernels"

static st_file *fx;

/* A fixture tensor with the expected number of entries, or NULL (and a failed check). */
static const float *fxt(const char *name, long numel) {
    const st_tensor *t = fx ? st_find(fx, name) : NULL;
    if (!t || t->dtype != ST_F32 || t->numel != numel) {
        CHECK(0, "fixture tensor %s with %ld entries (%s)", name, numel, t ? "wrong size or dtype" : "missing");
        return NULL;
    }
    return (const float *)t->data;
}

static double max_abs(const float *a, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}
static double max_diff(const float *a, const float *b, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}
/* "got" vs "want" relative to max|want|: passes when below tol; prints both figures. */
static void check_close(const char *what, const float *got, const float *want, long n, double tol) {
    double e = check_rel_err(got, want, n, 1e-30);
    int exact = memcmp(got, want, sizeof(float) * n) == 0;
    CHECK(e <= tol, "%s: %ld values, max rel err %.2e (tol %.0e; %s), max |ref| %.3g", what, n, e, tol,
          exact ? "bit-exact" : "not bit-exact", max_abs(want, n));
}

/* ================================================================ BERT bit-identity */

/* knwb's attention kernels as they were before attn_forward/attn_backward, verbatim. */
static void legacy_attention_forward(float *ctx, float *att, const float *q, const float *k, const float *v,
                                     const float *keymask, int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        const float *mask = keymask + (long)b * T;
        for (int h = 0; h < NH; h++) {
            const float *qb = q + (long)b * T * C + h * hs;
            const float *kb = k + (long)b * T * C + h * hs;
            const float *vb = v + (long)b * T * C + h * hs;
            float *A = att + ((long)b * NH + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, qb, C, kb, C,
                        0.0f, A, T);
            for (int t = 0; t < T; t++) {
                float *row = A + (long)t * T;
                for (int s = 0; s < T; s++) row[s] += (1.0f - mask[s]) * -10000.0f;
                softmax_row(row, row, T);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, A, T, vb, C,
                        0.0f, ctx + (long)b * T * C + h * hs, C);
        }
    }
}

static void legacy_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dctx,
                                      const float *att, const float *q, const float *k, const float *v,
                                      int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            long off = (long)b * T * C + h * hs;
            const float *A = att + ((long)b * NH + h) * T * T;
            float *dA = datt + ((long)b * NH + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dctx + off, C,
                        v + off, C, 0.0f, dA, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, A, T, dctx + off, C,
                        1.0f, dv + off, C);
            for (int t = 0; t < T; t++) {
                const float *a = A + (long)t * T;
                float *da = dA + (long)t * T;
                double dot = 0;
                for (int s = 0; s < T; s++) dot += (double)a[s] * da[s];
                for (int s = 0; s < T; s++) da[s] = a[s] * (da[s] - (float)dot);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, dA, T, k + off, C,
                        1.0f, dq + off, C);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, dA, T, q + off, C,
                        1.0f, dk + off, C);
        }
    }
}

static void test_bert_bits(void) {
    printf("# BERT attention: new kernels vs the original, byte for byte\n");
    struct { int B, T, C, NH; } shapes[] = { { 2, 7, 12, 3 }, { 3, 5, 6, 2 }, { 1, 9, 32, 4 }, { 2, 16, 36, 3 } };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int B = shapes[si].B, T = shapes[si].T, C = shapes[si].C, NH = shapes[si].NH;
        long n = (long)B * T * C, na = (long)B * NH * T * T;
        float *q = rand_vec(n, 2), *k = rand_vec(n, 2), *v = rand_vec(n, 2), *g = rand_vec(n, 1);
        float *mask = malloc(sizeof(float) * B * T);
        for (int i = 0; i < B * T; i++) mask[i] = (i / T) % 2 == 1 && i % T >= T - 2 ? 0.0f : 1.0f;
        float *ctx[3], *att[3], *dq[3], *dk[3], *dv[3], *datt = zeros(na);
        float *seed_q = rand_vec(n, 1), *seed_k = rand_vec(n, 1), *seed_v = rand_vec(n, 1);
        for (int r = 0; r < 3; r++) {
            ctx[r] = zeros(n); att[r] = zeros(na);
            dq[r] = copy(seed_q, n); dk[r] = copy(seed_k, n); dv[r] = copy(seed_v, n); /* nonzero: backward adds */
        }
        attn_dims d = { .B = B, .T = T, .Tq = T, .NH = NH, .NKV = NH, .hd = C / NH, .causal = 0, .window = 0 };
        legacy_attention_forward(ctx[0], att[0], q, k, v, mask, B, T, C, NH);
        attention_forward(ctx[1], att[1], q, k, v, mask, B, T, C, NH);
        attn_forward(ctx[2], att[2], q, k, v, mask, NULL, &d);
        legacy_attention_backward(dq[0], dk[0], dv[0], datt, g, att[0], q, k, v, B, T, C, NH);
        attention_backward(dq[1], dk[1], dv[1], datt, g, att[0], q, k, v, B, T, C, NH);
        attn_backward(dq[2], dk[2], dv[2], datt, g, att[0], q, k, v, &d);
        size_t bn = sizeof(float) * n, ba = sizeof(float) * na;
        for (int r = 1; r < 3; r++)
            CHECK(memcmp(ctx[0], ctx[r], bn) == 0 && memcmp(att[0], att[r], ba) == 0 && memcmp(dq[0], dq[r], bn) == 0 &&
                      memcmp(dk[0], dk[r], bn) == 0 && memcmp(dv[0], dv[r], bn) == 0,
                  "B=%d T=%d C=%d NH=%d, padded keys: %s gives byte-identical ctx, att, dq, dk, dv", B, T, C, NH,
                  r == 1 ? "attention_forward/backward" : "attn_forward/backward (NKV = NH, Tq = T, causal 0)");
        /* keymask NULL is the all-ones mask, bit for bit */
        for (int i = 0; i < B * T; i++) mask[i] = 1.0f;
        attn_forward(ctx[1], att[1], q, k, v, mask, NULL, &d);
        attn_forward(ctx[2], att[2], q, k, v, NULL, NULL, &d);
        CHECK(memcmp(ctx[1], ctx[2], bn) == 0 && memcmp(att[1], att[2], ba) == 0,
              "B=%d T=%d: keymask NULL gives the bytes of an all-ones keymask", B, T);
        for (int r = 0; r < 3; r++) { free(ctx[r]); free(att[r]); free(dq[r]); free(dk[r]); free(dv[r]); }
        free(q); free(k); free(v); free(g); free(mask); free(datt); free(seed_q); free(seed_k); free(seed_v);
    }
}

/* ================================================================ linear, weight [in, out] */

typedef struct { float *out, *inp, *w, *b, *g; int N, IC, OC, ldw; } lio_ctx;
static double lio_scalar(void *p) {
    lio_ctx *c = p;
    linear_io_forward(c->out, c->inp, c->w, c->b, c->N, c->IC, c->OC, c->ldw);
    return dot(c->g, c->out, (long)c->N * c->OC);
}

static void test_linear_io(void) {
    printf("# linear_io (GPT-2 Conv1D layout [in, out]; the middle column block of a [6, 12] weight)\n");
    int N = 5, IC = 6, OC = 4, LDW = 12;
    long ni = (long)N * IC, nwf = (long)IC * LDW, no = (long)N * OC;
    float *wf = rand_vec(nwf, 1), *bf = rand_vec(LDW, 1);
    lio_ctx c = { .N = N, .IC = IC, .OC = OC, .ldw = LDW, .w = wf + OC, .b = bf + OC };
    c.inp = rand_vec(ni, 1); c.g = rand_vec(no, 1); c.out = zeros(no);
    float *dinp = zeros(ni), *dwf = zeros(nwf), *dbf = zeros(LDW), *fd = zeros(nwf);
    float h = 1e-2f;
    linear_io_backward_input(dinp, c.g, c.w, N, IC, OC, LDW);
    linear_io_backward_weight(dwf + OC, dbf + OC, c.g, c.inp, N, IC, OC, LDW);
    fd_grad(c.inp, ni, h, lio_scalar, &c, fd);
    check_fd("linear_io d/d inp", fd, dinp, ni, h);
    fd_grad(wf, nwf, h, lio_scalar, &c, fd); /* the whole [6, 12]: the other blocks' gradient is 0 */
    check_fd("linear_io d/d w (all 72 entries of the fused weight)", fd, dwf, nwf, h);
    fd_grad(bf, LDW, h, lio_scalar, &c, fd);
    check_fd("linear_io d/d b (all 12 entries of the fused bias)", fd, dbf, LDW, h);
    double outside = 0;
    for (int i = 0; i < IC; i++)
        for (int j = 0; j < LDW; j++)
            if (j < OC || j >= 2 * OC) outside = fmax(outside, fabs(dwf[i * LDW + j]));
    CHECK(outside == 0, "backward_weight with ldw writes only its own column block (max outside %.1e)", outside);

    float *once_i = copy(dinp, ni), *once_w = copy(dwf, nwf), *once_b = copy(dbf, LDW);
    linear_io_backward_input(dinp, c.g, c.w, N, IC, OC, LDW);
    linear_io_backward_weight(dwf + OC, dbf + OC, c.g, c.inp, N, IC, OC, LDW);
    check_doubled("linear_io_backward_input dinp", dinp, once_i, ni);
    check_doubled("linear_io_backward_weight dw", dwf, once_w, nwf);
    check_doubled("linear_io_backward_weight db", dbf, once_b, LDW);

    /* the same product as linear_forward on the transposed block */
    float *wt = zeros((long)OC * IC), *a = zeros(no), *b = zeros(no);
    for (int i = 0; i < IC; i++)
        for (int o = 0; o < OC; o++) wt[o * IC + i] = c.w[i * LDW + o];
    linear_io_forward(a, c.inp, c.w, c.b, N, IC, OC, LDW);
    linear_forward(b, c.inp, wt, c.b, N, IC, OC);
    check_close("linear_io_forward = linear_forward on the transposed weight", a, b, no, 1e-6);
    linear_io_forward(a, c.inp, c.w, NULL, N, IC, OC, LDW);
    linear_forward(b, c.inp, wt, NULL, N, IC, OC);
    check_close("  and without bias", a, b, no, 1e-6);
    free(wt); free(a); free(b); free(once_i); free(once_w); free(once_b);
    free(wf); free(bf); free(c.inp); free(c.g); free(c.out); free(dinp); free(dwf); free(dbf); free(fd);

    /* PyTorch: addmm(b, x, W) on the whole fused weight, computed here block by block */
    const float *x = fxt("linear_io.x", ni), *W = fxt("linear_io.w", nwf), *B = fxt("linear_io.b", LDW);
    const float *G = fxt("linear_io.g", (long)N * LDW), *Y = fxt("linear_io.y", (long)N * LDW);
    const float *DX = fxt("linear_io.dx", ni), *DW = fxt("linear_io.dw", nwf), *DB = fxt("linear_io.db", LDW);
    if (!x || !W || !B || !G || !Y || !DX || !DW || !DB) return;
    float *y = zeros((long)N * LDW), *blk = zeros(no), *gb = zeros(no), *dx = zeros(ni), *dw = zeros(nwf), *db = zeros(LDW);
    for (int k = 0; k < 3; k++) {
        linear_io_forward(blk, x, W + k * OC, B + k * OC, N, IC, OC, LDW);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                y[n * LDW + k * OC + o] = blk[n * OC + o];
                gb[n * OC + o] = G[n * LDW + k * OC + o];
            }
        linear_io_backward_input(dx, gb, W + k * OC, N, IC, OC, LDW);
        linear_io_backward_weight(dw + k * OC, db + k * OC, gb, x, N, IC, OC, LDW);
    }
    check_close("torch Conv1D out (3 column blocks of c_attn)", y, Y, (long)N * LDW, 1e-6);
    check_close("torch Conv1D d inp (sum over the 3 blocks)", dx, DX, ni, 1e-6);
    check_close("torch Conv1D d w", dw, DW, nwf, 1e-6);
    check_close("torch Conv1D d b", db, DB, LDW, 1e-6);
    free(y); free(blk); free(gb); free(dx); free(dw); free(db);
}

/* ================================================================ RMSNorm */

typedef struct { float *out, *rstd, *inp, *w, *g; int N, C; float eps; } rms_ctx;
static double rms_scalar(void *p) {
    rms_ctx *c = p;
    rmsnorm_forward(c->out, c->rstd, c->inp, c->w, c->N, c->C, c->eps);
    return dot(c->g, c->out, (long)c->N * c->C);
}

static void test_rmsnorm(void) {
    printf("# rmsnorm\n");
    int sizes[][2] = { { 5, 6 }, { 3, 7 }, { 1, 1 } };
    for (int si = 0; si < 3; si++) {
        rms_ctx c = { .N = sizes[si][0], .C = sizes[si][1], .eps = 1e-6f };
        long n = (long)c.N * c.C;
        c.inp = rand_vec(n, 2); c.w = rand_vec(c.C, 1); c.g = rand_vec(n, 1);
        for (long i = 0; i < n; i++) c.inp[i] += 0.7f * (float)(i / c.C); /* rows with nonzero means */
        for (int i = 0; i < c.C; i++) c.w[i] += 1.0f;
        c.out = zeros(n); c.rstd = zeros(c.N);
        float *dinp = zeros(n), *dw = zeros(c.C), *fd = zeros(n);
        float h = 3e-3f;
        rms_scalar(&c);
        float *rstd = copy(c.rstd, c.N);
        rmsnorm_backward_input(dinp, c.g, c.inp, rstd, c.w, c.N, c.C);
        rmsnorm_backward_weight(dw, c.g, c.inp, rstd, c.N, c.C);
        char what[96];
        snprintf(what, sizeof what, "rmsnorm N=%d C=%d d/d inp", c.N, c.C);
        fd_grad(c.inp, n, h, rms_scalar, &c, fd);
        check_fd(what, fd, dinp, n, h);
        snprintf(what, sizeof what, "rmsnorm N=%d C=%d d/d w", c.N, c.C);
        fd_grad(c.w, c.C, h, rms_scalar, &c, fd);
        check_fd(what, fd, dw, c.C, h);
        float *once_i = copy(dinp, n), *once_w = copy(dw, c.C);
        rmsnorm_backward_input(dinp, c.g, c.inp, rstd, c.w, c.N, c.C);
        rmsnorm_backward_weight(dw, c.g, c.inp, rstd, c.N, c.C);
        check_doubled("rmsnorm_backward_input dinp", dinp, once_i, n);
        check_doubled("rmsnorm_backward_weight dw", dw, once_w, c.C);
        free(once_i); free(once_w); free(rstd);
        free(c.inp); free(c.w); free(c.g); free(c.out); free(c.rstd); free(dinp); free(dw); free(fd);
    }

    json_error_t je;
    json_t *cases = json_load_file(FIXTURE_DIR "/cases.json", 0, &je);
    json_t *rc = cases ? json_object_get(cases, "rmsnorm") : NULL;
    int N = (int)json_integer_value(json_object_get(rc, "N")), C = (int)json_integer_value(json_object_get(rc, "C"));
    float eps = (float)json_real_value(json_object_get(rc, "eps"));
    json_decref(cases);
    long n = (long)N * C;
    const float *x = fxt("rmsnorm.x", n), *w = fxt("rmsnorm.w", C), *g = fxt("rmsnorm.g", n);
    const float *Y = fxt("rmsnorm.y", n), *DX = fxt("rmsnorm.dx", n), *DW = fxt("rmsnorm.dw", C);
    if (!x || !w || !g || !Y || !DX || !DW || N < 1) return;
    float *y = zeros(n), *rstd = zeros(N), *dx = zeros(n), *dw = zeros(C);
    rmsnorm_forward(y, rstd, x, w, N, C, eps);
    rmsnorm_backward_input(dx, g, x, rstd, w, N, C);
    rmsnorm_backward_weight(dw, g, x, rstd, N, C);
    printf("# torch LlamaRMSNorm, N=%d C=%d eps=%g (rows: plain, x30, +2 offset, x1e-3, plain)\n", N, C, eps);
    check_close("torch LlamaRMSNorm out (float32)", y, Y, n, 1e-6);
    check_close("torch LlamaRMSNorm d inp (float64 autograd)", dx, DX, n, 1e-5);
    check_close("torch LlamaRMSNorm d w (float64 autograd)", dw, DW, C, 1e-5);
    free(y); free(rstd); free(dx); free(dw);
}

/* ================================================================ activations */

typedef struct { float *out, *inp, *g; long n; enum kn_act kind; } act_ctx;
static double act_scalar(void *p) {
    act_ctx *c = p;
    act_forward(c->kind, c->out, c->inp, c->n);
    return dot(c->g, c->out, c->n);
}

typedef struct { float *act, *gate, *up, *g; long n; enum kn_act kind; } glu_ctx;
static double glu_scalar(void *p) {
    glu_ctx *c = p;
    glu_forward(c->kind, c->act, c->gate, c->up, c->n);
    return dot(c->g, c->act, c->n);
}

static const enum kn_act all_kinds[] = { KN_ACT_GELU_ERF, KN_ACT_GELU_TANH, KN_ACT_RELU, KN_ACT_SILU };

static void test_activations(void) {
    printf("# activations: names\n");
    struct { const char *name; int ok; enum kn_act kind; } names[] = {
        { "gelu", 1, KN_ACT_GELU_ERF }, { "gelu_python", 1, KN_ACT_GELU_ERF }, { "gelu_new", 1, KN_ACT_GELU_TANH },
        { "gelu_pytorch_tanh", 1, KN_ACT_GELU_TANH }, { "relu", 1, KN_ACT_RELU }, { "silu", 1, KN_ACT_SILU },
        { "swish", 1, KN_ACT_SILU }, { "quick_gelu", 0, 0 }, { "gelu_fast", 0, 0 }, { "GELU", 0, 0 }, { "", 0, 0 },
    };
    int good = 1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        enum kn_act k = KN_ACT_RELU;
        int rc = kn_act_from_name(names[i].name, &k);
        if ((rc == 0) != names[i].ok || (rc == 0 && k != names[i].kind)) {
            good = 0;
            printf("# kn_act_from_name(\"%s\") gave rc %d kind %d\n", names[i].name, rc, (int)k);
        }
    }
    enum kn_act k;
    CHECK(good && kn_act_from_name(NULL, &k) == -1, "kn_act_from_name maps the 7 HF names and refuses quick_gelu, gelu_fast, GELU, \"\" and NULL");
    int round = 1;
    for (int i = 0; i < 4; i++) round &= kn_act_from_name(kn_act_name(all_kinds[i]), &k) == 0 && k == all_kinds[i];
    CHECK(round, "kn_act_name round-trips through kn_act_from_name for every kind");

    printf("# activations: finite differences and accumulation (24 inputs with |x| in [0.05, 4])\n");
    long n = 24;
    for (int ki = 0; ki < 4; ki++) {
        act_ctx c = { .n = n, .kind = all_kinds[ki] };
        c.inp = rand_vec(n, 4); c.g = rand_vec(n, 1); c.out = zeros(n);
        for (long i = 0; i < n; i++) /* away from ReLU's kink, so h = 1e-2 differences are clean */
            if (fabsf(c.inp[i]) < 0.05f) c.inp[i] = c.inp[i] < 0 ? -0.05f - 0.1f * (float)i / n : 0.05f + 0.1f * (float)i / n;
        float *dinp = zeros(n), *fd = zeros(n);
        float h = 1e-2f;
        act_backward(c.kind, dinp, c.g, c.inp, n);
        fd_grad(c.inp, n, h, act_scalar, &c, fd);
        char what[80];
        snprintf(what, sizeof what, "act %s d/d inp", kn_act_name(c.kind));
        check_fd(what, fd, dinp, n, h);
        float *once = copy(dinp, n);
        act_backward(c.kind, dinp, c.g, c.inp, n);
        snprintf(what, sizeof what, "act_backward %s", kn_act_name(c.kind));
        check_doubled(what, dinp, once, n);

        glu_ctx gc = { .n = n, .kind = all_kinds[ki] };
        gc.gate = copy(c.inp, n); gc.up = rand_vec(n, 2); gc.g = c.g; gc.act = zeros(n);
        float *dgate = zeros(n), *dup = zeros(n);
        glu_backward(gc.kind, dgate, dup, gc.g, gc.gate, gc.up, n);
        fd_grad(gc.gate, n, h, glu_scalar, &gc, fd);
        snprintf(what, sizeof what, "glu %s d/d gate", kn_act_name(gc.kind));
        check_fd(what, fd, dgate, n, h);
        fd_grad(gc.up, n, h, glu_scalar, &gc, fd);
        snprintf(what, sizeof what, "glu %s d/d up", kn_act_name(gc.kind));
        check_fd(what, fd, dup, n, h);
        float *once_g = copy(dgate, n), *once_u = copy(dup, n);
        glu_backward(gc.kind, dgate, dup, gc.g, gc.gate, gc.up, n);
        snprintf(what, sizeof what, "glu_backward %s dgate", kn_act_name(gc.kind));
        check_doubled(what, dgate, once_g, n);
        snprintf(what, sizeof what, "glu_backward %s dup", kn_act_name(gc.kind));
        check_doubled(what, dup, once_u, n);
        /* glu is f(gate) * up, with f the plain activation's forward */
        float *f = zeros(n), *prod = zeros(n);
        act_forward(gc.kind, f, gc.gate, n);
        for (long i = 0; i < n; i++) prod[i] = f[i] * gc.up[i];
        glu_forward(gc.kind, gc.act, gc.gate, gc.up, n);
        CHECK(memcmp(prod, gc.act, sizeof(float) * n) == 0, "glu_forward %s = act_forward(gate) * up, bit for bit", kn_act_name(gc.kind));
        free(f); free(prod); free(once_g); free(once_u); free(dgate); free(dup); free(gc.gate); free(gc.up); free(gc.act);
        free(once); free(c.inp); free(c.g); free(c.out); free(dinp); free(fd);
    }
    /* the erf kind is gelu_forward / gelu_backward themselves */
    float *x = rand_vec(n, 5), *a = zeros(n), *b = zeros(n), *g = rand_vec(n, 1);
    gelu_forward(a, x, n);
    act_forward(KN_ACT_GELU_ERF, b, x, n);
    int same = memcmp(a, b, sizeof(float) * n) == 0;
    memset(a, 0, sizeof(float) * n); memset(b, 0, sizeof(float) * n);
    gelu_backward(a, g, x, n);
    act_backward(KN_ACT_GELU_ERF, b, g, x, n);
    CHECK(same && memcmp(a, b, sizeof(float) * n) == 0, "act_*(KN_ACT_GELU_ERF) is gelu_forward/gelu_backward, bit for bit");
    free(x); free(a); free(b); free(g);

    printf("# activations against torch (53 inputs: 0, +-1e-3, +-0.5, +-3, +-6, +-10, -20, 30, 40 N(0, 9))\n");
    json_error_t je;
    json_t *cases = json_load_file(FIXTURE_DIR "/cases.json", 0, &je);
    json_t *ac = cases ? json_object_get(cases, "act") : NULL;
    long na = (long)json_integer_value(json_object_get(ac, "act_n")), ns = (long)json_integer_value(json_object_get(ac, "swiglu_n"));
    json_decref(cases);
    const float *X = fxt("act.x", na);
    struct { const char *ref; enum kn_act kind; } refs[] = {
        { "gelu_new", KN_ACT_GELU_TANH }, { "gelu_pytorch_tanh", KN_ACT_GELU_TANH }, { "gelu", KN_ACT_GELU_ERF },
        { "relu", KN_ACT_RELU }, { "silu", KN_ACT_SILU },
    };
    if (X && na > 0) {
        float *y = zeros(na), *dy = zeros(na), *ones = zeros(na);
        for (long i = 0; i < na; i++) ones[i] = 1.0f;
        for (size_t r = 0; r < sizeof refs / sizeof refs[0]; r++) {
            char name[64], what[96];
            snprintf(name, sizeof name, "act.%s", refs[r].ref);
            const float *Y = fxt(name, na);
            snprintf(name, sizeof name, "act.%s.grad", refs[r].ref);
            const float *DY = fxt(name, na);
            if (!Y || !DY) continue;
            act_forward(refs[r].kind, y, X, na);
            memset(dy, 0, sizeof(float) * na);
            act_backward(refs[r].kind, dy, ones, X, na);
            snprintf(what, sizeof what, "torch %s (float32) vs act_forward %s", refs[r].ref, kn_act_name(refs[r].kind));
            check_close(what, y, Y, na, 1e-6);
            snprintf(what, sizeof what, "torch %s derivative (float64 autograd) vs act_backward", refs[r].ref);
            check_close(what, dy, DY, na, 1e-6);
        }
        free(y); free(dy); free(ones);
    }
    const float *gate = fxt("swiglu.gate", ns), *up = fxt("swiglu.up", ns), *G = fxt("swiglu.g", ns);
    const float *ACT = fxt("swiglu.act", ns), *DG = fxt("swiglu.dgate", ns), *DU = fxt("swiglu.dup", ns);
    if (gate && up && G && ACT && DG && DU) {
        float *act = zeros(ns), *dg = zeros(ns), *du = zeros(ns);
        glu_forward(KN_ACT_SILU, act, gate, up, ns);
        glu_backward(KN_ACT_SILU, dg, du, G, gate, up, ns);
        check_close("torch SwiGLU silu(gate) * up (float32)", act, ACT, ns, 1e-6);
        check_close("torch SwiGLU d gate (float64 autograd)", dg, DG, ns, 1e-6);
        check_close("torch SwiGLU d up (float64 autograd)", du, DU, ns, 1e-6);
        free(act); free(dg); free(du);
    }
}

/* ================================================================ RoPE */

static int ulps_apart(float a, float b) {
    if (a == b) return 0;
    int n = 0;
    float lo = a < b ? a : b, hi = a < b ? b : a;
    while (lo < hi && n < 1000) { lo = nextafterf(lo, hi); n++; }
    return n;
}

typedef struct { float *out, *inp, *cos, *sin, *g; int N, H, d; } rope_ctx;
static double rope_scalar(void *p) {
    rope_ctx *c = p;
    rope_forward(c->out, c->inp, c->cos, c->sin, c->N, c->H, c->d);
    return dot(c->g, c->out, (long)c->N * c->H * c->d);
}

static int rope_from_json(json_t *c, kn_rope *r, int *d) {
    const char *type = json_string_value(json_object_get(c, "type"));
    memset(r, 0, sizeof *r);
    if (!type) return -1;
    r->type = strcmp(type, "linear") == 0 ? KN_ROPE_LINEAR : strcmp(type, "llama3") == 0 ? KN_ROPE_LLAMA3 : KN_ROPE_DEFAULT;
    r->theta = json_number_value(json_object_get(c, "theta"));
    r->factor = json_number_value(json_object_get(c, "factor"));
    r->low_freq_factor = json_number_value(json_object_get(c, "low_freq_factor"));
    r->high_freq_factor = json_number_value(json_object_get(c, "high_freq_factor"));
    r->original_max_position_embeddings = json_number_value(json_object_get(c, "original_max_position_embeddings"));
    *d = (int)json_integer_value(json_object_get(c, "d"));
    return 0;
}

static void test_rope_reference(void) {
    json_error_t je;
    json_t *cases = json_load_file(FIXTURE_DIR "/cases.json", 0, &je);
    CHECK(cases != NULL, "cases.json loads (%s)", cases ? "ok" : je.text);
    if (!cases) return;
    json_t *jp = json_object_get(cases, "positions"), *jr = json_object_get(cases, "rope");
    int P = (int)json_array_size(jp), H = (int)json_integer_value(json_object_get(cases, "rope_heads"));
    int pos[64];
    for (int i = 0; i < P && i < 64; i++) pos[i] = (int)json_integer_value(json_array_get(jp, i));
    for (size_t ci = 0; ci < json_array_size(jr); ci++) {
        json_t *c = json_array_get(jr, ci);
        const char *name = json_string_value(json_object_get(c, "name"));
        kn_rope r;
        int d = 0;
        rope_from_json(c, &r, &d);
        printf("# rope %s: %s, theta %g, d %d, %d positions up to %d\n", name,
               json_string_value(json_object_get(c, "type")), r.theta, d, P, pos[P - 1]);
        char key[96];
        long nt = (long)P * d, nq = (long)P * H * d;
        snprintf(key, sizeof key, "rope.%s.inv_freq", name); const float *INV = fxt(key, d / 2);
        snprintf(key, sizeof key, "rope.%s.cos", name); const float *COS = fxt(key, nt);
        snprintf(key, sizeof key, "rope.%s.sin", name); const float *SIN = fxt(key, nt);
        snprintf(key, sizeof key, "rope.%s.cos_exact", name); const float *COSX = fxt(key, nt);
        snprintf(key, sizeof key, "rope.%s.q", name); const float *Q = fxt(key, nq);
        snprintf(key, sizeof key, "rope.%s.q_rot", name); const float *QR = fxt(key, nq);
        if (!INV || !COS || !SIN || !COSX || !Q || !QR || d < 2) continue;
        float inv[64], *ct = zeros(nt), *st = zeros(nt), *qr = zeros(nq);
        kn_err err = { "" };
        int rc = rope_inv_freq(inv, &r, d, &err);
        CHECK(rc == 0, "rope_inv_freq accepts the settings (%s)", rc ? err.msg : "ok");
        /* pow is the one step whose rounding torch may do differently (a near-tie can land on
         * the other neighbour): ours is the correctly rounded value, HF's at most 1 ulp away */
        int worst = 0, differ = 0;
        for (int i = 0; i < d / 2; i++) {
            int u = ulps_apart(inv[i], INV[i]);
            worst = u > worst ? u : worst;
            differ += u != 0;
        }
        CHECK(worst <= 1, "inv_freq[%d] vs HF's float32 inv_freq: %d entries differ, by at most %d ulp (tol 1)", d / 2, differ, worst);
        /* the table recipe itself, on HF's own inv_freq: float32 angle, cos/sin rounded once */
        rope_table(ct, st, INV, pos, P, d);
        double ec = max_diff(ct, COS, nt), es = max_diff(st, SIN, nt), ex = max_diff(ct, COSX, nt);
        CHECK(ec <= 1.2e-7 && es <= 1.2e-7, "cos/sin tables [%d, %d] from HF's inv_freq vs HF: max |diff| %.1e, %.1e (tol 1.2e-7, 2 float32 steps at 1)",
              P, d, ec, es);
        CHECK(ex > 20 * fmax(fmax(ec, es), 1e-9), "  they follow HF's float32 angles, not exact math: the float64 table is %.1e away", ex);
        rope_forward(qr, Q, ct, st, P, H, d);
        check_close("rotated q [13 rows, 3 heads] vs HF apply_rotary_pos_emb", qr, QR, nq, 2e-7);
        /* our own inv_freq: an entry 1 ulp off HF's moves its angle by pos * |difference| */
        rope_table(ct, st, inv, pos, P, d);
        double excess = 0, spread = 0;
        for (int n = 0; n < P; n++)
            for (int j = 0; j < d; j++) {
                int i = j % (d / 2);
                double bound = fabs((double)pos[n] * ((double)inv[i] - INV[i])) + 2.4e-7;
                double e = fmax(fabs((double)ct[n * d + j] - COS[n * d + j]), fabs((double)st[n * d + j] - SIN[n * d + j]));
                excess = fmax(excess, e - bound);
                spread = fmax(spread, e);
            }
        CHECK(excess <= 0, "tables from our inv_freq vs HF: max |diff| %.1e, within pos * |inv_freq difference| + 2.4e-7 everywhere", spread);
        free(ct); free(st); free(qr);
    }
    json_decref(cases);
}

static void test_rope(void) {
    printf("# rope: finite differences, accumulation, invariants (N=5, H=3, d=10)\n");
    int N = 5, H = 3, d = 10;
    long nt = (long)N * d, nq = (long)N * H * d;
    kn_rope r = { .type = KN_ROPE_DEFAULT, .theta = 10000.0 };
    float inv[5];
    kn_err err = { "" };
    rope_inv_freq(inv, &r, d, &err);
    int pos[5] = { 0, 3, 17, 250, 4000 };
    rope_ctx c = { .N = N, .H = H, .d = d };
    c.cos = zeros(nt); c.sin = zeros(nt);
    rope_table(c.cos, c.sin, inv, pos, N, d);
    c.inp = rand_vec(nq, 1); c.g = rand_vec(nq, 1); c.out = zeros(nq);
    float *dinp = zeros(nq), *fd = zeros(nq);
    float h = 1e-2f;
    rope_backward(dinp, c.g, c.cos, c.sin, N, H, d);
    fd_grad(c.inp, nq, h, rope_scalar, &c, fd);
    check_fd("rope d/d inp", fd, dinp, nq, h);
    float *once = copy(dinp, nq);
    rope_backward(dinp, c.g, c.cos, c.sin, N, H, d);
    check_doubled("rope_backward dinp", dinp, once, nq);

    rope_forward(c.out, c.inp, c.cos, c.sin, N, H, d);
    float *inplace = copy(c.inp, nq);
    rope_forward(inplace, inplace, c.cos, c.sin, N, H, d);
    CHECK(memcmp(inplace, c.out, sizeof(float) * nq) == 0, "rope_forward in place = out of place, bit for bit");
    double pair = 0;
    for (long n = 0; n < N; n++)
        for (int hh = 0; hh < H; hh++)
            for (int i = 0; i < d / 2; i++) {
                long o = (n * H + hh) * d;
                double a = (double)c.inp[o + i] * c.inp[o + i] + (double)c.inp[o + i + d / 2] * c.inp[o + i + d / 2];
                double b = (double)c.out[o + i] * c.out[o + i] + (double)c.out[o + i + d / 2] * c.out[o + i + d / 2];
                pair = fmax(pair, fabs(a - b) / fmax(a, 1e-12));
            }
    CHECK(pair < 1e-6, "each rotated pair (x1[i], x2[i]) keeps its norm (max rel change %.1e)", pair);
    float *back = zeros(nq);
    rope_backward(back, c.out, c.cos, c.sin, N, H, d);
    check_close("rope_backward(rope_forward(x)) = x (the backward is the inverse rotation)", back, c.inp, nq, 1e-6);

    /* q'.k' depends only on the position difference (no scaling): pairs (m, n) with m - n = 3 */
    int mpos[4] = { 5, 10, 103, 1003 }, npos[4] = { 2, 7, 100, 1000 };
    float *qv = rand_vec(d, 1), *kv = rand_vec(d, 1), cq[10], sq[10], ck[10], sk[10], qr[10], kr[10];
    double dots[4];
    for (int i = 0; i < 4; i++) {
        rope_table(cq, sq, inv, &mpos[i], 1, d);
        rope_table(ck, sk, inv, &npos[i], 1, d);
        rope_forward(qr, qv, cq, sq, 1, 1, d);
        rope_forward(kr, kv, ck, sk, 1, 1, d);
        dots[i] = dot(qr, kr, d);
    }
    double spread = 0;
    for (int i = 1; i < 4; i++) spread = fmax(spread, fabs(dots[i] - dots[0]));
    CHECK(spread < 1e-5 * fmax(1, fabs(dots[0])), "q'.k' for positions (5,2), (10,7), (103,100), (1003,1000): %.6f %.6f %.6f %.6f (spread %.1e)",
          dots[0], dots[1], dots[2], dots[3], spread);
    rope_table(cq, sq, inv, NULL, 1, d);
    int unit = 1;
    for (int i = 0; i < d; i++) unit &= cq[i] == 1.0f && sq[i] == 0.0f;
    CHECK(unit, "position 0 (pos NULL, row 0) is the identity rotation: cos 1, sin 0");
    free(qv); free(kv); free(back); free(inplace); free(once);
    free(c.cos); free(c.sin); free(c.inp); free(c.g); free(c.out); free(dinp); free(fd);

    printf("# rope: refusals\n");
    float buf[16];
    kn_rope bad = r;
    CHECK(rope_inv_freq(buf, &r, 9, &err) != 0, "odd head width refused");
    CHECK_MSG(err.msg, "head width 9", "odd head width");
    bad.theta = 0;
    CHECK(rope_inv_freq(buf, &bad, 8, &err) != 0, "rope_theta 0 refused");
    CHECK_MSG(err.msg, "rope_theta", "rope_theta 0");
    bad = (kn_rope){ .type = KN_ROPE_LINEAR, .theta = 1e4, .factor = 0 };
    CHECK(rope_inv_freq(buf, &bad, 8, &err) != 0, "linear factor 0 refused");
    CHECK_MSG(err.msg, "rope_scaling.factor", "linear factor 0");
    bad = (kn_rope){ .type = KN_ROPE_LLAMA3, .theta = 5e5, .factor = 8, .low_freq_factor = 4, .high_freq_factor = 4,
                     .original_max_position_embeddings = 8192 };
    CHECK(rope_inv_freq(buf, &bad, 8, &err) != 0, "llama3 high_freq_factor = low_freq_factor refused");
    CHECK_MSG(err.msg, "high_freq_factor", "llama3 equal factors");
    bad.high_freq_factor = 8; bad.original_max_position_embeddings = 0;
    CHECK(rope_inv_freq(buf, &bad, 8, &err) != 0, "llama3 original_max_position_embeddings 0 refused");
    CHECK_MSG(err.msg, "original_max_position_embeddings", "llama3 zero context");
    /* linear with a power-of-two factor: dividing inv_freq is dividing the positions, exactly */
    kn_rope lin = { .type = KN_ROPE_LINEAR, .theta = 1e4, .factor = 4 };
    float il[8], i0[8], c1[16 * 8], s1[16 * 8], c2[16 * 8], s2[16 * 8];
    rope_inv_freq(il, &lin, 16, &err);
    rope_inv_freq(i0, &r, 16, &err);
    int p4[8] = { 0, 4, 8, 40, 400, 4000, 40000, 400000 }, p1[8] = { 0, 1, 2, 10, 100, 1000, 10000, 100000 };
    rope_table(c1, s1, il, p4, 8, 16);
    rope_table(c2, s2, i0, p1, 8, 16);
    CHECK(memcmp(c1, c2, sizeof c1) == 0 && memcmp(s1, s2, sizeof s1) == 0,
          "linear factor 4 at positions 4p = default at positions p, bit for bit");
}

/* ================================================================ attention */

typedef struct { float *ctx, *att, *q, *k, *v, *mask, *g; const int *qpos; attn_dims d; } at_ctx;
static double at_scalar(void *p) {
    at_ctx *c = p;
    attn_forward(c->ctx, c->att, c->q, c->k, c->v, c->mask, c->qpos, &c->d);
    return dot(c->g, c->ctx, (long)c->d.B * c->d.Tq * c->d.NH * c->d.hd);
}

static int excluded(const attn_dims *d, const float *mask, int p, int s) {
    if (!d->causal) return 0;
    return s > p || (d->window > 0 && p - s >= d->window) || (mask && mask[s] == 0.0f);
}

/* Checks att's structure: excluded keys exactly 0, rows with keys summing to 1, rows without
 * keys all zero with a zero context. */
static void check_att_structure(const char *what, const float *att, const float *ctx, const float *mask, const int *qpos,
                                const attn_dims *d) {
    long bad = 0, empty = 0, live = 0, nonzero_empty = 0;
    double sum_err = 0;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->NH; h++)
            for (int i = 0; i < d->Tq; i++) {
                int p = qpos ? qpos[b * d->Tq + i] : d->T - d->Tq + i;
                const float *row = att + (((long)b * d->NH + h) * d->Tq + i) * d->T;
                const float *m = mask ? mask + (long)b * d->T : NULL;
                int any = 0;
                double sum = 0;
                for (int s = 0; s < d->T; s++) {
                    if (excluded(d, m, p, s)) bad += row[s] != 0.0f;
                    else any = 1;
                    sum += row[s];
                }
                if (any) { live++; sum_err = fmax(sum_err, fabs(sum - 1)); }
                else {
                    empty++;
                    const float *cr = ctx + ((long)b * d->Tq + i) * d->NH * d->hd + (long)h * d->hd;
                    for (int s = 0; s < d->T; s++) nonzero_empty += row[s] != 0.0f;
                    for (int j = 0; j < d->hd; j++) nonzero_empty += cr[j] != 0.0f;
                }
            }
    CHECK(bad == 0 && sum_err < 1e-6 && nonzero_empty == 0,
          "%s: excluded keys (future%s%s) have probability exactly 0 (%ld not), %ld rows sum to 1 (max err %.1e), %ld rows without keys are all 0 (%ld not)",
          what, d->window ? ", outside the window" : "", mask ? ", padding" : "", bad, live, sum_err, empty, nonzero_empty);
}

static void attn_fd_case(const char *what, attn_dims d, const int *qpos, int padded) {
    printf("# attention FD: %s (B=%d T=%d Tq=%d NH=%d NKV=%d hd=%d causal=%d window=%d)\n", what, d.B, d.T, d.Tq, d.NH,
           d.NKV, d.hd, d.causal, d.window);
    kn_err err = { "" };
    CHECK(attn_check(&d, qpos, &err) == 0, "attn_check accepts it (%s)", err.msg[0] ? err.msg : "ok");
    long nq = (long)d.B * d.Tq * d.NH * d.hd, nk = (long)d.B * d.T * d.NKV * d.hd, na = (long)d.B * d.NH * d.Tq * d.T;
    at_ctx c = { .d = d, .qpos = qpos };
    c.q = rand_vec(nq, 1); c.k = rand_vec(nk, 1); c.v = rand_vec(nk, 1); c.g = rand_vec(nq, 1);
    c.ctx = zeros(nq); c.att = zeros(na);
    float *mask = NULL;
    if (padded) { /* sequence 1: causal rows are left-padded by 2, bidirectional rows right-padded by 2 */
        mask = malloc(sizeof(float) * d.B * d.T);
        for (int i = 0; i < d.B * d.T; i++) {
            int b = i / d.T, t = i % d.T;
            mask[i] = b == 1 && (d.causal ? t < 2 : t >= d.T - 2) ? 0.0f : 1.0f;
        }
    }
    c.mask = mask;
    at_scalar(&c);
    check_att_structure(what, c.att, c.ctx, mask, qpos, &d);
    float *att = copy(c.att, na);
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk), *datt = zeros(na), *fd = zeros(nq > nk ? nq : nk);
    attn_backward(dq, dk, dv, datt, c.g, att, c.q, c.k, c.v, &d);
    float h = 1e-2f;
    char name[128];
    fd_grad(c.q, nq, h, at_scalar, &c, fd);
    snprintf(name, sizeof name, "%s d/d q", what);
    check_fd(name, fd, dq, nq, h);
    fd_grad(c.k, nk, h, at_scalar, &c, fd);
    snprintf(name, sizeof name, "%s d/d k", what);
    check_fd(name, fd, dk, nk, h);
    fd_grad(c.v, nk, h, at_scalar, &c, fd);
    snprintf(name, sizeof name, "%s d/d v", what);
    check_fd(name, fd, dv, nk, h);
    float *oq = copy(dq, nq), *ok_ = copy(dk, nk), *ov = copy(dv, nk);
    memset(datt, 0xff, sizeof(float) * na); /* scratch: garbage in must not matter */
    attn_backward(dq, dk, dv, datt, c.g, att, c.q, c.k, c.v, &d);
    snprintf(name, sizeof name, "%s attn_backward dq", what);
    check_doubled(name, dq, oq, nq);
    snprintf(name, sizeof name, "%s attn_backward dk", what);
    check_doubled(name, dk, ok_, nk);
    snprintf(name, sizeof name, "%s attn_backward dv", what);
    check_doubled(name, dv, ov, nk);
    free(oq); free(ok_); free(ov); free(att); free(mask);
    free(c.q); free(c.k); free(c.v); free(c.g); free(c.ctx); free(c.att); free(dq); free(dk); free(dv); free(datt); free(fd);
}

/* Query rows qrows[b*Tq + i] (absolute positions) of a full run vs the subset kernel on those
 * rows only: forward rows and probabilities, then dq rows and the whole dk, dv when only those
 * rows carry an upstream gradient. */
static void attn_subset_case(const char *what, attn_dims full, int Tq, const int *qrows, int pass_qpos) {
    int B = full.B, T = full.T, QC = full.NH * full.hd, KC = full.NKV * full.hd;
    attn_dims sub = full;
    sub.Tq = Tq;
    long nq = (long)B * T * QC, nk = (long)B * T * KC, na = (long)B * full.NH * T * T;
    long sq = (long)B * Tq * QC, sa = (long)B * full.NH * Tq * T;
    float *q = rand_vec(nq, 1), *k = rand_vec(nk, 1), *v = rand_vec(nk, 1);
    float *mask = malloc(sizeof(float) * B * T);
    for (int i = 0; i < B * T; i++) mask[i] = i == T + (full.causal ? 0 : T - 1) ? 0.0f : 1.0f; /* one padded key in sequence 1 */
    float *ctx = zeros(nq), *att = zeros(na), *qs = zeros(sq), *cs = zeros(sq), *as = zeros(sa);
    float *gs = rand_vec(sq, 1), *gf = zeros(nq);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tq; i++) {
            int p = qrows[b * Tq + i];
            memcpy(qs + ((long)b * Tq + i) * QC, q + ((long)b * T + p) * QC, sizeof(float) * QC);
            memcpy(gf + ((long)b * T + p) * QC, gs + ((long)b * Tq + i) * QC, sizeof(float) * QC);
        }
    attn_forward(ctx, att, q, k, v, mask, NULL, &full);
    attn_forward(cs, as, qs, k, v, mask, pass_qpos ? qrows : NULL, &sub);
    float *cf = zeros(sq), *af = zeros(sa);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tq; i++) {
            int p = qrows[b * Tq + i];
            memcpy(cf + ((long)b * Tq + i) * QC, ctx + ((long)b * T + p) * QC, sizeof(float) * QC);
            for (int h = 0; h < full.NH; h++)
                memcpy(af + (((long)b * full.NH + h) * Tq + i) * T, att + (((long)b * full.NH + h) * T + p) * T, sizeof(float) * T);
        }
    char name[160];
    snprintf(name, sizeof name, "%s: ctx rows = the full run's", what);
    check_close(name, cs, cf, sq, 1e-6);
    snprintf(name, sizeof name, "%s: probabilities = the full run's rows", what);
    check_close(name, as, af, sa, 1e-6);
    float *dqf = zeros(nq), *dkf = zeros(nk), *dvf = zeros(nk), *dqs = zeros(sq), *dks = zeros(nk), *dvs = zeros(nk);
    float *datt = zeros(na);
    attn_backward(dqf, dkf, dvf, datt, gf, att, q, k, v, &full);
    attn_backward(dqs, dks, dvs, datt, gs, as, qs, k, v, &sub);
    float *dqrows = zeros(sq);
    double other = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tq; i++)
            memcpy(dqrows + ((long)b * Tq + i) * QC, dqf + ((long)b * T + qrows[b * Tq + i]) * QC, sizeof(float) * QC);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int is_q = 0;
            for (int i = 0; i < Tq; i++) is_q |= qrows[b * Tq + i] == t;
            if (!is_q) other = fmax(other, max_abs(dqf + ((long)b * T + t) * QC, QC));
        }
    snprintf(name, sizeof name, "%s: dq rows = the full backward's", what);
    check_close(name, dqs, dqrows, sq, 1e-6);
    CHECK(other == 0, "%s: the full backward's other dq rows are exactly 0 (max %.1e)", what, other);
    snprintf(name, sizeof name, "%s: dk = the full backward's", what);
    check_close(name, dks, dkf, nk, 1e-6);
    snprintf(name, sizeof name, "%s: dv = the full backward's", what);
    check_close(name, dvs, dvf, nk, 1e-6);
    free(q); free(k); free(v); free(mask); free(ctx); free(att); free(qs); free(cs); free(as); free(gs); free(gf);
    free(cf); free(af); free(dqf); free(dkf); free(dvf); free(dqs); free(dks); free(dvs); free(datt); free(dqrows);
}

static void test_attention(void) {
    attn_dims base = { .B = 2, .T = 7, .Tq = 7, .NH = 6, .NKV = 2, .hd = 8, .causal = 1, .window = 0 };
    attn_fd_case("causal GQA, padded", base, NULL, 1);
    attn_dims w = base;
    w.window = 3;
    attn_fd_case("causal GQA, window 3, padded", w, NULL, 1);
    attn_dims bi = base;
    bi.causal = 0;
    attn_fd_case("bidirectional GQA, padded", bi, NULL, 1);
    attn_dims mha = { .B = 1, .T = 5, .Tq = 5, .NH = 3, .NKV = 3, .hd = 4, .causal = 1 };
    attn_fd_case("causal MHA, no mask", mha, NULL, 0);
    attn_dims sub = base;
    sub.Tq = 3;
    int qpos[6] = { 1, 4, 6, 0, 3, 5 };
    attn_fd_case("causal GQA, 3 query rows per sequence at given positions", sub, qpos, 1);

    printf("# attention: query subsets vs the full computation\n");
    int last[6] = { 4, 5, 6, 4, 5, 6 }, some[6] = { 1, 4, 6, 0, 3, 5 }, one[2] = { 3, 6 };
    attn_subset_case("causal, last 3 rows (qpos NULL)", base, 3, last, 0);
    attn_subset_case("causal, rows {1,4,6} and {0,3,5} (qpos)", base, 3, some, 1);
    attn_subset_case("causal window 3, rows {1,4,6} and {0,3,5}", w, 3, some, 1);
    attn_subset_case("bidirectional, one prediction row per sequence (3 and 6)", bi, 1, one, 1);
    attn_subset_case("causal, the last row only (a KV-cached step)", base, 1, (int[]){ 6, 6 }, 0);

    printf("# attention: GQA = MHA on repeated key/value heads\n");
    for (int causal = 0; causal < 2; causal++) {
        attn_dims g = base, m = base;
        g.causal = m.causal = causal;
        m.NKV = m.NH;
        int B = g.B, T = g.T, QC = g.NH * g.hd, KC = g.NKV * g.hd, group = g.NH / g.NKV, hd = g.hd;
        long nq = (long)B * T * QC, nk = (long)B * T * KC, na = (long)B * g.NH * T * T;
        float *q = rand_vec(nq, 1), *k = rand_vec(nk, 1), *v = rand_vec(nk, 1), *gr = rand_vec(nq, 1);
        float *kr = zeros(nq), *vr = zeros(nq);
        for (long r = 0; r < (long)B * T; r++)
            for (int h = 0; h < g.NH; h++) {
                memcpy(kr + r * QC + h * hd, k + r * KC + (h / group) * hd, sizeof(float) * hd);
                memcpy(vr + r * QC + h * hd, v + r * KC + (h / group) * hd, sizeof(float) * hd);
            }
        float *c1 = zeros(nq), *a1 = zeros(na), *c2 = zeros(nq), *a2 = zeros(na), *datt = zeros(na);
        attn_forward(c1, a1, q, k, v, NULL, NULL, &g);
        attn_forward(c2, a2, q, kr, vr, NULL, NULL, &m);
        char name[96];
        snprintf(name, sizeof name, "%s GQA (6 over 2) ctx = MHA on repeated heads", causal ? "causal" : "bidirectional");
        check_close(name, c1, c2, nq, 1e-6);
        float *dq1 = zeros(nq), *dk1 = zeros(nk), *dv1 = zeros(nk), *dq2 = zeros(nq), *dk2 = zeros(nq), *dv2 = zeros(nq);
        attn_backward(dq1, dk1, dv1, datt, gr, a1, q, k, v, &g);
        attn_backward(dq2, dk2, dv2, datt, gr, a2, q, kr, vr, &m);
        float *dks = zeros(nk), *dvs = zeros(nk);
        for (long r = 0; r < (long)B * T; r++)
            for (int h = 0; h < g.NH; h++)
                for (int j = 0; j < hd; j++) {
                    dks[r * KC + (h / group) * hd + j] += dk2[r * QC + h * hd + j];
                    dvs[r * KC + (h / group) * hd + j] += dv2[r * QC + h * hd + j];
                }
        snprintf(name, sizeof name, "%s GQA dq = MHA's", causal ? "causal" : "bidirectional");
        check_close(name, dq1, dq2, nq, 1e-6);
        snprintf(name, sizeof name, "%s GQA dk = MHA's summed over each group's heads", causal ? "causal" : "bidirectional");
        check_close(name, dk1, dks, nk, 1e-6);
        snprintf(name, sizeof name, "%s GQA dv = MHA's summed over each group's heads", causal ? "causal" : "bidirectional");
        check_close(name, dv1, dvs, nk, 1e-6);
        free(q); free(k); free(v); free(gr); free(kr); free(vr); free(c1); free(a1); free(c2); free(a2); free(datt);
        free(dq1); free(dk1); free(dv1); free(dq2); free(dk2); free(dv2); free(dks); free(dvs);
    }

    printf("# attention: refusals\n");
    kn_err err = { "" };
    attn_dims bad = base;
    bad.NKV = 4;
    CHECK(attn_check(&bad, NULL, &err) != 0, "6 query heads over 4 key/value heads refused");
    CHECK_MSG(err.msg, "not a multiple of 4", "NH % NKV");
    bad = base; bad.Tq = 8;
    CHECK(attn_check(&bad, NULL, &err) != 0, "8 query rows of 7 refused");
    CHECK_MSG(err.msg, "8 query rows", "Tq > T");
    bad = base; bad.causal = 0; bad.window = 4;
    CHECK(attn_check(&bad, NULL, &err) != 0, "a sliding window on bidirectional attention refused");
    CHECK_MSG(err.msg, "sliding window 4", "window without causal");
    bad = base; bad.hd = 0;
    CHECK(attn_check(&bad, NULL, &err) != 0, "head width 0 refused");
    CHECK_MSG(err.msg, "hd 0", "hd 0");
    int badpos[6] = { 1, 4, 7, 0, 3, 5 };
    CHECK(attn_check(&sub, badpos, &err) != 0, "a query position 7 of 7 keys refused");
    CHECK_MSG(err.msg, "position 7 out of range [0, 7)", "qpos");
}

static void test_attention_reference(void) {
    json_error_t je;
    json_t *cases = json_load_file(FIXTURE_DIR "/cases.json", 0, &je);
    json_t *ac = cases ? json_object_get(cases, "attn") : NULL;
    attn_dims d = { .B = (int)json_integer_value(json_object_get(ac, "B")), .T = (int)json_integer_value(json_object_get(ac, "T")),
                    .NH = (int)json_integer_value(json_object_get(ac, "NH")), .NKV = (int)json_integer_value(json_object_get(ac, "NKV")),
                    .hd = (int)json_integer_value(json_object_get(ac, "hd")), .causal = 1 };
    int window = (int)json_integer_value(json_object_get(ac, "window"));
    json_decref(cases);
    d.Tq = d.T;
    kn_err err = { "" };
    if (attn_check(&d, NULL, &err) != 0) { CHECK(0, "attention fixture sizes (%s)", err.msg); return; }
    long nq = (long)d.B * d.T * d.NH * d.hd, nk = (long)d.B * d.T * d.NKV * d.hd, na = (long)d.B * d.NH * d.T * d.T;
    const float *q = fxt("attn.q", nq), *k = fxt("attn.k", nk), *v = fxt("attn.v", nk), *mask = fxt("attn.keymask", (long)d.B * d.T);
    if (!q || !k || !v || !mask) return;
    for (int wi = 0; wi < 2; wi++) {
        const char *tag = wi ? "attn_win" : "attn";
        d.window = wi ? window : 0;
        printf("# torch Llama eager attention%s: B=%d T=%d NH=%d NKV=%d hd=%d, sequence 1 left-padded by 2\n",
               wi ? " with sliding window" : "", d.B, d.T, d.NH, d.NKV, d.hd);
        char key[64];
        snprintf(key, sizeof key, "%s.ctx", tag); const float *CTX = fxt(key, nq);
        snprintf(key, sizeof key, "%s.att", tag); const float *ATT = fxt(key, na);
        snprintf(key, sizeof key, "%s.g", tag); const float *G = fxt(key, nq);
        snprintf(key, sizeof key, "%s.live", tag); const float *LIVE = fxt(key, (long)d.B * d.T);
        snprintf(key, sizeof key, "%s.dq", tag); const float *DQ = fxt(key, nq);
        snprintf(key, sizeof key, "%s.dk", tag); const float *DK = fxt(key, nk);
        snprintf(key, sizeof key, "%s.dv", tag); const float *DV = fxt(key, nk);
        if (!CTX || !ATT || !G || !LIVE || !DQ || !DK || !DV) continue;
        float *ctx = zeros(nq), *att = zeros(na), *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk), *datt = zeros(na);
        attn_forward(ctx, att, q, k, v, mask, NULL, &d);
        attn_backward(dq, dk, dv, datt, G, att, q, k, v, &d);
        /* rows with no key at all are defined differently (HF spreads them uniformly): compare the live ones */
        int QC = d.NH * d.hd, live = 0;
        float *c1 = zeros(nq), *c2 = zeros(nq), *a1 = zeros(na), *a2 = zeros(na);
        long nc = 0, nat = 0;
        for (int b = 0; b < d.B; b++)
            for (int t = 0; t < d.T; t++) {
                if (LIVE[b * d.T + t] == 0.0f) continue;
                live++;
                memcpy(c1 + nc, ctx + ((long)b * d.T + t) * QC, sizeof(float) * QC);
                memcpy(c2 + nc, CTX + ((long)b * d.T + t) * QC, sizeof(float) * QC);
                nc += QC;
                for (int h = 0; h < d.NH; h++) {
                    memcpy(a1 + nat, att + (((long)b * d.NH + h) * d.T + t) * d.T, sizeof(float) * d.T);
                    memcpy(a2 + nat, ATT + (((long)b * d.NH + h) * d.T + t) * d.T, sizeof(float) * d.T);
                    nat += d.T;
                }
            }
        printf("# %d of %d query rows have keys\n", live, d.B * d.T);
        check_close("ctx (live rows) vs torch float32", c1, c2, nc, 1e-5);
        double ea = max_diff(a1, a2, nat);
        long zero_match = 0, zeros_ref = 0;
        for (long i = 0; i < nat; i++) { zeros_ref += a2[i] == 0.0f; zero_match += a2[i] == 0.0f && a1[i] == 0.0f; }
        CHECK(ea < 1e-6 && zero_match == zeros_ref && zeros_ref > 0,
              "probabilities (live rows) vs torch: max |diff| %.1e (tol 1e-6); torch's %ld exact zeros are ours too (%ld)", ea, zeros_ref, zero_match);
        check_close("dq vs torch float64 autograd", dq, DQ, nq, 1e-5);
        check_close("dk vs torch float64 autograd", dk, DK, nk, 1e-5);
        check_close("dv vs torch float64 autograd", dv, DV, nk, 1e-5);
        free(ctx); free(att); free(dq); free(dk); free(dv); free(datt); free(c1); free(c2); free(a1); free(a2);
    }
}

/* ================================================================ vectors, embeddings */

static void test_vectors(void) {
    printf("# vec_add, vec_add_into, embedding\n");
    long n = 37;
    float *a = rand_vec(n, 1), *b = rand_vec(n, 1), *o = zeros(n), *y = copy(a, n);
    vec_add(o, a, b, n);
    vec_add_into(y, b, n);
    int ok = 1;
    for (long i = 0; i < n; i++) ok &= o[i] == a[i] + b[i];
    CHECK(ok && memcmp(o, y, sizeof(float) * n) == 0, "vec_add = elementwise sum = vec_add_into, bit for bit");
    vec_add(a, a, b, n);
    CHECK(memcmp(a, o, sizeof(float) * n) == 0, "vec_add in place (out = a)");
    int V = 6, C = 5, N = 7, ids[7] = { 3, 0, 5, 3, 3, 1, 5 };
    float *table = rand_vec((long)V * C, 1), *e = zeros((long)N * C), *g = rand_vec((long)N * C, 1), *dt = zeros((long)V * C);
    embedding_forward(e, ids, table, N, C);
    ok = 1;
    for (int i = 0; i < N; i++) ok &= memcmp(e + i * C, table + ids[i] * C, sizeof(float) * C) == 0;
    CHECK(ok, "embedding_forward copies row ids[n] of the table");
    embedding_backward_weight(dt, g, ids, N, C);
    double worst = 0;
    for (int r = 0; r < V; r++)
        for (int j = 0; j < C; j++) {
            double want = 0;
            for (int i = 0; i < N; i++) if (ids[i] == r) want += g[i * C + j];
            worst = fmax(worst, fabs(want - dt[r * C + j]));
        }
    CHECK(worst < 1e-6, "embedding_backward_weight sums the rows of repeated ids (id 3 three times), unused rows 0 (max dev %.1e)", worst);
    float *once = copy(dt, (long)V * C);
    embedding_backward_weight(dt, g, ids, N, C);
    check_doubled("embedding_backward_weight", dt, once, (long)V * C);
    free(a); free(b); free(o); free(y); free(table); free(e); free(g); free(dt); free(once);
}

int main(void) {
    kn_err err = { "" };
    fx = st_open(FIXTURE_DIR "/kernels.safetensors", &err);
    CHECK(fx != NULL, "PyTorch fixture %s/kernels.safetensors opens (%s)", FIXTURE_DIR, fx ? "ok" : err.msg);
    test_bert_bits();
    test_linear_io();
    test_rmsnorm();
    test_activations();
    test_rope_reference();
    test_rope();
    test_attention_reference();
    test_attention();
    test_vectors();
    st_close(fx);
    return check_done();
}

/* edit.c: value-slot edit transactions with exact undo (see edit.h). */
#include "edit.h"
#include "alloc.h"
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void read_col(const kn_model *m, int l, int i, float *col) {
    int C = m->cfg.hidden, F = m->cfg.ffn;
    const float *w = m->w.layer[l].ffn_out_w;
    for (int r = 0; r < C; r++) col[r] = w[(int64_t)r * F + i];
}

static void write_col(kn_model *m, int l, int i, const float *col) {
    int C = m->cfg.hidden, F = m->cfg.ffn;
    float *w = m->w.layer[l].ffn_out_w;
    for (int r = 0; r < C; r++) w[(int64_t)r * F + i] = col[r];
}

int kn_slot_get(const kn_model *m, int layer, int i, float *col, kn_err *err) {
    if (layer < 0 || layer >= m->cfg.layers) return kn_fail(err, "layer %d out of range [0, %d)", layer, m->cfg.layers);
    if (i < 0 || i >= m->cfg.ffn) return kn_fail(err, "neuron %d out of range [0, %d)", i, m->cfg.ffn);
    read_col(m, layer, i, col);
    return 0;
}

int kn_slot_project(const kn_model *m, int layer, int i, float *scores, kn_err *err) {
    int C = m->cfg.hidden;
    float *col = kn_malloc(sizeof(float) * C);
    if (!col) return kn_fail(err, "out of memory reading a value slot");
    int rc = kn_slot_get(m, layer, i, col, err);
    if (rc == 0) linear_forward(scores, col, m->w.word_emb, NULL, 1, C, m->cfg.vocab_size);
    free(col);
    return rc;
}

kn_edit *kn_edits(const kn_model *m) { return m->edits; }

kn_edit *kn_edit_slots(kn_model *m, int n, const int *layers, const int *slots, const float *cols,
                       const char *label, kn_err *err) {
    int C = m->cfg.hidden;
    if (n < 1) { kn_fail(err, "an edit needs at least one value slot (got 0 neurons)"); return NULL; }
    for (int j = 0; j < n; j++) {
        if (layers[j] < 0 || layers[j] >= m->cfg.layers) { kn_fail(err, "edit slot %d: layer %d out of range [0, %d)", j + 1, layers[j], m->cfg.layers); return NULL; }
        if (slots[j] < 0 || slots[j] >= m->cfg.ffn) { kn_fail(err, "edit slot %d: neuron %d out of range [0, %d)", j + 1, slots[j], m->cfg.ffn); return NULL; }
        for (int k = 0; k < j; k++)
            if (layers[k] == layers[j] && slots[k] == slots[j]) { kn_fail(err, "edit names neuron (%d, %d) twice", layers[j], slots[j]); return NULL; }
        for (int r = 0; r < C; r++)
            if (!isfinite(cols[(int64_t)j * C + r])) { kn_fail(err, "edit slot %d (layer %d, neuron %d): value %d is not finite", j + 1, layers[j], slots[j], r); return NULL; }
    }
    size_t colbytes;
    kn_edit *e = kn_calloc(1, sizeof *e);
    if (!e || kn_mul_size(sizeof(float) * (size_t)n, (size_t)C, &colbytes) != 0 ||
        !(e->layer = kn_malloc(sizeof(int) * n)) || !(e->slot = kn_malloc(sizeof(int) * n)) ||
        !(e->old_cols = kn_malloc(colbytes)) || !(e->new_cols = kn_malloc(colbytes))) {
        if (e) { free(e->layer); free(e->slot); free(e->old_cols); free(e); }
        kn_fail(err, "out of memory for an edit of %d value slots (%d floats each); the model is unchanged", n, C);
        return NULL;
    }
    e->n = n;
    memcpy(e->layer, layers, sizeof(int) * n);
    memcpy(e->slot, slots, sizeof(int) * n);
    memcpy(e->new_cols, cols, sizeof(float) * (size_t)n * C);
    snprintf(e->label, sizeof e->label, "%s", label ? label : "");
    for (int j = 0; j < n; j++) {
        read_col(m, layers[j], slots[j], e->old_cols + (int64_t)j * C);
        write_col(m, layers[j], slots[j], cols + (int64_t)j * C);
    }
    e->active = 1;
    e->id = ++m->edit_count;
    kn_edit **tail = &m->edits;
    while (*tail) tail = &(*tail)->next;
    *tail = e;
    m->generation++;
    return e;
}

int kn_edit_undo(kn_model *m, kn_edit *e, kn_err *err) {
    if (!e->active) return kn_fail(err, "edit %d (%s) was already undone", e->id, e->label);
    int C = m->cfg.hidden;
    for (int j = 0; j < e->n; j++) {
        /* the first later, still-active edit of the same slot inherits our saved column */
        kn_edit *heir = NULL;
        int hj = -1;
        for (kn_edit *f = e->next; f && !heir; f = f->next) {
            if (!f->active) continue;
            for (int k = 0; k < f->n; k++)
                if (f->layer[k] == e->layer[j] && f->slot[k] == e->slot[j]) { heir = f; hj = k; break; }
        }
        const float *old = e->old_cols + (int64_t)j * C;
        if (heir) memcpy(heir->old_cols + (int64_t)hj * C, old, sizeof(float) * C);
        else write_col(m, e->layer[j], e->slot[j], old);
    }
    e->active = 0;
    m->generation++;
    return 0;
}

void kn_edits_free(kn_model *m) {
    kn_edit *e = m->edits;
    while (e) {
        kn_edit *next = e->next;
        free(e->layer); free(e->slot); free(e->old_cols); free(e->new_cols);
        free(e);
        e = next;
    }
    m->edits = NULL;
}

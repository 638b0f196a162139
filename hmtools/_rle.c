/* Compiled COCO compressed-RLE encoder for hmtools.rle_batch (optional: setup.py builds it when a
 * C compiler is there; hmtools falls back to its NumPy encoder otherwise).
 *
 * encode_many(masks) -> list of (counts: str, area: int, box: (x0, y0, x1, y1) floats or None)
 *
 * masks: a sequence of C-contiguous 2-D buffers of one byte per pixel holding 0 or 1 (a NumPy
 * bool array, or uint8 0/1). COCO RLE runs go column by column (column-major), but the masks
 * are row-major, so one pass over the rows finds where each column's value changes (row y
 * against row y - 1, eight bytes at a time, skipping equal words), then a counting sort by
 * column puts the changes in column-major order. Runs, area, box and the counts string
 * (pycocotools' rleToString: the run two before subtracted from the fourth run on, 5-bit groups,
 * low first, 48 + bits, 0x20 while more follow) come from one walk over the sorted changes.
 * The GIL is released while a mask is encoded.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t *pos;  /* column-major positions where the value changes */
    int32_t *col;  /* the column of each */
    size_t n, cap;
} changes_t;

static int push(changes_t *c, int32_t x, int64_t p) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        int64_t *pos = realloc(c->pos, cap * sizeof *pos);
        if (!pos) return -1;
        c->pos = pos;
        int32_t *col = realloc(c->col, cap * sizeof *col);
        if (!col) return -1;
        c->col = col;
        c->cap = cap;
    }
    c->pos[c->n] = p;
    c->col[c->n] = x;
    c->n++;
    return 0;
}

/* The changes in the 8 columns x..x+7 of row y, given d = (row y-1 word) ^ (row y word) != 0. */
static int word_changes(changes_t *ch, int64_t *cnt, uint64_t d, const uint8_t *a, const uint8_t *b, int64_t x,
                        int64_t h, int64_t y) {
#if !defined(HM_RLE_BYTEWISE) && defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    (void)a, (void)b;
    while (d) { /* the lowest set byte of d is the leftmost changed column */
        int64_t k = x + (__builtin_ctzll(d) >> 3);
        d &= d - 1;
        d &= ~(0xffULL << (8 * (k - x))); /* the rest of that byte */
        if (push(ch, (int32_t)k, k * h + y)) return -1;
        cnt[k]++;
    }
#else
    (void)d;
    for (int64_t k = x; k < x + 8; k++) {
        if (a[k] != b[k]) {
            if (push(ch, (int32_t)k, k * h + y)) return -1;
            cnt[k]++;
        }
    }
#endif
    return 0;
}

typedef struct {
    char *counts;  /* malloc'ed ASCII counts string */
    size_t len;
    int64_t area;
    int64_t x0, y0, x1, y1;  /* inclusive; x0 > x1 when empty */
} encoded_t;

/* The encoding of one h x w mask; returns -1 when memory runs out. */
static int encode_one(const uint8_t *m, int64_t h, int64_t w, changes_t *ch, int64_t *cnt, encoded_t *out) {
    ch->n = 0;
    out->area = 0;
    out->x0 = w, out->y0 = h, out->x1 = -1, out->y1 = -1;
    if (h == 0 || w == 0) { /* one run of 0 pixels, as pycocotools */
        out->counts = malloc(2);
        if (!out->counts) return -1;
        memcpy(out->counts, "0", 2);
        out->len = 1;
        return 0;
    }
    memset(cnt, 0, (size_t)(w + 1) * sizeof *cnt);
    /* row 0: column x starts with m[0][x]; the sequence before it ends with m[h-1][x-1] (0 first) */
    for (int64_t x = 0; x < w; x++) {
        uint8_t before = x ? m[(h - 1) * w + x - 1] : 0;
        if (m[x] != before) {
            if (push(ch, (int32_t)x, x * h)) return -1;
            cnt[x]++;
        }
    }
    for (int64_t y = 1; y < h; y++) {
        const uint8_t *a = m + (y - 1) * w, *b = m + y * w;
        int64_t x = 0;
        for (; x + 32 <= w; x += 32) { /* most 32-byte blocks equal the row above: one test each */
            uint64_t d[4];
            for (int j = 0; j < 4; j++) {
                uint64_t u, v;
                memcpy(&u, a + x + 8 * j, 8);
                memcpy(&v, b + x + 8 * j, 8);
                d[j] = u ^ v;
            }
            if (!(d[0] | d[1] | d[2] | d[3])) continue;
            for (int j = 0; j < 4; j++)
                if (d[j] && word_changes(ch, cnt, d[j], a, b, x + 8 * j, h, y)) return -1;
        }
        for (; x + 8 <= w; x += 8) {
            uint64_t u, v;
            memcpy(&u, a + x, 8);
            memcpy(&v, b + x, 8);
            if (u != v && word_changes(ch, cnt, u ^ v, a, b, x, h, y)) return -1;
        }
        for (; x < w; x++) {
            if (a[x] != b[x]) {
                if (push(ch, (int32_t)x, x * h + y)) return -1;
                cnt[x]++;
            }
        }
    }
    /* counting sort by column (rows were scanned in order, so each column's changes are sorted) */
    size_t n = ch->n;
    int64_t *sorted = malloc((n ? n : 1) * sizeof *sorted);
    /* worst case per run: 13 characters (a 64-bit value in 5-bit groups); runs = n + 1 */
    char *s = malloc((n + 1) * 13 + 1);
    if (!sorted || !s) {
        free(sorted);
        free(s);
        return -1;
    }
    int64_t acc = 0;
    for (int64_t x = 0; x < w; x++) {
        int64_t c = cnt[x];
        cnt[x] = acc;
        acc += c;
    }
    for (size_t i = 0; i < n; i++) sorted[cnt[ch->col[i]]++] = ch->pos[i];
    /* runs: between consecutive changes, from 0 and to h*w; odd runs are foreground */
    int64_t npix = h * w, prev = 0, r1 = 0, r2 = 0;  /* r1, r2: the last two runs */
    size_t len = 0;
    for (size_t i = 0; i <= n; i++) {
        int64_t end = i < n ? sorted[i] : npix;
        int64_t run = end - prev;
        if (i & 1 && run > 0) { /* foreground [prev, end) */
            int64_t cb = prev / h, ce = (end - 1) / h;
            int64_t top = cb == ce ? prev % h : 0, bottom = cb == ce ? (end - 1) % h : h - 1;
            out->area += run;
            if (cb < out->x0) out->x0 = cb;
            if (ce > out->x1) out->x1 = ce;
            if (top < out->y0) out->y0 = top;
            if (bottom > out->y1) out->y1 = bottom;
        }
        int64_t v = i > 2 ? run - r2 : run;
        r2 = r1;
        r1 = run;
        for (int more = 1; more;) {
            int64_t c = v & 0x1f;
            v >>= 5; /* arithmetic shift, as pycocotools' long */
            more = (c & 0x10) ? v != -1 : v != 0;
            if (more) c |= 0x20;
            s[len++] = (char)(c + 48);
        }
        prev = end;
    }
    free(sorted);
    out->counts = s;
    out->len = len;
    return 0;
}

static PyObject *encode_many(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "encode_many expects a sequence of 2-D masks");
    if (!seq) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = PyList_New(count);
    changes_t ch = {0};
    int64_t *cnt = NULL;
    int64_t cnt_cap = 0;
    if (!result) goto fail;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &view, PyBUF_C_CONTIGUOUS) < 0) goto fail;
        if (view.ndim != 2 || view.itemsize != 1) {
            PyErr_Format(PyExc_ValueError, "mask %zd: expected a C-contiguous 2-D array of one byte per pixel", i);
            PyBuffer_Release(&view);
            goto fail;
        }
        int64_t h = view.shape[0], w = view.shape[1];
        if (w > INT32_MAX) { /* columns are kept as int32_t */
            PyErr_Format(PyExc_ValueError, "mask %zd: %lld columns, at most %d", i, (long long)w, INT32_MAX);
            PyBuffer_Release(&view);
            goto fail;
        }
        if (w + 1 > cnt_cap) {
            int64_t *c = realloc(cnt, (size_t)(w + 1) * sizeof *c);
            if (!c) {
                PyBuffer_Release(&view);
                PyErr_NoMemory();
                goto fail;
            }
            cnt = c;
            cnt_cap = w + 1;
        }
        encoded_t e;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = encode_one((const uint8_t *)view.buf, h, w, &ch, cnt, &e);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&view);
        if (rc) {
            PyErr_NoMemory();
            goto fail;
        }
        PyObject *counts = PyUnicode_DecodeASCII(e.counts, (Py_ssize_t)e.len, NULL);
        free(e.counts);
        PyObject *box = e.x1 < 0 ? (Py_INCREF(Py_None), Py_None)
                                 : Py_BuildValue("(dddd)", (double)e.x0, (double)e.y0, (double)(e.x1 + 1),
                                                 (double)(e.y1 + 1));
        PyObject *item = (counts && box) ? Py_BuildValue("(OLO)", counts, (long long)e.area, box) : NULL;
        Py_XDECREF(counts);
        Py_XDECREF(box);
        if (!item) goto fail;
        PyList_SET_ITEM(result, i, item);
    }
    free(ch.pos);
    free(ch.col);
    free(cnt);
    Py_DECREF(seq);
    return result;
fail:
    free(ch.pos);
    free(ch.col);
    free(cnt);
    Py_XDECREF(result);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef methods[] = {
    {"encode_many", encode_many, METH_O,
     "encode_many(masks) -> [(counts, area, box or None)]: COCO compressed RLE of 2-D 0/1 byte masks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rle", "Compiled COCO RLE encoder.", -1, methods};

PyMODINIT_FUNC PyInit__rle(void) { return PyModule_Create(&module); }

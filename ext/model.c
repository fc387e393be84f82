/*
** model.c: safetensors BLOB -> validated rnn_model (DESIGN.md "The model BLOB").
**
** A model is 8 bytes of little-endian header length N, N bytes of JSON header
** ({name: {dtype, shape, data_offsets}}, optional "__metadata__": {str: str}),
** then the raw tensor bytes. This is what safetensors.torch.save writes.
**
** Rules kept (each refused with a message naming the tensor or key):
**  1. N fits the BLOB and RNN_MAX_HEADER; the header is strict JSON (json.c).
**  2. Tensor entries have exactly dtype, shape, data_offsets. dtype is F32, F16,
**     BF16 or F64; shape dims are positive; offsets are in bounds and hold
**     exactly numel*size bytes; tensors tile the data buffer with no gap,
**     overlap or trailing bytes (the safetensors spec).
**  3. Names are PyTorch's under a prefix ending in '.' or empty: weight_ih_l{k},
**     weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k} (+ _reverse), or
**     the tutorial's i2h.* / i2o.*; an optional Linear head <Q>weight, <Q>bias.
**     Shapes must be exactly what the cell needs. A tensor the model would not
**     use is refused: ignoring part of a state_dict gives wrong answers.
**  4. The cell follows from the shapes (gates 1, 3, 4); metadata `cell` is
**     needed only for rnn_relu and must agree with the shapes.
**  5. Weights are converted to float32 at load; NaN, infinite or out-of-range
**     values are refused.
**  6. Known metadata keys are validated (activations, standardisation arrays:
**     right length, finite, std > 0; vocab: distinct non-empty strings, one per
**     input; labels: one string per output; unknown_token: in vocab); other
**     keys are kept for rnn_info.
**  7. Every size is checked against the limits in model.h with 64-bit
**     arithmetic before it sizes an allocation.
*/
#include "model.h"
#include "f32.h"
#include "json.h"
#include "tokenizer.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DT_F32, DT_F16, DT_BF16, DT_F64 };
static const char *const dt_name[] = {"F32", "F16", "BF16", "F64"};
static const int dt_size[] = {4, 2, 2, 8};

typedef struct tensor {
  const char *name;       /* into the JSON doc pool */
  int dtype;
  int ndim;
  int64_t shape[2];
  uint64_t begin, end;    /* byte offsets into the data buffer */
  int used;
} tensor;

/* Everything the loader owns while it runs; freed on one path. */
typedef struct loader {
  const unsigned char *data;  /* tensor bytes (after the header) */
  uint64_t data_len;
  rj_doc doc;
  tensor *t;
  int nt;
  int md;                     /* JSON node of __metadata__, or -1 */
  char *err;                  /* sqlite3_mprintf message */
  int nomem;
} loader;

static int fail(loader *L, const char *fmt, ...) {
  va_list ap;
  if (L->err == NULL && !L->nomem) {
    va_start(ap, fmt);
    L->err = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (!L->err) L->nomem = 1;
  }
  return -1;
}

static tensor *find(loader *L, const char *name) {
  for (int i = 0; i < L->nt; i++) {
    if (strcmp(L->t[i].name, name) == 0) return &L->t[i];
  }
  return NULL;
}

static const char *meta(loader *L, const char *key) {
  int v = rj_get(&L->doc, L->md, key);
  return v >= 0 ? L->doc.nodes[v].str : NULL;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

static int cmp_begin(const void *a, const void *b) {
  const tensor *x = *(tensor *const *)a, *y = *(tensor *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* Rules 1 and 2: the header and the tensor table. */
static int read_header(loader *L, const unsigned char *blob, size_t n) {
  char jerr[128];
  uint64_t hlen = 0;
  if (n < 8) return fail(L, "BLOB is %d bytes, too short for a safetensors header", (int)n);
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | blob[i];
  if (hlen > n - 8) {
    return fail(L, "safetensors header length %llu exceeds the BLOB size %llu",
                (unsigned long long)hlen, (unsigned long long)n);
  }
  if (hlen > RNN_MAX_HEADER) {
    return fail(L, "safetensors header is %llu bytes, more than the limit %u",
                (unsigned long long)hlen, RNN_MAX_HEADER);
  }
  L->data = blob + 8 + hlen;
  L->data_len = n - 8 - hlen;
  int rc = rj_parse((const char *)blob + 8, (size_t)hlen, &L->doc, jerr, sizeof(jerr));
  if (rc == 2) { L->nomem = 1; return -1; }
  if (rc) return fail(L, "safetensors header is not valid JSON: %s", jerr);
  rj_node *nd = L->doc.nodes;
  if (nd[0].type != RJ_OBJECT) return fail(L, "safetensors header is not a JSON object");
  if (nd[0].n > RNN_MAX_TENSORS + 1) {
    return fail(L, "safetensors header has %d entries, more than the limit %d", nd[0].n, RNN_MAX_TENSORS);
  }
  L->t = sqlite3_malloc64(sizeof(tensor) * (size_t)(nd[0].n + 1));
  if (!L->t) { L->nomem = 1; return -1; }
  for (int k = nd[0].child; k >= 0; k = nd[nd[k].next].next) {
    const char *name = nd[k].str;
    int v = nd[k].next;
    if (strcmp(name, "__metadata__") == 0) {
      if (nd[v].type != RJ_OBJECT) return fail(L, "__metadata__ is not a JSON object");
      for (int mk = nd[v].child; mk >= 0; mk = nd[nd[mk].next].next) {
        if (nd[nd[mk].next].type != RJ_STRING) {
          return fail(L, "__metadata__ value of '%s' is not a string", nd[mk].str);
        }
      }
      L->md = v;
      continue;
    }
    if (nd[k].n > RNN_MAX_NAME) return fail(L, "tensor name longer than %d bytes", RNN_MAX_NAME);
    if (nd[v].type != RJ_OBJECT) return fail(L, "tensor '%s': entry is not a JSON object", name);
    tensor *t = &L->t[L->nt++];
    memset(t, 0, sizeof(*t));
    t->name = name;
    int dt = rj_get(&L->doc, v, "dtype"), sh = rj_get(&L->doc, v, "shape");
    int off = rj_get(&L->doc, v, "data_offsets");
    if (dt < 0 || sh < 0 || off < 0 || nd[v].n != 3) {
      return fail(L, "tensor '%s': entry must have exactly dtype, shape and data_offsets", name);
    }
    if (nd[dt].type != RJ_STRING) return fail(L, "tensor '%s': dtype is not a string", name);
    t->dtype = -1;
    for (int d = 0; d < 4; d++) {
      if (strcmp(nd[dt].str, dt_name[d]) == 0) t->dtype = d;
    }
    if (t->dtype < 0) {
      return fail(L, "tensor '%s': dtype %s is not supported (F32, F16, BF16 or F64)", name, nd[dt].str);
    }
    if (nd[sh].type != RJ_ARRAY) return fail(L, "tensor '%s': shape is not a JSON array", name);
    if (nd[sh].n < 1 || nd[sh].n > 2) {
      return fail(L, "tensor '%s': has %d dimensions, expected 1 or 2", name, nd[sh].n);
    }
    uint64_t numel = 1;
    for (int d = nd[sh].child; d >= 0; d = nd[d].next) {
      if (nd[d].type != RJ_NUMBER || !nd[d].is_uint) {
        return fail(L, "tensor '%s': shape must hold non-negative integers", name);
      }
      if (nd[d].u == 0) return fail(L, "tensor '%s': shape has a zero dimension", name);
      if (nd[d].u > RNN_MAX_PARAMS) {
        return fail(L, "tensor '%s': dimension %llu is larger than the limit %u", name,
                    (unsigned long long)nd[d].u, RNN_MAX_PARAMS);
      }
      numel *= nd[d].u; /* both factors <= 2^27: no overflow */
      if (numel > RNN_MAX_PARAMS) {
        return fail(L, "tensor '%s': more than %u elements", name, RNN_MAX_PARAMS);
      }
      t->shape[t->ndim++] = (int64_t)nd[d].u;
    }
    if (nd[off].type != RJ_ARRAY || nd[off].n != 2) {
      return fail(L, "tensor '%s': data_offsets must be a JSON array of 2 integers", name);
    }
    int o0 = nd[off].child, o1 = nd[o0].next;
    if (nd[o0].type != RJ_NUMBER || !nd[o0].is_uint || nd[o1].type != RJ_NUMBER || !nd[o1].is_uint) {
      return fail(L, "tensor '%s': data_offsets must be a JSON array of 2 integers", name);
    }
    t->begin = nd[o0].u;
    t->end = nd[o1].u;
    if (t->begin > t->end || t->end > L->data_len) {
      return fail(L, "tensor '%s': data_offsets [%llu, %llu] outside the data buffer of %llu bytes",
                  name, (unsigned long long)t->begin, (unsigned long long)t->end,
                  (unsigned long long)L->data_len);
    }
    if (t->end - t->begin != numel * (uint64_t)dt_size[t->dtype]) {
      return fail(L, "tensor '%s': data_offsets hold %llu bytes, but %s with %llu elements needs %llu",
                  name, (unsigned long long)(t->end - t->begin), dt_name[t->dtype],
                  (unsigned long long)numel, (unsigned long long)(numel * (uint64_t)dt_size[t->dtype]));
    }
  }
  if (L->nt == 0) return fail(L, "safetensors header lists no tensors");
  /* Rule 2: the tensors tile the buffer exactly. */
  tensor **order = sqlite3_malloc64(sizeof(tensor *) * (size_t)L->nt);
  if (!order) { L->nomem = 1; return -1; }
  for (int i = 0; i < L->nt; i++) order[i] = &L->t[i];
  qsort(order, (size_t)L->nt, sizeof(tensor *), cmp_begin);
  uint64_t at = 0;
  int bad = 0;
  for (int i = 0; i < L->nt && !bad; i++) {
    if (order[i]->begin < at) {
      bad = fail(L, "tensors '%s' and '%s' overlap in the data buffer", order[i - 1]->name, order[i]->name);
    } else if (order[i]->begin > at) {
      bad = fail(L, "data buffer has a gap of %llu bytes before tensor '%s'",
                 (unsigned long long)(order[i]->begin - at), order[i]->name);
    }
    at = order[i]->end;
  }
  sqlite3_free(order);
  if (bad) return -1;
  if (at != L->data_len) {
    return fail(L, "data buffer has %llu bytes after the last tensor", (unsigned long long)(L->data_len - at));
  }
  return 0;
}

/* Element i of a tensor as float; returns nonzero if it is NaN, infinite or
** beyond float32 range. Reads through memcpy: the BLOB has no alignment. */
static int element(const loader *L, const tensor *t, uint64_t i, float *out) {
  const unsigned char *p = L->data + t->begin + i * (uint64_t)dt_size[t->dtype];
  float f;
  switch (t->dtype) {
    case DT_F32:
      f = rnn_f32_get(p);
      break;
    case DT_BF16: {
      uint32_t u = ((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16;
      memcpy(&f, &u, 4);
      break;
    }
    case DT_F16: {
      unsigned h = (unsigned)p[0] | (unsigned)p[1] << 8;
      unsigned e = (h >> 10) & 0x1F, m = h & 0x3FF;
      if (e == 0x1F) return 1;
      f = e ? ldexpf((float)(m | 0x400), (int)e - 25) : ldexpf((float)m, -24);
      if (h & 0x8000) f = -f;
      break;
    }
    default: {
      double d = rnn_f64_get(p);
      if (!rnn_f32_finite(d)) return 1;
      f = (float)d;
      break;
    }
  }
  *out = f;
  return !isfinite(f);
}

/* Copy a [rows][cols] tensor transposed into dst [cols][ld] (rows <= ld), or a
** vector into dst[0..rows). */
static int put(loader *L, tensor *t, float *dst, int ld) {
  int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
  t->used = 1;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < cols; c++) {
      float v;
      if (element(L, t, (uint64_t)(r * cols + c), &v)) {
        return fail(L, "tensor '%s' has a NaN, infinite or out-of-range value at index %lld",
                    t->name, (long long)(r * cols + c));
      }
      if (t->ndim == 2) dst[(size_t)c * (size_t)ld + (size_t)r] = v;
      else dst[r] = v;
    }
  }
  return 0;
}

static const char *shape_str(const tensor *t, char *buf, size_t n) {
  if (t->ndim == 1) snprintf(buf, n, "[%lld]", (long long)t->shape[0]);
  else snprintf(buf, n, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
  return buf;
}

/* The tensor `name`, checked to have shape [r] (c == 0) or [r, c]. */
static tensor *expect(loader *L, const char *name, int64_t r, int64_t c, int required) {
  char got[64];
  tensor *t = find(L, name);
  if (!t) {
    if (required) {
      if (c) fail(L, "missing tensor '%s' [%lld, %lld]", name, (long long)r, (long long)c);
      else fail(L, "missing tensor '%s' [%lld]", name, (long long)r);
    }
    return NULL;
  }
  if ((c == 0 && (t->ndim != 1 || t->shape[0] != r)) ||
      (c != 0 && (t->ndim != 2 || t->shape[0] != r || t->shape[1] != c))) {
    if (c) fail(L, "tensor '%s' has shape %s, expected [%lld, %lld]", name,
                shape_str(t, got, sizeof(got)), (long long)r, (long long)c);
    else fail(L, "tensor '%s' has shape %s, expected [%lld]", name, shape_str(t, got, sizeof(got)), (long long)r);
    return NULL;
  }
  return t;
}

static int round_up(int n) { return (n + RNN_LANES - 1) / RNN_LANES * RNN_LANES; }

static const char *const act_names[] = {"none", "sigmoid", "tanh", "softmax", "log_softmax", "relu"};

static int parse_act(loader *L, const char *key, int allow_softmax, int *out) {
  const char *v = meta(L, key);
  *out = ACT_NONE;
  if (!v) return 0;
  for (int a = 0; a < 6; a++) {
    if (strcmp(v, act_names[a]) != 0) continue;
    if (allow_softmax ? a == ACT_RELU : (a == ACT_SOFTMAX || a == ACT_LOG_SOFTMAX)) break;
    *out = a;
    return 0;
  }
  return fail(L, "__metadata__ %s is '%s', expected one of %s", key, v,
              allow_softmax ? "none, sigmoid, tanh, softmax, log_softmax" : "none, tanh, relu, sigmoid");
}

/* A standardisation array: JSON array of n finite numbers (positive for std). */
static int parse_vec(loader *L, const char *key, int n, int positive, float *dst, int *present) {
  const char *v = meta(L, key);
  rj_doc d;
  char jerr[128];
  *present = 0;
  if (!v) return 0;
  int rc = rj_parse(v, strlen(v), &d, jerr, sizeof(jerr));
  if (rc == 2) { L->nomem = 1; return -1; }
  int ok = rc == 0 && d.nodes[0].type == RJ_ARRAY && d.nodes[0].n == n;
  for (int i = d.nodes && ok ? d.nodes[0].child : -1, j = 0; i >= 0; i = d.nodes[i].next, j++) {
    double x = d.nodes[i].num;
    if (d.nodes[i].type != RJ_NUMBER || !rnn_f32_finite(x) || (positive && !(x > 0))) {
      ok = 0;
      break;
    }
    dst[j] = (float)x;
  }
  if (rc == 0) rj_free(&d);
  if (!ok) {
    return fail(L, "__metadata__ %s must be a JSON array of %d finite%s numbers, got '%.40s'", key, n,
                positive ? " positive" : "", v);
  }
  *present = 1;
  return 0;
}

static void json_string(sqlite3_str *s, const char *z) {
  sqlite3_str_appendchar(s, 1, '"');
  for (; *z; z++) {
    unsigned char c = (unsigned char)*z;
    if (c == '"' || c == '\\') sqlite3_str_appendf(s, "\\%c", c);
    else if (c < 0x20) sqlite3_str_appendf(s, "\\u%04x", c);
    else sqlite3_str_appendchar(s, 1, (char)c);
  }
  sqlite3_str_appendchar(s, 1, '"');
}

static const char *const cell_names[] = {"rnn_tanh", "rnn_relu", "lstm", "gru", "seed"};

typedef struct plan {
  char prefix[RNN_MAX_NAME + 1];   /* recurrent prefix P */
  char head[RNN_MAX_NAME + 1];     /* head prefix Q */
  int has_head, seed, bias;
} plan;

/* Rule 3: find P (and whether this is the tutorial cell). */
static int find_prefix(loader *L, plan *p) {
  const char *want = meta(L, "recurrent_prefix");
  const char *cell = meta(L, "cell");
  int found = 0;
  if (want) {
    if (strlen(want) > RNN_MAX_NAME - 20 || (want[0] && !ends_with(want, "."))) {
      return fail(L, "__metadata__ recurrent_prefix '%.60s' must be empty or end with '.'", want);
    }
    strcpy(p->prefix, want);
    char nm[RNN_MAX_NAME + 32];
    snprintf(nm, sizeof(nm), "%si2h.weight", want);
    p->seed = find(L, nm) != NULL;
    snprintf(nm, sizeof(nm), "%sweight_ih_l0", want);
    if (!p->seed && !find(L, nm)) {
      return fail(L, "no tensor '%sweight_ih_l0' or '%si2h.weight' for __metadata__ recurrent_prefix", want, want);
    }
    return 0;
  }
  for (int i = 0; i < L->nt; i++) {
    const char *nm = L->t[i].name;
    const char *suffix = ends_with(nm, "weight_ih_l0") ? "weight_ih_l0" : ends_with(nm, "i2h.weight") ? "i2h.weight" : NULL;
    if (!suffix) continue;
    size_t plen = strlen(nm) - strlen(suffix);
    if (plen && nm[plen - 1] != '.') continue;
    if (found) {
      return fail(L, "several recurrent modules ('%.*s' and '%s'): set __metadata__ recurrent_prefix",
                  (int)strlen(p->prefix), p->prefix, nm);
    }
    found = 1;
    memcpy(p->prefix, nm, plen);
    p->prefix[plen] = 0;
    p->seed = suffix[0] == 'i';
  }
  if (!found) {
    return fail(L, "no recurrent layer: expected a tensor '<prefix>weight_ih_l0' (nn.RNN, nn.LSTM, nn.GRU) "
                   "or '<prefix>i2h.weight' (the tutorial RNN)");
  }
  if (cell && p->seed != (strcmp(cell, "seed") == 0)) {
    return fail(L, "__metadata__ cell is '%s' but the tensors are those of %s", cell,
                p->seed ? "the tutorial (seed) RNN" : "nn.RNN, nn.LSTM or nn.GRU");
  }
  return 0;
}

/* Rule 3: the head is whatever `<Q>weight` is left after the recurrent tensors. */
static int find_head(loader *L, plan *p) {
  const char *want = meta(L, "head_prefix");
  if (want) {
    if (strlen(want) > RNN_MAX_NAME - 10 || (want[0] && !ends_with(want, "."))) {
      return fail(L, "__metadata__ head_prefix '%.60s' must be empty or end with '.'", want);
    }
    char nm[RNN_MAX_NAME + 16];
    snprintf(nm, sizeof(nm), "%sweight", want);
    tensor *t = find(L, nm);
    if (!t || t->used) return fail(L, "no tensor '%s' for __metadata__ head_prefix", nm);
    strcpy(p->head, want);
    p->has_head = 1;
    return 0;
  }
  for (int i = 0; i < L->nt; i++) {
    const char *nm = L->t[i].name;
    if (L->t[i].used || !ends_with(nm, "weight")) continue;
    size_t plen = strlen(nm) - 6;
    if (plen && nm[plen - 1] != '.') continue;
    if (p->has_head) {
      return fail(L, "several candidate heads ('%sweight' and '%s'): set __metadata__ head_prefix", p->head, nm);
    }
    memcpy(p->head, nm, plen);
    p->head[plen] = 0;
    p->has_head = 1;
  }
  return 0;
}

int rnn_model_load(const unsigned char *blob, size_t n, rnn_model **out, char **err) {
  loader L;
  plan P;
  rnn_model *m = NULL;
  char nm[RNN_MAX_NAME + 64];
  memset(&L, 0, sizeof(L));
  memset(&P, 0, sizeof(P));
  L.md = -1;
  *out = NULL;
  *err = NULL;
  if (read_header(&L, blob, n)) goto fail;
  if (find_prefix(&L, &P)) goto fail;
  m = sqlite3_malloc64(sizeof(*m));
  if (!m) { L.nomem = 1; goto fail; }
  memset(m, 0, sizeof(*m));
  m->unknown = -1;
  rnn_net *net = &m->net;
  const char *pre = P.prefix;
  const char *cell = meta(&L, "cell");
  tensor *w0, *h0, *hr0 = NULL;
  int64_t I, H, G, proj = 0;

  if (P.seed) {
    snprintf(nm, sizeof(nm), "%si2h.weight", pre);
    w0 = find(&L, nm);
    if (w0->ndim != 2 || w0->shape[1] <= w0->shape[0]) {
      char got[64];
      fail(&L, "tensor '%s' has shape %s, expected [hidden, input + hidden]", nm, shape_str(w0, got, sizeof(got)));
      goto fail;
    }
    H = w0->shape[0];
    I = w0->shape[1] - H;
    G = 1;
    net->cell = CELL_SEED;
    net->layers = 1;
    net->dirs = 1;
  } else {
    snprintf(nm, sizeof(nm), "%sweight_ih_l0", pre);
    w0 = find(&L, nm);
    snprintf(nm, sizeof(nm), "%sweight_hh_l0", pre);
    h0 = find(&L, nm);
    if (!h0) { fail(&L, "missing tensor '%s'", nm); goto fail; }
    snprintf(nm, sizeof(nm), "%sweight_hr_l0", pre);
    hr0 = find(&L, nm);
    if (w0->ndim != 2 || h0->ndim != 2 || (hr0 && hr0->ndim != 2)) {
      fail(&L, "recurrent weights under '%s' must be 2-dimensional", pre);
      goto fail;
    }
    I = w0->shape[1];
    if (hr0) {
      proj = hr0->shape[0];
      H = hr0->shape[1];
    } else {
      H = h0->shape[1];
    }
    G = w0->shape[0] / H;
    if (w0->shape[0] % H || (G != 1 && G != 3 && G != 4) || (hr0 && G != 4)) {
      char got[64];
      fail(&L, "tensor '%sweight_ih_l0' has shape %s: rows must be 1, 3 or 4 times the hidden size %lld%s", pre,
           shape_str(w0, got, sizeof(got)), (long long)H, hr0 ? " (4 with weight_hr, LSTM)" : "");
      goto fail;
    }
    net->cell = G == 4 ? CELL_LSTM : G == 3 ? CELL_GRU : CELL_RNN_TANH;
    if (cell) {
      int want = -1;
      for (int c = 0; c < 5; c++) {
        if (strcmp(cell, cell_names[c]) == 0) want = c;
      }
      if (want < 0) {
        fail(&L, "__metadata__ cell is '%s', expected one of rnn_tanh, rnn_relu, lstm, gru, seed", cell);
        goto fail;
      }
      if (want == CELL_RNN_RELU && net->cell == CELL_RNN_TANH) net->cell = CELL_RNN_RELU;
      if (want != net->cell) {
        fail(&L, "__metadata__ cell is '%s' but the tensors under '%s' have %lld gates (%s)", cell, pre,
             (long long)G, cell_names[net->cell]);
        goto fail;
      }
    }
    int layers = 0;
    for (;;) {
      snprintf(nm, sizeof(nm), "%sweight_ih_l%d", pre, layers);
      if (!find(&L, nm)) break;
      if (++layers > RNN_MAX_LAYERS) {
        fail(&L, "more than %d layers", RNN_MAX_LAYERS);
        goto fail;
      }
    }
    net->layers = layers;
    snprintf(nm, sizeof(nm), "%sweight_ih_l0_reverse", pre);
    net->dirs = find(&L, nm) ? 2 : 1;
  }
  if (I < 1 || I > RNN_MAX_INPUT) { fail(&L, "input size %lld is outside 1..%d", (long long)I, RNN_MAX_INPUT); goto fail; }
  if (H > RNN_MAX_HIDDEN) { fail(&L, "hidden size %lld is larger than the limit %d", (long long)H, RNN_MAX_HIDDEN); goto fail; }
  if (proj >= H) { fail(&L, "tensor '%sweight_hr_l0': proj_size %lld must be smaller than hidden size %lld", pre, (long long)proj, (long long)H); goto fail; }
  net->n_in = (int)I;
  net->hidden = (int)H;
  net->proj = (int)proj;
  net->hout = (int)(proj ? proj : H);
  net->gates = (int)G;
  net->ldg = round_up((int)(G * H));
  net->ldp = proj ? round_up((int)proj) : 0;
  if (parse_act(&L, "output_activation", 1, &net->out_act)) goto fail;
  if (meta(&L, "hidden_activation") && !P.seed) {
    fail(&L, "__metadata__ hidden_activation applies only to the tutorial (seed) cell");
    goto fail;
  }
  if (parse_act(&L, "hidden_activation", 0, &net->hidden_act)) goto fail;

  /* Pass 1: check every shape and size the arena. Pass 2 fills it. */
  {
    int64_t need = 0, O = 0, params = 0;
    const int dirs = net->dirs, hout = net->hout;
    const char *sfx[2] = {"", "_reverse"};
    tensor *ht = NULL, *hb = NULL, *ow = NULL, *ob = NULL, *sb = NULL;
    for (int l = 0; !P.seed && l < net->layers; l++) {
      int64_t in = l == 0 ? I : (int64_t)dirs * hout;
      for (int d = 0; d < dirs; d++) {
        snprintf(nm, sizeof(nm), "%sweight_ih_l%d%s", pre, l, sfx[d]);
        if (!expect(&L, nm, G * H, in, 1)) goto fail;
        find(&L, nm)->used = 1;
        snprintf(nm, sizeof(nm), "%sweight_hh_l%d%s", pre, l, sfx[d]);
        if (!expect(&L, nm, G * H, hout, 1)) goto fail;
        find(&L, nm)->used = 1;
        snprintf(nm, sizeof(nm), "%sbias_ih_l%d%s", pre, l, sfx[d]);
        if (expect(&L, nm, G * H, 0, 0)) find(&L, nm)->used = 1;
        else if (L.err || L.nomem) goto fail;
        snprintf(nm, sizeof(nm), "%sbias_hh_l%d%s", pre, l, sfx[d]);
        if (expect(&L, nm, G * H, 0, 0)) find(&L, nm)->used = 1;
        else if (L.err || L.nomem) goto fail;
        snprintf(nm, sizeof(nm), "%sweight_hr_l%d%s", pre, l, sfx[d]);
        if (proj) {
          if (!expect(&L, nm, proj, H, 1)) goto fail;
          find(&L, nm)->used = 1;
        }
        need += in * net->ldg + (int64_t)hout * net->ldg + 3 * net->ldg + (proj ? H * net->ldp : 0);
        if (need > RNN_MAX_PARAMS) break;
      }
    }
    if (P.seed) {
      snprintf(nm, sizeof(nm), "%si2h.weight", pre);
      find(&L, nm)->used = 1;
      snprintf(nm, sizeof(nm), "%si2h.bias", pre);
      if ((sb = expect(&L, nm, H, 0, 0)) != NULL) sb->used = 1;
      else if (L.err || L.nomem) goto fail;
      snprintf(nm, sizeof(nm), "%si2o.weight", pre);
      ow = find(&L, nm);
      if (!ow) { fail(&L, "missing tensor '%s' [output, %lld]", nm, (long long)(I + H)); goto fail; }
      O = ow->shape[0];
      if (!expect(&L, nm, O, I + H, 1)) goto fail;
      ow->used = 1;
      snprintf(nm, sizeof(nm), "%si2o.bias", pre);
      if ((ob = expect(&L, nm, O, 0, 0)) != NULL) ob->used = 1;
      else if (L.err || L.nomem) goto fail;
    } else {
      if (find_head(&L, &P)) goto fail;
      if (P.has_head) {
        snprintf(nm, sizeof(nm), "%sweight", P.head);
        ht = find(&L, nm);
        O = ht->shape[0];
        if (!expect(&L, nm, O, (int64_t)dirs * hout, 1)) goto fail;
        ht->used = 1;
        snprintf(nm, sizeof(nm), "%sbias", P.head);
        if ((hb = expect(&L, nm, O, 0, 0)) != NULL) hb->used = 1;
        else if (L.err || L.nomem) goto fail;
      } else {
        O = (int64_t)dirs * hout;
      }
    }
    for (int i = 0; i < L.nt; i++) {
      if (!L.t[i].used) {
        fail(&L, "tensor '%s' is not used by this %s model (recurrent prefix '%s'%s%s%s): "
                 "refusing to ignore part of a state_dict",
             L.t[i].name, cell_names[net->cell], pre, P.has_head ? ", head prefix '" : "",
             P.has_head ? P.head : "", P.has_head ? "'" : "");
        goto fail;
      }
    }
    if (O > RNN_MAX_OUTPUT) { fail(&L, "output size %lld is larger than the limit %d", (long long)O, RNN_MAX_OUTPUT); goto fail; }
    net->n_out = (int)O;
    net->ldo = round_up((int)O);
    if (P.seed) need = (I + H) * net->ldg + 2 * net->ldg + (I + H) * net->ldo + net->ldo;
    if (ht) need += (int64_t)dirs * hout * net->ldo + net->ldo;
    need += 2 * round_up((int)I) + 2 * net->ldo;
    for (int i = 0; i < L.nt; i++) params += (int64_t)L.t[i].shape[0] * (L.t[i].ndim == 2 ? L.t[i].shape[1] : 1);
    m->n_params = params;
    if (need > RNN_MAX_PARAMS) {
      fail(&L, "model needs %lld floats after padding, more than the limit %u", (long long)need, RNN_MAX_PARAMS);
      goto fail;
    }
    /* Pass 2: carve the arena (zeroed, so absent biases and padding are 0). */
    m->arena_raw = sqlite3_malloc64((sqlite3_uint64)need * sizeof(float) + 64);
    m->layers = sqlite3_malloc64(sizeof(rnn_layer) * (size_t)net->layers);
    if (!m->arena_raw || !m->layers) { L.nomem = 1; goto fail; }
    memset(m->arena_raw, 0, (size_t)need * sizeof(float) + 64);
    memset(m->layers, 0, sizeof(rnn_layer) * (size_t)net->layers);
    m->arena = (float *)(((uintptr_t)m->arena_raw + 63) & ~(uintptr_t)63);
    net->layer = m->layers;
    float *a = m->arena;
#define CARVE(ptr, count) do { ptr = a; a += (count); } while (0)
    for (int l = 0; !P.seed && l < net->layers; l++) {
      rnn_layer *ly = &m->layers[l];
      ly->in = l == 0 ? (int)I : dirs * hout;
      for (int d = 0; d < dirs; d++) {
        float *w;
        rnn_dir *dr = &ly->dir[d];
        CARVE(w, (size_t)ly->in * net->ldg);
        snprintf(nm, sizeof(nm), "%sweight_ih_l%d%s", pre, l, sfx[d]);
        if (put(&L, find(&L, nm), w, net->ldg)) goto fail;
        dr->wih = w;
        CARVE(w, (size_t)hout * net->ldg);
        snprintf(nm, sizeof(nm), "%sweight_hh_l%d%s", pre, l, sfx[d]);
        if (put(&L, find(&L, nm), w, net->ldg)) goto fail;
        dr->whh = w;
        CARVE(w, net->ldg);
        snprintf(nm, sizeof(nm), "%sbias_ih_l%d%s", pre, l, sfx[d]);
        if (find(&L, nm) && put(&L, find(&L, nm), w, 0)) goto fail;
        if (find(&L, nm)) P.bias = 1;
        dr->bih = w;
        CARVE(w, net->ldg);
        snprintf(nm, sizeof(nm), "%sbias_hh_l%d%s", pre, l, sfx[d]);
        if (find(&L, nm) && put(&L, find(&L, nm), w, 0)) goto fail;
        if (find(&L, nm)) P.bias = 1;
        dr->bhh = w;
        CARVE(w, net->ldg);
        for (int j = 0; j < net->ldg; j++) w[j] = dr->bih[j] + dr->bhh[j];
        dr->bsum = w;
        if (proj) {
          CARVE(w, (size_t)H * net->ldp);
          snprintf(nm, sizeof(nm), "%sweight_hr_l%d%s", pre, l, sfx[d]);
          if (put(&L, find(&L, nm), w, net->ldp)) goto fail;
          dr->whr = w;
        }
      }
    }
    if (P.seed) {
      float *w;
      m->layers[0].in = (int)(I + H);
      CARVE(w, (size_t)(I + H) * net->ldg);
      snprintf(nm, sizeof(nm), "%si2h.weight", pre);
      if (put(&L, find(&L, nm), w, net->ldg)) goto fail;
      m->layers[0].dir[0].wih = w;
      CARVE(w, net->ldg);
      if (sb && put(&L, sb, w, 0)) goto fail;
      m->layers[0].dir[0].bih = w;
      CARVE(w, net->ldg);
      m->layers[0].dir[0].bhh = w;
      CARVE(w, (size_t)(I + H) * net->ldo);
      if (put(&L, ow, w, net->ldo)) goto fail;
      net->seed_o = w;
      CARVE(w, net->ldo);
      if (ob && put(&L, ob, w, 0)) goto fail;
      net->seed_ob = w;
      P.bias = sb || ob;
    }
    if (ht) {
      float *w;
      CARVE(w, (size_t)dirs * hout * net->ldo);
      if (put(&L, ht, w, net->ldo)) goto fail;
      net->head_w = w;
      CARVE(w, net->ldo);
      if (hb && put(&L, hb, w, 0)) goto fail;
      net->head_b = w;
    }
    {
      float *w;
      int present;
      CARVE(w, round_up((int)I));
      if (parse_vec(&L, "input_mean", (int)I, 0, w, &present)) goto fail;
      net->in_mean = present ? w : NULL;
      CARVE(w, round_up((int)I));
      if (parse_vec(&L, "input_std", (int)I, 1, w, &present)) goto fail;
      net->in_std = present ? w : NULL;
      CARVE(w, net->ldo);
      if (parse_vec(&L, "output_mean", (int)O, 0, w, &present)) goto fail;
      net->out_mean = present ? w : NULL;
      CARVE(w, net->ldo);
      if (parse_vec(&L, "output_std", (int)O, 1, w, &present)) goto fail;
      net->out_std = present ? w : NULL;
    }
#undef CARVE
  }
  net->k = rnn_kernels_pick();

  {
    int rc = rnn_tokens_load(m, meta(&L, "vocab"), meta(&L, "labels"), meta(&L, "unknown_token"), &L.err);
    if (rc == SQLITE_NOMEM) L.nomem = 1;
    if (rc != SQLITE_OK) goto fail;
  }

  /* rnn_info() text, built once. */
  {
    int ndt[4] = {0, 0, 0, 0};
    sqlite3_str *s = sqlite3_str_new(NULL);
    for (int i = 0; i < L.nt; i++) ndt[L.t[i].dtype]++;
    sqlite3_str_appendf(s, "{\"cell\":\"%s\",\"input_size\":%d,\"hidden_size\":%d,\"proj_size\":%d,"
                           "\"num_layers\":%d,\"bidirectional\":%s,\"bias\":%s,\"output_size\":%d,",
                        cell_names[net->cell], net->n_in, net->hidden, net->proj, net->layers,
                        net->dirs == 2 ? "true" : "false", P.bias ? "true" : "false", net->n_out);
    sqlite3_str_appendf(s, "\"head\":%s,\"output_activation\":\"%s\",", P.has_head ? "true" : "false",
                        act_names[net->out_act]);
    if (P.seed) sqlite3_str_appendf(s, "\"hidden_activation\":\"%s\",", act_names[net->hidden_act]);
    sqlite3_str_appendf(s, "\"recurrent_prefix\":");
    json_string(s, pre);
    if (P.has_head) {
      sqlite3_str_appendf(s, ",\"head_prefix\":");
      json_string(s, P.head);
    }
    sqlite3_str_appendf(s, ",\"parameters\":%lld,\"tensors\":%d,\"dtypes\":{", (long long)m->n_params, L.nt);
    for (int d = 0, first = 1; d < 4; d++) {
      if (!ndt[d]) continue;
      sqlite3_str_appendf(s, "%s\"%s\":%d", first ? "" : ",", dt_name[d], ndt[d]);
      first = 0;
    }
    sqlite3_str_appendf(s, "},\"kernel\":\"%s\",\"metadata\":{", net->k->name);
    const rj_node *nd = L.doc.nodes;
    for (int k = L.md >= 0 ? nd[L.md].child : -1; k >= 0; k = nd[nd[k].next].next) {
      if (k != nd[L.md].child) sqlite3_str_appendchar(s, 1, ',');
      json_string(s, nd[k].str);
      sqlite3_str_appendchar(s, 1, ':');
      json_string(s, nd[nd[k].next].str);
    }
    sqlite3_str_appendf(s, "}}");
    if (sqlite3_str_errcode(s)) {
      sqlite3_free(sqlite3_str_finish(s));
      L.nomem = 1;
      goto fail;
    }
    m->info = sqlite3_str_finish(s);
  }
  rj_free(&L.doc);
  sqlite3_free(L.t);
  *out = m;
  return SQLITE_OK;

fail:
  rj_free(&L.doc);
  sqlite3_free(L.t);
  rnn_model_free(m);
  if (L.nomem) {
    sqlite3_free(L.err);
    return SQLITE_NOMEM;
  }
  *err = L.err;
  return SQLITE_ERROR;
}

void rnn_model_free(rnn_model *m) {
  if (!m) return;
  sqlite3_free(m->arena_raw);
  sqlite3_free(m->layers);
  sqlite3_free(m->info);
  sqlite3_free(m->tok_block);
  sqlite3_free(m);
}

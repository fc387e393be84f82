/*
** model.c: safetensors BLOB -> validated rnn_model (docs/DESIGN.md "The model BLOB").
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
**  6. Known metadata keys are validated (activations; readout: last_output or
**     final_states; standardisation arrays: right length, finite, std > 0;
**     vocab: distinct non-empty strings, one per input; labels: one string per
**     output; output_names: distinct non-empty strings, one per output;
**     unknown_token: in vocab); other keys are kept, and rnn_info lists them
**     under "warnings" (info.c).
**  7. Every size is checked against the limits in model.h with 64-bit
**     arithmetic before it sizes an allocation.
**
** The load runs in stages, each its own function: read_header (rules 1-2),
** find_prefix / read_sizes (names and sizes, rules 3-4), parse_settings
** (activations, readout), check_tensors (every shape, nothing left over),
** build_arena (one layout routine run twice: count mode sizes the arena, carve
** mode converts the weights into it and asserts it took what was counted),
** the kernel choice, the tokenizer tables, output_names, and rnn_info's text.
*/
#include "model.h"
#include "f32.h"
#include "json.h"
#include "util.h"
#include "tokenizer.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DT_F32, DT_F16, DT_BF16, DT_F64 };
const char *const rnn_dtype_names[] = {"F32", "F16", "BF16", "F64"};
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
  rnn_json_doc doc;
  tensor *t;
  int nt;
  int md;                     /* JSON node of __metadata__, or -1 */
  rnn_err *err;               /* the caller's: the first error of the load */
} loader;

/* Every stage returns an SQLite code with the error in L->err (util.h);
** expect() and find() return NULL instead. */

static tensor *find(loader *L, const char *name) {
  for (int i = 0; i < L->nt; i++) {
    if (strcmp(L->t[i].name, name) == 0) return &L->t[i];
  }
  return NULL;
}

static const char *meta(loader *L, const char *key) {
  int v = rnn_json_get(&L->doc, L->md, key);
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

/* What a BLOB that cannot be safetensors (whose header must start with '{')
** looks like, for a message that says how to convert it; NULL if unknown. */
static const char *foreign_format(const unsigned char *blob, size_t n) {
  if (n > 8 && blob[8] == '{') return NULL;
  if (n >= 4 && memcmp(blob, "PK\x03\x04", 4) == 0) return "a zip archive (what torch.save writes)";
  if (n >= 2 && blob[0] == 0x80 && blob[1] >= 2 && blob[1] <= 5) {
    return "a Python pickle (pickle.dump, or torch.save in its legacy format)";
  }
  return NULL;
}

/* Rule 2 for one tensor entry: the header pair at node k (name) and its value. */
static int read_entry(loader *L, int k) {
  rnn_json_node *nd = L->doc.nodes;
  const char *name = nd[k].str;
  int v = nd[k].next;
  if (nd[k].n > RNN_MAX_NAME) return rnn_err_set(L->err, "tensor name longer than %d bytes", RNN_MAX_NAME);
  if (nd[v].type != RNN_JSON_OBJECT) return rnn_err_set(L->err, "tensor '%s': entry is not a JSON object", name);
  tensor *t = &L->t[L->nt++];
  memset(t, 0, sizeof(*t));
  t->name = name;
  int dt = rnn_json_get(&L->doc, v, "dtype"), sh = rnn_json_get(&L->doc, v, "shape");
  int off = rnn_json_get(&L->doc, v, "data_offsets");
  if (dt < 0 || sh < 0 || off < 0 || nd[v].n != 3) {
    return rnn_err_set(L->err, "tensor '%s': entry must have exactly dtype, shape and data_offsets", name);
  }
  if (nd[dt].type != RNN_JSON_STRING) return rnn_err_set(L->err, "tensor '%s': dtype is not a string", name);
  t->dtype = -1;
  for (int d = 0; d < 4; d++) {
    if (strcmp(nd[dt].str, rnn_dtype_names[d]) == 0) t->dtype = d;
  }
  if (t->dtype < 0) {
    return rnn_err_set(L->err, "tensor '%s': dtype %s is not supported (F32, F16, BF16 or F64)", name, nd[dt].str);
  }
  if (nd[sh].type != RNN_JSON_ARRAY) return rnn_err_set(L->err, "tensor '%s': shape is not a JSON array", name);
  if (nd[sh].n < 1 || nd[sh].n > 2) {
    return rnn_err_set(L->err, "tensor '%s': has %d dimensions, expected 1 or 2", name, nd[sh].n);
  }
  uint64_t numel = 1;
  for (int d = nd[sh].child; d >= 0; d = nd[d].next) {
    if (nd[d].type != RNN_JSON_NUMBER || !nd[d].is_uint) {
      return rnn_err_set(L->err, "tensor '%s': shape must hold non-negative integers", name);
    }
    if (nd[d].u == 0) return rnn_err_set(L->err, "tensor '%s': shape has a zero dimension", name);
    if (nd[d].u > RNN_MAX_PARAMS) {
      return rnn_err_set(L->err, "tensor '%s': dimension %llu is larger than the limit %u", name,
                         (unsigned long long)nd[d].u, RNN_MAX_PARAMS);
    }
    numel *= nd[d].u; /* both factors <= 2^27: no overflow */
    if (numel > RNN_MAX_PARAMS) {
      return rnn_err_set(L->err, "tensor '%s': more than %u elements", name, RNN_MAX_PARAMS);
    }
    t->shape[t->ndim++] = (int64_t)nd[d].u;
  }
  if (nd[off].type != RNN_JSON_ARRAY || nd[off].n != 2) {
    return rnn_err_set(L->err, "tensor '%s': data_offsets must be a JSON array of 2 integers", name);
  }
  int o0 = nd[off].child, o1 = nd[o0].next;
  if (nd[o0].type != RNN_JSON_NUMBER || !nd[o0].is_uint || nd[o1].type != RNN_JSON_NUMBER || !nd[o1].is_uint) {
    return rnn_err_set(L->err, "tensor '%s': data_offsets must be a JSON array of 2 integers", name);
  }
  t->begin = nd[o0].u;
  t->end = nd[o1].u;
  if (t->begin > t->end || t->end > L->data_len) {
    return rnn_err_set(L->err, "tensor '%s': data_offsets [%llu, %llu] outside the data buffer of %llu bytes",
                       name, (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)L->data_len);
  }
  if (t->end - t->begin != numel * (uint64_t)dt_size[t->dtype]) {
    return rnn_err_set(L->err, "tensor '%s': data_offsets hold %llu bytes, but %s with %llu elements needs %llu",
                       name, (unsigned long long)(t->end - t->begin), rnn_dtype_names[t->dtype],
                       (unsigned long long)numel, (unsigned long long)(numel * (uint64_t)dt_size[t->dtype]));
  }
  return SQLITE_OK;
}

/* Rule 2: the tensors tile the buffer exactly. */
static int check_tiling(loader *L) {
  tensor **order = sqlite3_malloc64(sizeof(tensor *) * (size_t)L->nt);
  if (!order) return rnn_err_nomem(L->err);
  for (int i = 0; i < L->nt; i++) order[i] = &L->t[i];
  qsort(order, (size_t)L->nt, sizeof(tensor *), cmp_begin);
  uint64_t at = 0;
  int bad = 0;
  for (int i = 0; i < L->nt && !bad; i++) {
    if (order[i]->begin < at) {
      bad = rnn_err_set(L->err, "tensors '%s' and '%s' overlap in the data buffer", order[i - 1]->name, order[i]->name);
    } else if (order[i]->begin > at) {
      bad = rnn_err_set(L->err, "data buffer has a gap of %llu bytes before tensor '%s'",
                        (unsigned long long)(order[i]->begin - at), order[i]->name);
    }
    at = order[i]->end;
  }
  sqlite3_free(order);
  if (bad) return L->err->rc;
  if (at != L->data_len) {
    return rnn_err_set(L->err, "data buffer has %llu bytes after the last tensor",
                       (unsigned long long)(L->data_len - at));
  }
  return SQLITE_OK;
}

/* Rules 1 and 2: the header and the tensor table. */
static int read_header(loader *L, const unsigned char *blob, size_t n) {
  uint64_t hlen = 0;
  const char *foreign = foreign_format(blob, n);
  if (foreign) {
    return rnn_err_set(L->err, "BLOB is %s, not safetensors: convert the module with sqlite_rnn.to_blob(module) "
                       "(python/sqlite_rnn.py) or save its state_dict with safetensors.torch.save_file", foreign);
  }
  if (n < 8) return rnn_err_set(L->err, "BLOB is %d bytes, too short for a safetensors header", (int)n);
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | blob[i];
  if (hlen > n - 8) {
    return rnn_err_set(L->err, "safetensors header length %llu exceeds the BLOB size %llu",
                       (unsigned long long)hlen, (unsigned long long)n);
  }
  if (hlen > RNN_MAX_HEADER) {
    return rnn_err_set(L->err, "safetensors header is %llu bytes, more than the limit %u",
                       (unsigned long long)hlen, RNN_MAX_HEADER);
  }
  L->data = blob + 8 + hlen;
  L->data_len = n - 8 - hlen;
  if (rnn_json_parse((const char *)blob + 8, (size_t)hlen, &L->doc, L->err) != SQLITE_OK) {
    return rnn_err_prefix(L->err, "safetensors header is not valid JSON: ");
  }
  rnn_json_node *nd = L->doc.nodes;
  if (nd[0].type != RNN_JSON_OBJECT) return rnn_err_set(L->err, "safetensors header is not a JSON object");
  if (nd[0].n > RNN_MAX_TENSORS + 1) {
    return rnn_err_set(L->err, "safetensors header has %d entries, more than the limit %d", nd[0].n, RNN_MAX_TENSORS);
  }
  L->t = sqlite3_malloc64(sizeof(tensor) * (size_t)(nd[0].n + 1));
  if (!L->t) return rnn_err_nomem(L->err);
  for (int k = nd[0].child; k >= 0; k = nd[nd[k].next].next) {
    const char *name = nd[k].str;
    int v = nd[k].next;
    if (strcmp(name, "__metadata__") == 0) {
      if (nd[v].type != RNN_JSON_OBJECT) return rnn_err_set(L->err, "__metadata__ is not a JSON object");
      for (int mk = nd[v].child; mk >= 0; mk = nd[nd[mk].next].next) {
        if (nd[nd[mk].next].type != RNN_JSON_STRING) {
          return rnn_err_set(L->err, "__metadata__ value of '%s' is not a string", nd[mk].str);
        }
      }
      L->md = v;
      continue;
    }
    if (read_entry(L, k)) return L->err->rc;
  }
  if (L->nt == 0) return rnn_err_set(L->err, "safetensors header lists no tensors");
  return check_tiling(L);
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
        return rnn_err_set(L->err, "tensor '%s' has a NaN, infinite or out-of-range value at index %lld",
                           t->name, (long long)(r * cols + c));
      }
      if (t->ndim == 2) dst[(size_t)c * (size_t)ld + (size_t)r] = v;
      else dst[r] = v;
    }
  }
  return SQLITE_OK;
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
      if (c) rnn_err_set(L->err, "missing tensor '%s' [%lld, %lld]", name, (long long)r, (long long)c);
      else rnn_err_set(L->err, "missing tensor '%s' [%lld]", name, (long long)r);
    }
    return NULL;
  }
  if ((c == 0 && (t->ndim != 1 || t->shape[0] != r)) ||
      (c != 0 && (t->ndim != 2 || t->shape[0] != r || t->shape[1] != c))) {
    if (c) rnn_err_set(L->err, "tensor '%s' has shape %s, expected [%lld, %lld]", name,
                       shape_str(t, got, sizeof(got)), (long long)r, (long long)c);
    else rnn_err_set(L->err, "tensor '%s' has shape %s, expected [%lld]", name, shape_str(t, got, sizeof(got)),
                     (long long)r);
    return NULL;
  }
  return t;
}

static int round_up(int n) { return (n + RNN_LANES - 1) / RNN_LANES * RNN_LANES; }

const char *const rnn_act_names[] = {"none", "sigmoid", "tanh", "softmax", "log_softmax", "relu"};

static int parse_act(loader *L, const char *key, int allow_softmax, int *out) {
  const char *v = meta(L, key);
  *out = ACT_NONE;
  if (!v) return SQLITE_OK;
  for (int a = 0; a < 6; a++) {
    if (strcmp(v, rnn_act_names[a]) != 0) continue;
    if (allow_softmax ? a == ACT_RELU : (a == ACT_SOFTMAX || a == ACT_LOG_SOFTMAX)) break;
    *out = a;
    return SQLITE_OK;
  }
  return rnn_err_set(L->err, "__metadata__ %s is '%s', expected one of %s", key, v,
                     allow_softmax ? "none, sigmoid, tanh, softmax, log_softmax" : "none, tanh, relu, sigmoid");
}

/* A standardisation array: JSON array of n finite numbers (positive for std). */
static int parse_vec(loader *L, const char *key, int n, int positive, float *dst, int *present) {
  const char *v = meta(L, key);
  rnn_json_doc d;
  rnn_err jerr = {SQLITE_OK, NULL}; /* not shown: the message below says what is expected */
  *present = 0;
  if (!v) return SQLITE_OK;
  int rc = rnn_json_parse(v, strlen(v), &d, &jerr);
  sqlite3_free(jerr.msg);
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(L->err);
  int ok = rc == SQLITE_OK && d.nodes[0].type == RNN_JSON_ARRAY && d.nodes[0].n == n;
  for (int i = d.nodes && ok ? d.nodes[0].child : -1, j = 0; i >= 0; i = d.nodes[i].next, j++) {
    double x = d.nodes[i].num;
    if (d.nodes[i].type != RNN_JSON_NUMBER || !rnn_f32_finite(x) || (positive && !(x > 0))) {
      ok = 0;
      break;
    }
    dst[j] = (float)x;
  }
  if (rc == SQLITE_OK) rnn_json_free(&d);
  if (!ok) {
    return rnn_err_set(L->err, "__metadata__ %s must be a JSON array of %d finite%s numbers, got %.40U", key, n,
                       positive ? " positive" : "", v, -1);
  }
  *present = 1;
  return SQLITE_OK;
}

const char *const rnn_cell_names[] = {"rnn_tanh", "rnn_relu", "lstm", "gru", "seed"};

typedef struct plan {
  char prefix[RNN_MAX_NAME + 1];   /* recurrent prefix P */
  char head[RNN_MAX_NAME + 1];     /* head prefix Q */
  int has_head, seed, bias;
  tensor *head_w, *head_b;         /* the head Linear, or NULL */
  tensor *seed_b, *seed_ow, *seed_ob;  /* the tutorial cell's i2h.bias, i2o.weight, i2o.bias */
} plan;

/* Rule 3: find P (and whether this is the tutorial cell). */
static int find_prefix(loader *L, plan *p) {
  const char *want = meta(L, "recurrent_prefix");
  const char *cell = meta(L, "cell");
  int found = 0;
  if (want) {
    if (strlen(want) > RNN_MAX_NAME - 20 || (want[0] && !ends_with(want, "."))) {
      return rnn_err_set(L->err, "__metadata__ recurrent_prefix %.60U must be empty or end with '.'", want, -1);
    }
    strcpy(p->prefix, want);
    char nm[RNN_MAX_NAME + 32];
    snprintf(nm, sizeof(nm), "%si2h.weight", want);
    p->seed = find(L, nm) != NULL;
    snprintf(nm, sizeof(nm), "%sweight_ih_l0", want);
    if (!p->seed && !find(L, nm)) {
      return rnn_err_set(L->err, "no tensor '%sweight_ih_l0' or '%si2h.weight' for __metadata__ recurrent_prefix",
                         want, want);
    }
    return SQLITE_OK;
  }
  for (int i = 0; i < L->nt; i++) {
    const char *nm = L->t[i].name;
    const char *suffix = ends_with(nm, "weight_ih_l0") ? "weight_ih_l0" : ends_with(nm, "i2h.weight") ? "i2h.weight" : NULL;
    if (!suffix) continue;
    size_t plen = strlen(nm) - strlen(suffix);
    if (plen && nm[plen - 1] != '.') continue;
    if (found) {
      return rnn_err_set(L->err, "several recurrent modules ('%.*s' and '%s'): set __metadata__ recurrent_prefix",
                         (int)strlen(p->prefix), p->prefix, nm);
    }
    found = 1;
    memcpy(p->prefix, nm, plen);
    p->prefix[plen] = 0;
    p->seed = suffix[0] == 'i';
  }
  if (!found) {
    return rnn_err_set(L->err, "no recurrent layer: expected a tensor '<prefix>weight_ih_l0' (nn.RNN, nn.LSTM, nn.GRU) "
                       "or '<prefix>i2h.weight' (the tutorial RNN)");
  }
  if (cell && p->seed != (strcmp(cell, "seed") == 0)) {
    return rnn_err_set(L->err, "__metadata__ cell is '%s' but the tensors are those of %s", cell,
                       p->seed ? "the tutorial (seed) RNN" : "nn.RNN, nn.LSTM or nn.GRU");
  }
  return SQLITE_OK;
}

/* Rule 3: the head is whatever `<Q>weight` is left after the recurrent tensors. */
static int find_head(loader *L, plan *p) {
  const char *want = meta(L, "head_prefix");
  if (want) {
    if (strlen(want) > RNN_MAX_NAME - 10 || (want[0] && !ends_with(want, "."))) {
      return rnn_err_set(L->err, "__metadata__ head_prefix %.60U must be empty or end with '.'", want, -1);
    }
    char nm[RNN_MAX_NAME + 16];
    snprintf(nm, sizeof(nm), "%sweight", want);
    tensor *t = find(L, nm);
    if (!t || t->used) return rnn_err_set(L->err, "no tensor '%s' for __metadata__ head_prefix", nm);
    strcpy(p->head, want);
    p->has_head = 1;
    return SQLITE_OK;
  }
  for (int i = 0; i < L->nt; i++) {
    const char *nm = L->t[i].name;
    if (L->t[i].used || !ends_with(nm, "weight")) continue;
    size_t plen = strlen(nm) - 6;
    if (plen && nm[plen - 1] != '.') continue;
    if (p->has_head) {
      return rnn_err_set(L->err, "several candidate heads ('%sweight' and '%s'): set __metadata__ head_prefix",
                         p->head, nm);
    }
    memcpy(p->head, nm, plen);
    p->head[plen] = 0;
    p->has_head = 1;
  }
  return SQLITE_OK;
}


/* Rules 3 and 4, the tutorial cell: sizes from i2h.weight [H, I + H]. */
static int seed_sizes(loader *L, const plan *P, rnn_net *net, int64_t *I, int64_t *H) {
  char nm[RNN_MAX_NAME + 64];
  snprintf(nm, sizeof(nm), "%si2h.weight", P->prefix);
  tensor *w0 = find(L, nm);
  if (w0->ndim != 2 || w0->shape[1] <= w0->shape[0]) {
    char got[64];
    return rnn_err_set(L->err, "tensor '%s' has shape %s, expected [hidden, input + hidden]", nm,
                       shape_str(w0, got, sizeof(got)));
  }
  *H = w0->shape[0];
  *I = w0->shape[1] - *H;
  net->gates = 1;
  net->cell = CELL_SEED;
  net->layers = 1;
  net->dirs = 1;
  return SQLITE_OK;
}

/* Rule 4: metadata `cell` must name a cell and agree with the gate count G. */
static int check_cell(loader *L, const plan *P, rnn_net *net, int64_t G) {
  const char *cell = meta(L, "cell");
  int want = -1;
  if (!cell) return SQLITE_OK;
  for (int c = 0; c < 5; c++) {
    if (strcmp(cell, rnn_cell_names[c]) == 0) want = c;
  }
  if (want < 0) {
    return rnn_err_set(L->err, "__metadata__ cell is '%s', expected one of rnn_tanh, rnn_relu, lstm, gru, seed",
                       cell);
  }
  if (want == CELL_RNN_RELU && net->cell == CELL_RNN_TANH) net->cell = CELL_RNN_RELU;
  if (want != net->cell) {
    return rnn_err_set(L->err, "__metadata__ cell is '%s' but the tensors under '%s' have %lld gates (%s)", cell,
                       P->prefix, (long long)G, rnn_cell_names[net->cell]);
  }
  return SQLITE_OK;
}

/* Rules 3 and 4, nn.RNN/LSTM/GRU: sizes and cell from layer 0, then the layer
** count and the directions from the names present. */
static int recurrent_sizes(loader *L, const plan *P, rnn_net *net, int64_t *I, int64_t *H, int64_t *proj) {
  char nm[RNN_MAX_NAME + 64];
  const char *pre = P->prefix;
  snprintf(nm, sizeof(nm), "%sweight_ih_l0", pre);
  tensor *w0 = find(L, nm);
  snprintf(nm, sizeof(nm), "%sweight_hh_l0", pre);
  tensor *h0 = find(L, nm);
  if (!h0) return rnn_err_set(L->err, "missing tensor '%s'", nm);
  snprintf(nm, sizeof(nm), "%sweight_hr_l0", pre);
  tensor *hr0 = find(L, nm);
  if (w0->ndim != 2 || h0->ndim != 2 || (hr0 && hr0->ndim != 2)) {
    return rnn_err_set(L->err, "recurrent weights under '%s' must be 2-dimensional", pre);
  }
  *I = w0->shape[1];
  *H = hr0 ? hr0->shape[1] : h0->shape[1];
  *proj = hr0 ? hr0->shape[0] : 0;
  int64_t G = w0->shape[0] / *H;
  if (w0->shape[0] % *H || (G != 1 && G != 3 && G != 4) || (hr0 && G != 4)) {
    char got[64];
    return rnn_err_set(L->err, "tensor '%sweight_ih_l0' has shape %s: rows must be 1, 3 or 4 times the hidden "
                       "size %lld%s", pre, shape_str(w0, got, sizeof(got)), (long long)*H,
                       hr0 ? " (4 with weight_hr, LSTM)" : "");
  }
  net->gates = (int)G;
  net->cell = G == 4 ? CELL_LSTM : G == 3 ? CELL_GRU : CELL_RNN_TANH;
  if (check_cell(L, P, net, G)) return L->err->rc;
  int layers = 0;
  for (;;) {
    snprintf(nm, sizeof(nm), "%sweight_ih_l%d", pre, layers);
    if (!find(L, nm)) break;
    if (++layers > RNN_MAX_LAYERS) return rnn_err_set(L->err, "more than %d layers", RNN_MAX_LAYERS);
  }
  net->layers = layers;
  snprintf(nm, sizeof(nm), "%sweight_ih_l0_reverse", pre);
  net->dirs = find(L, nm) ? 2 : 1;
  return SQLITE_OK;
}

/* Rules 3, 4 and 7: the sizes of rnn_net that the tensor names and shapes tell. */
static int read_sizes(loader *L, const plan *P, rnn_net *net) {
  int64_t I = 0, H = 0, proj = 0;
  if (P->seed ? seed_sizes(L, P, net, &I, &H) : recurrent_sizes(L, P, net, &I, &H, &proj)) return L->err->rc;
  if (I < 1 || I > RNN_MAX_INPUT) {
    return rnn_err_set(L->err, "input size %lld is outside 1..%d", (long long)I, RNN_MAX_INPUT);
  }
  if (H > RNN_MAX_HIDDEN) {
    return rnn_err_set(L->err, "hidden size %lld is larger than the limit %d", (long long)H, RNN_MAX_HIDDEN);
  }
  if (proj >= H) {
    return rnn_err_set(L->err, "tensor '%sweight_hr_l0': proj_size %lld must be smaller than hidden size %lld",
                       P->prefix, (long long)proj, (long long)H);
  }
  net->n_in = (int)I;
  net->hidden = (int)H;
  net->proj = (int)proj;
  net->hout = (int)(proj ? proj : H);
  net->ldg = round_up(net->gates * net->hidden);
  net->ldp = proj ? round_up((int)proj) : 0;
  return SQLITE_OK;
}

/* Rule 6: metadata `readout`: what the head reads after a whole sequence. */
static int parse_readout(loader *L, rnn_net *net) {
  const char *v = meta(L, "readout");
  net->readout = READOUT_LAST_OUTPUT;
  if (!v || strcmp(v, "last_output") == 0) return SQLITE_OK;
  if (strcmp(v, "final_states") == 0) {
    net->readout = READOUT_FINAL_STATES;
    return SQLITE_OK;
  }
  return rnn_err_set(L->err, "__metadata__ readout is '%s', expected one of last_output, final_states", v);
}

/* Rule 6: the activations and the readout. */
static int parse_settings(loader *L, const plan *P, rnn_net *net) {
  if (parse_act(L, "output_activation", 1, &net->out_act)) return L->err->rc;
  if (meta(L, "hidden_activation") && !P->seed) {
    return rnn_err_set(L->err, "__metadata__ hidden_activation applies only to the tutorial (seed) cell");
  }
  if (parse_act(L, "hidden_activation", 0, &net->hidden_act)) return L->err->rc;
  return parse_readout(L, net);
}

/* The tensor `name` if present with shape [r] (c == 0) or [r, c], marked used.
** SQLITE_ERROR on a wrong shape or a missing required tensor. */
static int use(loader *L, const char *name, int64_t r, int64_t c, int required, tensor **out) {
  tensor *t = expect(L, name, r, c, required);
  if (out) *out = t;
  if (t) t->used = 1;
  return t ? SQLITE_OK : L->err->rc; /* SQLITE_OK for an absent optional tensor */
}

/* Rule 3: every recurrent tensor with its exact shape. */
static int check_recurrent(loader *L, plan *P, const rnn_net *net) {
  static const char *const sfx[2] = {"", "_reverse"};
  char nm[RNN_MAX_NAME + 64];
  const char *pre = P->prefix;
  const int64_t GH = (int64_t)net->gates * net->hidden;
  for (int l = 0; l < net->layers; l++) {
    int64_t in = l == 0 ? net->n_in : (int64_t)net->dirs * net->hout;
    for (int d = 0; d < net->dirs; d++) {
      tensor *b1, *b2;
      snprintf(nm, sizeof(nm), "%sweight_ih_l%d%s", pre, l, sfx[d]);
      if (use(L, nm, GH, in, 1, NULL)) return L->err->rc;
      snprintf(nm, sizeof(nm), "%sweight_hh_l%d%s", pre, l, sfx[d]);
      if (use(L, nm, GH, net->hout, 1, NULL)) return L->err->rc;
      snprintf(nm, sizeof(nm), "%sbias_ih_l%d%s", pre, l, sfx[d]);
      if (use(L, nm, GH, 0, 0, &b1)) return L->err->rc;
      snprintf(nm, sizeof(nm), "%sbias_hh_l%d%s", pre, l, sfx[d]);
      if (use(L, nm, GH, 0, 0, &b2)) return L->err->rc;
      if (b1 || b2) P->bias = 1;
      snprintf(nm, sizeof(nm), "%sweight_hr_l%d%s", pre, l, sfx[d]);
      if (net->proj && use(L, nm, net->proj, net->hidden, 1, NULL)) return L->err->rc;
    }
  }
  return SQLITE_OK;
}

/* Rule 3, the tutorial cell: i2h.bias, i2o.weight [O, I + H], i2o.bias. */
static int check_seed(loader *L, plan *P, const rnn_net *net, int64_t *O) {
  char nm[RNN_MAX_NAME + 64];
  const char *pre = P->prefix;
  const int64_t IH = (int64_t)net->n_in + net->hidden;
  snprintf(nm, sizeof(nm), "%si2h.weight", pre);
  find(L, nm)->used = 1;
  snprintf(nm, sizeof(nm), "%si2h.bias", pre);
  if (use(L, nm, net->hidden, 0, 0, &P->seed_b)) return L->err->rc;
  snprintf(nm, sizeof(nm), "%si2o.weight", pre);
  P->seed_ow = find(L, nm);
  if (!P->seed_ow) return rnn_err_set(L->err, "missing tensor '%s' [output, %lld]", nm, (long long)IH);
  *O = P->seed_ow->shape[0];
  if (use(L, nm, *O, IH, 1, NULL)) return L->err->rc;
  snprintf(nm, sizeof(nm), "%si2o.bias", pre);
  if (use(L, nm, *O, 0, 0, &P->seed_ob)) return L->err->rc;
  P->bias = P->seed_b || P->seed_ob;
  return SQLITE_OK;
}

/* Rule 3: the optional Linear head over the last layer's dirs * hout units. */
static int check_head(loader *L, plan *P, const rnn_net *net, int64_t *O) {
  char nm[RNN_MAX_NAME + 16];
  const int64_t width = (int64_t)net->dirs * net->hout;
  if (find_head(L, P)) return L->err->rc;
  if (!P->has_head) {
    *O = width;
    return SQLITE_OK;
  }
  snprintf(nm, sizeof(nm), "%sweight", P->head);
  P->head_w = find(L, nm);
  *O = P->head_w->shape[0];
  if (use(L, nm, *O, width, 1, NULL)) return L->err->rc;
  snprintf(nm, sizeof(nm), "%sbias", P->head);
  return use(L, nm, *O, 0, 0, &P->head_b);
}

/* Rule 3: every shape, and no tensor left over. Sets the output size. */
static int check_tensors(loader *L, plan *P, rnn_model *m) {
  rnn_net *net = &m->net;
  int64_t O = 0;
  if (P->seed ? check_seed(L, P, net, &O) : check_recurrent(L, P, net) || check_head(L, P, net, &O)) return L->err->rc;
  for (int i = 0; i < L->nt; i++) {
    if (!L->t[i].used) {
      return rnn_err_set(L->err, "tensor '%s' is not used by this %s model (recurrent prefix '%s'%s%s%s): "
                         "refusing to ignore part of a state_dict",
                         L->t[i].name, rnn_cell_names[net->cell], P->prefix, P->has_head ? ", head prefix '" : "",
                         P->has_head ? P->head : "", P->has_head ? "'" : "");
    }
  }
  if (O > RNN_MAX_OUTPUT) {
    return rnn_err_set(L->err, "output size %lld is larger than the limit %d", (long long)O, RNN_MAX_OUTPUT);
  }
  net->n_out = (int)O;
  net->ldo = round_up((int)O);
  m->n_params = 0;
  for (int i = 0; i < L->nt; i++) m->n_params += L->t[i].shape[0] * (L->t[i].ndim == 2 ? L->t[i].shape[1] : 1);
  return SQLITE_OK;
}

/* The weight arena as a bump allocator. With base NULL it only counts the
** floats (pass 1, to size the allocation); with base set it hands out
** consecutive blocks (pass 2). Both passes run the same layout routines, and
** the second checks that it took exactly what the first counted. */
typedef struct arena {
  float *base;            /* NULL: count mode */
  int64_t used;           /* floats handed out so far */
} arena;

static float *take(arena *a, int64_t count) {
  float *p = a->base ? a->base + a->used : NULL;
  a->used += count;
  return p;
}

/* Copy tensor `name` into dst if present (an absent bias stays zero). */
static int put_named(loader *L, const char *name, float *dst, int ld) {
  tensor *t = find(L, name);
  return t ? put(L, t, dst, ld) : SQLITE_OK;
}

/* Layout of the recurrent layers: per layer and direction W_ih^T, W_hh^T (one
** block, see rnn_dir), b_ih, b_hh, b_ih + b_hh, and W_hr^T with proj_size. */
static int lay_out_layers(loader *L, const plan *P, rnn_model *m, arena *a) {
  static const char *const sfx[2] = {"", "_reverse"};
  char nm[RNN_MAX_NAME + 64];
  rnn_net *net = &m->net;
  const int ldg = net->ldg;
  for (int l = 0; l < net->layers; l++) {
    const int in = l == 0 ? net->n_in : net->dirs * net->hout;
    if (a->base) m->layers[l].in = in;
    for (int d = 0; d < net->dirs; d++) {
      float *wih = take(a, (int64_t)in * ldg), *whh = take(a, (int64_t)net->hout * ldg);
      float *bih = take(a, ldg), *bhh = take(a, ldg), *bsum = take(a, ldg);
      float *whr = net->proj ? take(a, (int64_t)net->hidden * net->ldp) : NULL;
      if (!a->base) continue;
      rnn_dir *dr = &m->layers[l].dir[d];
      snprintf(nm, sizeof(nm), "%sweight_ih_l%d%s", P->prefix, l, sfx[d]);
      if (put_named(L, nm, wih, ldg)) return L->err->rc;
      snprintf(nm, sizeof(nm), "%sweight_hh_l%d%s", P->prefix, l, sfx[d]);
      if (put_named(L, nm, whh, ldg)) return L->err->rc;
      snprintf(nm, sizeof(nm), "%sbias_ih_l%d%s", P->prefix, l, sfx[d]);
      if (put_named(L, nm, bih, 0)) return L->err->rc;
      snprintf(nm, sizeof(nm), "%sbias_hh_l%d%s", P->prefix, l, sfx[d]);
      if (put_named(L, nm, bhh, 0)) return L->err->rc;
      for (int j = 0; j < ldg; j++) bsum[j] = bih[j] + bhh[j];
      snprintf(nm, sizeof(nm), "%sweight_hr_l%d%s", P->prefix, l, sfx[d]);
      if (whr && put_named(L, nm, whr, net->ldp)) return L->err->rc;
      dr->wih = wih;
      dr->whh = whh;
      dr->bih = bih;
      dr->bhh = bhh;
      dr->bsum = bsum;
      dr->whr = whr;
    }
  }
  return SQLITE_OK;
}

/* Layout of the tutorial cell: i2h.weight^T [I+H][ldg], i2h.bias, a zero b_hh,
** i2o.weight^T [I+H][ldo], i2o.bias. */
static int lay_out_seed(loader *L, const plan *P, rnn_model *m, arena *a) {
  char nm[RNN_MAX_NAME + 64];
  rnn_net *net = &m->net;
  const int64_t IH = (int64_t)net->n_in + net->hidden;
  float *wih = take(a, IH * net->ldg), *bih = take(a, net->ldg), *bhh = take(a, net->ldg);
  float *wo = take(a, IH * net->ldo), *bo = take(a, net->ldo);
  if (!a->base) return SQLITE_OK;
  rnn_dir *dr = &m->layers[0].dir[0];
  m->layers[0].in = (int)IH;
  snprintf(nm, sizeof(nm), "%si2h.weight", P->prefix);
  if (put_named(L, nm, wih, net->ldg)) return L->err->rc;
  if (P->seed_b && put(L, P->seed_b, bih, 0)) return L->err->rc;
  if (put(L, P->seed_ow, wo, net->ldo)) return L->err->rc;
  if (P->seed_ob && put(L, P->seed_ob, bo, 0)) return L->err->rc;
  dr->wih = wih;
  dr->bih = bih;
  dr->bhh = bhh;
  net->seed_o = wo;
  net->seed_ob = bo;
  return SQLITE_OK;
}

/* Layout of the head (weight^T [dirs*hout][ldo], bias) and of the four
** standardisation vectors (rule 6), which are parsed straight into place. */
static int lay_out_head(loader *L, const plan *P, rnn_model *m, arena *a) {
  rnn_net *net = &m->net;
  float *hw = NULL, *hb = NULL;
  int present[4];
  if (P->head_w) {
    hw = take(a, (int64_t)net->dirs * net->hout * net->ldo);
    hb = take(a, net->ldo);
  }
  float *im = take(a, round_up(net->n_in)), *is = take(a, round_up(net->n_in));
  float *om = take(a, net->ldo), *os = take(a, net->ldo);
  if (!a->base) return SQLITE_OK;
  if (hw && put(L, P->head_w, hw, net->ldo)) return L->err->rc;
  if (P->head_b && put(L, P->head_b, hb, 0)) return L->err->rc;
  net->head_w = hw;
  net->head_b = hb;
  if (parse_vec(L, "input_mean", net->n_in, 0, im, &present[0]) ||
      parse_vec(L, "input_std", net->n_in, 1, is, &present[1]) ||
      parse_vec(L, "output_mean", net->n_out, 0, om, &present[2]) ||
      parse_vec(L, "output_std", net->n_out, 1, os, &present[3])) {
    return L->err->rc;
  }
  net->in_mean = present[0] ? im : NULL;
  net->in_std = present[1] ? is : NULL;
  net->out_mean = present[2] ? om : NULL;
  net->out_std = present[3] ? os : NULL;
  return SQLITE_OK;
}

static int lay_out(loader *L, const plan *P, rnn_model *m, arena *a) {
  if (P->seed ? lay_out_seed(L, P, m, a) : lay_out_layers(L, P, m, a)) return L->err->rc;
  return lay_out_head(L, P, m, a);
}

/* Rules 5 and 7: size the arena (pass 1), allocate it zeroed (absent biases
** and padding are 0), convert every weight into it (pass 2). */
static int build_arena(loader *L, const plan *P, rnn_model *m) {
  arena count = {NULL, 0};
  lay_out(L, P, m, &count);
  if (count.used > RNN_MAX_PARAMS) {
    return rnn_err_set(L->err, "model needs %lld floats after padding, more than the limit %u", (long long)count.used,
                       RNN_MAX_PARAMS);
  }
  size_t bytes = (size_t)count.used * sizeof(float) + 64;
  m->arena_raw = sqlite3_malloc64(bytes);
  m->layers = sqlite3_malloc64(sizeof(rnn_layer) * (size_t)m->net.layers);
  if (!m->arena_raw || !m->layers) return rnn_err_nomem(L->err);
  memset(m->arena_raw, 0, bytes);
  memset(m->layers, 0, sizeof(rnn_layer) * (size_t)m->net.layers);
  m->arena = (float *)(((uintptr_t)m->arena_raw + 63) & ~(uintptr_t)63);
  m->net.layer = m->layers;
  arena carve = {m->arena, 0};
  if (lay_out(L, P, m, &carve)) return L->err->rc;
  assert(carve.used == count.used);
  return SQLITE_OK;
}

/* Metadata keys the loader reads (README "The model BLOB"); any other key is
** kept and reported by rnn_info() under "warnings". */
static const char *const known_keys[] = {
  "cell", "recurrent_prefix", "head_prefix", "output_activation", "hidden_activation", "readout",
  "input_mean", "input_std", "output_mean", "output_std", "vocab", "unknown_token", "labels",
  "output_names", "description",
  /* written by rnn_train (train.c) as a record of the training; not read */
  "train_options", "train_loss_history", "train_epochs", "train_best_epoch", "train_data_hash", "train_rows",
  "train_series",
};

/* Edit distance between a and b, or a value above `limit` once it cannot be
** within it (keys longer than 64 bytes are never close to a known key). */
static int edit_distance(const char *a, const char *b, int limit) {
  int la = (int)strlen(a), lb = (int)strlen(b), row[65];
  if (la > 64 || lb > 64 || abs(la - lb) > limit) return limit + 1;
  for (int j = 0; j <= lb; j++) row[j] = j;
  for (int i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = i;
    for (int j = 1; j <= lb; j++) {
      int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      diag = up;
      row[j] = best;
    }
  }
  return row[lb];
}

int rnn_meta_key_known(const char *key, const char **suggestion) {
  int best = 3;  /* suggest a known key at most 2 edits away, and at most a third of the key's length */
  *suggestion = NULL;
  for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]); i++) {
    if (strcmp(key, known_keys[i]) == 0) return 1;
    int d = edit_distance(key, known_keys[i], 2);
    if (d < best && 3 * d <= (int)strlen(key)) {
      best = d;
      *suggestion = known_keys[i];
    }
  }
  return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Rule 6: metadata `output_names`, one distinct non-empty string per output,
** kept as JSON string literals for the result objects (util.c) and rnn_info. */
static int parse_output_names(loader *L, rnn_model *m) {
  const char *v = meta(L, "output_names");
  rnn_json_doc d;
  rnn_err jerr = {SQLITE_OK, NULL}; /* not shown: the message below says what is expected */
  int rc = SQLITE_OK, n;
  if (!v) return SQLITE_OK;
  int r = rnn_json_parse(v, strlen(v), &d, &jerr);
  sqlite3_free(jerr.msg);
  if (r == SQLITE_NOMEM) return rnn_err_nomem(L->err);
  int ok = r == SQLITE_OK && d.nodes[0].type == RNN_JSON_ARRAY && d.nodes[0].n > 0;
  for (int i = ok ? d.nodes[0].child : -1; i >= 0; i = d.nodes[i].next) {
    if (d.nodes[i].type != RNN_JSON_STRING || d.nodes[i].n == 0) ok = 0;
  }
  if (r == SQLITE_OK && !ok) rnn_json_free(&d);
  if (!ok) return rnn_err_set(L->err, "__metadata__ output_names must be a JSON array of distinct non-empty strings");
  n = d.nodes[0].n;
  if (n != m->net.n_out) {
    rc = rnn_err_set(L->err, "__metadata__ output_names has %d names but the model has %d outputs", n, m->net.n_out);
    goto done;
  }
  sqlite3_str *s = sqlite3_str_new(NULL);
  for (int i = d.nodes[0].child; i >= 0; i = d.nodes[i].next) {
    rnn_json_string(s, d.nodes[i].str);
    sqlite3_str_appendchar(s, 1, '\0');
  }
  int len = sqlite3_str_length(s);
  m->names_text = sqlite3_str_finish(s);
  m->output_names = sqlite3_malloc64(sizeof(char *) * (size_t)n * 2);
  if (!m->names_text || !m->output_names || len == 0) {
    rc = rnn_err_nomem(L->err);
    goto done;
  }
  char **sorted = m->output_names + n;
  for (int i = 0, at = 0; i < n; i++) {
    m->output_names[i] = sorted[i] = m->names_text + at;
    at += (int)strlen(m->names_text + at) + 1;
  }
  qsort(sorted, (size_t)n, sizeof(char *), cmp_str);
  for (int i = 1; i < n && !rc; i++) {
    if (strcmp(sorted[i - 1], sorted[i]) == 0) {
      rc = rnn_err_set(L->err, "__metadata__ output_names has the name %s twice", sorted[i]);
    }
  }
  m->n_output_names = rc ? 0 : n;
done:
  rnn_json_free(&d);
  return rc;
}

int rnn_model_load(const unsigned char *blob, size_t n, rnn_model **out, rnn_err *err) {
  loader L;
  plan P;
  rnn_model *m = NULL;
  memset(&L, 0, sizeof(L));
  memset(&P, 0, sizeof(P));
  L.md = -1;
  L.err = err;
  *out = NULL;
  if (read_header(&L, blob, n)) goto fail;
  if (find_prefix(&L, &P)) goto fail;
  m = sqlite3_malloc64(sizeof(*m));
  if (!m) {
    rnn_err_nomem(err);
    goto fail;
  }
  memset(m, 0, sizeof(*m));
  m->unknown = -1;
  if (read_sizes(&L, &P, &m->net)) goto fail;
  if (parse_settings(&L, &P, &m->net)) goto fail;
  if (check_tensors(&L, &P, m)) goto fail;
  if (build_arena(&L, &P, m)) goto fail;
  m->net.k = rnn_kernels_pick();
  if (rnn_tokens_load(m, meta(&L, "vocab"), meta(&L, "labels"), meta(&L, "unknown_token"), err)) goto fail;
  if (parse_output_names(&L, m)) goto fail;
  {
    rnn_load_facts f;
    memset(&f, 0, sizeof(f));
    f.recurrent_prefix = P.prefix;
    f.head_prefix = P.has_head ? P.head : NULL;
    f.bias = P.bias;
    f.tensors = L.nt;
    for (int i = 0; i < L.nt; i++) f.dtype_count[L.t[i].dtype]++;
    f.doc = &L.doc;
    f.md = L.md;
    m->info = rnn_info_json(m, &f);
    if (!m->info) {
      rnn_err_nomem(err);
      goto fail;
    }
  }
  rnn_json_free(&L.doc);
  sqlite3_free(L.t);
  *out = m;
  return SQLITE_OK;

fail:
  rnn_json_free(&L.doc);
  sqlite3_free(L.t);
  rnn_model_free(m);
  return err->rc;
}

void rnn_model_free(rnn_model *m) {
  if (!m) return;
  sqlite3_free(m->arena_raw);
  sqlite3_free(m->layers);
  sqlite3_free(m->info);
  sqlite3_free(m->tok_block);
  sqlite3_free(m->output_names);
  sqlite3_free(m->names_text);
  sqlite3_free(m);
}

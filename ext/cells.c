/*
** cells.c: one step of every cell, the output head, and the choice of CPU path.
** Pure C: no SQLite types (see cells.h). The dense loops live in kern_body.h;
** what is here is O(H) per step and identical on every path.
**
** Rules kept:
**  1. Formulas and gate order are PyTorch's; GRU keeps b_hn inside r*(...), and
**     h' = (h - n)*z + n as ATen writes it.
**  2. Stacked layers read the new h of the layer below in the same step.
**  3. A step never allocates: all scratch is carved from the state's one block.
**  4. A state saved as bytes and loaded again continues bit for bit as if it had
**     never left memory: every float that a later step or output reads is kept.
*/
#include "cells.h"
#include "f32.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int imax(int a, int b) { return a > b ? a : b; }

/* Width of each scratch vector: gates, projections, outputs, and cat(input, h)
** for the widest layer input (I, or dirs * hout above layer 0). */
static size_t scratch_width(const rnn_net *n) {
  int in = imax(n->n_in, n->dirs * n->hout);
  return (size_t)imax(imax(n->ldg, n->ldp), imax(n->ldo, in + n->hout + RNN_LANES));
}

size_t rnn_state_floats(const rnn_net *n) {
  return (size_t)n->layers * (size_t)n->hout      /* h */
       + (size_t)n->layers * (size_t)n->hidden    /* c */
       + (size_t)n->ldo                           /* y */
       + scratch_width(n) * 5;                    /* x, xh, gi, gh, hn */
}

void rnn_state_init(const rnn_net *n, rnn_state *st, float *mem) {
  size_t wide = scratch_width(n);
  st->h = mem;
  mem += (size_t)n->layers * (size_t)n->hout;
  st->c = mem;
  mem += (size_t)n->layers * (size_t)n->hidden;
  st->y = mem;
  mem += n->ldo;
  st->x = mem;
  st->xh = mem + wide;
  st->gi = mem + 2 * wide;
  st->gh = mem + 3 * wide;
  st->hn = mem + 4 * wide;
  rnn_state_reset(n, st);
}

void rnn_state_reset(const rnn_net *n, rnn_state *st) {
  memset(st->h, 0, sizeof(float) * (size_t)n->layers * (size_t)n->hout);
  memset(st->c, 0, sizeof(float) * (size_t)n->layers * (size_t)n->hidden);
  memset(st->y, 0, sizeof(float) * (size_t)n->ldo);
  st->steps = 0;
}

/* ---- The state as bytes (layout in cells.h) ---- */

static size_t state_vec_floats(const rnn_net *n) {
  size_t f = (size_t)n->layers * (size_t)n->hout;
  if (n->cell == CELL_LSTM) f += (size_t)n->layers * (size_t)n->hidden;
  if (n->cell == CELL_SEED) f += (size_t)n->n_out;
  return f;
}

size_t rnn_state_blob_bytes(const rnn_net *n) { return RNN_STATE_HEADER + 4 * state_vec_floats(n); }

uint64_t rnn_fnv1a64(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3u;
  return h;
}

uint64_t rnn_model_hash(const unsigned char *p, size_t n) { return rnn_fnv1a64(RNN_FNV_BASIS, p, n); }

/* The state's vectors in BLOB order: h, then c (LSTM), then y (seed). */
static int state_parts(const rnn_net *n, const rnn_state *st, float **part, size_t *len) {
  int k = 0;
  part[k] = st->h;
  len[k++] = (size_t)n->layers * (size_t)n->hout;
  if (n->cell == CELL_LSTM) {
    part[k] = st->c;
    len[k++] = (size_t)n->layers * (size_t)n->hidden;
  }
  if (n->cell == CELL_SEED) {
    part[k] = st->y;
    len[k++] = (size_t)n->n_out;
  }
  return k;
}

void rnn_state_save(const rnn_net *n, const rnn_state *st, uint64_t model_hash, unsigned char *out) {
  float *part[3];
  size_t len[3];
  memcpy(out, RNN_STATE_MAGIC, 4);
  rnn_le32_put(out + 4, RNN_STATE_VERSION);
  rnn_le64_put(out + 8, model_hash);
  rnn_le64_put(out + 16, (uint64_t)st->steps);
  out += RNN_STATE_HEADER;
  int parts = state_parts(n, st, part, len);
  for (int p = 0; p < parts; p++) {
    for (size_t i = 0; i < len[p]; i++, out += 4) rnn_f32_put(out, part[p][i]);
  }
}

void rnn_state_load(const rnn_net *n, rnn_state *st, const unsigned char *in) {
  float *part[3];
  size_t len[3];
  rnn_state_reset(n, st);
  st->steps = (int64_t)rnn_le64_get(in + 16);
  in += RNN_STATE_HEADER;
  int parts = state_parts(n, st, part, len);
  for (int p = 0; p < parts; p++) {
    for (size_t i = 0; i < len[p]; i++, in += 4) part[p][i] = rnn_f32_get(in);
  }
}

/* PyTorch's relu (clamp_min(v, 0)): a NaN passes, and so does -0. */
static void relu(const float *v, float *out, int n) {
  for (int j = 0; j < n; j++) out[j] = v[j] < 0.0f ? 0.0f : v[j];
}

static void standardise(const rnn_net *n, const float *x, float *out) {
  for (int i = 0; i < n->n_in; i++) {
    float v = x[i];
    if (n->in_mean) v = v - n->in_mean[i];
    if (n->in_std) v = v / n->in_std[i];
    out[i] = v;
  }
}

static void seed_step(const rnn_net *n, rnn_state *st, const float *x) {
  const rnn_dir *d = &n->layer[0].dir[0];
  const int H = n->hidden;
  float *xh = st->x; /* cat(x_t, h_{t-1}) */
  standardise(n, x, xh);
  memcpy(xh + n->n_in, st->h, sizeof(float) * (size_t)H);
  memcpy(st->gi, d->bih, sizeof(float) * (size_t)n->ldg);
  n->k->gemv_t(st->gi, d->wih, n->ldg, xh, n->n_in + H, n->ldg);
  memcpy(st->y, n->seed_ob, sizeof(float) * (size_t)n->ldo);
  n->k->gemv_t(st->y, n->seed_o, n->ldo, xh, n->n_in + H, n->ldo);
  switch (n->hidden_act) {
    case ACT_TANH: n->k->tanh(st->gi, H); break;
    case ACT_SIGMOID: n->k->sigmoid(st->gi, H); break;
    case ACT_RELU: relu(st->gi, st->gi, H); break;
    default: break;
  }
  memcpy(st->h, st->gi, sizeof(float) * (size_t)H);
}

/* One step of one direction of one layer: h (hout) and c (H) in place, with
** st's gi/gh/hn as scratch. Hot: the gemvs dominate; the rest is O(H). */
static void cell_step(const rnn_net *n, const rnn_dir *d, const float *in, int in_n, float *h, float *c,
                      rnn_state *st) {
  const int H = n->hidden, hout = n->hout;
  float *gi = st->gi, *gh = st->gh;
  if (n->cell == CELL_GRU) {
    /* r and n need W_hn h + b_hn apart from the input side: two products */
    memcpy(gi, d->bih, sizeof(float) * (size_t)n->ldg);
    n->k->gemv_t(gi, d->wih, n->ldg, in, in_n, n->ldg);
    memcpy(gh, d->bhh, sizeof(float) * (size_t)n->ldg);
    n->k->gemv_t(gh, d->whh, n->ldg, h, hout, n->ldg);
  } else {
    /* gates = (b_ih + b_hh) + [W_ih; W_hh] cat(in, h): one pass over one block */
    memcpy(st->xh, in, sizeof(float) * (size_t)in_n);
    memcpy(st->xh + in_n, h, sizeof(float) * (size_t)hout);
    memcpy(gi, d->bsum, sizeof(float) * (size_t)n->ldg);
    n->k->gemv_t(gi, d->wih, n->ldg, st->xh, in_n + hout, n->ldg);
  }
  switch (n->cell) {
    case CELL_RNN_TANH:
      n->k->tanh(gi, H);
      memcpy(h, gi, sizeof(float) * (size_t)H);
      break;
    case CELL_RNN_RELU: relu(gi, h, H); break;
    case CELL_LSTM:
      if (d->whr) {
        n->k->lstm(gi, c, gh, H);
        memset(st->hn, 0, sizeof(float) * (size_t)n->ldp);
        n->k->gemv_t(st->hn, d->whr, n->ldp, gh, H, n->ldp);
        memcpy(h, st->hn, sizeof(float) * (size_t)hout);
      } else {
        n->k->lstm(gi, c, h, H);
      }
      break;
    case CELL_GRU:
      n->k->gru(gi, gh, h, H);
      break;
    default: break;
  }
}

void rnn_step(const rnn_net *n, rnn_state *st, const float *x) {
  const int H = n->hidden, hout = n->hout;
  st->steps++;
  if (n->cell == CELL_SEED) {
    seed_step(n, st, x);
    return;
  }
  standardise(n, x, st->x);
  for (int l = 0; l < n->layers; l++) {
    const float *in = l == 0 ? st->x : st->h + (size_t)(l - 1) * hout;
    cell_step(n, &n->layer[l].dir[0], in, n->layer[l].in, st->h + (size_t)l * hout, st->c + (size_t)l * H, st);
  }
}

const float *rnn_last_hidden(const rnn_net *n, const rnn_state *st) {
  return st->h + (size_t)(n->layers - 1) * n->hout;
}

/* Activation and de-standardisation of the head output v[0..O) into out. */
static void finish(const rnn_net *n, float *v, float *out) {
  const int O = n->n_out;
  switch (n->out_act) {
    case ACT_SIGMOID: n->k->sigmoid(v, O); break;
    case ACT_TANH: n->k->tanh(v, O); break;
    case ACT_SOFTMAX:
    case ACT_LOG_SOFTMAX: {
      /* libm here is fine: this runs once per output, on every path alike */
      float mx = v[0];
      for (int i = 1; i < O; i++) mx = v[i] > mx ? v[i] : mx;
      double sum = 0.0;
      for (int i = 0; i < O; i++) sum += exp((double)v[i] - mx);
      for (int i = 0; i < O; i++) {
        double z = (double)v[i] - mx;
        v[i] = n->out_act == ACT_SOFTMAX ? (float)(exp(z) / sum) : (float)(z - log(sum));
      }
      break;
    }
    default: break;
  }
  for (int i = 0; i < O; i++) {
    float x = v[i];
    if (n->out_std) x = x * n->out_std[i];
    if (n->out_mean) x = x + n->out_mean[i];
    out[i] = x;
  }
}

/* head(h) (or h itself without a head) into scratch[0..O); h has hn floats. */
static void head(const rnn_net *n, const float *h, int hn, float *scratch) {
  if (n->head_w) {
    memcpy(scratch, n->head_b, sizeof(float) * (size_t)n->ldo);
    n->k->gemv_t(scratch, n->head_w, n->ldo, h, hn, n->ldo);
  } else {
    memcpy(scratch, h, sizeof(float) * (size_t)n->n_out);
  }
}

void rnn_output(const rnn_net *n, const rnn_state *st, float *out, float *scratch) {
  if (n->cell == CELL_SEED) memcpy(scratch, st->y, sizeof(float) * (size_t)n->n_out);
  else head(n, rnn_last_hidden(n, st), n->hout, scratch);
  finish(n, scratch, out);
}

/* ---- Bidirectional passes (see cells.h) ---- */

/* rnn_steps needs the last layer's backward h at every step, in forward order.
** Rather than keep all T of them, the first backward pass keeps the state that
** enters each segment of K steps (from its end) and segment 0's h; the others
** are recomputed from their state when the forward steps reach them: about one
** more backward pass, O(K + T/K) states with K ~ sqrt(T). */
#define BIDIR_SEG_MIN 4096

static int64_t bidir_seg(int64_t T) {
  int64_t k = 1;
  while (k * k < T) k++;
  k = k < BIDIR_SEG_MIN ? BIDIR_SEG_MIN : k;
  return k < T ? k : (T > 0 ? T : 1);
}

uint64_t rnn_bidir_seq_floats(const rnn_net *n, int64_t T, int last_only) {
  uint64_t f = 0, t = (uint64_t)T, hout = (uint64_t)n->hout;
  if (n->layers > 1) f += t * 2 * hout;              /* low */
  if (n->layers > 2) f += t * hout;                  /* the middle layers' backward h */
  if (!last_only) {
    uint64_t k = (uint64_t)bidir_seg(T), segs = (t + k - 1) / k;
    f += k * hout + segs * (hout + (uint64_t)n->hidden);   /* bwd, ckpt */
  }
  return f;
}

size_t rnn_bidir_floats(const rnn_net *n, int64_t T, int last_only) {
  return rnn_state_floats(n) + (size_t)n->ldo + 2 * (size_t)n->hidden
       + 8 * (size_t)n->hout /* h, bh, cat, fin, bwd[1], hn */ + (size_t)rnn_bidir_seq_floats(n, T, last_only);
}

/* Layer l's input at step t: the standardised features, or the layer below. */
static const float *bidir_in(const rnn_net *n, rnn_bidir *b, int l, int64_t t) {
  if (l > 0) return b->low + (size_t)t * 2 * (size_t)n->hout;
  standardise(n, b->xs + (size_t)t * n->n_in, b->st.x);
  return b->st.x;
}

/* Direction d of layer l from a zero state, `steps` steps from the start (d = 0)
** or the end (d = 1); h after step t goes to out[(t - base) * stride]. */
static int bidir_pass(const rnn_net *n, rnn_bidir *b, int l, int d, int64_t steps, int64_t base, float *out,
                      size_t stride, rnn_tick tick, void *arg) {
  const size_t hb = sizeof(float) * (size_t)n->hout;
  memset(b->h, 0, hb);
  memset(b->c, 0, sizeof(float) * (size_t)n->hidden);
  for (int64_t s = 0; s < steps; s++) {
    int64_t t = d == 0 ? s : b->T - 1 - s;
    cell_step(n, &n->layer[l].dir[d], bidir_in(n, b, l, t), n->layer[l].in, b->h, b->c, &b->st);
    memcpy(out + (size_t)(t - base) * stride, b->h, hb);
    int rc = tick ? tick(arg) : 0;
    if (rc) return rc;
  }
  return 0;
}

/* Layers 0..L-2 over the whole sequence into low[T][wid] = cat(forward, backward).
** Above layer 0 the forward pass overwrites its own input row by row (step t has
** read row t before it is written), so one [T][hout] buffer holds the backward h. */
static int bidir_lower(const rnn_net *n, rnn_bidir *b, float *tmp, rnn_tick tick, void *arg) {
  const size_t hout = (size_t)n->hout, wid = 2 * hout;
  for (int l = 0; l < n->layers - 1; l++) {
    int rc;
    if (l == 0) {
      if ((rc = bidir_pass(n, b, 0, 1, b->T, 0, b->low + hout, wid, tick, arg)) != 0) return rc;
      if ((rc = bidir_pass(n, b, 0, 0, b->T, 0, b->low, wid, tick, arg)) != 0) return rc;
      continue;
    }
    if ((rc = bidir_pass(n, b, l, 1, b->T, 0, tmp, hout, tick, arg)) != 0) return rc;
    if ((rc = bidir_pass(n, b, l, 0, b->T, 0, b->low, wid, tick, arg)) != 0) return rc;
    for (int64_t t = 0; t < b->T; t++) {
      memcpy(b->low + (size_t)t * wid + hout, tmp + (size_t)t * hout, sizeof(float) * hout);
    }
  }
  return 0;
}

/* The last layer's backward direction over the whole sequence, keeping the state
** entering each segment and segment 0's h (see BIDIR_SEG_MIN). */
static int bidir_backward(const rnn_net *n, rnn_bidir *b, rnn_tick tick, void *arg) {
  const int l = n->layers - 1;
  const size_t hout = (size_t)n->hout, H = (size_t)n->hidden;
  memset(b->h, 0, sizeof(float) * hout);
  memset(b->c, 0, sizeof(float) * H);
  for (int64_t t = b->T - 1; t >= 0; t--) {
    if (t == b->T - 1 || (t + 1) % b->seg == 0) {
      float *k = b->ckpt + (size_t)(t / b->seg) * (hout + H);
      memcpy(k, b->h, sizeof(float) * hout);
      memcpy(k + hout, b->c, sizeof(float) * H);
    }
    cell_step(n, &n->layer[l].dir[1], bidir_in(n, b, l, t), n->layer[l].in, b->h, b->c, &b->st);
    if (t < b->seg) memcpy(b->bwd + (size_t)t * hout, b->h, sizeof(float) * hout);
    int rc = tick ? tick(arg) : 0;
    if (rc) return rc;
  }
  memcpy(b->hn, b->h, sizeof(float) * hout);
  b->cached = 0;
  return 0;
}

/* Recompute segment j's backward h from the state entering it. */
static void bidir_segment(const rnn_net *n, rnn_bidir *b, int64_t j) {
  const int l = n->layers - 1;
  const size_t hout = (size_t)n->hout, H = (size_t)n->hidden;
  const float *k = b->ckpt + (size_t)j * (hout + H);
  int64_t lo = j * b->seg, hi = lo + b->seg < b->T ? lo + b->seg : b->T;
  memcpy(b->bh, k, sizeof(float) * hout);
  memcpy(b->bc, k + hout, sizeof(float) * H);
  for (int64_t t = hi - 1; t >= lo; t--) {
    cell_step(n, &n->layer[l].dir[1], bidir_in(n, b, l, t), n->layer[l].in, b->bh, b->bc, &b->st);
    memcpy(b->bwd + (size_t)(t - lo) * hout, b->bh, sizeof(float) * hout);
  }
  b->cached = j;
}

/* Carve the work area (sizes as rnn_bidir_floats). */
static void bidir_carve(const rnn_net *n, rnn_bidir *b, int64_t T, int last_only, float *work) {
  const size_t hout = (size_t)n->hout, H = (size_t)n->hidden;
  rnn_state_init(n, &b->st, work);
  work += rnn_state_floats(n);
  b->scratch = work;
  work += n->ldo;
  b->h = work;
  b->bh = work + hout;
  b->cat = work + 2 * hout;
  b->fin = work + 4 * hout;
  b->bwd = work + 6 * hout;
  b->hn = work + 7 * hout;
  work += 8 * hout;
  b->c = work;
  b->bc = work + H;
  work += 2 * H;
  b->low = NULL;
  if (n->layers > 1) {
    b->low = work;
    work += (size_t)T * 2 * hout;
  }
  b->tmp = work;
  if (n->layers > 2) work += (size_t)T * hout;
  b->seg = last_only ? 1 : bidir_seg(T);
  b->ckpt = NULL;
  if (!last_only) {
    b->bwd = work;
    b->ckpt = work + (size_t)b->seg * hout;
  }
  b->T = T;
  b->t = 0;
  b->cached = -1;
  b->last_only = last_only;
}

int rnn_bidir_begin(const rnn_net *n, rnn_bidir *b, const float *xs, int64_t T, int last_only, float *work,
                    rnn_tick tick, void *arg) {
  bidir_carve(n, b, T, last_only, work);
  b->xs = xs;
  if (T < 1) return 0;
  int rc = bidir_lower(n, b, b->tmp, tick, arg);
  if (rc) return rc;
  if (last_only && n->readout == READOUT_FINAL_STATES) {
    /* only h_n's backward half, after step 0: every step writes over it */
    b->bwd = b->hn;
    rc = bidir_pass(n, b, n->layers - 1, 1, T, 0, b->hn, 0, tick, arg);
  } else if (last_only) {
    rc = bidir_pass(n, b, n->layers - 1, 1, 1, T - 1, b->bwd, (size_t)n->hout, tick, arg);
  } else {
    rc = bidir_backward(n, b, tick, arg);
  }
  if (rc) return rc;
  memset(b->h, 0, sizeof(float) * (size_t)n->hout);
  memset(b->c, 0, sizeof(float) * (size_t)n->hidden);
  return 0;
}

void rnn_bidir_next(const rnn_net *n, rnn_bidir *b) {
  const int l = n->layers - 1;
  const size_t hb = sizeof(float) * (size_t)n->hout;
  int64_t t = b->t++, j = t / b->seg;
  if (!b->last_only && j != b->cached) bidir_segment(n, b, j);
  cell_step(n, &n->layer[l].dir[0], bidir_in(n, b, l, t), n->layer[l].in, b->h, b->c, &b->st);
  if (b->last_only && t != b->T - 1) return;
  memcpy(b->cat, b->h, hb);
  memcpy(b->cat + n->hout, b->bwd + (b->last_only ? 0 : (size_t)(t - j * b->seg) * (size_t)n->hout), hb);
}

void rnn_bidir_output(const rnn_net *n, rnn_bidir *b, float *out) {
  const float *h = b->cat;
  if (n->readout == READOUT_FINAL_STATES && b->t == b->T) {
    /* h_n = cat(forward_{T-1}, backward_0) */
    memcpy(b->fin, b->h, sizeof(float) * (size_t)n->hout);
    memcpy(b->fin + n->hout, b->hn, sizeof(float) * (size_t)n->hout);
    h = b->fin;
  }
  head(n, h, 2 * n->hout, b->scratch);
  finish(n, b->scratch, out);
}

int rnn_bidir_last(const rnn_net *n, const float *xs, int64_t T, float *out, float *work, rnn_tick tick, void *arg) {
  rnn_bidir b;
  int rc = rnn_bidir_begin(n, &b, xs, T, 1, work, tick, arg);
  if (rc) return rc;
  for (int64_t t = 0; t < T; t++) {
    rnn_bidir_next(n, &b);
    if (tick && (rc = tick(arg)) != 0) return rc;
  }
  rnn_bidir_output(n, &b, out);
  return 0;
}

/* CPU-path choice. A pure function of the CPU and the environment, read per model
** load, so there is no process-global state to guard. */
static int supported(const rnn_kernels *k) {
  if (!k->gemv_t) return 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (k == &rnn_kernels_avx512) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  }
  if (k == &rnn_kernels_avx2) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
#endif
  return k == &rnn_kernels_scalar;
}

const rnn_kernels *rnn_kernels_named(const char *name) {
  const rnn_kernels *all[] = {&rnn_kernels_avx512, &rnn_kernels_avx2, &rnn_kernels_scalar};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
    if (strcmp(all[i]->name, name) == 0) return supported(all[i]) ? all[i] : NULL;
  }
  return NULL;
}

const rnn_kernels *rnn_kernels_pick(void) {
  const char *force = getenv("SQLITE_RNN_KERNEL");
  if (force && *force) {
    const rnn_kernels *k = rnn_kernels_named(force);
    if (k) return k;
  }
  if (supported(&rnn_kernels_avx512)) return &rnn_kernels_avx512;
  if (supported(&rnn_kernels_avx2)) return &rnn_kernels_avx2;
  return &rnn_kernels_scalar;
}

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
*/
#include "cells.h"
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

size_t rnn_forward_floats(const rnn_net *n, int64_t T) {
  size_t f = rnn_state_floats(n) + (size_t)n->ldo;
  if (n->dirs == 2) {
    f += (size_t)T * (size_t)(4 * n->hout + n->n_in) + (size_t)n->hout + (size_t)n->hidden;
  }
  return f;
}

void rnn_forward(const rnn_net *n, const float *xs, int64_t T, float *outs, float *hid, float *work) {
  rnn_state st;
  const int I = n->n_in, O = n->n_out, hout = n->hout, wid = n->dirs * hout;
  rnn_state_init(n, &st, work);
  float *scratch = work + rnn_state_floats(n);
  if (n->dirs == 1) {
    for (int64_t t = 0; t < T; t++) {
      rnn_step(n, &st, xs + (size_t)t * I);
      if (outs) rnn_output(n, &st, outs + (size_t)t * O, scratch);
      if (hid) memcpy(hid + (size_t)t * hout, rnn_last_hidden(n, &st), sizeof(float) * (size_t)hout);
    }
    return;
  }
  /* Bidirectional: layer by layer over the whole sequence, PyTorch's
  ** output[t] = cat(forward_t, backward_t), the head applied per step. */
  float *buf[2], *xstd, *h, *c;
  buf[0] = scratch + n->ldo;
  buf[1] = buf[0] + (size_t)T * wid;
  xstd = buf[1] + (size_t)T * wid;
  h = xstd + (size_t)T * I;
  c = h + hout;
  for (int64_t t = 0; t < T; t++) standardise(n, xs + (size_t)t * I, xstd + (size_t)t * I);
  const float *in = xstd;
  int in_n = I;
  float *cur = buf[0];
  for (int l = 0; l < n->layers; l++) {
    cur = buf[l & 1];
    for (int d = 0; d < 2; d++) {
      memset(h, 0, sizeof(float) * (size_t)hout);
      memset(c, 0, sizeof(float) * (size_t)n->hidden);
      for (int64_t s = 0; s < T; s++) {
        int64_t t = d == 0 ? s : T - 1 - s;
        cell_step(n, &n->layer[l].dir[d], in + (size_t)t * in_n, in_n, h, c, &st);
        memcpy(cur + (size_t)t * wid + (size_t)d * hout, h, sizeof(float) * (size_t)hout);
      }
    }
    in = cur;
    in_n = wid;
  }
  for (int64_t t = 0; t < T; t++) {
    if (hid) memcpy(hid + (size_t)t * wid, cur + (size_t)t * wid, sizeof(float) * (size_t)wid);
    if (outs) {
      if (t == T - 1 && n->readout == READOUT_FINAL_STATES) {
        /* h_n: the backward direction ends at step 0 (cur is not read again) */
        memmove(cur + (size_t)t * wid + hout, cur + hout, sizeof(float) * (size_t)hout);
      }
      head(n, cur + (size_t)t * wid, wid, scratch);
      finish(n, scratch, outs + (size_t)t * O);
    }
  }
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

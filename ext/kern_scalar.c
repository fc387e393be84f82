/*
** kern_scalar.c: the portable path and the reference for the others: the SIMD
** paths (kern_avx2.c, kern_avx512.c) perform exactly these operations in this
** order, lane by lane, so every path gives the same bits.
**
**  1. The whole build uses -ffp-contract=off: only the fmaf() written here fuse.
**  2. Loops are elementwise across outputs; the order in which one output sums
**     its terms (k ascending) never depends on the vector width.
**  3. exp is our own polynomial (no libm exp), so every path rounds alike. The
**     error of tanh and sigmoid against libm is measured by tests/test_kernels.c.
*/
#include "cells.h"
#include <stdint.h>
#include <math.h>
#include <string.h>

/* y[0..m) += w^T x with w stored [n][ld]: each output sums k = 0..n-1 in order.
** Tiles of RNN_LANES outputs keep the weight reads contiguous. */
static void gemv_t_scalar(float *restrict y, const float *restrict w, int ld, const float *restrict x, int n,
                          int m) {
  for (int j = 0; j < m; j += RNN_LANES) {
    float acc[RNN_LANES];
    memcpy(acc, y + j, sizeof(acc));
    for (int k = 0; k < n; k++) {
      const float *wk = w + (size_t)k * (size_t)ld + j;
      for (int jj = 0; jj < RNN_LANES; jj++) acc[jj] = fmaf(wk[jj], x[k], acc[jj]);
    }
    memcpy(y + j, acc, sizeof(acc));
  }
}

/* exp(x) for float: x = n*ln2 + r, |r| <= ln2/2, e^r by its degree-7 Taylor
** polynomial (truncation < 3e-9 relative) evaluated by Estrin's scheme, times 2^n
** built in the exponent bits.
** Inputs are clamped to [-87, 88] so 2^n stays a normal float. */
static inline float exp1(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  float n = floorf(fmaf(x, 1.44269504088896341f, 0.5f));
  float r = fmaf(n, -0.693145751953125f, x);   /* ln2 split: hi has 16 bits */
  r = fmaf(n, -1.428606765330187045e-06f, r);  /* lo */
  /* Estrin's scheme: 3 FMAs deep instead of Horner's 7 (the activations sit on
  ** the recurrence's critical path, so latency is what counts) */
  float r2 = r * r, r4 = r2 * r2;
  float a = fmaf(1.0f, r, 1.0f), b = fmaf(1.0f / 6.0f, r, 0.5f);
  float c = fmaf(1.0f / 120.0f, r, 1.0f / 24.0f), d = fmaf(1.0f / 5040.0f, r, 1.0f / 720.0f);
  float p = fmaf(fmaf(d, r2, c), r4, fmaf(b, r2, a));
  int32_t e = ((int32_t)n + 127) << 23;
  float s;
  memcpy(&s, &e, sizeof(s));
  return p * s;
}

static inline float sig1(float v) { return 1.0f / (1.0f + exp1(-v)); }
/* tanh(v) = 1 - 2 / (e^{2v} + 1): saturates cleanly; error measured by the kernel test. */
static inline float tanh1(float v) { return 1.0f - 2.0f / (exp1(2.0f * v) + 1.0f); }

static void sigmoid_scalar(float *restrict y, int n) {
  for (int i = 0; i < n; i++) y[i] = sig1(y[i]);
}

static void tanh_scalar(float *restrict y, int n) {
  for (int i = 0; i < n; i++) y[i] = tanh1(y[i]);
}

/* PyTorch's LSTM cell: c = f*c + i*g, out = o*tanh(c); each product rounded. */
static void lstm_scalar(const float *restrict g, float *restrict c, float *restrict out, int H) {
  for (int j = 0; j < H; j++) {
    float i = sig1(g[j]), f = sig1(g[H + j]), gg = tanh1(g[2 * H + j]), o = sig1(g[3 * H + j]);
    float cj = f * c[j] + i * gg;
    c[j] = cj;
    out[j] = o * tanh1(cj);
  }
}

/* PyTorch's GRU cell: b_hn stays inside r*(...), h' = (h - n)*z + n as ATen writes it. */
static void gru_scalar(const float *restrict gi, const float *restrict gh, float *restrict h, int H) {
  for (int j = 0; j < H; j++) {
    float r = sig1(gi[j] + gh[j]), z = sig1(gi[H + j] + gh[H + j]);
    float nn = tanh1(gi[2 * H + j] + r * gh[2 * H + j]);
    h[j] = (h[j] - nn) * z + nn;
  }
}

const rnn_kernels rnn_kernels_scalar = {"scalar", gemv_t_scalar, sigmoid_scalar, tanh_scalar, lstm_scalar,
                                        gru_scalar};

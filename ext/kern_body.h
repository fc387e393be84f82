/*
** kern_body.h: every kernel written once, over the vector operations of
** kern_simd.h. Each kern_*.c defines its instruction set, includes this file and
** is compiled with that set's flags, so each path is this text at its width.
** The run-time choice among the paths stays in cells.c (cpuid), never -march.
**
** Rules kept (they make every path give the same bits, tests/test_kernels.c
** checks it):
**  1. The whole build uses -ffp-contract=off: only the VFMA written here fuse.
**  2. Loops run across outputs; each output sums its terms k = 0..n-1 in order,
**     whatever the vector width, the tile or the number of rows in a product.
**  3. exp is our own polynomial (no libm exp), so every path rounds alike. The
**     error of tanh and sigmoid against libm is measured by tests/test_kernels.c.
**  4. Non-finite values, as PyTorch: a NaN in gives NaN out of every activation;
**     +-Inf and huge values saturate (tanh to +-1, sigmoid to 1 and, below -87,
**     to 6.05e-39, where PyTorch reaches 0 below -88.7).
*/
#ifndef RNN_KERN_BODY_H
#define RNN_KERN_BODY_H
#include "cells.h"
#include "kern_simd.h"

#if defined(__GNUC__) || defined(__clang__)
#define KERN_INLINE static inline __attribute__((always_inline))
#define KERN_UNROLL _Pragma("GCC unroll 16")
#else
#define KERN_INLINE static inline
#define KERN_UNROLL
#endif

/* exp(x) = 2^n e^r, x = n*ln2 + r, |r| <= ln2/2. The input is clamped to
** [EXP_LO, EXP_HI] so 2^n stays a normal float (a NaN passes the clamp);
** ln2 is split so n*ln2 is exact: LN2_HI has 16 significant bits. */
#define EXP_LO (-87.0f)
#define EXP_HI 88.0f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693145751953125f
#define LN2_LO 1.428606765330187045e-06f

/* e^x[i] for i < nx (a constant after inlining), in place: e^r by its
** degree-7 Taylor polynomial (truncation < 3e-9 relative) in Estrin's scheme,
** 3 FMAs deep instead of Horner's 7, since the activations sit on the
** recurrence's critical path and latency is what counts. Each operation runs
** for all nx vectors before the next, so the nx independent chains are in
** flight together; every lane takes the same operations as alone. */
#define EXP_MAXN 4
KERN_INLINE void vexp_n(vf *x, const int nx) {
  vf n[EXP_MAXN], r[EXP_MAXN], r2[EXP_MAXN], p[EXP_MAXN];
  KERN_UNROLL for (int i = 0; i < nx; i++) x[i] = VMIN(VSET1(EXP_HI), VMAX(VSET1(EXP_LO), x[i]));
  KERN_UNROLL for (int i = 0; i < nx; i++) n[i] = VFLOOR(VFMA(x[i], VSET1(LOG2E), VSET1(0.5f)));
  KERN_UNROLL for (int i = 0; i < nx; i++) r[i] = VFMA(n[i], VSET1(-LN2_LO), VFMA(n[i], VSET1(-LN2_HI), x[i]));
  KERN_UNROLL for (int i = 0; i < nx; i++) r2[i] = VMUL(r[i], r[i]);
  KERN_UNROLL for (int i = 0; i < nx; i++) {
    vf a = VADD(r[i], VSET1(1.0f)) /* 1*r + 1: the same bits, on the adder */, b = VFMA(VSET1(1.0f / 6.0f), r[i], VSET1(0.5f));
    vf c = VFMA(VSET1(1.0f / 120.0f), r[i], VSET1(1.0f / 24.0f));
    vf d = VFMA(VSET1(1.0f / 5040.0f), r[i], VSET1(1.0f / 720.0f));
    p[i] = VFMA(VFMA(d, r2[i], c), VMUL(r2[i], r2[i]), VFMA(b, r2[i], a));
  }
  KERN_UNROLL for (int i = 0; i < nx; i++) x[i] = VMUL(p[i], VPOW2I(n[i]));
}

KERN_INLINE vf vexp(vf x) {
  vexp_n(&x, 1);
  return x;
}

KERN_INLINE vf vsigmoid(vf v) {
  const vf one = VSET1(1.0f);
  return VDIV(one, VADD(one, vexp(VSUB(VZERO(), v))));
}

/* tanh(v) = 1 - 2 / (e^{2v} + 1): saturates cleanly. 2v as v + v (the same
** bits as 2 * v, on the adder rather than the multiplier the exponential keeps
** busy). */
KERN_INLINE vf vtanh(vf v) {
  const vf one = VSET1(1.0f), two = VSET1(2.0f);
  return VSUB(one, VDIV(two, VADD(vexp(VADD(v, v)), one)));
}

/* Loads and stores of `left` lanes: all of them (left == KERN_W, a constant
** after inlining, so no mask is built) or the tail of an array. */
#define LOADL(p, left) ((left) == KERN_W ? VLOAD(p) : VLOADN(VMASK(left), p))
#define STOREL(p, left, v)                  \
  do {                                      \
    if ((left) == KERN_W) VSTORE(p, v);     \
    else VSTOREN(VMASK(left), p, v);        \
  } while (0)

/* Hot: the microkernel of every matrix product. For rows r < nr and the nv
** vectors of outputs at y: the accumulators start from src (a bias read by
** every row when lds is 0, else y's own rows), then add w[k*ld + j] * x1[r][k]
** for k < n1, then w[(n1 + k)*ld + j] * x2[r][k] for k < n2: one chain per
** output, k ascending, as over cat(x1[r], x2[r]). Input rows come by pointer,
** so rnn_scan reads its series' states where they live. nr x nv accumulators
** stay in registers (nr, nv are constants after inlining, the loops unrolled);
** each weight vector is read once for all nr rows, which is what a batched
** product gains. */
#define TILE_ROWS 4 /* most rows per tile of gemm_t: TILE_ROWS x nv accumulators fit the registers */
#define TILE_NV (KERN_NV_BIG > RNN_LANES / KERN_W ? KERN_NV_BIG : RNN_LANES / KERN_W)
#define ROWS_MAX (KERN_ROWS > TILE_ROWS ? KERN_ROWS : TILE_ROWS)
_Static_assert(KERN_ROWS_NV <= TILE_NV && KERN_ROWS_NV * KERN_W % RNN_LANES == 0,
               "gemm_rows: a tile's vectors fit acc and its columns keep m's multiple of RNN_LANES");
KERN_INLINE void rows_terms(vf (*acc)[TILE_NV], const float *w, int ld, const float *const *x, int n, const int nr,
                            const int nv) {
  const float *xr[ROWS_MAX];
  if (n <= 0) return; /* x may be NULL then */
  KERN_UNROLL for (int r = 0; r < nr; r++) xr[r] = x[r];
  for (int k = 0; k < n; k++) {
    const float *wk = w + (size_t)k * (size_t)ld;
    vf xk[ROWS_MAX];
    KERN_UNROLL for (int r = 0; r < nr; r++) xk[r] = VSET1(xr[r][k]);
    KERN_UNROLL for (int v = 0; v < nv; v++) {
      vf wv = VLOAD(wk + v * KERN_W);
      KERN_UNROLL for (int r = 0; r < nr; r++) acc[r][v] = VFMA(wv, xk[r], acc[r][v]);
    }
  }
}

KERN_INLINE void rows_tile(float *y, int ldy, const float *src, int lds, const float *w, int ld,
                           const float *const *x1, int n1, const float *const *x2, int n2, const int nr,
                           const int nv) {
  vf acc[ROWS_MAX][TILE_NV];
  KERN_UNROLL for (int r = 0; r < nr; r++) {
    KERN_UNROLL for (int v = 0; v < nv; v++) acc[r][v] = VLOAD(src + (size_t)r * lds + v * KERN_W);
  }
  rows_terms(acc, w, ld, x1, n1, nr, nv);
  rows_terms(acc, w + (size_t)n1 * (size_t)ld, ld, x2, n2, nr, nv);
  KERN_UNROLL for (int r = 0; r < nr; r++) {
    KERN_UNROLL for (int v = 0; v < nv; v++) VSTORE(y + (size_t)r * ldy + v * KERN_W, acc[r][v]);
  }
}

/* The same with x rows ldx apart, accumulating into y: y[r*ldy + j] += sum_k
** w[k*ld + j] * x[r*ldx + k], k ascending (gemv_t and gemm_t). */
KERN_INLINE void tile(float *y, int ldy, const float *w, int ld, const float *x, int ldx, int n, const int nr,
                      const int nv) {
  const float *xr[ROWS_MAX];
  KERN_UNROLL for (int r = 0; r < nr; r++) xr[r] = x + (size_t)r * ldx;
  rows_tile(y, ldy, y, ldy, w, ld, xr, n, NULL, 0, nr, nv);
}

/* y[0..m) += w^T x: tiles of KERN_NV_BIG vectors, then KERN_NV_MID, then
** RNN_LANES outputs (m is a multiple of RNN_LANES). */
static void gemv_t(float *restrict y, const float *restrict w, int ld, const float *restrict x, int n, int m) {
  int j = 0;
  for (; j + KERN_NV_BIG * KERN_W <= m; j += KERN_NV_BIG * KERN_W) tile(y + j, 0, w + j, ld, x, 0, n, 1, KERN_NV_BIG);
  for (; j + KERN_NV_MID * KERN_W <= m; j += KERN_NV_MID * KERN_W) tile(y + j, 0, w + j, ld, x, 0, n, 1, KERN_NV_MID);
  for (; j < m; j += RNN_LANES) tile(y + j, 0, w + j, ld, x, 0, n, 1, RNN_LANES / KERN_W);
}

/* The same product for `rows` inputs at once (x rows ldx apart, y rows ldy
** apart): blocks of TILE_ROWS rows share each weight load; row r's outputs are the
** bits gemv_t gives for x row r alone. */
/* Vectors per tile of gemm_t: TILE_ROWS x GEMM_NV accumulators plus TILE_ROWS
** broadcasts and a weight stay within the vector registers (32 zmm, 16 ymm). */
#define GEMM_NV (KERN_W == 16 ? 4 : RNN_LANES / KERN_W)
static void gemm_t(float *restrict y, int ldy, const float *restrict w, int ld, const float *restrict x, int ldx, int n,
                   int m, int rows) {
  const int full = rows - rows % TILE_ROWS;
  int j = 0;
  /* a block of columns outer, the row tiles inner: the block's weights are
  ** read from cache by every row tile */
  for (; j + GEMM_NV * KERN_W <= m; j += GEMM_NV * KERN_W) {
    for (int r = 0; r < full; r += TILE_ROWS) {
      tile(y + (size_t)r * ldy + j, ldy, w + j, ld, x + (size_t)r * ldx, ldx, n, TILE_ROWS, GEMM_NV);
    }
  }
  for (; j < m; j += RNN_LANES) {
    for (int r = 0; r < full; r += TILE_ROWS) {
      tile(y + (size_t)r * ldy + j, ldy, w + j, ld, x + (size_t)r * ldx, ldx, n, TILE_ROWS, RNN_LANES / KERN_W);
    }
  }
  for (int r = full; r < rows; r++) gemv_t(y + (size_t)r * ldy, w, ld, x + (size_t)r * ldx, n, m);
}

/* gemm_rows (cells.h), rnn_scan's batch products: rows_tile over the rows'
** pointers. The columns j .. j + nv*KERN_W of every row: tiles of KERN_ROWS rows, then of
** 4, 2 and 1 (nr stays a constant in each call, so every tile is unrolled). */
KERN_INLINE void rows_cols(float *y, int ldy, const float *src, int lds, const float *w, int ld,
                           const float *const *x1, int n1, const float *const *x2, int n2, int rows, const int nv) {
  int r = 0;
#define ROWS_RUN(NR)                                                                                           \
  for (; r + (NR) <= rows; r += (NR))                                                                          \
    rows_tile(y + (size_t)r * ldy, ldy, src + (size_t)r * lds, lds, w, ld, x1 + r, n1, x2 ? x2 + r : x2, n2, \
              NR, nv)
  ROWS_RUN(KERN_ROWS);
  ROWS_RUN(4);
  ROWS_RUN(2);
  ROWS_RUN(1);
#undef ROWS_RUN
}

static void gemm_rows(float *y, int ldy, const float *b, const float *w, int ld, const float *const *x1, int n1,
                      const float *const *x2, int n2, int m, int rows) {
  const float *src = b ? b : y;
  const int lds = b ? 0 : ldy;
  int j = 0;
  for (; j + KERN_ROWS_NV * KERN_W <= m; j += KERN_ROWS_NV * KERN_W) {
    rows_cols(y + j, ldy, src + j, lds, w + j, ld, x1, n1, x2, n2, rows, KERN_ROWS_NV);
  }
  for (; j < m; j += RNN_LANES) {
    rows_cols(y + j, ldy, src + j, lds, w + j, ld, x1, n1, x2, n2, rows, RNN_LANES / KERN_W);
  }
}

/* f applied to y[0..n) in place; the tail is masked. */
KERN_INLINE void map(float *restrict y, int n, vf (*f)(vf)) {
  int i = 0;
  for (; i + KERN_W <= n; i += KERN_W) VSTORE(y + i, f(VLOAD(y + i)));
  if (i < n) STOREL(y + i, n - i, f(LOADL(y + i, n - i)));
}

static void sigmoid(float *restrict y, int n) { map(y, n, vsigmoid); }
static void tanh_(float *restrict y, int n) { map(y, n, vtanh); }

/* PyTorch's LSTM cell at outputs j..j+left: c = f*c + i*g, out = o*tanh(c),
** each product rounded. The gates' four exponentials run together (vexp_n),
** each gate taking vsigmoid's or vtanh's operations. */
KERN_INLINE void lstm_at(const float *restrict g, float *restrict c, float *restrict out, int H, int j, int left) {
  const vf one = VSET1(1.0f), two = VSET1(2.0f);
  const vf gg = LOADL(g + 2 * H + j, left);
  vf e[4] = {VSUB(VZERO(), LOADL(g + j, left)), VSUB(VZERO(), LOADL(g + H + j, left)), VADD(gg, gg),
             VSUB(VZERO(), LOADL(g + 3 * H + j, left))};
  vexp_n(e, 4);
  vf i = VDIV(one, VADD(one, e[0])), f = VDIV(one, VADD(one, e[1]));
  vf t = VSUB(one, VDIV(two, VADD(e[2], one))), o = VDIV(one, VADD(one, e[3]));
  vf cj = VADD(VMUL(f, LOADL(c + j, left)), VMUL(i, t));
  STOREL(c + j, left, cj);
  STOREL(out + j, left, VMUL(o, vtanh(cj)));
}

static void lstm(const float *restrict g, float *restrict c, float *restrict out, int H) {
  int j = 0;
  for (; j + KERN_W <= H; j += KERN_W) lstm_at(g, c, out, H, j, KERN_W);
  if (j < H) lstm_at(g, c, out, H, j, H - j);
}

/* PyTorch's GRU cell at outputs j..j+left: b_hn stays inside r*(...), and
** h' = (h - n)*z + n as ATen writes it. */
KERN_INLINE void gru_at(const float *restrict gi, const float *restrict gh, float *restrict h, int H, int j,
                        int left) {
  const vf one = VSET1(1.0f);
  vf e[2] = {VSUB(VZERO(), VADD(LOADL(gi + j, left), LOADL(gh + j, left))),
             VSUB(VZERO(), VADD(LOADL(gi + H + j, left), LOADL(gh + H + j, left)))};
  vexp_n(e, 2); /* vsigmoid of both gates, their exponentials together */
  vf r = VDIV(one, VADD(one, e[0])), z = VDIV(one, VADD(one, e[1]));
  vf nn = vtanh(VADD(LOADL(gi + 2 * H + j, left), VMUL(r, LOADL(gh + 2 * H + j, left))));
  STOREL(h + j, left, VADD(VMUL(VSUB(LOADL(h + j, left), nn), z), nn));
}

static void gru(const float *restrict gi, const float *restrict gh, float *restrict h, int H) {
  int j = 0;
  for (; j + KERN_W <= H; j += KERN_W) gru_at(gi, gh, h, H, j, KERN_W);
  if (j < H) gru_at(gi, gh, h, H, j, H - j);
}

const rnn_kernels KERN_FN(rnn_kernels) = {KERN_NAME, gemv_t, gemm_t, gemm_rows, sigmoid, tanh_, lstm, gru};

#endif

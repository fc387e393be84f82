/*
** kern_avx512.c: the AVX-512 path (built with -mavx512f -mfma), the same
** operations in the same order as kern_scalar.c, 16 lanes at a time, so results
** are bit-identical (tests/test_kernels.c checks it).
*/
#include "cells.h"
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>
#include <string.h>

/* Hot: y += w^T x over tiles of 128 outputs (8 independent FMA chains hide the
** 4-cycle latency), then 64, then 16. Each lane sums k = 0..n-1 in order. */
static void gemv_t_avx512(float *restrict y, const float *restrict w, int ld, const float *restrict x, int n,
                          int m) {
  int j = 0;
  for (; j + 128 <= m; j += 128) {
    __m512 a0 = _mm512_loadu_ps(y + j), a1 = _mm512_loadu_ps(y + j + 16), a2 = _mm512_loadu_ps(y + j + 32),
           a3 = _mm512_loadu_ps(y + j + 48), a4 = _mm512_loadu_ps(y + j + 64), a5 = _mm512_loadu_ps(y + j + 80),
           a6 = _mm512_loadu_ps(y + j + 96), a7 = _mm512_loadu_ps(y + j + 112);
    const float *wk = w + j;
    for (int k = 0; k < n; k++, wk += ld) {
      __m512 xk = _mm512_set1_ps(x[k]);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(wk), xk, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 16), xk, a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 32), xk, a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 48), xk, a3);
      a4 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 64), xk, a4);
      a5 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 80), xk, a5);
      a6 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 96), xk, a6);
      a7 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 112), xk, a7);
    }
    _mm512_storeu_ps(y + j, a0);
    _mm512_storeu_ps(y + j + 16, a1);
    _mm512_storeu_ps(y + j + 32, a2);
    _mm512_storeu_ps(y + j + 48, a3);
    _mm512_storeu_ps(y + j + 64, a4);
    _mm512_storeu_ps(y + j + 80, a5);
    _mm512_storeu_ps(y + j + 96, a6);
    _mm512_storeu_ps(y + j + 112, a7);
  }
  for (; j + 64 <= m; j += 64) {
    __m512 a0 = _mm512_loadu_ps(y + j), a1 = _mm512_loadu_ps(y + j + 16), a2 = _mm512_loadu_ps(y + j + 32),
           a3 = _mm512_loadu_ps(y + j + 48);
    const float *wk = w + j;
    for (int k = 0; k < n; k++, wk += ld) {
      __m512 xk = _mm512_set1_ps(x[k]);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(wk), xk, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 16), xk, a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 32), xk, a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(wk + 48), xk, a3);
    }
    _mm512_storeu_ps(y + j, a0);
    _mm512_storeu_ps(y + j + 16, a1);
    _mm512_storeu_ps(y + j + 32, a2);
    _mm512_storeu_ps(y + j + 48, a3);
  }
  for (; j < m; j += 16) {
    __m512 a0 = _mm512_loadu_ps(y + j);
    const float *wk = w + j;
    for (int k = 0; k < n; k++, wk += ld) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(wk), _mm512_set1_ps(x[k]), a0);
    _mm512_storeu_ps(y + j, a0);
  }
}

/* exp as in kern_scalar.c: clamp, n = floor(x*log2e + 0.5), r = x - n*ln2 in
** two parts, degree-7 Taylor polynomial, times 2^n. */
static inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                  _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693145751953125f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-1.428606765330187045e-06f), r);
  /* Estrin's scheme, as kern_scalar.c */
  __m512 r2 = _mm512_mul_ps(r, r), r4 = _mm512_mul_ps(r2, r2);
  __m512 a = _mm512_fmadd_ps(_mm512_set1_ps(1.0f), r, _mm512_set1_ps(1.0f));
  __m512 b = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 6.0f), r, _mm512_set1_ps(0.5f));
  __m512 c = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 120.0f), r, _mm512_set1_ps(1.0f / 24.0f));
  __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 5040.0f), r, _mm512_set1_ps(1.0f / 720.0f));
  __m512 p = _mm512_fmadd_ps(_mm512_fmadd_ps(d, r2, c), r4, _mm512_fmadd_ps(b, r2, a));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

static void sigmoid_avx512(float *restrict y, int n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(y + i);
    v = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    _mm512_storeu_ps(y + i, v);
  }
  if (i < n) {
    __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
    __m512 v = _mm512_maskz_loadu_ps(k, y + i);
    v = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    _mm512_mask_storeu_ps(y + i, k, v);
  }
}

static void tanh_avx512(float *restrict y, int n) {
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(y + i);
    v = _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(exp16(_mm512_mul_ps(two, v)), one)));
    _mm512_storeu_ps(y + i, v);
  }
  if (i < n) {
    __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
    __m512 v = _mm512_maskz_loadu_ps(k, y + i);
    v = _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(exp16(_mm512_mul_ps(two, v)), one)));
    _mm512_mask_storeu_ps(y + i, k, v);
  }
}

static inline __m512 sig16(__m512 v) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), v))));
}

static inline __m512 tanh16(__m512 v) {
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  return _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(exp16(_mm512_mul_ps(two, v)), one)));
}

/* As lstm_scalar, 16 lanes at a time; the last partial vector is masked. */
static void lstm_avx512(const float *restrict g, float *restrict c, float *restrict out, int H) {
  for (int j = 0; j < H; j += 16) {
    __mmask16 k = H - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (H - j)) - 1);
    __m512 i = sig16(_mm512_maskz_loadu_ps(k, g + j)), f = sig16(_mm512_maskz_loadu_ps(k, g + H + j));
    __m512 gg = tanh16(_mm512_maskz_loadu_ps(k, g + 2 * H + j)), o = sig16(_mm512_maskz_loadu_ps(k, g + 3 * H + j));
    __m512 cj = _mm512_add_ps(_mm512_mul_ps(f, _mm512_maskz_loadu_ps(k, c + j)), _mm512_mul_ps(i, gg));
    _mm512_mask_storeu_ps(c + j, k, cj);
    _mm512_mask_storeu_ps(out + j, k, _mm512_mul_ps(o, tanh16(cj)));
  }
}

/* As gru_scalar, 16 lanes at a time. */
static void gru_avx512(const float *restrict gi, const float *restrict gh, float *restrict h, int H) {
  for (int j = 0; j < H; j += 16) {
    __mmask16 k = H - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (H - j)) - 1);
    __m512 r = sig16(_mm512_add_ps(_mm512_maskz_loadu_ps(k, gi + j), _mm512_maskz_loadu_ps(k, gh + j)));
    __m512 z = sig16(_mm512_add_ps(_mm512_maskz_loadu_ps(k, gi + H + j), _mm512_maskz_loadu_ps(k, gh + H + j)));
    __m512 nn = tanh16(_mm512_add_ps(_mm512_maskz_loadu_ps(k, gi + 2 * H + j),
                                     _mm512_mul_ps(r, _mm512_maskz_loadu_ps(k, gh + 2 * H + j))));
    __m512 hj = _mm512_maskz_loadu_ps(k, h + j);
    _mm512_mask_storeu_ps(h + j, k, _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(hj, nn), z), nn));
  }
}

const rnn_kernels rnn_kernels_avx512 = {"avx512", gemv_t_avx512, sigmoid_avx512, tanh_avx512, lstm_avx512,
                                        gru_avx512};
#else
const rnn_kernels rnn_kernels_avx512 = {"avx512", 0, 0, 0, 0, 0};
#endif

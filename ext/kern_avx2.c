/*
** kern_avx2.c: the AVX2+FMA path (built with -mavx2 -mfma), the same operations
** in the same order as kern_scalar.c, 8 lanes at a time, so results are
** bit-identical (tests/test_kernels.c checks it).
*/
#include "cells.h"
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <string.h>

/* Hot: y += w^T x over tiles of 64 outputs (8 independent FMA chains), then 16
** (m is a multiple of 16). Each lane sums k = 0..n-1 in order. */
static void gemv_t_avx2(float *restrict y, const float *restrict w, int ld, const float *restrict x, int n, int m) {
  int j = 0;
  for (; j + 64 <= m; j += 64) {
    __m256 a0 = _mm256_loadu_ps(y + j), a1 = _mm256_loadu_ps(y + j + 8), a2 = _mm256_loadu_ps(y + j + 16),
           a3 = _mm256_loadu_ps(y + j + 24), a4 = _mm256_loadu_ps(y + j + 32), a5 = _mm256_loadu_ps(y + j + 40),
           a6 = _mm256_loadu_ps(y + j + 48), a7 = _mm256_loadu_ps(y + j + 56);
    const float *wk = w + j;
    for (int k = 0; k < n; k++, wk += ld) {
      __m256 xk = _mm256_set1_ps(x[k]);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wk), xk, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wk + 8), xk, a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(wk + 16), xk, a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(wk + 24), xk, a3);
      a4 = _mm256_fmadd_ps(_mm256_loadu_ps(wk + 32), xk, a4);
      a5 = _mm256_fmadd_ps(_mm256_loadu_ps(wk + 40), xk, a5);
      a6 = _mm256_fmadd_ps(_mm256_loadu_ps(wk + 48), xk, a6);
      a7 = _mm256_fmadd_ps(_mm256_loadu_ps(wk + 56), xk, a7);
    }
    _mm256_storeu_ps(y + j, a0);
    _mm256_storeu_ps(y + j + 8, a1);
    _mm256_storeu_ps(y + j + 16, a2);
    _mm256_storeu_ps(y + j + 24, a3);
    _mm256_storeu_ps(y + j + 32, a4);
    _mm256_storeu_ps(y + j + 40, a5);
    _mm256_storeu_ps(y + j + 48, a6);
    _mm256_storeu_ps(y + j + 56, a7);
  }
  for (; j < m; j += 16) {
    __m256 a0 = _mm256_loadu_ps(y + j), a1 = _mm256_loadu_ps(y + j + 8);
    const float *wk = w + j;
    for (int k = 0; k < n; k++, wk += ld) {
      __m256 xk = _mm256_set1_ps(x[k]);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wk), xk, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wk + 8), xk, a1);
    }
    _mm256_storeu_ps(y + j, a0);
    _mm256_storeu_ps(y + j + 8, a1);
  }
}

/* exp as in kern_scalar.c (see there). */
static inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
  __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693145751953125f), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.428606765330187045e-06f), r);
  /* Estrin's scheme, as kern_scalar.c */
  __m256 r2 = _mm256_mul_ps(r, r), r4 = _mm256_mul_ps(r2, r2);
  __m256 a = _mm256_fmadd_ps(_mm256_set1_ps(1.0f), r, _mm256_set1_ps(1.0f));
  __m256 b = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 6.0f), r, _mm256_set1_ps(0.5f));
  __m256 c = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 120.0f), r, _mm256_set1_ps(1.0f / 24.0f));
  __m256 d = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 5040.0f), r, _mm256_set1_ps(1.0f / 720.0f));
  __m256 p = _mm256_fmadd_ps(_mm256_fmadd_ps(d, r2, c), r4, _mm256_fmadd_ps(b, r2, a));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 sig8(__m256 v) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
}

static inline __m256 tanh8(__m256 v) {
  const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
  return _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(exp8(_mm256_mul_ps(two, v)), one)));
}

/* The tail goes through a small buffer: AVX2 has no masked float loads that
** are cheaper than this for the few elements left. */
static void sigmoid_avx2(float *restrict y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, sig8(_mm256_loadu_ps(y + i)));
  if (i < n) {
    float t[8] = {0};
    memcpy(t, y + i, sizeof(float) * (size_t)(n - i));
    _mm256_storeu_ps(t, sig8(_mm256_loadu_ps(t)));
    memcpy(y + i, t, sizeof(float) * (size_t)(n - i));
  }
}

static void tanh_avx2(float *restrict y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, tanh8(_mm256_loadu_ps(y + i)));
  if (i < n) {
    float t[8] = {0};
    memcpy(t, y + i, sizeof(float) * (size_t)(n - i));
    _mm256_storeu_ps(t, tanh8(_mm256_loadu_ps(t)));
    memcpy(y + i, t, sizeof(float) * (size_t)(n - i));
  }
}

/* Lanes j..j+7 below H: a mask for maskload/maskstore, which never touch the
** memory of masked-off lanes. */
static inline __m256i lanes(int left) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* As lstm_scalar, 8 lanes at a time. */
static void lstm_avx2(const float *restrict g, float *restrict c, float *restrict out, int H) {
  for (int j = 0; j < H; j += 8) {
    __m256i k = lanes(H - j);
    __m256 i = sig8(_mm256_maskload_ps(g + j, k)), f = sig8(_mm256_maskload_ps(g + H + j, k));
    __m256 gg = tanh8(_mm256_maskload_ps(g + 2 * H + j, k)), o = sig8(_mm256_maskload_ps(g + 3 * H + j, k));
    __m256 cj = _mm256_add_ps(_mm256_mul_ps(f, _mm256_maskload_ps(c + j, k)), _mm256_mul_ps(i, gg));
    _mm256_maskstore_ps(c + j, k, cj);
    _mm256_maskstore_ps(out + j, k, _mm256_mul_ps(o, tanh8(cj)));
  }
}

/* As gru_scalar, 8 lanes at a time. */
static void gru_avx2(const float *restrict gi, const float *restrict gh, float *restrict h, int H) {
  for (int j = 0; j < H; j += 8) {
    __m256i k = lanes(H - j);
    __m256 r = sig8(_mm256_add_ps(_mm256_maskload_ps(gi + j, k), _mm256_maskload_ps(gh + j, k)));
    __m256 z = sig8(_mm256_add_ps(_mm256_maskload_ps(gi + H + j, k), _mm256_maskload_ps(gh + H + j, k)));
    __m256 nn = tanh8(_mm256_add_ps(_mm256_maskload_ps(gi + 2 * H + j, k),
                                    _mm256_mul_ps(r, _mm256_maskload_ps(gh + 2 * H + j, k))));
    __m256 hj = _mm256_maskload_ps(h + j, k);
    _mm256_maskstore_ps(h + j, k, _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(hj, nn), z), nn));
  }
}

const rnn_kernels rnn_kernels_avx2 = {"avx2", gemv_t_avx2, sigmoid_avx2, tanh_avx2, lstm_avx2, gru_avx2};
#else
const rnn_kernels rnn_kernels_avx2 = {"avx2", 0, 0, 0, 0, 0};
#endif

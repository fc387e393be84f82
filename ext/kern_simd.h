/*
** kern_simd.h: the vector operations the kernels are written in, mapped once per
** instruction set (ggml's simd-mappings idea). Included by kern_body.h only; the
** including .c file says which set by defining one of KERN_SCALAR, KERN_AVX2,
** KERN_AVX512 and is compiled with that set's flags (see the Makefile).
**
** Rules kept:
**  1. An operation means the same on every set, lane by lane, down to the bits,
**     NaN included; the scalar mapping is the definition:
**       VFMA(a, b, c)  a*b + c, rounded once
**       VMAX(a, b)     a > b ? a : b   (a NaN in either gives b: maxps's rule)
**       VMIN(a, b)     a < b ? a : b   (likewise minps)
**       VPOW2I(n)      2^n from an integral n in [-126, 127] by its exponent
**                      bits; a NaN n gives 1.0 (cvtps's 0x80000000, plus 127,
**                      shifted), so no path converts NaN to int.
**  2. KERN_W lanes per vector. VLOADN/VSTOREN touch lanes [0, left) only (left <
**     KERN_W) and read the others as 0: the tail of an array never reads or
**     writes past its end.
**  3. KERN_NV_BIG, KERN_NV_MID: vectors per tile of the matrix products, and
**     KERN_ROWS x KERN_ROWS_NV: rows x vectors per tile of gemm_rows (rnn_scan's
**     batch), chosen per set for its register count; they change speed, never
**     bits (each output sums its terms in the same order whatever the tile).
** A new set (e.g. NEON) is one more block here, a kern_<set>.c of a few lines,
** its flags in the Makefile and its cpu check in cells.c.
*/
#ifndef RNN_KERN_SIMD_H
#define RNN_KERN_SIMD_H
#include <stdint.h>
#include <string.h>

#if defined(KERN_SCALAR)
#include <math.h>
typedef float vf;
typedef int vmask;
#define KERN_W 1
#define KERN_FN(name) name##_scalar
#define KERN_NAME "scalar"
#define KERN_NV_BIG 16 /* 16 outputs: the weight reads stay contiguous */
#define KERN_NV_MID 16
#define KERN_ROWS 4
#define KERN_ROWS_NV 16
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VMASK(left) (left)
#define VLOADN(m, p) (*(p))
#define VSTOREN(m, p, v) (*(p) = (v))
#define VSET1(x) (x)
#define VZERO() 0.0f
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMUL(a, b) ((a) * (b))
#define VDIV(a, b) ((a) / (b))
#define VFMA(a, b, c) fmaf(a, b, c)
#define VMAX(a, b) ((a) > (b) ? (a) : (b))
#define VMIN(a, b) ((a) < (b) ? (a) : (b))
#define VFLOOR(a) floorf(a)
static inline float kern_pow2i(float n) {
  /* n is NaN only when the input was: converting it to int would be undefined */
  int32_t i = n == n ? (int32_t)n : INT32_MIN;
  uint32_t e = ((uint32_t)i + 127u) << 23;
  float s;
  memcpy(&s, &e, sizeof(s));
  return s;
}
#define VPOW2I(n) kern_pow2i(n)

#elif defined(KERN_AVX2)
#include <immintrin.h>
typedef __m256 vf;
typedef __m256i vmask;
#define KERN_W 8
#define KERN_FN(name) name##_avx2
#define KERN_NAME "avx2"
#define KERN_NV_BIG 8 /* 8 independent FMA chains hide the FMA latency */
#define KERN_NV_MID 2
#define KERN_ROWS 4 /* 4 x 2 accumulators, 4 broadcasts, a weight: 13 of 16 ymm */
#define KERN_ROWS_NV 2
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
/* lanes below left: maskload/maskstore never touch the memory of the others */
#define VMASK(left) _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOADN(m, p) _mm256_maskload_ps(p, m)
#define VSTOREN(m, p, v) _mm256_maskstore_ps(p, m, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO() _mm256_setzero_ps()
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VDIV(a, b) _mm256_div_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VMIN(a, b) _mm256_min_ps(a, b)
#define VFLOOR(a) _mm256_floor_ps(a)
#define VPOW2I(n) \
  _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))

#elif defined(KERN_AVX512)
#include <immintrin.h>
typedef __m512 vf;
typedef __mmask16 vmask;
#define KERN_W 16
#define KERN_FN(name) name##_avx512
#define KERN_NAME "avx512"
#define KERN_NV_BIG 8 /* 128 outputs: 8 FMA chains hide the 4-cycle latency */
#define KERN_NV_MID 4
/* 8 rows x 2 vectors: 16 accumulators, 8 broadcasts, 2 weights in 32 zmm; at
** batch 16, a few % faster than 4 x 4 or 6 x 4 (bench_kernels scan) */
#define KERN_ROWS 8
#define KERN_ROWS_NV 2
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VMASK(left) ((__mmask16)((1u << (left)) - 1u))
#define VLOADN(m, p) _mm512_maskz_loadu_ps(m, p)
#define VSTOREN(m, p, v) _mm512_mask_storeu_ps(p, m, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO() _mm512_setzero_ps()
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VDIV(a, b) _mm512_div_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VMIN(a, b) _mm512_min_ps(a, b)
#define VFLOOR(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define VPOW2I(n) \
  _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))

#else
#error "kern_simd.h: define KERN_SCALAR, KERN_AVX2 or KERN_AVX512 before including it"
#endif

#endif

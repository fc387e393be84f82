/*
** f32.h: the float32 rules every reader and writer of values shares.
**
**  1. A number is accepted as a float32 when it rounds to a finite float32
**     (round to nearest, as the (float) cast does): 3.4028235e+38, what numpy
**     and torch print for FLT_MAX, is finite; only values that round to
**     infinity (|x| >= FLT_MAX + half an ulp) and NaN are out of range.
**  2. float32 (and float64) BLOBs are little-endian whatever the host, read and written
**     byte by byte (BLOBs have no alignment); so are the integers of a state
**     BLOB's header (cells.h).
**  3. Rings of buffered rows have a power-of-two capacity; slot i after head
**     is (head + i) & (cap - 1).
*/
#ifndef RNN_F32_H
#define RNN_F32_H
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <assert.h>

/* Rule 1: FLT_MAX + 2^103, the midpoint between FLT_MAX and 2^128; the tie
** rounds to even, which is 2^128 (infinity), so the bound is exclusive. */
#define RNN_F32_ROUNDS_TO_INF 0x1.ffffffp+127

static inline int rnn_f32_finite(double d) { return fabs(d) < RNN_F32_ROUNDS_TO_INF; }

/* Rule 2. */
static inline float rnn_f32_get(const unsigned char *p) {
  uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline void rnn_f32_put(unsigned char *p, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  p[0] = (unsigned char)u;
  p[1] = (unsigned char)(u >> 8);
  p[2] = (unsigned char)(u >> 16);
  p[3] = (unsigned char)(u >> 24);
}

/* Rule 2 for float64 (F64 tensors; spotting float64 sequence BLOBs). */
static inline double rnn_f64_get(const unsigned char *p) {
  uint64_t u = 0;
  double d;
  for (int k = 7; k >= 0; k--) u = (u << 8) | p[k];
  memcpy(&d, &u, 8);
  return d;
}

/* Rule 2 for unsigned integers. */
static inline uint32_t rnn_le32_get(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void rnn_le32_put(unsigned char *p, uint32_t v) {
  for (int k = 0; k < 4; k++) p[k] = (unsigned char)(v >> (8 * k));
}

static inline uint64_t rnn_le64_get(const unsigned char *p) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; k--) v = v << 8 | p[k];
  return v;
}

static inline void rnn_le64_put(unsigned char *p, uint64_t v) {
  for (int k = 0; k < 8; k++) p[k] = (unsigned char)(v >> (8 * k));
}

/* Rule 3. */
static inline int64_t rnn_ring_at(int64_t head, int64_t i, int64_t cap) {
  assert(cap > 0 && (cap & (cap - 1)) == 0 && head >= 0 && head < cap && i >= 0 && i <= cap);
  return (head + i) & (cap - 1);
}
#endif

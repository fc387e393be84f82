/*
** st_models.h: small valid safetensors models built in C, for the C test hosts
** (tests/oom.c, tests/threads.c) and the fuzz targets (tests/fuzz/). The layout
** is the one tests/st.py writes: 8-byte little-endian header length, compact
** JSON header padded with spaces to a multiple of 8, then the F32 tensors in
** header order. Weights come from a fixed pseudo-random sequence in
** [-0.5, 0.5), so every build makes the same bytes.
**
**   size_t n;
**   unsigned char *m = stm_recurrent("gru", 1, 4, 1, 1, 0, NULL, 7, &n);  // GRU 1->4, head 1
**   sqlite3_bind_blob(st, 1, m, (int)n, SQLITE_STATIC);
**   ...
**   free(m);
**
** Memory comes from malloc, not sqlite3_malloc: the out-of-memory test must not
** count (or fail) the allocations of its own fixtures.
*/
#ifndef ST_MODELS_H
#define ST_MODELS_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct stm_tensor {
  char name[64];
  int rows, cols;         /* cols == 0: a 1-d tensor [rows] */
} stm_tensor;

/* safetensors bytes of tensors t[0..nt) (F32) with optional metadata, given as
** the inside of a JSON object ("\"cell\":\"gru\""). NULL if out of memory. */
static inline unsigned char *stm_build(const stm_tensor *t, int nt, const char *meta, uint32_t seed, size_t *len) {
  size_t cap = 64 + (size_t)nt * 160 + (meta ? strlen(meta) : 0), h = 0;
  uint64_t off = 0;
  char *hdr = malloc(cap + 8);
  if (!hdr) return NULL;
  h += (size_t)snprintf(hdr + h, cap - h, "{");
  if (meta && *meta) h += (size_t)snprintf(hdr + h, cap - h, "\"__metadata__\":{%s},", meta);
  for (int i = 0; i < nt; i++) {
    uint64_t numel = (uint64_t)t[i].rows * (uint64_t)(t[i].cols ? t[i].cols : 1);
    char shape[32];
    if (t[i].cols) snprintf(shape, sizeof(shape), "%d,%d", t[i].rows, t[i].cols);
    else snprintf(shape, sizeof(shape), "%d", t[i].rows);
    h += (size_t)snprintf(hdr + h, cap - h, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}",
                          i ? "," : "", t[i].name, shape, (unsigned long long)off,
                          (unsigned long long)(off + 4 * numel));
    off += 4 * numel;
  }
  h += (size_t)snprintf(hdr + h, cap - h, "}");
  while (h % 8) hdr[h++] = ' ';
  *len = 8 + h + (size_t)off;
  unsigned char *out = malloc(*len);
  if (!out) {
    free(hdr);
    return NULL;
  }
  for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(out + 8, hdr, h);
  free(hdr);
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < (size_t)off / 4; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    float f = (float)(x >> 8) / 16777216.0f - 0.5f;
    uint32_t u;
    memcpy(&u, &f, 4);
    unsigned char *p = out + 8 + h + 4 * i;
    p[0] = (unsigned char)u;
    p[1] = (unsigned char)(u >> 8);
    p[2] = (unsigned char)(u >> 16);
    p[3] = (unsigned char)(u >> 24);
  }
  return out;
}

/* A PyTorch state_dict as tests/models.py recurrent() writes it: cell rnn_tanh,
** rnn_relu, gru or lstm with I inputs, H hidden units and `layers` layers
** (bidirectional if bidir), plus a Linear head "fc." of `head` outputs if head > 0;
** or cell "seed", the tutorial RNN with i2h/i2o and `head` outputs. `meta` is
** extra metadata (inside of a JSON object) or NULL. */
static inline unsigned char *stm_recurrent(const char *cell, int I, int H, int layers, int head, int bidir,
                                           const char *meta, uint32_t seed, size_t *len) {
  stm_tensor t[4 * 2 * 8 + 2];
  int nt = 0;
  char md[1024];
  if (strcmp(cell, "seed") == 0) {
    t[nt++] = (stm_tensor){"i2h.weight", H, I + H};
    t[nt++] = (stm_tensor){"i2h.bias", H, 0};
    t[nt++] = (stm_tensor){"i2o.weight", head, I + H};
    t[nt++] = (stm_tensor){"i2o.bias", head, 0};
    snprintf(md, sizeof(md), "\"cell\":\"seed\"%s%s", meta ? "," : "", meta ? meta : "");
    return stm_build(t, nt, md, seed, len);
  }
  int G = strcmp(cell, "gru") == 0 ? 3 : strcmp(cell, "lstm") == 0 ? 4 : 1;
  int dirs = bidir ? 2 : 1;
  if (layers > 8) layers = 8;
  for (int k = 0; k < layers; k++) {
    for (int d = 0; d < dirs; d++) {
      const char *sfx = d ? "_reverse" : "";
      int in = k == 0 ? I : H * dirs;
      stm_tensor *p = &t[nt];
      snprintf(p[0].name, sizeof(p[0].name), "weight_ih_l%d%s", k, sfx);
      p[0].rows = G * H, p[0].cols = in;
      snprintf(p[1].name, sizeof(p[1].name), "weight_hh_l%d%s", k, sfx);
      p[1].rows = G * H, p[1].cols = H;
      snprintf(p[2].name, sizeof(p[2].name), "bias_ih_l%d%s", k, sfx);
      p[2].rows = G * H, p[2].cols = 0;
      snprintf(p[3].name, sizeof(p[3].name), "bias_hh_l%d%s", k, sfx);
      p[3].rows = G * H, p[3].cols = 0;
      nt += 4;
    }
  }
  if (head > 0) {
    t[nt++] = (stm_tensor){"fc.weight", head, H * dirs};
    t[nt++] = (stm_tensor){"fc.bias", head, 0};
  }
  int relu = strcmp(cell, "rnn_relu") == 0;
  snprintf(md, sizeof(md), "%s%s%s", relu ? "\"cell\":\"rnn_relu\"" : "", relu && meta ? "," : "",
           meta ? meta : "");
  return stm_build(t, nt, md, seed, len);
}
#endif

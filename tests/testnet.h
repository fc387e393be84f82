/*
** testnet.h: random networks laid out as ext/model.c lays them out, for the
** kernel test (tests/test_kernels.c) and the kernel benchmark
** (bench/bench_kernels.c). Header-only, static functions.
*/
#ifndef RNN_TESTNET_H
#define RNN_TESTNET_H
#include "../ext/cells.h"
#include <stdlib.h>
#include <string.h>

static uint32_t rng = 12345;
static float frand(void) {
  rng = rng * 1664525u + 1013904223u;
  return ((rng >> 8) / 16777216.0f - 0.5f);
}

static int round16(int n) { return (n + RNN_LANES - 1) / RNN_LANES * RNN_LANES; }

/* A random net with weights laid out as model.c lays them out. */
typedef struct { rnn_net net; rnn_layer layer[3]; float *mem; } test_net;

static float *fill(float **p, size_t n, int rows_used, int ld) {
  float *w = *p;
  *p += n;
  for (size_t i = 0; i < n; i++) w[i] = (ld && (int)(i % (size_t)ld) >= rows_used) ? 0.0f : frand();
  return w;
}

static void make_net(test_net *t, int cell, int I, int H, int layers, int proj, int O) {
  rnn_net *n = &t->net;
  memset(t, 0, sizeof(*t));
  int G = cell == CELL_LSTM ? 4 : cell == CELL_GRU ? 3 : 1;
  n->cell = cell;
  n->layers = cell == CELL_SEED ? 1 : layers;
  n->dirs = 1;
  n->n_in = I;
  n->hidden = H;
  n->proj = proj;
  n->hout = proj ? proj : H;
  n->gates = G;
  n->ldg = round16(G * H);
  n->ldp = proj ? round16(proj) : 0;
  n->n_out = O ? O : n->hout;
  n->ldo = round16(n->n_out);
  n->hidden_act = ACT_TANH;
  n->out_act = ACT_SIGMOID;
  n->layer = t->layer;
  t->mem = malloc(sizeof(float) * 4000000);
  float *p = t->mem;
  for (int l = 0; l < n->layers; l++) {
    rnn_dir *d = &t->layer[l].dir[0];
    int in = cell == CELL_SEED ? I + H : l == 0 ? I : n->hout;
    t->layer[l].in = in;
    d->wih = fill(&p, (size_t)in * n->ldg, G * H, n->ldg);
    d->whh = fill(&p, (size_t)n->hout * n->ldg, G * H, n->ldg);
    d->bih = fill(&p, n->ldg, G * H, n->ldg);
    d->bhh = fill(&p, n->ldg, G * H, n->ldg);
    float *bs = p;
    p += n->ldg;
    for (int j = 0; j < n->ldg; j++) bs[j] = d->bih[j] + d->bhh[j];
    d->bsum = bs;
    if (proj) d->whr = fill(&p, (size_t)H * n->ldp, proj, n->ldp);
  }
  if (cell == CELL_SEED) {
    n->seed_o = fill(&p, (size_t)(I + H) * n->ldo, n->n_out, n->ldo);
    n->seed_ob = fill(&p, n->ldo, n->n_out, n->ldo);
  } else if (O) {
    n->head_w = fill(&p, (size_t)n->hout * n->ldo, O, n->ldo);
    n->head_b = fill(&p, n->ldo, O, n->ldo);
  }
}

#endif

/*
** test_kernels.c: the cells and kernels alone, without SQLite (run by tests/test_kernels.py).
**
**  1. Every CPU path this machine supports gives bit-identical outputs and states
**     for every cell (rnn_tanh, rnn_relu, lstm with and without proj, gru, seed),
**     1-3 layers, hidden sizes that are and are not multiples of the vector width.
**  2. The vectorised tanh and sigmoid stay within a stated error of libm
**     (double precision) over [-30, 30], on every path.
**  3. gemv_t equals a plain double-precision reference within float rounding.
** Prints one line per check and `N passed, N failed`; exit status 1 on failure.
*/
#include "testnet.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
static void check(int ok, const char *what) {
  if (ok) passed++;
  else { failed++; printf("FAIL %s\n", what); }
}

/* Run T steps; returns a malloc'd buffer of T*(O + hout) floats. */
static float *run(const rnn_net *n, const float *xs, int T) {
  float *mem = malloc(sizeof(float) * rnn_state_floats(n));
  float *scratch = malloc(sizeof(float) * (size_t)n->ldo);
  float *res = malloc(sizeof(float) * (size_t)T * (size_t)(n->n_out + n->hout));
  rnn_state st;
  rnn_state_init(n, &st, mem);
  for (int t = 0; t < T; t++) {
    rnn_step(n, &st, xs + (size_t)t * n->n_in);
    float *r = res + (size_t)t * (n->n_out + n->hout);
    rnn_output(n, &st, r, scratch);
    memcpy(r + n->n_out, rnn_last_hidden(n, &st), sizeof(float) * (size_t)n->hout);
  }
  free(mem);
  free(scratch);
  return res;
}

int main(void) {
  const rnn_kernels *paths[3];
  int np = 0;
  const char *names[] = {"scalar", "avx2", "avx512"};
  for (int i = 0; i < 3; i++) {
    const rnn_kernels *k = rnn_kernels_named(names[i]);
    if (k) paths[np++] = k;
  }
  printf("paths:");
  for (int i = 0; i < np; i++) printf(" %s", paths[i]->name);
  printf("\n");
  check(np >= 1 && strcmp(paths[0]->name, "scalar") == 0, "scalar path available");

  /* 1. bit-identical across paths */
  static const struct { int cell, I, H, layers, proj, O; } cfg[] = {
    {CELL_RNN_TANH, 1, 16, 1, 0, 1}, {CELL_RNN_TANH, 5, 7, 2, 0, 0}, {CELL_RNN_RELU, 3, 64, 2, 0, 4},
    {CELL_LSTM, 1, 64, 1, 0, 1},     {CELL_LSTM, 8, 33, 3, 0, 2},    {CELL_LSTM, 4, 20, 2, 7, 3},
    {CELL_GRU, 1, 8, 1, 0, 1},       {CELL_GRU, 2, 100, 2, 0, 0},    {CELL_GRU, 1, 256, 1, 0, 1},
    {CELL_SEED, 10, 50, 1, 0, 6},    {CELL_LSTM, 1, 1, 1, 0, 0},     {CELL_GRU, 3, 1, 2, 0, 1},
  };
  const int T = 120;
  float *xs = malloc(sizeof(float) * T * 16);
  for (int i = 0; i < T * 16; i++) xs[i] = 3.0f * frand();
  for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
    test_net tn;
    make_net(&tn, cfg[c].cell, cfg[c].I, cfg[c].H, cfg[c].layers, cfg[c].proj, cfg[c].O);
    tn.net.k = paths[0];
    float *ref = run(&tn.net, xs, T);
    size_t bytes = sizeof(float) * (size_t)T * (size_t)(tn.net.n_out + tn.net.hout);
    for (int p = 1; p < np; p++) {
      char what[128];
      tn.net.k = paths[p];
      float *got = run(&tn.net, xs, T);
      snprintf(what, sizeof(what), "config %zu (cell %d H %d): %s bit-identical to scalar", c, cfg[c].cell,
               cfg[c].H, paths[p]->name);
      check(memcmp(got, ref, bytes) == 0, what);
      free(got);
    }
    int finite = 1;
    for (size_t i = 0; i < bytes / sizeof(float); i++) finite &= isfinite(ref[i]);
    check(finite, "outputs finite");
    free(ref);
    free(tn.mem);
  }

  /* 2. activation error against libm, stated in the README: tanh and sigmoid
  ** absolute error <= 2.5e-7 (float32 rounding of the result alone is 6e-8). */
  for (int p = 0; p < np; p++) {
    enum { N = 600001 };
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) a[i] = b[i] = -30.0f + 60.0f * (float)i / (N - 1);
    paths[p]->tanh(a, N);
    paths[p]->sigmoid(b, N);
    double et = 0, es = 0;
    for (int i = 0; i < N; i++) {
      double x = (double)(-30.0f + 60.0f * (float)i / (N - 1)); /* the float input, exactly */
      double dt = fabs(a[i] - tanh(x)), ds = fabs(b[i] - 1.0 / (1.0 + exp(-x)));
      et = dt > et ? dt : et;
      es = ds > es ? ds : es;
    }
    char what[128];
    printf("%s: max |tanh - libm| = %.3g, max |sigmoid - libm| = %.3g\n", paths[p]->name, et, es);
    snprintf(what, sizeof(what), "%s tanh error %.3g <= 2.5e-7", paths[p]->name, et);
    check(et <= 2.5e-7, what);
    snprintf(what, sizeof(what), "%s sigmoid error %.3g <= 2.5e-7", paths[p]->name, es);
    check(es <= 2.5e-7, what);
    free(a);
    free(b);
  }

  /* 3. gemv_t against a plain double reference */
  for (int p = 0; p < np; p++) {
    int n = 37, m = 80, ld = 80;
    float *w = malloc(sizeof(float) * n * ld), x[37], y[80];
    double worst = 0;
    for (int i = 0; i < n * ld; i++) w[i] = frand();
    for (int i = 0; i < n; i++) x[i] = frand();
    for (int j = 0; j < m; j++) y[j] = frand();
    double want[80];
    for (int j = 0; j < m; j++) {
      want[j] = y[j];
      for (int k = 0; k < n; k++) want[j] += (double)w[k * ld + j] * x[k];
    }
    paths[p]->gemv_t(y, w, ld, x, n, m);
    for (int j = 0; j < m; j++) worst = fmax(worst, fabs(y[j] - want[j]));
    char what[96];
    snprintf(what, sizeof(what), "%s gemv_t within 1e-5 of double reference (%.3g)", paths[p]->name, worst);
    check(worst <= 1e-5, what);
    free(w);
  }
  free(xs);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

/*
** test_kernels.c: the cells and kernels alone, without SQLite (run by tests/test_kernels.py).
**
**  1. Every CPU path this machine supports gives bit-identical outputs and states
**     for every cell (rnn_tanh, rnn_relu, lstm with and without proj, gru, seed),
**     1-3 layers, hidden sizes that are and are not multiples of the vector width.
**  2. The vectorised tanh and sigmoid stay within a stated error of libm
**     (double precision) over [-30, 30], on every path.
**  3. gemv_t equals a plain double-precision reference within float rounding.
**  4. Non-finite and huge values (NaN, +-Inf, +-FLT_MAX, past the exp clamp):
**     every path gives the same bits from every kernel, at every array length
**     (so every tail), and the activations follow PyTorch: NaN in, NaN out;
**     tanh(+-Inf) = +-1, sigmoid(+Inf) = 1, sigmoid(-Inf) ~ 0.
**  5. gemm_t: row r is bit for bit gemv_t of input row r, on every path.
**  6. Whole networks fed NaN, +-Inf and +-3e38: every path gives the same bits.
**  7. gemm_rows (rnn_scan's product): from a bias or from y, over two inputs
**     given by row pointers, bit for bit the old way (bias copied into y, the
**     inputs copied into cat rows, gemm_t), on every path, every row count 1..17.
**  8. sigmoid, tanh, lstm and gru on every path, bit for bit the formulas as
**     first written (ref_* below: one operation at a time, in scalar C), over
**     ordinary values, the clamp's edges and the specials, at every tail length:
**     the kernels may be rearranged for speed, never their bits.
** Prints one line per check and `N passed, N failed`; exit status 1 on failure.
*/
#include "testnet.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
static void check(int ok, const char *what) {
  if (ok) passed++;
  else { failed++; printf("FAIL %s\n", what); }
}

/* Inputs that stress the edges: NaN, infinities, the largest floats, values past
** the exp clamp [-87, 88], zeros of both signs, a subnormal, ordinary values.
** The NaN is x86's default NaN (-NAN: 0xffc00000), the one every invalid
** operation (Inf - Inf, 0 * Inf) makes, and so the only NaN a model with finite
** weights and inputs can hold: with it every path must give the same bits. */
static const float specials[] = {-NAN, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, 3e38f, -3e38f, 1e30f,
                                 -1e30f, 100.0f, -100.0f, 88.5f, -88.5f, 87.5f, -87.5f, 44.0f,
                                 -44.0f, 0.0f, -0.0f, 1e-40f, 0.5f, -0.5f, 3.0f, -3.0f, -NAN};
#define NSPECIAL ((int)(sizeof(specials) / sizeof(specials[0])))

/* n floats cycling through specials, starting at offset `at`. With `foreign`,
** every other NaN is +NAN (0x7fc00000): where two NaNs of different bits meet,
** which survives is the compiler's operand order, so those compare as NaN. */
static int foreign;
static void fill_specials(float *v, int n, int at) {
  for (int i = 0; i < n; i++) {
    v[i] = specials[(i + at) % NSPECIAL];
    if (foreign && isnan(v[i]) && (i & 1)) v[i] = NAN;
  }
}

/* Same bits; with `foreign` NaNs about, any two NaNs count as the same. */
static int same_floats(const float *a, const float *b, int n) {
  for (int i = 0; i < n; i++) {
    if (memcmp(a + i, b + i, sizeof(float)) != 0 && !(foreign && isnan(a[i]) && isnan(b[i]))) return 0;
  }
  return 1;
}

/* 4. sigmoid, tanh, lstm and gru of the specials, at every length 1..40 and
** every offset: the path's bits equal the scalar path's. */
static void check_nonfinite_paths(const rnn_kernels *ref, const rnn_kernels *k) {
  enum { MAXN = 40 };
  int same[4] = {1, 1, 1, 1};
  for (int n = 1; n <= MAXN; n++) {
    for (int at = 0; at < NSPECIAL; at++) {
      float a[4 * MAXN], b[4 * MAXN], g2[3 * MAXN], ca[MAXN], cb[MAXN], oa[MAXN], ob[MAXN];
      fill_specials(a, n, at);
      memcpy(b, a, sizeof(float) * (size_t)n);
      ref->sigmoid(a, n);
      k->sigmoid(b, n);
      same[0] &= same_floats(a, b, n);
      fill_specials(a, n, at);
      memcpy(b, a, sizeof(float) * (size_t)n);
      ref->tanh(a, n);
      k->tanh(b, n);
      same[1] &= same_floats(a, b, n);
      fill_specials(a, 4 * n, at);
      fill_specials(ca, n, at + 7);
      memcpy(cb, ca, sizeof(float) * (size_t)n);
      ref->lstm(a, ca, oa, n);
      k->lstm(a, cb, ob, n);
      same[2] &= same_floats(ca, cb, n) && same_floats(oa, ob, n);
      fill_specials(g2, 3 * n, at + 3);
      fill_specials(ca, n, at + 11);
      memcpy(cb, ca, sizeof(float) * (size_t)n);
      ref->gru(a, g2, ca, n);
      k->gru(a, g2, cb, n);
      same[3] &= same_floats(ca, cb, n);
    }
  }
  static const char *const what[] = {"sigmoid", "tanh", "lstm", "gru"};
  for (int i = 0; i < 4; i++) {
    char msg[128];
    snprintf(msg, sizeof(msg), "%s %s of NaN/Inf/huge values %s scalar", k->name, what[i],
             foreign ? "(foreign NaNs too) as" : "bit-identical to");
    check(same[i], msg);
  }
}

/* 4. What the activations give for the specials (PyTorch's answers). */
static void check_nonfinite_values(const rnn_kernels *k) {
  float s[NSPECIAL], t[NSPECIAL];
  fill_specials(s, NSPECIAL, 0);
  fill_specials(t, NSPECIAL, 0);
  k->sigmoid(s, NSPECIAL);
  k->tanh(t, NSPECIAL);
  int ok = 1;
  for (int i = 0; i < NSPECIAL; i++) {
    float x = specials[i];
    if (isnan(x)) ok &= isnan(s[i]) && isnan(t[i]);
    else ok &= s[i] >= 0.0f && s[i] <= 1.0f && t[i] >= -1.0f && t[i] <= 1.0f;
    if (x >= 88.0f) ok &= s[i] == 1.0f && t[i] == 1.0f;
    if (x <= -88.0f) ok &= s[i] <= 6.1e-39f && t[i] == -1.0f;
  }
  char msg[128];
  snprintf(msg, sizeof(msg), "%s: NaN in gives NaN out; +-Inf and huge values saturate", k->name);
  check(ok, msg);
  /* an LSTM/GRU gate that is NaN makes the state NaN, as in PyTorch */
  float g[4] = {0.5f, 0.5f, NAN, 0.5f}, c = 1.0f, out, gi[3] = {0.1f, 0.2f, NAN}, gh[3] = {0, 0, 0}, h = 0.5f;
  k->lstm(g, &c, &out, 1);
  k->gru(gi, gh, &h, 1);
  snprintf(msg, sizeof(msg), "%s: a NaN gate gives NaN c, h and output", k->name);
  check(isnan(c) && isnan(out) && isnan(h), msg);
}

/* 5. gemm_t against gemv_t row by row (bits), with Inf and NaN in some rows. */
static void check_gemm(const rnn_kernels *k) {
  enum { N = 37, M = 160, ROWS = 9 };
  float *w = malloc(sizeof(float) * N * M), x[ROWS * N], y[ROWS * M], want[ROWS * M];
  for (int i = 0; i < N * M; i++) w[i] = frand();
  for (int i = 0; i < ROWS * N; i++) x[i] = frand();
  x[2 * N + 5] = INFINITY;
  x[7 * N + 1] = NAN;
  x[8 * N + 3] = -3e38f;
  int same = 1;
  for (int rows = 1; rows <= ROWS; rows++) {
    for (int m = RNN_LANES; m <= M; m += 48) {
      for (int i = 0; i < ROWS * M; i++) y[i] = want[i] = frand();
      for (int r = 0; r < rows; r++) k->gemv_t(want + r * M, w, M, x + r * N, N, m);
      k->gemm_t(y, M, w, M, x, N, N, m, rows);
      same &= memcmp(y, want, sizeof(y)) == 0;
    }
  }
  char msg[96];
  snprintf(msg, sizeof(msg), "%s gemm_t row r bit-identical to gemv_t of row r", k->name);
  check(same, msg);
  free(w);
}

/* 7. gemm_rows against copying the bias and cat(x1 row, x2 row), then gemm_t. */
static void check_gemm_rows(const rnn_kernels *k) {
  enum { N1 = 5, N2 = 40, N = N1 + N2, M = 272, ROWS = 17 };
  float *w = malloc(sizeof(float) * N * M), *y = malloc(sizeof(float) * ROWS * M);
  float *want = malloc(sizeof(float) * ROWS * M), *cat = malloc(sizeof(float) * ROWS * N);
  float *x1 = malloc(sizeof(float) * ROWS * 3 * N1), *x2 = malloc(sizeof(float) * ROWS * 2 * N2), b[M];
  const float *p1[ROWS], *p2[ROWS];
  for (int i = 0; i < N * M; i++) w[i] = frand();
  for (int i = 0; i < M; i++) b[i] = frand();
  for (int i = 0; i < ROWS * 3 * N1; i++) x1[i] = frand();
  for (int i = 0; i < ROWS * 2 * N2; i++) x2[i] = frand();
  x2[2 * N2 + 5] = INFINITY;
  x2[14 * N2 + 1] = NAN;
  x1[8 * 3 * N1 + 3] = -3e38f;
  b[17] = -INFINITY;
  for (int r = 0; r < ROWS; r++) { /* rows scattered, in no particular order: as the series' states lie */
    p1[r] = x1 + (size_t)((r * 7) % ROWS) * 3 * N1;
    p2[r] = x2 + (size_t)((r * 5 + 3) % ROWS) * 2 * N2;
  }
  int same = 1;
  for (int rows = 1; rows <= ROWS; rows++) {
    for (int m = RNN_LANES; m <= M; m += 64) {
      for (int variant = 0; variant < 3; variant++) { /* bias and two inputs; y and two; bias and x1 only */
        const int n2 = variant == 2 ? 0 : N2;
        for (int i = 0; i < ROWS * M; i++) y[i] = want[i] = frand();
        for (int r = 0; r < rows; r++) {
          if (variant != 1) memcpy(want + r * M, b, sizeof(float) * (size_t)m);
          memcpy(cat + r * N, p1[r], sizeof(float) * N1);
          memcpy(cat + r * N + N1, p2[r], sizeof(float) * N2);
        }
        k->gemm_t(want, M, w, M, cat, N, N1 + n2, m, rows);
        k->gemm_rows(y, M, variant == 1 ? NULL : b, w, M, p1, N1, n2 ? p2 : NULL, n2, m, rows);
        same &= memcmp(y, want, sizeof(float) * ROWS * M) == 0;
      }
    }
  }
  char msg[96];
  snprintf(msg, sizeof(msg), "%s gemm_rows bit-identical to bias copy, cat rows and gemm_t", k->name);
  check(same, msg);
  free(w);
  free(y);
  free(want);
  free(cat);
  free(x1);
  free(x2);
}

/* 8. The activations exactly as kern_body.h first wrote them, in scalar C (the
** scalar mapping of kern_simd.h: fmaf, floorf, the compare-and-pick max/min). */
static float ref_pow2i(float n) {
  int32_t i = n == n ? (int32_t)n : INT32_MIN;
  uint32_t e = ((uint32_t)i + 127u) << 23;
  float s;
  memcpy(&s, &e, sizeof(s));
  return s;
}
static float ref_exp(float x) {
  x = -87.0f > x ? -87.0f : x;
  x = 88.0f < x ? 88.0f : x;
  float n = floorf(fmaf(x, 1.44269504088896341f, 0.5f));
  float r = fmaf(n, -0.693145751953125f, x);
  r = fmaf(n, -1.428606765330187045e-06f, r);
  float r2 = r * r, r4 = r2 * r2;
  float a = fmaf(1.0f, r, 1.0f), b = fmaf(1.0f / 6.0f, r, 0.5f);
  float c = fmaf(1.0f / 120.0f, r, 1.0f / 24.0f), d = fmaf(1.0f / 5040.0f, r, 1.0f / 720.0f);
  float p = fmaf(fmaf(d, r2, c), r4, fmaf(b, r2, a));
  return p * ref_pow2i(n);
}
static float ref_sigmoid(float v) { return 1.0f / (1.0f + ref_exp(0.0f - v)); }
static float ref_tanh(float v) { return 1.0f - 2.0f / (ref_exp(2.0f * v) + 1.0f); }
static void ref_lstm(const float *g, float *c, float *out, int H) {
  for (int j = 0; j < H; j++) {
    float i = ref_sigmoid(g[j]), f = ref_sigmoid(g[H + j]), gg = ref_tanh(g[2 * H + j]);
    float o = ref_sigmoid(g[3 * H + j]);
    c[j] = f * c[j] + i * gg;
    out[j] = o * ref_tanh(c[j]);
  }
}
static void ref_gru(const float *gi, const float *gh, float *h, int H) {
  for (int j = 0; j < H; j++) {
    float r = ref_sigmoid(gi[j] + gh[j]), z = ref_sigmoid(gi[H + j] + gh[H + j]);
    float n = ref_tanh(gi[2 * H + j] + r * gh[2 * H + j]);
    h[j] = (h[j] - n) * z + n;
  }
}

/* Values for check 8: every third a special (the default NaN among them), the
** rest spread over [-100, 100] and packed about the clamp's edges. */
static void fill_mixed(float *v, int n, int at) {
  for (int i = 0; i < n; i++) {
    int k = i + at;
    float u = frand();
    v[i] = k % 3 == 0 ? specials[(k / 3) % NSPECIAL] : k % 3 == 1 ? 200.0f * u : 87.5f * (k & 8 ? 1 : -1) + 2.0f * u;
  }
}

static void check_activation_formulas(const rnn_kernels *k) {
  enum { MAXN = 70 };
  int same[4] = {1, 1, 1, 1};
  for (int n = 1; n <= MAXN; n++) {
    for (int at = 0; at < 12; at++) {
      float a[4 * MAXN], want[4 * MAXN], g2[3 * MAXN], c[MAXN], cw[MAXN], o[MAXN], ow[MAXN];
      fill_mixed(a, n, at);
      for (int i = 0; i < n; i++) want[i] = ref_sigmoid(a[i]);
      k->sigmoid(a, n);
      same[0] &= same_floats(a, want, n);
      fill_mixed(a, n, at);
      for (int i = 0; i < n; i++) want[i] = ref_tanh(a[i]);
      k->tanh(a, n);
      same[1] &= same_floats(a, want, n);
      fill_mixed(a, 4 * n, at);
      fill_mixed(c, n, at + 1);
      memcpy(cw, c, sizeof(float) * (size_t)n);
      ref_lstm(a, cw, ow, n);
      k->lstm(a, c, o, n);
      same[2] &= same_floats(c, cw, n) && same_floats(o, ow, n);
      fill_mixed(g2, 3 * n, at + 2);
      fill_mixed(c, n, at + 4);
      memcpy(cw, c, sizeof(float) * (size_t)n);
      ref_gru(a, g2, cw, n);
      k->gru(a, g2, c, n);
      same[3] &= same_floats(c, cw, n);
    }
  }
  static const char *const what[] = {"sigmoid", "tanh", "lstm", "gru"};
  for (int i = 0; i < 4; i++) {
    char msg[128];
    snprintf(msg, sizeof(msg), "%s %s bit-identical to its formula as first written", k->name, what[i]);
    check(same[i], msg);
  }
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

/* Every config of cfg on every path over xs[T][16]: bits equal to the scalar
** path's. variant 0 keeps make_net's activations and wants finite outputs;
** variants 1.. rotate the head and seed activations (fed non-finite inputs). */
static const struct { int cell, I, H, layers, proj, O; } cfg[] = {
  {CELL_RNN_TANH, 1, 16, 1, 0, 1}, {CELL_RNN_TANH, 5, 7, 2, 0, 0}, {CELL_RNN_RELU, 3, 64, 2, 0, 4},
  {CELL_LSTM, 1, 64, 1, 0, 1},     {CELL_LSTM, 8, 33, 3, 0, 2},    {CELL_LSTM, 4, 20, 2, 7, 3},
  {CELL_GRU, 1, 8, 1, 0, 1},       {CELL_GRU, 2, 100, 2, 0, 0},    {CELL_GRU, 1, 256, 1, 0, 1},
  {CELL_SEED, 10, 50, 1, 0, 6},    {CELL_LSTM, 1, 1, 1, 0, 0},     {CELL_GRU, 3, 1, 2, 0, 1},
};

static void check_nets(const rnn_kernels *const *paths, int np, const float *xs, int T, int variant) {
  static const int out_acts[] = {ACT_SIGMOID, ACT_TANH, ACT_SOFTMAX, ACT_LOG_SOFTMAX, ACT_NONE};
  static const int hidden_acts[] = {ACT_TANH, ACT_RELU, ACT_SIGMOID, ACT_NONE};
  for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
    test_net tn;
    make_net(&tn, cfg[c].cell, cfg[c].I, cfg[c].H, cfg[c].layers, cfg[c].proj, cfg[c].O);
    if (variant) {
      tn.net.out_act = out_acts[(c + (size_t)variant) % 5];
      tn.net.hidden_act = hidden_acts[(size_t)variant % 4];
    }
    tn.net.k = paths[0];
    float *ref = run(&tn.net, xs, T);
    size_t bytes = sizeof(float) * (size_t)T * (size_t)(tn.net.n_out + tn.net.hout);
    for (int p = 1; p < np; p++) {
      char what[128];
      tn.net.k = paths[p];
      float *got = run(&tn.net, xs, T);
      snprintf(what, sizeof(what), "%sconfig %zu (cell %d H %d): %s bit-identical to scalar",
               variant ? "non-finite inputs, " : "", c, cfg[c].cell, cfg[c].H, paths[p]->name);
      check(memcmp(got, ref, bytes) == 0, what);
      free(got);
    }
    if (!variant) {
      int finite = 1;
      for (size_t i = 0; i < bytes / sizeof(float); i++) finite &= isfinite(ref[i]);
      check(finite, "outputs finite");
    }
    free(ref);
    free(tn.mem);
  }
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
  const int T = 120;
  float *xs = malloc(sizeof(float) * T * 16);
  for (int i = 0; i < T * 16; i++) xs[i] = 3.0f * frand();
  check_nets(paths, np, xs, T, 0);

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

  /* 4, 5. non-finite values through each kernel; gemm_t */
  for (int p = 0; p < np; p++) {
    check_nonfinite_values(paths[p]);
    for (foreign = 0; p > 0 && foreign < 2; foreign++) check_nonfinite_paths(paths[0], paths[p]);
    foreign = 0;
    check_gemm(paths[p]);
    check_gemm_rows(paths[p]);
    check_activation_formulas(paths[p]);
  }

  /* 6. whole networks fed NaN, +-Inf, +-3e38 among ordinary values: a few
  ** steps apart, so states go non-finite at different times */
  for (int v = 1; v <= 4; v++) {
    for (int i = 0; i < T * 16; i++) xs[i] = 3.0f * frand();
    for (int i = v; i < T * 16; i += 97 + 13 * v) xs[i] = specials[(i / 7) % NSPECIAL];
    check_nets(paths, np, xs, T, v);
  }
  free(xs);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

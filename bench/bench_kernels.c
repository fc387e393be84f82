/*
** bench_kernels.c: ns per step of the cells alone (no SQLite), GFLOP/s, and the
** fraction of this core's FMA peak, measured in the same run. Part of `make bench`.
**
** FLOPs per step count the multiply-adds of the matrix-vector products (2 per
** weight) plus the head, as README "Performance" reports them.
** Usage: bench_kernels [path]   (path: scalar, avx2, avx512; default: best)
**        bench_kernels batch    the recurrence product alone at batch 16 (gemm_rows,
**                               as rnn_scan runs it), best path: GFLOP/s and of peak
**        bench_kernels scan [H] rnn_scan's arithmetic alone (scan_compute.c, one
**                               thread, no SQLite) over 1000 series x 1000 steps:
**                               CPU seconds and share of peak (only hidden size H)
*/
#include "../tests/testnet.h"
#include "../ext/scan.h"
#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The FMA peak of one core: 12 independent chains of vector FMAs, more than
** latency x throughput, so the FMA units never wait. */
#if defined(__x86_64__)
#define CHAINS(V, FMA)                                                                            \
  V a0 = c, a1 = c, a2 = c, a3 = c, a4 = c, a5 = c, a6 = c, a7 = c, a8 = c, a9 = c, a10 = c, a11 = c; \
  const long iters = 50000000;                                                                     \
  double t0 = now();                                                                               \
  for (long n = 0; n < iters; n++) {                                                               \
    a0 = FMA(a0, b, c); a1 = FMA(a1, b, c); a2 = FMA(a2, b, c); a3 = FMA(a3, b, c);                \
    a4 = FMA(a4, b, c); a5 = FMA(a5, b, c); a6 = FMA(a6, b, c); a7 = FMA(a7, b, c);                \
    a8 = FMA(a8, b, c); a9 = FMA(a9, b, c); a10 = FMA(a10, b, c); a11 = FMA(a11, b, c);            \
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));             \
    __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));           \
  }                                                                                                \
  double t = now() - t0

__attribute__((target("avx512f"))) static double peak_avx512(void) {
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  CHAINS(__m512, _mm512_fmadd_ps);
  return iters * 12.0 * 16 * 2 / t / 1e9;
}
__attribute__((target("avx2,fma"))) static double peak_avx2(void) {
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  CHAINS(__m256, _mm256_fmadd_ps);
  return iters * 12.0 * 8 * 2 / t / 1e9;
}
#endif

/* The gates product of one step for 16 series, [16][I+H] x [I+H][G*H], as
** rnn_scan's lockstep batch does it: from the bias, over each series' input and
** its h (read where the series' state keeps it). */
static void batch16(const rnn_kernels *k, double peak) {
  static const struct { const char *name; int G, H; } cases[] = {
    {"GRU", 3, 8}, {"LSTM", 4, 64}, {"LSTM", 4, 256}};
  printf("%-5s %3s %4s %5s %12s %10s %8s\n", "cell", "I", "H", "batch", "ns/product", "GFLOP/s", "of peak");
  for (int c = 0; c < 3; c++) {
    const int B = 16, H = cases[c].H, n = 1 + H, ld = (cases[c].G * H + 15) / 16 * 16;
    const int st = 8 * H; /* floats between two series' h, as rnn_state_floats spaces them */
    float *w = malloc(sizeof(float) * (size_t)n * ld), *x = malloc(sizeof(float) * (size_t)B * st);
    float *y = malloc(sizeof(float) * (size_t)B * ld), *b = malloc(sizeof(float) * (size_t)ld);
    const float *xi[16], *xh[16];
    for (int i = 0; i < n * ld; i++) w[i] = frand() * 0.01f;
    for (int i = 0; i < B * st; i++) x[i] = frand();
    for (int i = 0; i < ld; i++) b[i] = frand();
    for (int r = 0; r < B; r++) {
      xi[r] = x + (size_t)r * st;
      xh[r] = xi[r] + 1;
    }
    long reps = 2000000000L / (2L * B * n * ld) + 10;
    for (long r = 0; r < reps / 10; r++) k->gemm_rows(y, ld, b, w, ld, xi, 1, xh, H, ld, B);
    double t0 = now();
    for (long r = 0; r < reps; r++) k->gemm_rows(y, ld, b, w, ld, xi, 1, xh, H, ld, B);
    double ns = (now() - t0) / reps * 1e9, gf = 2.0 * B * n * cases[c].G * H / ns;
    printf("%-5s %3d %4d %5d %12.1f %10.2f %7.1f%%\n", cases[c].name, 1, H, B, ns, gf, peak > 0 ? 100 * gf / peak : 0);
    free(w);
    free(x);
    free(y);
    free(b);
  }
}

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* rnn_scan_compute over S series of T steps in groups of SCAN_B, as rnn_scan's
** worker threads run it (every row used, equal lengths): best CPU seconds of 3. */
static double scan_seconds(const rnn_net *n, int S, int64_t T) {
  scan_group *g = calloc(1, sizeof(*g));
  const size_t nst = rnn_state_floats(n), rows = (size_t)SCAN_B * (size_t)T;
  float *work = calloc(rnn_scan_work_floats(n), sizeof(float));
  scan_work w;
  rnn_scan_work_init(n, &w, work);
  g->stmem = calloc(nst * SCAN_B, sizeof(float));
  g->x = malloc(sizeof(float) * rows * (size_t)n->n_in);
  g->out = malloc(sizeof(float) * rows * (size_t)n->n_out);
  g->flag = malloc(rows);
  for (size_t i = 0; i < rows * (size_t)n->n_in; i++) g->x[i] = frand();
  for (int s = 0; s < SCAN_B; s++) rnn_state_init(n, &g->st[s], g->stmem + (size_t)s * nst);
  double best = 1e30;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = cpu_now();
    for (int done = 0; done < S; done += SCAN_B) {
      g->nser = S - done < SCAN_B ? S - done : SCAN_B;
      for (int s = 0; s < g->nser; s++) g->ser[s] = (scan_series){.row0 = (int64_t)s * T, .n = T};
      memset(g->flag, SCAN_USE, rows);
      rnn_scan_compute(n, g, &w);
    }
    double t = cpu_now() - t0;
    best = t < best ? t : best;
  }
  free(g->x);
  free(g->out);
  free(g->flag);
  free(g->stmem);
  free(g);
  free(work);
  return best;
}

static void scan_bench(const rnn_kernels *k, double peak, int only) {
  static const struct { const char *name; int cell, H; } cases[] = {
    {"GRU", CELL_GRU, 8}, {"LSTM", CELL_LSTM, 64}, {"LSTM", CELL_LSTM, 256}};
  printf("%-5s %3s %4s %14s %10s %8s\n", "cell", "I", "H", "CPU s/1M rows", "GFLOP/s", "of peak");
  for (int c = 0; c < 3; c++) {
    test_net tn;
    const int H = cases[c].H, S = H > 64 ? 112 : 1000;
    if (only && H != only) continue;
    make_net(&tn, cases[c].cell, 1, H, 1, 0, 1);
    tn.net.k = k;
    const double sec = scan_seconds(&tn.net, S, 1000) * (1000.0 / S);
    const double flops = 1e6 * (2.0 * tn.net.gates * H * (1 + H) + 2.0 * H);
    printf("%-5s %3d %4d %14.3f %10.2f %7.1f%%\n", cases[c].name, 1, H, sec, flops / sec / 1e9,
           peak > 0 ? 100 * flops / sec / 1e9 / peak : 0);
    free(tn.mem);
  }
}

int main(int argc, char **argv) {
  int batch = argc > 1 && strcmp(argv[1], "batch") == 0, scan = argc > 1 && strcmp(argv[1], "scan") == 0;
  const rnn_kernels *k = argc > 1 && !batch && !scan ? rnn_kernels_named(argv[1]) : rnn_kernels_pick();
  if (!k) {
    fprintf(stderr, "path %s not supported here\n", argv[1]);
    return 1;
  }
  /* The peak is the best of both vector widths: on some CPUs (e.g. AMD Zen 4)
  ** 256-bit FMAs reach more GFLOP/s than 512-bit ones. */
  double p256 = 0, p512 = 0;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) p256 = peak_avx2();
  if (__builtin_cpu_supports("avx512f")) p512 = peak_avx512();
#endif
  double peak = p256 > p512 ? p256 : p512;
  printf("path %s; measured FMA peak of one core: %.1f GFLOP/s (256-bit FMAs %.1f, 512-bit %.1f)\n", k->name,
         peak, p256, p512);
  if (batch) {
    batch16(k, peak);
    return 0;
  }
  if (scan) {
    scan_bench(k, peak, argc > 2 ? atoi(argv[2]) : 0);
    return 0;
  }
  printf("%-5s %3s %4s %12s %10s %8s\n", "cell", "I", "H", "ns/step", "GFLOP/s", "of peak");
  static const struct { const char *name; int cell; } cells[] = {
    {"RNN", CELL_RNN_TANH}, {"LSTM", CELL_LSTM}, {"GRU", CELL_GRU}};
  const int Hs[] = {16, 64, 256}, Is[] = {1, 8};
  float xs[8 * 64];
  for (int i = 0; i < 8 * 64; i++) xs[i] = frand();
  for (int c = 0; c < 3; c++) {
    for (int ii = 0; ii < 2; ii++) {
      for (int hh = 0; hh < 3; hh++) {
        int I = Is[ii], H = Hs[hh], G = cells[c].cell == CELL_LSTM ? 4 : cells[c].cell == CELL_GRU ? 3 : 1;
        test_net tn;
        make_net(&tn, cells[c].cell, I, H, 1, 0, 1);
        tn.net.k = k;
        float *mem = malloc(sizeof(float) * rnn_state_floats(&tn.net));
        float out[16], scratch[16];
        rnn_state st;
        rnn_state_init(&tn.net, &st, mem);
        /* enough steps for ~0.2 s */
        long steps = 200000000L / (long)(G * H * (I + H) + 64);
        if (steps < 2000) steps = 2000;
        for (long s = 0; s < steps / 10; s++) rnn_step(&tn.net, &st, xs + (s % 64) * I); /* warm up */
        double t0 = now();
        for (long s = 0; s < steps; s++) {
          rnn_step(&tn.net, &st, xs + (s % 64) * I);
          rnn_output(&tn.net, &st, out, scratch);
        }
        double ns = (now() - t0) / steps * 1e9;
        double flops = 2.0 * G * H * (I + H) + 2.0 * H;
        double gf = flops / ns;
        printf("%-5s %3d %4d %12.1f %10.2f %7.1f%%\n", cells[c].name, I, H, ns, gf, peak > 0 ? 100 * gf / peak : 0);
        free(mem);
        free(tn.mem);
      }
    }
  }
  return 0;
}

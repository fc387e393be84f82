/*
** scan_compute.c: rnn_scan's arithmetic (scan.c reads and returns the rows).
** Pure C, no SQLite types (scan.h): one group of up to SCAN_B series run in
** lockstep, the batch shrinking as series end (PyTorch's PackedSequence).
**
** Rules kept:
**  1. Every output is bit for bit what rnn_step then rnn_output give the row
**     alone (what rnn_predict ... OVER gives): gemm_rows gives each batch row
**     the bits gemv_t gives it, and every sum keeps cells.c's order.
**  2. Each layer's gates for the step's series are one product (the kernels'
**     gemm_rows): RNN and LSTM sum (b_ih + b_hh) + W_ih x + W_hh h into one
**     accumulator, input terms first (cells.c's fused [W_ih; W_hh] product,
**     whose W_hh rows follow W_ih's in memory), x being the standardised
**     features at layer 0 and h of the layer below above it. GRU keeps
**     b_ih + W_ih x apart from b_hh + W_hh h, as cells.c does. The seed cell
**     (whose i2h and i2o both read cat(x, h)) steps each series with rnn_step.
**  3. The products read every h where its state keeps it and start from the
**     bias in registers: nothing is copied per step (same bits as the copies).
**  4. A row with a NULL feature (no SCAN_USE) takes no step and gets the
**     output of its series' state (none before the first step).
**  5. A series whose group is a continuation (ser[0].cont_in) starts from the
**     state its predecessor group left (h, c, the seed's y, steps).
**  6. Outputs: rnn_output's head(h), then its activation and de-standardisation
**     (cells.c's finish), as one product over the step's series when the head
**     is a Linear and the activation none, sigmoid or tanh (the kernels'); any
**     other output goes through rnn_output itself.
*/
#include "scan.h"
#include <string.h>

size_t rnn_scan_work_floats(const rnn_net *n) {
  const size_t sb = (size_t)SCAN_STEPS * SCAN_B;
  return sb * (size_t)n->n_in + (size_t)SCAN_B * (2 * (size_t)n->ldg + (size_t)n->ldp + (size_t)n->ldo) + (size_t)n->ldo;
}

void rnn_scan_work_init(const rnn_net *n, scan_work *w, float *mem) {
  const size_t sb = (size_t)SCAN_STEPS * SCAN_B;
  w->xs = mem;
  w->g = w->xs + sb * (size_t)n->n_in;
  w->gh = w->g + (size_t)SCAN_B * (size_t)n->ldg;
  w->pm = w->gh + (size_t)SCAN_B * (size_t)n->ldg;
  w->ho = w->pm + (size_t)SCAN_B * (size_t)n->ldp;
  w->o = w->ho + (size_t)SCAN_B * (size_t)n->ldo;
}

/* Rule 5. */
static void state_copy(const rnn_net *n, rnn_state *to, const rnn_state *from) {
  memcpy(to->h, from->h, sizeof(float) * (size_t)n->layers * (size_t)n->hout);
  memcpy(to->c, from->c, sizeof(float) * (size_t)n->layers * (size_t)n->hidden);
  memcpy(to->y, from->y, sizeof(float) * (size_t)n->ldo);
  to->steps = from->steps;
}

/* The pointwise part of a cell for batch row b (cells.c's cell_step after its
** products): gates g, GRU's gh; h (hout) and c (H) updated. */
static void cell_finish(const rnn_net *n, const rnn_dir *d, float *g, float *gh, float *h, float *c) {
  const int H = n->hidden;
  switch (n->cell) {
    case CELL_RNN_TANH:
      n->k->tanh(g, H);
      memcpy(h, g, sizeof(float) * (size_t)H);
      break;
    case CELL_RNN_RELU:
      for (int j = 0; j < H; j++) h[j] = g[j] < 0.0f ? 0.0f : g[j]; /* PyTorch's clamp_min: NaN and -0 pass */
      break;
    case CELL_LSTM: n->k->lstm(g, c, d->whr ? gh : h, H); break;
    case CELL_GRU: n->k->gru(g, gh, h, H); break;
    default: break;
  }
}

/* After the products of layer l for nb rows (gates g, ldg apart; GRU's in
** w->gh): the cells, and LSTM's projection, batched as one product. */
static void layer_finish(const rnn_net *n, int l, scan_work *w, float *g, rnn_state **st, int nb) {
  const rnn_dir *d = &n->layer[l].dir[0];
  const int H = n->hidden, hout = n->hout, ldg = n->ldg, ldp = n->ldp;
  for (int b = 0; b < nb; b++) {
    cell_finish(n, d, g + (size_t)b * ldg, w->gh + (size_t)b * ldg, st[b]->h + (size_t)l * hout,
                st[b]->c + (size_t)l * H);
  }
  if (n->cell == CELL_LSTM && d->whr) {
    memset(w->pm, 0, sizeof(float) * (size_t)nb * (size_t)ldp);
    n->k->gemm_t(w->pm, ldp, d->whr, ldp, w->gh, ldg, H, ldp, nb);
    for (int b = 0; b < nb; b++) memcpy(st[b]->h + (size_t)l * hout, w->pm + (size_t)b * ldp, sizeof(float) * hout);
  }
}

/* Where each batch row's h of layer l lives (rule 3). */
static void h_rows(const rnn_net *n, rnn_state **st, int nb, int l, const float **hp) {
  for (int b = 0; b < nb; b++) hp[b] = st[b]->h + (size_t)l * (size_t)n->hout;
}

/* Layer l for nb rows whose layer inputs are in[b] (rule 2), then the cells. */
static void layer_step(const rnn_net *n, int l, scan_work *w, const float **in, rnn_state **st, int nb) {
  const rnn_dir *d = &n->layer[l].dir[0];
  const int nin = n->layer[l].in, hout = n->hout, ldg = n->ldg;
  const float *hp[SCAN_B];
  h_rows(n, st, nb, l, hp);
  if (n->cell == CELL_GRU) {
    n->k->gemm_rows(w->g, ldg, d->bih, d->wih, ldg, in, nin, NULL, 0, ldg, nb);
    n->k->gemm_rows(w->gh, ldg, d->bhh, d->whh, ldg, hp, hout, NULL, 0, ldg, nb);
  } else {
    n->k->gemm_rows(w->g, ldg, d->bsum, d->wih, ldg, in, nin, hp, hout, ldg, nb);
  }
  layer_finish(n, l, w, w->g, st, nb);
}

/* Rule 6: a Linear head whose activation is a kernel's, batched. */
static int batched_head(const rnn_net *n) {
  return n->head_w && (n->out_act == ACT_NONE || n->out_act == ACT_SIGMOID || n->out_act == ACT_TANH);
}

/* The outputs of step t of every series that has one (rule 4: a row that took
** no step gets its series' output all the same), by rnn_output or batched. */
static void step_outputs(const rnn_net *n, scan_group *g, scan_work *w, int64_t t) {
  const int O = n->n_out, ldo = n->ldo;
  int sb[SCAN_B], nb = 0;
  for (int s = 0; s < g->nser; s++) {
    const int64_t r = g->ser[s].row0 + t;
    if (t >= g->ser[s].n || g->st[s].steps == 0) continue;
    g->flag[r] |= SCAN_OUT;
    if (batched_head(n)) sb[nb++] = s;
    else rnn_output(n, &g->st[s], g->out + (size_t)r * O, w->o);
  }
  if (!nb) return;
  const float *hp[SCAN_B];
  for (int b = 0; b < nb; b++) hp[b] = rnn_last_hidden(n, &g->st[sb[b]]);
  n->k->gemm_rows(w->ho, ldo, n->head_b, n->head_w, ldo, hp, n->hout, NULL, 0, ldo, nb);
  for (int b = 0; b < nb; b++) { /* cells.c's finish for these activations */
    float *v = w->ho + (size_t)b * ldo, *out = g->out + (size_t)(g->ser[sb[b]].row0 + t) * O;
    if (n->out_act == ACT_SIGMOID) n->k->sigmoid(v, O);
    if (n->out_act == ACT_TANH) n->k->tanh(v, O);
    for (int i = 0; i < O; i++) {
      float x = v[i];
      if (n->out_std) x = x * n->out_std[i];
      if (n->out_mean) x = x + n->out_mean[i];
      out[i] = x;
    }
  }
}

/* Steps t0 .. t1-1 of every series of g (t1 - t0 <= SCAN_STEPS). */
static void block_steps(const rnn_net *n, scan_group *g, scan_work *w, int64_t t0, int64_t t1) {
  const int I = n->n_in;
  int off[SCAN_STEPS + 1], m = 0;
  for (int64_t t = t0; t < t1; t++) { /* gather the rows that step, standardised as cells.c does */
    off[t - t0] = m;
    for (int s = 0; s < g->nser; s++) {
      const int64_t r = g->ser[s].row0 + t;
      if (t >= g->ser[s].n || !(g->flag[r] & SCAN_USE)) continue;
      const float *x = g->x + (size_t)r * I;
      float *row = w->xs + (size_t)m * I;
      for (int i = 0; i < I; i++) {
        float v = x[i];
        if (n->in_mean) v = v - n->in_mean[i];
        if (n->in_std) v = v / n->in_std[i];
        row[i] = v;
      }
      w->bat[m++] = s;
    }
  }
  off[t1 - t0] = m;
  for (int64_t t = t0; t < t1; t++) {
    const int a = off[t - t0], nb = off[t - t0 + 1] - a;
    rnn_state *st[SCAN_B];
    const float *in[SCAN_B];
    for (int b = 0; b < nb; b++) {
      st[b] = &g->st[w->bat[a + b]];
      st[b]->steps++;
      in[b] = w->xs + (size_t)(a + b) * (size_t)I;
    }
    if (nb) layer_step(n, 0, w, in, st, nb);
    for (int l = 1; l < n->layers && nb; l++) {
      h_rows(n, st, nb, l - 1, in);
      layer_step(n, l, w, in, st, nb);
    }
    step_outputs(n, g, w, t);
  }
}

/* The seed cell: each series by rnn_step (rule 2). */
static void seed_series(const rnn_net *n, scan_group *g, scan_work *w) {
  for (int s = 0; s < g->nser; s++) {
    for (int64_t r = g->ser[s].row0; r < g->ser[s].row0 + g->ser[s].n; r++) {
      if (g->flag[r] & SCAN_USE) rnn_step(n, &g->st[s], g->x + (size_t)r * n->n_in);
      if (g->st[s].steps == 0) continue;
      g->flag[r] |= SCAN_OUT;
      rnn_output(n, &g->st[s], g->out + (size_t)r * n->n_out, w->o);
    }
  }
}

void rnn_scan_compute(const rnn_net *n, scan_group *g, scan_work *w) {
  int64_t T = 0;
  for (int s = 0; s < g->nser; s++) {
    rnn_state_reset(n, &g->st[s]);
    T = g->ser[s].n > T ? g->ser[s].n : T;
  }
  if (g->nser && g->ser[0].cont_in) state_copy(n, &g->st[0], &g->pred->st[g->pred->nser - 1]);
  if (n->cell == CELL_SEED) {
    seed_series(n, g, w);
    return;
  }
  for (int64_t t0 = 0; t0 < T; t0 += SCAN_STEPS) block_steps(n, g, w, t0, t0 + SCAN_STEPS < T ? t0 + SCAN_STEPS : T);
}

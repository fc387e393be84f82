/*
** scan_compute.c: rnn_scan's arithmetic (scan.c reads and returns the rows).
** Pure C, no SQLite types (scan.h): one group of up to SCAN_B series run in
** lockstep, the batch shrinking as series end (PyTorch's PackedSequence).
**
** Rules kept:
**  1. Every output is bit for bit what rnn_step then rnn_output give the row
**     alone (what rnn_predict ... OVER gives): gemm_t gives each batch row the
**     bits gemv_t gives it, and every sum keeps cells.c's order.
**  2. Layer 0's input projection for SCAN_STEPS steps of the group is one
**     product: RNN and LSTM sum (b_ih + b_hh) + W_ih x + W_hh h into one
**     accumulator, input terms first (cells.c's fused [W_ih; W_hh] product,
**     whose W_hh rows follow W_ih's in memory), so the projection is the first
**     part of that same sum and each step continues it over W_hh h: the same
**     additions in the same order. GRU keeps b_ih + W_ih x apart from
**     b_hh + W_hh h anyway. The seed cell (whose i2h and i2o both read
**     cat(x, h)) steps each series with rnn_step.
**  3. Layers above 0 run cells.c's fused product over cat(input, h), batched.
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

static int imax(int a, int b) { return a > b ? a : b; }
static int ldx_of(const rnn_net *n) { return imax(n->n_in, n->hout) + n->hout; }

size_t rnn_scan_work_floats(const rnn_net *n) {
  const size_t sb = (size_t)SCAN_STEPS * SCAN_B;
  return sb * ((size_t)n->n_in + (size_t)n->ldg)
       + (size_t)SCAN_B * ((size_t)ldx_of(n) + 2 * (size_t)n->ldg + (size_t)n->ldp + (size_t)n->ldo) + (size_t)n->ldo;
}

void rnn_scan_work_init(const rnn_net *n, scan_work *w, float *mem) {
  const size_t sb = (size_t)SCAN_STEPS * SCAN_B;
  w->ldx = ldx_of(n);
  w->xs = mem;
  w->p = w->xs + sb * (size_t)n->n_in;
  w->xm = w->p + sb * (size_t)n->ldg;
  w->g = w->xm + (size_t)SCAN_B * (size_t)w->ldx;
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

/* Layer 0 for nb rows whose input projections are the rows of p (rule 2):
** the recurrent product continues each, then the cells. */
static void layer0_step(const rnn_net *n, scan_work *w, float *p, rnn_state **st, int nb) {
  const rnn_dir *d = &n->layer[0].dir[0];
  const int hout = n->hout, ldg = n->ldg, ldx = w->ldx;
  for (int b = 0; b < nb; b++) memcpy(w->xm + (size_t)b * ldx, st[b]->h, sizeof(float) * (size_t)hout);
  if (n->cell == CELL_GRU) {
    for (int b = 0; b < nb; b++) memcpy(w->gh + (size_t)b * ldg, d->bhh, sizeof(float) * (size_t)ldg);
    n->k->gemm_t(w->gh, ldg, d->whh, ldg, w->xm, ldx, hout, ldg, nb);
  } else {
    n->k->gemm_t(p, ldg, d->whh, ldg, w->xm, ldx, hout, ldg, nb);
  }
  layer_finish(n, 0, w, p, st, nb);
}

/* Layer l >= 1 for nb rows: cells.c's products over cat(h of layer l-1, h), batched (rule 3). */
static void upper_step(const rnn_net *n, int l, scan_work *w, rnn_state **st, int nb) {
  const rnn_dir *d = &n->layer[l].dir[0];
  const int in = n->layer[l].in, hout = n->hout, ldg = n->ldg, ldx = w->ldx;
  for (int b = 0; b < nb; b++) {
    float *row = w->xm + (size_t)b * ldx;
    memcpy(row, st[b]->h + (size_t)(l - 1) * hout, sizeof(float) * (size_t)in);
    memcpy(row + in, st[b]->h + (size_t)l * hout, sizeof(float) * (size_t)hout);
  }
  if (n->cell == CELL_GRU) {
    for (int b = 0; b < nb; b++) memcpy(w->g + (size_t)b * ldg, d->bih, sizeof(float) * (size_t)ldg);
    for (int b = 0; b < nb; b++) memcpy(w->gh + (size_t)b * ldg, d->bhh, sizeof(float) * (size_t)ldg);
    n->k->gemm_t(w->g, ldg, d->wih, ldg, w->xm, ldx, in, ldg, nb);
    n->k->gemm_t(w->gh, ldg, d->whh, ldg, w->xm + in, ldx, hout, ldg, nb);
  } else {
    for (int b = 0; b < nb; b++) memcpy(w->g + (size_t)b * ldg, d->bsum, sizeof(float) * (size_t)ldg);
    n->k->gemm_t(w->g, ldg, d->wih, ldg, w->xm, ldx, in + hout, ldg, nb);
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
  const int O = n->n_out, ldo = n->ldo, ldx = w->ldx;
  int sb[SCAN_B], nb = 0;
  for (int s = 0; s < g->nser; s++) {
    const int64_t r = g->ser[s].row0 + t;
    if (t >= g->ser[s].n || g->st[s].steps == 0) continue;
    g->flag[r] |= SCAN_OUT;
    if (batched_head(n)) sb[nb++] = s;
    else rnn_output(n, &g->st[s], g->out + (size_t)r * O, w->o);
  }
  if (!nb) return;
  for (int b = 0; b < nb; b++) {
    memcpy(w->xm + (size_t)b * ldx, rnn_last_hidden(n, &g->st[sb[b]]), sizeof(float) * (size_t)n->hout);
    memcpy(w->ho + (size_t)b * ldo, n->head_b, sizeof(float) * (size_t)ldo);
  }
  n->k->gemm_t(w->ho, ldo, n->head_w, ldo, w->xm, ldx, n->hout, ldo, nb);
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
  const rnn_dir *d0 = &n->layer[0].dir[0];
  const int I = n->n_in, ldg = n->ldg;
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
  const float *bias = n->cell == CELL_GRU ? d0->bih : d0->bsum;
  for (int j = 0; j < m; j++) memcpy(w->p + (size_t)j * ldg, bias, sizeof(float) * (size_t)ldg);
  if (m) n->k->gemm_t(w->p, ldg, d0->wih, ldg, w->xs, I, I, ldg, m); /* rule 2: one product for the block */
  for (int64_t t = t0; t < t1; t++) {
    const int a = off[t - t0], nb = off[t - t0 + 1] - a;
    rnn_state *st[SCAN_B];
    for (int b = 0; b < nb; b++) {
      st[b] = &g->st[w->bat[a + b]];
      st[b]->steps++;
    }
    if (nb) {
      layer0_step(n, w, w->p + (size_t)a * ldg, st, nb);
      for (int l = 1; l < n->layers; l++) upper_step(n, l, w, st, nb);
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

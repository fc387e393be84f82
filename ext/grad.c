/*
** grad.c: the loss of a mini-batch and its gradient with respect to every
** parameter (train.h rnn_loss_grad): a forward pass that keeps a tape, then
** backpropagation through time, for nn.RNN (tanh, relu), nn.LSTM (with
** proj_size), nn.GRU and the tutorial (seed) cell, 1..RNN_MAX_TRAIN_LAYERS
** layers, with or without bias and head, unidirectional.
**
** Rules kept:
**  1. The formulas are PyTorch's (cells.h): LSTM gates i,f,g,o, c' = f c + i g,
**     h' = W_hr (o tanh c') with proj_size; GRU r,z,n with b_hn inside r*(...),
**     h' = (h - n) z + n; seed h_t = act(i2h([x_t, h_{t-1}])),
**     y_t = i2o([x_t, h_{t-1}]). The loss is torch's reduction='mean': MSE over
**     every counted target element of out_act(z), cross-entropy over counted
**     labels of the logits z (the head's output before out_act).
**  2. Sequence b takes steps 0..len[b]-1 only: later steps neither count nor
**     change its state, and hT is its state after step len[b]-1.
**  3. Determinism: plain scalar loops in a fixed order (sequences in batch
**     order, steps backwards, layers top down, sums over k ascending), built
**     with -ffp-contract=off, so the same batch gives the same bits on every
**     CPU. The forward pass computes in float as inference does (bias first,
**     then the products in input order); the backward pass and the gradient
**     accumulators are double, rounded to float once at the end: gradients are
**     then within float rounding of the exact gradient of the float forward,
**     closer than torch's own float32 autograd (tests/test_grad.py: 1e-4).
**  4. Memory: one allocation per call, sized by one sequence's tape (T steps)
**     and the parameter count, checked against RNN_MAX_TRAIN_WORK first.
**     Out of memory is SQLITE_NOMEM; nothing leaks on any path.
**  5. Threads: a batch is cut into chunks of consecutive sequences, a
**     partition fixed by B alone (RNN_GRAD_CHUNKS), never by the thread
**     count. Each chunk sums its loss and gradient from zero in double, on
**     whichever worker takes it (train_pool.c), each worker with its own work
**     area; the caller's thread then adds the chunks in chunk order. One
**     thread or eight, the same chunks and the same sums: the same bits.
*/
#include "train.h"
#include "train_pool.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <string.h>

/* One layer's weights and their gradient accumulators (NULL: no such tensor). */
typedef struct glayer {
  const float *wih, *whh, *bih, *bhh, *whr;
  const float *tih, *thh, *thr;   /* wih, whh, whr transposed (forward pass) */
  double *gwih, *gwhh, *gbih, *gbhh, *gwhr;
  int in;
} glayer;

typedef struct gctx {
  const rnn_params *p;
  const rnn_batch *b;
  int cell, I, H, hout, L, GH, O, S, proj, hidden_act, out_act;
  glayer ly[RNN_MAX_TRAIN_LAYERS];
  const float *fw, *fb;   /* head fc (or the seed's i2o): [O][width], [O]; fw NULL: no head */
  const float *tfw;       /* fw transposed */
  float *wt;              /* [n]: p->w with every matrix transposed */
  double *gfw, *gfb;
  float *tape;            /* [T][L][S]: per step and layer h, c, gates (see slot offsets) */
  float *init;            /* [L][S]: h and c before step 0 */
  double *dz;             /* [T][O]: d loss / d z at counted steps */
  int *counted;           /* [T] */
  double *g;              /* [n] gradient accumulators */
  double *dh, *dc;        /* [L][hout], [L][H] */
  double *da, *dg2, *dm;  /* [GH], [GH], [max(H, I + H)] */
  double *oscr;           /* [2 * O] */
  float *gi, *gh, *z;     /* [GH], [GH], [O] */
  double loss, inv_n;
  uint64_t n_targets;     /* the terms the loss averages */
} gctx;

/* Offsets in a tape slot: h [hout] first; LSTM: c [H], gates [4H], m [H];
** GRU: r,z,n [3H] then W_hn h + b_hn [H]. */
#define SLOT_C(c) ((c)->hout)
#define SLOT_GATES(c) ((c)->cell == CELL_LSTM ? (c)->hout + (c)->H : (c)->H)
#define SLOT_M(c) ((c)->hout + 5 * (c)->H)

static float *slot(const gctx *c, int t, int l) {
  return t < 0 ? c->init + (size_t)l * c->S : c->tape + ((size_t)t * c->L + l) * c->S;
}

static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* y[j] = (b ? b[j] : 0) + sum_k w[j][k] x[k], j < rows, in float, from wt =
** w transposed ([cols][rows]): each y[j] adds its terms in the order k = 0, 1,
** ... as a row-by-row loop would, bit for bit, while the inner loop over j is
** independent per element and vectorises. Hot. */
static void affine(float *restrict y, const float *restrict wt, const float *restrict b, const float *restrict x,
                   int rows, int cols) {
  if (b) memcpy(y, b, sizeof(float) * (size_t)rows);
  else memset(y, 0, sizeof(float) * (size_t)rows);
  for (int k = 0; k < cols; k++) {
    const float xk = x[k], *wr = wt + (size_t)k * rows;
    for (int j = 0; j < rows; j++) y[j] += wr[j] * xk;
  }
}

/* One cell step of layer l at step t (rule 1), into the tape. */
static void cell_fwd(gctx *c, int t, int l, const float *in) {
  const glayer *w = &c->ly[l];
  const int H = c->H;
  float *sl = slot(c, t, l), *pv = slot(c, t - 1, l), *h = sl, *gt = sl + SLOT_GATES(c);
  float *gi = c->gi, *gh = c->gh;
  affine(gi, w->tih, w->bih, in, c->GH, w->in);
  affine(gh, w->thh, w->bhh, pv, c->GH, c->hout);
  if (c->cell == CELL_RNN_TANH || c->cell == CELL_RNN_RELU) {
    for (int j = 0; j < H; j++) {
      float a = gi[j] + gh[j];
      h[j] = c->cell == CELL_RNN_TANH ? tanhf(a) : a < 0.0f ? 0.0f : a;
    }
  } else if (c->cell == CELL_GRU) {
    for (int j = 0; j < H; j++) {
      float r = sigm(gi[j] + gh[j]), zz = sigm(gi[H + j] + gh[H + j]);
      float n = tanhf(gi[2 * H + j] + r * gh[2 * H + j]);
      gt[j] = r;
      gt[H + j] = zz;
      gt[2 * H + j] = n;
      gt[3 * H + j] = gh[2 * H + j];
      h[j] = (pv[j] - n) * zz + n;
    }
  } else {
    float *cc = sl + SLOT_C(c), *cp = pv + SLOT_C(c), *m = c->proj ? sl + SLOT_M(c) : h;
    for (int j = 0; j < H; j++) {
      float i = sigm(gi[j] + gh[j]), f = sigm(gi[H + j] + gh[H + j]);
      float g = tanhf(gi[2 * H + j] + gh[2 * H + j]), o = sigm(gi[3 * H + j] + gh[3 * H + j]);
      gt[j] = i;
      gt[H + j] = f;
      gt[2 * H + j] = g;
      gt[3 * H + j] = o;
      cc[j] = f * cp[j] + i * g;
      m[j] = o * tanhf(cc[j]);
    }
    if (c->proj) affine(h, w->thr, NULL, m, c->proj, H);
  }
}

/* The seed cell's step t: h_t into the tape, y_t = i2o([x_t, h_{t-1}]) into z. */
static void seed_fwd(gctx *c, int t, const float *x, float *xh) {
  const int I = c->I, H = c->H;
  float *h = slot(c, t, 0);
  memcpy(xh, x, sizeof(float) * (size_t)I);
  memcpy(xh + I, slot(c, t - 1, 0), sizeof(float) * (size_t)H);
  affine(h, c->ly[0].tih, c->ly[0].bih, xh, H, I + H);
  for (int j = 0; j < H; j++) {
    float a = h[j];
    h[j] = c->hidden_act == ACT_TANH ? tanhf(a) : c->hidden_act == ACT_SIGMOID ? sigm(a)
         : c->hidden_act == ACT_RELU ? (a < 0.0f ? 0.0f : a) : a;
  }
  affine(c->z, c->tfw, c->fb, xh, c->O, I + H);
}

/* dz[0..O) of MSE on out_act(z) against y: adds the squared errors to the loss. */
static void mse_grad(gctx *c, const float *z, const float *y, double *dz) {
  const int O = c->O;
  double *out = c->oscr, *dout = c->oscr + O, mx = z[0], sum = 0.0, dot = 0.0;
  for (int o = 1; o < O; o++) mx = z[o] > mx ? z[o] : mx;
  for (int o = 0; o < O; o++) sum += exp((double)z[o] - mx);
  for (int o = 0; o < O; o++) {
    double v = z[o];
    switch (c->out_act) {
      case ACT_SIGMOID: v = 1.0 / (1.0 + exp(-v)); break;
      case ACT_TANH: v = tanh(v); break;
      case ACT_RELU: v = v < 0.0 ? 0.0 : v; break;
      case ACT_SOFTMAX: v = exp(v - mx) / sum; break;
      case ACT_LOG_SOFTMAX: v = v - mx - log(sum); break;
      default: break;
    }
    double e = v - (double)y[o];
    c->loss += e * e;
    out[o] = v;
    dout[o] = 2.0 * e * c->inv_n;
  }
  for (int o = 0; o < O; o++) dot += c->out_act == ACT_SOFTMAX ? dout[o] * out[o] : dout[o];
  for (int o = 0; o < O; o++) {
    double v = out[o], d = dout[o];
    switch (c->out_act) {
      case ACT_SIGMOID: d *= v * (1.0 - v); break;
      case ACT_TANH: d *= 1.0 - v * v; break;
      case ACT_RELU: d = z[o] > 0.0f ? d : 0.0; break;
      case ACT_SOFTMAX: d = v * (d - dot); break;
      case ACT_LOG_SOFTMAX: d = d - exp(v) * dot; break;
      default: break;
    }
    dz[o] = d;
  }
}

/* dz[0..O) of cross-entropy of logits z against class `label`. */
static void ce_grad(gctx *c, const float *z, int label, double *dz) {
  const int O = c->O;
  double mx = z[0], sum = 0.0;
  for (int o = 1; o < O; o++) mx = z[o] > mx ? z[o] : mx;
  for (int o = 0; o < O; o++) sum += exp((double)z[o] - mx);
  double lse = mx + log(sum);
  c->loss += lse - (double)z[label];
  for (int o = 0; o < O; o++) dz[o] = (exp((double)z[o] - lse) - (o == label)) * c->inv_n;
}

/* Forward over sequence s: the tape, the loss terms and dz at counted steps. */
static void seq_fwd(gctx *c, int s, float *xh) {
  const rnn_batch *b = c->b;
  const int T = b->T, len = b->len[s], O = c->O;
  for (int t = 0; t < len; t++) {
    const float *x = b->x + ((size_t)s * T + t) * (size_t)c->I;
    if (c->cell == CELL_SEED) {
      seed_fwd(c, t, x, xh);
    } else {
      for (int l = 0; l < c->L; l++) cell_fwd(c, t, l, l ? slot(c, t, l - 1) : x);
    }
    int last = b->target == RNN_TARGET_LAST;
    c->counted[t] = !last || t == len - 1;
    if (!c->counted[t]) continue;
    size_t at = last ? (size_t)s : (size_t)s * T + t;
    if (b->loss == RNN_LOSS_CE && b->label[at] < 0) {
      c->counted[t] = 0;
      continue;
    }
    if (c->cell != CELL_SEED) {
      const float *top = slot(c, t, c->L - 1);
      if (c->fw) affine(c->z, c->tfw, c->fb, top, O, c->hout);
      else memcpy(c->z, top, sizeof(float) * (size_t)O);
    }
    double *dz = c->dz + (size_t)t * O;
    if (b->loss == RNN_LOSS_CE) ce_grad(c, c->z, b->label[at], dz);
    else mse_grad(c, c->z, b->y + at * (size_t)O, dz);
  }
}

/* g[j][k] += d[j] * x[k] (j < rows, k < cols), then, with dx, dx[k] += sum_j w[j][k] d[j]. */
static void affine_bwd(const double *d, const float *x, const float *w, double *g, double *gb, double *dx, int rows,
                       int cols) {
  for (int j = 0; j < rows; j++) {
    const double dj = d[j];
    double *gr = g + (size_t)j * cols;
    for (int k = 0; k < cols; k++) gr[k] += dj * (double)x[k];
    if (gb) gb[j] += dj;
  }
  if (!dx) return;
  for (int j = 0; j < rows; j++) {
    const double dj = d[j];
    const float *wr = w + (size_t)j * cols;
    for (int k = 0; k < cols; k++) dx[k] += (double)wr[k] * dj;
  }
}

/* LSTM pre-activation gradients da from dh (hout) and dc (H, replaced by d c_{t-1}). */
static void lstm_bwd(gctx *c, int t, int l, const double *dh, double *dc) {
  const int H = c->H;
  const float *sl = slot(c, t, l), *gt = sl + SLOT_GATES(c), *cc = sl + SLOT_C(c);
  const float *cp = slot(c, t - 1, l) + SLOT_C(c);
  const double *dm = dh;
  if (c->proj) {
    const glayer *w = &c->ly[l];
    memset(c->dm, 0, sizeof(double) * (size_t)H);
    affine_bwd(dh, sl + SLOT_M(c), w->whr, w->gwhr, NULL, c->dm, c->proj, H);
    dm = c->dm;
  }
  for (int j = 0; j < H; j++) {
    double i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j], tc = tanhf(cc[j]);
    double dct = dc[j] + dm[j] * o * (1.0 - tc * tc);
    c->da[j] = dct * g * i * (1.0 - i);
    c->da[H + j] = dct * cp[j] * f * (1.0 - f);
    c->da[2 * H + j] = dct * i * (1.0 - g * g);
    c->da[3 * H + j] = dm[j] * tc * o * (1.0 - o);
    dc[j] = dct * f;
  }
  memcpy(c->dg2, c->da, sizeof(double) * (size_t)c->GH);
}

/* Layer l at step t backwards: dh (hout) holds d loss / d h_t and becomes
** d loss / d h_{t-1}; din (may be NULL) receives d loss / d input. */
static void cell_bwd(gctx *c, int t, int l, const float *in, double *dh, double *dc, double *din) {
  const glayer *w = &c->ly[l];
  const int H = c->H;
  const float *sl = slot(c, t, l), *pv = slot(c, t - 1, l), *gt = sl + SLOT_GATES(c);
  if (c->cell == CELL_LSTM) {
    lstm_bwd(c, t, l, dh, dc);
    memset(dh, 0, sizeof(double) * (size_t)c->hout);
  } else if (c->cell == CELL_GRU) {
    for (int j = 0; j < H; j++) {
      double r = gt[j], z = gt[H + j], n = gt[2 * H + j], ghn = gt[3 * H + j], d = dh[j];
      double dan = d * (1.0 - z) * (1.0 - n * n);
      c->da[j] = c->dg2[j] = dan * ghn * r * (1.0 - r);
      c->da[H + j] = c->dg2[H + j] = d * ((double)pv[j] - n) * z * (1.0 - z);
      c->da[2 * H + j] = dan;
      c->dg2[2 * H + j] = dan * r;
      dh[j] = d * z;
    }
  } else {
    for (int j = 0; j < H; j++) {
      double h = sl[j];
      c->da[j] = c->dg2[j] = c->cell == CELL_RNN_TANH ? dh[j] * (1.0 - h * h) : h > 0.0 ? dh[j] : 0.0;
      dh[j] = 0.0;
    }
  }
  affine_bwd(c->da, in, w->wih, w->gwih, w->gbih, din, c->GH, w->in);
  affine_bwd(c->dg2, pv, w->whh, w->gwhh, w->gbhh, dh, c->GH, c->hout);
}

/* The seed cell's step t backwards; dh (H) as in cell_bwd, dz the output's gradient or NULL. */
static void seed_bwd(gctx *c, int t, const float *x, float *xh, double *dh, const double *dz) {
  const int I = c->I, H = c->H;
  const float *h = slot(c, t, 0);
  glayer *w = &c->ly[0];
  memcpy(xh, x, sizeof(float) * (size_t)I);
  memcpy(xh + I, slot(c, t - 1, 0), sizeof(float) * (size_t)H);
  for (int j = 0; j < H; j++) {
    double v = h[j], d = dh[j];
    switch (c->hidden_act) {
      case ACT_TANH: d *= 1.0 - v * v; break;
      case ACT_SIGMOID: d *= v * (1.0 - v); break;
      case ACT_RELU: d = v > 0.0 ? d : 0.0; break;
      default: break;
    }
    c->da[j] = d;
  }
  double *dxh = c->dm;
  memset(dxh, 0, sizeof(double) * (size_t)(I + H));
  affine_bwd(c->da, xh, w->wih, w->gwih, w->gbih, dxh, H, I + H);
  if (dz) affine_bwd(dz, xh, c->fw, c->gfw, c->gfb, dxh, c->O, I + H);
  memcpy(dh, dxh + I, sizeof(double) * (size_t)H);
}

/* Backward over sequence s (rule 3: steps backwards, layers top down). */
static void seq_bwd(gctx *c, int s, float *xh) {
  const rnn_batch *b = c->b;
  const int T = b->T, len = b->len[s], L = c->L, O = c->O, hout = c->hout;
  memset(c->dh, 0, sizeof(double) * (size_t)L * hout);
  if (c->cell == CELL_LSTM) memset(c->dc, 0, sizeof(double) * (size_t)L * c->H);
  for (int t = len - 1; t >= 0; t--) {
    const float *x = b->x + ((size_t)s * T + t) * (size_t)c->I;
    const double *dz = c->counted[t] ? c->dz + (size_t)t * O : NULL;
    if (c->cell == CELL_SEED) {
      seed_bwd(c, t, x, xh, c->dh, dz);
      continue;
    }
    double *dtop = c->dh + (size_t)(L - 1) * hout;
    if (dz && c->fw) {
      affine_bwd(dz, slot(c, t, L - 1), c->fw, c->gfw, c->gfb, dtop, O, hout);
    } else if (dz) {
      for (int k = 0; k < O; k++) dtop[k] += dz[k];
    }
    for (int l = L - 1; l >= 0; l--) {
      double *din = l ? c->dh + (size_t)(l - 1) * hout : NULL;
      cell_bwd(c, t, l, l ? slot(c, t, l - 1) : x, c->dh + (size_t)l * hout, c->dc + (size_t)l * c->H, din);
    }
  }
}

/* The layers, head and sizes of p (layout: params.c rule 1). */
static void bind(gctx *c, const rnn_params *p, double *g) {
  const rnn_spec *s = &p->spec;
  int i = 0;
  c->cell = s->cell;
  c->I = s->n_in;
  c->H = s->hidden;
  c->proj = s->proj;
  c->hout = s->proj ? s->proj : s->hidden;
  c->L = s->layers;
  c->GH = (s->cell == CELL_LSTM ? 4 : s->cell == CELL_GRU ? 3 : 1) * s->hidden;
  c->O = s->n_out ? s->n_out : c->hout;
  c->hidden_act = s->hidden_act;
  c->out_act = s->out_act;
  c->S = s->cell == CELL_LSTM ? c->hout + 5 * c->H + (c->proj ? c->H : 0) : s->cell == CELL_GRU ? 5 * c->H : c->H;
#define NEXT(wp, gp) (wp = p->w + p->t[i].off, gp = g ? g + p->t[i].off : NULL, i++)
#define TRANS(wp) (c->wt ? c->wt + (wp - p->w) : NULL)
  for (int l = 0; l < c->L; l++) {
    glayer *w = &c->ly[l];
    memset(w, 0, sizeof(*w));
    w->in = s->cell == CELL_SEED ? c->I + c->H : l ? c->hout : c->I;
    NEXT(w->wih, w->gwih);
    if (s->cell != CELL_SEED) NEXT(w->whh, w->gwhh);
    if (s->bias) NEXT(w->bih, w->gbih);
    if (s->bias && s->cell != CELL_SEED) NEXT(w->bhh, w->gbhh);
    if (s->proj) NEXT(w->whr, w->gwhr);
    w->tih = TRANS(w->wih);
    w->thh = w->whh ? TRANS(w->whh) : NULL;
    w->thr = w->whr ? TRANS(w->whr) : NULL;
  }
  c->fw = c->fb = NULL;
  c->gfw = c->gfb = NULL;
  if (s->n_out) NEXT(c->fw, c->gfw);
  if (s->n_out && s->bias) NEXT(c->fb, c->gfb);
  c->tfw = c->fw ? TRANS(c->fw) : NULL;
#undef TRANS
#undef NEXT
}

/* c->wt: p->w with every matrix transposed, vectors copied (params.c rule 1). */
static void transpose_all(gctx *c, const rnn_params *p) {
  for (int i = 0; i < p->n_tensors; i++) {
    const rnn_tensor *t = &p->t[i];
    const float *w = p->w + t->off;
    float *o = c->wt + t->off;
    if (strstr(t->name, "bias")) {
      memcpy(o, w, sizeof(float) * (size_t)t->rows);
      continue;
    }
    for (int j = 0; j < t->rows; j++) {
      for (int k = 0; k < t->cols; k++) o[(size_t)k * t->rows + j] = w[(size_t)j * t->cols + k];
    }
  }
}

/* Rule 2 and the targets: lengths, labels; sets c->inv_n (1 / counted terms). */
static int check_batch(gctx *c, const rnn_batch *b, rnn_err *err) {
  if (b->B < 1 || b->T < 1) return rnn_err_set(err, "batch of %d sequences of %d steps: both must be >= 1", b->B, b->T);
  if (!b->x || !b->len) return rnn_err_set(err, "batch has no inputs or no lengths");
  if (b->loss == RNN_LOSS_CE ? !b->label : !b->y) return rnn_err_set(err, "batch has no targets");
  int last = b->target == RNN_TARGET_LAST;
  uint64_t n = 0;
  for (int s = 0; s < b->B; s++) {
    if (b->len[s] < 1 || b->len[s] > b->T) {
      return rnn_err_set(err, "sequence %d has %d steps, outside 1..%d", s, b->len[s], b->T);
    }
    if (b->loss != RNN_LOSS_CE) {
      n += (uint64_t)(last ? 1 : b->len[s]) * (uint64_t)c->O;
      continue;
    }
    for (int t = 0; t < (last ? 1 : b->len[s]); t++) {
      int lab = b->label[last ? (size_t)s : (size_t)s * b->T + t];
      if (lab < -1 || lab >= c->O) {
        return rnn_err_set(err, "label %d of sequence %d is outside 0..%d (-1: no target)", lab, s, c->O - 1);
      }
      n += lab >= 0;
    }
  }
  c->n_targets = n;
  c->inv_n = n ? 1.0 / (double)n : 0.0;
  return SQLITE_OK;
}

uint64_t rnn_batch_targets(const rnn_params *p, const rnn_batch *b) {
  gctx c;
  rnn_err err = {SQLITE_OK, NULL};
  memset(&c, 0, sizeof(c));
  c.p = p;
  bind(&c, p, NULL);
  int rc = check_batch(&c, b, &err);
  sqlite3_free(err.msg);
  return rc ? 0 : c.n_targets;
}

/* Carve the work area (rule 4): doubles first, then floats, then ints. */
static int carve(gctx *c, const rnn_params *p, int T, void **mem, rnn_err *err) {
  const uint64_t L = (uint64_t)c->L, S = (uint64_t)c->S, O = (uint64_t)c->O, GH = (uint64_t)c->GH;
  const uint64_t IH = (uint64_t)c->I + (uint64_t)c->H;
  uint64_t nd = p->n + (uint64_t)T * O + L * (uint64_t)c->hout + L * (uint64_t)c->H + 2 * GH + IH + 2 * O;
  uint64_t nf = ((uint64_t)T + 1) * L * S + 2 * GH + O + IH + (uint64_t)T + p->n;
  if (2 * nd + nf > RNN_MAX_TRAIN_WORK) {
    return rnn_err_set(err, "batch needs %llu floats of work memory, more than the limit %u: use shorter windows",
                       (unsigned long long)(2 * nd + nf), RNN_MAX_TRAIN_WORK);
  }
  double *d = sqlite3_malloc64(sizeof(double) * nd + sizeof(float) * nf);
  if (!d) return rnn_err_nomem(err);
  memset(d, 0, sizeof(double) * nd + sizeof(float) * nf);
  *mem = d;
  c->g = d;
  d += p->n;
  c->dz = d;
  d += (size_t)T * O;
  c->dh = d;
  d += L * (uint64_t)c->hout;
  c->dc = d;
  d += L * (uint64_t)c->H;
  c->da = d;
  c->dg2 = d + GH;
  c->dm = d + 2 * GH;
  c->oscr = d + 2 * GH + IH;
  float *f = (float *)(d + 2 * GH + IH + 2 * O);
  c->tape = f;
  c->init = f + (size_t)T * L * S;
  c->gi = c->init + L * S;
  c->gh = c->gi + GH;
  c->z = c->gh + GH;
  c->wt = c->z + O + IH;  /* xh: the IH floats after z */
  c->counted = (int *)(c->wt + p->n);
  return SQLITE_OK;
}

/* Sequence s's initial state into c->init (zeros without h0). */
static void load_h0(gctx *c, const rnn_batch *b, int s) {
  const size_t per = rnn_batch_state_floats(c->p);
  for (int l = 0; l < c->L; l++) {
    float *sl = c->init + (size_t)l * c->S;
    if (!b->h0) {
      memset(sl, 0, sizeof(float) * (size_t)c->S);
      continue;
    }
    const float *h0 = b->h0 + (size_t)s * per;
    memcpy(sl, h0 + (size_t)l * c->hout, sizeof(float) * (size_t)c->hout);
    if (c->cell == CELL_LSTM) {
      memcpy(sl + SLOT_C(c), h0 + (size_t)c->L * c->hout + (size_t)l * c->H, sizeof(float) * (size_t)c->H);
    }
  }
}

/* Sequence s's state after its last step into hT. */
static void save_hT(const gctx *c, const rnn_batch *b, int s, float *hT) {
  const size_t per = rnn_batch_state_floats(c->p);
  float *out = hT + (size_t)s * per;
  for (int l = 0; l < c->L; l++) {
    const float *sl = slot(c, b->len[s] - 1, l);
    memcpy(out + (size_t)l * c->hout, sl, sizeof(float) * (size_t)c->hout);
    if (c->cell == CELL_LSTM) {
      memcpy(out + (size_t)c->L * c->hout + (size_t)l * c->H, sl + SLOT_C(c), sizeof(float) * (size_t)c->H);
    }
  }
}

/* Rule 5: the chunks of a batch of B sequences, a partition fixed by B alone. */
static int chunk_count(int B) { return B < RNN_GRAD_CHUNKS ? B : RNN_GRAD_CHUNKS; }
static int chunk_start(int B, int k) { return (int)((int64_t)B * k / chunk_count(B)); }

/* A batch's chunks: inputs, each worker's context, each chunk's results. */
typedef struct grad_run {
  const rnn_params *p;
  const rnn_batch *b;
  gctx *ctx;              /* [workers], each with its own work area */
  double *g;              /* [chunks][n] gradient sums, or NULL: loss only */
  double *loss;           /* [chunks] loss sums */
  float *hT;
} grad_run;

/* Chunk k on worker w's context: its loss sum and gradient sum from zero. */
static void run_chunk(void *arg, int k, int w) {
  grad_run *r = arg;
  gctx *c = &r->ctx[w];
  double *g = r->g ? r->g + (size_t)k * r->p->n : NULL;
  if (g) memset(g, 0, sizeof(double) * r->p->n);
  bind(c, r->p, g);
  c->loss = 0.0;
  float *xh = c->z + c->O;
  for (int s = chunk_start(r->b->B, k); s < chunk_start(r->b->B, k + 1); s++) {
    load_h0(c, r->b, s);
    seq_fwd(c, s, xh);
    if (r->hT) save_hT(c, r->b, s, r->hT);
    if (g) seq_bwd(c, s, xh);
  }
  r->loss[k] = c->loss;
}

/* Worker contexts: each a copy of c0 (checked, bound) with its own work area. */
static int carve_all(gctx *ctx, int nw, const gctx *c0, void **mem, rnn_err *err) {
  for (int w = 0; w < nw; w++) {
    ctx[w] = *c0;
    if (carve(&ctx[w], c0->p, c0->b->T, &mem[w], err)) return err->rc;
    transpose_all(&ctx[w], c0->p);
  }
  return SQLITE_OK;
}

int rnn_loss_grad_pool(const rnn_params *p, const rnn_batch *b, float *grad, double *loss, float *hT, rnn_pool *pool,
                       rnn_err *err) {
  gctx c0;
  void *mem[RNN_POOL_MAX_THREADS] = {NULL};
  memset(&c0, 0, sizeof(c0));
  c0.p = p;
  c0.b = b;
  *loss = 0.0;
  bind(&c0, p, NULL);
  if (check_batch(&c0, b, err)) return err->rc;
  const int nk = chunk_count(b->B), size = rnn_pool_size(pool), nw = size < nk ? size : nk;
  grad_run r = {p, b, sqlite3_malloc64(sizeof(gctx) * (size_t)nw), NULL, NULL, hT};
  r.loss = sqlite3_malloc64(sizeof(double) * (size_t)nk);
  if (grad) r.g = sqlite3_malloc64(sizeof(double) * p->n * (size_t)nk);
  int rc = !r.ctx || !r.loss || (grad && !r.g) ? rnn_err_nomem(err) : carve_all(r.ctx, nw, &c0, mem, err);
  if (rc == SQLITE_OK) {
    rnn_pool_run(pool, nk, nw, run_chunk, &r);
    double tot = 0.0;  /* rule 5: chunks summed in chunk order, on this thread */
    for (int k = 0; k < nk; k++) tot += r.loss[k];
    *loss = tot * c0.inv_n;
    double *acc = r.ctx[0].g;  /* carve zeroed it */
    for (int k = 0; grad && k < nk; k++) {
      const double *gk = r.g + (size_t)k * p->n;
      for (size_t i = 0; i < p->n; i++) acc[i] += gk[i];
    }
    for (size_t i = 0; grad && i < p->n; i++) grad[i] = (float)acc[i];
  }
  for (int w = 0; w < nw; w++) sqlite3_free(mem[w]);
  sqlite3_free(r.ctx);
  sqlite3_free(r.loss);
  sqlite3_free(r.g);
  return rc;
}

int rnn_loss_grad(const rnn_params *p, const rnn_batch *b, float *grad, double *loss, float *hT, rnn_err *err) {
  return rnn_loss_grad_pool(p, b, grad, loss, hT, NULL, err);
}

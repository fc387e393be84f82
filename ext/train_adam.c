/*
** train_adam.c: one optimiser step of rnn_train() (train.c): gradient-norm
** clipping as torch.nn.utils.clip_grad_norm_, then Adam as torch.optim.Adam
** (PyTorch 1.13's single-tensor code, amsgrad and maximize off).
**
** Rules kept:
**  1. Clipping (clip > 0): each tensor's L2 norm, then the norm of those
**     norms is total; coef = clip / (total + 1e-6) in float, and when coef < 1
**     every gradient is multiplied by it (torch multiplies by min(coef, 1)
**     always; times 1.0 changes nothing).
**  2. Adam, elementwise in float with each constant rounded to float as torch
**     does for a Python scalar: g += wd * w; m = m * b1 + (1 - b1) * g;
**     v = v * b2 + (1 - b2) * g * g; step_size = lr / (1 - b1^t) and
**     bc2 = sqrt(1 - b2^t) in double; w += (-step_size * m) / (sqrt(v) / bc2 + eps).
**  3. Plain loops in a fixed order, compiled without FMA contraction
**     (-ffp-contract=off), so the same gradients give the same bytes on every
**     machine. (torch's vectorised kernels may fuse a multiply-add, so torch
**     itself can differ from this in the last bit.)
*/
#include "train_drive.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <string.h>

int rnn_train_adam_init(train_adam *a, size_t n, rnn_err *err) {
  memset(a, 0, sizeof(*a));
  a->m = sqlite3_malloc64(sizeof(float) * (n ? n : 1));
  a->v = sqlite3_malloc64(sizeof(float) * (n ? n : 1));
  if (!a->m || !a->v) return rnn_err_nomem(err);
  memset(a->m, 0, sizeof(float) * n);
  memset(a->v, 0, sizeof(float) * n);
  a->n = n;
  return SQLITE_OK;
}

/* Rule 1. */
static void clip_grad(const rnn_params *p, float *grad, double max_norm) {
  double sq = 0;
  for (int k = 0; k < p->n_tensors; k++) {
    const rnn_tensor *t = &p->t[k];
    size_t n = (size_t)t->rows * (size_t)t->cols;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)grad[t->off + i] * grad[t->off + i];
    float norm = (float)sqrt(s);
    sq += (double)norm * norm;
  }
  float total = (float)sqrt(sq);
  float coef = (float)max_norm / (total + 1e-6f);
  if (!(coef < 1.0f)) return;
  for (size_t i = 0; i < p->n; i++) grad[i] = grad[i] * coef;
}

/* Rule 2. */
void rnn_train_adam_step(train_adam *a, const train_opts *o, rnn_params *p, float *grad) {
  if (o->clip > 0) clip_grad(p, grad, o->clip);
  a->t++;
  const float b1 = (float)o->beta1, b2 = (float)o->beta2;
  const float c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
  const float wd = (float)o->weight_decay, eps = (float)o->eps;
  const double bc1 = 1.0 - pow(o->beta1, (double)a->t);
  const float bc2 = (float)sqrt(1.0 - pow(o->beta2, (double)a->t));
  const float neg_step = (float)(-(o->lr / bc1));
  float *w = p->w, *m = a->m, *v = a->v;
  for (size_t i = 0; i < a->n; i++) {
    float g = grad[i];
    if (o->weight_decay != 0) g = g + wd * w[i];
    m[i] = m[i] * b1;
    m[i] = m[i] + c1 * g;
    v[i] = v[i] * b2;
    v[i] = v[i] + c2 * g * g;
    float denom = sqrtf(v[i]) / bc2 + eps;
    w[i] = w[i] + neg_step * m[i] / denom;
  }
}

void rnn_train_adam_free(train_adam *a) {
  sqlite3_free(a->m);
  sqlite3_free(a->v);
  memset(a, 0, sizeof(*a));
}

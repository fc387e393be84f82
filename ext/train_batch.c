/*
** train_batch.c: from the rows rnn_train() read (train_data.c) to batches:
** the validation split, standardisation, windows (rules 6-8 of train_data.c),
** the window shuffle and the batch buffers.
**
** Rules kept:
**  1. Windows are listed series by series in key order, each series' windows
**     in time order: training windows in one list, validation windows in
**     another.
**  2. Each epoch the training windows are taken in that order, or (shuffle:
**     true) in the order a Fisher-Yates shuffle of it gives with splitmix64
**     seeded once with `seed` at the start of the call: for i from n - 1 down
**     to 1, j = next() % (i + 1), swap. Every epoch shuffles the listed order
**     afresh; the generator runs on across epochs.
**  3. Batches are consecutive runs of batch_size windows of that order (the
**     last may be smaller), padded to their longest window; validation
**     batches take the validation list in order.
*/
#include "train_drive.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <string.h>

void rnn_train_shuffle(int64_t *idx, int64_t n, uint64_t *state) {
  for (int64_t i = n - 1; i >= 1; i--) {
    int64_t j = (int64_t)(rnn_splitmix64(state) % (uint64_t)(i + 1));
    int64_t t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
}

/* Series s's training rows [a, a + n): all of it, none (held out), or its head. */
static void train_part(const train_data *d, const train_opts *o, int64_t s, int64_t *a, int64_t *n) {
  int64_t len = d->start[s + 1] - d->start[s];
  int64_t nval_series = (int64_t)floor((double)d->n_series * o->val_fraction);
  *a = d->start[s];
  if (o->val_series) *n = s < d->n_series - nval_series ? len : 0;
  else *n = len - (int64_t)floor((double)len * o->val_fraction);
}

/* Mean and population std over v[rows][ld], column i, of the training rows; std 0 -> 1. */
static void stats(const train_data *d, const train_opts *o, const float *v, int ld, float *mean, float *sd) {
  for (int i = 0; i < ld; i++) {
    double sum = 0, ss = 0;
    int64_t cnt = 0;
    for (int64_t s = 0; s < d->n_series; s++) {
      int64_t a, n;
      train_part(d, o, s, &a, &n);
      for (int64_t r = a; r < a + n; r++) sum += v[(size_t)r * ld + i];
      cnt += n;
    }
    double mu = cnt ? sum / (double)cnt : 0;
    for (int64_t s = 0; s < d->n_series; s++) {
      int64_t a, n;
      train_part(d, o, s, &a, &n);
      for (int64_t r = a; r < a + n; r++) {
        double e = v[(size_t)r * ld + i] - mu;
        ss += e * e;
      }
    }
    double sdv = cnt ? sqrt(ss / (double)cnt) : 0;
    mean[i] = (float)mu;
    sd[i] = (float)sdv > 0 && isfinite((float)sdv) ? (float)sdv : 1.0f;
  }
}

static void apply(float *v, int64_t rows, int ld, const float *mean, const float *sd) {
  for (int64_t r = 0; r < rows; r++) {
    for (int i = 0; i < ld; i++) v[(size_t)r * ld + i] = (v[(size_t)r * ld + i] - mean[i]) / sd[i];
  }
}

static int standardise(train_data *d, const train_opts *o, rnn_err *err) {
  d->in_mean = sqlite3_malloc64(sizeof(float) * 2 * ((size_t)d->n_in + (size_t)d->n_out));
  if (!d->in_mean) return rnn_err_nomem(err);
  d->in_std = d->in_mean + d->n_in;
  d->out_mean = d->in_std + d->n_in;
  d->out_std = d->out_mean + d->n_out;
  stats(d, o, d->x, d->n_in, d->in_mean, d->in_std);
  if (o->task == TASK_REGRESS) stats(d, o, d->y, d->n_out, d->out_mean, d->out_std);
  if (o->task == TASK_NEXT) {
    memcpy(d->out_mean, d->in_mean, sizeof(float) * (size_t)d->n_in);
    memcpy(d->out_std, d->in_std, sizeof(float) * (size_t)d->n_in);
  }
  apply(d->x, d->rows, d->n_in, d->in_mean, d->in_std);
  if (o->task == TASK_REGRESS) apply(d->y, d->rows, d->n_out, d->out_mean, d->out_std);
  if (o->task == TASK_CLASSIFY) d->out_mean = d->out_std = NULL;
  return SQLITE_OK;
}

/* Append the windows of rows [a, a + n) of series s to w (count only when w is NULL). */
static int64_t cut(const train_data *d, const train_opts *o, int64_t s, int64_t a, int64_t n, train_window *w,
                   int *max_len) {
  if (o->task == TASK_CLASSIFY) {
    if (n < 1) return 0;
    if (w) *w = (train_window){a, a, (int)n, d->label[s]};
    if (n > *max_len) *max_len = (int)n;
    return 1;
  }
  const int next = o->task == TASK_NEXT;
  int64_t steps = next ? n - 1 : n, k = 0;
  for (int64_t t = 0; t < steps; t += o->window, k++) {
    int len = (int)(steps - t < o->window ? steps - t : o->window);
    if (w) w[k] = (train_window){a + t, a + t + next, len, 0};
    if (len > *max_len) *max_len = len;
  }
  return k;
}

/* Rule 1: fill (or count, when tw and vw are NULL) the window lists. */
static void windows(train_data *d, const train_opts *o, train_window *tw, train_window *vw) {
  d->n_train = d->n_val = 0;
  d->max_len = 0;
  for (int64_t s = 0; s < d->n_series; s++) {
    int64_t a, n, len = d->start[s + 1] - d->start[s];
    train_part(d, o, s, &a, &n);
    d->n_train += cut(d, o, s, a, n, tw ? tw + d->n_train : NULL, &d->max_len);
    d->n_val += cut(d, o, s, a + n, len - n, vw ? vw + d->n_val : NULL, &d->max_len);
  }
}

int rnn_train_data_prepare(train_data *d, const train_opts *o, rnn_err *err) {
  windows(d, o, NULL, NULL);
  if (d->n_train == 0) {
    return rnn_err_set(err, TRAIN_FN "(): no training data: the query returned %lld row%s in %lld series, which "
                       "leave no training window%s", (long long)d->rows, d->rows == 1 ? "" : "s",
                       (long long)d->n_series, o->task == TASK_NEXT ? " (task next needs 2 rows of a series)" : "");
  }
  if (o->standardize && standardise(d, o, err) != SQLITE_OK) return err->rc;
  d->train = sqlite3_malloc64(sizeof(train_window) * (size_t)d->n_train);
  d->val = sqlite3_malloc64(sizeof(train_window) * ((size_t)d->n_val + 1));
  if (!d->train || !d->val) return rnn_err_nomem(err);
  windows(d, o, d->train, d->val);
  return SQLITE_OK;
}

void rnn_train_data_free(train_data *d) {
  sqlite3_free(d->x);
  sqlite3_free(d->y);
  sqlite3_free(d->start);
  sqlite3_free(d->label);
  sqlite3_free(d->in_mean);
  sqlite3_free(d->train);
  sqlite3_free(d->val);
  memset(d, 0, sizeof(*d));
}

int rnn_train_batch_alloc(train_batch_buf *bb, const train_data *d, const train_opts *o, rnn_err *err) {
  memset(bb, 0, sizeof(*bb));
  int64_t most = d->n_train > d->n_val ? d->n_train : d->n_val;
  int B = most < o->batch_size ? (int)most : o->batch_size;
  size_t steps = (size_t)B * (size_t)d->max_len;
  if (steps * (size_t)(d->n_in + d->n_out) > (size_t)RNN_TRAIN_MAX_VALUES) {
    return rnn_err_set(err, TRAIN_FN "(): a batch of %d windows of %d steps is more than %d values: lower "
                       "batch_size%s", B, d->max_len, RNN_TRAIN_MAX_VALUES,
                       o->task == TASK_CLASSIFY ? "" : " or window");
  }
  bb->x = sqlite3_malloc64(sizeof(float) * steps * (size_t)d->n_in + 1);
  bb->y = sqlite3_malloc64(sizeof(float) * steps * (size_t)d->n_out + 1);
  bb->len = sqlite3_malloc64(sizeof(int) * (size_t)B);
  bb->label = sqlite3_malloc64(sizeof(int) * (size_t)B);
  if (!bb->x || !bb->y || !bb->len || !bb->label) return rnn_err_nomem(err);
  return SQLITE_OK;
}

/* Rule 3. */
void rnn_train_batch_fill(train_batch_buf *bb, const train_data *d, const train_opts *o, const train_window *w,
                      const int64_t *idx, int nb) {
  rnn_batch *b = &bb->b;
  const int I = d->n_in, O = d->n_out, cls = o->task == TASK_CLASSIFY;
  int T = 0;
  for (int k = 0; k < nb; k++) T = w[idx[k]].len > T ? w[idx[k]].len : T;
  memset(bb->x, 0, sizeof(float) * (size_t)nb * (size_t)T * (size_t)I);
  memset(bb->y, 0, sizeof(float) * (size_t)nb * (size_t)(cls ? 1 : T) * (size_t)O);
  for (int k = 0; k < nb; k++) {
    const train_window *wk = &w[idx[k]];
    bb->len[k] = wk->len;
    bb->label[k] = wk->label;
    memcpy(bb->x + (size_t)k * T * I, d->x + (size_t)wk->x0 * I, sizeof(float) * (size_t)wk->len * I);
    if (cls) bb->y[(size_t)k * O + wk->label] = 1.0f; /* one-hot, for mse */
    else if (o->task == TASK_NEXT) {
      memcpy(bb->y + (size_t)k * T * O, d->x + (size_t)wk->y0 * I, sizeof(float) * (size_t)wk->len * O);
    } else {
      memcpy(bb->y + (size_t)k * T * O, d->y + (size_t)wk->y0 * O, sizeof(float) * (size_t)wk->len * O);
    }
  }
  b->B = nb;
  b->T = T;
  b->x = bb->x;
  b->len = bb->len;
  b->target = cls ? RNN_TARGET_LAST : RNN_TARGET_STEP;
  b->loss = o->loss;
  b->y = bb->y;
  b->label = bb->label;
  b->h0 = NULL;
}

void rnn_train_batch_free(train_batch_buf *bb) {
  sqlite3_free(bb->x);
  sqlite3_free(bb->y);
  sqlite3_free(bb->len);
  sqlite3_free(bb->label);
  memset(bb, 0, sizeof(*bb));
}

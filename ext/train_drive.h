/*
** train_drive.h: the pieces of the rnn_train() driver (train.c), shared by
** its files only: options (train_opts.c), rows, splits and batches
** (train_data.c), and Adam with clipping (train_adam.c). Nothing outside the
** driver includes it; the training math is behind train.h.
*/
#ifndef RNN_TRAIN_DRIVE_H
#define RNN_TRAIN_DRIVE_H
#include "train.h"
#include "json.h"

#define TRAIN_FN "rnn_train"
/* Values (rows x (features + targets)) one call reads: 256 MiB of float32. */
#define RNN_TRAIN_MAX_VALUES (1 << 26)
#define RNN_TRAIN_MAX_EPOCHS 1000000
#define RNN_TRAIN_MAX_BATCH 65536
#define RNN_TRAIN_MAX_WINDOW 1000000
#define RNN_TRAIN_MAX_LABELS 65536

enum { TASK_NEXT, TASK_REGRESS, TASK_CLASSIFY };

/* Options, as parsed (train_opts.c); defaults in the README "Training". */
typedef struct train_opts {
  int task;             /* TASK_* */
  int loss;             /* RNN_LOSS_* */
  int epochs;
  double lr, beta1, beta2, eps, weight_decay, clip;
  int batch_size, window;
  int standardize, shuffle, keep_on_interrupt;
  double val_fraction;
  int val_series;       /* 1: val_split "series", 0: "tail" */
  int patience;
  double max_seconds;
  uint64_t seed;
  char *save_as;        /* NULL: not saved; owned */
  int n_labels;         /* options.labels, 0 when not given */
  char **labels;        /* [n_labels] into labels_text; owned with it */
  char *labels_text;    /* owned */
  char *json;           /* the options with every default, a JSON object text; owned */
} train_opts;

/* Parse options (NULL or a JSON object text); err gets the exact message. */
int rnn_train_opts_parse(const char *z, int n, train_opts *o, rnn_err *err);
void rnn_train_opts_free(train_opts *o);
/* Append x as the shortest JSON number that reads back as the same double;
** 0 when out of memory (nothing appended). */
int rnn_train_json_number(sqlite3_str *s, double x);

/* One run of consecutive steps that the model reads from a zero state. */
typedef struct train_window {
  int64_t x0;           /* first input row (index into train_data.x) */
  int64_t y0;           /* first target row: x0 (regress), x0 + 1 (next) */
  int len;              /* steps */
  int label;            /* classify: the series' class */
} train_window;

/* Everything read from the query, standardised, cut into windows (train_data.c). */
typedef struct train_data {
  int n_in, n_out;      /* features per row; outputs of the model */
  int n_tcol;           /* target columns in the query: 0, n_out or 1 */
  int64_t rows, cap;    /* rows read; room in x and y */
  float *x;             /* [rows][n_in] features (standardised once split); owned */
  float *y;             /* [rows][n_out] regress targets; owned; NULL otherwise */
  int64_t n_series;
  int64_t *start;       /* [n_series + 1] first row of each series; owned */
  int *label;           /* [n_series] classify: class of each series; owned */
  uint64_t hash;        /* FNV-1a 64 of the rows as read (README) */
  float *in_mean, *in_std, *out_mean, *out_std; /* [n_in], [n_in], [n_out], [n_out]; NULL: not standardised; owned */
  train_window *train, *val; /* owned */
  int64_t n_train, n_val;
  int max_len;          /* the longest window */
} train_data;

/* Run the query and read every row (rules in train_data.c). */
int rnn_train_data_read(sqlite3 *db, const char *query, int nquery, const train_opts *o, const rnn_model *m,
                    train_data *d, rnn_err *err);
/* Split, standardise and cut into windows. */
int rnn_train_data_prepare(train_data *d, const train_opts *o, rnn_err *err);
void rnn_train_data_free(train_data *d);

/* A batch's buffers, sized once for batch_size windows of max_len steps. */
typedef struct train_batch_buf {
  float *x, *y;
  int *len, *label;
  rnn_batch b;
} train_batch_buf;
int rnn_train_batch_alloc(train_batch_buf *bb, const train_data *d, const train_opts *o, rnn_err *err);
/* Fill bb->b with windows w[idx[0..nb)]. */
void rnn_train_batch_fill(train_batch_buf *bb, const train_data *d, const train_opts *o, const train_window *w,
                      const int64_t *idx, int nb);
void rnn_train_batch_free(train_batch_buf *bb);

/* Fisher-Yates over idx[0..n) with rnn_splitmix64 (train.h, rnn_init's generator):
** j = next() % (i + 1), i from n - 1 down to 1. */
void rnn_train_shuffle(int64_t *idx, int64_t n, uint64_t *state);

/* Adam as torch.optim.Adam (amsgrad off) with torch's clip_grad_norm_ first (train_adam.c). */
typedef struct train_adam {
  size_t n;
  float *m, *v;         /* [n] moments; owned */
  int64_t t;            /* steps taken */
} train_adam;
int rnn_train_adam_init(train_adam *a, size_t n, rnn_err *err);
/* Clip grad (o->clip > 0) as clip_grad_norm_ over the tensors of p, then one step on p->w. */
void rnn_train_adam_step(train_adam *a, const train_opts *o, rnn_params *p, float *grad);
void rnn_train_adam_free(train_adam *a);
#endif

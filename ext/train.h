/*
** train.h: training in C (issue 14). The contract between the training math
** (grad.c: parameters, initialisation, forward and backward, BLOB writing) and
** the driver (train.c: rnn_train(), reading rows, batches, Adam, epochs).
**
** Training works on the parameters in PyTorch's own layout (the tensors of
** nn.RNN/LSTM/GRU and the head nn.Linear, row-major, as torch stores them), not
** on rnn_model's transposed, padded arena: gradients then compare to torch
** autograd tensor by tensor, and Adam is elementwise over one flat vector. A
** trained model is written as a model BLOB (rnn_params_to_blob) and scored by
** loading that BLOB like any other, so inference never depends on this file.
**
** Error convention: util.h (return an SQLite code, message in err).
*/
#ifndef RNN_TRAIN_H
#define RNN_TRAIN_H
#include "model.h"

/* What rnn_init(spec) builds; the same fields as its JSON spec (README). */
typedef struct rnn_spec {
  int cell;        /* CELL_RNN_TANH, CELL_RNN_RELU, CELL_LSTM, CELL_GRU, CELL_SEED */
  int n_in;        /* input_size */
  int hidden;      /* hidden_size */
  int layers;      /* num_layers (seed cell: 1) */
  int proj;        /* LSTM proj_size, 0 for none */
  int bias;        /* 1: bias tensors (PyTorch's default) */
  int n_out;       /* head output_size; 0: no head, the output is h */
  int out_act;     /* ACT_*: head output activation */
  int hidden_act;  /* seed cell: ACT_TANH (default), ACT_RELU, ACT_SIGMOID, ACT_NONE */
} rnn_spec;

/* One tensor of the flat vector, named as the model BLOB names it. */
typedef struct rnn_tensor {
  char name[64];
  int rows, cols;  /* cols 1 for a bias vector */
  size_t off;      /* floats from the start of the vector */
} rnn_tensor;

#define RNN_MAX_TRAIN_LAYERS 16
#define RNN_MAX_TRAIN_TENSORS (5 * RNN_MAX_TRAIN_LAYERS + 4)  /* w_ih, w_hh, b_ih, b_hh, w_hr per layer; head */

typedef struct rnn_params {
  rnn_spec spec;
  int n_tensors;
  rnn_tensor t[RNN_MAX_TRAIN_TENSORS];
  size_t n;        /* floats in w */
  float *w;        /* [n] every tensor, in t[] order; owned (sqlite3_malloc) */
} rnn_params;

/* New parameters drawn as PyTorch initialises them (the generator and its
** use are documented in README "Training"), same seed, same bytes. */
int rnn_params_init(const rnn_spec *s, uint64_t seed, rnn_params **out, rnn_err *err);
/* Parameters of a loaded model (unidirectional only; others are an error). */
int rnn_params_from_model(const rnn_model *m, rnn_params **out, rnn_err *err);
/* A model BLOB (safetensors) of p; meta is a JSON object text whose members
** become the BLOB's __metadata__ (NULL: none). *blob is sqlite3_malloc'd. */
int rnn_params_to_blob(const rnn_params *p, const char *meta, unsigned char **blob, size_t *n, rnn_err *err);
void rnn_params_free(rnn_params *p);

enum { RNN_TARGET_STEP, RNN_TARGET_LAST };  /* a target per step, or one per sequence */
enum { RNN_LOSS_MSE, RNN_LOSS_CE };

/* A mini-batch: B sequences padded to T steps. */
typedef struct rnn_batch {
  int B, T;
  const float *x;     /* [B][T][n_in] inputs as the model sees them (standardised) */
  const int *len;     /* [B] steps of each sequence, 1..T */
  int target;         /* RNN_TARGET_* */
  int loss;           /* RNN_LOSS_* */
  const float *y;     /* MSE: [B][T][n_out] (STEP) or [B][n_out] (LAST); standardised */
  const int *label;   /* CE: [B][T] (STEP) or [B] (LAST) class index, -1: no target */
  const float *h0;    /* initial state per sequence, rnn_batch_state_floats(p) each, or NULL: zeros */
} rnn_batch;

/* Floats of one sequence's carried state: h for every layer, then c (LSTM). */
size_t rnn_batch_state_floats(const rnn_params *p);

/* Forward over the batch, then (grad != NULL) backward. *loss is torch's
** reduction='mean': MSE over every counted target element, CE over counted
** labels (CE reads the head's output before out_act as logits). grad has p->n
** floats and is overwritten with d(loss)/d(w). hT (may be NULL) receives each
** sequence's state after its last step, [B] x rnn_batch_state_floats. */
int rnn_loss_grad(const rnn_params *p, const rnn_batch *b, float *grad, double *loss, float *hT, rnn_err *err);

/* ---- Added by trainmath (not in the first contract) ---- */

/* SQLITE_OK if spec s is one rnn_params_init accepts (sizes within the
** loader's limits, proj only for LSTM, ...), else SQLITE_ERROR with the rule. */
int rnn_spec_check(const rnn_spec *s, rnn_err *err);
/* The terms rnn_loss_grad's mean loss divides by: MSE target elements of the
** counted steps, or labels other than -1 (0 for a batch it would refuse). A
** driver weights batch losses by it. */
uint64_t rnn_batch_targets(const rnn_params *p, const rnn_batch *b);
/* Floats of the parameters of a checked spec (rnn_params.n), without allocating. */
uint64_t rnn_spec_floats(const rnn_spec *s);
/* The generator of README "Training": advances *state, returns the next value.
** rnn_init draws weights with it; the driver shuffles windows with it. */
uint64_t rnn_splitmix64(uint64_t *state);
/* The most floats rnn_loss_grad's work area may take (tape of one sequence and
** the gradient accumulators); a batch needing more is an error. */
#define RNN_MAX_TRAIN_WORK (1u << 27)

/* ---- Added by trainthreads ---- */

/* rnn_loss_grad with the batch's chunks (grad.c rule 5) run on pool's
** threads (train_pool.h; NULL: the caller's thread). The same bits for every
** pool size; rnn_loss_grad is this with pool NULL. */
struct rnn_pool;
int rnn_loss_grad_pool(const rnn_params *p, const rnn_batch *b, float *grad, double *loss, float *hT,
                       struct rnn_pool *pool, rnn_err *err);
/* Sequences per batch are cut into at most this many chunks (a fixed partition). */
#define RNN_GRAD_CHUNKS 8

/* trainsql.c: the SQL scalar rnn_init(spec); and for the tests only
** (internal, DIRECTONLY), rnn_grad_internal(model, batch), which runs
** rnn_loss_grad, and rnn_params_internal(model, meta), which runs
** rnn_params_from_model then rnn_params_to_blob. */
void rnn_init_func(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_grad_internal_func(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_params_internal_func(sqlite3_context *ctx, int argc, sqlite3_value **argv);
#endif

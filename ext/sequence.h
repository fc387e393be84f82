/*
** sequence.h: input from SQL values: whole sequences (sequence.c), window rows
** and features (features.c), and the rnn_sequence() aggregate (seqagg.c).
*/
#ifndef RNN_SEQUENCE_H
#define RNN_SEQUENCE_H
#include "registry.h"

#define RNN_MAX_SEQ_VALUES (1 << 25)  /* T * I float32 values in one sequence: 128 MiB */

/* A sequence read from a value for a model: xs[T][I] raw features; tokens[T]
** holds the vocab index of each step when the value was TEXT for a vocab model
** (else NULL). Free with rnn_seq_free. */
typedef struct rnn_seq {
  float *xs;
  int64_t T;
  int *tokens;
} rnn_seq;

/* SQLITE_OK with out filled, or for a NULL value (no error) with out->xs NULL
** and out->T 0; else the code of the error recorded in err (the message names
** fn). A sequence read has at least one step, so out->xs is never NULL then. */
int rnn_seq_read(rnn_err *err, const rnn_model *m, sqlite3_value *v, const char *fn, rnn_seq *out);
void rnn_seq_free(rnn_seq *s);

/* One row's input from argv[first..argc) (1 for the window functions, after the
** model; 2 for rnn_step, after the state): numbers, or for a vocab model one
** TEXT token or INTEGER index (one-hot). Messages number arguments from 1 and
** features from 1. SQLITE_OK with *used 1 (row filled), or 0 for a row to
** skip (a NULL feature, no error); else the code of the error recorded in err. */
int rnn_row_read(rnn_err *err, const rnn_model *m, const char *fn, int first, int argc, sqlite3_value **argv,
                 float *row, int *used);

/* One feature (argument `arg`, 1-based, feature number `feature`) as float32.
** Returns an SQLite code, the error in err (features.c rule 1). */
int rnn_feature_read(rnn_err *err, const char *fn, int arg, int feature, sqlite3_value *v, float *out);
#endif

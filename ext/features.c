/*
** features.c: owns reading feature values from SQL arguments: one row of the
** window functions rnn_predict()/rnn_hidden() (window.c), and the features of
** rnn_sequence() (seqagg.c).
**
**   SELECT rnn_predict('sensor', temp, humidity) OVER (ORDER BY t) FROM readings;
**   SELECT rnn_predict('lang', ch) OVER (ORDER BY i) FROM chars;  -- a vocab model
**
** Rules kept:
**  1. A feature is INTEGER or REAL and rounds to a finite float32 (f32.h).
**     TEXT that reads as a number (what `.import --csv` stores) is refused with
**     a hint to CAST it: guessing would hide a schema problem.
**  2. A row with any NULL feature is skipped (the caller's state stays).
**  3. A model with a `vocab` takes, as its only feature, one TEXT token or an
**     INTEGER token index, one-hot encoded: for every vocab size, one token
**     included, so a row means what the same token means to rnn_eval().
**  4. Otherwise the number of features must equal the model's input size.
*/
#include "f32.h"
#include "sequence.h"
#include "tokenizer.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

/* Rule 1: TEXT that SQLite would read as a number under numeric affinity. */
static int looks_numeric(sqlite3_value *v) {
  sqlite3_value *d = sqlite3_value_dup(v);
  if (!d) return 0;
  int t = sqlite3_value_numeric_type(d); /* converts the copy only */
  sqlite3_value_free(d);
  return t == SQLITE_INTEGER || t == SQLITE_FLOAT;
}

int rnn_feature_read(rnn_err *err, const char *fn, int arg, int feature, sqlite3_value *v, float *out) {
  int t = sqlite3_value_type(v);
  if (t != SQLITE_INTEGER && t != SQLITE_FLOAT) {
    if (t == SQLITE_TEXT && looks_numeric(v)) {
      return rnn_err_set(err, "%s(): argument %d (feature %d) is TEXT %.40U, expected a number: numbers imported "
                         "as TEXT (e.g. by .import --csv) need CAST(... AS REAL)", fn, arg, feature,
                         sqlite3_value_text(v), sqlite3_value_bytes(v));
    }
    return rnn_err_set(err, "%s(): argument %d (feature %d) is %s, expected a number", fn, arg, feature,
                       rnn_type_name(t));
  }
  double d = sqlite3_value_double(v);
  if (!rnn_f32_finite(d)) {
    return rnn_err_set(err, "%s(): argument %d (feature %d) is %!.17g, expected a finite float32 number", fn, arg,
                       feature, d);
  }
  *out = (float)d;
  return SQLITE_OK;
}

/* Rule 3: the one-hot row of a token or token index. Returns an SQLite code,
** the error in err (util.h). */
static int read_token(rnn_err *err, const rnn_model *m, const char *fn, int arg, sqlite3_value *v, float *row) {
  int t = sqlite3_value_type(v), idx = -1;
  if (t == SQLITE_TEXT) {
    const char *z = (const char *)sqlite3_value_text(v);
    int n = sqlite3_value_bytes(v);
    if (!z) return rnn_err_nomem(err);
    idx = rnn_model_token(m, z, n);
    if (idx < 0) idx = m->unknown;
    if (idx < 0) {
      return rnn_err_set(err, "%s(): argument %d %.40U is not a token of the model's vocab", fn, arg, z, n);
    }
  } else if (t == SQLITE_INTEGER) {
    sqlite3_int64 k = sqlite3_value_int64(v);
    if (k < 0 || k >= m->n_vocab) {
      return rnn_err_set(err, "%s(): argument %d is token index %lld, outside 0..%d", fn, arg, (long long)k,
                         m->n_vocab - 1);
    }
    idx = (int)k;
  } else {
    return rnn_err_set(err, "%s(): argument %d is %s, expected a token (TEXT) or a token index (INTEGER) of the "
                       "model's vocab", fn, arg, rnn_type_name(t));
  }
  memset(row, 0, sizeof(float) * (size_t)m->net.n_in);
  row[idx] = 1.0f;
  return SQLITE_OK;
}

/* Rules 3 and 4 for a row without a NULL, features argv[first..argc): an
** SQLite code, the error in err. */
static int read_row(rnn_err *err, const rnn_model *m, const char *fn, int first, int argc, sqlite3_value **argv,
                    float *row) {
  const int nf = argc - first;
  if (m->n_vocab && nf == 1) return read_token(err, m, fn, first + 1, argv[first], row);
  if (nf != m->net.n_in) {
    return rnn_err_set(err, "%s(): model expects %d feature%s, got %d", fn, m->net.n_in,
                       m->net.n_in == 1 ? "" : "s", nf);
  }
  for (int i = first; i < argc; i++) {
    if (rnn_feature_read(err, fn, i + 1, i - first + 1, argv[i], &row[i - first])) return err->rc;
  }
  return SQLITE_OK;
}

int rnn_row_read(rnn_err *err, const rnn_model *m, const char *fn, int first, int argc, sqlite3_value **argv,
                 float *row, int *used) {
  *used = 0;
  for (int i = first; i < argc; i++) {
    if (sqlite3_value_type(argv[i]) == SQLITE_NULL) return SQLITE_OK; /* rule 2 */
  }
  int rc = read_row(err, m, fn, first, argc, argv, row);
  *used = rc == SQLITE_OK;
  return rc;
}

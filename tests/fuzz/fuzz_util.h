/*
** fuzz_util.h: what the libFuzzer targets in tests/fuzz/ share: one connection
** with the extension linked in statically (-DSQLITE_CORE), the built-in valid
** models (tests/st_models.h), and running a statement to the end.
**
** A target aborts (which libFuzzer reports as a crash, with the input saved)
** only when an invariant of the extension breaks; SQL errors are expected
** outcomes of hostile input.
*/
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_models.h"

int sqlite3_rnn_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

/* Built-in models: each cell, a head or not, a vocab, a bidirectional one. */
enum { FM_GRU, FM_LSTM, FM_RNN, FM_SEED, FM_VOCAB, FM_BIDIR, FM_COUNT };
static const int fm_inputs[FM_COUNT] = {1, 2, 1, 1, 3, 1};
static unsigned char *fm_blob[FM_COUNT];
static size_t fm_len[FM_COUNT];

static inline void fuzz_die(const char *what, const char *detail) {
  fprintf(stderr, "invariant broken: %s\n%s\n", what, detail ? detail : "");
  abort();
}

static inline sqlite3 *fuzz_open(void) {
  sqlite3 *db = NULL;
  char *err = NULL;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) fuzz_die("sqlite3_open", sqlite3_errmsg(db));
  if (sqlite3_rnn_init(db, &err, NULL) != SQLITE_OK) fuzz_die("sqlite3_rnn_init", err);
  fm_blob[FM_GRU] = stm_recurrent("gru", 1, 4, 1, 1, 0, NULL, 1, &fm_len[FM_GRU]);
  fm_blob[FM_LSTM] = stm_recurrent("lstm", 2, 3, 2, 3, 0, "\"output_activation\":\"softmax\"", 2, &fm_len[FM_LSTM]);
  fm_blob[FM_RNN] = stm_recurrent("rnn_relu", 1, 3, 1, 0, 0, NULL, 3, &fm_len[FM_RNN]);
  fm_blob[FM_SEED] = stm_recurrent("seed", 1, 4, 1, 1, 0, "\"input_mean\":\"[0.5]\",\"input_std\":\"[2]\"", 4,
                                   &fm_len[FM_SEED]);
  fm_blob[FM_VOCAB] = stm_recurrent("gru", 3, 4, 1, 2, 0,
                                    "\"vocab\":\"[\\\"a\\\",\\\"b\\\",\\\"c\\\"]\","
                                    "\"labels\":\"[\\\"no\\\",\\\"yes\\\"]\"",
                                    5, &fm_len[FM_VOCAB]);
  fm_blob[FM_BIDIR] = stm_recurrent("gru", 1, 2, 1, 1, 1, NULL, 6, &fm_len[FM_BIDIR]);
  for (int i = 0; i < FM_COUNT; i++) {
    if (!fm_blob[i]) fuzz_die("out of memory building the models", NULL);
  }
  return db;
}

static inline void fuzz_exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) fuzz_die(sql, err);
}

/* A statement's outcome: rc and, for SQLITE_OK, its rows as text (malloc'd). */
typedef struct fuzz_result {
  int rc;
  char *text;       /* rows, or the error message */
} fuzz_result;

static inline void fuzz_result_free(fuzz_result *r) {
  free(r->text);
  r->text = NULL;
}

static inline void fr_put(fuzz_result *r, size_t *n, size_t *cap, const char *s, size_t k) {
  if (*n + k + 1 > *cap) {
    *cap = (*n + k + 1) * 2;
    char *z = realloc(r->text, *cap);
    if (!z) fuzz_die("out of memory", NULL);
    r->text = z;
  }
  memcpy(r->text + *n, s, k);
  *n += k;
  r->text[*n] = 0;
}

/* Runs a prepared statement to the end (then resets it), recording the rows. */
static inline fuzz_result fuzz_rows(sqlite3 *db, sqlite3_stmt *st) {
  fuzz_result r = {SQLITE_OK, NULL};
  size_t n = 0, cap = 0;
  int rc;
  fr_put(&r, &n, &cap, "", 0);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    for (int i = 0; i < sqlite3_column_count(st); i++) {
      char cell[40];
      switch (sqlite3_column_type(st, i)) {
        case SQLITE_NULL: fr_put(&r, &n, &cap, "NULL", 4); break;
        case SQLITE_INTEGER:
          snprintf(cell, sizeof(cell), "%lld", (long long)sqlite3_column_int64(st, i));
          fr_put(&r, &n, &cap, cell, strlen(cell));
          break;
        case SQLITE_FLOAT:
          snprintf(cell, sizeof(cell), "%.17g", sqlite3_column_double(st, i));
          fr_put(&r, &n, &cap, cell, strlen(cell));
          break;
        case SQLITE_TEXT: {
          const unsigned char *z = sqlite3_column_text(st, i);
          if (z) fr_put(&r, &n, &cap, (const char *)z, strlen((const char *)z));
          break;
        }
        default: {
          const unsigned char *p = sqlite3_column_blob(st, i);
          int k = sqlite3_column_bytes(st, i);
          for (int j = 0; p && j < k; j++) {
            snprintf(cell, sizeof(cell), "%02x", p[j]);
            fr_put(&r, &n, &cap, cell, 2);
          }
        }
      }
      fr_put(&r, &n, &cap, "|", 1);
    }
    fr_put(&r, &n, &cap, "\n", 1);
  }
  if (rc != SQLITE_DONE) {
    const char *msg = sqlite3_errmsg(db);
    n = 0;
    fr_put(&r, &n, &cap, msg, strlen(msg));
    r.rc = rc;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return r;
}

/* Prepares and runs sql, binding blob (if any) to ?1. A prepare error is an
** outcome too (a fuzzed frame clause may be invalid SQL). */
static inline fuzz_result fuzz_query(sqlite3 *db, const char *sql, const void *blob, int nblob) {
  sqlite3_stmt *st = NULL;
  fuzz_result r = {SQLITE_OK, NULL};
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) {
    const char *msg = sqlite3_errmsg(db);
    r.rc = rc;
    r.text = malloc(strlen(msg) + 1);
    if (!r.text) fuzz_die("out of memory", NULL);
    memcpy(r.text, msg, strlen(msg) + 1);
    return r;
  }
  if (blob && sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_blob(st, 1, blob, nblob, SQLITE_STATIC);
  r = fuzz_rows(db, st);
  sqlite3_finalize(st);
  return r;
}

/* Runs and discards the outcome. */
static inline void fuzz_run(sqlite3 *db, const char *sql, const void *blob, int nblob) {
  fuzz_result r = fuzz_query(db, sql, blob, nblob);
  fuzz_result_free(&r);
}
#endif

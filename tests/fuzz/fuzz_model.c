/*
** fuzz_model.c: libFuzzer target for the safetensors parser and the model
** builder (ext/json.c, ext/model.c), reached through SQL as a user would.
**
** Input: the bytes of a model BLOB, bound as ?1 to
**   SELECT rnn_info(?1)
** and, when the model loads, run over a 3-step sequence of zeros sized from its
** input_size, a 3-token TEXT (for vocab models) and a JSON sequence:
**   rnn_eval, rnn_classify, rnn_steps, rnn_forecast.
** Invariants (abort = finding):
**  1. A BLOB that rnn_info accepts evaluates: rnn_eval over a well-sized float32
**     sequence succeeds and returns REAL for one output, else a JSON array of
**     output_size numbers or nulls.
**  2. rnn_steps gives 3 rows for 3 steps, each hidden BLOB (num_directions *
**     (proj_size or hidden_size)) floats long.
** Seeds: tests/fuzz/corpus/fuzz_model (tests/fuzz/make_corpus.py).
*/
#include "fuzz_util.h"

static sqlite3 *db;
static sqlite3_stmt *q_info, *q_shape, *q_eval, *q_steps;

static void prep(const char *sql, sqlite3_stmt **st) {
  if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) fuzz_die(sql, sqlite3_errmsg(db));
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  db = fuzz_open();
  prep("SELECT rnn_info(?1)", &q_info);
  prep("SELECT json_extract(?1, '$.input_size'), json_extract(?1, '$.output_size'), "
       "json_extract(?1, '$.hidden_size'), json_extract(?1, '$.proj_size'), json_extract(?1, '$.bidirectional')",
       &q_shape);
  /* an output of one value may be +-Inf, which is REAL, not JSON */
  prep("SELECT x, typeof(x), CASE typeof(x) WHEN 'text' THEN json_array_length(x) END, c FROM "
       "(SELECT rnn_eval(?1, zeroblob(12 * ?2)) AS x, rnn_classify(?1, zeroblob(12 * ?2)) AS c)",
       &q_eval);
  prep("SELECT step, length(hidden) FROM rnn_steps(?1, zeroblob(12 * ?2))", &q_steps);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 20) return 0;
  const void *p = size ? (const void *)data : (const void *)"";
  sqlite3_bind_blob(q_info, 1, p, (int)size, SQLITE_STATIC);
  fuzz_result info = fuzz_rows(db, q_info);
  if (info.rc != SQLITE_OK) {
    fuzz_result_free(&info);
    return 0;
  }
  /* the model loaded: read its shape from its own rnn_info */
  info.text[strlen(info.text) - 2] = 0; /* drop "|\n" */
  sqlite3_bind_text(q_shape, 1, info.text, -1, SQLITE_STATIC);
  if (sqlite3_step(q_shape) != SQLITE_ROW) fuzz_die("rnn_info is not JSON", info.text);
  int I = sqlite3_column_int(q_shape, 0), O = sqlite3_column_int(q_shape, 1);
  int H = sqlite3_column_int(q_shape, 2), P = sqlite3_column_int(q_shape, 3);
  int dirs = sqlite3_column_int(q_shape, 4) ? 2 : 1;
  sqlite3_reset(q_shape);
  if (I < 1 || O < 1 || H < 1) fuzz_die("rnn_info sizes", info.text);

  /* invariant 1 */
  sqlite3_bind_blob(q_eval, 1, p, (int)size, SQLITE_STATIC);
  sqlite3_bind_int(q_eval, 2, I);
  int rc = sqlite3_step(q_eval);
  if (rc != SQLITE_ROW) fuzz_die("a model rnn_info accepts does not evaluate", sqlite3_errmsg(db));
  const char *type = (const char *)sqlite3_column_text(q_eval, 1);
  if (O == 1 ? strcmp(type, "real") != 0 && strcmp(type, "null") != 0
             : strcmp(type, "text") != 0 || sqlite3_column_int(q_eval, 2) != O) {
    fuzz_die("rnn_eval output shape differs from output_size", info.text);
  }
  sqlite3_reset(q_eval);
  sqlite3_clear_bindings(q_eval);

  /* invariant 2 */
  sqlite3_bind_blob(q_steps, 1, p, (int)size, SQLITE_STATIC);
  sqlite3_bind_int(q_steps, 2, I);
  int rows = 0;
  while ((rc = sqlite3_step(q_steps)) == SQLITE_ROW) {
    if (sqlite3_column_int(q_steps, 0) != rows || sqlite3_column_int(q_steps, 1) != 4 * dirs * (P ? P : H)) {
      fuzz_die("rnn_steps row shape", info.text);
    }
    rows++;
  }
  if (rc != SQLITE_DONE || rows != 3) fuzz_die("rnn_steps over 3 steps", sqlite3_errmsg(db));
  sqlite3_reset(q_steps);
  sqlite3_clear_bindings(q_steps);

  /* other paths; errors are fine here */
  fuzz_run(db, "SELECT rnn_eval(?1, 'abcab'), rnn_classify(?1, 'cba')", p, (int)size);
  fuzz_run(db, "SELECT rnn_eval(?1, '[0.5, -1, 2]'), rnn_eval(?1, '[[0.5, 1], [2, 3], [4, 5]]')", p, (int)size);
  fuzz_run(db, "SELECT step, output FROM rnn_forecast(?1, '[0.25, 0.5]', 4)", p, (int)size);
  fuzz_run(db, "SELECT rnn_predict(?1, x) OVER (ORDER BY x ROWS 1 PRECEDING) FROM (SELECT 1 AS x UNION SELECT 2)",
           p, (int)size);
  fuzz_result_free(&info);
  return 0;
}

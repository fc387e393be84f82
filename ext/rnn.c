/*
** rnn.c: the entry point and the scalar functions of sqlite-rnn.
**
**   .load ./rnn
**   SELECT rnn_version();                       -- '0.1.0'
**   SELECT rnn_info('sensor');                  -- JSON: cell, sizes, metadata
**   SELECT rnn_cache_stats();                   -- JSON: cache counters
**
** Files: json.c (header JSON), model.c (safetensors -> model), cells.c and
** kern_*.c (the maths), registry.c (lookup and cache), window.c (rnn_predict,
** rnn_hidden), sequence.c (sequence values, rnn_sequence), eval.c (rnn_eval,
** rnn_classify), tvf.c (rnn_steps, rnn_forecast), poll.c (stopping and bounding
** long calls), util.c (errors, outputs).
**
** Rules kept:
**  1. Loading creates no tables and no process-global state: everything hangs off
**     a per-connection rnn_conn, freed when the last function is destroyed.
**  2. Registration stops at the first failure and names the function.
**  3. Each function's flags are chosen for what it reads (comments below).
*/
#include "registry.h"
SQLITE_EXTENSION_INIT1
#include <string.h>

#define RNN_VERSION "0.1.0"

int rnn_register_window(sqlite3 *db, rnn_conn *conn, char **pzErr);
int rnn_register_eval(sqlite3 *db, rnn_conn *conn, char **pzErr);
int rnn_register_sequence(sqlite3 *db, rnn_conn *conn, char **pzErr);
int rnn_register_tvf(sqlite3 *db, rnn_conn *conn, char **pzErr);

static void fn_version(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  (void)argv;
  sqlite3_result_text(ctx, RNN_VERSION, -1, SQLITE_STATIC);
}

static void fn_info(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  rnn_entry *e = rnn_resolve(ctx, argv[0], "rnn_info");
  if (!e) return;
  sqlite3_result_text(ctx, e->model->info, -1, SQLITE_TRANSIENT);
  sqlite3_result_subtype(ctx, RNN_SUBTYPE_JSON);
  rnn_entry_release(e);
}

static void fn_cache_stats(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  (void)argv;
  char *z = rnn_cache_stats_json(sqlite3_user_data(ctx));
  if (!z) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  sqlite3_result_text(ctx, z, -1, sqlite3_free);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
__attribute__((visibility("default"))) int sqlite3_rnn_init(sqlite3 *db, char **pzErrMsg,
                                                            const sqlite3_api_routines *pApi) {
  SQLITE_EXTENSION_INIT2(pApi);
  static const struct {
    const char *name;
    int nargs;
    int flags;
    void (*fn)(sqlite3_context *, int, sqlite3_value **);
  } scalars[] = {
    /* a constant: safe anywhere, including schemas of untrusted databases */
    {"rnn_version", 0, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, fn_version},
    /* a TEXT argument reads rnn_models: neither deterministic nor innocuous */
    {"rnn_info", 1, SQLITE_UTF8 | SQLITE_RESULT_SUBTYPE, fn_info},
    /* reports connection state: changes between calls, top-level SQL only */
    {"rnn_cache_stats", 0, SQLITE_UTF8 | SQLITE_DIRECTONLY, fn_cache_stats},
  };
  if (sqlite3_libversion_number() < 3025000) {
    *pzErrMsg = sqlite3_mprintf("sqlite-rnn needs SQLite 3.25.0 or newer (window functions), this is %s",
                                sqlite3_libversion());
    return SQLITE_ERROR;
  }
  rnn_conn *conn = rnn_conn_new(db);
  if (!conn) return SQLITE_NOMEM;
  rnn_conn_ref(conn); /* held by this function until registration ends */
  int rc = SQLITE_OK;
  for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]) && rc == SQLITE_OK; i++) {
    rnn_conn_ref(conn);
    rc = sqlite3_create_function_v2(db, scalars[i].name, scalars[i].nargs, scalars[i].flags, conn, scalars[i].fn,
                                    NULL, NULL, rnn_conn_unref);
    if (rc != SQLITE_OK) {
      *pzErrMsg = sqlite3_mprintf("cannot register %s(): %s", scalars[i].name, sqlite3_errstr(rc));
    }
  }
  if (rc == SQLITE_OK) rc = rnn_register_window(db, conn, pzErrMsg);
  if (rc == SQLITE_OK) rc = rnn_register_eval(db, conn, pzErrMsg);
  if (rc == SQLITE_OK) rc = rnn_register_sequence(db, conn, pzErrMsg);
  if (rc == SQLITE_OK) rc = rnn_register_tvf(db, conn, pzErrMsg);
  rnn_conn_unref(conn);
  return rc;
}

/*
** rnn.c: the entry point, the table that registers every SQL function and
** table-valued function, and the scalar functions rnn_version, rnn_info and
** rnn_cache_stats.
**
**   .load ./rnn
**   SELECT rnn_version();                       -- '0.1.0'
**   SELECT rnn_info('sensor');                  -- JSON: cell, sizes, metadata
**   SELECT rnn_cache_stats();                   -- JSON: cache counters
**
** Files: json.c (JSON), model.c (safetensors -> model), info.c (rnn_info's
** JSON), tokenizer.c (vocab and labels), cells.c and kern_*.c (the maths),
** registry.c (lookup and cache), sequence.c (sequence values), features.c (one
** row's features), seqagg.c (rnn_sequence), window.c (rnn_predict, rnn_hidden),
** eval.c (rnn_eval, rnn_classify), state.c (rnn_step, rnn_output, state
** BLOBs), tvf.c (rnn_steps, rnn_forecast), scan.c (rnn_scan), poll.c
** (stopping and bounding long calls), util.c (messages, outputs);
** functions.h declares the callbacks those files export for the table below.
**
** Rules kept:
**  1. Loading creates no tables and no process-global state: everything hangs off
**     a per-connection rnn_conn, freed when the last function is destroyed.
**  2. Loading refuses an SQLite older than RNN_MIN_SQLITE (the newest API called,
**     below), naming the version needed and the version found.
**  3. One table registers every function and table-valued function; registration
**     stops at the first failure and names the function.
**  4. Each function's flags are chosen for what it reads (the reasons are in the
**     table): DETERMINISTIC|INNOCUOUS only for what depends on its arguments
**     alone; a model given by name reads rnn_models, so it is neither.
*/
#include "registry.h"
#include "functions.h"
#include "train.h"
SQLITE_EXTENSION_INIT1
#include <string.h>

#define RNN_VERSION "0.1.0"

/* The oldest SQLite with every API and flag the extension uses: SQLITE_INNOCUOUS
** (3.31.0, with PRAGMA trusted_schema; SQLITE_DIRECTONLY 3.30: an older SQLite
** drops flags it does not know, silently letting rnn_cache_stats into views),
** window functions (3.25). A loaded extension calls SQLite through a table of
** pointers that older hosts do not fill that far, so an older host must be
** refused before any call. tests/test_messages.py checks these against the
** APIs and flags ext/ uses. */
#define RNN_MIN_SQLITE 3031000
#define RNN_MIN_SQLITE_TEXT "3.31.0"

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

/* One SQL name: a scalar (fn), an aggregate (step, final), an aggregate window
** function (step, final, value, inverse) or an eponymous table (module). Every
** one gets the connection's rnn_conn as user data. */
typedef struct rnn_sql_def {
  const char *name;
  int nargs; /* -1: any number */
  int flags;
  void (*fn)(sqlite3_context *, int, sqlite3_value **);
  void (*step)(sqlite3_context *, int, sqlite3_value **);
  void (*final)(sqlite3_context *);
  void (*value)(sqlite3_context *);
  void (*inverse)(sqlite3_context *, int, sqlite3_value **);
  const sqlite3_module *module;
} rnn_sql_def;

/* Flags that recur, with their reasons:
**  BY_NAME: a TEXT model argument reads the rnn_models table, so the result
**    depends on more than the arguments: neither DETERMINISTIC nor INNOCUOUS
**    (under trusted_schema=OFF SQLite refuses them in views and triggers). Not
**    DIRECTONLY either, so a trusted schema's views and triggers may score rows.
**  SQLITE_RESULT_SUBTYPE: results carry the JSON or float32 subtype. */
#define BY_NAME (SQLITE_UTF8 | SQLITE_RESULT_SUBTYPE)

static const rnn_sql_def rnn_sql[] = {
  /* a constant: safe anywhere, including schemas of untrusted databases */
  {"rnn_version", 0, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, fn_version, NULL, NULL, NULL, NULL, NULL},
  /* BY_NAME; the JSON result carries the JSON subtype */
  {"rnn_info", 1, BY_NAME, fn_info, NULL, NULL, NULL, NULL, NULL},
  /* reports connection state, which changes between calls: top-level SQL only */
  {"rnn_cache_stats", 0, SQLITE_UTF8 | SQLITE_DIRECTONLY, fn_cache_stats, NULL, NULL, NULL, NULL, NULL},
  /* window functions over ordered rows, BY_NAME */
  {"rnn_predict", -1, BY_NAME, NULL, rnn_predict_step, rnn_predict_final, rnn_predict_value, rnn_predict_inverse,
   NULL},
  {"rnn_hidden", -1, BY_NAME, NULL, rnn_hidden_step, rnn_hidden_final, rnn_hidden_value, rnn_hidden_inverse, NULL},
  /* the recurrent state after the frame, BY_NAME (the state BLOB names its model by
  ** content, but the model it is computed with comes from rnn_models) */
  {"rnn_state", -1, BY_NAME, NULL, rnn_state_win_step, rnn_state_win_final, rnn_state_win_value,
   rnn_state_win_inverse, NULL},
  /* one step from a stored state, and the output for a state: BY_NAME, as rnn_eval;
  ** meant for triggers (of a trusted schema, as every BY_NAME function) */
  {"rnn_step", -1, BY_NAME, rnn_step_func, NULL, NULL, NULL, NULL, NULL},
  {"rnn_output", 2, BY_NAME, rnn_output_func, NULL, NULL, NULL, NULL, NULL},
  /* whole sequences, BY_NAME (rnn_classify's label or index carries no subtype; it
  ** shares the flags so that the two read alike) */
  {"rnn_eval", 2, BY_NAME, rnn_eval_func, NULL, NULL, NULL, NULL, NULL},
  /* the same, resuming from a state (argument 3) */
  {"rnn_eval", 3, BY_NAME, rnn_eval_func, NULL, NULL, NULL, NULL, NULL},
  {"rnn_classify", 2, BY_NAME, rnn_classify_func, NULL, NULL, NULL, NULL, NULL},
  /* a pure function of its arguments: DETERMINISTIC and INNOCUOUS (usable in views
  ** under trusted_schema=OFF). A plain aggregate: a window version would add
  ** nothing that a frame of rnn_predict does not give. SQLITE_SUBTYPE: it reads
  ** the JSON subtype of its ordering key (seqagg.c rule 2). */
  {"rnn_sequence", -1, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS | SQLITE_SUBTYPE | SQLITE_RESULT_SUBTYPE,
   NULL,
   rnn_sequence_step, rnn_sequence_final, NULL, NULL, NULL},
  /* eponymous tables; BY_NAME, so xConnect does not declare SQLITE_VTAB_INNOCUOUS */
  {"rnn_steps", 0, 0, NULL, NULL, NULL, NULL, NULL, &rnn_tvf_module},
  {"rnn_forecast", 0, 0, NULL, NULL, NULL, NULL, NULL, &rnn_tvf_module},
  /* a new model BLOB from its spec alone: DETERMINISTIC and INNOCUOUS (trainsql.c rule 2) */
  {"rnn_init", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, rnn_init_func, NULL, NULL, NULL, NULL, NULL},
  /* internal, for the tests of the training math: top-level SQL only (trainsql.c rule 3) */
  {"rnn_grad_internal", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, rnn_grad_internal_func, NULL, NULL, NULL, NULL, NULL},
  {"rnn_params_internal", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, rnn_params_internal_func, NULL, NULL, NULL, NULL, NULL},
  /* reads a table the user names: xConnect declares SQLITE_VTAB_DIRECTONLY (scan.c rule 1) */
  {"rnn_scan", 0, 0, NULL, NULL, NULL, NULL, NULL, &rnn_scan_module},
  /* runs the SQL text it is given and writes rnn_models: xConnect declares
  ** SQLITE_VTAB_DIRECTONLY (train.c rule 1) */
  {"rnn_train", 0, 0, NULL, NULL, NULL, NULL, NULL, &rnn_train_module},
  /* rnn_scan's statement hands it each row; useless elsewhere (it needs the
  ** cursor's pointer, which SQL cannot make): DIRECTONLY */
  {"rnn_scan_feed", -1, SQLITE_UTF8 | SQLITE_DIRECTONLY, rnn_scan_feed, NULL, NULL, NULL, NULL, NULL},
};

static int register_one(sqlite3 *db, rnn_conn *conn, const rnn_sql_def *d) {
  rnn_conn_ref(conn); /* released by SQLite through rnn_conn_unref */
  if (d->module) return sqlite3_create_module_v2(db, d->name, d->module, conn, rnn_conn_unref);
  if (d->fn) {
    return sqlite3_create_function_v2(db, d->name, d->nargs, d->flags, conn, d->fn, NULL, NULL, rnn_conn_unref);
  }
  return sqlite3_create_window_function(db, d->name, d->nargs, d->flags, conn, d->step, d->final, d->value,
                                        d->inverse, rnn_conn_unref);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
__attribute__((visibility("default"))) int sqlite3_rnn_init(sqlite3 *db, char **pzErrMsg,
                                                            const sqlite3_api_routines *pApi) {
  SQLITE_EXTENSION_INIT2(pApi);
  /* Rule 2: nothing but these three calls before the check (all in SQLite 3.0). */
  if (sqlite3_libversion_number() < RNN_MIN_SQLITE) {
    *pzErrMsg = sqlite3_mprintf("sqlite-rnn needs SQLite " RNN_MIN_SQLITE_TEXT " or newer, but this is SQLite %s",
                                sqlite3_libversion());
    return SQLITE_ERROR;
  }
  rnn_conn *conn = rnn_conn_new(db);
  if (!conn) return SQLITE_NOMEM;
  rnn_conn_ref(conn); /* held by this function until registration ends */
  int rc = SQLITE_OK;
  for (size_t i = 0; i < sizeof(rnn_sql) / sizeof(rnn_sql[0]) && rc == SQLITE_OK; i++) {
    rc = register_one(db, conn, &rnn_sql[i]);
    if (rc != SQLITE_OK) *pzErrMsg = sqlite3_mprintf("cannot register %s(): %s", rnn_sql[i].name, sqlite3_errstr(rc));
  }
  rnn_conn_unref(conn);
  return rc;
}

/*
** state.c: the recurrent state as an SQL value: rnn_step() and rnn_output(), and
** reading and writing state BLOBs for rnn_state() (window.c), rnn_eval()
** (eval.c), rnn_steps() and rnn_forecast() (tvf.c).
**
**   SELECT rnn_state('sensor', v) OVER (PARTITION BY device ORDER BY t) FROM readings;
**   UPDATE series_state SET state = rnn_step('sensor', state, 21.5) WHERE device = 'a';
**   SELECT rnn_output('sensor', state) FROM series_state;        -- as rnn_predict
**
** A state BLOB holds every layer's h (and c for LSTM; the last output for the
** tutorial cell) after some steps, behind a header naming the model by a hash of
** its BLOB (layout in cells.h, README "Scoring as rows arrive").
**
** Rules kept:
**  1. Resuming is exact: the state after a prefix, stepped over the rest, gives
**     the bits the whole sequence gives (cells.c rule 4), in every function.
**  2. A NULL state is the zero state, before any step. rnn_output of a state
**     with no steps is NULL, as rnn_predict over an empty frame.
**  3. rnn_step with a NULL feature returns the state unchanged (the window
**     skips such a row); the state is still checked.
**  4. A state that is not a BLOB, has no header, another layout version,
**     another model's hash or the wrong length is an error saying which.
**  5. Bidirectional models are refused: their state after a row depends on the
**     rows after it.
**  6. Features are read by features.c, as the window functions read them,
**     with argument numbers counted from rnn_step's model argument.
*/
#include "f32.h"
#include "sequence.h"
#include "state.h"
#include "functions.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

int rnn_state_usable(rnn_err *err, const rnn_entry *e, const char *fn) {
  if (e->model->net.dirs == 1) return SQLITE_OK;
  return rnn_err_set(err, "%s(): model is bidirectional: its state after a row depends on the rows after it, so "
                          "it cannot be kept or resumed (score whole sequences with rnn_eval instead)", fn);
}

/* Rule 4, the header and the length. */
static int state_check(rnn_err *err, rnn_entry *e, const unsigned char *p, int n, const char *fn, int arg) {
  const rnn_net *net = &e->model->net;
  const size_t want = rnn_state_blob_bytes(net);
  if (n < RNN_STATE_HEADER || memcmp(p, RNN_STATE_MAGIC, 4) != 0) {
    return rnn_err_set(err, "%s(): argument %d is not a state: a state BLOB starts with 'RNNS' and has at least "
                       "%d bytes (got %d): pass a value from rnn_state() or rnn_step()", fn, arg, RNN_STATE_HEADER, n);
  }
  uint32_t version = rnn_le32_get(p + 4);
  if (version != RNN_STATE_VERSION) {
    return rnn_err_set(err, "%s(): argument %d is a state of layout version %u, this sqlite-rnn reads version %u",
                       fn, arg, version, RNN_STATE_VERSION);
  }
  uint64_t hash = rnn_le64_get(p + 8), own = rnn_entry_hash(e);
  if (hash != own) {
    return rnn_err_set(err, "%s(): argument %d is the state of another model (model hash %016llx, this model's is "
                       "%016llx)", fn, arg, (unsigned long long)hash, (unsigned long long)own);
  }
  if ((size_t)n != want) {
    return rnn_err_set(err, "%s(): argument %d is a state of %d bytes, this model's state has %lld", fn, arg, n,
                       (long long)want);
  }
  if ((int64_t)rnn_le64_get(p + 16) < 0) {
    return rnn_err_set(err, "%s(): argument %d is not a state: its step count is negative", fn, arg);
  }
  return SQLITE_OK;
}

int rnn_state_read(rnn_err *err, rnn_entry *e, sqlite3_value *v, const char *fn, int arg, rnn_state *st) {
  const rnn_net *net = &e->model->net;
  int t = sqlite3_value_type(v);
  if (t == SQLITE_NULL) {
    rnn_state_reset(net, st);
    return SQLITE_OK;
  }
  if (t != SQLITE_BLOB) {
    return rnn_err_set(err, "%s(): argument %d (state) is %s, expected a state BLOB from rnn_state() or "
                       "rnn_step(), or NULL", fn, arg, rnn_type_name(t));
  }
  const unsigned char *p = sqlite3_value_blob(v);
  int n = sqlite3_value_bytes(v);
  if (!p && n > 0) return rnn_err_nomem(err);
  int rc = state_check(err, e, p ? p : (const unsigned char *)"", n, fn, arg);
  if (rc != SQLITE_OK) return rc;
  rnn_state_load(net, st, p);
  return SQLITE_OK;
}

void rnn_result_state(sqlite3_context *ctx, rnn_entry *e, const rnn_state *st) {
  const rnn_net *net = &e->model->net;
  size_t n = rnn_state_blob_bytes(net);
  unsigned char *b = sqlite3_malloc64(n);
  if (!b) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  rnn_state_save(net, st, rnn_entry_hash(e), b);
  sqlite3_result_blob64(ctx, b, n, sqlite3_free);
}

/* The state argument argv[1] of model e, read into st over a block of the
** state's floats plus `extra` scratch floats (*mem, the caller frees it). */
static int open_state(rnn_err *err, rnn_entry *e, sqlite3_value **argv, const char *fn, size_t extra,
                      rnn_state *st, float **mem) {
  const rnn_net *net = &e->model->net;
  if (rnn_state_usable(err, e, fn) != SQLITE_OK) return err->rc;
  *mem = sqlite3_malloc64((rnn_state_floats(net) + extra) * sizeof(float));
  if (!*mem) return rnn_err_nomem(err);
  rnn_state_init(net, st, *mem);
  return rnn_state_read(err, e, argv[1], fn, 2, st);
}

static void fn_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char fn[] = "rnn_step";
  rnn_err err = {SQLITE_OK, NULL};
  float *mem = NULL;
  rnn_state st;
  int use;
  if (argc < 3) {
    rnn_result_errorf(ctx, "%s(): expected a model, a state and at least one feature", fn);
    return;
  }
  rnn_entry *e = rnn_resolve(ctx, argv[0], fn);
  if (!e) return;
  const rnn_net *net = &e->model->net;
  if (open_state(&err, e, argv, fn, (size_t)net->n_in, &st, &mem) != SQLITE_OK) goto done;
  float *row = mem + rnn_state_floats(net);
  if (rnn_row_read(&err, e->model, fn, 2, argc, argv, row, &use) != SQLITE_OK) goto done;
  if (!use) {
    sqlite3_result_value(ctx, argv[1]); /* rule 3 */
    goto done;
  }
  rnn_step(net, &st, row);
  rnn_result_state(ctx, e, &st);
done:
  rnn_err_result(ctx, &err);
  sqlite3_free(mem);
  rnn_entry_release(e);
}

static void fn_output(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char fn[] = "rnn_output";
  rnn_err err = {SQLITE_OK, NULL};
  float *mem = NULL;
  rnn_state st;
  (void)argc;
  rnn_entry *e = rnn_resolve(ctx, argv[0], fn);
  if (!e) return;
  const rnn_net *net = &e->model->net;
  if (open_state(&err, e, argv, fn, 2 * (size_t)net->ldo, &st, &mem) != SQLITE_OK) goto done;
  if (st.steps == 0) goto done; /* rule 2: NULL */
  float *out = mem + rnn_state_floats(net);
  rnn_output(net, &st, out, out + net->ldo);
  rnn_result_output_named(ctx, out, net->n_out, e->model->output_names);
done:
  rnn_err_result(ctx, &err);
  sqlite3_free(mem);
  rnn_entry_release(e);
}

/* Callbacks for the registration table in rnn.c (functions.h). */
void rnn_step_func(sqlite3_context *c, int n, sqlite3_value **v) { fn_step(c, n, v); }
void rnn_output_func(sqlite3_context *c, int n, sqlite3_value **v) { fn_output(c, n, v); }

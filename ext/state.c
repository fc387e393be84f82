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
**  6. Features are read as the window functions read them (features.c rules),
**     with argument numbers counted from rnn_step's model argument.
*/
#include "f32.h"
#include "sequence.h"
#include "state.h"
#include "tokenizer.h"
#include "functions.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

int rnn_state_usable(rnn_err *err, const rnn_entry *e, const char *fn) {
  if (e->model->net.dirs == 1) return 0;
  rnn_err_set(err, "%s(): model is bidirectional: its state after a row depends on the rows after it, so it "
                   "cannot be kept or resumed (score whole sequences with rnn_eval instead)", fn);
  return -1;
}

/* Rule 4, the header and the length. */
static int state_check(rnn_err *err, rnn_entry *e, const unsigned char *p, int n, const char *fn, int arg) {
  const rnn_net *net = &e->model->net;
  const size_t want = rnn_state_blob_bytes(net);
  if (n < RNN_STATE_HEADER || memcmp(p, RNN_STATE_MAGIC, 4) != 0) {
    rnn_err_set(err, "%s(): argument %d is not a state: a state BLOB starts with 'RNNS' and has at least %d bytes "
                "(got %d): pass a value from rnn_state() or rnn_step()", fn, arg, RNN_STATE_HEADER, n);
    return -1;
  }
  uint32_t version = rnn_le32_get(p + 4);
  if (version != RNN_STATE_VERSION) {
    rnn_err_set(err, "%s(): argument %d is a state of layout version %u, this sqlite-rnn reads version %u", fn, arg,
                version, RNN_STATE_VERSION);
    return -1;
  }
  uint64_t hash = rnn_le64_get(p + 8), own = rnn_entry_hash(e);
  if (hash != own) {
    rnn_err_set(err, "%s(): argument %d is the state of another model (model hash %016llx, this model's is "
                "%016llx)", fn, arg, (unsigned long long)hash, (unsigned long long)own);
    return -1;
  }
  if ((size_t)n != want) {
    rnn_err_set(err, "%s(): argument %d is a state of %d bytes, this model's state has %lld", fn, arg, n,
                (long long)want);
    return -1;
  }
  if ((int64_t)rnn_le64_get(p + 16) < 0) {
    rnn_err_set(err, "%s(): argument %d is not a state: its step count is negative", fn, arg);
    return -1;
  }
  return 0;
}

int rnn_state_read(rnn_err *err, rnn_entry *e, sqlite3_value *v, const char *fn, int arg, rnn_state *st) {
  const rnn_net *net = &e->model->net;
  int t = sqlite3_value_type(v);
  if (t == SQLITE_NULL) {
    rnn_state_reset(net, st);
    return 0;
  }
  if (t != SQLITE_BLOB) {
    rnn_err_set(err, "%s(): argument %d (state) is %s, expected a state BLOB from rnn_state() or rnn_step(), or "
                "NULL", fn, arg, rnn_type_name(t));
    return -1;
  }
  const unsigned char *p = sqlite3_value_blob(v);
  int n = sqlite3_value_bytes(v);
  if (!p && n > 0) {
    rnn_err_nomem(err);
    return -1;
  }
  if (state_check(err, e, p ? p : (const unsigned char *)"", n, fn, arg)) return -1;
  rnn_state_load(net, st, p);
  return 0;
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

/* Rule 6 for a vocab model: one TEXT token or INTEGER index, one-hot. */
static int read_token(rnn_err *err, const rnn_model *m, const char *fn, int arg, sqlite3_value *v, float *row) {
  int t = sqlite3_value_type(v), idx = -1;
  if (t == SQLITE_TEXT) {
    const char *z = (const char *)sqlite3_value_text(v);
    int n = sqlite3_value_bytes(v);
    if (!z) {
      rnn_err_nomem(err);
      return -1;
    }
    idx = rnn_model_token(m, z, n);
    if (idx < 0) idx = m->unknown;
    if (idx < 0) {
      rnn_err_set(err, "%s(): argument %d %.40U is not a token of the model's vocab", fn, arg, z, n);
      return -1;
    }
  } else if (t == SQLITE_INTEGER) {
    sqlite3_int64 k = sqlite3_value_int64(v);
    if (k < 0 || k >= m->n_vocab) {
      rnn_err_set(err, "%s(): argument %d is token index %lld, outside 0..%d", fn, arg, (long long)k,
                  m->n_vocab - 1);
      return -1;
    }
    idx = (int)k;
  } else {
    rnn_err_set(err, "%s(): argument %d is %s, expected a token (TEXT) or a token index (INTEGER) of the model's "
                "vocab", fn, arg, rnn_type_name(t));
    return -1;
  }
  memset(row, 0, sizeof(float) * (size_t)m->net.n_in);
  row[idx] = 1.0f;
  return 1;
}

/* The features argv[2..argc) into row: 1 used, 0 a NULL (rule 3), -1 error. */
static int step_row(rnn_err *err, const rnn_model *m, const char *fn, int argc, sqlite3_value **argv, float *row) {
  for (int i = 2; i < argc; i++) {
    if (sqlite3_value_type(argv[i]) == SQLITE_NULL) return 0;
  }
  if (m->n_vocab && argc == 3) return read_token(err, m, fn, 3, argv[2], row);
  if (argc - 2 != m->net.n_in) {
    rnn_err_set(err, "%s(): model expects %d feature%s, got %d", fn, m->net.n_in, m->net.n_in == 1 ? "" : "s",
                argc - 2);
    return -1;
  }
  for (int i = 2; i < argc; i++) {
    if (rnn_feature_read(err, fn, i + 1, i - 1, argv[i], &row[i - 2])) return -1;
  }
  return 1;
}

static void fn_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char fn[] = "rnn_step";
  rnn_err err = {SQLITE_OK, NULL};
  float *mem = NULL;
  if (argc < 3) {
    rnn_result_errorf(ctx, "%s(): expected a model, a state and at least one feature", fn);
    return;
  }
  rnn_entry *e = rnn_resolve(ctx, argv[0], fn);
  if (!e) return;
  const rnn_net *net = &e->model->net;
  rnn_state st;
  size_t nst = rnn_state_floats(net);
  if (rnn_state_usable(&err, e, fn)) goto done;
  mem = sqlite3_malloc64((nst + (size_t)net->n_in) * sizeof(float));
  if (!mem) {
    rnn_err_nomem(&err);
    goto done;
  }
  rnn_state_init(net, &st, mem);
  if (rnn_state_read(&err, e, argv[1], fn, 2, &st)) goto done;
  int use = step_row(&err, e->model, fn, argc, argv, mem + nst);
  if (use < 0) goto done;
  if (use == 0) {
    sqlite3_result_value(ctx, argv[1]); /* rule 3 */
    goto done;
  }
  rnn_step(net, &st, mem + nst);
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
  (void)argc;
  rnn_entry *e = rnn_resolve(ctx, argv[0], fn);
  if (!e) return;
  const rnn_net *net = &e->model->net;
  rnn_state st;
  size_t nst = rnn_state_floats(net);
  if (rnn_state_usable(&err, e, fn)) goto done;
  mem = sqlite3_malloc64((nst + 2 * (size_t)net->ldo) * sizeof(float));
  if (!mem) {
    rnn_err_nomem(&err);
    goto done;
  }
  rnn_state_init(net, &st, mem);
  if (rnn_state_read(&err, e, argv[1], fn, 2, &st)) goto done;
  if (st.steps == 0) goto done; /* rule 2: NULL */
  rnn_output(net, &st, mem + nst, mem + nst + net->ldo);
  rnn_result_output_named(ctx, mem + nst, net->n_out, e->model->output_names);
done:
  rnn_err_result(ctx, &err);
  sqlite3_free(mem);
  rnn_entry_release(e);
}

/* Callbacks for the registration table in rnn.c (functions.h). */
void rnn_step_func(sqlite3_context *c, int n, sqlite3_value **v) { fn_step(c, n, v); }
void rnn_output_func(sqlite3_context *c, int n, sqlite3_value **v) { fn_output(c, n, v); }

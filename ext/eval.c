/*
** eval.c: rnn_eval() and rnn_classify(), whole sequences as scalar values.
**
**   SELECT rnn_eval('sensor', '[20.5, 20.7, 21.0]');         -- REAL, or a JSON array
**   SELECT rnn_classify('lang', 'schmidt');                   -- 'German'
**   SELECT rnn_eval('sensor', '[21.2, 21.4]', state) FROM series_state;  -- resumed
**
** Rules kept:
**  1. rnn_eval returns the model output after the whole sequence (the last
**     step), shaped as rnn_predict's: REAL for one output, else a JSON array.
**  2. rnn_classify returns the `labels` entry of the largest output (the first
**     one on ties), or its 0-based index as INTEGER when the model has no labels.
**  3. Bidirectional models work: the output is PyTorch's output[T-1], the head
**     applied to cat(forward_{T-1}, backward_{T-1}); with metadata readout
**     final_states, h_n: cat(forward_{T-1}, backward_0).
**  4. A NULL sequence gives NULL; every other bad sequence is an error
**     (sequence.c).
**  5. Memory does not grow with the sequence beyond the sequence itself, except
**     for bidirectional models of two or more layers, which keep the layers
**     below the last for every step, up to RNN_MAX_BIDIR_FLOATS (poll.c).
**  6. sqlite3_interrupt() and progress handlers stop a long call (poll.c).
**  7. rnn_eval(model, sequence, state) resumes from a state BLOB (state.c; NULL:
**     the zero state): the output equals rnn_eval over the state's steps and the
**     sequence together, bit for bit. A NULL sequence then takes no steps (the
**     output for the state), and a state with no steps and no sequence gives
**     NULL. Bidirectional models are refused.
*/
#include "poll.h"
#include "sequence.h"
#include "state.h"
#include "functions.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

/* Floats of eval_run's work area. */
static size_t eval_floats(const rnn_net *net, int64_t T) {
  return net->dirs == 2 ? rnn_bidir_floats(net, T, 1) : rnn_state_floats(net) + (size_t)net->ldo;
}

/* The last step's output into last[0..O); work holds eval_floats(). from: the
** state to resume from (argument 3 of rnn_eval), or NULL to start from zero.
** *empty: the state has no steps, so there is no output. SQLITE_OK, or the code
** the connection stopped the call with (rules 5, 6; poll.c). */
static int eval_run(const rnn_net *net, const rnn_seq *s, float *last, float *work, rnn_poll *poll,
                    const rnn_state *from, int *empty) {
  if (net->dirs == 2) return rnn_bidir_last(net, s->xs, s->T, last, work, rnn_poll_cell, poll);
  rnn_state st;
  rnn_state_init(net, &st, work);
  if (from) {
    memcpy(st.h, from->h, rnn_state_floats(net) * sizeof(float)); /* the whole block: h, c and y lead it */
    st.steps = from->steps;
  }
  for (int64_t t = 0; t < s->T; t++) {
    rnn_step(net, &st, s->xs + (size_t)t * net->n_in);
    int rc = rnn_poll_step(poll);
    if (rc != SQLITE_OK) return rc;
  }
  *empty = st.steps == 0;
  if (!*empty) rnn_output(net, &st, last, work + rnn_state_floats(net));
  return SQLITE_OK;
}

/* Rule 7: the state argument, read into from (work of rnn_state_floats). */
static int eval_from(rnn_err *err, rnn_entry *e, sqlite3_value *v, const char *fn, float *work, rnn_state *from) {
  int rc = rnn_state_usable(err, e, fn);
  if (rc != SQLITE_OK) return rc;
  rnn_state_init(&e->model->net, from, work);
  return rnn_state_read(err, e, v, fn, 3, from);
}

/* Run the sequence argv[1] (from the state argv[2] with argc == 3) through e's
** model: *out is a malloc'd [O] output of the last step, or NULL for a NULL
** result (rules 4, 7). db: the connection to poll. */
static int eval_last(sqlite3 *db, rnn_entry *e, int argc, sqlite3_value **argv, const char *fn, float **out,
                     rnn_err *err) {
  const rnn_net *net = &e->model->net;
  rnn_seq s = {NULL, 0, NULL};
  rnn_poll poll;
  rnn_state from;
  float *work = NULL, *last = NULL, *fwork = NULL;
  int empty = 0, rc = SQLITE_OK;
  *out = NULL;
  rnn_poll_init(&poll, db, net);
  if (argc == 3) {
    fwork = sqlite3_malloc64(rnn_state_floats(net) * sizeof(float));
    rc = fwork ? eval_from(err, e, argv[2], fn, fwork, &from) : rnn_err_nomem(err);
    if (rc != SQLITE_OK) goto done;
  }
  if ((rc = rnn_seq_read(err, e->model, argv[1], fn, &s)) != SQLITE_OK) goto done;
  if (!s.xs && argc == 2) goto done; /* rule 4: NULL */
  if (net->dirs == 2 && (rc = rnn_bidir_fits(err, net, s.T, 1, fn)) != SQLITE_OK) goto done;
  work = sqlite3_malloc64(eval_floats(net, s.T) * sizeof(float));
  last = sqlite3_malloc64((size_t)net->n_out * sizeof(float));
  if (!work || !last) {
    rc = rnn_err_nomem(err);
    goto done;
  }
  rc = eval_run(net, &s, last, work, &poll, argc == 3 ? &from : NULL, &empty);
  if (rc != SQLITE_OK) {
    rc = rnn_poll_err(&poll, err);
  } else if (!empty) { /* rule 7: a NULL sequence from a state with no steps is NULL */
    *out = last;
    last = NULL;
  }
done:
  rnn_poll_finish(&poll);
  sqlite3_free(last);
  sqlite3_free(work);
  sqlite3_free(fwork);
  rnn_seq_free(&s);
  return rc;
}

/* Rule 2: the label (or index) of the largest output. */
static void result_class(sqlite3_context *ctx, const rnn_model *m, const float *out) {
  int best = 0;
  for (int i = 1; i < m->net.n_out; i++) {
    /* torch.argmax: the first NaN counts as the largest */
    if (out[i] > out[best] || (out[i] != out[i] && out[best] == out[best])) best = i;
  }
  if (m->n_labels) sqlite3_result_text(ctx, m->labels[best], -1, SQLITE_TRANSIENT);
  else sqlite3_result_int(ctx, best);
}

static void eval_func(sqlite3_context *ctx, int argc, sqlite3_value **argv, const char *fn, int classify) {
  rnn_entry *e = rnn_resolve(ctx, argv[0], fn);
  if (!e) return;
  rnn_err err = {SQLITE_OK, NULL};
  float *out = NULL;
  if (eval_last(sqlite3_context_db_handle(ctx), e, argc, argv, fn, &out, &err) != SQLITE_OK) {
    rnn_err_result(ctx, &err);
  } else if (!out) {
    sqlite3_result_null(ctx);
  } else if (classify) {
    result_class(ctx, e->model, out);
  } else {
    rnn_result_output_named(ctx, out, e->model->net.n_out, e->model->output_names);
  }
  sqlite3_free(out);
  rnn_entry_release(e);
}

static void fn_eval(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  eval_func(ctx, argc, argv, "rnn_eval", 0);
}

static void fn_classify(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  eval_func(ctx, argc, argv, "rnn_classify", 1);
}

/* Callbacks for the registration table in rnn.c (functions.h). */
void rnn_eval_func(sqlite3_context *c, int n, sqlite3_value **v) { fn_eval(c, n, v); }
void rnn_classify_func(sqlite3_context *c, int n, sqlite3_value **v) { fn_classify(c, n, v); }

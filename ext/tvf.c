/*
** tvf.c: rnn_steps() and rnn_forecast(), table-valued functions (eponymous
** virtual tables, the series.c pattern).
**
**   SELECT step, input, output FROM rnn_steps('sensor', '[20.5, 20.7, 21.0]');
**   SELECT s.id, f.step, f.output FROM seqs AS s, rnn_steps('m', s.seq) AS f;
**   SELECT step, output FROM rnn_forecast('sensor', '[20.5, 20.7, 21.0]', 24);
**   SELECT step, output FROM rnn_forecast('sensor', NULL, 24, (SELECT state FROM series_state));
**
** rnn_steps(model, sequence): one row per step, `step` from 0, `input` (REAL,
** a JSON array for several features, or the token for TEXT input), `output`
** (as rnn_predict: REAL or JSON array) and `hidden` (the last layer's hidden
** state, float32 BLOB; for bidirectional models cat(forward, backward)).
** rnn_forecast(model, sequence, horizon): `horizon` rows, `step` from 1: step 1
** is the output after the whole sequence, step k+1 the output after feeding
** step k's output back in as the next input.
**
** Rules kept:
**  1. The arguments are HIDDEN columns; a missing one is an error naming it, an
**     unusable one (a join order that cannot supply it yet) makes xBestIndex
**     return SQLITE_CONSTRAINT so the planner picks another order.
**  2. Argument values are copied (sqlite3_value_dup) for the hidden columns.
**  3. Rows are computed as they are asked for: the cursor keeps the recurrent
**     state, and a row's output and hidden state are computed when read. Memory
**     beyond the sequence does not grow with it, except that a bidirectional
**     model first runs its backward direction, keeping O(sqrt(T)) states of
**     the last layer (and every step of the layers below it), up to
**     RNN_MAX_BIDIR_FLOATS (poll.c, cells.c).
**  4. rnn_forecast needs as many outputs as inputs; horizon is an INTEGER in
**     1..RNN_MAX_HORIZON. For a bidirectional model, step k+1 is rnn_eval over
**     the sequence with steps 1..k appended: the whole sequence is rerun per
**     row, O(T + k) each, and the sequence grows as rows are read.
**  5. A NULL sequence gives no rows.
**  6. A bidirectional model with readout final_states has one output per
**     sequence, read from h_n after the whole sequence: rnn_steps gives it on
**     the last row and NULL before (`hidden` still shows output[t]).
**  7. sqlite3_interrupt() and progress handlers stop a long xFilter or xNext
**     (poll.c).
**  8. An optional last argument, the HIDDEN column `state`, is a state BLOB to
**     start from (state.c; NULL: the zero state): rows are then those of the
**     whole sequence the state stands for, bit for bit, `step` still counting
**     the rows of the sequence given. With a state, a NULL sequence takes no
**     steps: rnn_steps gives no rows, rnn_forecast forecasts from the state
**     (no rows if the state has no steps). Bidirectional models are refused.
*/
#include "poll.h"
#include "sequence.h"
#include "state.h"
#include "functions.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

#define RNN_MAX_HORIZON 1000000

enum { KIND_STEPS, KIND_FORECAST };

/* Columns; the hidden ones hold the arguments, in order. */
enum { S_STEP, S_INPUT, S_OUTPUT, S_HIDDEN, S_MODEL, S_SEQUENCE, S_STATE };
enum { F_STEP, F_OUTPUT, F_MODEL, F_SEQUENCE, F_HORIZON, F_STATE };
#define TVF_ARGS 4            /* the most hidden columns: rnn_forecast's */

typedef struct tvf_vtab {
  sqlite3_vtab base;
  rnn_conn *conn;         /* borrowed from the module's pAux */
  sqlite3 *db;            /* the connection, for interrupt checks */
  int kind;
} tvf_vtab;

typedef struct tvf_cursor {
  sqlite3_vtab_cursor base;
  rnn_entry *e;           /* model reference; released at reset/close */
  sqlite3_value *args[TVF_ARGS]; /* copies of the arguments by hidden column (rule 2), NULL
                          ** for an absent state; owned */
  rnn_seq seq;            /* owned; a bidirectional forecast appends its outputs */
  int64_t cap;            /* steps seq.xs has room for (bidirectional forecast) */
  float *outs;            /* [ldo] the current row's output; owned */
  int have_out;           /* steps: outs holds the current row's output */
  float *work;            /* state and scratch of st or bi; owned */
  size_t nwork;           /* floats in work */
  rnn_state st;           /* unidirectional models */
  rnn_bidir bi;           /* bidirectional rnn_steps */
  rnn_poll poll;          /* interrupt checks; its statement is finalized before returning */
  int64_t row, n;         /* current row (0-based) and row count */
} tvf_cursor;

static const char *fname(int kind) { return kind == KIND_STEPS ? "rnn_steps" : "rnn_forecast"; }

static int tvf_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **pp, char **err) {
  (void)argc;
  (void)argv;
  (void)err;
  int kind = strcmp(argv[0], "rnn_steps") == 0 ? KIND_STEPS : KIND_FORECAST; /* argv[0]: the module name */
  int rc = sqlite3_declare_vtab(db, kind == KIND_STEPS
      ? "CREATE TABLE x(step INTEGER, input, output, hidden BLOB, model HIDDEN, sequence HIDDEN, state HIDDEN)"
      : "CREATE TABLE x(step INTEGER, output, model HIDDEN, sequence HIDDEN, horizon HIDDEN, state HIDDEN)");
  if (rc != SQLITE_OK) return rc;
  tvf_vtab *v = sqlite3_malloc64(sizeof(*v));
  if (!v) return SQLITE_NOMEM;
  memset(v, 0, sizeof(*v));
  v->conn = aux;
  v->db = db;
  v->kind = kind;
  *pp = &v->base;
  return SQLITE_OK;
}

static int tvf_disconnect(sqlite3_vtab *p) {
  sqlite3_free(p);
  return SQLITE_OK;
}

static int tvf_best_index(sqlite3_vtab *p, sqlite3_index_info *info) {
  tvf_vtab *v = (tvf_vtab *)p;
  const int first = v->kind == KIND_STEPS ? S_MODEL : F_MODEL;
  const int nargs = v->kind == KIND_STEPS ? 2 : 3;
  static const char *const names[] = {"model", "sequence", "horizon"};
  int idx[TVF_ARGS] = {-1, -1, -1, -1}, unusable = 0;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    int a = c->iColumn - first;
    if (a < 0 || a > nargs || c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue; /* a == nargs: the state */
    if (!c->usable) unusable |= 1 << a;
    else idx[a] = i;
  }
  for (int a = 0; a < nargs; a++) {
    if (idx[a] >= 0) continue;
    if (unusable & (1 << a)) return SQLITE_CONSTRAINT;
    rnn_err err = {SQLITE_OK, NULL};
    rnn_err_set(&err, "%s(): missing argument %d (%s)", fname(v->kind), a + 1, names[a]);
    return rnn_err_vtab(p, &err);
  }
  for (int a = 0; a < nargs; a++) {
    info->aConstraintUsage[idx[a]].argvIndex = a + 1;
    info->aConstraintUsage[idx[a]].omit = 1;
  }
  /* rule 8: the state is optional, but one that cannot be supplied yet must wait */
  if (idx[nargs] < 0 && (unusable & (1 << nargs))) return SQLITE_CONSTRAINT;
  if (idx[nargs] >= 0) { /* xFilter's argc then tells it came */
    info->aConstraintUsage[idx[nargs]].argvIndex = nargs + 1;
    info->aConstraintUsage[idx[nargs]].omit = 1;
  }
  info->estimatedCost = 1000.0;
  info->estimatedRows = v->kind == KIND_STEPS ? 1000 : 24;
  return SQLITE_OK;
}

static int tvf_open(sqlite3_vtab *p, sqlite3_vtab_cursor **pp) {
  (void)p;
  tvf_cursor *c = sqlite3_malloc64(sizeof(*c));
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof(*c));
  *pp = &c->base;
  return SQLITE_OK;
}

static void tvf_reset(tvf_cursor *c) {
  rnn_entry_release(c->e);
  for (int i = 0; i < TVF_ARGS; i++) sqlite3_value_free(c->args[i]);
  rnn_seq_free(&c->seq);
  sqlite3_free(c->outs);
  sqlite3_free(c->work);
  rnn_poll_finish(&c->poll);
  sqlite3_vtab_cursor base = c->base; /* SQLite's pVtab must survive */
  memset(c, 0, sizeof(*c));
  c->base = base;
}

static int tvf_close(sqlite3_vtab_cursor *p) {
  tvf_reset((tvf_cursor *)p);
  sqlite3_free(p);
  return SQLITE_OK;
}

/* Advance rnn_steps to row c->row (rule 3: the output waits until read). */
static void steps_advance(tvf_cursor *c) {
  const rnn_net *net = &c->e->model->net;
  c->have_out = 0;
  if (net->dirs == 2) rnn_bidir_next(net, &c->bi);
  else rnn_step(net, &c->st, c->seq.xs + (size_t)c->row * net->n_in);
}

/* Rule 8: the cursor's state from the state argument in args[slot], if given. */
static int load_state(tvf_cursor *c, int slot, const char *fn, rnn_err *err) {
  if (!c->args[slot]) return SQLITE_OK;
  return rnn_state_read(err, c->e, c->args[slot], fn, slot + 1, &c->st);
}

static int filter_steps(tvf_cursor *c, const char *fn, rnn_err *err) {
  const rnn_net *net = &c->e->model->net;
  const int bi = net->dirs == 2;
  int rc;
  if (bi && (rc = rnn_bidir_fits(err, net, c->seq.T, 0, fn)) != SQLITE_OK) return rc;
  c->nwork = bi ? rnn_bidir_floats(net, c->seq.T, 0) : rnn_state_floats(net) + (size_t)net->ldo;
  c->work = sqlite3_malloc64(c->nwork * sizeof(float));
  c->outs = sqlite3_malloc64((size_t)net->ldo * sizeof(float));
  if (!c->work || !c->outs) return rnn_err_nomem(err);
  c->n = c->seq.T;
  if (bi) {
    rc = rnn_bidir_begin(net, &c->bi, c->seq.xs, c->seq.T, 0, c->work, rnn_poll_cell, &c->poll);
    if (rc != SQLITE_OK) return rnn_poll_err(&c->poll, err); /* rule 7 */
  } else {
    rnn_state_init(net, &c->st, c->work);
    if ((rc = load_state(c, S_STATE - S_MODEL, fn, err)) != SQLITE_OK) return rc;
  }
  if (c->n > 0) steps_advance(c);
  return SQLITE_OK;
}

/* Make room for T steps in the sequence and the work area of a bidirectional
** forecast rerun (both grow as rows are read). */
static int forecast_room(tvf_cursor *c, int64_t T, rnn_err *err) {
  const rnn_net *net = &c->e->model->net;
  if (T > c->cap) {
    int64_t cap = c->cap * 2 > T ? c->cap * 2 : T;
    if (cap > c->seq.T + c->n - 1) cap = c->seq.T + c->n - 1;
    float *xs = sqlite3_realloc64(c->seq.xs, (size_t)cap * (size_t)net->n_in * sizeof(float));
    if (!xs) return rnn_err_nomem(err);
    c->seq.xs = xs;
    c->cap = cap;
  }
  size_t need = rnn_bidir_floats(net, c->cap, 1);
  if (need > c->nwork) {
    float *w = sqlite3_realloc64(c->work, need * sizeof(float));
    if (!w) return rnn_err_nomem(err);
    c->work = w;
    c->nwork = need;
  }
  return SQLITE_OK;
}

/* Rule 4: a bidirectional model's forecast is rnn_eval over the sequence with
** the outputs so far appended, so every row reruns the whole (growing) sequence. */
static int forecast_bidirectional(tvf_cursor *c, const char *fn, rnn_err *err) {
  const rnn_net *net = &c->e->model->net;
  const int I = net->n_in;
  int64_t total = c->seq.T + c->n - 1;
  if (total > RNN_MAX_SEQ_VALUES / I) {
    return rnn_err_set(err, "%s(): sequence plus horizon is %lld steps of %d values, more than the limit of %d "
                       "values", fn, (long long)total, I, RNN_MAX_SEQ_VALUES);
  }
  int rc = rnn_bidir_fits(err, net, total, 1, fn);
  if (rc != SQLITE_OK) return rc;
  c->cap = c->seq.T;
  c->outs = sqlite3_malloc64((size_t)net->ldo * sizeof(float));
  if (!c->outs) return rnn_err_nomem(err);
  if ((rc = forecast_room(c, c->seq.T, err)) != SQLITE_OK) return rc;
  rc = rnn_bidir_last(net, c->seq.xs, c->seq.T, c->outs, c->work, rnn_poll_cell, &c->poll);
  return rc != SQLITE_OK ? rnn_poll_err(&c->poll, err) : SQLITE_OK; /* rule 7 */
}

static int filter_forecast(tvf_cursor *c, const char *fn, rnn_err *err) {
  const rnn_net *net = &c->e->model->net;
  sqlite3_value *h = c->args[2];
  if (net->n_out != net->n_in) {
    return rnn_err_set(err, "%s(): model has %d output%s but takes %d input%s: a forecast feeds each output back "
                       "as the next input", fn, net->n_out, net->n_out == 1 ? "" : "s", net->n_in,
                       net->n_in == 1 ? "" : "s");
  }
  if (sqlite3_value_type(h) != SQLITE_INTEGER || sqlite3_value_int64(h) < 1 ||
      sqlite3_value_int64(h) > RNN_MAX_HORIZON) {
    /* Name the type given: '24' (TEXT) reads like 24 otherwise. */
    int ht = sqlite3_value_type(h);
    const char *z = ht == SQLITE_NULL || ht == SQLITE_BLOB ? "" : (const char *)sqlite3_value_text(h);
    if (!z) return rnn_err_nomem(err);
    if (ht == SQLITE_TEXT) {
      return rnn_err_set(err, "%s(): horizon must be an INTEGER from 1 to %d, got TEXT %.40U", fn, RNN_MAX_HORIZON,
                         z, sqlite3_value_bytes(h));
    }
    return rnn_err_set(err, "%s(): horizon must be an INTEGER from 1 to %d, got %s%s%s", fn, RNN_MAX_HORIZON,
                       rnn_type_name(ht), *z ? " " : "", z);
  }
  c->n = sqlite3_value_int64(h);
  if (net->dirs == 2) return forecast_bidirectional(c, fn, err);
  size_t nst = rnn_state_floats(net);
  c->work = sqlite3_malloc64((nst + (size_t)net->ldo) * sizeof(float));
  c->outs = sqlite3_malloc64((size_t)net->ldo * sizeof(float));
  if (!c->work || !c->outs) return rnn_err_nomem(err);
  rnn_state_init(net, &c->st, c->work);
  int rc = load_state(c, F_STATE - F_MODEL, fn, err);
  if (rc != SQLITE_OK) return rc;
  for (int64_t t = 0; t < c->seq.T; t++) {
    rnn_step(net, &c->st, c->seq.xs + (size_t)t * net->n_in);
    if (rnn_poll_step(&c->poll) != SQLITE_OK) return rnn_poll_err(&c->poll, err); /* rule 7 */
  }
  if (c->st.steps == 0) c->n = 0; /* rule 8: no steps, no output to start from */
  else rnn_output(net, &c->st, c->outs, c->work + nst);
  rnn_seq_free(&c->seq); /* only the state is needed from here on */
  return SQLITE_OK;
}

static int tvf_filter(sqlite3_vtab_cursor *p, int idxNum, const char *idxStr, int argc, sqlite3_value **argv) {
  (void)idxNum;
  (void)idxStr;
  tvf_cursor *c = (tvf_cursor *)p;
  tvf_vtab *v = (tvf_vtab *)p->pVtab;
  const char *fn = fname(v->kind);
  rnn_err err = {SQLITE_OK, NULL};
  const int nargs = v->kind == KIND_STEPS ? 2 : 3;
  tvf_reset(c);
  for (int i = 0; i < argc && i < TVF_ARGS; i++) { /* argv[nargs]: the state (rule 8) */
    c->args[i] = sqlite3_value_dup(argv[i]);
    if (!c->args[i]) return SQLITE_NOMEM;
  }
  c->e = rnn_resolve_value(v->conn, c->args[0], fn, &err);
  if (!c->e) return rnn_err_vtab(p->pVtab, &err);
  if (c->args[nargs] && rnn_state_usable(&err, c->e, fn)) return rnn_err_vtab(p->pVtab, &err);
  int rc = rnn_seq_read(&err, c->e->model, c->args[1], fn, &c->seq);
  if (rc != SQLITE_OK) return rnn_err_vtab(p->pVtab, &err);
  if (!c->seq.xs && !c->args[nargs]) return SQLITE_OK; /* rule 5: NULL sequence, no rows */
  rnn_poll_init(&c->poll, v->db, &c->e->model->net);
  rc = v->kind == KIND_STEPS ? filter_steps(c, fn, &err) : filter_forecast(c, fn, &err);
  rnn_poll_finish(&c->poll);
  return rc != SQLITE_OK ? rnn_err_vtab(p->pVtab, &err) : SQLITE_OK;
}

static int tvf_next(sqlite3_vtab_cursor *p) {
  tvf_cursor *c = (tvf_cursor *)p;
  tvf_vtab *v = (tvf_vtab *)p->pVtab;
  const rnn_net *net = &c->e->model->net;
  c->row++;
  if (c->row >= c->n) return SQLITE_OK;
  if (v->kind == KIND_STEPS) {
    steps_advance(c);
    return SQLITE_OK;
  }
  if (net->dirs == 1) {
    rnn_step(net, &c->st, c->outs); /* feed the last output back in */
    rnn_output(net, &c->st, c->outs, c->work + rnn_state_floats(net));
    return SQLITE_OK;
  }
  /* append the last output to the sequence and run it all again */
  rnn_err err = {SQLITE_OK, NULL};
  int64_t T = c->seq.T + c->row;
  if (forecast_room(c, T, &err) != SQLITE_OK) return rnn_err_vtab(p->pVtab, &err);
  memcpy(c->seq.xs + (size_t)(T - 1) * net->n_in, c->outs, sizeof(float) * (size_t)net->n_in);
  int rc = rnn_bidir_last(net, c->seq.xs, T, c->outs, c->work, rnn_poll_cell, &c->poll);
  rnn_poll_finish(&c->poll);
  if (rc == SQLITE_OK) return SQLITE_OK;
  rnn_poll_err(&c->poll, &err); /* rule 7 */
  return rnn_err_vtab(p->pVtab, &err);
}

static int tvf_eof(sqlite3_vtab_cursor *p) {
  tvf_cursor *c = (tvf_cursor *)p;
  return c->row >= c->n;
}

static int tvf_rowid(sqlite3_vtab_cursor *p, sqlite3_int64 *rowid) {
  *rowid = ((tvf_cursor *)p)->row;
  return SQLITE_OK;
}

static int tvf_column(sqlite3_vtab_cursor *p, sqlite3_context *ctx, int col) {
  tvf_cursor *c = (tvf_cursor *)p;
  tvf_vtab *v = (tvf_vtab *)p->pVtab;
  const rnn_model *m = c->e->model;
  const rnn_net *net = &m->net;
  if (v->kind == KIND_FORECAST) {
    switch (col) {
      case F_STEP: sqlite3_result_int64(ctx, c->row + 1); break;
      case F_OUTPUT: rnn_result_output_named(ctx, c->outs, net->n_out, m->output_names); break;
      default:
        if (c->args[col - F_MODEL]) sqlite3_result_value(ctx, c->args[col - F_MODEL]); /* else NULL */
        break;
    }
    return SQLITE_OK;
  }
  switch (col) {
    case S_STEP: sqlite3_result_int64(ctx, c->row); break;
    case S_INPUT:
      if (c->seq.tokens) {
        sqlite3_result_text(ctx, m->vocab[c->seq.tokens[c->row]], -1, SQLITE_TRANSIENT);
      } else {
        rnn_result_output(ctx, c->seq.xs + (size_t)c->row * net->n_in, net->n_in);
      }
      break;
    case S_OUTPUT:
      if (net->dirs == 2 && net->readout == READOUT_FINAL_STATES && c->row < c->n - 1) {
        sqlite3_result_null(ctx); /* rule 6: h_n exists once the whole sequence is read */
        break;
      }
      if (!c->have_out) {
        if (net->dirs == 2) rnn_bidir_output(net, &c->bi, c->outs);
        else rnn_output(net, &c->st, c->outs, c->work + rnn_state_floats(net));
        c->have_out = 1;
      }
      rnn_result_output_named(ctx, c->outs, net->n_out, m->output_names);
      break;
    case S_HIDDEN: {
      int hw = net->dirs * net->hout;
      unsigned char *b = rnn_f32_blob(net->dirs == 2 ? c->bi.cat : rnn_last_hidden(net, &c->st), hw);
      if (!b) return SQLITE_NOMEM;
      sqlite3_result_blob(ctx, b, hw * 4, sqlite3_free);
      sqlite3_result_subtype(ctx, RNN_SUBTYPE_F32);
      break;
    }
    default:
      if (c->args[col - S_MODEL]) sqlite3_result_value(ctx, c->args[col - S_MODEL]); /* else NULL */
      break;
  }
  return SQLITE_OK;
}

/* Installed by the registration table in rnn.c (functions.h). */
const sqlite3_module rnn_tvf_module = {
  0,              /* iVersion */
  NULL,           /* xCreate: NULL makes the table eponymous-only */
  tvf_connect, tvf_best_index, tvf_disconnect, NULL /* xDestroy */,
  tvf_open, tvf_close, tvf_filter, tvf_next, tvf_eof, tvf_column, tvf_rowid,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, /* xUpdate .. xShadowName */
};

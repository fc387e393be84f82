/*
** window.c: rnn_predict(), rnn_hidden() and rnn_state() as aggregate window
** functions.
**
**   SELECT t, v, rnn_predict('sensor', v) OVER (PARTITION BY device ORDER BY t)
**   FROM readings;
**   SELECT device, rnn_hidden('sensor', v) OVER w ...;   -- float32 BLOB
**   SELECT device, rnn_state('sensor', v) FROM readings GROUP BY device;  -- state BLOB
**
** rnn_predict returns the model output after the rows of the frame (REAL for one
** output, else a JSON array); rnn_hidden the last layer's hidden state as a
** little-endian float32 BLOB (subtype 223, sqlite-vec's vector format); rnn_state
** the model's whole recurrent state, a BLOB that rnn_step() and rnn_output()
** continue from (state.c).
**
** Rules kept:
**  1. Running frames (starting UNBOUNDED PRECEDING, the default frame) advance
**     the state once per row: O(1) model steps per row. SQLite never calls
**     xInverse for them.
**  2. Any other frame equals running the model over the frame's rows in order:
**     inputs are kept in a FIFO (xStep pushes, xInverse pops the oldest, which
**     is always the row SQLite removes), and once a row has left, xValue
**     recomputes over the FIFO, O(frame) per row. Repeated xValue calls with no
**     step in between reuse the last result.
**  3. xValue never changes or frees state and works before any step; xFinal
**     frees. An empty frame gives NULL.
**  4. A row with any NULL feature is skipped (state unchanged), in xStep and
**     xInverse alike, as SQL aggregates skip NULLs.
**  5. Features must be INTEGER or REAL and finite in float32, and their number
**     must match the model; a model with a `vocab` also takes one TEXT token or
**     INTEGER token index per row (one-hot); the model argument must not change within a
**     partition; bidirectional models are refused (a window cannot see the
**     future). Errors name the function and the argument.
**  6. The FIFO holds at most RNN_MAX_FRAME_BYTES of inputs. A running frame
**     longer than that drops it and keeps going in O(1) memory; a sliding frame
**     longer than that is an error.
*/
#include "f32.h"
#include "sequence.h"
#include "state.h"
#include "functions.h"
SQLITE_EXTENSION_INIT3
#include <assert.h>
#include <string.h>

#define RNN_MAX_FRAME_BYTES (64u << 20)

typedef struct win {
  rnn_entry *e;           /* model reference; released in xFinal */
  const rnn_net *net;     /* e->model->net */
  float *mem;             /* one block: state, output, row; owned */
  rnn_state st;           /* running state, or the recompute state once sliding */
  float *out;             /* [ldo] last output (scratch in rnn_output too) */
  float *outs;            /* [ldo] scratch */
  float *row;             /* [I] the row being stepped */
  float *fifo;            /* [cap][I] buffered inputs; owned; NULL once dropped */
  int64_t cap, head, count; /* ring of cap rows, a power of two */
  int dropped;            /* rule 6: the FIFO outgrew the limit and was freed */
  char *name;             /* the model name of the first row, if TEXT; owned */
  int name_len;
  int sliding;            /* an xInverse came: values are recomputed */
  int st_ok;              /* sliding: st was recomputed for the current frame */
  int out_ok;             /* out holds the output for the current frame */
  int64_t rows;           /* rows in the current frame (NULL rows excluded) */
} win;

/* First step of a partition: carve the state for e's model (the reference is
** kept, or released on error) and keep the model argument's name (rule 5). */
static int win_open(win *w, rnn_entry *e, sqlite3_value *model, const char *fn, rnn_err *err) {
  const rnn_net *net = &e->model->net;
  if (net->dirs != 1) {
    rnn_entry_release(e);
    return rnn_err_set(err, "%s(): model is bidirectional: a window or aggregate cannot see the rows after the "
                       "current one (score whole sequences instead)", fn);
  }
  size_t nst = rnn_state_floats(net);
  size_t total = nst + 2 * (size_t)net->ldo + (size_t)net->n_in;
  w->mem = sqlite3_malloc64(total * sizeof(float));
  if (!w->mem) {
    rnn_entry_release(e);
    return rnn_err_nomem(err);
  }
  rnn_state_init(net, &w->st, w->mem);
  w->out = w->mem + nst;
  w->outs = w->out + net->ldo;
  w->row = w->outs + net->ldo;
  w->e = e;
  w->net = net;
  if (sqlite3_value_type(model) == SQLITE_TEXT) {
    const unsigned char *z = sqlite3_value_text(model);
    w->name_len = sqlite3_value_bytes(model);
    w->name = z ? sqlite3_malloc64((size_t)w->name_len + 1) : NULL;
    if (!w->name) return rnn_err_nomem(err);
    memcpy(w->name, z, (size_t)w->name_len);
  }
  return SQLITE_OK;
}

/* Rule 6: the error of a sliding frame over the limit, in xStep and xInverse. */
static int frame_limit(rnn_err *err, const char *fn) {
  return rnn_err_set(err, "%s(): sliding window frame holds more than %u bytes of inputs: use a shorter frame or "
                     "ROWS UNBOUNDED PRECEDING", fn, RNN_MAX_FRAME_BYTES);
}

/* Rule 5: the model argument stays the same within a partition. */
static int same_model(const win *w, sqlite3_value *arg) {
  int t = sqlite3_value_type(arg);
  if (t == SQLITE_TEXT && w->name) {
    const unsigned char *z = sqlite3_value_text(arg);
    return z && sqlite3_value_bytes(arg) == w->name_len && memcmp(z, w->name, (size_t)w->name_len) == 0;
  }
  if (t == SQLITE_BLOB && !w->name) {
    int n = sqlite3_value_bytes(arg);
    const void *p = sqlite3_value_blob(arg);
    return (size_t)n == w->e->len && (n == 0 || (p && memcmp(p, w->e->blob, (size_t)n) == 0));
  }
  return 0;
}

static int fifo_push(win *w, const char *fn, rnn_err *err) {
  const int I = w->net->n_in;
  if (w->dropped) return SQLITE_OK;
  if (w->count == w->cap) {
    int64_t ncap = w->cap ? w->cap * 2 : 64;
    if ((uint64_t)ncap * (uint64_t)I * sizeof(float) > RNN_MAX_FRAME_BYTES) {
      if (w->sliding) return frame_limit(err, fn);
      /* Rule 6: a running frame does not need the FIFO; free it. */
      sqlite3_free(w->fifo);
      w->fifo = NULL;
      w->dropped = 1;
      return SQLITE_OK;
    }
    float *nf = sqlite3_malloc64((uint64_t)ncap * (uint64_t)I * sizeof(float));
    if (!nf) return rnn_err_nomem(err);
    /* unroll the ring so it starts at 0 */
    for (int64_t i = 0; i < w->count; i++) {
      memcpy(nf + i * I, w->fifo + rnn_ring_at(w->head, i, w->cap) * I, sizeof(float) * (size_t)I);
    }
    sqlite3_free(w->fifo);
    w->fifo = nf;
    w->cap = ncap;
    w->head = 0;
  }
  memcpy(w->fifo + rnn_ring_at(w->head, w->count, w->cap) * I, w->row, sizeof(float) * (size_t)I);
  w->count++;
  return SQLITE_OK;
}

static void win_step(sqlite3_context *ctx, int argc, sqlite3_value **argv, const char *fn) {
  win *w = sqlite3_aggregate_context(ctx, sizeof(win));
  rnn_err err = {SQLITE_OK, NULL};
  if (!w) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (!w->e) {
    if (argc < 2) {
      rnn_result_errorf(ctx, "%s(): expected a model and at least one feature", fn);
      return;
    }
    rnn_entry *e = rnn_resolve(ctx, argv[0], fn);
    if (!e) return;
    if (win_open(w, e, argv[0], fn, &err) != SQLITE_OK) {
      rnn_err_result(ctx, &err);
      return;
    }
  } else if (!same_model(w, argv[0])) {
    rnn_result_errorf(ctx, "%s(): the model argument changed within a window partition", fn);
    return;
  }
  int use = 0;
  if (rnn_row_read(&err, w->e->model, fn, 1, argc, argv, w->row, &use) != SQLITE_OK ||
      (use && fifo_push(w, fn, &err) != SQLITE_OK)) {
    rnn_err_result(ctx, &err);
    return;
  }
  if (!use) return; /* rule 4 */
  w->rows++;
  w->st_ok = w->out_ok = 0;
  if (!w->sliding) rnn_step(w->net, &w->st, w->row);
}

static void win_inverse(sqlite3_context *ctx, int argc, sqlite3_value **argv, const char *fn) {
  win *w = sqlite3_aggregate_context(ctx, sizeof(win));
  if (!w) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (!w->e) return; /* cannot happen: SQLite removes only rows it added */
  for (int i = 1; i < argc; i++) {
    if (sqlite3_value_type(argv[i]) == SQLITE_NULL) return; /* rule 4: it was skipped */
  }
  if (w->dropped) {
    rnn_err err = {SQLITE_OK, NULL};
    frame_limit(&err, fn);
    rnn_err_result(ctx, &err);
    return;
  }
  if (w->count == 0) return;
  assert(w->rows == w->count); /* every stepped row is buffered while not dropped */
  w->head = rnn_ring_at(w->head, 1, w->cap);
  w->count--;
  w->rows--;
  w->sliding = 1;
  w->st_ok = w->out_ok = 0;
}

/* Bring st up to date with the frame. Returns 0 if the frame is empty. */
static int win_compute(win *w) {
  if (!w || !w->e || w->rows == 0) return 0;
  if (w->sliding && !w->st_ok) {
    const int I = w->net->n_in;
    rnn_state_reset(w->net, &w->st);
    for (int64_t i = 0; i < w->count; i++) {
      rnn_step(w->net, &w->st, w->fifo + rnn_ring_at(w->head, i, w->cap) * I);
    }
    w->st_ok = 1;
  }
  return 1;
}

static void result_output(sqlite3_context *ctx, win *w) {
  if (!w->out_ok) {
    rnn_output(w->net, &w->st, w->out, w->outs);
    w->out_ok = 1;
  }
  rnn_result_output_named(ctx, w->out, w->net->n_out, w->e->model->output_names);
}

static void result_hidden(sqlite3_context *ctx, win *w) {
  const rnn_net *net = w->net;
  unsigned char *b = rnn_f32_blob(rnn_last_hidden(net, &w->st), net->hout);
  if (!b) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  sqlite3_result_blob(ctx, b, net->hout * 4, sqlite3_free);
  sqlite3_result_subtype(ctx, RNN_SUBTYPE_F32);
}

enum { WIN_OUTPUT, WIN_HIDDEN, WIN_STATE };

static void win_value_common(sqlite3_context *ctx, int what) {
  win *w = sqlite3_aggregate_context(ctx, 0);
  if (!win_compute(w)) {
    sqlite3_result_null(ctx);
    return;
  }
  if (what == WIN_HIDDEN) result_hidden(ctx, w);
  else if (what == WIN_STATE) rnn_result_state(ctx, w->e, &w->st);
  else result_output(ctx, w);
}

static void win_free(win *w) {
  if (!w) return;
  rnn_entry_release(w->e);
  sqlite3_free(w->mem);
  sqlite3_free(w->fifo);
  sqlite3_free(w->name);
  memset(w, 0, sizeof(*w));
}

/* Callbacks for the registration table in rnn.c (functions.h). */
void rnn_predict_step(sqlite3_context *c, int n, sqlite3_value **v) { win_step(c, n, v, "rnn_predict"); }
void rnn_predict_inverse(sqlite3_context *c, int n, sqlite3_value **v) { win_inverse(c, n, v, "rnn_predict"); }
void rnn_predict_value(sqlite3_context *c) { win_value_common(c, WIN_OUTPUT); }
void rnn_predict_final(sqlite3_context *c) {
  win_value_common(c, WIN_OUTPUT);
  win_free(sqlite3_aggregate_context(c, 0));
}
void rnn_hidden_step(sqlite3_context *c, int n, sqlite3_value **v) { win_step(c, n, v, "rnn_hidden"); }
void rnn_hidden_inverse(sqlite3_context *c, int n, sqlite3_value **v) { win_inverse(c, n, v, "rnn_hidden"); }
void rnn_hidden_value(sqlite3_context *c) { win_value_common(c, WIN_HIDDEN); }
void rnn_hidden_final(sqlite3_context *c) {
  win_value_common(c, WIN_HIDDEN);
  win_free(sqlite3_aggregate_context(c, 0));
}
void rnn_state_win_step(sqlite3_context *c, int n, sqlite3_value **v) { win_step(c, n, v, "rnn_state"); }
void rnn_state_win_inverse(sqlite3_context *c, int n, sqlite3_value **v) { win_inverse(c, n, v, "rnn_state"); }
void rnn_state_win_value(sqlite3_context *c) { win_value_common(c, WIN_STATE); }
void rnn_state_win_final(sqlite3_context *c) {
  win_value_common(c, WIN_STATE);
  win_free(sqlite3_aggregate_context(c, 0));
}

/*
** sequence.c: owns reading a whole sequence from one SQL value into rnn_seq
** (rnn_eval, rnn_classify, rnn_steps, rnn_forecast). Rows of the window
** functions are read in features.c; rnn_sequence() lives in seqagg.c.
**
**   SELECT rnn_eval('m', '[0.1, 0.5, 0.2]');                -- JSON numbers: 3 steps
**   SELECT rnn_eval('m2', '[[0.1, 1], [0.5, 2]]');          -- JSON arrays: 2 steps x 2 features
**   SELECT rnn_eval('m', x'CDCCCC3D...');                   -- float32 BLOB of T*I values
**   SELECT rnn_classify('lang', 'schmidt');                 -- TEXT, split into the vocab's tokens
**
** Rules kept:
**  1. A JSON sequence is an array of numbers (models with one feature) or of
**     arrays of exactly I numbers; a BLOB holds T*I little-endian float32 values;
**     TEXT for a model with a `vocab` is split into its tokens (tokenizer.c) and
**     one-hot encoded. Every value must round to a finite float32 (f32.h).
**  2. A character that starts no token is an error naming it and its position,
**     unless the model declares an `unknown_token`, which stands in for it.
**  3. An empty sequence is an error; a NULL sequence gives NULL.
**  4. Sequences hold at most RNN_MAX_SEQ_VALUES values, one limit and one
**     message for every encoding. Memory stays within the limit whatever the
**     input length: JSON is streamed (json.c rule 6) into float32 values, and
**     TEXT is split twice, to count its tokens and then to store them.
**  5. Errors come in a fixed order whatever the encoding: the syntax of the
**     whole value, then its kind, emptiness, the limit, then the first bad step.
**  6. A BLOB that is float64 (numpy's default) is not float32: when a length or
**     a non-finite value gives it away, the error says so and how to convert.
*/
#include "f32.h"
#include "json.h"
#include "sequence.h"
#include "tokenizer.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

#define TO_F32 "pass float32, e.g. sqlite_rnn.sequence(x) or x.astype('<f4').tobytes()"
#define F64_LEN_HINT "; float64 values (numpy's default) take 8 bytes each: " TO_F32
#define F64_HINT ": it reads as float64 values (numpy's default); " TO_F32

void rnn_seq_free(rnn_seq *s) {
  sqlite3_free(s->xs);
  sqlite3_free(s->tokens);
  memset(s, 0, sizeof(*s));
}

/* The functions below return an SQLite code with the error in err (util.h). */

/* Rules 3 and 4 for T steps of I values. */
static int check_size(rnn_err *err, const char *fn, int64_t T, int I) {
  if (T == 0) return rnn_err_set(err, "%s(): sequence is empty", fn);
  if (T > RNN_MAX_SEQ_VALUES / I) {
    return rnn_err_set(err, "%s(): sequence has %lld steps of %d values, more than the limit of %d values", fn,
                       (long long)T, I, RNN_MAX_SEQ_VALUES);
  }
  return SQLITE_OK;
}

static int alloc_seq(rnn_err *err, const char *fn, rnn_seq *s, int64_t T, int I, int tokens) {
  if (check_size(err, fn, T, I)) return err->rc;
  s->T = T;
  s->xs = sqlite3_malloc64((size_t)T * (size_t)I * sizeof(float));
  if (tokens) s->tokens = sqlite3_malloc64((size_t)T * sizeof(int));
  if (!s->xs || (tokens && !s->tokens)) {
    rnn_seq_free(s);
    return rnn_err_nomem(err);
  }
  memset(s->xs, 0, (size_t)T * (size_t)I * sizeof(float));
  return SQLITE_OK;
}

/* Rule 6: n bytes read as float64 are all finite. */
static int finite_as_f64(const unsigned char *p, int n) {
  if (n % 8) return 0;
  for (int i = 0; i < n; i += 8) {
    if (!isfinite(rnn_f64_get(p + i))) return 0;
  }
  return 1;
}

static int read_blob(rnn_err *err, const rnn_model *m, sqlite3_value *v, const char *fn, rnn_seq *s) {
  const int I = m->net.n_in;
  const unsigned char *p = sqlite3_value_blob(v);
  int n = sqlite3_value_bytes(v);
  if (n == 0) return rnn_err_set(err, "%s(): sequence is empty", fn);
  if (!p) return rnn_err_nomem(err);
  if (n % (4 * I)) {
    return rnn_err_set(err, "%s(): sequence BLOB has %d bytes, not a multiple of %d (%d float32 feature%s per "
                       "step)%s", fn, n, 4 * I, I, I == 1 ? "" : "s", n % 8 == 0 ? F64_LEN_HINT : "");
  }
  if (alloc_seq(err, fn, s, n / (4 * I), I, 0)) return err->rc;
  for (int i = 0; i < n / 4; i++) {
    float f = rnn_f32_get(p + 4 * i);
    if (!isfinite(f)) {
      rnn_seq_free(s);
      return rnn_err_set(err, "%s(): sequence step %d feature %d is not finite%s", fn, i / I, i % I + 1,
                         finite_as_f64(p, n) ? F64_HINT : "");
    }
    s->xs[i] = f;
  }
  return SQLITE_OK;
}

static const char *json_kind(rnn_json_type t) {
  static const char *const k[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
  return k[t];
}

/* A JSON sequence being streamed: values land in xs while they fit the limit
** and no step has failed; steps are counted to the end (rule 5). */
typedef struct json_seq {
  rnn_json_reader r;
  const char *fn;
  int I;
  float *xs;              /* [cap] values; owned */
  int64_t cap, T;
  int64_t keep;           /* steps that may be stored: RNN_MAX_SEQ_VALUES / I */
  rnn_err bad;            /* the first bad step, or out of memory; reported
                          ** after the syntax of the whole text (rule 5) */
} json_seq;

/* Room for step T; NULL once nothing more is stored. */
static float *step_row(json_seq *j) {
  if (j->bad.rc || j->T >= j->keep) return NULL;
  if ((j->T + 1) * j->I > j->cap) {
    int64_t cap = j->cap ? j->cap * 2 : 256;
    if (cap > j->keep * j->I) cap = j->keep * j->I;
    if (cap < (j->T + 1) * j->I) cap = (j->T + 1) * j->I;
    float *nx = sqlite3_realloc64(j->xs, (size_t)cap * sizeof(float));
    if (!nx) {
      rnn_err_nomem(&j->bad);
      return NULL;
    }
    j->xs = nx;
    j->cap = cap;
  }
  return j->xs + j->T * j->I;
}

/* Skip the rest of an array just opened. Returns the last event. */
static int skip_array(json_seq *j) {
  int depth = 1, ev = RNN_JSON_EV_OPEN;
  while (depth > 0) {
    ev = rnn_json_reader_next(&j->r);
    if (ev < 0) return ev;
    depth += ev == RNN_JSON_EV_OPEN ? 1 : ev == RNN_JSON_EV_CLOSE ? -1 : 0;
  }
  return ev;
}

/* One step that is an array: exactly I finite numbers. Returns the last event. */
static int json_step_array(json_seq *j) {
  float *row = step_row(j);
  int k = 0, ev, bad_k = 0;
  const char *bad_what = NULL; /* the first bad feature, reported if the count is right */
  while ((ev = rnn_json_reader_next(&j->r)) != RNN_JSON_EV_CLOSE) {
    if (ev < 0) return ev;
    k++;
    if (ev == RNN_JSON_EV_OPEN) {
      if ((ev = skip_array(j)) < 0) return ev;
      if (!bad_what) {
        bad_what = "an array";
        bad_k = k;
      }
    } else if (j->r.type != RNN_JSON_NUMBER || !rnn_f32_finite(j->r.num)) {
      if (!bad_what) {
        bad_what = j->r.type == RNN_JSON_NUMBER ? "out of float32 range" : json_kind(j->r.type);
        bad_k = k;
      }
    } else if (row && k <= j->I) {
      row[k - 1] = (float)j->r.num;
    }
  }
  if (k != j->I) {
    rnn_err_set(&j->bad, "%s(): sequence step %lld has %d feature%s, the model expects %d", j->fn,
                (long long)j->T, k, k == 1 ? "" : "s", j->I);
  } else if (bad_what) {
    rnn_err_set(&j->bad, "%s(): sequence step %lld feature %d is %s, expected a finite number", j->fn,
                (long long)j->T, bad_k, bad_what);
  }
  return ev;
}

/* One step that is not an array. */
static void json_step_value(json_seq *j) {
  if (j->r.type == RNN_JSON_NUMBER && j->I == 1) {
    float *row = step_row(j);
    if (!rnn_f32_finite(j->r.num)) {
      rnn_err_set(&j->bad, "%s(): sequence step %lld is not a finite float32 number", j->fn, (long long)j->T);
    } else if (row) {
      row[0] = (float)j->r.num;
    }
  } else if (j->r.type == RNN_JSON_NUMBER) {
    rnn_err_set(&j->bad, "%s(): sequence step %lld is a number, but the model expects %d features per step",
                j->fn, (long long)j->T, j->I);
  } else {
    rnn_err_set(&j->bad, "%s(): sequence step %lld is %s, expected a number or an array", j->fn,
                (long long)j->T, json_kind(j->r.type));
  }
}

/* Rule 5's order: syntax (the reader's error in jerr), kind, emptiness and the
** limit, the first bad step. */
static int json_finish(rnn_err *err, json_seq *j, rnn_err *jerr, int ev, int root_type, rnn_seq *s) {
  if (ev == RNN_JSON_EV_NOMEM || j->bad.rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  if (ev == RNN_JSON_EV_ERROR) {
    rnn_err_take(err, jerr);
    return rnn_err_prefix(err, "%s(): sequence is not valid JSON: ", j->fn);
  }
  if (root_type != RNN_JSON_ARRAY) {
    return rnn_err_set(err, "%s(): sequence must be a JSON array, got %s", j->fn,
                       json_kind((rnn_json_type)root_type));
  }
  if (check_size(err, j->fn, j->T, j->I)) return err->rc;
  if (j->bad.rc) return rnn_err_take(err, &j->bad);
  s->xs = j->xs;
  s->T = j->T;
  j->xs = NULL;
  return SQLITE_OK;
}

static int read_json(rnn_err *err, const rnn_model *m, const char *z, int n, const char *fn, rnn_seq *s) {
  json_seq j;
  rnn_err jerr = {SQLITE_OK, NULL};
  int ev, root_type = RNN_JSON_ARRAY;
  memset(&j, 0, sizeof(j));
  rnn_json_reader_init(&j.r, z, (size_t)n, &jerr);
  j.fn = fn;
  j.I = m->net.n_in;
  j.keep = RNN_MAX_SEQ_VALUES / j.I;
  ev = rnn_json_reader_next(&j.r);
  if (ev == RNN_JSON_EV_VALUE) {
    root_type = j.r.type;
  } else if (ev == RNN_JSON_EV_OPEN) {
    while ((ev = rnn_json_reader_next(&j.r)) != RNN_JSON_EV_CLOSE && ev >= 0) {
      if (ev == RNN_JSON_EV_OPEN) ev = json_step_array(&j);
      else json_step_value(&j);
      if (ev < 0) break;
      j.T++;
    }
  }
  if (ev >= 0) ev = rnn_json_reader_next(&j.r); /* the end, or trailing characters */
  int rc = json_finish(err, &j, &jerr, ev, root_type, s);
  sqlite3_free(j.xs);
  sqlite3_free(j.bad.msg);
  sqlite3_free(jerr.msg);
  rnn_json_reader_free(&j.r);
  return rc;
}

/* Rules 2 and 4: the tokens are counted before anything is allocated. */
static int read_tokens(rnn_err *err, const rnn_model *m, const char *z, int n, const char *fn, rnn_seq *s) {
  const int V = m->n_vocab;
  rnn_tokens tk;
  rnn_tokenize(m, z, n, NULL, &tk);
  if (tk.bad) {
    return rnn_err_set(err, "%s(): %U at character %d of the text is not in the model's vocab", fn,
                       z + tk.bad_at, tk.bad_len, tk.bad_char);
  }
  if (alloc_seq(err, fn, s, tk.T, V, 1)) return err->rc;
  rnn_tokenize(m, z, n, s->tokens, &tk);
  for (int64_t t = 0; t < tk.T; t++) s->xs[(size_t)t * V + (size_t)s->tokens[t]] = 1.0f;
  return SQLITE_OK;
}

/* A non-NULL value, read by its type. */
static int read_value(rnn_err *err, const rnn_model *m, sqlite3_value *v, const char *fn, rnn_seq *out) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_BLOB: return read_blob(err, m, v, fn, out);
    case SQLITE_TEXT: {
      const char *z = (const char *)sqlite3_value_text(v);
      int n = sqlite3_value_bytes(v);
      if (!z) return rnn_err_nomem(err);
      if (!m->n_vocab) return read_json(err, m, z, n, fn, out);
      if (n == 0) return rnn_err_set(err, "%s(): sequence is empty", fn);
      return read_tokens(err, m, z, n, fn, out);
    }
    default:
      return rnn_err_set(err, "%s(): sequence is %s: pass a JSON array, a float32 BLOB or, for a model with a "
                         "vocab, TEXT", fn, rnn_type_name(sqlite3_value_type(v)));
  }
}

int rnn_seq_read(rnn_err *err, const rnn_model *m, sqlite3_value *v, const char *fn, rnn_seq *out) {
  memset(out, 0, sizeof(*out));
  if (sqlite3_value_type(v) == SQLITE_NULL) return SQLITE_OK; /* out->xs stays NULL */
  return read_value(err, m, v, fn, out);
}

/*
** train_data.c: the rows rnn_train() learns from (train.c): reading the
** query, the validation split, standardisation, windows and batches.
**
**   SELECT * FROM rnn_train('m', 'SELECT id, t, x1, x2, y FROM obs', '{"task": "regress"}');
**
** Rules kept:
**  1. The query is one read-only statement (sqlite3_stmt_readonly; text after
**     it other than comments is an error). Its columns are key, order, then
**     input_size features, then output_size targets (regress) or one label
**     (classify); next has no target columns. It is run as
**     SELECT * FROM (query) ORDER BY 1, 2, so series come in key order and
**     rows in order; two rows of one series with the same order value are an
**     error (their order would be arbitrary, and so would the result).
**  2. Features and targets are INTEGER or REAL and fit a finite float32; a
**     NULL, TEXT or BLOB is an error naming the row (key and order) and column.
**  3. classify labels: an INTEGER class index 0..output_size-1, or TEXT found
**     in options.labels (else the model's metadata labels); one per series.
**  4. At most RNN_TRAIN_MAX_VALUES values (rows x (features + targets)) are
**     read; more is an error saying so.
**  5. The rows as read are hashed with 64-bit FNV-1a (README "Training":
**     per column, one type byte then the value's bytes).
**  6. Split: val_split tail holds out the last floor(n * val_fraction) steps
**     of each series of n steps; series holds out the last
**     floor(S * val_fraction) of the S series in key order. The two parts of a
**     tail-split series are separate sequences.
**  7. Standardisation (standardize: true): mean and population standard
**     deviation (0 becomes 1) over the training rows, in double, applied in
**     float as the scoring code undoes it: (x - mean) / std. Inputs always;
**     targets for regress (their own), for next the inputs' (they are rows).
**  8. Windows: each sequence is cut into consecutive windows of `window`
**     steps from its start (the last may be shorter), each read from a zero
**     state; next pairs step t with step t + 1, so a sequence of L rows gives
**     L - 1 steps. classify: one window per series, the whole series.
*/
#include "train_drive.h"
#include "f32.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <string.h>

/* Rule 1: the statement that reads the rows, ordered. */
static int prepare_rows(sqlite3 *db, const char *q, int nq, int want, const train_opts *o, int n_in, int n_out,
                        sqlite3_stmt **out, rnn_err *err) {
  sqlite3_stmt *st = NULL, *more = NULL;
  const char *tail = NULL, *tail2 = NULL;
  int rc = sqlite3_prepare_v2(db, q, nq, &st, &tail);
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  if (rc != SQLITE_OK) return rnn_err_set(err, TRAIN_FN "(): query: %s", sqlite3_errmsg(db));
  if (!st) return rnn_err_set(err, TRAIN_FN "(): query is empty: pass one SELECT statement");
  int cols = sqlite3_column_count(st), ro = sqlite3_stmt_readonly(st);
  sqlite3_finalize(st);
  if (!ro) return rnn_err_set(err, TRAIN_FN "(): query must be read-only (one SELECT), got %.40U", q, nq);
  int rest = (int)(q + nq - tail);
  rc = sqlite3_prepare_v2(db, tail, rest, &more, &tail2);
  sqlite3_finalize(more);
  if (rc != SQLITE_OK || more) {
    return rnn_err_set(err, TRAIN_FN "(): query must be one statement, but text follows it: %.40U", tail, rest);
  }
  if (cols != want) {
    static const char *const tasks[] = {"next", "regress", "classify"};
    char t[64] = "";
    if (o->task == TASK_REGRESS) sqlite3_snprintf(sizeof(t), t, ", %d target%s (output_size)", n_out,
                                                  n_out == 1 ? "" : "s");
    if (o->task == TASK_CLASSIFY) sqlite3_snprintf(sizeof(t), t, ", 1 label");
    return rnn_err_set(err, TRAIN_FN "(): query returns %d column%s, task %s needs %d: key, order, %d feature%s "
                       "(input_size)%s", cols, cols == 1 ? "" : "s", tasks[o->task], want, n_in,
                       n_in == 1 ? "" : "s", t);
  }
  int len = (int)(tail - q);
  while (len > 0 && (q[len - 1] == ';' || q[len - 1] == ' ' || q[len - 1] == '\n' || q[len - 1] == '\t' ||
                     q[len - 1] == '\r')) len--;
  char *sql = sqlite3_mprintf("SELECT * FROM (\n%.*s\n) ORDER BY 1, 2", len, q);
  if (!sql) return rnn_err_nomem(err);
  rc = sqlite3_prepare_v2(db, sql, -1, out, NULL);
  sqlite3_free(sql);
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  if (rc != SQLITE_OK) return rnn_err_set(err, TRAIN_FN "(): query: %s", sqlite3_errmsg(db));
  return SQLITE_OK;
}

/* Numbers compare by value, TEXT and BLOB by bytes, NULLs are equal. */
static int same_value(sqlite3_value *a, sqlite3_value *b) {
  int ta = sqlite3_value_type(a), tb = sqlite3_value_type(b);
  int na = ta == SQLITE_INTEGER || ta == SQLITE_FLOAT, nb = tb == SQLITE_INTEGER || tb == SQLITE_FLOAT;
  if (na && nb) {
    if (ta == SQLITE_INTEGER && tb == SQLITE_INTEGER) return sqlite3_value_int64(a) == sqlite3_value_int64(b);
    return sqlite3_value_double(a) == sqlite3_value_double(b);
  }
  if (ta != tb) return 0;
  if (ta == SQLITE_NULL) return 1;
  const void *pa = ta == SQLITE_TEXT ? (const void *)sqlite3_value_text(a) : sqlite3_value_blob(a);
  const void *pb = ta == SQLITE_TEXT ? (const void *)sqlite3_value_text(b) : sqlite3_value_blob(b);
  int la = sqlite3_value_bytes(a), lb = sqlite3_value_bytes(b);
  return la == lb && (la == 0 || (pa && pb && memcmp(pa, pb, (size_t)la) == 0));
}

/* "row 3 (key 'a', order 2)" for messages; NULL when out of memory. */
static char *row_name(sqlite3_stmt *st, int64_t r) {
  char *part[2];
  for (int c = 0; c < 2; c++) {
    sqlite3_value *v = sqlite3_column_value(st, c);
    int t = sqlite3_value_type(v);
    if (t == SQLITE_TEXT) part[c] = rnn_mprintf("%.40U", (const char *)sqlite3_value_text(v), sqlite3_value_bytes(v));
    else if (t == SQLITE_BLOB) part[c] = rnn_mprintf("a BLOB");
    else part[c] = rnn_mprintf("%s", (const char *)sqlite3_value_text(v) ? (const char *)sqlite3_value_text(v)
                                                                           : "NULL");
  }
  char *z = part[0] && part[1] ? rnn_mprintf("row %lld (key %s, order %s)", (long long)r, part[0], part[1]) : NULL;
  sqlite3_free(part[0]);
  sqlite3_free(part[1]);
  return z;
}

static int row_error(rnn_err *err, sqlite3_stmt *st, int64_t r, const char *fmt, const char *a, const char *b) {
  char *where = row_name(st, r);
  if (!where) return rnn_err_nomem(err);
  char *what = rnn_mprintf(fmt, a, b);
  if (what) rnn_err_set(err, TRAIN_FN "(): %s: %s", where, what);
  else rnn_err_nomem(err);
  sqlite3_free(where);
  sqlite3_free(what);
  return err->rc;
}

static uint64_t fnv_le64(uint64_t h, uint64_t u) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(u >> (8 * i));
  return rnn_fnv1a64(h, b, 8);
}

static uint64_t hash_value(uint64_t h, sqlite3_value *v) {
  int t = sqlite3_value_type(v);
  unsigned char tb = (unsigned char)t;
  h = rnn_fnv1a64(h, &tb, 1);
  if (t == SQLITE_INTEGER) return fnv_le64(h, (uint64_t)sqlite3_value_int64(v));
  if (t == SQLITE_FLOAT) {
    double d = sqlite3_value_double(v);
    uint64_t u;
    memcpy(&u, &d, 8);
    return fnv_le64(h, u);
  }
  if (t == SQLITE_NULL) return h;
  const void *p = t == SQLITE_TEXT ? (const void *)sqlite3_value_text(v) : sqlite3_value_blob(v);
  int n = sqlite3_value_bytes(v);
  h = fnv_le64(h, (uint64_t)n);
  return p ? rnn_fnv1a64(h, p, (size_t)n) : h;
}

/* Rule 2: column c of row r as a float. */
static int number(sqlite3_stmt *st, int64_t r, int c, const char *what, float *out, rnn_err *err) {
  int t = sqlite3_column_type(st, c);
  const char *name = sqlite3_column_name(st, c);
  if (!name) return rnn_err_nomem(err);
  if (t != SQLITE_INTEGER && t != SQLITE_FLOAT) {
    char *m = rnn_mprintf("%s column %%s is %s, expected a number%s", what, rnn_type_name(t),
                          t == SQLITE_NULL ? " (filter NULLs out in the query)" : "");
    if (!m) return rnn_err_nomem(err);
    row_error(err, st, r, m, name, NULL);
    sqlite3_free(m);
    return err->rc;
  }
  double d = sqlite3_column_double(st, c);
  if (!rnn_f32_finite(d)) return row_error(err, st, r, "%s column %s is not a finite float32", what, name);
  *out = (float)d;
  return SQLITE_OK;
}

/* Rule 3: the class of row r. */
static int label_of(sqlite3_stmt *st, int64_t r, int c, const train_data *d, const train_opts *o,
                    const rnn_model *m, int *out, rnn_err *err) {
  int t = sqlite3_column_type(st, c);
  if (t == SQLITE_INTEGER) {
    sqlite3_int64 k = sqlite3_column_int64(st, c);
    if (k >= 0 && k < d->n_out) {
      *out = (int)k;
      return SQLITE_OK;
    }
    char buf[64];
    sqlite3_snprintf(sizeof(buf), buf, "%lld, expected a class index from 0 to %d", (long long)k, d->n_out - 1);
    return row_error(err, st, r, "label is %s%s", buf, "");
  }
  if (t != SQLITE_TEXT) {
    return row_error(err, st, r, "label is %s, expected an INTEGER class index or a TEXT label%s", rnn_type_name(t),
                     "");
  }
  const char *z = (const char *)sqlite3_column_text(st, c);
  if (!z) return rnn_err_nomem(err);
  int n = o->n_labels ? o->n_labels : m->n_labels;
  char *const *names = o->n_labels ? o->labels : m->labels;
  for (int i = 0; i < n; i++) {
    if (strcmp(names[i], z) == 0) {
      *out = i;
      return SQLITE_OK;
    }
  }
  char *q = rnn_mprintf("%.40U", z, -1);
  if (!q) return rnn_err_nomem(err);
  row_error(err, st, r, n ? "label %s is not one of the labels%s" : "label %s is TEXT but there are no labels to "
            "look it up in%s: give options.labels", q, o->n_labels ? " in options.labels" : n ? " of the model" : "");
  sqlite3_free(q);
  return err->rc;
}

/* Room for one more row and series (rule 4). */
static int grow(train_data *d, int regress, rnn_err *err) {
  if (d->rows < d->cap && d->n_series + 1 < d->cap) return SQLITE_OK;
  if ((d->rows + 1) * (int64_t)(d->n_in + d->n_tcol) > RNN_TRAIN_MAX_VALUES) {
    return rnn_err_set(err, TRAIN_FN "(): the query returns more than %d values (rows x (features + targets)): "
                       "train on fewer rows", RNN_TRAIN_MAX_VALUES);
  }
  int64_t cap = d->cap ? d->cap * 2 : 1024;
  float *x = sqlite3_realloc64(d->x, (size_t)cap * (size_t)d->n_in * sizeof(float));
  if (x) d->x = x;
  float *y = regress ? sqlite3_realloc64(d->y, (size_t)cap * (size_t)d->n_out * sizeof(float)) : d->y;
  if (y) d->y = y;
  int64_t *s = sqlite3_realloc64(d->start, (size_t)(cap + 1) * sizeof(int64_t));
  if (s) d->start = s;
  int *l = sqlite3_realloc64(d->label, (size_t)(cap + 1) * sizeof(int));
  if (l) d->label = l;
  if (!x || (regress && !y) || !s || !l) return rnn_err_nomem(err);
  d->cap = cap;
  return SQLITE_OK;
}

/* Rules 1-5 for the row the statement is on; *prev_key / *prev_ord are the last row's. */
static int read_row(sqlite3_stmt *st, train_data *d, const train_opts *o, const rnn_model *m,
                    sqlite3_value **prev_key, sqlite3_value **prev_ord, rnn_err *err) {
  const int64_t r = d->rows + 1;
  if (grow(d, o->task == TASK_REGRESS, err) != SQLITE_OK) return err->rc;
  sqlite3_value *key = sqlite3_column_value(st, 0), *ord = sqlite3_column_value(st, 1);
  int fresh = !*prev_key || !same_value(*prev_key, key);
  if (!fresh && same_value(*prev_ord, ord)) {
    return row_error(err, st, r, "the series has two rows with this order value: the order column must be unique "
                     "within a series%s%s", "", "");
  }
  for (int c = 0; c < d->n_in + d->n_tcol + 2; c++) d->hash = hash_value(d->hash, sqlite3_column_value(st, c));
  float *x = d->x + (size_t)d->rows * (size_t)d->n_in;
  for (int i = 0; i < d->n_in; i++) {
    if (number(st, r, 2 + i, "feature", &x[i], err) != SQLITE_OK) return err->rc;
  }
  if (o->task == TASK_REGRESS) {
    for (int i = 0; i < d->n_out; i++) {
      if (number(st, r, 2 + d->n_in + i, "target", &d->y[(size_t)d->rows * (size_t)d->n_out + i], err)) return err->rc;
    }
  }
  if (fresh) d->start[d->n_series++] = d->rows;
  if (o->task == TASK_CLASSIFY) {
    int k = 0;
    if (label_of(st, r, 2 + d->n_in, d, o, m, &k, err) != SQLITE_OK) return err->rc;
    if (fresh) d->label[d->n_series - 1] = k;
    else if (d->label[d->n_series - 1] != k) {
      return row_error(err, st, r, "the label changes within the series: task classify needs one label per "
                       "series%s%s", "", "");
    }
  }
  d->rows++;
  sqlite3_value_free(*prev_key);
  sqlite3_value_free(*prev_ord);
  *prev_key = sqlite3_value_dup(key);
  *prev_ord = sqlite3_value_dup(ord);
  return *prev_key && *prev_ord ? SQLITE_OK : rnn_err_nomem(err);
}

int rnn_train_data_read(sqlite3 *db, const char *q, int nq, const train_opts *o, const rnn_model *m, train_data *d,
                    rnn_err *err) {
  memset(d, 0, sizeof(*d));
  d->n_in = m->net.n_in;
  d->n_out = m->net.n_out;
  d->n_tcol = o->task == TASK_REGRESS ? d->n_out : o->task == TASK_CLASSIFY ? 1 : 0;
  d->hash = RNN_FNV_BASIS; /* rule 5: FNV-1a 64 over the rows */
  sqlite3_stmt *st = NULL;
  sqlite3_value *pk = NULL, *po = NULL;
  int rc = prepare_rows(db, q, nq, 2 + d->n_in + d->n_tcol, o, d->n_in, d->n_out, &st, err);
  while (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
      rc = SQLITE_OK;
      break;
    }
    if (rc != SQLITE_ROW) {
      if (rc == SQLITE_NOMEM || rc == SQLITE_INTERRUPT) rnn_err_code(err, rc);
      else rnn_err_set(err, TRAIN_FN "(): query: %s", sqlite3_errmsg(db));
      break;
    }
    rc = read_row(st, d, o, m, &pk, &po, err);
  }
  sqlite3_finalize(st);
  sqlite3_value_free(pk);
  sqlite3_value_free(po);
  if (err->rc == SQLITE_OK && d->start) d->start[d->n_series] = d->rows;
  return err->rc;
}

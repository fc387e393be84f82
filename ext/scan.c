/*
** scan.c: rnn_scan(), an eponymous table that scores every series of a table
** at once, several series in lockstep, past SQLite's window machinery.
**
**   CREATE INDEX series_id_t ON series(id, t);      -- makes each series one index range
**   INSERT INTO pred SELECT key, ord, output FROM rnn_scan('sensor', 'series', 'id', 't', 'v');
**
** rnn_scan(model, table, key, order, feature...): one row per row of `table`,
** with columns key, ord (the row's key and order values) and output: for every
** row, the value of rnn_predict(model, feature...) OVER (PARTITION BY key ORDER
** BY order) for that row, bit for bit, on every CPU path.
**
** Rules kept:
**  1. Safety: the table is the user's, so the module declares
**     SQLITE_VTAB_DIRECTONLY (no use from a schema's views or triggers), reads
**     only through SELECT statements it builds itself with every name quoted as
**     an identifier (in backquotes, never double quotes, which SQLite reads as
**     a string when no column matches; no SQL can come in through a name), and
**     checks each is read-only. SQLite's own error names a missing table or column.
**  2. Series run in lockstep: up to SCAN_B at once, one product over all of
**     them per layer and step (kernel gemm_t: each row gets the bits gemv_t
**     gives it alone, so results equal rnn_step's). When a series ends, its
**     slot takes the next key, so the batch stays full until keys run out.
**  3. Memory is bounded by SCAN_B and the model, not by the row count: each
**     slot reads its series through its own statement (WHERE key IS ?1 ORDER
**     BY order), the keys come from SELECT DISTINCT key ORDER BY key. An index
**     on (key, order) makes each of those a range scan; without it, each series
**     scans the table (slow: README says so).
**  4. Rows come out round by round (one row of each running series per
**     round), not in (key, order) order: sorting would need a whole series
**     buffered. ORDER BY key, ord sorts them when that matters.
**  5. As the window function: a row with a NULL feature takes no step and gets
**     the output of the rows before it (NULL before any); features are checked
**     by rnn_row_read (features.c); bidirectional models are refused.
**  6. Two rows of one series with equal order values (peers, for which the
**     default window frame shares one output) are an error: numbers compare by
**     value, TEXT and BLOB by bytes, two NULLs are equal.
**  7. One thread. Errors of the statements reading the table (interrupts
**     included) stop the scan with their code.
*/
#include "sequence.h"
#include "functions.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

#define SCAN_B 16            /* series in lockstep */
#define SCAN_MAX_FEATURES 32 /* feature columns one call can name */

enum { C_KEY, C_ORD, C_OUTPUT, C_MODEL, C_TABLE, C_KEYCOL, C_ORDCOL, C_F1 };
#define SCAN_FIXED_ARGS 4 /* model, table, key, order */

typedef struct scan_vtab {
  sqlite3_vtab base;
  rnn_conn *conn; /* borrowed from the module's pAux */
  sqlite3 *db;
} scan_vtab;

typedef struct scan_slot {
  sqlite3_stmt *rows;   /* this slot's series, ordered; owned */
  sqlite3_value *key;   /* the series' key; owned */
  sqlite3_value *ord;   /* the current row's order value; owned */
  rnn_state st;         /* carved from the cursor's block */
  float *x;             /* [I] the row's raw features */
  float *out;           /* [ldo] the row's output */
  int live;             /* reading a series */
  int has_row;          /* a row this round */
  int use;              /* the row took a step (no NULL feature) */
} scan_slot;

typedef struct scan_cursor {
  sqlite3_vtab_cursor base;
  rnn_entry *e;         /* model reference; owned */
  sqlite3_stmt *keys;   /* SELECT DISTINCT key; owned */
  int keys_done;
  int nf;               /* feature columns */
  scan_slot slot[SCAN_B];
  float *mem;           /* one block for the states and the batch matrices; owned */
  float *xm, *g, *gh, *pm; /* [B][ldx] layer inputs and h; [B][ldg] gates twice; [B][ldp] projections */
  int ldx;
  int cur;              /* slot of the current row */
  int eof;
  int64_t rowid;
} scan_cursor;

static int scan_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **pp, char **err) {
  (void)argc;
  (void)argv;
  (void)err;
  sqlite3_str *s = sqlite3_str_new(db);
  sqlite3_str_appendall(s, "CREATE TABLE x(key, ord, output, model HIDDEN, tbl HIDDEN, key_column HIDDEN, "
                        "order_column HIDDEN");
  for (int i = 1; i <= SCAN_MAX_FEATURES; i++) sqlite3_str_appendf(s, ", f%d HIDDEN", i);
  sqlite3_str_appendall(s, ")");
  char *sql = sqlite3_str_finish(s);
  if (!sql) return SQLITE_NOMEM;
  int rc = sqlite3_declare_vtab(db, sql);
  sqlite3_free(sql);
  if (rc == SQLITE_OK) rc = sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY); /* rule 1 */
  if (rc != SQLITE_OK) return rc;
  scan_vtab *v = sqlite3_malloc64(sizeof(*v));
  if (!v) return SQLITE_NOMEM;
  memset(v, 0, sizeof(*v));
  v->conn = aux;
  v->db = db;
  *pp = &v->base;
  return SQLITE_OK;
}

static int scan_disconnect(sqlite3_vtab *p) {
  sqlite3_free(p);
  return SQLITE_OK;
}

/* The arguments are the hidden columns model..f32, given in order: model,
** table, key, order and at least one feature, without gaps. idxNum: features. */
static int scan_best_index(sqlite3_vtab *p, sqlite3_index_info *info) {
  static const char *const names[] = {"model", "table", "key column", "order column", "feature column"};
  int idx[SCAN_FIXED_ARGS + SCAN_MAX_FEATURES], unusable = 0;
  for (int a = 0; a < SCAN_FIXED_ARGS + SCAN_MAX_FEATURES; a++) idx[a] = -1;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    int a = c->iColumn - C_MODEL;
    if (a < 0 || c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (!c->usable) unusable = 1;
    else idx[a] = i;
  }
  int n = SCAN_FIXED_ARGS + SCAN_MAX_FEATURES;
  while (n > 0 && idx[n - 1] < 0) n--;
  for (int a = 0; a < n || a <= SCAN_FIXED_ARGS; a++) {
    if (a < n && idx[a] >= 0) continue;
    if (unusable) return SQLITE_CONSTRAINT; /* wait for a join order that supplies it */
    rnn_err err = {SQLITE_OK, NULL};
    rnn_err_set(&err, "rnn_scan(): missing argument %d (%s)", a + 1, names[a < 4 ? a : 4]);
    return rnn_err_vtab(p, &err);
  }
  for (int a = 0; a < n; a++) {
    info->aConstraintUsage[idx[a]].argvIndex = a + 1;
    info->aConstraintUsage[idx[a]].omit = 1;
  }
  info->idxNum = n - SCAN_FIXED_ARGS;
  info->estimatedCost = 1e6;
  info->estimatedRows = 1000000;
  return SQLITE_OK;
}

static int scan_open(sqlite3_vtab *p, sqlite3_vtab_cursor **pp) {
  (void)p;
  scan_cursor *c = sqlite3_malloc64(sizeof(*c));
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof(*c));
  *pp = &c->base;
  return SQLITE_OK;
}

static void scan_reset(scan_cursor *c) {
  rnn_entry_release(c->e);
  sqlite3_finalize(c->keys);
  for (int s = 0; s < SCAN_B; s++) {
    sqlite3_finalize(c->slot[s].rows);
    sqlite3_value_free(c->slot[s].key);
    sqlite3_value_free(c->slot[s].ord);
  }
  sqlite3_free(c->mem);
  sqlite3_vtab_cursor base = c->base;
  memset(c, 0, sizeof(*c));
  c->base = base;
}

static int scan_close(sqlite3_vtab_cursor *p) {
  scan_reset((scan_cursor *)p);
  sqlite3_free(p);
  return SQLITE_OK;
}

/* Rule 1: a statement over the user's table, read-only. */
static int prepare_read(sqlite3 *db, sqlite3_str *s, sqlite3_stmt **out, rnn_err *err) {
  char *sql = sqlite3_str_finish(s);
  if (!sql) return rnn_err_nomem(err);
  int rc = sqlite3_prepare_v2(db, sql, -1, out, NULL);
  sqlite3_free(sql);
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  if (rc != SQLITE_OK) return rnn_err_set(err, "rnn_scan(): %s", sqlite3_errmsg(db));
  if (!sqlite3_stmt_readonly(*out)) return rnn_err_set(err, "rnn_scan(): the table read is not read-only");
  return SQLITE_OK;
}

/* The names (arguments 2..) as TEXT. */
static int arg_name(sqlite3_value *v, int arg, const char **out, rnn_err *err) {
  static const char *const what[] = {"table", "key column", "order column"};
  if (sqlite3_value_type(v) != SQLITE_TEXT) {
    return rnn_err_set(err, "rnn_scan(): argument %d (%s) is %s, expected TEXT naming a %s", arg,
                       arg <= 4 ? what[arg - 2] : "feature column", rnn_type_name(sqlite3_value_type(v)),
                       arg == 2 ? "table" : "column");
  }
  *out = (const char *)sqlite3_value_text(v);
  return *out ? SQLITE_OK : rnn_err_nomem(err);
}

/* Rule 1: name as an identifier in backquotes, a backquote doubled. Not "%w":
** SQLite reads a double-quoted name that matches no column as a string
** literal, so a misspelt column would silently be a constant. */
static void append_name(sqlite3_str *s, const char *name) {
  sqlite3_str_appendchar(s, 1, '`');
  for (const char *p = name; *p; p++) {
    if (*p == '`') sqlite3_str_appendchar(s, 1, '`');
    sqlite3_str_appendchar(s, 1, *p);
  }
  sqlite3_str_appendchar(s, 1, '`');
}

/* Appends text, then name i of name[] for each %N in fmt (the only directive). */
static void append_sql(sqlite3_str *s, const char *fmt, const char *const *name, const int *which) {
  for (const char *p = fmt; *p; p++) {
    if (p[0] == '%' && p[1] == 'N') {
      append_name(s, name[*which++]);
      p++;
    } else {
      sqlite3_str_appendchar(s, 1, *p);
    }
  }
}

/* Rules 1 and 3: the key statement and one series statement per slot. */
static int scan_prepare(scan_cursor *c, sqlite3 *db, sqlite3_value **argv, rnn_err *err) {
  const char *name[SCAN_FIXED_ARGS + SCAN_MAX_FEATURES];
  for (int a = 1; a < SCAN_FIXED_ARGS + c->nf; a++) {
    if (arg_name(argv[a], a + 1, &name[a], err) != SQLITE_OK) return err->rc;
  }
  static const int keys[] = {2, 1}, head[] = {3}, tail[] = {1, 2, 3};
  sqlite3_str *s = sqlite3_str_new(db);
  append_sql(s, "SELECT DISTINCT %N FROM %N ORDER BY 1", name, keys);
  if (prepare_read(db, s, &c->keys, err) != SQLITE_OK) return err->rc;
  for (int k = 0; k < SCAN_B; k++) {
    s = sqlite3_str_new(db);
    append_sql(s, "SELECT %N", name, head);
    for (int f = 0; f < c->nf; f++) {
      sqlite3_str_appendall(s, ", ");
      append_name(s, name[SCAN_FIXED_ARGS + f]);
    }
    append_sql(s, " FROM %N WHERE %N IS ?1 ORDER BY %N", name, tail);
    if (prepare_read(db, s, &c->slot[k].rows, err) != SQLITE_OK) return err->rc;
  }
  return SQLITE_OK;
}

static int imax(int a, int b) { return a > b ? a : b; }

/* One block: SCAN_B states, rows and outputs, and the batch matrices. */
static int scan_alloc(scan_cursor *c, rnn_err *err) {
  const rnn_net *n = &c->e->model->net;
  size_t nst = rnn_state_floats(n);
  c->ldx = imax(n->n_in, n->hout) + n->hout;
  size_t per = nst + (size_t)n->n_in + (size_t)n->ldo + (size_t)c->ldx + 2 * (size_t)n->ldg + (size_t)n->ldp;
  c->mem = sqlite3_malloc64((uint64_t)SCAN_B * per * sizeof(float));
  if (!c->mem) return rnn_err_nomem(err);
  memset(c->mem, 0, (size_t)SCAN_B * per * sizeof(float));
  float *m = c->mem;
  c->xm = m;
  c->g = c->xm + (size_t)SCAN_B * c->ldx;
  c->gh = c->g + (size_t)SCAN_B * n->ldg;
  c->pm = c->gh + (size_t)SCAN_B * n->ldg;
  m = c->pm + (size_t)SCAN_B * n->ldp;
  for (int k = 0; k < SCAN_B; k++, m += nst + (size_t)n->n_in + (size_t)n->ldo) {
    rnn_state_init(n, &c->slot[k].st, m);
    c->slot[k].x = m + nst;
    c->slot[k].out = m + nst + n->n_in;
  }
  return SQLITE_OK;
}

/* An error of a statement reading the table (rule 7). */
static int read_error(sqlite3 *db, int rc, rnn_err *err) {
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  if (rc == SQLITE_INTERRUPT) return rnn_err_code(err, rc);
  rnn_err_set(err, "rnn_scan(): reading the table: %s", sqlite3_errmsg(db));
  err->rc = rc;
  return rc;
}

/* Rule 6: a and b are peers in ORDER BY. */
static int same_order(sqlite3_value *a, sqlite3_value *b) {
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

/* Slot k's series: the next key, its statement bound and its state zeroed.
** *got is 0 when the keys ran out. */
static int next_series(scan_cursor *c, sqlite3 *db, scan_slot *sl, int *got, rnn_err *err) {
  *got = 0;
  if (c->keys_done) return SQLITE_OK;
  int rc = sqlite3_step(c->keys);
  if (rc == SQLITE_DONE) {
    c->keys_done = 1;
    return SQLITE_OK;
  }
  if (rc != SQLITE_ROW) return read_error(db, rc, err);
  sqlite3_value_free(sl->key);
  sqlite3_value_free(sl->ord);
  sl->ord = NULL;
  sl->key = sqlite3_value_dup(sqlite3_column_value(c->keys, 0));
  if (!sl->key) return rnn_err_nomem(err);
  sqlite3_reset(sl->rows);
  if ((rc = sqlite3_bind_value(sl->rows, 1, sl->key)) != SQLITE_OK) return read_error(db, rc, err);
  rnn_state_reset(&c->e->model->net, &sl->st);
  sl->live = 1;
  *got = 1;
  return SQLITE_OK;
}

/* The slot's next row: its order value, features and whether it steps. */
static int slot_read(scan_cursor *c, sqlite3 *db, scan_slot *sl, rnn_err *err) {
  sl->has_row = 0;
  int rc;
  for (;;) {
    if (!sl->live) {
      int got;
      if (next_series(c, db, sl, &got, err) != SQLITE_OK) return err->rc;
      if (!got) return SQLITE_OK;
    }
    rc = sqlite3_step(sl->rows);
    if (rc == SQLITE_ROW) break;
    if (rc != SQLITE_DONE) return read_error(db, rc, err);
    sl->live = 0;
  }
  sqlite3_value *o = sqlite3_column_value(sl->rows, 0);
  if (sl->ord && same_order(sl->ord, o)) {
    const char *k = (const char *)sqlite3_value_text(sl->key);
    return rnn_err_set(err, "rnn_scan(): two rows of the series with key %.40U have the same order value: the order "
                       "column must be unique within a series", k ? k : "NULL", -1);
  }
  sqlite3_value_free(sl->ord);
  if (!(sl->ord = sqlite3_value_dup(o))) return rnn_err_nomem(err);
  sqlite3_value *fv[SCAN_FIXED_ARGS + SCAN_MAX_FEATURES];
  for (int f = 0; f < c->nf; f++) fv[SCAN_FIXED_ARGS + f] = sqlite3_column_value(sl->rows, 1 + f);
  if (rnn_row_read(err, c->e->model, "rnn_scan", SCAN_FIXED_ARGS, SCAN_FIXED_ARGS + c->nf, fv, sl->x, &sl->use))
    return err->rc;
  sl->has_row = 1;
  return SQLITE_OK;
}

/* The pointwise part of a cell for batch row b (cells.c's cell_step after its products). */
static void cell_finish(const rnn_net *n, const rnn_dir *d, scan_cursor *c, int b, float *h, float *cc) {
  const int H = n->hidden;
  float *g = c->g + (size_t)b * n->ldg, *gh = c->gh + (size_t)b * n->ldg;
  switch (n->cell) {
    case CELL_RNN_TANH:
      n->k->tanh(g, H);
      memcpy(h, g, sizeof(float) * (size_t)H);
      break;
    case CELL_RNN_RELU:
      for (int j = 0; j < H; j++) h[j] = g[j] < 0.0f ? 0.0f : g[j]; /* PyTorch's clamp_min: NaN and -0 pass */
      break;
    case CELL_LSTM: n->k->lstm(g, cc, d->whr ? gh : h, H); break;
    case CELL_GRU: n->k->gru(g, gh, h, H); break;
    default: break;
  }
}

/* One step of the rows at[0..nb): rnn_step for each, the products batched (rule 2). */
static void batch_step(scan_cursor *c, scan_slot **at, int nb) {
  const rnn_net *n = &c->e->model->net;
  const int H = n->hidden, hout = n->hout, ldx = c->ldx, ldg = n->ldg, ldp = n->ldp;
  if (n->cell == CELL_SEED) {
    for (int b = 0; b < nb; b++) rnn_step(n, &at[b]->st, at[b]->x);
    return;
  }
  for (int b = 0; b < nb; b++) {
    at[b]->st.steps++;
    float *row = c->xm + (size_t)b * ldx;
    for (int i = 0; i < n->n_in; i++) { /* standardised as cells.c does */
      float v = at[b]->x[i];
      if (n->in_mean) v = v - n->in_mean[i];
      if (n->in_std) v = v / n->in_std[i];
      row[i] = v;
    }
  }
  for (int l = 0; l < n->layers; l++) {
    const rnn_dir *d = &n->layer[l].dir[0];
    const int in = n->layer[l].in;
    for (int b = 0; b < nb; b++) {
      float *row = c->xm + (size_t)b * ldx;
      if (l > 0) memcpy(row, at[b]->st.h + (size_t)(l - 1) * hout, sizeof(float) * (size_t)in);
      memcpy(row + in, at[b]->st.h + (size_t)l * hout, sizeof(float) * (size_t)hout);
    }
    if (n->cell == CELL_GRU) {
      for (int b = 0; b < nb; b++) memcpy(c->g + (size_t)b * ldg, d->bih, sizeof(float) * (size_t)ldg);
      for (int b = 0; b < nb; b++) memcpy(c->gh + (size_t)b * ldg, d->bhh, sizeof(float) * (size_t)ldg);
      n->k->gemm_t(c->g, ldg, d->wih, ldg, c->xm, ldx, in, ldg, nb);
      n->k->gemm_t(c->gh, ldg, d->whh, ldg, c->xm + in, ldx, hout, ldg, nb);
    } else {
      for (int b = 0; b < nb; b++) memcpy(c->g + (size_t)b * ldg, d->bsum, sizeof(float) * (size_t)ldg);
      n->k->gemm_t(c->g, ldg, d->wih, ldg, c->xm, ldx, in + hout, ldg, nb);
    }
    for (int b = 0; b < nb; b++) {
      cell_finish(n, d, c, b, at[b]->st.h + (size_t)l * hout, at[b]->st.c + (size_t)l * H);
    }
    if (n->cell == CELL_LSTM && d->whr) {
      memset(c->pm, 0, sizeof(float) * (size_t)nb * (size_t)ldp);
      n->k->gemm_t(c->pm, ldp, d->whr, ldp, c->gh, ldg, H, ldp, nb);
      for (int b = 0; b < nb; b++) {
        memcpy(at[b]->st.h + (size_t)l * hout, c->pm + (size_t)b * ldp, sizeof(float) * (size_t)hout);
      }
    }
  }
}

/* One round (rule 4): the next row of every slot, one batched step, the
** outputs. Sets eof when no slot has a row. */
static int scan_round(scan_cursor *c, sqlite3 *db, rnn_err *err) {
  const rnn_net *n = &c->e->model->net;
  scan_slot *at[SCAN_B];
  int nb = 0;
  for (int k = 0; k < SCAN_B; k++) {
    if (slot_read(c, db, &c->slot[k], err) != SQLITE_OK) return err->rc;
    if (c->slot[k].has_row && c->slot[k].use) at[nb++] = &c->slot[k];
  }
  if (nb) batch_step(c, at, nb);
  c->cur = -1;
  for (int k = SCAN_B - 1; k >= 0; k--) {
    scan_slot *sl = &c->slot[k];
    if (!sl->has_row) continue;
    c->cur = k;
    if (sl->st.steps) rnn_output(n, &sl->st, sl->out, c->g); /* c->g: ldg >= ldo floats of scratch */
  }
  c->eof = c->cur < 0;
  return SQLITE_OK;
}

static int scan_filter(sqlite3_vtab_cursor *p, int idxNum, const char *idxStr, int argc, sqlite3_value **argv) {
  (void)idxStr;
  (void)argc;
  scan_cursor *c = (scan_cursor *)p;
  scan_vtab *v = (scan_vtab *)p->pVtab;
  rnn_err err = {SQLITE_OK, NULL};
  scan_reset(c);
  c->eof = 1;
  c->nf = idxNum;
  if (c->nf > SCAN_MAX_FEATURES) c->nf = SCAN_MAX_FEATURES;
  c->e = rnn_resolve_value(v->conn, argv[0], "rnn_scan", &err);
  if (!c->e) return rnn_err_vtab(p->pVtab, &err);
  if (c->e->model->net.dirs != 1) {
    rnn_err_set(&err, "rnn_scan(): model is bidirectional: a window cannot see the rows after the current one, "
                "and the scan gives what the window gives (score whole sequences instead)");
    return rnn_err_vtab(p->pVtab, &err);
  }
  if (scan_prepare(c, v->db, argv, &err) != SQLITE_OK || scan_alloc(c, &err) != SQLITE_OK ||
      scan_round(c, v->db, &err) != SQLITE_OK) {
    return rnn_err_vtab(p->pVtab, &err);
  }
  return SQLITE_OK;
}

static int scan_next(sqlite3_vtab_cursor *p) {
  scan_cursor *c = (scan_cursor *)p;
  c->rowid++;
  for (int k = c->cur + 1; k < SCAN_B; k++) {
    if (c->slot[k].has_row) {
      c->cur = k;
      return SQLITE_OK;
    }
  }
  rnn_err err = {SQLITE_OK, NULL};
  if (scan_round(c, ((scan_vtab *)p->pVtab)->db, &err) != SQLITE_OK) {
    c->eof = 1;
    return rnn_err_vtab(p->pVtab, &err);
  }
  return SQLITE_OK;
}

static int scan_eof(sqlite3_vtab_cursor *p) { return ((scan_cursor *)p)->eof; }

static int scan_rowid(sqlite3_vtab_cursor *p, sqlite3_int64 *rowid) {
  *rowid = ((scan_cursor *)p)->rowid;
  return SQLITE_OK;
}

static int scan_column(sqlite3_vtab_cursor *p, sqlite3_context *ctx, int col) {
  scan_cursor *c = (scan_cursor *)p;
  const scan_slot *sl = &c->slot[c->cur];
  switch (col) {
    case C_KEY: sqlite3_result_value(ctx, sl->key); break;
    case C_ORD: sqlite3_result_value(ctx, sl->ord); break;
    case C_OUTPUT:
      if (sl->st.steps) rnn_result_output_named(ctx, sl->out, c->e->model->net.n_out, c->e->model->output_names);
      break; /* else NULL: no step yet (rule 5) */
    default: break; /* the arguments read as NULL */
  }
  return SQLITE_OK;
}

/* Installed by the registration table in rnn.c (functions.h). */
const sqlite3_module rnn_scan_module = {
  0,              /* iVersion */
  NULL,           /* xCreate: NULL makes the table eponymous-only */
  scan_connect, scan_best_index, scan_disconnect, NULL /* xDestroy */,
  scan_open, scan_close, scan_filter, scan_next, scan_eof, scan_column, scan_rowid,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, /* xUpdate .. xShadowName */
};

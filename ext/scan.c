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
**  2. Series run in lockstep: groups of SCAN_B slots, one product over a
**     group's rows per layer and step (kernel gemm_t: each row gets the bits
**     gemv_t gives it alone, so results equal rnn_step's). When a series ends,
**     its slot takes the next key, so the groups stay full until keys run out.
**  3. Memory is bounded by the slots, SCAN_S and the model, not by the row
**     count: each slot reads its series through its own statement (WHERE key
**     IS ?1 ORDER BY order), the keys come from SELECT DISTINCT key ORDER BY
**     key. An index on (key, order) makes each of those a range scan; without
**     it, each series scans the table (slow: README says so).
**  4. Work goes in blocks: the cursor's thread reads SCAN_S rounds (one row of
**     every slot per round), then each group computes its slots' rounds on its
**     own thread (the cursor's thread takes group 0), then the block's rows are
**     returned round by round, not in (key, order) order: sorting would need a
**     whole series buffered (ORDER BY key, ord sorts them). A slot stays in its
**     group and a series' rows are computed by the same operations whatever
**     the number of threads, so results do not depend on it. Threads: the
**     environment variable SQLITE_RNN_THREADS (1..SCAN_MAX_GROUPS) when set,
**     else the online CPUs, at most SCAN_MAX_GROUPS; they live from xFilter to
**     the cursor's reset and share nothing but the cursor's block.
**  5. As the window function: a row with a NULL feature takes no step and gets
**     the output of the rows before it (NULL before any); features are checked
**     by rnn_row_read (features.c); bidirectional models are refused.
**  6. Two rows of one series with equal order values (peers, for which the
**     default window frame shares one output) are an error: numbers compare by
**     value, TEXT and BLOB by bytes, two NULLs are equal.
**  7. Errors of the statements reading the table (interrupts included) stop
**     the scan with their code. Only the cursor's thread calls SQLite.
*/
#include "sequence.h"
#include "functions.h"
SQLITE_EXTENSION_INIT3
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCAN_B 16            /* series in lockstep in one group */
#define SCAN_S 64            /* rounds per block */
#define SCAN_MAX_GROUPS 8    /* groups, one thread each */
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
  sqlite3_value *key;   /* the series' key; owned (retired into the block when replaced) */
  sqlite3_value *prev;  /* the order value of the series' last row read (rule 6); owned */
  rnn_state st;         /* carved from the cursor's block; only its group's thread steps it */
  int live;             /* reading a series */
} scan_slot;

/* One row of the block: [round][slot]. */
typedef struct scan_row {
  sqlite3_value *key;   /* borrowed: the slot's key or one retired into the block */
  sqlite3_value *ord;   /* owned */
  unsigned char has;    /* the slot had a row this round */
  unsigned char use;    /* it takes a step (no NULL feature) */
  unsigned char fresh;  /* its series starts here: zero the state first */
  unsigned char out_ok; /* an output exists (a step was taken) */
} scan_row;

/* A group's scratch for its batched products. */
typedef struct scan_group {
  float *xm, *g, *gh, *pm; /* [B][ldx] layer inputs and h; [B][ldg] gates twice; [B][ldp] projections */
} scan_group;

typedef struct scan_cursor scan_cursor;
typedef struct scan_worker {
  scan_cursor *c;
  int group;
  pthread_t th;
} scan_worker;

struct scan_cursor {
  sqlite3_vtab_cursor base;
  rnn_entry *e;         /* model reference; owned */
  sqlite3_stmt *keys;   /* SELECT DISTINCT key; owned */
  int keys_done;
  int nf;               /* feature columns */
  int groups, nslot;    /* nslot = groups * SCAN_B */
  scan_slot *slot;      /* [nslot]; owned */
  scan_row *row;        /* [SCAN_S][nslot]; owned */
  float *xs, *outs;     /* [SCAN_S][nslot][I] raw features, [SCAN_S][nslot][ldo] outputs; in mem */
  sqlite3_value **retired; /* keys replaced during the block; owned */
  int nretired;
  scan_group grp[SCAN_MAX_GROUPS];
  float *mem;           /* one block for states, features, outputs and scratch; owned */
  int ldx;
  int nr;               /* rounds in the block */
  int r, k;             /* the current row */
  int eof;
  int64_t rowid;
  /* rule 4: workers 1..groups-1; started counts those running */
  scan_worker worker[SCAN_MAX_GROUPS];
  int started;
  int sync_ok;          /* mu and the conditions are initialised */
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  unsigned gen;         /* bumped for each block to compute */
  int pending;          /* workers still computing the block */
  int quit;
};

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
  for (int k = 0; k < c->nslot; k++) {
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

/* Rule 4: the number of groups. */
static int scan_groups(void) {
  const char *z = getenv("SQLITE_RNN_THREADS");
  long n = z && *z ? strtol(z, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > SCAN_MAX_GROUPS ? SCAN_MAX_GROUPS : (int)n;
}

/* The slots, the block and every group's scratch: sizes from the model and
** the groups only (rule 3). */
static int scan_alloc(scan_cursor *c, rnn_err *err) {
  const rnn_net *n = &c->e->model->net;
  const size_t nst = rnn_state_floats(n), ns = (size_t)c->nslot, rows = (size_t)SCAN_S * ns;
  c->ldx = imax(n->n_in, n->hout) + n->hout;
  size_t scratch = (size_t)SCAN_B * ((size_t)c->ldx + 2 * (size_t)n->ldg + (size_t)n->ldp);
  size_t floats = ns * nst + rows * ((size_t)n->n_in + (size_t)n->ldo) + (size_t)c->groups * scratch;
  /* each zeroed as soon as it exists: scan_reset reads the slots and rows */
  if (!(c->slot = sqlite3_malloc64(ns * sizeof(scan_slot)))) return rnn_err_nomem(err);
  memset(c->slot, 0, ns * sizeof(scan_slot));
  if (!(c->row = sqlite3_malloc64(rows * sizeof(scan_row)))) return rnn_err_nomem(err);
  memset(c->row, 0, rows * sizeof(scan_row));
  c->retired = sqlite3_malloc64((rows + ns) * sizeof(sqlite3_value *));
  c->mem = sqlite3_malloc64(floats * sizeof(float));
  if (!c->retired || !c->mem) return rnn_err_nomem(err);
  memset(c->mem, 0, floats * sizeof(float));
  float *m = c->mem;
  for (int k = 0; k < c->nslot; k++, m += nst) rnn_state_init(n, &c->slot[k].st, m);
  c->xs = m;
  c->outs = c->xs + rows * (size_t)n->n_in;
  m = c->outs + rows * (size_t)n->ldo;
  for (int g = 0; g < c->groups; g++, m += scratch) {
    c->grp[g].xm = m;
    c->grp[g].g = m + (size_t)SCAN_B * c->ldx;
    c->grp[g].gh = c->grp[g].g + (size_t)SCAN_B * n->ldg;
    c->grp[g].pm = c->grp[g].gh + (size_t)SCAN_B * n->ldg;
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


/* Slot sl's next series: the next key, its statement bound. *got is 0 when
** the keys ran out. The old key may be a row's of this block: it is retired. */
static int next_series(scan_cursor *c, sqlite3 *db, scan_slot *sl, int *got, rnn_err *err) {
  *got = 0;
  if (c->keys_done) return SQLITE_OK;
  int rc = sqlite3_step(c->keys);
  if (rc == SQLITE_DONE) {
    c->keys_done = 1;
    return SQLITE_OK;
  }
  if (rc != SQLITE_ROW) return read_error(db, rc, err);
  if (sl->key) c->retired[c->nretired++] = sl->key;
  sqlite3_value_free(sl->prev);
  sl->prev = NULL;
  sl->key = sqlite3_value_dup(sqlite3_column_value(c->keys, 0));
  if (!sl->key) return rnn_err_nomem(err);
  sqlite3_reset(sl->rows);
  if ((rc = sqlite3_bind_value(sl->rows, 1, sl->key)) != SQLITE_OK) return read_error(db, rc, err);
  sl->live = 1;
  *got = 1;
  return SQLITE_OK;
}

/* Slot sl's next row into row and x: its order value, features, whether it
** steps and whether its series starts there. */
static int slot_read(scan_cursor *c, sqlite3 *db, scan_slot *sl, scan_row *row, float *x, rnn_err *err) {
  int rc, fresh = 0;
  row->has = 0;
  for (;;) {
    if (!sl->live) {
      int got;
      if (next_series(c, db, sl, &got, err) != SQLITE_OK) return err->rc;
      if (!got) return SQLITE_OK;
      fresh = 1;
    }
    rc = sqlite3_step(sl->rows);
    if (rc == SQLITE_ROW) break;
    if (rc != SQLITE_DONE) return read_error(db, rc, err);
    sl->live = 0;
  }
  sqlite3_value *o = sqlite3_column_value(sl->rows, 0);
  if (sl->prev && same_order(sl->prev, o)) {
    const char *k = (const char *)sqlite3_value_text(sl->key);
    return rnn_err_set(err, "rnn_scan(): two rows of the series with key %.40U have the same order value: the order "
                       "column must be unique within a series", k ? k : "NULL", -1);
  }
  sqlite3_value_free(sl->prev);
  sl->prev = sqlite3_value_dup(o);
  row->ord = sqlite3_value_dup(o);
  if (!sl->prev || !row->ord) return rnn_err_nomem(err);
  sqlite3_value *fv[SCAN_FIXED_ARGS + SCAN_MAX_FEATURES];
  for (int f = 0; f < c->nf; f++) fv[SCAN_FIXED_ARGS + f] = sqlite3_column_value(sl->rows, 1 + f);
  int use = 0;
  if (rnn_row_read(err, c->e->model, "rnn_scan", SCAN_FIXED_ARGS, SCAN_FIXED_ARGS + c->nf, fv, x, &use)) {
    return err->rc;
  }
  row->key = sl->key;
  row->use = (unsigned char)use;
  row->fresh = (unsigned char)fresh;
  row->has = 1;
  return SQLITE_OK;
}

/* The pointwise part of a cell for batch row b (cells.c's cell_step after its products). */
static void cell_finish(const rnn_net *n, const rnn_dir *d, scan_group *gr, int b, float *h, float *cc) {
  const int H = n->hidden;
  float *g = gr->g + (size_t)b * n->ldg, *gh = gr->gh + (size_t)b * n->ldg;
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

/* Layer l's gates for the nb rows in gr->xm (cat(input, h) each): the
** products batched (rule 2), as cells.c's cell_step does them one by one. */
static void layer_products(const rnn_net *n, const rnn_dir *d, int in, scan_group *gr, int ldx, int nb) {
  const int hout = n->hout, ldg = n->ldg;
  if (n->cell == CELL_GRU) {
    for (int b = 0; b < nb; b++) memcpy(gr->g + (size_t)b * ldg, d->bih, sizeof(float) * (size_t)ldg);
    for (int b = 0; b < nb; b++) memcpy(gr->gh + (size_t)b * ldg, d->bhh, sizeof(float) * (size_t)ldg);
    n->k->gemm_t(gr->g, ldg, d->wih, ldg, gr->xm, ldx, in, ldg, nb);
    n->k->gemm_t(gr->gh, ldg, d->whh, ldg, gr->xm + in, ldx, hout, ldg, nb);
  } else {
    for (int b = 0; b < nb; b++) memcpy(gr->g + (size_t)b * ldg, d->bsum, sizeof(float) * (size_t)ldg);
    n->k->gemm_t(gr->g, ldg, d->wih, ldg, gr->xm, ldx, in + hout, ldg, nb);
  }
}

/* One step of the states st[0..nb) with raw features x[0..nb): rnn_step for
** each, bit for bit. */
static void batch_step(const rnn_net *n, scan_group *gr, int ldx, rnn_state **st, const float **x, int nb) {
  const int H = n->hidden, hout = n->hout, ldp = n->ldp;
  if (n->cell == CELL_SEED) {
    for (int b = 0; b < nb; b++) rnn_step(n, st[b], x[b]);
    return;
  }
  for (int b = 0; b < nb; b++) {
    st[b]->steps++;
    float *row = gr->xm + (size_t)b * ldx;
    for (int i = 0; i < n->n_in; i++) { /* standardised as cells.c does */
      float v = x[b][i];
      if (n->in_mean) v = v - n->in_mean[i];
      if (n->in_std) v = v / n->in_std[i];
      row[i] = v;
    }
  }
  for (int l = 0; l < n->layers; l++) {
    const rnn_dir *d = &n->layer[l].dir[0];
    const int in = n->layer[l].in;
    for (int b = 0; b < nb; b++) {
      float *row = gr->xm + (size_t)b * ldx;
      if (l > 0) memcpy(row, st[b]->h + (size_t)(l - 1) * hout, sizeof(float) * (size_t)in);
      memcpy(row + in, st[b]->h + (size_t)l * hout, sizeof(float) * (size_t)hout);
    }
    layer_products(n, d, in, gr, ldx, nb);
    for (int b = 0; b < nb; b++) cell_finish(n, d, gr, b, st[b]->h + (size_t)l * hout, st[b]->c + (size_t)l * H);
    if (n->cell == CELL_LSTM && d->whr) {
      memset(gr->pm, 0, sizeof(float) * (size_t)nb * (size_t)ldp);
      n->k->gemm_t(gr->pm, ldp, d->whr, ldp, gr->gh, n->ldg, H, ldp, nb);
      for (int b = 0; b < nb; b++) {
        memcpy(st[b]->h + (size_t)l * hout, gr->pm + (size_t)b * ldp, sizeof(float) * (size_t)hout);
      }
    }
  }
}

/* Group g's rows of every round of the block: no SQLite calls (rule 7). */
static void group_compute(scan_cursor *c, int g) {
  const rnn_net *n = &c->e->model->net;
  const int I = n->n_in, ns = c->nslot;
  for (int r = 0; r < c->nr; r++) {
    rnn_state *st[SCAN_B];
    const float *x[SCAN_B];
    int nb = 0;
    for (int k = g * SCAN_B; k < (g + 1) * SCAN_B; k++) {
      scan_row *row = &c->row[(size_t)r * ns + k];
      if (!row->has) continue;
      if (row->fresh) rnn_state_reset(n, &c->slot[k].st);
      if (!row->use) continue;
      st[nb] = &c->slot[k].st;
      x[nb++] = c->xs + ((size_t)r * ns + k) * I;
    }
    if (nb) batch_step(n, &c->grp[g], c->ldx, st, x, nb);
    for (int k = g * SCAN_B; k < (g + 1) * SCAN_B; k++) {
      scan_row *row = &c->row[(size_t)r * ns + k];
      if (!row->has) continue;
      row->out_ok = c->slot[k].st.steps > 0;
      if (row->out_ok) rnn_output(n, &c->slot[k].st, c->outs + ((size_t)r * ns + k) * n->ldo, c->grp[g].g);
    }
  }
}

/* A worker: computes its group of each block it is woken for (rule 4). */
static void *worker_main(void *arg) {
  scan_worker *w = arg;
  scan_cursor *c = w->c;
  unsigned seen = 0;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (c->gen == seen && !c->quit) pthread_cond_wait(&c->go, &c->mu);
    if (c->quit) break;
    seen = c->gen;
    pthread_mutex_unlock(&c->mu);
    group_compute(c, w->group);
    pthread_mutex_lock(&c->mu);
    if (--c->pending == 0) pthread_cond_signal(&c->done);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* Start the workers; with fewer than asked (no threads to be had) the
** remaining groups run on the cursor's thread, with the same results. */
static void start_workers(scan_cursor *c) {
  if (c->groups < 2) return;
  if (pthread_mutex_init(&c->mu, NULL)) return;
  if (pthread_cond_init(&c->go, NULL)) {
    pthread_mutex_destroy(&c->mu);
    return;
  }
  if (pthread_cond_init(&c->done, NULL)) {
    pthread_cond_destroy(&c->go);
    pthread_mutex_destroy(&c->mu);
    return;
  }
  c->sync_ok = 1;
  for (int g = 1; g < c->groups; g++) {
    c->worker[c->started].c = c;
    c->worker[c->started].group = g;
    if (pthread_create(&c->worker[c->started].th, NULL, worker_main, &c->worker[c->started])) break;
    c->started++;
  }
}

static void stop_workers(scan_cursor *c) {
  if (!c->sync_ok) return;
  pthread_mutex_lock(&c->mu);
  c->quit = 1;
  pthread_cond_broadcast(&c->go);
  pthread_mutex_unlock(&c->mu);
  for (int i = 0; i < c->started; i++) pthread_join(c->worker[i].th, NULL);
  pthread_cond_destroy(&c->done);
  pthread_cond_destroy(&c->go);
  pthread_mutex_destroy(&c->mu);
  c->started = 0;
  c->sync_ok = 0;
}

/* Every group computes the block: the workers theirs, this thread group 0
** and any group no worker took. */
static void compute_block(scan_cursor *c) {
  if (c->started) {
    pthread_mutex_lock(&c->mu);
    c->pending = c->started;
    c->gen++;
    pthread_cond_broadcast(&c->go);
    pthread_mutex_unlock(&c->mu);
  }
  group_compute(c, 0);
  for (int g = 1 + c->started; g < c->groups; g++) group_compute(c, g);
  if (c->started) {
    pthread_mutex_lock(&c->mu);
    while (c->pending) pthread_cond_wait(&c->done, &c->mu);
    pthread_mutex_unlock(&c->mu);
  }
}

/* Free the block's values (every row read, a round cut short included). */
static void release_block(scan_cursor *c) {
  if (!c->row) return;
  for (size_t i = 0; i < (size_t)SCAN_S * c->nslot; i++) {
    sqlite3_value_free(c->row[i].ord);
    memset(&c->row[i], 0, sizeof(scan_row));
  }
  for (int i = 0; i < c->nretired; i++) sqlite3_value_free(c->retired[i]);
  c->nretired = 0;
  c->nr = 0;
}

/* Move to the block's next row from (r, k + 1); eof when the block has none. */
static void seek_row(scan_cursor *c) {
  for (; c->r < c->nr; c->r++, c->k = -1) {
    for (c->k++; c->k < c->nslot; c->k++) {
      if (c->row[(size_t)c->r * c->nslot + c->k].has) return;
    }
  }
  c->eof = 1;
}

/* The next block (rule 4): read up to SCAN_S rounds, compute, point at its first row. */
static int next_block(scan_cursor *c, sqlite3 *db, rnn_err *err) {
  const int I = c->e->model->net.n_in;
  release_block(c);
  for (int r = 0; r < SCAN_S; r++) {
    int any = 0;
    for (int k = 0; k < c->nslot; k++) {
      size_t at = (size_t)r * c->nslot + k;
      if (slot_read(c, db, &c->slot[k], &c->row[at], c->xs + at * I, err) != SQLITE_OK) return err->rc;
      any |= c->row[at].has;
    }
    if (!any) break;
    c->nr = r + 1;
  }
  if (c->nr) compute_block(c);
  c->r = 0;
  c->k = -1;
  c->eof = 0;
  seek_row(c);
  return SQLITE_OK;
}

static void scan_reset(scan_cursor *c) {
  stop_workers(c);
  release_block(c);
  rnn_entry_release(c->e);
  sqlite3_finalize(c->keys);
  for (int k = 0; c->slot && k < c->nslot; k++) {
    sqlite3_finalize(c->slot[k].rows);
    sqlite3_value_free(c->slot[k].key);
    sqlite3_value_free(c->slot[k].prev);
  }
  sqlite3_free(c->slot);
  sqlite3_free(c->row);
  sqlite3_free(c->retired);
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
  c->groups = scan_groups();
  c->nslot = c->groups * SCAN_B;
  if (scan_alloc(c, &err) != SQLITE_OK || scan_prepare(c, v->db, argv, &err) != SQLITE_OK) {
    return rnn_err_vtab(p->pVtab, &err);
  }
  start_workers(c);
  if (next_block(c, v->db, &err) != SQLITE_OK) {
    c->eof = 1;
    return rnn_err_vtab(p->pVtab, &err);
  }
  return SQLITE_OK;
}

static int scan_next(sqlite3_vtab_cursor *p) {
  scan_cursor *c = (scan_cursor *)p;
  c->rowid++;
  seek_row(c);
  if (!c->eof || c->nr == 0) return SQLITE_OK;
  rnn_err err = {SQLITE_OK, NULL};
  if (next_block(c, ((scan_vtab *)p->pVtab)->db, &err) != SQLITE_OK) {
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
  const size_t at = (size_t)c->r * c->nslot + c->k;
  const scan_row *row = &c->row[at];
  const rnn_model *m = c->e->model;
  switch (col) {
    case C_KEY: sqlite3_result_value(ctx, row->key); break;
    case C_ORD: sqlite3_result_value(ctx, row->ord); break;
    case C_OUTPUT:
      if (row->out_ok) rnn_result_output_named(ctx, c->outs + at * m->net.ldo, m->net.n_out, m->output_names);
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


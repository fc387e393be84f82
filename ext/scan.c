/*
** scan.c: rnn_scan(), an eponymous table that scores every row of a table,
** many series at once, past SQLite's window machinery. The arithmetic is
** scan_compute.c's; this file reads the table, hands groups of series to
** threads and returns the rows.
**
**   INSERT INTO pred SELECT * FROM rnn_scan('sensor', 'series', 'id', 't', 'v');
**
** rnn_scan(model, table, key, order, feature...): one row per row of `table`,
** in (key, order) order, with columns key, ord (the row's key and order
** values) and output: for every row, the value of rnn_predict(model,
** feature...) OVER (PARTITION BY key ORDER BY order) for that row, bit for
** bit, on every CPU path.
**
** Rules kept:
**  1. Safety: the table is the user's, so the module declares
**     SQLITE_VTAB_DIRECTONLY (no use from a schema's views or triggers), reads
**     only through the SELECT it builds itself with every name quoted as an
**     identifier (in backquotes, never double quotes, which SQLite reads as a
**     string when no column matches; no SQL can come in through a name), and
**     checks it is read-only. SQLite's own error names a missing table or column.
**  2. One statement reads the table, in (key, order) order: with an index on
**     (key, order) (or that primary key) a walk of the index, SELECT key,
**     order, feature... FROM table WHERE rnn_scan_feed(...) ORDER BY key,
**     order; without one SQLite sorts (its sorter spills to disk) in a
**     subquery whose sorted rows the WHERE then sees. rnn_scan_feed, called by
**     the statement for each row with the cursor as a pointer argument, puts
**     the row in the group being filled from its (protected) argument values
**     and returns 1 only when the group is complete: one sqlite3_step per
**     group, not per row. That row is then read with sqlite3_column_*.
**  3. Groups: the rows are cut into groups of up to SCAN_B whole series in
**     table order, each computed in lockstep (scan_compute.c), then returned
**     row by row: a series' rows come out in order, after the series before it.
**  4. Memory is bounded whatever the row count: the groups (threads + 2 of
**     them) share SCAN_MEMORY bytes of rows (features, outputs, order values,
**     TEXT/BLOB bytes; environment variable SQLITE_RNN_SCAN_MEMORY, in bytes,
**     overrides it: the tests make it small). A series that does not fit in
**     what is left of a group goes on in the next group, whose computation
**     starts from the state the previous one left: a series longer than a
**     group is scored in chunks, one after the other.
**  5. Threads: SQLITE_RNN_THREADS (1..SCAN_MAX_THREADS) when set, else the
**     online CPUs, at most SCAN_MAX_THREADS: the connection's thread reads and
**     returns rows and computes a group when it would otherwise wait; the others
**     only compute. Only the connection's thread calls SQLite. A series'
**     arithmetic is the same whatever its group, batch row or thread, so
**     results do not depend on the number of threads.
**  6. As the window function: a row with a NULL feature takes no step and gets
**     the output of the rows before it (NULL before any); features are checked
**     as features.c does; bidirectional models are refused.
**  7. Rows of one key are one series: keys compare as the rows' order does
**     (numbers by value, 1 and 1.0 alike; TEXT and BLOB by bytes). Two rows of
**     one series with equal order values (peers, for which the default window
**     frame shares one output) are an error; two NULLs are equal.
**  8. An error of the statement (an interrupt included) stops the scan with
**     its code.
*/
#include "scan.h"
#include "f32.h"
#include "functions.h"
#include "sequence.h"
#include "tokenizer.h"
SQLITE_EXTENSION_INIT3
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_MAX_THREADS RNN_MAX_THREADS
#define SCAN_MAX_FEATURES 32       /* feature columns one call can name */
#define SCAN_MEMORY (32u << 20)    /* rule 4: bytes of rows held by all groups together */
#define SCAN_MAX_GROUPS (SCAN_MAX_THREADS + 2)

enum { C_KEY, C_ORD, C_OUTPUT, C_MODEL, C_TABLE, C_KEYCOL, C_ORDCOL, C_F1 };
#define SCAN_FIXED_ARGS 4 /* model, table, key, order */

typedef struct scan_vtab {
  sqlite3_vtab base;
  rnn_conn *conn; /* borrowed from the module's pAux */
  sqlite3 *db;
} scan_vtab;

typedef struct scan_cursor scan_cursor;
typedef struct scan_worker {
  scan_cursor *c;
  scan_work *w;
  pthread_t th;
} scan_worker;

struct scan_cursor {
  sqlite3_vtab_cursor base;
  rnn_entry *e;           /* model reference; owned */
  sqlite3_stmt *rows;     /* rule 2; owned */
  int nf;                 /* feature columns */
  int have_row;           /* rows returned a row no group has taken yet */
  scan_group *filling;    /* the group rnn_scan_feed fills, while rows steps */
  rnn_err ferr;           /* an error of rnn_scan_feed, for fill */
  int input_done;
  int ngroups;
  scan_group grp[SCAN_MAX_GROUPS];
  size_t budget;          /* bytes of rows of one group */
  size_t row_bytes;       /* bytes one row takes in a group */
  scan_group *last;       /* the group filled last */
  /* rule 4: the series a group broke off goes on in the next: its key and last order value */
  int split;
  scan_val split_key, split_ord;
  char *split_mem;        /* their TEXT/BLOB bytes; owned */
  size_t split_cap;
  /* groups filled and not yet returned, in table order; ring[rhead] is being returned */
  scan_group *ring[SCAN_MAX_GROUPS];
  int rhead, rlen;
  scan_group *cur;        /* the group whose rows are being returned */
  int64_t at;             /* its current row */
  int si;                 /* the series of that row */
  int eof;
  int64_t rowid;
  int plain;              /* features are plain numbers, one per input (take_fast) */
  int nthreads;
  scan_work work[SCAN_MAX_THREADS]; /* [0] the connection's thread's */
  float *workmem;         /* owned */
  scan_worker worker[SCAN_MAX_THREADS];
  int started;            /* workers running */
  int sync_ok;            /* mu and cv are initialised */
  pthread_mutex_t mu;
  pthread_cond_t cv;      /* a group changed state, or quit */
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

/* *found: stmt sorts (an opcode of its EXPLAIN opens a sorter or an
** ephemeral table), rather than reading an index in its ORDER BY's order. */
static int sorts(sqlite3 *db, sqlite3_stmt *stmt, int *found, rnn_err *err) {
  char *sql = sqlite3_mprintf("EXPLAIN %s", sqlite3_sql(stmt));
  sqlite3_stmt *ex = NULL;
  int rc = sql ? sqlite3_prepare_v2(db, sql, -1, &ex, NULL) : SQLITE_NOMEM;
  sqlite3_free(sql);
  *found = 0;
  while (rc == SQLITE_OK && (rc = sqlite3_step(ex)) == SQLITE_ROW) {
    const char *op = (const char *)sqlite3_column_text(ex, 1);
    rc = op ? SQLITE_OK : SQLITE_NOMEM;
    if (op && (strcmp(op, "SorterOpen") == 0 || strcmp(op, "OpenEphemeral") == 0)) *found = 1;
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  int frc = sqlite3_finalize(ex);
  if (rc == SQLITE_OK) rc = frc;
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  return rc == SQLITE_OK ? SQLITE_OK : rnn_err_code(err, rc);
}

/* Rules 1 and 2: the statement reading the table, rnn_scan_feed in its WHERE.
** When an index gives the rows in (key, order) order, the WHERE sees them in
** that order: SELECT k, o, f FROM t WHERE feed(...) ORDER BY k, o. When SQLite
** must sort, the WHERE would run before the sort, so the ORDER BY goes into a
** subquery with a LIMIT (neither flattened nor given the WHERE) whose rows the
** WHERE then sees sorted. */
static int scan_prepare(scan_cursor *c, sqlite3 *db, sqlite3_value **argv, rnn_err *err) {
  const char *name[SCAN_FIXED_ARGS + SCAN_MAX_FEATURES];
  for (int a = 1; a < SCAN_FIXED_ARGS + c->nf; a++) {
    if (arg_name(argv[a], a + 1, &name[a], err) != SQLITE_OK) return err->rc;
  }
  static const int head[] = {2, 3}, from[] = {1}, order[] = {2, 3};
  const int ncol = 2 + c->nf;
  for (int sub = 0; sub < 2; sub++) {
    sqlite3_str *s = sqlite3_str_new(db);
    append_sql(s, sub ? "SELECT c0, c1" : "SELECT %N, %N", name, head);
    for (int f = 0; f < c->nf; f++) {
      sqlite3_str_appendall(s, ", ");
      if (sub) sqlite3_str_appendf(s, "c%d", 2 + f);
      else append_name(s, name[SCAN_FIXED_ARGS + f]);
    }
    if (sub) {
      append_sql(s, " FROM (SELECT %N AS c0, %N AS c1", name, head);
      for (int f = 0; f < c->nf; f++) {
        sqlite3_str_appendall(s, ", ");
        append_name(s, name[SCAN_FIXED_ARGS + f]);
        sqlite3_str_appendf(s, " AS c%d", 2 + f);
      }
      append_sql(s, " FROM %N ORDER BY 1, 2 LIMIT -1) WHERE rnn_scan_feed(?1", name, from);
      for (int i = 0; i < ncol; i++) sqlite3_str_appendf(s, ", c%d", i);
      sqlite3_str_appendall(s, ")");
    } else {
      append_sql(s, " FROM %N WHERE rnn_scan_feed(?1, %N, %N", name, (const int[]){1, 2, 3});
      for (int f = 0; f < c->nf; f++) {
        sqlite3_str_appendall(s, ", ");
        append_name(s, name[SCAN_FIXED_ARGS + f]);
      }
      append_sql(s, ") ORDER BY %N, %N", name, order);
    }
    if (prepare_read(db, s, &c->rows, err) != SQLITE_OK) return err->rc;
    int sorted = 0;
    if (!sub && sorts(db, c->rows, &sorted, err) != SQLITE_OK) return err->rc;
    if (!sorted) break;
    sqlite3_finalize(c->rows);
    c->rows = NULL;
  }
  int rc = sqlite3_bind_pointer(c->rows, 1, c, "rnn_scan_cursor", NULL);
  return rc == SQLITE_OK ? SQLITE_OK : rnn_err_code(err, rc);
}

/* Rule 4: bytes of rows all groups may hold. */
static size_t scan_memory(void) {
  const char *z = getenv("SQLITE_RNN_SCAN_MEMORY");
  long long n = z && *z ? strtoll(z, NULL, 10) : 0;
  return n > 0 ? (size_t)n : SCAN_MEMORY;
}

/* The groups' states and every thread's scratch; the rows grow as they come. */
static int scan_alloc(scan_cursor *c, rnn_err *err) {
  const rnn_net *n = &c->e->model->net;
  const size_t nst = rnn_state_floats(n), nw = rnn_scan_work_floats(n);
  c->ngroups = c->nthreads + 2;
  c->row_bytes = sizeof(float) * ((size_t)n->n_in + (size_t)n->n_out) + 2 * sizeof(scan_val) + 1;
  c->budget = scan_memory() / (size_t)c->ngroups;
  for (int g = 0; g < c->ngroups; g++) {
    scan_group *gr = &c->grp[g];
    if (!(gr->stmem = sqlite3_malloc64(sizeof(float) * nst * SCAN_B))) return rnn_err_nomem(err);
    memset(gr->stmem, 0, sizeof(float) * nst * SCAN_B);
    for (int s = 0; s < SCAN_B; s++) rnn_state_init(n, &gr->st[s], gr->stmem + (size_t)s * nst);
  }
  if (!(c->workmem = sqlite3_malloc64(sizeof(float) * nw * (size_t)c->nthreads))) return rnn_err_nomem(err);
  memset(c->workmem, 0, sizeof(float) * nw * (size_t)c->nthreads);
  for (int t = 0; t < c->nthreads; t++) rnn_scan_work_init(n, &c->work[t], c->workmem + (size_t)t * nw);
  return SQLITE_OK;
}

static void group_free(scan_group *g) {
  sqlite3_free(g->x);
  sqlite3_free(g->out);
  sqlite3_free(g->ord);
  sqlite3_free(g->okey);
  sqlite3_free(g->flag);
  sqlite3_free(g->arena);
  sqlite3_free(g->stmem);
  memset(g, 0, sizeof(*g));
}

/* An error of the statement reading the table (rule 8). */
static int read_error(sqlite3 *db, int rc, rnn_err *err) {
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  if (rc == SQLITE_INTERRUPT) return rnn_err_code(err, rc);
  rnn_err_set(err, "rnn_scan(): reading the table: %s", sqlite3_errmsg(db));
  err->rc = rc;
  return rc;
}

/* ---- Filling a group from the statement (rules 2, 3, 4, 6, 7) ---- */

/* Room in g for one more row and `bytes` of TEXT/BLOB: within the budget, or
** any row at all when g is empty (a group always takes a row). Grows the
** arrays when needed. *fits says which; an error only when memory runs out. */
static int room(scan_cursor *c, scan_group *g, size_t bytes, int *fits, rnn_err *err) {
  const rnn_net *n = &c->e->model->net;
  *fits = 0;
  if (g->nrow > 0 && (size_t)(g->nrow + 1) * c->row_bytes + g->alen + bytes > c->budget) return SQLITE_OK;
  if (g->nrow == g->cap) {
    int64_t cap = g->cap ? 2 * g->cap : 1024, most = (int64_t)(c->budget / c->row_bytes) + 1;
    cap = cap > most && most > g->nrow ? most : cap;
    float *x = sqlite3_realloc64(g->x, sizeof(float) * (size_t)cap * (size_t)(n->n_in ? n->n_in : 1));
    if (x) g->x = x;
    float *out = sqlite3_realloc64(g->out, sizeof(float) * (size_t)cap * (size_t)n->n_out);
    if (out) g->out = out;
    scan_val *ord = sqlite3_realloc64(g->ord, sizeof(scan_val) * (size_t)cap);
    if (ord) g->ord = ord;
    scan_val *okey = sqlite3_realloc64(g->okey, sizeof(scan_val) * (size_t)cap);
    if (okey) g->okey = okey;
    unsigned char *flag = sqlite3_realloc64(g->flag, (size_t)cap);
    if (flag) g->flag = flag;
    if (!x || !out || !ord || !okey || !flag) return rnn_err_nomem(err);
    g->cap = cap;
  }
  if (g->alen + bytes > g->acap) {
    size_t cap = g->acap ? 2 * g->acap : 4096;
    while (cap < g->alen + bytes) cap *= 2;
    char *a = sqlite3_realloc64(g->arena, cap);
    if (!a) return rnn_err_nomem(err);
    g->arena = a;
    g->acap = cap;
  }
  *fits = 1;
  return SQLITE_OK;
}

/* A column of the current row as read, once: TEXT and BLOB point into the
** statement (valid until it steps). */
typedef struct scan_raw {
  int type, len;
  int64_t i;
  double d;
  const void *p;
} scan_raw;

static int raw_read(sqlite3_stmt *st, int i, scan_raw *r) {
  r->type = sqlite3_column_type(st, i);
  r->len = 0;
  switch (r->type) {
    case SQLITE_INTEGER: r->i = sqlite3_column_int64(st, i); break;
    case SQLITE_FLOAT: r->d = sqlite3_column_double(st, i); break;
    case SQLITE_TEXT:
    case SQLITE_BLOB:
      r->p = r->type == SQLITE_TEXT ? (const void *)sqlite3_column_text(st, i) : sqlite3_column_blob(st, i);
      r->len = sqlite3_column_bytes(st, i);
      if (!r->p && r->len) return SQLITE_NOMEM;
      break;
    default: break;
  }
  return SQLITE_OK;
}

/* The same from a protected value (an argument of rnn_scan_feed). */
static int raw_value(sqlite3_value *v, scan_raw *r) {
  r->type = sqlite3_value_type(v);
  r->len = 0;
  switch (r->type) {
    case SQLITE_INTEGER: r->i = sqlite3_value_int64(v); break;
    case SQLITE_FLOAT: r->d = sqlite3_value_double(v); break;
    case SQLITE_TEXT:
    case SQLITE_BLOB:
      r->p = r->type == SQLITE_TEXT ? (const void *)sqlite3_value_text(v) : sqlite3_value_blob(v);
      r->len = sqlite3_value_bytes(v);
      if (!r->p && r->len) return SQLITE_NOMEM;
      break;
    default: break;
  }
  return SQLITE_OK;
}

static size_t raw_bytes(const scan_raw *r) { return (size_t)r->len; }

/* r into v, its bytes appended at arena + *alen (room checked). */
static void raw_keep(const scan_raw *r, scan_val *v, char *arena, size_t *alen) {
  v->type = r->type;
  v->len = r->len;
  if (r->type == SQLITE_INTEGER) v->u.i = r->i;
  else if (r->type == SQLITE_FLOAT) v->u.d = r->d;
  else if (r->type == SQLITE_TEXT || r->type == SQLITE_BLOB) {
    v->u.off = *alen;
    if (r->len) memcpy(arena + *alen, r->p, (size_t)r->len);
    *alen += (size_t)r->len;
  }
}

/* Rule 7: v (bytes in arena) and r are peers in ORDER BY. */
static int raw_same(const scan_val *v, const char *arena, const scan_raw *r) {
  int na = v->type == SQLITE_INTEGER || v->type == SQLITE_FLOAT, nb = r->type == SQLITE_INTEGER || r->type == SQLITE_FLOAT;
  if (na && nb) {
    if (v->type == SQLITE_INTEGER && r->type == SQLITE_INTEGER) return v->u.i == r->i;
    double a = v->type == SQLITE_INTEGER ? (double)v->u.i : v->u.d, b = r->type == SQLITE_INTEGER ? (double)r->i : r->d;
    return a == b;
  }
  if (v->type != r->type) return 0;
  if (r->type == SQLITE_NULL) return 1;
  return r->len == v->len && (r->len == 0 || memcmp(r->p, arena + v->u.off, (size_t)r->len) == 0);
}

/* Rule 6 through features.c, for what the fast path does not take: the
** columns as protected copies. */
static int features_slow(scan_cursor *c, float *x, int *use, rnn_err *err) {
  sqlite3_value *fv[SCAN_FIXED_ARGS + SCAN_MAX_FEATURES];
  int rc = SQLITE_OK;
  for (int f = 0; f < c->nf; f++) {
    fv[SCAN_FIXED_ARGS + f] = sqlite3_value_dup(sqlite3_column_value(c->rows, 2 + f));
    if (!fv[SCAN_FIXED_ARGS + f]) rc = SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK) {
    rc = rnn_row_read(err, c->e->model, "rnn_scan", SCAN_FIXED_ARGS, SCAN_FIXED_ARGS + c->nf, fv, x, use);
  } else {
    rnn_err_nomem(err);
  }
  for (int f = 0; f < c->nf; f++) sqlite3_value_free(fv[SCAN_FIXED_ARGS + f]);
  return rc;
}

/* Rule 6: the row's features into x[0..I), *use 0 for a row with a NULL. */
static int features(scan_cursor *c, float *x, int *use, rnn_err *err) {
  const rnn_model *m = c->e->model;
  int type[SCAN_MAX_FEATURES];
  *use = 0;
  for (int f = 0; f < c->nf; f++) {
    if ((type[f] = sqlite3_column_type(c->rows, 2 + f)) == SQLITE_NULL) return SQLITE_OK;
  }
  if (m->n_vocab && c->nf == 1) { /* one-hot token, features.c rule 3 */
    int t = type[0], idx = -1;
    if (t == SQLITE_TEXT) {
      const char *z = (const char *)sqlite3_column_text(c->rows, 2);
      if (z) idx = rnn_model_token(m, z, sqlite3_column_bytes(c->rows, 2));
      if (z && idx < 0) idx = m->unknown;
    } else if (t == SQLITE_INTEGER) {
      sqlite3_int64 k = sqlite3_column_int64(c->rows, 2);
      idx = k >= 0 && k < m->n_vocab ? (int)k : -1;
    }
    if (idx < 0) return features_slow(c, x, use, err);
    memset(x, 0, sizeof(float) * (size_t)m->net.n_in);
    x[idx] = 1.0f;
    *use = 1;
    return SQLITE_OK;
  }
  if (c->nf != m->net.n_in) return features_slow(c, x, use, err);
  for (int f = 0; f < c->nf; f++) {
    int t = type[f];
    double d = t == SQLITE_INTEGER || t == SQLITE_FLOAT ? sqlite3_column_double(c->rows, 2 + f) : 0.0;
    if ((t != SQLITE_INTEGER && t != SQLITE_FLOAT) || !rnn_f32_finite(d)) return features_slow(c, x, use, err);
    x[f] = (float)d;
  }
  *use = 1;
  return SQLITE_OK;
}

/* Rule 6 for rnn_scan_feed's arguments fa[0..nf): plain numbers here, the
** rest (tokens, errors) by features.c from the same protected values. */
static int features_args(scan_cursor *c, sqlite3_value **fa, float *x, int *use, rnn_err *err) {
  const rnn_model *m = c->e->model;
  int type[SCAN_MAX_FEATURES], plain = !m->n_vocab && c->nf == m->net.n_in;
  *use = 0;
  for (int f = 0; f < c->nf; f++) {
    if ((type[f] = sqlite3_value_type(fa[f])) == SQLITE_NULL) return SQLITE_OK;
  }
  for (int f = 0; f < c->nf && plain; f++) {
    double d = type[f] == SQLITE_INTEGER || type[f] == SQLITE_FLOAT ? sqlite3_value_double(fa[f]) : 0.0;
    plain = (type[f] == SQLITE_INTEGER || type[f] == SQLITE_FLOAT) && rnn_f32_finite(d);
    if (plain) x[f] = (float)d;
  }
  if (plain) {
    *use = 1;
    return SQLITE_OK;
  }
  sqlite3_value *fv[SCAN_FIXED_ARGS + SCAN_MAX_FEATURES];
  for (int f = 0; f < c->nf; f++) fv[SCAN_FIXED_ARGS + f] = fa[f];
  return rnn_row_read(err, m, "rnn_scan", SCAN_FIXED_ARGS, SCAN_FIXED_ARGS + c->nf, fv, x, use);
}

/* Rule 4: keep the key and last order value of the series g breaks off. */
static int split_save(scan_cursor *c, scan_group *g, rnn_err *err) {
  const scan_val *k = &g->ser[g->nser - 1].key, *o = &g->ord[g->nrow - 1];
  size_t need = (size_t)k->len + (size_t)o->len;
  if (need > c->split_cap) {
    char *p = sqlite3_realloc64(c->split_mem, need);
    if (!p) return rnn_err_nomem(err);
    c->split_mem = p;
    c->split_cap = need;
  }
  c->split_key = *k;
  c->split_ord = *o;
  if (k->type == SQLITE_TEXT || k->type == SQLITE_BLOB) {
    memcpy(c->split_mem, g->arena + k->u.off, (size_t)k->len);
    c->split_key.u.off = 0;
  }
  if (o->type == SQLITE_TEXT || o->type == SQLITE_BLOB) {
    memcpy(c->split_mem + k->len, g->arena + o->u.off, (size_t)o->len);
    c->split_ord.u.off = (size_t)k->len;
  }
  g->ser[g->nser - 1].cont_out = 1;
  c->split = 1;
  return SQLITE_OK;
}

/* Open the series that continues the one the previous group broke off. */
static int split_open(scan_cursor *c, scan_group *g, rnn_err *err) {
  int fits; /* always: the group is empty */
  if (room(c, g, (size_t)c->split_key.len, &fits, err) != SQLITE_OK) return err->rc;
  scan_series *s = &g->ser[g->nser++];
  memset(s, 0, sizeof(*s));
  s->key = c->split_key;
  if (s->key.type == SQLITE_TEXT || s->key.type == SQLITE_BLOB) {
    memcpy(g->arena + g->alen, c->split_mem, (size_t)s->key.len);
    s->key.u.off = g->alen;
    g->alen += (size_t)s->key.len;
  }
  s->cont_in = 1;
  c->split = 0;
  return SQLITE_OK;
}

/* Rule 7: the error for a second row with the order value of the row before;
** the key as SQLite would show it as TEXT. */
static int tie_error(const scan_raw *key, rnn_err *err) {
  char num[64];
  const char *z = "NULL";
  int n = -1;
  if (key->type == SQLITE_INTEGER) sqlite3_snprintf(sizeof(num), num, "%lld", (long long)key->i);
  else if (key->type == SQLITE_FLOAT) sqlite3_snprintf(sizeof(num), num, "%!.15g", key->d);
  if (key->type == SQLITE_INTEGER || key->type == SQLITE_FLOAT) z = num;
  if (key->type == SQLITE_TEXT || key->type == SQLITE_BLOB) {
    z = key->len ? key->p : "";
    n = key->len;
  }
  return rnn_err_set(err, "rnn_scan(): two rows of the series with key %.40U have the same order value: the order "
                     "column must be unique within a series", z, n);
}

/* For a key equal to v (raw_same): whether it is v itself, not another
** number of the same value (1.0 for 1, -0.0 for 0.0). TEXT and BLOB equal
** byte for byte are the same. */
static int same_number(const scan_val *v, const scan_raw *r) {
  if (v->type != r->type) return 0;
  return v->type != SQLITE_FLOAT || memcmp(&v->u.d, &r->d, sizeof(double)) == 0;
}

/* A row into g, or *full when it belongs to the next group: the row rnn_scan_feed
** is called for (argv: the cursor, key, order, features), or with argv NULL
** the row the statement returned. */
static int take_row(scan_cursor *c, scan_group *g, sqlite3_value **argv, int *full, rnn_err *err) {
  scan_raw key, ord;
  int rk = argv ? raw_value(argv[1], &key) : raw_read(c->rows, 0, &key);
  int ro = argv ? raw_value(argv[2], &ord) : raw_read(c->rows, 1, &ord);
  if (rk != SQLITE_OK || ro != SQLITE_OK) return rnn_err_nomem(err);
  scan_series *s = g->nser ? &g->ser[g->nser - 1] : NULL;
  int same = s && raw_same(&s->key, g->arena, &key);
  size_t bytes = raw_bytes(&ord) + (same ? 0 : raw_bytes(&key));
  int fits;
  *full = 0;
  if (same) {
    const scan_val *prev = s->n ? &g->ord[g->nrow - 1] : &c->split_ord;
    if (raw_same(prev, s->n ? g->arena : c->split_mem, &ord)) return tie_error(&key, err);
  } else if (g->nser == SCAN_B) {
    *full = 1;
    return SQLITE_OK;
  }
  if (room(c, g, bytes, &fits, err) != SQLITE_OK) return err->rc;
  if (!fits) {
    *full = 1;
    return same ? split_save(c, g, err) : SQLITE_OK;
  }
  if (!same) {
    s = &g->ser[g->nser++];
    memset(s, 0, sizeof(*s));
    s->row0 = g->nrow;
    raw_keep(&key, &s->key, g->arena, &g->alen);
  }
  const int64_t r = g->nrow;
  raw_keep(&ord, &g->ord[r], g->arena, &g->alen);
  int use;
  float *x = g->x + (size_t)r * c->e->model->net.n_in;
  if (argv) {
    if (features_args(c, argv + 3, x, &use, err) != SQLITE_OK) return err->rc;
  } else if (features(c, x, &use, err) != SQLITE_OK) {
    return err->rc;
  }
  g->flag[r] = use ? SCAN_USE : 0;
  if (same && !same_number(&s->key, &key)) { /* rule 7: the row keeps its own key, as the window shows it */
    size_t none = 0;
    raw_keep(&key, &g->okey[r], NULL, &none);
    g->flag[r] |= SCAN_OWNKEY;
  }
  g->nrow++;
  s->n++;
  return SQLITE_OK;
}

/* The common row, without take_row's generality: an INTEGER key equal to the
** key of the series being filled, an INTEGER order value after that series'
** last one, plain numeric features, room without growing. Returns 0 (nothing
** written) for any other row, which take_row then takes: same result. */
static int take_fast(scan_cursor *c, scan_group *g, sqlite3_value **argv) {
  if (!c->plain || g->nser == 0 || g->nrow >= g->cap) return 0;
  scan_series *s = &g->ser[g->nser - 1];
  const int64_t r = g->nrow;
  if (s->n == 0 || s->key.type != SQLITE_INTEGER || g->ord[r - 1].type != SQLITE_INTEGER) return 0;
  if ((size_t)(r + 1) * c->row_bytes + g->alen > c->budget) return 0;
  if (sqlite3_value_type(argv[1]) != SQLITE_INTEGER || sqlite3_value_type(argv[2]) != SQLITE_INTEGER) return 0;
  const int64_t ord = sqlite3_value_int64(argv[2]);
  if (sqlite3_value_int64(argv[1]) != s->key.u.i || ord == g->ord[r - 1].u.i) return 0;
  float *x = g->x + (size_t)r * (size_t)c->nf;
  for (int f = 0; f < c->nf; f++) {
    const int t = sqlite3_value_type(argv[3 + f]);
    if (t != SQLITE_FLOAT && t != SQLITE_INTEGER) return 0;
    const double d = sqlite3_value_double(argv[3 + f]);
    if (!rnn_f32_finite(d)) return 0;
    x[f] = (float)d;
  }
  g->ord[r].type = SQLITE_INTEGER;
  g->ord[r].len = 0;
  g->ord[r].u.i = ord;
  g->flag[r] = SCAN_USE;
  g->nrow = r + 1;
  s->n++;
  return 1;
}

/* Rule 2: rnn_scan_feed(cursor, key, order, feature...), called by the
** statement for each row in order: takes the row into the group being filled
** and returns NULL (no result set: SQLite presets it), or returns 1 (the row
** is then returned by the statement and the group is complete). Any other use
** is an error. */
void rnn_scan_feed(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  scan_cursor *c = argc >= 1 ? sqlite3_get_auxdata(ctx, 0) : NULL; /* saves a type-name compare per row */
  if (!c && argc >= 1 && (c = sqlite3_value_pointer(argv[0], "rnn_scan_cursor")) != NULL) {
    sqlite3_set_auxdata(ctx, 0, c, NULL);
  }
  if (!c || !c->filling || argc != 3 + c->nf) {
    sqlite3_result_error(ctx, "rnn_scan_feed(): for rnn_scan's own use", -1);
    return;
  }
  if (take_fast(c, c->filling, argv)) return; /* NULL (OP_Function's preset): the WHERE is false */
  int full = 0;
  if (take_row(c, c->filling, argv, &full, &c->ferr) != SQLITE_OK) {
    if (c->ferr.rc == SQLITE_NOMEM) sqlite3_result_error_nomem(ctx);
    else sqlite3_result_error(ctx, "rnn_scan", -1);
    return;
  }
  if (full) sqlite3_result_int(ctx, 1);
}

/* Fill g with the next rows of the table: whole series, or a part of one (rule 4). */
static int fill(scan_cursor *c, sqlite3 *db, scan_group *g, rnn_err *err) {
  g->nser = 0;
  g->nrow = 0;
  g->alen = 0;
  g->pred = c->last;
  g->carry_taken = 0;
  if (c->split && split_open(c, g, err) != SQLITE_OK) return err->rc;
  if (c->have_row) { /* the row that ended the group before */
    int full = 0;
    if (take_row(c, g, NULL, &full, err) != SQLITE_OK) return err->rc;
    c->have_row = 0;
  }
  c->filling = g;
  int rc = sqlite3_step(c->rows);
  c->filling = NULL;
  if (rc == SQLITE_ROW) {
    c->have_row = 1;
    return SQLITE_OK;
  }
  if (rc == SQLITE_DONE) {
    c->input_done = 1;
    return SQLITE_OK;
  }
  if (c->ferr.rc != SQLITE_OK) return rnn_err_take(err, &c->ferr);
  return read_error(db, rc, err);
}

/* ---- Threads (rule 5) ---- */

static void lock(scan_cursor *c) {
  if (c->sync_ok) pthread_mutex_lock(&c->mu);
}
static void unlock(scan_cursor *c) {
  if (c->sync_ok) pthread_mutex_unlock(&c->mu);
}

/* The first group of the ring waiting to be computed (under the lock). */
static scan_group *first_ready(scan_cursor *c) {
  for (int i = 0; i < c->rlen; i++) {
    scan_group *g = c->ring[(c->rhead + i) % c->ngroups];
    if (g->status == SCAN_READY) return g;
  }
  return NULL;
}

/* Compute g, marked SCAN_BUSY by the caller, on the calling thread. Entered
** and left under the lock. A continuation waits for its predecessor, which
** was taken before it (groups are taken in table order). */
static void run_group(scan_cursor *c, scan_group *g, scan_work *w) {
  if (g->nser && g->ser[0].cont_in) {
    while (g->pred->status != SCAN_DONE && c->sync_ok) pthread_cond_wait(&c->cv, &c->mu);
  }
  unlock(c);
  rnn_scan_compute(&c->e->model->net, g, w);
  lock(c);
  g->status = SCAN_DONE;
  if (g->nser && g->ser[0].cont_in) g->pred->carry_taken = 1;
  if (c->sync_ok) pthread_cond_broadcast(&c->cv);
}

static void *worker_main(void *arg) {
  scan_worker *wk = arg;
  scan_cursor *c = wk->c;
  pthread_mutex_lock(&c->mu);
  while (!c->quit) {
    scan_group *g = first_ready(c);
    if (!g) {
      pthread_cond_wait(&c->cv, &c->mu);
      continue;
    }
    g->status = SCAN_BUSY;
    run_group(c, g, wk->w);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* Start the workers; with fewer than asked (no threads to be had) the
** connection's thread computes the rest, with the same results. */
static void start_workers(scan_cursor *c) {
  if (c->nthreads < 2) return;
  if (pthread_mutex_init(&c->mu, NULL)) return;
  if (pthread_cond_init(&c->cv, NULL)) {
    pthread_mutex_destroy(&c->mu);
    return;
  }
  c->sync_ok = 1;
  for (int t = 1; t < c->nthreads; t++) {
    scan_worker *wk = &c->worker[c->started];
    wk->c = c;
    wk->w = &c->work[t];
    if (pthread_create(&wk->th, NULL, worker_main, wk)) break;
    c->started++;
  }
}

static void stop_workers(scan_cursor *c) {
  if (!c->sync_ok) return;
  pthread_mutex_lock(&c->mu);
  c->quit = 1;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  for (int i = 0; i < c->started; i++) pthread_join(c->worker[i].th, NULL);
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
  c->started = 0;
  c->sync_ok = 0;
}

/* Until g is computed (done) or may be reused (its continuation took the
** state): compute waiting groups meanwhile, else sleep. */
static void help_until(scan_cursor *c, scan_group *g, int reuse) {
  lock(c);
  while (reuse ? !g->carry_taken : g->status != SCAN_DONE) {
    scan_group *r = first_ready(c);
    if (r) {
      r->status = SCAN_BUSY;
      run_group(c, r, &c->work[0]);
    } else if (c->started) {
      pthread_cond_wait(&c->cv, &c->mu);
    } else {
      break; /* cannot happen: with no workers, every group waiting is in the ring */
    }
  }
  unlock(c);
}

/* ---- Returning rows ---- */

/* The next group to return (rule 3): the finished one goes back to the pool,
** every free group is filled and queued, then the oldest is awaited. */
static int advance(scan_cursor *c, sqlite3 *db, rnn_err *err) {
  if (c->cur) {
    scan_group *g = c->cur;
    if (g->nser && g->ser[g->nser - 1].cont_out) help_until(c, g, 1);
    lock(c);
    g->status = SCAN_FREE;
    c->rhead = (c->rhead + 1) % c->ngroups;
    c->rlen--;
    unlock(c);
    c->cur = NULL;
  }
  for (int i = 0; i < c->ngroups && !c->input_done && c->rlen < c->ngroups; i++) {
    scan_group *g = &c->grp[i];
    lock(c); /* the workers change the state of groups in the ring */
    int free = g->status == SCAN_FREE && g != c->last;
    unlock(c);
    if (!free) continue;
    if (fill(c, db, g, err) != SQLITE_OK) return err->rc;
    if (g->nrow == 0) break;
    lock(c);
    g->status = SCAN_READY;
    c->ring[(c->rhead + c->rlen++) % c->ngroups] = g;
    if (c->sync_ok) pthread_cond_broadcast(&c->cv);
    unlock(c);
    c->last = g;
  }
  if (c->rlen == 0) {
    c->eof = 1;
    return SQLITE_OK;
  }
  c->cur = c->ring[c->rhead];
  help_until(c, c->cur, 0);
  c->at = 0;
  c->si = 0;
  return SQLITE_OK;
}

static void scan_reset(scan_cursor *c) {
  stop_workers(c);
  rnn_entry_release(c->e);
  sqlite3_finalize(c->rows);
  for (int g = 0; g < SCAN_MAX_GROUPS; g++) group_free(&c->grp[g]);
  sqlite3_free(c->workmem);
  sqlite3_free(c->split_mem);
  sqlite3_free(c->ferr.msg);
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
  c->nf = idxNum > SCAN_MAX_FEATURES ? SCAN_MAX_FEATURES : idxNum;
  c->e = rnn_resolve_value(v->conn, argv[0], "rnn_scan", &err);
  if (!c->e) return rnn_err_vtab(p->pVtab, &err);
  if (c->e->model->net.dirs != 1) {
    rnn_err_set(&err, "rnn_scan(): model is bidirectional: a window cannot see the rows after the current one, "
                "and the scan gives what the window gives (score whole sequences instead)");
    return rnn_err_vtab(p->pVtab, &err);
  }
  c->plain = !c->e->model->n_vocab && c->nf == c->e->model->net.n_in;
  c->nthreads = rnn_threads(); /* rule 5 */
  if (scan_prepare(c, v->db, argv, &err) != SQLITE_OK || scan_alloc(c, &err) != SQLITE_OK) {
    return rnn_err_vtab(p->pVtab, &err);
  }
  c->eof = 0;
  start_workers(c);
  if (advance(c, v->db, &err) != SQLITE_OK) {
    c->eof = 1;
    return rnn_err_vtab(p->pVtab, &err);
  }
  return SQLITE_OK;
}

static int scan_next(sqlite3_vtab_cursor *p) {
  scan_cursor *c = (scan_cursor *)p;
  c->rowid++;
  if (++c->at < c->cur->nrow) {
    if (c->at >= c->cur->ser[c->si].row0 + c->cur->ser[c->si].n) c->si++;
    return SQLITE_OK;
  }
  rnn_err err = {SQLITE_OK, NULL};
  if (advance(c, ((scan_vtab *)p->pVtab)->db, &err) != SQLITE_OK) {
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

static void result_val(sqlite3_context *ctx, const scan_val *v, const char *arena) {
  switch (v->type) {
    case SQLITE_INTEGER: sqlite3_result_int64(ctx, v->u.i); break;
    case SQLITE_FLOAT: sqlite3_result_double(ctx, v->u.d); break;
    case SQLITE_TEXT: sqlite3_result_text64(ctx, arena + v->u.off, (sqlite3_uint64)v->len, SQLITE_TRANSIENT,
                                            SQLITE_UTF8); break;
    case SQLITE_BLOB: sqlite3_result_blob64(ctx, arena + v->u.off, (sqlite3_uint64)v->len, SQLITE_TRANSIENT); break;
    default: break; /* NULL */
  }
}

static int scan_column(sqlite3_vtab_cursor *p, sqlite3_context *ctx, int col) {
  scan_cursor *c = (scan_cursor *)p;
  const scan_group *g = c->cur;
  const rnn_model *m = c->e->model;
  switch (col) {
    case C_KEY:
      result_val(ctx, g->flag[c->at] & SCAN_OWNKEY ? &g->okey[c->at] : &g->ser[c->si].key, g->arena);
      break;
    case C_ORD: result_val(ctx, &g->ord[c->at], g->arena); break;
    case C_OUTPUT:
      if (!(g->flag[c->at] & SCAN_OUT)) break; /* NULL: no step yet (rule 6) */
      if (m->net.n_out == 1) sqlite3_result_double(ctx, (double)g->out[c->at]); /* rnn_result_output's one value */
      else rnn_result_output_named(ctx, g->out + (size_t)c->at * m->net.n_out, m->net.n_out, m->output_names);
      break;
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

/*
** bench_floor.c: a loadable extension for `make bench` part 6 (build/bench_floor.so):
** the least SQLite lets any scan built as rnn_scan is cost, measured in the same
** loop as rnn_scan and the copy job.
**
** rnn_scan reads the table through a statement whose WHERE calls a function
** for each row (ext/scan.c rule 2) and returns the rows through a virtual
** table into the INSERT. Here both do the least they can: floor_feed stores the
** row's three values into arrays, floor_scan returns them as they are; no model,
** no checks. What remains over the copy job (INSERT INTO p SELECT id, t, v FROM
** series) is SQLite's own: a function call per row in the reading statement and
** a virtual-table row (VNext, three VColumn) instead of a B-tree row.
**
** floor_scan_step reads the same rows with one sqlite3_step per row and
** sqlite3_column_* instead of the function: the other way to read a table.
**
**   INSERT INTO p SELECT * FROM floor_scan;   -- reads series(id, t, v)
*/
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1
#include <stddef.h>
#include <stdint.h>

#define CHUNK 16000 /* rows per fill: a group of 16 series x 1000 steps, as rnn_scan holds */

typedef struct floor_cursor {
  sqlite3_vtab_cursor base;
  sqlite3_stmt *rd;
  int64_t k[CHUNK], o[CHUNK];
  double v[CHUNK];
  int n, at, done;
  int64_t rowid;
} floor_cursor;

/* floor_feed(cursor, id, t, v): the row into the cursor's arrays; 1 (the row
** ends the statement's step) when they are full, else NULL. */
static void floor_feed(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  floor_cursor *c = sqlite3_get_auxdata(ctx, 0);
  (void)argc;
  if (!c) {
    c = sqlite3_value_pointer(argv[0], "floor_cursor");
    sqlite3_set_auxdata(ctx, 0, c, NULL);
  }
  c->k[c->n] = sqlite3_value_int64(argv[1]);
  c->o[c->n] = sqlite3_value_int64(argv[2]);
  c->v[c->n] = sqlite3_value_double(argv[3]);
  if (++c->n == CHUNK) sqlite3_result_int(ctx, 1);
}

typedef struct floor_vtab {
  sqlite3_vtab base;
  sqlite3 *db;
  int step; /* floor_scan_step: the statement returns each row, read with sqlite3_column_* */
} floor_vtab;

/* The next CHUNK rows into the arrays: by floor_feed, in one sqlite3_step, or
** (floor_scan_step) by one sqlite3_step per row. */
static int fill(floor_cursor *c) {
  c->n = 0;
  c->at = 0;
  int rc;
  if (!((floor_vtab *)c->base.pVtab)->step) {
    rc = sqlite3_step(c->rd);
  } else {
    while (c->n < CHUNK && (rc = sqlite3_step(c->rd)) == SQLITE_ROW) {
      c->k[c->n] = sqlite3_column_int64(c->rd, 0);
      c->o[c->n] = sqlite3_column_int64(c->rd, 1);
      c->v[c->n] = sqlite3_column_double(c->rd, 2);
      c->n++;
    }
  }
  if (rc == SQLITE_DONE) c->done = 1;
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int f_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **pp, char **err) {
  (void)aux, (void)argc, (void)argv, (void)err;
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(key, ord, output)");
  if (rc != SQLITE_OK) return rc;
  floor_vtab *v = sqlite3_malloc(sizeof(*v));
  if (!v) return SQLITE_NOMEM;
  v->db = db;
  v->step = aux != NULL;
  *pp = &v->base;
  return SQLITE_OK;
}
static int f_disconnect(sqlite3_vtab *v) {
  sqlite3_free(v);
  return SQLITE_OK;
}
static int f_best(sqlite3_vtab *v, sqlite3_index_info *info) {
  (void)v;
  info->estimatedCost = 1e6;
  return SQLITE_OK;
}
static int f_open(sqlite3_vtab *v, sqlite3_vtab_cursor **pp) {
  (void)v;
  floor_cursor *c = sqlite3_malloc(sizeof(*c));
  if (!c) return SQLITE_NOMEM;
  c->rd = NULL;
  *pp = &c->base;
  return SQLITE_OK;
}
static int f_close(sqlite3_vtab_cursor *p) {
  floor_cursor *c = (floor_cursor *)p;
  sqlite3_finalize(c->rd);
  sqlite3_free(c);
  return SQLITE_OK;
}
static int f_filter(sqlite3_vtab_cursor *p, int idx, const char *s, int argc, sqlite3_value **argv) {
  (void)idx, (void)s, (void)argc, (void)argv;
  floor_cursor *c = (floor_cursor *)p;
  sqlite3_finalize(c->rd);
  c->rd = NULL;
  c->done = 0;
  c->rowid = 0;
  const floor_vtab *v = (const floor_vtab *)p->pVtab;
  int rc = sqlite3_prepare_v2(v->db, v->step ? "SELECT id, t, v FROM series ORDER BY id, t"
                                             : "SELECT id, t, v FROM series WHERE floor_feed(?1, id, t, v) ORDER BY id, t",
                              -1, &c->rd, NULL);
  if (rc == SQLITE_OK && !v->step) rc = sqlite3_bind_pointer(c->rd, 1, c, "floor_cursor", NULL);
  return rc == SQLITE_OK ? fill(c) : rc;
}
static int f_next(sqlite3_vtab_cursor *p) {
  floor_cursor *c = (floor_cursor *)p;
  c->rowid++;
  if (++c->at < c->n || c->done) return SQLITE_OK;
  return fill(c);
}
static int f_eof(sqlite3_vtab_cursor *p) {
  const floor_cursor *c = (const floor_cursor *)p;
  return c->at >= c->n && c->done;
}
static int f_column(sqlite3_vtab_cursor *p, sqlite3_context *ctx, int col) {
  const floor_cursor *c = (const floor_cursor *)p;
  if (col == 0) sqlite3_result_int64(ctx, c->k[c->at]);
  else if (col == 1) sqlite3_result_int64(ctx, c->o[c->at]);
  else sqlite3_result_double(ctx, c->v[c->at]);
  return SQLITE_OK;
}
static int f_rowid(sqlite3_vtab_cursor *p, sqlite3_int64 *rowid) {
  *rowid = ((const floor_cursor *)p)->rowid;
  return SQLITE_OK;
}

static const sqlite3_module floor_module = {
  0, NULL, f_connect, f_best, f_disconnect, NULL, f_open, f_close, f_filter, f_next, f_eof, f_column, f_rowid,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
};

__attribute__((visibility("default"))) int sqlite3_benchfloor_init(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
  SQLITE_EXTENSION_INIT2(api);
  (void)err;
  int rc = sqlite3_create_function(db, "floor_feed", 4, SQLITE_UTF8 | SQLITE_DIRECTONLY, NULL, floor_feed, NULL, NULL);
  static const int step = 1;
  if (rc == SQLITE_OK) rc = sqlite3_create_module_v2(db, "floor_scan", &floor_module, NULL, NULL);
  return rc == SQLITE_OK ? sqlite3_create_module_v2(db, "floor_scan_step", &floor_module, (void *)&step, NULL) : rc;
}

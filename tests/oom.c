/*
** oom.c: out-of-memory fault injection for sqlite-rnn (`make oomtest`).
**
** A host that links the extension statically (-DSQLITE_CORE) and installs, before
** sqlite3_initialize, an allocator that wraps SQLite's default one and fails the
** Nth allocation (SQLITE_CONFIG_MALLOC; lookaside off so every allocation is
** seen). For each representative statement (model load by BLOB and by name, every
** function, every frame kind, the table-valued functions, extension init) and for
** N = 1, 2, ... until a run meets no fault, in transient mode (only the Nth
** allocation fails) and persistent mode (the Nth and all later ones fail), it
** checks that:
**  1. the statement ends in SQLITE_NOMEM (or an error reading "out of memory") or
**     returns exactly what a run without faults returns: its rows, or for the
**     error-path statements its error message (or SQLITE_ERROR with SQLite's
**     generic "SQL logic error" when the failed allocation was SQLite's own copy
**     of that message: sqlite3VdbeTransferError and sqlite3ErrorWithMsg drop the
**     text on OOM);
**  2. the connection still works: the same statement run again without faults
**     returns exactly that again;
**  3. sqlite3_close returns SQLITE_OK (no statement left unfinalized);
**  4. sqlite3_memory_used() is back at its baseline after the close (no leak).
** Prints one line per statement and then `N passed, N failed` (one check per
** statement, mode and N); exits non-zero on any failure. Built with ASan+UBSan.
**
** Usage: build/oomtest [substring of a test name]
*/
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_models.h"

int sqlite3_rnn_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

/* ---- the faulting allocator ---------------------------------------------- */

static sqlite3_mem_methods real_mem;
static struct {
  int armed;
  long countdown;  /* allocations left before the failing one */
  int persistent;
  int fired;       /* a fault was injected in this run */
} fault;

static int should_fail(void) {
  if (!fault.armed) return 0;
  if (fault.fired) return fault.persistent;
  if (--fault.countdown > 0) return 0;
  fault.fired = 1;
  return 1;
}

static void *fault_malloc(int n) { return should_fail() ? NULL : real_mem.xMalloc(n); }
static void *fault_realloc(void *p, int n) { return should_fail() ? NULL : real_mem.xRealloc(p, n); }

static void arm(long n, int persistent) {
  fault.countdown = n;
  fault.persistent = persistent;
  fault.fired = 0;
  fault.armed = 1;
}

static int disarm(void) {
  fault.armed = 0;
  return fault.fired;
}

/* ---- fixtures ------------------------------------------------------------- */

enum { M_G, M_L, M_R, M_S, M_V, M_B, N_MODELS };
static const char *const model_name[N_MODELS] = {"g", "l", "r", "s", "v", "b"};
static unsigned char *model_blob[N_MODELS];
static size_t model_len[N_MODELS];

static void make_models(void) {
  model_blob[M_G] = stm_recurrent("gru", 1, 4, 1, 1, 0, NULL, 1, &model_len[M_G]);
  model_blob[M_L] = stm_recurrent("lstm", 2, 3, 2, 3, 0, NULL, 2, &model_len[M_L]);
  model_blob[M_R] = stm_recurrent("rnn_tanh", 1, 3, 1, 0, 0, NULL, 3, &model_len[M_R]);
  model_blob[M_S] = stm_recurrent("seed", 1, 4, 1, 1, 0, "\"hidden_activation\":\"tanh\"", 4, &model_len[M_S]);
  model_blob[M_V] = stm_recurrent("gru", 3, 4, 1, 2, 0,
                                  "\"vocab\":\"[\\\"a\\\",\\\"b\\\",\\\"c\\\"]\","
                                  "\"labels\":\"[\\\"no\\\",\\\"yes\\\"]\"",
                                  5, &model_len[M_V]);
  model_blob[M_B] = stm_recurrent("gru", 1, 2, 1, 1, 1, NULL, 6, &model_len[M_B]);
  for (int i = 0; i < N_MODELS; i++) {
    if (!model_blob[i]) {
      fprintf(stderr, "oomtest: out of memory building fixtures\n");
      exit(2);
    }
  }
}

static const char *const setup_sql =
    "CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);"
    "CREATE TABLE s(id INTEGER, t INTEGER, v REAL, w REAL, tok TEXT, PRIMARY KEY(id, t));"
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 23) "
    "INSERT INTO s SELECT i / 12, i % 12 / 2 * 2 + i % 2, "
    "  CASE WHEN i % 7 = 3 THEN NULL ELSE (i % 5) * 0.25 - 0.5 END, (i % 3) * 0.5, "
    "  substr('abc', i % 3 + 1, 1) FROM n;";

static int setup(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_exec(db, setup_sql, NULL, NULL, NULL) != SQLITE_OK) return -1;
  if (sqlite3_prepare_v2(db, "INSERT INTO rnn_models VALUES (?1, ?2)", -1, &st, NULL) != SQLITE_OK) return -1;
  for (int i = 0; i < N_MODELS; i++) {
    sqlite3_bind_text(st, 1, model_name[i], -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, model_blob[i], (int)model_len[i], SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) break;
    sqlite3_reset(st);
  }
  return sqlite3_finalize(st) == SQLITE_OK ? 0 : -1;
}

/* ---- running a statement and recording what it returned ------------------ */

/* A growing text buffer (malloc: outside the faulting allocator). */
typedef struct buf {
  char *z;
  size_t n, cap;
} buf;

static void put(buf *b, const char *fmt, ...) {
  va_list ap;
  char tmp[64];
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (k < 0) return;
  const char *src = tmp;
  char *big = NULL;
  if ((size_t)k >= sizeof(tmp)) {
    big = malloc((size_t)k + 1);
    if (!big) abort();
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    src = big;
  }
  if (b->n + (size_t)k + 1 > b->cap) {
    b->cap = (b->n + (size_t)k + 1) * 2;
    b->z = realloc(b->z, b->cap);
    if (!b->z) abort();
  }
  memcpy(b->z + b->n, src, (size_t)k + 1);
  b->n += (size_t)k;
  free(big);
}

typedef struct test {
  const char *name;
  const char *sql;     /* one or more statements */
  int blob;            /* -1, or the model bound to ?1 of every statement */
} test;

/* Runs t->sql; appends every row to out. Returns the SQLite result code and
** copies the error message (if any) into msg. */
static int run(sqlite3 *db, const test *t, buf *out, char *msg, size_t nmsg) {
  const char *sql = t->sql;
  int rc = SQLITE_OK;
  msg[0] = 0;
  out->n = 0;
  put(out, "");
  while (rc == SQLITE_OK && sql && *sql) {
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    rc = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
    if (rc != SQLITE_OK) break;
    sql = tail;
    if (!st) continue; /* whitespace */
    if (t->blob >= 0 && sqlite3_bind_parameter_count(st) >= 1) {
      rc = sqlite3_bind_blob(st, 1, model_blob[t->blob], (int)model_len[t->blob], SQLITE_STATIC);
    }
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      rc = SQLITE_OK;
      for (int i = 0; i < sqlite3_column_count(st) && rc == SQLITE_OK; i++) {
        switch (sqlite3_column_type(st, i)) {
          case SQLITE_NULL: put(out, "NULL|"); break;
          case SQLITE_INTEGER: put(out, "%lld|", (long long)sqlite3_column_int64(st, i)); break;
          case SQLITE_FLOAT: put(out, "%.17g|", sqlite3_column_double(st, i)); break;
          case SQLITE_TEXT: {
            const unsigned char *z = sqlite3_column_text(st, i);
            if (!z) rc = SQLITE_NOMEM;
            else put(out, "'%s'|", (const char *)z);
            break;
          }
          default: {
            const unsigned char *p = sqlite3_column_blob(st, i);
            int n = sqlite3_column_bytes(st, i);
            put(out, "x'");
            for (int k = 0; p && k < n; k++) put(out, "%02x", p[k]);
            put(out, "'|");
          }
        }
      }
      put(out, "\n");
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    if (rc != SQLITE_OK) snprintf(msg, nmsg, "%s", sqlite3_errmsg(db));
    int rc2 = sqlite3_finalize(st);
    if (rc == SQLITE_OK) rc = rc2;
    if (rc != SQLITE_OK && !msg[0]) snprintf(msg, nmsg, "%s", sqlite3_errmsg(db));
  }
  if (rc != SQLITE_OK && !msg[0]) snprintf(msg, nmsg, "%s", sqlite3_errmsg(db));
  return rc;
}

/* An error as a result: "error: <message>". */
static void as_error(buf *b, const char *msg) {
  b->n = 0;
  put(b, "error: %s", msg);
}

/* ---- the statements ------------------------------------------------------- */

#define OPEN_TEST "(extension init)"

static const test tests[] = {
  {OPEN_TEST, "SELECT rnn_version()", -1},
  {"load by BLOB + rnn_info", "SELECT rnn_info(?1)", M_L},
  {"load by BLOB + rnn_eval", "SELECT rnn_eval(?1, '[0.5, -1, 2]')", M_G},
  {"load by name + rnn_info", "SELECT rnn_info('v')", -1},
  {"rnn_predict running frame",
   "SELECT id, t, rnn_predict('g', v) OVER (PARTITION BY id ORDER BY t) FROM s", -1},
  {"rnn_predict default RANGE frame, ties",
   "SELECT id, t, rnn_predict('g', v) OVER (PARTITION BY id ORDER BY t / 2) FROM s", -1},
  {"rnn_predict sliding ROWS",
   "SELECT id, t, rnn_predict('g', v) OVER (PARTITION BY id ORDER BY t ROWS BETWEEN 3 PRECEDING AND 1 FOLLOWING) "
   "FROM s", -1},
  {"rnn_predict EXCLUDE CURRENT ROW",
   "SELECT id, t, rnn_predict('g', v) OVER (PARTITION BY id ORDER BY t "
   "ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING EXCLUDE CURRENT ROW) FROM s", -1},
  {"rnn_predict RANGE + GROUPS EXCLUDE, 2 features, JSON output",
   "SELECT id, t, rnn_predict('l', v, w) OVER (PARTITION BY id ORDER BY t RANGE BETWEEN 3 PRECEDING AND CURRENT ROW), "
   "rnn_predict('l', v, w) OVER (ORDER BY t / 4 GROUPS BETWEEN 1 PRECEDING AND 1 FOLLOWING EXCLUDE GROUP) FROM s",
   -1},
  {"rnn_predict aggregate", "SELECT id, rnn_predict('l', v, w) FROM s GROUP BY id", -1},
  {"rnn_predict BLOB model in a window",
   "SELECT t, rnn_predict(?1, v) OVER (ORDER BY t ROWS 4 PRECEDING) FROM s WHERE id = 0", M_G},
  {"rnn_predict tokens", "SELECT t, rnn_predict('v', tok) OVER (ORDER BY t) FROM s WHERE id = 1", -1},
  {"rnn_hidden sliding",
   "SELECT hex(rnn_hidden('r', v) OVER (PARTITION BY id ORDER BY t ROWS 2 PRECEDING)) FROM s", -1},
  {"rnn_hidden running", "SELECT rnn_hidden('l', v, w) OVER (ORDER BY id, t) FROM s", -1},
  {"rnn_eval JSON 2 features", "SELECT rnn_eval('l', '[[1,2],[3,4],[0.5,0.25]]')", -1},
  {"rnn_eval float32 BLOB", "SELECT rnn_eval('g', x'0000803f000000400000c03f')", -1},
  {"rnn_eval bidirectional", "SELECT rnn_eval('b', '[1, 2, 3, 4]')", -1},
  {"rnn_eval seed cell", "SELECT rnn_eval('s', '[0.5, 0.25]')", -1},
  {"rnn_classify vocab", "SELECT rnn_classify('v', 'abcab'), rnn_classify('v', x'0000803f0000000000000000000000000000803f00000000')", -1},
  {"rnn_steps", "SELECT step, input, output, hex(hidden) FROM rnn_steps('l', '[[1,2],[3,4]]')", -1},
  {"rnn_steps tokens", "SELECT step, input, output, hex(hidden) FROM rnn_steps('v', 'cab')", -1},
  {"rnn_steps bidirectional", "SELECT step, output, hex(hidden) FROM rnn_steps('b', '[1,2,3]')", -1},
  {"rnn_forecast", "SELECT step, output FROM rnn_forecast('g', '[0.1, 0.2, 0.3]', 5)", -1},
  {"rnn_forecast seed cell", "SELECT step, output FROM rnn_forecast('s', '[1]', 3)", -1},
  {"rnn_scan", "SELECT key, ord, output FROM rnn_scan('l', 's', 'id', 't', 'v', 'w')", -1},
  {"rnn_scan tokens, seed cell",
   "SELECT * FROM rnn_scan('v', 's', 'id', 't', 'tok') UNION ALL SELECT * FROM rnn_scan('s', 's', 'id', 't', 'v')", -1},
  {"error: rnn_scan no such column", "SELECT * FROM rnn_scan('g', 's', 'id', 't', 'nope')", -1},
  {"rnn_sequence", "SELECT id, hex(rnn_sequence(t, v, w)) FROM s GROUP BY id", -1},
  {"rnn_eval of rnn_sequence", "SELECT id, rnn_eval('l', rnn_sequence(t, v, w)) FROM s GROUP BY id", -1},
  {"rnn_steps joined",
   "SELECT q.id, f.step, f.output FROM (SELECT id, rnn_sequence(t, v) AS x FROM s GROUP BY id) AS q, "
   "rnn_steps('g', q.x) AS f", -1},
  {"name memo in a transaction",
   "BEGIN; SELECT rnn_predict('g', v) OVER (ORDER BY t) FROM s WHERE id = 0; SELECT rnn_eval('g', '[1]'); "
   "SELECT rnn_info('g') IS NOT NULL; COMMIT;", -1},
  {"registry row updated",
   "SELECT rnn_eval('g', '[1]'); UPDATE rnn_models SET model = (SELECT model FROM rnn_models WHERE name = 's') "
   "WHERE name = 'g'; SELECT rnn_eval('g', '[1]');", -1},
  {"error: model BLOB too short", "SELECT rnn_info(x'0000')", -1},
  {"error: header not JSON", "SELECT rnn_info(x'06000000000000007b2261223a7d')", -1},
  {"error: no such model", "SELECT rnn_predict('nope', v) OVER (ORDER BY t) FROM s", -1},
  {"error: TEXT feature mid-window", "SELECT rnn_predict('g', tok) OVER (ORDER BY id, t) FROM s", -1},
  {"error: feature count", "SELECT rnn_hidden('l', v) OVER (ORDER BY id, t ROWS 1 PRECEDING) FROM s", -1},
  {"error: JSON sequence", "SELECT rnn_eval('g', '[1, \"x\"]')", -1},
  {"error: token not in vocab", "SELECT rnn_classify('v', 'abz')", -1},
  {"error: horizon", "SELECT * FROM rnn_forecast('g', '[1]', 0)", -1},
  {"error: missing TVF argument", "SELECT * FROM rnn_steps('g')", -1},
  {"error: bidirectional window", "SELECT rnn_predict('b', v) OVER (ORDER BY t) FROM s", -1},
  {"rnn_cache_stats", "SELECT rnn_info('g') IS NOT NULL, rnn_cache_stats() LIKE '{\"models\":%}'", -1},
  {"rnn_state window", "SELECT hex(rnn_state('l', v, w) OVER (PARTITION BY id ORDER BY t)) FROM s", -1},
  {"rnn_state sliding", "SELECT hex(rnn_state('s', v) OVER (ORDER BY id, t ROWS 2 PRECEDING)) FROM s", -1},
  {"rnn_step and rnn_output",
   "SELECT rnn_output('l', rnn_step('l', rnn_step('l', NULL, 1, 2), 0.5, NULL)), "
   "rnn_output('v', rnn_step('v', NULL, 'b'))", -1},
  {"resume rnn_eval, rnn_steps, rnn_forecast",
   "SELECT rnn_eval('g', '[1, 2]', rnn_step('g', NULL, 0.5)), rnn_eval('s', NULL, rnn_step('s', NULL, 1)), "
   "(SELECT group_concat(output) FROM rnn_steps('g', '[1, 2]', rnn_step('g', NULL, 0.5))), "
   "(SELECT group_concat(output) FROM rnn_forecast('g', NULL, 3, rnn_step('g', NULL, 0.5)))", -1},
  {"error: state of another model", "SELECT rnn_output('r', rnn_step('g', NULL, 1))", -1},
  {"error: bidirectional state", "SELECT rnn_step('b', NULL, 1)", -1},
  {"train rnn_init", "SELECT hex(rnn_init('{\"cell\":\"lstm\",\"input_size\":2,\"hidden_size\":3,\"proj_size\":2,"
   "\"num_layers\":2,\"output_size\":2,\"seed\":4}'))", -1},
  {"error: train rnn_init spec", "SELECT rnn_init('{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"x\":1}')", -1},
  {"train rnn_grad_internal",
   "SELECT rnn_grad_internal(rnn_init('{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":3,\"num_layers\":2,"
   "\"output_size\":2}'), '{\"T\":3,\"len\":[3,2],\"x\":[1,2,3,4,5,6],\"loss\":\"cross_entropy\",\"label\":[0,1,-1,1,0,0]}')", -1},
  {"train rnn_train", "SELECT epoch, train_loss, val_loss, improved, hex(model) FROM rnn_train('g', "
   "'SELECT id, t, v FROM s WHERE v NOT NULL', '{\"epochs\":2,\"window\":3,\"batch_size\":2,\"clip\":1,"
   "\"save_as\":\"trained\",\"keep_on_interrupt\":true}'); SELECT hex(model) FROM rnn_models WHERE name = 'trained'",
   -1},
  {"train rnn_train regress by series", "SELECT epoch, train_loss, val_loss, hex(model) FROM rnn_train(?1, "
   "'SELECT id, t, v, w, v, w, v + w FROM s WHERE v NOT NULL', '{\"task\":\"regress\",\"epochs\":2,\"val_split\":"
   "\"series\",\"val_fraction\":0.5}')", M_L},
  {"error: train rnn_train NULL feature", "SELECT * FROM rnn_train('g', 'SELECT id, t, v FROM s', '{\"epochs\":1}')",
   -1},
  {"train rnn_params_internal",
   "SELECT hex(rnn_params_internal(?1, '{\"note\":[1,2],\"input_mean\":\"[0, 1]\"}'))", M_L},
};

/* ---- the driver ----------------------------------------------------------- */

static int passed, failed;

static void check(int ok, const test *t, const char *mode, long n, const char *fmt, ...) {
  if (ok) {
    passed++;
    return;
  }
  failed++;
  va_list ap;
  fprintf(stdout, "FAIL %s [%s, N=%ld]: ", t->name, mode, n);
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
}

static int is_oom(int rc, const char *msg) {
  return (rc & 0xff) == SQLITE_NOMEM || strcmp(msg, "out of memory") == 0 || strstr(msg, ": out of memory");
}

/* Opens a connection with the extension (sqlite3_auto_extension). */
static int open_db(sqlite3 **db, char *msg, size_t nmsg) {
  int rc = sqlite3_open_v2(":memory:", db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  msg[0] = 0;
  if (rc != SQLITE_OK) snprintf(msg, nmsg, "%s", *db ? sqlite3_errmsg(*db) : "no handle");
  return rc;
}

/* One test in one mode: N = 1, 2, ... until a run meets no fault. */
static long run_mode(const test *t, int persistent, sqlite3_int64 baseline) {
  const char *mode = persistent ? "persistent" : "transient";
  char msg[512], msg2[512];
  buf want = {0}, got = {0};
  sqlite3 *db = NULL;
  /* the reference run, without faults; an error is a result too (error-path tests) */
  if (open_db(&db, msg, sizeof(msg)) != SQLITE_OK || setup(db)) {
    check(0, t, mode, 0, "setup failed: %s", msg[0] ? msg : sqlite3_errmsg(db));
    sqlite3_close(db);
    return 0;
  }
  if (run(db, t, &want, msg, sizeof(msg)) != SQLITE_OK) as_error(&want, msg);
  sqlite3_close(db);
  long n;
  for (n = 1;; n++) {
    int rc, hit;
    db = NULL;
    if (strcmp(t->name, OPEN_TEST) == 0) {
      arm(n, persistent);
      rc = open_db(&db, msg, sizeof(msg));
      hit = disarm();
      if (rc != SQLITE_OK) {
        check(is_oom(rc, msg), t, mode, n, "open failed with %d: %s", rc, msg);
        int rc2 = sqlite3_close(db);
        check(rc2 == SQLITE_OK, t, mode, n, "sqlite3_close after a failed open: %d", rc2);
        check(sqlite3_memory_used() == baseline, t, mode, n, "leak after a failed open: %lld bytes",
              (long long)(sqlite3_memory_used() - baseline));
        if (!hit) break;
        continue;
      }
      rc = run(db, t, &got, msg, sizeof(msg));
      check(rc == SQLITE_OK && strcmp(got.z, want.z) == 0, t, mode, n,
            "functions missing after a successful open: %d %s", rc, msg);
    } else {
      if (open_db(&db, msg, sizeof(msg)) != SQLITE_OK || setup(db)) {
        check(0, t, mode, n, "setup failed: %s", sqlite3_errmsg(db));
        sqlite3_close(db);
        break;
      }
      arm(n, persistent);
      rc = run(db, t, &got, msg, sizeof(msg));
      hit = disarm();
      if (rc != SQLITE_OK && hit && is_oom(rc, msg)) {
        passed++;
      } else if (rc == SQLITE_ERROR && hit && strncmp(want.z, "error: ", 7) == 0 &&
                 strcmp(msg, sqlite3_errstr(SQLITE_ERROR)) == 0) {
        passed++; /* SQLite itself lost the message: copying it failed (sqlite3VdbeTransferError) */
      } else {
        if (rc != SQLITE_OK) as_error(&got, msg);
        check(strcmp(got.z, want.z) == 0, t, mode, n, "wrong result:\n got: %s\nwant: %s", got.z, want.z);
      }
      if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
      /* rule 2: the connection still works (a registry UPDATE must be undone first) */
      if (strstr(t->sql, "UPDATE")) {
        sqlite3_close(db);
        db = NULL;
        if (open_db(&db, msg, sizeof(msg)) != SQLITE_OK || setup(db)) {
          check(0, t, mode, n, "setup failed: %s", sqlite3_errmsg(db));
          sqlite3_close(db);
          break;
        }
      }
      if (run(db, t, &got, msg2, sizeof(msg2)) != SQLITE_OK) as_error(&got, msg2);
      check(strcmp(got.z, want.z) == 0, t, mode, n, "connection broken after the fault:\n got: %s\nwant: %s",
            got.z, want.z);
    }
    int rc2 = sqlite3_close(db);
    check(rc2 == SQLITE_OK, t, mode, n, "sqlite3_close returned %d", rc2);
    check(sqlite3_memory_used() == baseline, t, mode, n, "leak: %lld bytes still allocated after close",
          (long long)(sqlite3_memory_used() - baseline));
    if (!hit) break;
  }
  free(want.z);
  free(got.z);
  return n;
}

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
  sqlite3_mem_methods m;
  if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem) != SQLITE_OK) return 2;
  m = real_mem;
  m.xMalloc = fault_malloc;
  m.xRealloc = fault_realloc;
  if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK) return 2;
  if (sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0) != SQLITE_OK) return 2;
  if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 1) != SQLITE_OK) return 2;
  if (sqlite3_initialize() != SQLITE_OK) return 2;
  if (sqlite3_auto_extension((void (*)(void))sqlite3_rnn_init) != SQLITE_OK) return 2;
  make_models();
  /* warm up process-wide state SQLite creates lazily, then take the baseline */
  sqlite3 *db = NULL;
  char msg[512];
  buf out = {0};
  if (open_db(&db, msg, sizeof(msg)) != SQLITE_OK || setup(db) || run(db, &tests[1], &out, msg, sizeof(msg))) {
    fprintf(stderr, "oomtest: warm-up failed: %s\n", msg);
    return 2;
  }
  sqlite3_close(db);
  free(out.z);
  sqlite3_int64 baseline = sqlite3_memory_used();
  for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
    const test *t = &tests[i];
    if (only && !strstr(t->name, only)) continue;
    int f0 = failed;
    long nt = run_mode(t, 0, baseline);
    long np = run_mode(t, 1, baseline);
    printf("%-58s %5ld transient %5ld persistent  %s\n", t->name, nt, np, failed == f0 ? "ok" : "FAILED");
    fflush(stdout);
  }
  for (int i = 0; i < N_MODELS; i++) free(model_blob[i]);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

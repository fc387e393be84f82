/*
** threads.c: 8 threads scoring at once, each with its own connection
** (`make threadtest`, built with ThreadSanitizer).
**
** The main thread creates a database file holding rnn_models and a table of
** series, then records the results of a set of queries on one connection
** (window queries over the table with running and sliding frames, rnn_eval,
** rnn_classify, rnn_steps, rnn_forecast, a model passed as a BLOB). Then 8
** threads each open their own connection to the same file (the extension
** registered once for all through sqlite3_auto_extension) and run the queries
** ROUNDS times in a thread-specific order, comparing every result with the
** single-threaded one. One thread also rewrites a registry row it alone uses,
** so cache invalidation runs alongside the readers. Whatever process-wide state
** the extension has (kernel selection, getenv) is shared by all of them.
**
** Prints `N passed, N failed` (one check per query run); ThreadSanitizer reports
** make the process exit non-zero (TSAN_OPTIONS=halt_on_error=1).
**
** Usage: build/threadtest <database file>
*/
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_models.h"

int sqlite3_rnn_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

#define THREADS 8
#define ROUNDS  8

static unsigned char *blob_g, *blob_l, *blob_v, *blob_w;
static size_t len_g, len_l, len_v, len_w;

static const char *const queries[] = {
  "SELECT id, t, rnn_predict('g', v) OVER (PARTITION BY id ORDER BY t) FROM s",
  "SELECT id, t, rnn_predict('g', v) OVER (PARTITION BY id ORDER BY t ROWS BETWEEN 5 PRECEDING AND 2 FOLLOWING) "
  "FROM s",
  "SELECT id, rnn_predict('l', v, w) OVER (PARTITION BY id ORDER BY t GROUPS 3 PRECEDING EXCLUDE TIES) FROM s",
  "SELECT id, hex(rnn_hidden('l', v, w) OVER (PARTITION BY id ORDER BY t)) FROM s",
  "SELECT id, rnn_predict(?1, v) OVER (PARTITION BY id ORDER BY t ROWS 3 PRECEDING) FROM s",
  "SELECT id, rnn_eval('g', rnn_sequence(t, v)), rnn_eval('l', rnn_sequence(t, v, w)) FROM s GROUP BY id",
  "SELECT rnn_eval('g', '[0.5, 1.5, -2, 0.25]'), rnn_classify('v', 'abcabca'), rnn_info('l')",
  "SELECT q.id, f.step, f.output, hex(f.hidden) FROM (SELECT id, rnn_sequence(t, v, w) AS x FROM s GROUP BY id) "
  "AS q, rnn_steps('l', q.x) AS f",
  "SELECT step, output FROM rnn_forecast('g', '[0.1, 0.2, 0.3]', 40)",
  "SELECT key, ord, output FROM rnn_scan('l', 's', 'id', 't', 'v', 'w')",
  "SELECT epoch, train_loss, hex(model) FROM rnn_train('g', 'SELECT id, t, v FROM s', "
  "'{\"epochs\": 2, \"window\": 10, \"batch_size\": 16, \"val_fraction\": 0}')",
};
#define NQ ((int)(sizeof(queries) / sizeof(queries[0])))

static char *expected[NQ];

/* The rows of a query as text (malloc'd), or NULL after printing the error. */
static char *run(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  size_t n = 0, cap = 4096;
  char *out = malloc(cap);
  if (!out) return NULL;
  out[0] = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    fprintf(stderr, "prepare failed: %s\n%s\n", sqlite3_errmsg(db), sql);
    free(out);
    return NULL;
  }
  if (sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_blob(st, 1, blob_g, (int)len_g, SQLITE_STATIC);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    for (int i = 0; i < sqlite3_column_count(st); i++) {
      char cell[64];
      const char *z = cell;
      switch (sqlite3_column_type(st, i)) {
        case SQLITE_NULL: z = "NULL"; break;
        case SQLITE_INTEGER: snprintf(cell, sizeof(cell), "%lld", (long long)sqlite3_column_int64(st, i)); break;
        case SQLITE_FLOAT: snprintf(cell, sizeof(cell), "%.17g", sqlite3_column_double(st, i)); break;
        default: z = (const char *)sqlite3_column_text(st, i); break;
      }
      size_t k = strlen(z ? z : "");
      if (n + k + 2 >= cap) {
        cap = (n + k + 2) * 2;
        char *nz = realloc(out, cap);
        if (!nz) {
          free(out);
          sqlite3_finalize(st);
          return NULL;
        }
        out = nz;
      }
      memcpy(out + n, z ? z : "", k);
      n += k;
      out[n++] = '|';
      out[n] = 0;
    }
    out[n - 1] = '\n';
  }
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "step failed: %s\n%s\n", sqlite3_errmsg(db), sql);
    free(out);
    out = NULL;
  }
  sqlite3_finalize(st);
  return out;
}

static sqlite3 *open_db(const char *path) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
    fprintf(stderr, "cannot open %s: %s\n", path, db ? sqlite3_errmsg(db) : "?");
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 10000);
  return db;
}

typedef struct job {
  const char *path;
  int id;
  int passed, failed;
} job;

static void *worker(void *arg) {
  job *j = arg;
  sqlite3 *db = open_db(j->path);
  if (!db) {
    j->failed++;
    return NULL;
  }
  for (int r = 0; r < ROUNDS; r++) {
    for (int k = 0; k < NQ; k++) {
      int q = (k + j->id + r) % NQ; /* threads start at different queries */
      char *got = run(db, queries[q]);
      if (got && strcmp(got, expected[q]) == 0) {
        j->passed++;
      } else {
        j->failed++;
        fprintf(stderr, "thread %d round %d: query %d differs from the single-threaded result\n", j->id, r, q);
      }
      free(got);
    }
    if (j->id == 0) {
      /* a registry row only this thread reads: invalidation under concurrency */
      sqlite3_stmt *st = NULL;
      int ok = sqlite3_prepare_v2(db, "UPDATE rnn_models SET model = ?1 WHERE name = 'w'", -1, &st, NULL) == SQLITE_OK;
      if (ok) {
        sqlite3_bind_blob(st, 1, r % 2 ? blob_l : blob_w, (int)(r % 2 ? len_l : len_w), SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
      }
      sqlite3_finalize(st);
      char *got = ok ? run(db, "SELECT json_extract(rnn_info('w'), '$.cell')") : NULL;
      const char *want = r % 2 ? "lstm\n" : "rnn_tanh\n";
      if (got && strcmp(got, want) == 0) j->passed++;
      else {
        j->failed++;
        fprintf(stderr, "thread 0 round %d: registry update not seen: %s\n", r, got ? got : sqlite3_errmsg(db));
      }
      free(got);
    }
  }
  if (sqlite3_close(db) != SQLITE_OK) {
    j->failed++;
    fprintf(stderr, "thread %d: sqlite3_close failed\n", j->id);
  }
  return NULL;
}

static int setup(const char *path) {
  sqlite3 *db = NULL;
  remove(path);
  if (sqlite3_open(path, &db) != SQLITE_OK) return -1;
  int rc = sqlite3_exec(db,
      "PRAGMA journal_mode = WAL;"
      "CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);"
      "CREATE TABLE s(id INTEGER, t INTEGER, v REAL, w REAL, PRIMARY KEY(id, t));"
      "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 799) "
      "INSERT INTO s SELECT i / 100, i % 100, sin(i * 0.1), CASE WHEN i % 13 = 0 THEN NULL ELSE cos(i * 0.07) END "
      "FROM n;", NULL, NULL, NULL);
  sqlite3_stmt *st = NULL;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, "INSERT INTO rnn_models VALUES (?1, ?2)", -1, &st, NULL);
  const char *names[] = {"g", "l", "v", "w"};
  unsigned char *blobs[] = {blob_g, blob_l, blob_v, blob_w};
  size_t lens[] = {len_g, len_l, len_v, len_w};
  for (int i = 0; i < 4 && rc == SQLITE_OK; i++) {
    sqlite3_bind_text(st, 1, names[i], -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, blobs[i], (int)lens[i], SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  for (int q = 0; q < NQ && rc == SQLITE_OK; q++) {
    expected[q] = run(db, queries[q]);
    if (!expected[q]) rc = SQLITE_ERROR;
  }
  if (rc != SQLITE_OK) fprintf(stderr, "setup failed: %s\n", sqlite3_errmsg(db));
  sqlite3_close(db);
  return rc == SQLITE_OK ? 0 : -1;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "threads.db";
  if (!sqlite3_threadsafe()) {
    printf("SQLite built without thread safety\n0 passed, 1 failed\n");
    return 1;
  }
  blob_g = stm_recurrent("gru", 1, 8, 1, 1, 0, NULL, 11, &len_g);
  blob_l = stm_recurrent("lstm", 2, 6, 2, 3, 0, NULL, 12, &len_l);
  blob_v = stm_recurrent("gru", 3, 5, 1, 2, 0,
                         "\"vocab\":\"[\\\"a\\\",\\\"b\\\",\\\"c\\\"]\",\"labels\":\"[\\\"no\\\",\\\"yes\\\"]\"", 13,
                         &len_v);
  blob_w = stm_recurrent("rnn_tanh", 1, 4, 1, 1, 0, NULL, 14, &len_w);
  if (!blob_g || !blob_l || !blob_v || !blob_w) return 2;
  /* without memory statistics sqlite3_malloc takes no global mutex: more overlap */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  if (sqlite3_auto_extension((void (*)(void))sqlite3_rnn_init) != SQLITE_OK) return 2;
  if (setup(path)) return 2;
  pthread_t th[THREADS];
  job jobs[THREADS];
  for (int i = 0; i < THREADS; i++) {
    jobs[i] = (job){path, i, 0, 0};
    if (pthread_create(&th[i], NULL, worker, &jobs[i])) return 2;
  }
  int passed = 0, failed = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    passed += jobs[i].passed;
    failed += jobs[i].failed;
  }
  for (int q = 0; q < NQ; q++) free(expected[q]);
  free(blob_g);
  free(blob_l);
  free(blob_v);
  free(blob_w);
  sqlite3_reset_auto_extension();
  printf("%d threads x %d rounds x %d queries\n%d passed, %d failed\n", THREADS, ROUNDS, NQ, passed, failed);
  return failed ? 1 : 0;
}

/*
** vg_replay.c: replays SQL recorded by tests/vg_record.py, for `make valgrind`.
**
** A plain C host (no Python, so valgrind sees only SQLite and the extension):
** every recorded connection is opened again (":memory:", or a fresh file in DIR
** for each recorded file database), loads the extension with
** sqlite3_load_extension like any application, and runs its statements in the
** recorded order, stepping each to the end. Errors are expected (the error
** tests exist to cause them) and only counted; what matters is what memcheck
** says. sqlite3_close must succeed for every connection (a statement the
** extension kept would make it fail with SQLITE_BUSY).
**
** Usage: build/vg_replay RECORD EXTENSION DIR
**   e.g. valgrind --error-exitcode=1 --leak-check=full build/vg_replay build/valgrind/replay.sql ./rnn build/valgrind
*/
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct conn {
  sqlite3 *db;
} conn;

static conn *conns;
static int nconns;
static long n_ok, n_err, n_rows, n_close_fail;

static int close_conn(conn *c) {
  if (!c->db) return 0;
  int rc = sqlite3_close(c->db);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "sqlite3_close failed: %s\n", sqlite3_errmsg(c->db));
    n_close_fail++;
    sqlite3_close_v2(c->db);
  }
  c->db = NULL;
  return rc;
}

static int open_conn(int id, const char *key, const char *ext, const char *dir) {
  char path[4096];
  static char seen[1024];
  if (id >= nconns) {
    int n = id + 64;
    conn *nc = realloc(conns, sizeof(conn) * (size_t)n);
    if (!nc) return -1;
    memset(nc + nconns, 0, sizeof(conn) * (size_t)(n - nconns));
    conns = nc;
    nconns = n;
  }
  if (strcmp(key, ":memory:") == 0) {
    snprintf(path, sizeof(path), ":memory:");
  } else {
    int k = atoi(key + 4); /* "fileN" */
    snprintf(path, sizeof(path), "%s/replay-%d.db", dir, k);
    if (k >= 0 && k < (int)sizeof(seen) && !seen[k]) { /* first use: a fresh file */
      const char *sfx[] = {"", "-journal", "-wal", "-shm"};
      for (int i = 0; i < 4; i++) {
        char p[4200];
        snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
        unlink(p);
      }
      seen[k] = 1;
    }
  }
  conn *c = &conns[id];
  close_conn(c);
  if (sqlite3_open(path, &c->db) != SQLITE_OK) {
    fprintf(stderr, "cannot open %s: %s\n", path, sqlite3_errmsg(c->db));
    return -1;
  }
  char *err = NULL;
  sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 1, NULL);
  if (sqlite3_load_extension(c->db, ext, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "cannot load %s: %s\n", ext, err ? err : "?");
    sqlite3_free(err);
    return -1;
  }
  sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
  return 0;
}

static void run_sql(sqlite3 *db, const char *sql) {
  while (sql && *sql) {
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, &tail) != SQLITE_OK) {
      n_err++;
      return;
    }
    sql = tail;
    if (!st) continue;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      /* touch every value as an application would */
      for (int i = 0; i < sqlite3_column_count(st); i++) {
        if (sqlite3_column_type(st, i) == SQLITE_BLOB) (void)sqlite3_column_blob(st, i);
        else (void)sqlite3_column_text(st, i);
      }
      n_rows++;
    }
    if (rc == SQLITE_DONE) n_ok++;
    else n_err++;
    sqlite3_finalize(st);
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s RECORD EXTENSION DIR\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 2;
  }
  char line[256];
  long stmts = 0;
  int opened = 0, status = 0;
  while (fgets(line, sizeof(line), f)) {
    int id = 0;
    long len = 0;
    char key[64];
    if (line[0] == 'O' && sscanf(line, "O %d %63s", &id, key) == 2) {
      if (open_conn(id, key, argv[2], argv[3])) {
        status = 2;
        break;
      }
      opened++;
    } else if (line[0] == 'C' && sscanf(line, "C %d", &id) == 1) {
      if (id < nconns) close_conn(&conns[id]);
    } else if (line[0] == 'S' && sscanf(line, "S %d %ld", &id, &len) == 2) {
      char *sql = malloc((size_t)len + 2);
      if (!sql || fread(sql, 1, (size_t)len + 1, f) != (size_t)len + 1) {
        fprintf(stderr, "truncated record\n");
        free(sql);
        status = 2;
        break;
      }
      sql[len] = 0;
      if (id < nconns && conns[id].db) run_sql(conns[id].db, sql);
      stmts++;
      free(sql);
    } else {
      fprintf(stderr, "bad record line: %s", line);
      status = 2;
      break;
    }
  }
  fclose(f);
  for (int i = 0; i < nconns; i++) close_conn(&conns[i]);
  free(conns);
  printf("replayed %ld statements on %d connections: %ld ran, %ld ended in an error (expected for error tests), "
         "%ld rows; %ld failed closes\n", stmts, opened, n_ok, n_err, n_rows, n_close_fail);
  if (n_close_fail) status = 1;
  return status;
}

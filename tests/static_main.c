/*
** static_main.c: sqlite-rnn linked into a program instead of loaded from rnn.so.
**
**   make static                    # build/static/librnn.a (the ext/ sources compiled with -DSQLITE_CORE)
**                                  # and build/static_main, this program
**   build/static_main [model.safetensors]   # default: sql/demo_model.safetensors, from the repo root
**
** How an application embeds sqlite-rnn:
**  1. compile the ext/ sources with -DSQLITE_CORE (the extension then calls SQLite directly, not through the
**     sqlite3_api table a loaded extension gets) and link them with the application and SQLite;
**  2. call sqlite3_auto_extension(sqlite3_rnn_init) once, before opening connections: every connection
**     opened afterwards has the functions, with no sqlite3_load_extension() and no .so on disk.
**
** It prints the results of a few queries on a model read from a file; tests/test_static.py compares the output
** with what it must be. Exit status 0, or 1 with a message on stderr.
*/
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

int sqlite3_rnn_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

/* The whole file as a sqlite3_malloc64'd buffer; NULL (and a message) on failure. */
static unsigned char *read_file(const char *path, long *n) {
  unsigned char *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) goto fail;
  if (fseek(f, 0, SEEK_END) != 0 || (*n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
  buf = sqlite3_malloc64((sqlite3_uint64)*n);
  if (!buf || fread(buf, 1, (size_t)*n, f) != (size_t)*n) goto fail;
  fclose(f);
  return buf;
fail:
  fprintf(stderr, "static_main: cannot read %s\n", path);
  sqlite3_free(buf);
  if (f) fclose(f);
  return NULL;
}

/*
** Runs one statement, binding blob (if any) to ?1, and prints each row as its columns joined by '|' (NULL
** as an empty string, like the sqlite3 shell). A statement that fails prints "error: <message>" on stdout
** and counts as success when expect_error is set (the test checks the message).
*/
static int run(sqlite3 *db, const char *sql, const void *blob, int nblob, int expect_error) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK && blob) rc = sqlite3_bind_blob(st, 1, blob, nblob, SQLITE_STATIC);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(st); i++) {
        const unsigned char *v = sqlite3_column_text(st, i);
        printf("%s%s", i ? "|" : "", v ? (const char *)v : "");
      }
      printf("\n");
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) {
    printf("error: %s\n", sqlite3_errmsg(db));
    if (!expect_error) fprintf(stderr, "static_main: %s: %s\n", sql, sqlite3_errmsg(db));
  }
  sqlite3_finalize(st);
  return rc == SQLITE_OK || expect_error ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "sql/demo_model.safetensors";
  sqlite3 *db = NULL;
  long n = 0;
  int bad = 0;
  unsigned char *model = read_file(path, &n);
  if (!model) return 1;
  /* void (*)(void) is the type sqlite3_auto_extension takes for any entry point */
  if (sqlite3_auto_extension((void (*)(void))sqlite3_rnn_init) != SQLITE_OK ||
      sqlite3_open(":memory:", &db) != SQLITE_OK) {
    fprintf(stderr, "static_main: cannot open a database: %s\n", db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    sqlite3_free(model);
    return 1;
  }
  bad |= run(db, "SELECT 'rnn_version', rnn_version()", NULL, 0, 0);
  bad |= run(db, "SELECT 'rnn_eval', round(rnn_eval(?1, '[18.4, 18.5, 18.5, 25.0]'), 3)", model, (int)n, 0);
  bad |= run(db, "SELECT 'rnn_info', json_extract(rnn_info(?1), '$.cell', '$.hidden_size')", model, (int)n, 0);
  bad |= run(db, "CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)", NULL, 0, 0);
  bad |= run(db, "INSERT INTO rnn_models VALUES ('room_temp', ?1)", model, (int)n, 0);
  bad |= run(db, "CREATE TABLE readings(t INTEGER PRIMARY KEY, temp REAL)", NULL, 0, 0);
  bad |= run(db, "INSERT INTO readings VALUES (0, 18.4), (600, 18.5), (1200, 18.5), (1800, 25.0)", NULL, 0, 0);
  bad |= run(db, "SELECT t, temp, round(rnn_predict('room_temp', temp) OVER (ORDER BY t), 3) FROM readings",
             NULL, 0, 0);
  bad |= run(db, "SELECT step, round(output, 2) FROM rnn_forecast('room_temp', "
                 "(SELECT rnn_sequence(t, temp) FROM readings), 2)", NULL, 0, 0);
  bad |= run(db, "SELECT rnn_predict('room_temp', temp, temp) OVER (ORDER BY t) FROM readings", NULL, 0, 1);
  sqlite3_close(db);
  sqlite3_free(model);
  return bad;
}

/*
** fuzz_registry.c: libFuzzer target for a registry row corrupted after a valid
** model was cached under its name (ext/registry.c: the cache, the name memo).
**
** Input layout (tests/fuzz/make_corpus.py writes seeds in it):
**   b[0]  bits 0-1: how the row is corrupted: 0 replaced by the rest of the
**         input, 1 the valid BLOB overwritten with the rest at offset b[1..2],
**         2 the valid BLOB cut at offset b[1..2] and the rest appended,
**         3 replaced by the rest as TEXT; bits 2-3: the valid model (GRU,
**         LSTM, vocab GRU, bidirectional GRU); bit 4: inside a transaction
**         (BEGIN, use, UPDATE, use, ROLLBACK) rather than UPDATE ... UPDATE back
**   b[1..2] offset (little-endian), then the bytes.
** Each input: the valid model is in rnn_models as 'm' and cached (used by
** name); the row is corrupted; the functions run by name; the row is restored.
** Invariants (abort = finding):
**  1. After the corruption, using the name gives what using the corrupted bytes
**     as a BLOB gives: the same rows, or an error in both (no stale cache).
**  2. After the restore (UPDATE back or ROLLBACK), every query returns exactly
**     what it returned before the corruption.
*/
#include "fuzz_util.h"

static sqlite3 *db;
static sqlite3_stmt *set_model, *set_text;
static const int bases[4] = {FM_GRU, FM_LSTM, FM_VOCAB, FM_BIDIR};
static char *reference[4];

/* The same statement by name ('m') and by BLOB (?1): %1$s is the model. */
static const char *const uses[] = {
  "SELECT rnn_info(%s)",
  "SELECT rnn_eval(%s, x'0000803f000000bf0000403f0000003f0000c0bf00000040')",
  "SELECT t, rnn_predict(%s, v) OVER (ORDER BY t), rnn_hidden(%s, v) OVER (ORDER BY t ROWS 1 PRECEDING) FROM s",
  "SELECT step, output, hidden FROM rnn_steps(%s, '[1, 0.5, -2]')",
  "SELECT rnn_classify(%s, 'abca')",
  "SELECT step, output FROM rnn_forecast(%s, '[0.5]', 3)",
};
#define NUSES ((int)(sizeof(uses) / sizeof(uses[0])))

static fuzz_result use(int k, int by_blob, const void *blob, int n) {
  char sql[512];
  const char *m = by_blob ? "?1" : "'m'";
  snprintf(sql, sizeof(sql), uses[k], m, m);
  return fuzz_query(db, sql, blob, n);
}

/* All uses by name, as one text: errors included. */
static char *use_all(void) {
  size_t n = 0;
  char *all = NULL;
  for (int k = 0; k < NUSES; k++) {
    fuzz_result r = use(k, 0, NULL, 0);
    size_t len = strlen(r.text);
    char *z = realloc(all, n + len + 16);
    if (!z) fuzz_die("out of memory", NULL);
    all = z;
    n += (size_t)snprintf(all + n, len + 16, "%d:%s\n", r.rc, r.text);
    fuzz_result_free(&r);
  }
  return all;
}

static void store(int base) {
  sqlite3_bind_blob(set_model, 1, fm_blob[base], (int)fm_len[base], SQLITE_STATIC);
  if (sqlite3_step(set_model) != SQLITE_DONE) fuzz_die("restore", sqlite3_errmsg(db));
  sqlite3_reset(set_model);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  db = fuzz_open();
  fuzz_exec(db, "CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);"
                "INSERT INTO rnn_models VALUES ('m', x'00');"
                "CREATE TABLE s(t INTEGER PRIMARY KEY, v REAL);"
                "INSERT INTO s VALUES (1, 0.5), (2, -1), (3, NULL), (4, 2), (5, 0.25);");
  if (sqlite3_prepare_v2(db, "UPDATE rnn_models SET model = ?1 WHERE name = 'm'", -1, &set_model, NULL) ||
      sqlite3_prepare_v2(db, "UPDATE rnn_models SET model = CAST(?1 AS TEXT) WHERE name = 'm'", -1, &set_text,
                         NULL)) {
    fuzz_die("prepare", sqlite3_errmsg(db));
  }
  for (int i = 0; i < 4; i++) {
    store(bases[i]);
    reference[i] = use_all();
  }
  return 0;
}

/* Invariant 1: by name == by BLOB of the same bytes (errors differ only in the
** name they mention, so only their presence is compared). */
static void compare_name_and_blob(const unsigned char *bytes, int n, int text) {
  for (int k = 0; k < NUSES; k++) {
    fuzz_result a = use(k, 0, NULL, 0);
    if (!text) {
      fuzz_result b = use(k, 1, n ? (const void *)bytes : (const void *)"", n);
      if ((a.rc == SQLITE_OK) != (b.rc == SQLITE_OK) || (a.rc == SQLITE_OK && strcmp(a.text, b.text) != 0)) {
        char detail[1024];
        snprintf(detail, sizeof(detail), "use %d\nby name: %d %.400s\nby BLOB: %d %.400s", k, a.rc, a.text, b.rc,
                 b.text);
        fuzz_die("a corrupted registry row is not seen (stale cache?)", detail);
      }
      fuzz_result_free(&b);
    } else if (a.rc == SQLITE_OK) {
      fuzz_die("a TEXT registry row was used as a model", a.text);
    }
    fuzz_result_free(&a);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3 || size > 1 << 16) return 0;
  int mode = data[0] & 3, base = (data[0] >> 2) & 3, txn = (data[0] >> 4) & 1;
  size_t off = (size_t)(data[1] | data[2] << 8);
  const uint8_t *rest = data + 3;
  size_t nrest = size - 3;
  int model = bases[base];
  size_t cap = fm_len[model] + nrest + 1;
  unsigned char *bytes = malloc(cap);
  size_t n = 0;
  if (!bytes) return 0;
  switch (mode) {
    case 0:
    case 3:
      memcpy(bytes, rest, nrest);
      n = nrest;
      break;
    case 1:
      memcpy(bytes, fm_blob[model], fm_len[model]);
      n = fm_len[model];
      off %= n;
      if (nrest > n - off) nrest = n - off;
      memcpy(bytes + off, rest, nrest);
      break;
    default:
      off %= fm_len[model] + 1;
      memcpy(bytes, fm_blob[model], off);
      memcpy(bytes + off, rest, nrest);
      n = off + nrest;
  }

  /* the valid model, cached by name (and memoised inside the transaction) */
  store(model);
  if (txn) fuzz_exec(db, "BEGIN");
  fuzz_run(db, "SELECT rnn_info('m'), rnn_eval('m', '[1]')", NULL, 0);

  sqlite3_stmt *st = mode == 3 ? set_text : set_model;
  sqlite3_bind_blob(st, 1, n ? (const void *)bytes : (const void *)"", (int)n, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc == SQLITE_DONE) compare_name_and_blob(bytes, (int)n, mode == 3);

  if (txn) fuzz_exec(db, "ROLLBACK");
  else store(model);
  char *after = use_all();
  if (strcmp(after, reference[base]) != 0) {
    char detail[2048];
    snprintf(detail, sizeof(detail), "before:\n%.900s\nafter:\n%.900s", reference[base], after);
    fuzz_die("results after restoring the registry row differ from before", detail);
  }
  free(after);
  free(bytes);
  return 0;
}

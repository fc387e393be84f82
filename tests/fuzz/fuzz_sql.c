/*
** fuzz_sql.c: libFuzzer target for the SQL functions with fuzzed models,
** fuzzed input values and fuzzed window frames.
**
** Input layout (tests/fuzz/make_corpus.py writes seeds in it):
**   b[0]  bits 0-2: model: 0-5 a built-in valid model (fuzz_util.h), 6-7 fuzzed
**                   bytes (below); bit 3: pass the model as a BLOB argument
**                   instead of the name 'm'; bits 4-5: features per row (1-3);
**                   bit 6: ties on the ordering key
**   b[1]  frame: b1 % 3 = ROWS/RANGE/GROUPS, b1 / 3 % 4 = start (UNBOUNDED
**         PRECEDING, n PRECEDING, CURRENT ROW, n FOLLOWING), b1 / 12 % 4 = end
**         (n PRECEDING, CURRENT ROW, n FOLLOWING, UNBOUNDED FOLLOWING); b1 >= 192:
**         no frame clause (the default RANGE frame)
**   b[2]  bits 0-2 % 5: EXCLUDE (none, NO OTHERS, CURRENT ROW, GROUP, TIES);
**         bits 3-4: start n; bits 5-7: end n
**   b[3]  bits 0-1: partitions - 1; bits 2-7: forecast horizon (0: 1000001, out of
**         range; 63: -1)
**   then, for fuzzed models: 2 bytes little-endian length L, L bytes of model
**   then the values, row by row, feature by feature: a tag byte t, t & 7 =
**     0 NULL, 1 INTEGER (t >> 3) - 16, 2-4 REAL from the next 4 bytes (float32
**     bits), 5 REAL (t >> 3) / 4 - 4, 6 TEXT token "a"/"b"/"c"/"ab"/"" or one raw
**     byte, 7 BLOB of the next byte
** Each input fills table s(id, t, v1, v2, v3) and runs rnn_predict and
** rnn_hidden over the frame, rnn_predict as an aggregate, rnn_sequence,
** rnn_eval / rnn_classify / rnn_steps / rnn_forecast over the sequences, and
** rnn_eval over a JSON sequence, and rnn_eval / rnn_steps over the value bytes
** themselves as TEXT (the JSON sequence reader, or the tokenizer for vocab models).
** Invariant (abort = finding): wherever both succeed, rnn_predict(m, x) OVER w
** equals rnn_eval(m, <the frame's non-NULL rows as JSON>) exactly (docs/DESIGN.md:
** "for every frame, rnn_predict OVER w at a row equals rnn_eval of the frame";
** float32 values survive json_array's 15 digits). Frames holding TEXT values
** are not compared: TEXT for a vocab model is tokenised, not read as JSON.
*/
#include "fuzz_util.h"

#define MAX_ROWS 64

static sqlite3 *db;
static sqlite3_stmt *ins_row, *ins_model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  db = fuzz_open();
  fuzz_exec(db, "CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);"
                "CREATE TABLE s(id INTEGER, t INTEGER, v1, v2, v3)");
  if (sqlite3_prepare_v2(db, "INSERT INTO s VALUES (?1, ?2, ?3, ?4, ?5)", -1, &ins_row, NULL) ||
      sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO rnn_models VALUES ('m', ?1)", -1, &ins_model, NULL)) {
    fuzz_die("prepare", sqlite3_errmsg(db));
  }
  return 0;
}

/* Binds the next value of the stream to parameter k of ins_row. */
static void bind_value(const uint8_t **pp, const uint8_t *end, int k) {
  static const char *const tokens[] = {"a", "b", "c", "ab", ""};
  const uint8_t *p = *pp;
  uint8_t t = *p++;
  switch (t & 7) {
    case 0: sqlite3_bind_null(ins_row, k); break;
    case 1: sqlite3_bind_int(ins_row, k, (t >> 3) - 16); break;
    case 2: case 3: case 4: {
      uint32_t u = 0;
      for (int i = 0; i < 4 && p < end; i++) u |= (uint32_t)*p++ << (8 * i);
      float f;
      memcpy(&f, &u, 4);
      sqlite3_bind_double(ins_row, k, (double)f);
      break;
    }
    case 5: sqlite3_bind_double(ins_row, k, (t >> 3) / 4.0 - 4.0); break;
    case 6:
      if ((t >> 3) < 5) sqlite3_bind_text(ins_row, k, tokens[t >> 3], -1, SQLITE_STATIC);
      else if (p < end) sqlite3_bind_text(ins_row, k, (const char *)p++, 1, SQLITE_TRANSIENT);
      else sqlite3_bind_text(ins_row, k, "z", 1, SQLITE_STATIC);
      break;
    default:
      if (p < end) sqlite3_bind_blob(ins_row, k, p++, 1, SQLITE_TRANSIENT);
      else sqlite3_bind_zeroblob(ins_row, k, 0);
  }
  *pp = p;
}

static void frame_clause(char *out, size_t n, uint8_t b1, uint8_t b2) {
  static const char *const unit[] = {"ROWS", "RANGE", "GROUPS"};
  static const char *const excl[] = {"", " EXCLUDE NO OTHERS", " EXCLUDE CURRENT ROW", " EXCLUDE GROUP",
                                     " EXCLUDE TIES"};
  char a[32], b[32];
  int n1 = (b2 >> 3) & 3, n2 = (b2 >> 5) & 7;
  if (b1 >= 192) {
    snprintf(out, n, "%s", "");
    return;
  }
  switch (b1 / 3 % 4) {
    case 0: snprintf(a, sizeof(a), "UNBOUNDED PRECEDING"); break;
    case 1: snprintf(a, sizeof(a), "%d PRECEDING", n1); break;
    case 2: snprintf(a, sizeof(a), "CURRENT ROW"); break;
    default: snprintf(a, sizeof(a), "%d FOLLOWING", n1); break;
  }
  switch (b1 / 12 % 4) {
    case 0: snprintf(b, sizeof(b), "%d PRECEDING", n2); break;
    case 1: snprintf(b, sizeof(b), "CURRENT ROW"); break;
    case 2: snprintf(b, sizeof(b), "%d FOLLOWING", n2); break;
    default: snprintf(b, sizeof(b), "UNBOUNDED FOLLOWING"); break;
  }
  snprintf(out, n, "%s BETWEEN %s AND %s%s", unit[b1 % 3], a, b, excl[(b2 & 7) % 5]);
}

/* The invariant: columns 0 (rnn_predict) and 1 (rnn_eval of the frame) agree. */
static void check_frames(const char *sql, const void *blob, int nblob) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return; /* an invalid frame */
  if (blob) sqlite3_bind_blob(st, 1, blob, nblob, SQLITE_STATIC);
  while (sqlite3_step(st) == SQLITE_ROW) {
    /* TEXT for a vocab model is a string of tokens, not JSON: no oracle then */
    const char *j = (const char *)sqlite3_column_text(st, 2);
    if (j && strchr(j, '"')) continue;
    int ta = sqlite3_column_type(st, 0), tb = sqlite3_column_type(st, 1);
    int same = ta == tb;
    if (same && ta == SQLITE_FLOAT) {
      double a = sqlite3_column_double(st, 0), b = sqlite3_column_double(st, 1);
      same = memcmp(&a, &b, sizeof(a)) == 0;
    } else if (same && ta == SQLITE_TEXT) {
      same = strcmp((const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1)) == 0;
    }
    if (!same) {
      char detail[512];
      snprintf(detail, sizeof(detail), "%s\nrnn_predict: %s\nrnn_eval:    %s\nframe: %s", sql,
               sqlite3_column_text(st, 0), sqlite3_column_text(st, 1), sqlite3_column_text(st, 2));
      fuzz_die("rnn_predict over a frame differs from rnn_eval of the frame", detail);
    }
  }
  sqlite3_finalize(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4 || size > 1 << 16) return 0;
  const uint8_t *p = data + 4, *end = data + size;
  int model = data[0] & 7, by_blob = (data[0] >> 3) & 1, nf = 1 + ((data[0] >> 4) & 3) % 3;
  int ties = (data[0] >> 6) & 1, parts = 1 + (data[3] & 3), h = data[3] >> 2;
  long horizon = h == 0 ? 1000001 : h == 63 ? -1 : h;
  const void *mblob;
  int mlen;
  if (model >= FM_COUNT) {
    if (end - p < 2) return 0;
    mlen = p[0] | p[1] << 8;
    p += 2;
    if (mlen > end - p) mlen = (int)(end - p);
    mblob = mlen ? (const void *)p : (const void *)"";
    p += mlen;
  } else {
    mblob = fm_blob[model];
    mlen = (int)fm_len[model];
  }
  const uint8_t *values = p;
  sqlite3_bind_blob(ins_model, 1, mblob, mlen, SQLITE_STATIC);
  sqlite3_step(ins_model);
  sqlite3_reset(ins_model);
  fuzz_exec(db, "DELETE FROM s");
  for (int row = 0; row < MAX_ROWS && p < end; row++) {
    sqlite3_bind_int(ins_row, 1, row % parts);
    sqlite3_bind_int(ins_row, 2, ties ? row / parts / 2 : row / parts);
    for (int k = 0; k < 3; k++) {
      if (k < nf && p < end) bind_value(&p, end, 3 + k);
      else sqlite3_bind_null(ins_row, 3 + k);
    }
    sqlite3_step(ins_row);
    sqlite3_reset(ins_row);
  }

  char frame[128], sql[2048];
  frame_clause(frame, sizeof(frame), data[1], data[2]);
  const char *m = by_blob ? "?1" : "'m'";
  const void *b = by_blob ? mblob : NULL;
  static const char *const feats[] = {"v1", "v1, v2", "v1, v2, v3"};
  static const char *const notnull[] = {"v1 IS NOT NULL", "v1 IS NOT NULL AND v2 IS NOT NULL",
                                        "v1 IS NOT NULL AND v2 IS NOT NULL AND v3 IS NOT NULL"};
  const char *f = feats[nf - 1];
  char w[256];
  snprintf(w, sizeof(w), "PARTITION BY id ORDER BY t %s", frame);

  snprintf(sql, sizeof(sql), "SELECT id, t, rnn_predict(%s, %s) OVER (%s) FROM s", m, f, w);
  fuzz_run(db, sql, b, mlen);
  snprintf(sql, sizeof(sql), "SELECT id, t, rnn_hidden(%s, %s) OVER (%s) FROM s", m, f, w);
  fuzz_run(db, sql, b, mlen);
  snprintf(sql, sizeof(sql),
           "SELECT p, CASE WHEN j = '[]' THEN NULL ELSE rnn_eval(%s, j) END, j FROM ("
           "SELECT rnn_predict(%s, %s) OVER w AS p, json_group_array(json_array(%s)) FILTER (WHERE %s) OVER w AS j "
           "FROM s WINDOW w AS (%s))",
           m, m, f, f, notnull[nf - 1], w);
  check_frames(sql, b, mlen);
  snprintf(sql, sizeof(sql), "SELECT id, rnn_predict(%s, %s), rnn_hidden(%s, %s) FROM s GROUP BY id", m, f, m, f);
  fuzz_run(db, sql, b, mlen);

  const char *seqs = "(SELECT id, rnn_sequence(t, %s) AS x FROM s GROUP BY id) AS q";
  char from[256];
  snprintf(from, sizeof(from), seqs, f);
  snprintf(sql, sizeof(sql), "SELECT q.id, rnn_eval(%s, q.x), rnn_classify(%s, q.x) FROM %s", m, m, from);
  fuzz_run(db, sql, b, mlen);
  snprintf(sql, sizeof(sql), "SELECT q.id, r.* FROM %s, rnn_steps(%s, q.x) AS r", from, m);
  fuzz_run(db, sql, b, mlen);
  snprintf(sql, sizeof(sql), "SELECT q.id, r.* FROM %s, rnn_forecast(%s, q.x, %ld) AS r", from, m, horizon);
  fuzz_run(db, sql, b, mlen);
  /* sequences as JSON and as TEXT tokens */
  snprintf(sql, sizeof(sql),
           "SELECT rnn_eval(%s, json_group_array(json_array(%s))), rnn_eval(%s, group_concat(v1, '')), "
           "(SELECT count(*) FROM rnn_steps(%s, (SELECT group_concat(v1, '') FROM s))) FROM s",
           m, f, m, m);
  fuzz_run(db, sql, b, mlen);
  /* the value bytes themselves as a TEXT sequence: JSON for most models, tokens for vocab ones */
  snprintf(sql, sizeof(sql), "SELECT rnn_eval(%s, ?2), (SELECT count(*) FROM rnn_steps(%s, ?2))", m, m);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fuzz_die(sql, sqlite3_errmsg(db));
  if (by_blob) sqlite3_bind_blob(st, 1, mblob, mlen, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, (const char *)values, (int)(end - values), SQLITE_STATIC);
  fuzz_result r = fuzz_rows(db, st);
  fuzz_result_free(&r);
  sqlite3_finalize(st);
  return 0;
}

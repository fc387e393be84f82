/*
** util.c: error plumbing and output values (see util.h).
*/
#include "util.h"
#include "f32.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>

void rnn_err_set(rnn_err *e, const char *fmt, ...) {
  va_list ap;
  if (e->rc != SQLITE_OK) return; /* keep the first error */
  va_start(ap, fmt);
  e->msg = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  e->rc = e->msg ? SQLITE_ERROR : SQLITE_NOMEM;
}

void rnn_err_nomem(rnn_err *e) {
  if (e->rc != SQLITE_OK) return;
  e->rc = SQLITE_NOMEM;
}

void rnn_result_errorf(sqlite3_context *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  if (msg) sqlite3_result_error(ctx, msg, -1);
  else sqlite3_result_error_nomem(ctx);
  sqlite3_free(msg);
}

void rnn_err_result(sqlite3_context *ctx, rnn_err *e) {
  if (e->rc == SQLITE_NOMEM) sqlite3_result_error_nomem(ctx);
  else if (e->rc == SQLITE_TOOBIG) sqlite3_result_error_toobig(ctx);
  else if (e->rc != SQLITE_OK) sqlite3_result_error(ctx, e->msg ? e->msg : "sqlite-rnn error", -1);
  sqlite3_free(e->msg);
  e->msg = NULL;
  e->rc = SQLITE_OK;
}

int rnn_err_vtab(sqlite3_vtab *vtab, rnn_err *e) {
  int rc = e->rc;
  sqlite3_free(vtab->zErrMsg);
  vtab->zErrMsg = e->msg; /* NULL for NOMEM: SQLite then says "out of memory" */
  e->msg = NULL;
  e->rc = SQLITE_OK;
  return rc;
}

const char *rnn_type_name(int type) {
  static const char *const names[] = {"?", "INTEGER", "REAL", "TEXT", "BLOB", "NULL"};
  return type >= 1 && type <= 5 ? names[type] : names[0];
}

char *rnn_json_floats(const float *out, int n, int *len) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendchar(s, 1, '[');
  for (int i = 0; i < n; i++) {
    if (i) sqlite3_str_appendchar(s, 1, ',');
    /* %.9g round-trips float32; JSON has no Inf or NaN */
    if (isfinite(out[i])) sqlite3_str_appendf(s, "%!.9g", (double)out[i]);
    else sqlite3_str_appendall(s, "null");
  }
  sqlite3_str_appendchar(s, 1, ']');
  *len = sqlite3_str_length(s);
  if (sqlite3_str_errcode(s)) {
    sqlite3_free(sqlite3_str_finish(s));
    return NULL;
  }
  return sqlite3_str_finish(s);
}

void rnn_result_output(sqlite3_context *ctx, const float *out, int n) {
  if (n == 1) {
    sqlite3_result_double(ctx, (double)out[0]);
    return;
  }
  int len;
  char *z = rnn_json_floats(out, n, &len);
  if (!z) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  sqlite3_result_text(ctx, z, len, sqlite3_free);
  sqlite3_result_subtype(ctx, RNN_SUBTYPE_JSON);
}

unsigned char *rnn_f32_blob(const float *v, int n) {
  unsigned char *b = sqlite3_malloc64((size_t)n * 4 + 1);
  if (!b) return NULL;
  for (int i = 0; i < n; i++) rnn_f32_put(b + 4 * i, v[i]);
  return b;
}

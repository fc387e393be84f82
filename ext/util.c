/*
** util.c: how messages are written, error plumbing, and output values (see util.h).
**
**   rnn_err_set(err, "%s(): no model named %U in rnn_models", fn, name, nname);
**   -> rnn_eval(): no model named 'm\xFF\x00' in rnn_models
**
** Rules kept:
**  1. Every message is valid UTF-8 with no control bytes, whatever bytes the
**     user gave: Python and Node decode messages as UTF-8 and raise anything
**     but the SQL error otherwise. Offending bytes read as \xNN.
**  2. User text quoted with its length (%U) shows a NUL as \x00 rather than
**     ending the message there, and a cap never cuts a character in two.
**  3. Escaping is idempotent (backslashes are not escaped), so a message quoted
**     inside another one reads the same.
*/
#include "util.h"
#include "f32.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

/* Length of the valid UTF-8 character at z[0..n) (no overlong forms, no
** surrogates, at most U+10FFFF), or 0 if the bytes there are not one. */
int rnn_utf8_len(const unsigned char *z, size_t n) {
  unsigned c = z[0];
  if (c < 0x80) return 1;
  int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (len == 0 || c > 0xF4 || (size_t)len > n) return 0;
  for (int i = 1; i < len; i++) {
    if ((z[i] & 0xC0) != 0x80) return 0;
  }
  if (c == 0xE0 && z[1] < 0xA0) return 0; /* overlong */
  if (c == 0xED && z[1] >= 0xA0) return 0; /* UTF-16 surrogate */
  if (c == 0xF0 && z[1] < 0x90) return 0; /* overlong */
  if (c == 0xF4 && z[1] >= 0x90) return 0; /* beyond U+10FFFF */
  return len;
}

/* Appends z[0..n), at most cap bytes of it, writing each byte that is not part
** of a valid UTF-8 character, and each control byte (C0 and DEL, NUL included),
** as \xNN; a character that would cross cap is left out whole. */
static void append_escaped(sqlite3_str *s, const unsigned char *z, size_t n, size_t cap) {
  size_t i = 0;
  while (i < n) {
    int len = rnn_utf8_len(z + i, n - i);
    if (i + (size_t)(len ? len : 1) > cap) break;
    if (len == 1 && z[i] >= 0x20 && z[i] != 0x7F) {
      sqlite3_str_appendchar(s, 1, (char)z[i]);
    } else if (len > 1) {
      sqlite3_str_append(s, (const char *)z + i, len);
    } else {
      sqlite3_str_appendf(s, "\\x%02X", z[i]);
      len = 1;
    }
    i += (size_t)len;
  }
}

/* Reads one conversion spec at fmt ('%' ... conversion letter) into spec with
** any '*' replaced by its int argument; returns the letter and sets *prec (-1
** if none) and *end. 0 if the spec is malformed. */
static char read_spec(const char *fmt, va_list *ap, char *spec, size_t cap, int *prec, const char **end) {
  size_t k = 0;
  const char *q = fmt + 1;
  spec[k++] = '%';
  *prec = -1;
  while (*q && strchr("-+ #0!,", *q) && k < cap - 16) spec[k++] = *q++;
  if (*q == '*') {
    k += (size_t)snprintf(spec + k, cap - k, "%d", va_arg(*ap, int));
    q++;
  }
  while (*q >= '0' && *q <= '9' && k < cap - 16) spec[k++] = *q++;
  if (*q == '.') {
    spec[k++] = *q++;
    if (*q == '*') {
      *prec = va_arg(*ap, int);
      q++;
    } else {
      *prec = 0;
      while (*q >= '0' && *q <= '9' && *prec < 100000000) *prec = *prec * 10 + (*q++ - '0');
    }
    if (*prec < 0) *prec = -1;
    k += (size_t)snprintf(spec + k, cap - k, "%d", *prec < 0 ? 0 : *prec);
  }
  while (*q == 'l' && k < cap - 2) spec[k++] = *q++;
  if (!*q || k > cap - 2) return 0;
  spec[k++] = *q;
  spec[k] = 0;
  *end = q + 1;
  return *q;
}

/* One conversion of rnn_vmprintf; returns 0 for an unknown one. */
static int append_one(sqlite3_str *s, char conv, const char *spec, int prec, va_list *ap) {
  int longs = (int)(strchr(spec, 'l') ? strrchr(spec, 'l') - strchr(spec, 'l') + 1 : 0);
  switch (conv) {
    case 'U': {
      const char *z = va_arg(*ap, const char *);
      int n = va_arg(*ap, int);
      if (!z) {
        sqlite3_str_appendall(s, "NULL");
        break;
      }
      sqlite3_str_appendchar(s, 1, '\'');
      append_escaped(s, (const unsigned char *)z, n < 0 ? strlen(z) : (size_t)n, prec < 0 ? SIZE_MAX : (size_t)prec);
      sqlite3_str_appendchar(s, 1, '\'');
      break;
    }
    case 'd': case 'i': case 'c': case 'u': case 'x': case 'X': case 'o':
      if (longs >= 2) sqlite3_str_appendf(s, spec, va_arg(*ap, long long));
      else if (longs == 1) sqlite3_str_appendf(s, spec, va_arg(*ap, long));
      else sqlite3_str_appendf(s, spec, va_arg(*ap, int));
      break;
    case 'f': case 'e': case 'E': case 'g': case 'G':
      sqlite3_str_appendf(s, spec, va_arg(*ap, double));
      break;
    case 's': case 'z': case 'q': case 'Q': case 'w': case 'p':
      sqlite3_str_appendf(s, spec, va_arg(*ap, void *));
      break;
    default:
      return 0;
  }
  return 1;
}

/* Rules 1-3. %U quotes user bytes with a length; then the whole message is
** escaped, so user text that arrives through %s (SQLite's own messages, nested
** messages, NUL-terminated names) is safe too. */
char *rnn_vmprintf(const char *fmt, va_list ap) {
  va_list aq;
  va_copy(aq, ap);
  sqlite3_str *s = sqlite3_str_new(NULL);
  const char *p = fmt;
  while (*p) {
    const char *pct = strchr(p, '%');
    if (!pct) {
      sqlite3_str_appendall(s, p);
      break;
    }
    sqlite3_str_append(s, p, (int)(pct - p));
    if (pct[1] == '%') {
      sqlite3_str_appendchar(s, 1, '%');
      p = pct + 2;
      continue;
    }
    char spec[48];
    int prec;
    char conv = read_spec(pct, &aq, spec, sizeof(spec), &prec, &p);
    if (!conv || !append_one(s, conv, spec, prec, &aq)) {
      sqlite3_str_appendall(s, pct); /* a bad format: show it rather than guess arguments */
      break;
    }
  }
  va_end(aq);
  int n = sqlite3_str_length(s);
  int bad = sqlite3_str_errcode(s);
  char *raw = sqlite3_str_finish(s);
  if (bad || !raw) {
    sqlite3_free(raw);
    return NULL;
  }
  sqlite3_str *t = sqlite3_str_new(NULL);
  append_escaped(t, (const unsigned char *)raw, (size_t)n, SIZE_MAX);
  sqlite3_free(raw);
  if (sqlite3_str_errcode(t)) {
    sqlite3_free(sqlite3_str_finish(t));
    return NULL;
  }
  return sqlite3_str_finish(t);
}

char *rnn_mprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *z = rnn_vmprintf(fmt, ap);
  va_end(ap);
  return z;
}

int rnn_err_set(rnn_err *e, const char *fmt, ...) {
  va_list ap;
  if (e->rc != SQLITE_OK) return e->rc; /* keep the first error */
  va_start(ap, fmt);
  e->msg = rnn_vmprintf(fmt, ap);
  va_end(ap);
  e->rc = e->msg ? SQLITE_ERROR : SQLITE_NOMEM;
  return e->rc;
}

int rnn_err_nomem(rnn_err *e) {
  if (e->rc == SQLITE_OK) e->rc = SQLITE_NOMEM;
  return e->rc;
}

int rnn_err_code(rnn_err *e, int rc) {
  if (e->rc != SQLITE_OK || rc == SQLITE_OK) return e->rc;
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(e);
  e->msg = sqlite3_mprintf("%s", sqlite3_errstr(rc));
  e->rc = e->msg ? rc : SQLITE_NOMEM;
  return e->rc;
}

/* The prefix is escaped on its own; the message already is (rule 3 makes the
** result the same as formatting both at once). Out of memory replaces it. */
int rnn_err_prefix(rnn_err *e, const char *fmt, ...) {
  va_list ap;
  if (!e->msg) return e->rc;
  va_start(ap, fmt);
  char *pre = rnn_vmprintf(fmt, ap);
  va_end(ap);
  char *msg = pre ? sqlite3_mprintf("%s%s", pre, e->msg) : NULL;
  sqlite3_free(pre);
  sqlite3_free(e->msg);
  e->msg = msg;
  if (!msg) e->rc = SQLITE_NOMEM;
  return e->rc;
}

int rnn_err_take(rnn_err *dst, rnn_err *src) {
  if (dst->rc == SQLITE_OK) {
    *dst = *src;
  } else {
    sqlite3_free(src->msg);
  }
  src->rc = SQLITE_OK;
  src->msg = NULL;
  return dst->rc;
}

void rnn_result_errorf(sqlite3_context *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = rnn_vmprintf(fmt, ap);
  va_end(ap);
  if (msg) sqlite3_result_error(ctx, msg, -1);
  else sqlite3_result_error_nomem(ctx);
  sqlite3_free(msg);
}

void rnn_err_result(sqlite3_context *ctx, rnn_err *e) {
  if (e->rc == SQLITE_NOMEM) sqlite3_result_error_nomem(ctx);
  else if (e->rc == SQLITE_TOOBIG) sqlite3_result_error_toobig(ctx);
  else if (e->rc != SQLITE_OK) {
    sqlite3_result_error(ctx, e->msg ? e->msg : "sqlite-rnn error", -1);
    if (e->rc != SQLITE_ERROR) sqlite3_result_error_code(ctx, e->rc); /* SQLITE_INTERRUPT, from poll.c */
  }
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

void rnn_result_output_named(sqlite3_context *ctx, const float *out, int n, char *const *names) {
  if (!names || n == 1) {
    rnn_result_output(ctx, out, n);
    return;
  }
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendchar(s, 1, '{');
  for (int i = 0; i < n; i++) {
    sqlite3_str_appendf(s, "%s%s:", i ? "," : "", names[i]);
    if (isfinite(out[i])) sqlite3_str_appendf(s, "%!.9g", (double)out[i]);
    else sqlite3_str_appendall(s, "null");
  }
  sqlite3_str_appendchar(s, 1, '}');
  int len = sqlite3_str_length(s);
  if (sqlite3_str_errcode(s)) {
    sqlite3_free(sqlite3_str_finish(s));
    sqlite3_result_error_nomem(ctx);
    return;
  }
  sqlite3_result_text(ctx, sqlite3_str_finish(s), len, sqlite3_free);
  sqlite3_result_subtype(ctx, RNN_SUBTYPE_JSON);
}

unsigned char *rnn_f32_blob(const float *v, int n) {
  unsigned char *b = sqlite3_malloc64((size_t)n * 4 + 1);
  if (!b) return NULL;
  for (int i = 0; i < n; i++) rnn_f32_put(b + 4 * i, v[i]);
  return b;
}

int rnn_threads(void) {
  const char *z = getenv("SQLITE_RNN_THREADS");
  long n = z && *z ? strtol(z, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > RNN_MAX_THREADS ? RNN_MAX_THREADS : (int)n;
}

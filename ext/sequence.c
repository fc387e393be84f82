/*
** sequence.c: sequences and rows as SQL values, and rnn_sequence(), the
** aggregate that builds an ordered sequence on any SQLite version.
**
**   SELECT rnn_eval('m', '[0.1, 0.5, 0.2]');                -- JSON numbers: 3 steps
**   SELECT rnn_eval('m2', '[[0.1, 1], [0.5, 2]]');          -- JSON arrays: 2 steps x 2 features
**   SELECT rnn_eval('m', x'CDCCCC3D...');                   -- float32 BLOB of T*I values
**   SELECT rnn_classify('lang', 'schmidt');                 -- TEXT, split into the vocab's tokens
**   SELECT rnn_eval('m', (SELECT rnn_sequence(t, v) FROM readings WHERE device = 7));
**
** Rules kept:
**  1. A JSON sequence is an array of numbers (models with one feature) or of
**     arrays of exactly I numbers; a BLOB holds T*I little-endian float32 values;
**     TEXT for a model with a `vocab` is split into its tokens, longest match
**     first, and one-hot encoded. Every value must be finite in float32.
**  2. A character that starts no token is an error naming it and its position,
**     unless the model declares an `unknown_token`, which stands in for it.
**  3. An empty sequence is an error; a NULL sequence gives NULL.
**  4. Sequences hold at most RNN_MAX_SEQ_VALUES values.
**  5. rnn_sequence(t, x1, ...) sorts its rows by t (numbers before text, as SQL
**     orders them; ties by the features) and returns a float32 BLOB: ordered by
**     construction whatever order SQLite feeds the aggregate. Rows with a NULL
**     key or feature are skipped; no rows give NULL.
*/
#include "sequence.h"
#include "functions.h"
#include "json.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <stdlib.h>
#include <string.h>


static int finite_f32(double d) { return fabs(d) <= 3.4028234663852886e38; }

void rnn_seq_free(rnn_seq *s) {
  sqlite3_free(s->xs);
  sqlite3_free(s->tokens);
  memset(s, 0, sizeof(*s));
}

static int alloc_seq(rnn_err *err, const char *fn, rnn_seq *s, int64_t T, int I, int tokens) {
  if (T == 0) {
    rnn_err_set(err, "%s(): sequence is empty", fn);
    return -1;
  }
  if (T > RNN_MAX_SEQ_VALUES / I) {
    rnn_err_set(err, "%s(): sequence has %lld steps of %d values, more than the limit of %d values", fn,
              (long long)T, I, RNN_MAX_SEQ_VALUES);
    return -1;
  }
  s->T = T;
  s->xs = sqlite3_malloc64((size_t)T * (size_t)I * sizeof(float));
  if (tokens) s->tokens = sqlite3_malloc64((size_t)T * sizeof(int));
  if (!s->xs || (tokens && !s->tokens)) {
    rnn_seq_free(s);
    rnn_err_nomem(err);
    return -1;
  }
  memset(s->xs, 0, (size_t)T * (size_t)I * sizeof(float));
  return 0;
}

static int read_blob(rnn_err *err, const rnn_model *m, sqlite3_value *v, const char *fn, rnn_seq *s) {
  const int I = m->net.n_in;
  const unsigned char *p = sqlite3_value_blob(v);
  int n = sqlite3_value_bytes(v);
  if (n == 0) {
    rnn_err_set(err, "%s(): sequence is empty", fn);
    return -1;
  }
  if (!p) {
    rnn_err_nomem(err);
    return -1;
  }
  if (n % (4 * I)) {
    rnn_err_set(err, "%s(): sequence BLOB has %d bytes, not a multiple of %d (%d float32 feature%s per step)", fn, n,
              4 * I, I, I == 1 ? "" : "s");
    return -1;
  }
  if (alloc_seq(err, fn, s, n / (4 * I), I, 0)) return -1;
  for (int i = 0; i < n / 4; i++) {
    uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                 (uint32_t)p[4 * i + 3] << 24;
    float f;
    memcpy(&f, &u, 4);
    if (!isfinite(f)) {
      rnn_err_set(err, "%s(): sequence step %d feature %d is not finite", fn, i / I, i % I + 1);
      rnn_seq_free(s);
      return -1;
    }
    s->xs[i] = f;
  }
  return 0;
}

static const char *json_kind(rj_type t) {
  static const char *const k[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
  return k[t];
}

static int read_json(rnn_err *err, const rnn_model *m, const char *z, int n, const char *fn, rnn_seq *s) {
  const int I = m->net.n_in;
  rj_doc d;
  char jerr[128];
  int rc = rj_parse(z, (size_t)n, &d, jerr, sizeof(jerr));
  if (rc == 2) {
    rnn_err_nomem(err);
    return -1;
  }
  if (rc) {
    rnn_err_set(err, "%s(): sequence is not valid JSON: %s", fn, jerr);
    return -1;
  }
  rj_node *nd = d.nodes;
  rc = -1;
  if (nd[0].type != RJ_ARRAY) {
    rnn_err_set(err, "%s(): sequence must be a JSON array, got %s", fn, json_kind(nd[0].type));
    goto done;
  }
  if (alloc_seq(err, fn, s, nd[0].n, I, 0)) goto done;
  int64_t t = 0;
  for (int e = nd[0].child; e >= 0; e = nd[e].next, t++) {
    float *row = s->xs + (size_t)t * I;
    if (nd[e].type == RJ_NUMBER && I == 1) {
      if (!finite_f32(nd[e].num)) {
        rnn_err_set(err, "%s(): sequence step %lld is not a finite float32 number", fn, (long long)t);
        goto fail;
      }
      row[0] = (float)nd[e].num;
    } else if (nd[e].type == RJ_ARRAY) {
      if (nd[e].n != I) {
        rnn_err_set(err, "%s(): sequence step %lld has %d feature%s, the model expects %d", fn, (long long)t,
                  nd[e].n, nd[e].n == 1 ? "" : "s", I);
        goto fail;
      }
      int k = 0;
      for (int f = nd[e].child; f >= 0; f = nd[f].next, k++) {
        if (nd[f].type != RJ_NUMBER || !finite_f32(nd[f].num)) {
          rnn_err_set(err, "%s(): sequence step %lld feature %d is %s, expected a finite number", fn, (long long)t,
                    k + 1, nd[f].type == RJ_NUMBER ? "out of float32 range" : json_kind(nd[f].type));
          goto fail;
        }
        row[k] = (float)nd[f].num;
      }
    } else {
      if (nd[e].type == RJ_NUMBER) {
        rnn_err_set(err, "%s(): sequence step %lld is a number, but the model expects %d features per step", fn,
                  (long long)t, I);
      } else {
        rnn_err_set(err, "%s(): sequence step %lld is %s, expected a number or an array", fn, (long long)t,
                  json_kind(nd[e].type));
      }
      goto fail;
    }
  }
  rc = 0;
  goto done;
fail:
  rnn_seq_free(s);
done:
  rj_free(&d);
  return rc;
}

/* Rule 2: longest match first. */
static int read_tokens(rnn_err *err, const rnn_model *m, const char *z, int n, const char *fn, rnn_seq *s) {
  const int V = m->n_vocab;
  int64_t T = 0, cap = 0;
  int *tok = NULL;
  int chars = 0;
  for (int i = 0; i < n;) {
    int len = m->max_token < n - i ? m->max_token : n - i, t = -1;
    for (; len > 0 && t < 0; len--) t = rnn_model_token(m, z + i, len);
    len++;
    if (t < 0) {
      int cl = 1; /* the offending UTF-8 character */
      while (i + cl < n && ((unsigned char)z[i + cl] & 0xC0) == 0x80) cl++;
      if (m->unknown < 0) {
        sqlite3_free(tok);
        rnn_err_set(err, "%s(): %U at character %d of the text is not in the model's vocab", fn, z + i, cl,
                  chars + 1);
        return -1;
      }
      t = m->unknown;
      len = cl;
    }
    if (T == cap) {
      cap = cap ? cap * 2 : 64;
      int *nt = sqlite3_realloc64(tok, (size_t)cap * sizeof(int));
      if (!nt) {
        sqlite3_free(tok);
        rnn_err_nomem(err);
        return -1;
      }
      tok = nt;
    }
    tok[T++] = t;
    for (int k = 0; k < len; k++) chars += ((unsigned char)z[i + k] & 0xC0) != 0x80;
    i += len;
  }
  if (alloc_seq(err, fn, s, T, V, 1)) {
    sqlite3_free(tok);
    return -1;
  }
  memcpy(s->tokens, tok, (size_t)T * sizeof(int));
  sqlite3_free(tok);
  for (int64_t t = 0; t < T; t++) s->xs[(size_t)t * V + (size_t)s->tokens[t]] = 1.0f;
  return 0;
}

int rnn_seq_read(rnn_err *err, const rnn_model *m, sqlite3_value *v, const char *fn, rnn_seq *out) {
  memset(out, 0, sizeof(*out));
  switch (sqlite3_value_type(v)) {
    case SQLITE_NULL: return 1;
    case SQLITE_BLOB: return read_blob(err, m, v, fn, out);
    case SQLITE_TEXT: {
      const char *z = (const char *)sqlite3_value_text(v);
      int n = sqlite3_value_bytes(v);
      if (!z) {
        rnn_err_nomem(err);
        return -1;
      }
      if (m->n_vocab) {
        if (n == 0) {
          rnn_err_set(err, "%s(): sequence is empty", fn);
          return -1;
        }
        return read_tokens(err, m, z, n, fn, out);
      }
      return read_json(err, m, z, n, fn, out);
    }
    default:
      rnn_err_set(err, "%s(): sequence is %s: pass a JSON array, a float32 BLOB or, for a model with a vocab, TEXT",
                fn, rnn_type_name(sqlite3_value_type(v)));
      return -1;
  }
}

int rnn_row_read(rnn_err *err, const rnn_model *m, const char *fn, int argc, sqlite3_value **argv,
                 float *row) {
  for (int i = 1; i < argc; i++) {
    if (sqlite3_value_type(argv[i]) == SQLITE_NULL) return 0;
  }
  if (m->n_vocab && argc == 2 && m->net.n_in != 1) {
    /* one token per row, one-hot */
    int t = sqlite3_value_type(argv[1]), idx = -1;
    if (t == SQLITE_TEXT) {
      const char *z = (const char *)sqlite3_value_text(argv[1]);
      int n = sqlite3_value_bytes(argv[1]);
      if (!z) {
        rnn_err_nomem(err);
        return -1;
      }
      idx = rnn_model_token(m, z, n);
      if (idx < 0) idx = m->unknown;
      if (idx < 0) {
        rnn_err_set(err, "%s(): argument 2 %.40U is not a token of the model's vocab", fn, z, n);
        return -1;
      }
    } else if (t == SQLITE_INTEGER) {
      sqlite3_int64 k = sqlite3_value_int64(argv[1]);
      if (k < 0 || k >= m->n_vocab) {
        rnn_err_set(err, "%s(): argument 2 is token index %lld, outside 0..%d", fn, (long long)k, m->n_vocab - 1);
        return -1;
      }
      idx = (int)k;
    } else {
      rnn_err_set(err, "%s(): argument 2 is %s, expected a token (TEXT) or a token index (INTEGER) of the model's "
                     "vocab", fn, rnn_type_name(t));
      return -1;
    }
    memset(row, 0, sizeof(float) * (size_t)m->net.n_in);
    row[idx] = 1.0f;
    return 1;
  }
  if (argc - 1 != m->net.n_in) {
    rnn_err_set(err, "%s(): model expects %d feature%s, got %d", fn, m->net.n_in, m->net.n_in == 1 ? "" : "s",
              argc - 1);
    return -1;
  }
  for (int i = 1; i < argc; i++) {
    int t = sqlite3_value_type(argv[i]);
    if (t != SQLITE_INTEGER && t != SQLITE_FLOAT) {
      rnn_err_set(err, "%s(): argument %d (feature %d) is %s, expected a number", fn, i + 1, i,
                  rnn_type_name(t));
      return -1;
    }
    double d = sqlite3_value_double(argv[i]);
    if (!finite_f32(d)) {
      rnn_err_set(err, "%s(): argument %d (feature %d) is %!.17g, expected a finite float32 number", fn, i + 1, i, d);
      return -1;
    }
    row[i - 1] = (float)d;
  }
  return 1;
}

/* ---- rnn_sequence(t, x1, ...) ---------------------------------------------- */

typedef struct seq_row {
  int kind;               /* 0 number, 1 text */
  int is_int;
  sqlite3_int64 i;
  double d;
  char *text;             /* owned (kind 1) */
  int text_len;
  int64_t at;             /* index of its features in vals */
} seq_row;

typedef struct seq_agg {
  seq_row *rows;          /* owned */
  float *vals;            /* [n][nf]; owned */
  int64_t n, cap;
  int nf;
} seq_agg;

static int cmp_key(const seq_row *a, const seq_row *b) {
  if (a->kind != b->kind) return a->kind - b->kind;
  if (a->kind == 1) {
    int n = a->text_len < b->text_len ? a->text_len : b->text_len;
    int c = memcmp(a->text, b->text, (size_t)n);
    return c ? c : (a->text_len > b->text_len) - (a->text_len < b->text_len);
  }
  if (a->is_int && b->is_int) return (a->i > b->i) - (a->i < b->i);
  double x = a->is_int ? (double)a->i : a->d, y = b->is_int ? (double)b->i : b->d;
  return (x > y) - (x < y);
}

/* qsort has no context pointer, so each item carries what the tie-break needs. */
typedef struct sort_item {
  const seq_row *row;
  const float *vals;
  int nf;
} sort_item;

static int cmp_item(const void *pa, const void *pb) {
  const sort_item *a = pa, *b = pb;
  int c = cmp_key(a->row, b->row);
  for (int k = 0; !c && k < a->nf; k++) c = (a->vals[k] > b->vals[k]) - (a->vals[k] < b->vals[k]);
  return c;
}

static void seqagg_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  seq_agg *a = sqlite3_aggregate_context(ctx, sizeof(seq_agg));
  if (!a) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (argc < 2) {
    rnn_result_errorf(ctx, "rnn_sequence(): expected an ordering key and at least one feature");
    return;
  }
  for (int i = 0; i < argc; i++) {
    if (sqlite3_value_type(argv[i]) == SQLITE_NULL) return;
  }
  int kt = sqlite3_value_type(argv[0]);
  if (kt == SQLITE_BLOB) {
    rnn_result_errorf(ctx, "rnn_sequence(): argument 1 (the ordering key) is BLOB, expected a number or text");
    return;
  }
  a->nf = argc - 1;
  if ((a->n + 1) * a->nf > RNN_MAX_SEQ_VALUES) {
    rnn_result_errorf(ctx, "rnn_sequence(): more than %d values", RNN_MAX_SEQ_VALUES);
    return;
  }
  if (a->n == a->cap) {
    int64_t cap = a->cap ? a->cap * 2 : 64;
    seq_row *nr = sqlite3_realloc64(a->rows, (size_t)cap * sizeof(seq_row));
    if (!nr) {
      sqlite3_result_error_nomem(ctx);
      return;
    }
    a->rows = nr;
    float *nv = sqlite3_realloc64(a->vals, (size_t)cap * (size_t)a->nf * sizeof(float));
    if (!nv) {
      sqlite3_result_error_nomem(ctx);
      return;
    }
    a->vals = nv;
    a->cap = cap;
  }
  float *row = a->vals + (size_t)a->n * a->nf;
  for (int i = 1; i < argc; i++) {
    int t = sqlite3_value_type(argv[i]);
    double d = sqlite3_value_double(argv[i]);
    if (t != SQLITE_INTEGER && t != SQLITE_FLOAT) {
      rnn_result_errorf(ctx, "rnn_sequence(): argument %d (feature %d) is %s, expected a number", i + 1, i,
                        rnn_type_name(t));
      return;
    }
    if (!finite_f32(d)) {
      rnn_result_errorf(ctx, "rnn_sequence(): argument %d (feature %d) is %!.17g, expected a finite float32 number", i + 1,
                i, d);
      return;
    }
    row[i - 1] = (float)d;
  }
  seq_row *r = &a->rows[a->n];
  memset(r, 0, sizeof(*r));
  r->at = a->n;
  if (kt == SQLITE_TEXT) {
    const char *z = (const char *)sqlite3_value_text(argv[0]);
    int n = sqlite3_value_bytes(argv[0]);
    r->text = sqlite3_malloc64((size_t)n + 1);
    if (!z || !r->text) {
      sqlite3_free(r->text);
      sqlite3_result_error_nomem(ctx);
      return;
    }
    memcpy(r->text, z, (size_t)n);
    r->text_len = n;
    r->kind = 1;
  } else if (kt == SQLITE_INTEGER) {
    r->is_int = 1;
    r->i = sqlite3_value_int64(argv[0]);
  } else {
    r->d = sqlite3_value_double(argv[0]);
  }
  a->n++;
}

static void seqagg_final(sqlite3_context *ctx) {
  seq_agg *a = sqlite3_aggregate_context(ctx, 0);
  if (!a || a->n == 0) {
    sqlite3_result_null(ctx);
    goto done;
  }
  sort_item *items = sqlite3_malloc64((size_t)a->n * sizeof(sort_item));
  unsigned char *out = sqlite3_malloc64((size_t)a->n * (size_t)a->nf * 4);
  if (!items || !out) {
    sqlite3_free(items);
    sqlite3_free(out);
    sqlite3_result_error_nomem(ctx);
    goto done;
  }
  for (int64_t i = 0; i < a->n; i++) {
    items[i].row = &a->rows[i];
    items[i].vals = a->vals + (size_t)i * a->nf;
    items[i].nf = a->nf;
  }
  qsort(items, (size_t)a->n, sizeof(sort_item), cmp_item);
  for (int64_t i = 0; i < a->n; i++) {
    for (int k = 0; k < a->nf; k++) {
      uint32_t u;
      memcpy(&u, &items[i].vals[k], 4);
      unsigned char *p = out + ((size_t)i * a->nf + (size_t)k) * 4;
      p[0] = (unsigned char)u;
      p[1] = (unsigned char)(u >> 8);
      p[2] = (unsigned char)(u >> 16);
      p[3] = (unsigned char)(u >> 24);
    }
  }
  sqlite3_free(items);
  sqlite3_result_blob64(ctx, out, (sqlite3_uint64)a->n * (sqlite3_uint64)a->nf * 4, sqlite3_free);
  sqlite3_result_subtype(ctx, RNN_SUBTYPE_F32);
done:
  if (a) {
    for (int64_t i = 0; i < a->n; i++) sqlite3_free(a->rows[i].text);
    sqlite3_free(a->rows);
    sqlite3_free(a->vals);
    memset(a, 0, sizeof(*a));
  }
}

/* Callbacks for the registration table in rnn.c (functions.h). */
void rnn_sequence_step(sqlite3_context *c, int n, sqlite3_value **v) { seqagg_step(c, n, v); }
void rnn_sequence_final(sqlite3_context *c) { seqagg_final(c); }

/*
** seqagg.c: owns rnn_sequence(), the aggregate that builds an ordered float32
** sequence on any SQLite version (no ORDER BY inside aggregates before 3.44).
**
**   SELECT rnn_eval('m', (SELECT rnn_sequence(t, v) FROM readings WHERE device = 7));
**   SELECT rnn_eval('m', (SELECT rnn_sequence(json_array(year, quarter), sales) FROM q));
**
** Rules kept:
**  1. rnn_sequence(key, x1, ...) sorts its rows by key and returns the features
**     as a float32 BLOB (subtype 223): ordered by construction whatever order
**     SQLite feeds the aggregate.
**  2. A key is a number or TEXT (numbers before text, as SQL orders them; text
**     by its bytes), or several keys as json_array(k1, k2, ...), compared
**     element by element, a shorter array first when one is a prefix of the
**     other. Only a value that carries SQLite's JSON subtype (straight from
**     json_array()) is read as JSON; a JSON text stored in a table is TEXT.
**     Ties are broken by the features, so the result never depends on the
**     order of the rows.
**  3. Rows with a NULL key, a null element in a json_array key, or a NULL
**     feature are skipped; no rows give NULL.
**  4. Features follow features.c rule 1; at most RNN_MAX_SEQ_VALUES values:
**     rows past it are counted, not kept, and the error (the same message as
**     every sequence's) gives the total.
*/
#include "f32.h"
#include "json.h"
#include "sequence.h"
#include "functions.h"
SQLITE_EXTENSION_INIT3
#include <stdlib.h>
#include <string.h>

#ifndef SQLITE_SUBTYPE
#define SQLITE_SUBTYPE 0x000100000
#endif

/* A row's key, or one element of a json_array key: 16 bytes, as there is one
** per row (2^25 rows at the limit). */
typedef struct seq_key {
  union {
    sqlite3_int64 i;      /* NUM_KEY with is_int */
    double d;             /* NUM_KEY otherwise */
    char *text;           /* TEXT_KEY: not NUL-terminated */
    struct seq_key *parts; /* ARRAY_KEY: [len] elements, their texts after them */
  } v;
  int len;                /* TEXT_KEY: bytes; ARRAY_KEY: elements */
  unsigned char kind;     /* NUM_KEY, TEXT_KEY or ARRAY_KEY: the order of kinds */
  unsigned char is_int;
} seq_key;

enum { NUM_KEY, TEXT_KEY, ARRAY_KEY };

/* A row's key owns v.text or v.parts (one sqlite3_malloc block). */
typedef seq_key seq_row;

typedef struct seq_agg {
  seq_row *rows;          /* [cap]; owned */
  float *vals;            /* [cap][nf]; owned */
  int64_t n, cap;
  int64_t over;           /* rows past the limit: counted for the message, not kept */
  int nf;
} seq_agg;

/* Rule 2: numbers, then text, then json_array keys (element by element). */
static int cmp_key(const seq_key *a, const seq_key *b) {
  if (a->kind != b->kind) return a->kind - b->kind;
  if (a->kind == ARRAY_KEY) {
    for (int i = 0; i < a->len && i < b->len; i++) {
      int c = cmp_key(&a->v.parts[i], &b->v.parts[i]);
      if (c) return c;
    }
    return (a->len > b->len) - (a->len < b->len);
  }
  if (a->kind == TEXT_KEY) {
    int n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->v.text, b->v.text, (size_t)n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
  }
  if (a->is_int && b->is_int) return (a->v.i > b->v.i) - (a->v.i < b->v.i);
  double x = a->is_int ? (double)a->v.i : a->v.d, y = b->is_int ? (double)b->v.i : b->v.d;
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

/* A json_array key into r; *use is 0 to skip the row (a null element). Returns
** an SQLite code, the error in err (util.h). */
static int array_key(rnn_err *err, const char *z, int n, seq_row *r, int *use) {
  rnn_json_doc d;
  int rc = rnn_json_parse(z, (size_t)n, &d, err);
  if (rc != SQLITE_OK) return rnn_err_prefix(err, "rnn_sequence(): argument 1 (the ordering key) is not valid JSON: ");
  const rnn_json_node *nd = d.nodes;
  size_t bytes = sizeof(seq_key) * (size_t)nd[0].n;
  *use = 1;
  for (int e = nd[0].child, k = 1; e >= 0 && rc == SQLITE_OK; e = nd[e].next, k++) {
    if (nd[e].type == RNN_JSON_NULL) {
      *use = 0;
    } else if (nd[e].type == RNN_JSON_STRING) {
      bytes += (size_t)nd[e].n;
    } else if (nd[e].type != RNN_JSON_NUMBER) {
      rc = rnn_err_set(err, "rnn_sequence(): element %d of the ordering key is %s, expected a number or text", k,
                       nd[e].type == RNN_JSON_ARRAY    ? "an array"
                       : nd[e].type == RNN_JSON_OBJECT ? "an object"
                                                       : "true or false");
    }
  }
  if (rc == SQLITE_OK && *use) {
    r->v.parts = sqlite3_malloc64(bytes + 1);
    if (!r->v.parts) rc = rnn_err_nomem(err);
  }
  if (rc == SQLITE_OK && *use) {
    r->kind = ARRAY_KEY;
    char *text = (char *)(r->v.parts + nd[0].n);
    for (int e = nd[0].child; e >= 0; e = nd[e].next) {
      seq_key *p = &r->v.parts[r->len++];
      memset(p, 0, sizeof(*p));
      if (nd[e].type == RNN_JSON_STRING) {
        memcpy(text, nd[e].str, (size_t)nd[e].n);
        p->kind = TEXT_KEY;
        p->v.text = text;
        p->len = nd[e].n;
        text += nd[e].n;
      } else if (nd[e].is_uint) {
        p->is_int = 1;
        p->v.i = (sqlite3_int64)nd[e].u;
      } else {
        p->v.d = nd[e].num;
      }
    }
  }
  rnn_json_free(&d);
  return rc;
}

/* The row's key from argv[0] (not NULL, not a BLOB). Returns as array_key. */
static int read_key(rnn_err *err, sqlite3_value *v, seq_row *r, int *use) {
  int t = sqlite3_value_type(v);
  memset(r, 0, sizeof(*r));
  *use = 1;
  if (t == SQLITE_TEXT) {
    const char *z = (const char *)sqlite3_value_text(v);
    int n = sqlite3_value_bytes(v);
    if (!z) return rnn_err_nomem(err);
    if (sqlite3_value_subtype(v) == RNN_SUBTYPE_JSON && n > 0 && z[0] == '[') return array_key(err, z, n, r, use);
    r->v.text = sqlite3_malloc64((size_t)n + 1);
    if (!r->v.text) return rnn_err_nomem(err);
    memcpy(r->v.text, z, (size_t)n);
    r->len = n;
    r->kind = TEXT_KEY;
  } else if (t == SQLITE_INTEGER) {
    r->is_int = 1;
    r->v.i = sqlite3_value_int64(v);
  } else {
    r->v.d = sqlite3_value_double(v);
  }
  return SQLITE_OK;
}

/* Room for one more row: SQLITE_OK or SQLITE_NOMEM (in err). */
static int grow(rnn_err *err, seq_agg *a) {
  if (a->n < a->cap) return SQLITE_OK;
  int64_t cap = a->cap ? a->cap * 2 : 64;
  seq_row *nr = sqlite3_realloc64(a->rows, (size_t)cap * sizeof(seq_row));
  if (!nr) return rnn_err_nomem(err);
  a->rows = nr;
  float *nv = sqlite3_realloc64(a->vals, (size_t)cap * (size_t)a->nf * sizeof(float));
  if (!nv) return rnn_err_nomem(err);
  a->vals = nv;
  a->cap = cap;
  return SQLITE_OK;
}

static void seqagg_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  seq_agg *a = sqlite3_aggregate_context(ctx, sizeof(seq_agg));
  rnn_err err = {SQLITE_OK, NULL};
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
  if (sqlite3_value_type(argv[0]) == SQLITE_BLOB) {
    rnn_result_errorf(ctx, "rnn_sequence(): argument 1 (the ordering key) is BLOB, expected a number or text");
    return;
  }
  a->nf = argc - 1;
  if ((a->n + a->over + 1) * a->nf > RNN_MAX_SEQ_VALUES) {
    a->over++; /* rule 4: reported by xFinal with the total */
    return;
  }
  int use = 0;
  if (grow(&err, a)) goto fail;
  float *row = a->vals + (size_t)a->n * a->nf;
  for (int i = 1; i < argc; i++) {
    if (rnn_feature_read(&err, "rnn_sequence", i + 1, i, argv[i], &row[i - 1])) goto fail;
  }
  if (read_key(&err, argv[0], &a->rows[a->n], &use)) goto fail;
  if (use) a->n++;
  return;
fail:
  rnn_err_result(ctx, &err);
}

static void seqagg_final(sqlite3_context *ctx) {
  seq_agg *a = sqlite3_aggregate_context(ctx, 0);
  if (a && a->over) {
    rnn_result_errorf(ctx, "rnn_sequence(): sequence has %lld steps of %d values, more than the limit of %d values",
                      (long long)(a->n + a->over), a->nf, RNN_MAX_SEQ_VALUES);
    goto done;
  }
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
    for (int k = 0; k < a->nf; k++) rnn_f32_put(out + ((size_t)i * a->nf + (size_t)k) * 4, items[i].vals[k]);
  }
  sqlite3_free(items);
  sqlite3_result_blob64(ctx, out, (sqlite3_uint64)a->n * (sqlite3_uint64)a->nf * 4, sqlite3_free);
  sqlite3_result_subtype(ctx, RNN_SUBTYPE_F32);
done:
  if (a) {
    for (int64_t i = 0; i < a->n; i++) {
      if (a->rows[i].kind == TEXT_KEY) sqlite3_free(a->rows[i].v.text);
      if (a->rows[i].kind == ARRAY_KEY) sqlite3_free(a->rows[i].v.parts);
    }
    sqlite3_free(a->rows);
    sqlite3_free(a->vals);
    memset(a, 0, sizeof(*a));
  }
}

/* Callbacks for the registration table in rnn.c (functions.h). */
void rnn_sequence_step(sqlite3_context *c, int n, sqlite3_value **v) { seqagg_step(c, n, v); }
void rnn_sequence_final(sqlite3_context *c) { seqagg_final(c); }

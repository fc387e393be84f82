/*
** json.c: a strict JSON reader for safetensors headers (and the JSON arrays that
** metadata values hold).
**
** Why not SQLite's json_each(): the header must be read inside the model loader,
** which is pure C, fuzzed on its own and called before any statement exists; calling
** back into SQL from there would add nested-statement hazards for a 10 KB string.
**
** Rules kept:
**  1. RFC 8259 grammar exactly: no comments, no trailing commas, no NaN/Infinity,
**     no leading zeros, nothing but whitespace after the root value.
**  2. Strings: \uXXXX escapes (including surrogate pairs) are decoded to UTF-8, as
**     Python's json.dumps writes non-ASCII text; raw bytes must be valid UTF-8;
**     control characters must be escaped; a lone surrogate is an error.
**  3. Numbers are converted without the C library's locale-dependent strtod; plain
**     non-negative integers below 2^63 are also kept exactly (shapes, offsets).
**  4. Nesting is limited to RNN_JSON_MAX_DEPTH, a document to RNN_JSON_MAX_NODES values and an
**     object to RNN_JSON_MAX_KEYS (keys are checked for duplicates by hash): a parsed
**     document holds at most RNN_JSON_MAX_NODES nodes (12 MiB) plus its decoded strings,
**     whatever the input length (a 60 MB header of numbers was 1.5 GB before).
**  5. Duplicate keys in one object are an error (safetensors names must be unique).
**  6. rnn_json_reader streams a JSON text too long to hold as nodes (sequences): it
**     yields array brackets and scalar values one at a time, keeping the same
**     grammar and error messages; any other value is checked in "skip" mode,
**     where the children of arrays are dropped once read and an object keeps
**     only its keys (for rule 5), so memory does not grow with the input.
*/
#include "json.h"
#include "util.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <string.h>

typedef struct rnn_json_parser {
  const unsigned char *z;
  size_t n, i;
  rnn_json_doc *doc;
  rnn_err *err;         /* the caller's */
  int skip;             /* rule 6: drop values once checked */
} rnn_json_parser;

/* The parse functions return a node index, or -1 with the error in p->err
** (util.h convention, rule 1). */
static int rnn_json_fail(rnn_json_parser *p, const char *what) {
  rnn_err_set(p->err, "%s at byte %llu", what, (unsigned long long)p->i);
  return -1;
}

static void rnn_json_ws(rnn_json_parser *p) {
  while (p->i < p->n) {
    unsigned char c = p->z[p->i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->i++;
  }
}

static int rnn_json_new_node(rnn_json_parser *p, rnn_json_type t) {
  rnn_json_doc *d = p->doc;
  if (d->n_nodes >= RNN_JSON_MAX_NODES) {
    rnn_err_set(p->err, "more than %d values at byte %llu", RNN_JSON_MAX_NODES, (unsigned long long)p->i);
    return -1;
  }
  if (d->n_nodes == d->cap_nodes) {
    int cap = d->cap_nodes ? d->cap_nodes * 2 : 64;
    rnn_json_node *nn = sqlite3_realloc64(d->nodes, (sqlite3_uint64)cap * sizeof(rnn_json_node));
    if (!nn) { rnn_err_nomem(p->err); return -1; }
    d->nodes = nn;
    d->cap_nodes = cap;
  }
  rnn_json_node *x = &d->nodes[d->n_nodes];
  memset(x, 0, sizeof(*x));
  x->type = t;
  x->child = -1;
  x->next = -1;
  return d->n_nodes++;
}

static int rnn_json_hex4(rnn_json_parser *p, unsigned *out) {
  unsigned v = 0;
  if (p->n - p->i < 4) return -1;
  for (int k = 0; k < 4; k++) {
    unsigned char c = p->z[p->i + k];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  p->i += 4;
  *out = v;
  return 0;
}

static void rnn_json_put_utf8(char *o, size_t *k, unsigned cp) {
  if (cp < 0x80) {
    o[(*k)++] = (char)cp;
  } else if (cp < 0x800) {
    o[(*k)++] = (char)(0xC0 | (cp >> 6));
    o[(*k)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    o[(*k)++] = (char)(0xE0 | (cp >> 12));
    o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[(*k)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    o[(*k)++] = (char)(0xF0 | (cp >> 18));
    o[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[(*k)++] = (char)(0x80 | (cp & 0x3F));
  }
}

/* Parse a string starting at the opening quote into the pool. */
static int rnn_json_parse_string(rnn_json_parser *p) {
  int id = rnn_json_new_node(p, RNN_JSON_STRING);
  if (id < 0) return -1;
  if (!p->doc->pool) { /* made on the first string, sized to the input */
    p->doc->pool = sqlite3_malloc64(p->n + 1);
    if (!p->doc->pool) { rnn_err_nomem(p->err); return -1; }
  }
  char *o = p->doc->pool + p->doc->pool_used;
  size_t k = 0;
  p->i++; /* opening quote */
  for (;;) {
    if (p->i >= p->n) return rnn_json_fail(p, "unterminated string");
    unsigned char c = p->z[p->i];
    if (c == '"') { p->i++; break; }
    if (c < 0x20) return rnn_json_fail(p, "control character in string");
    if (c == '\\') {
      p->i++;
      if (p->i >= p->n) return rnn_json_fail(p, "unterminated string");
      c = p->z[p->i++];
      switch (c) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
          unsigned cp, lo;
          if (rnn_json_hex4(p, &cp)) return rnn_json_fail(p, "bad \\u escape");
          if (cp >= 0xDC00 && cp <= 0xDFFF) return rnn_json_fail(p, "lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (p->n - p->i < 2 || p->z[p->i] != '\\' || p->z[p->i + 1] != 'u')
              return rnn_json_fail(p, "lone high surrogate in \\u escape");
            p->i += 2;
            if (rnn_json_hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF)
              return rnn_json_fail(p, "bad surrogate pair in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          if (cp == 0) return rnn_json_fail(p, "NUL character in string");
          rnn_json_put_utf8(o, &k, cp);
          break;
        }
        default: return rnn_json_fail(p, "bad escape in string");
      }
    } else {
      int len = rnn_utf8_len(p->z + p->i, p->n - p->i);
      if (!len) return rnn_json_fail(p, "invalid UTF-8 in string");
      memcpy(o + k, p->z + p->i, (size_t)len);
      k += (size_t)len;
      p->i += (size_t)len;
    }
  }
  o[k] = 0;
  /* decoded text is never longer than its source, so the pool (sized to the
  ** input) cannot overflow */
  p->doc->pool_used += k + 1;
  rnn_json_node *x = &p->doc->nodes[id];
  x->str = o;
  x->n = (int)k;
  x->u = 1469598103934665603ull; /* FNV-1a, for the duplicate-key check */
  for (size_t i = 0; i < k; i++) x->u = (x->u ^ (unsigned char)o[i]) * 1099511628211ull;
  return id;
}

static int rnn_json_parse_number(rnn_json_parser *p) {
  int id = rnn_json_new_node(p, RNN_JSON_NUMBER);
  if (id < 0) return -1;
  size_t s = p->i;
  int neg = 0, frac = 0, digits = 0;
  uint64_t mant = 0;
  int dropped = 0; /* significant digits beyond 19, folded into the exponent */
  long exp10 = 0;
  if (p->z[p->i] == '-') { neg = 1; p->i++; }
  if (p->i >= p->n || p->z[p->i] < '0' || p->z[p->i] > '9') return rnn_json_fail(p, "bad number");
  if (p->z[p->i] == '0' && p->i + 1 < p->n && p->z[p->i + 1] >= '0' && p->z[p->i + 1] <= '9')
    return rnn_json_fail(p, "leading zero in number");
  while (p->i < p->n && p->z[p->i] >= '0' && p->z[p->i] <= '9') {
    if (digits < 19) mant = mant * 10 + (uint64_t)(p->z[p->i] - '0');
    else dropped++;
    if (mant) digits++;
    p->i++;
  }
  if (p->i < p->n && p->z[p->i] == '.') {
    frac = 1;
    p->i++;
    if (p->i >= p->n || p->z[p->i] < '0' || p->z[p->i] > '9') return rnn_json_fail(p, "bad number");
    while (p->i < p->n && p->z[p->i] >= '0' && p->z[p->i] <= '9') {
      if (digits < 19) { mant = mant * 10 + (uint64_t)(p->z[p->i] - '0'); exp10--; }
      if (mant) digits++;
      p->i++;
    }
  }
  if (p->i < p->n && (p->z[p->i] == 'e' || p->z[p->i] == 'E')) {
    int eneg = 0;
    long e = 0;
    frac = 1;
    p->i++;
    if (p->i < p->n && (p->z[p->i] == '+' || p->z[p->i] == '-')) eneg = p->z[p->i++] == '-';
    if (p->i >= p->n || p->z[p->i] < '0' || p->z[p->i] > '9') return rnn_json_fail(p, "bad number");
    while (p->i < p->n && p->z[p->i] >= '0' && p->z[p->i] <= '9') {
      if (e < 100000) e = e * 10 + (p->z[p->i] - '0');
      p->i++;
    }
    exp10 += eneg ? -e : e;
  }
  exp10 += dropped;
  /* Scale in long double: exact for the integers a header holds, within an
  ** ulp of double otherwise, which is far below the float32 the model uses. */
  long double v = (long double)mant;
  long double base = 10.0L, scale = 1.0L;
  long e = exp10 < 0 ? -exp10 : exp10;
  if (e > 400) e = 400;
  while (e) {
    if (e & 1) scale *= base;
    base *= base;
    e >>= 1;
  }
  v = exp10 < 0 ? v / scale : v * scale;
  rnn_json_node *x = &p->doc->nodes[id];
  x->num = (double)(neg ? -v : v);
  if (!neg && !frac && p->i - s <= 18) {
    x->is_uint = 1;
    x->u = mant;
  }
  return id;
}

static int rnn_json_parse_value(rnn_json_parser *p, int depth);

static int rnn_json_parse_container(rnn_json_parser *p, int depth, int is_obj) {
  int id = rnn_json_new_node(p, is_obj ? RNN_JSON_OBJECT : RNN_JSON_ARRAY);
  if (id < 0) return -1;
  int last = -1, count = 0;
  rnn_json_doc *d = p->doc;
  char close = is_obj ? '}' : ']';
  if (depth >= RNN_JSON_MAX_DEPTH) return rnn_json_fail(p, "nesting too deep");
  p->i++;
  rnn_json_ws(p);
  if (p->i < p->n && p->z[p->i] == close) {
    p->i++;
    return id;
  }
  for (;;) {
    int k = -1, v;
    rnn_json_ws(p);
    if (is_obj && count >= RNN_JSON_MAX_KEYS) return rnn_json_fail(p, "too many keys in one object");
    if (is_obj) {
      if (p->i >= p->n || p->z[p->i] != '"') return rnn_json_fail(p, "expected a string key");
      k = rnn_json_parse_string(p);
      if (k < 0) return -1;
      /* rule 5: a scan over at most RNN_JSON_MAX_KEYS hashes; text compared on a match.
      ** Keys link key -> value -> key, or key -> key in skip mode. */
      for (int c = d->nodes[id].child; c >= 0; c = p->skip ? d->nodes[c].next : d->nodes[d->nodes[c].next].next) {
        if (d->nodes[c].u == d->nodes[k].u && strcmp(d->nodes[c].str, d->nodes[k].str) == 0) {
          rnn_err_set(p->err, "duplicate key '%.60s' at byte %llu", d->nodes[k].str, (unsigned long long)p->i);
          return -1;
        }
      }
      rnn_json_ws(p);
      if (p->i >= p->n || p->z[p->i] != ':') return rnn_json_fail(p, "expected ':'");
      p->i++;
    }
    int mark = d->n_nodes;
    size_t pool_mark = d->pool_used;
    v = rnn_json_parse_value(p, depth + 1);
    if (v < 0) return -1;
    rnn_json_node *nodes = d->nodes;
    count++;
    if (p->skip) {
      /* rule 6: drop the value; an object keeps its keys, linked key -> key */
      d->n_nodes = mark;
      d->pool_used = pool_mark;
      if (is_obj && last < 0) nodes[id].child = k;
      else if (is_obj) nodes[last].next = k;
      last = k;
    } else {
      int first = is_obj ? k : v;
      if (is_obj) nodes[k].next = v;
      if (last < 0) nodes[id].child = first;
      else nodes[last].next = first;
      last = v;
    }
    rnn_json_ws(p);
    if (p->i < p->n && p->z[p->i] == ',') { p->i++; continue; }
    if (p->i < p->n && p->z[p->i] == close) { p->i++; break; }
    return rnn_json_fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
  }
  p->doc->nodes[id].n = count;
  return id;
}

static int rnn_json_parse_literal(rnn_json_parser *p, const char *word, rnn_json_type t) {
  size_t len = strlen(word);
  if (p->n - p->i < len || memcmp(p->z + p->i, word, len) != 0) return rnn_json_fail(p, "unexpected character");
  p->i += len;
  return rnn_json_new_node(p, t);
}

static int rnn_json_parse_value(rnn_json_parser *p, int depth) {
  rnn_json_ws(p);
  if (p->i >= p->n) return rnn_json_fail(p, "unexpected end of text");
  switch (p->z[p->i]) {
    case '{': return rnn_json_parse_container(p, depth, 1);
    case '[': return rnn_json_parse_container(p, depth, 0);
    case '"': return rnn_json_parse_string(p);
    case 't': return rnn_json_parse_literal(p, "true", RNN_JSON_TRUE);
    case 'f': return rnn_json_parse_literal(p, "false", RNN_JSON_FALSE);
    case 'n': return rnn_json_parse_literal(p, "null", RNN_JSON_NULL);
    default:
      if (p->z[p->i] == '-' || (p->z[p->i] >= '0' && p->z[p->i] <= '9')) return rnn_json_parse_number(p);
      return rnn_json_fail(p, "unexpected character");
  }
}

int rnn_json_parse(const char *z, size_t n, rnn_json_doc *doc, rnn_err *err) {
  rnn_json_parser p;
  memset(doc, 0, sizeof(*doc));
  memset(&p, 0, sizeof(p));
  p.z = (const unsigned char *)z;
  p.n = n;
  p.doc = doc;
  p.err = err;
  if (rnn_json_parse_value(&p, 0) < 0) goto fail;
  rnn_json_ws(&p);
  if (p.i != p.n) {
    rnn_json_fail(&p, "trailing characters after JSON value");
    goto fail;
  }
  return SQLITE_OK;
fail:
  rnn_json_free(doc);
  return err->rc;
}

void rnn_json_free(rnn_json_doc *doc) {
  sqlite3_free(doc->nodes);
  sqlite3_free(doc->pool);
  memset(doc, 0, sizeof(*doc));
}

int rnn_json_get(const rnn_json_doc *doc, int obj, const char *key) {
  if (obj < 0 || doc->nodes[obj].type != RNN_JSON_OBJECT) return -1;
  for (int c = doc->nodes[obj].child; c >= 0; c = doc->nodes[doc->nodes[c].next].next) {
    if (strcmp(doc->nodes[c].str, key) == 0) return doc->nodes[c].next;
  }
  return -1;
}

/* ---- rule 6: the streaming reader ------------------------------------------ */

enum { RD_FIRST, RD_NEED, RD_SEP };

void rnn_json_reader_init(rnn_json_reader *r, const char *z, size_t n, rnn_err *err) {
  memset(r, 0, sizeof(*r));
  r->z = (const unsigned char *)z;
  r->n = n;
  r->err = err;
}

void rnn_json_reader_free(rnn_json_reader *r) { rnn_json_free(&r->doc); }

static int rd_fail(rnn_json_reader *r, const char *what) {
  rnn_err_set(r->err, "%s at byte %llu", what, (unsigned long long)r->i);
  return RNN_JSON_EV_ERROR;
}

static void rd_ws(rnn_json_reader *r) {
  while (r->i < r->n && (r->z[r->i] == ' ' || r->z[r->i] == '\t' || r->z[r->i] == '\n' || r->z[r->i] == '\r')) r->i++;
}

/* An item ended at depth r->depth. */
static int rd_after(rnn_json_reader *r, int ev) {
  if (r->depth == 0) r->root_done = 1;
  else r->state = RD_SEP;
  return ev;
}

/* Any value but an array, checked in skip mode; its type (and number) kept. */
static int rd_value(rnn_json_reader *r) {
  rnn_json_parser p;
  memset(&p, 0, sizeof(p));
  p.z = r->z;
  p.n = r->n;
  p.i = r->i;
  p.doc = &r->doc;
  p.err = r->err;
  p.skip = 1;
  int id = rnn_json_parse_value(&p, r->depth);
  r->i = p.i;
  if (id < 0) return r->err->rc == SQLITE_NOMEM ? RNN_JSON_EV_NOMEM : RNN_JSON_EV_ERROR;
  r->type = r->doc.nodes[id].type;
  r->num = r->doc.nodes[id].num;
  r->doc.n_nodes = 0;
  r->doc.pool_used = 0;
  return rd_after(r, RNN_JSON_EV_VALUE);
}

int rnn_json_reader_next(rnn_json_reader *r) {
  rd_ws(r);
  if (r->root_done) return r->i == r->n ? RNN_JSON_EV_END : rd_fail(r, "trailing characters after JSON value");
  if (r->depth > 0 && r->state != RD_NEED) {
    int c = r->i < r->n ? r->z[r->i] : -1;
    if (c == ']') {
      r->i++;
      r->depth--;
      return rd_after(r, RNN_JSON_EV_CLOSE);
    }
    if (r->state == RD_SEP) {
      if (c != ',') return rd_fail(r, "expected ',' or ']'");
      r->i++;
      rd_ws(r);
    }
  }
  r->state = RD_NEED;
  if (r->i >= r->n) return rd_fail(r, "unexpected end of text");
  if (r->z[r->i] != '[') return rd_value(r);
  if (r->depth >= RNN_JSON_MAX_DEPTH) return rd_fail(r, "nesting too deep");
  r->i++;
  r->depth++;
  r->state = RD_FIRST;
  return RNN_JSON_EV_OPEN;
}

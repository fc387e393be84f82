/*
** registry.c: model lookup by name and the per-connection model cache.
**
**   INSERT INTO rnn_models(name, model) VALUES ('m', readfile('m.safetensors'));
**   SELECT rnn_predict('m', v) OVER (ORDER BY t) FROM readings;
**
** Rules kept:
**  1. A model argument is a safetensors BLOB or the TEXT name of a row in
**     rnn_models(name, model) (the user creates the table: sql/rnn_models.sql;
**     loading the extension never creates tables). Anything else is an error
**     that says what to pass, create or insert.
**  2. Parsed models are cached per connection keyed by content (length, then a
**     full comparison with a kept copy), so a model is parsed once however
**     many partitions, statements or names use it, and an UPDATE of a row is seen
**     at once: new bytes are a new key.
**  3. A name is looked up again by every statement: the row is read as the
**     statement sees it now (a prepared statement per lookup, never kept across
**     calls: a kept statement would block sqlite3_close), and its bytes are the
**     cache key (rule 2). So whatever changed the row or which table the name
**     rnn_models resolves to (UPDATE, ROLLBACK, savepoints, another connection's
**     commit, DDL, ATTACH/DETACH, a temp table shadowing main, incremental BLOB
**     writes, sqlite3_deserialize) is seen by the next statement, with no
**     version counter to trust. Within one execution of a statement a name is
**     read once: the model is kept in the statement's auxiliary data, which
**     SQLite drops when the statement ends or is reset. Table-valued functions
**     read once per scan.
**  4. Lookups re-entering the functions through the registry (a view or virtual
**     table named rnn_models calling rnn_predict) stop at depth RNN_MAX_DEPTH.
**  5. Between statements the cache holds at most RNN_CACHE_MODELS models and
**     RNN_CACHE_BYTES bytes of BLOB copies, the least recently used going first,
**     and nothing else holds a model. A running statement keeps the models it
**     uses alive through their reference count until it ends.
**  6. Names are byte strings with a length: a NUL byte is part of the name, in
**     lookups and in messages (%U shows it, escaped, rather than stopping there).
**  7. A missing registry is found by probing the schema (pragma_table_list),
**     never by matching the text of SQLite's error.
*/
#include "registry.h"
SQLITE_EXTENSION_INIT3
#include <assert.h>
#include <string.h>

#define RNN_CACHE_MODELS 8
#define RNN_CACHE_BYTES  (256u << 20)
#define RNN_MAX_DEPTH    4

struct rnn_conn {
  sqlite3 *db;
  int refs;                         /* function registrations alive */
  int depth;                        /* registry lookups in progress */
  uint64_t clock;
  rnn_entry *slot[RNN_CACHE_MODELS];
  int64_t parses, hits, reads;      /* counters for rnn_cache_stats() */
};

rnn_conn *rnn_conn_new(sqlite3 *db) {
  rnn_conn *c = sqlite3_malloc64(sizeof(*c));
  if (c) {
    memset(c, 0, sizeof(*c));
    c->db = db;
  }
  return c;
}

void rnn_conn_ref(rnn_conn *c) { c->refs++; }

void rnn_entry_release(rnn_entry *e) {
  assert(!e || e->refs > 0);
  if (e && --e->refs == 0) {
    rnn_model_free(e->model);
    sqlite3_free(e->blob);
    sqlite3_free(e);
  }
}

uint64_t rnn_entry_hash(rnn_entry *e) {
  if (!e->hash_known) {
    e->hash = rnn_model_hash(e->blob, e->len);
    e->hash_known = 1;
  }
  return e->hash;
}

void rnn_conn_unref(void *p) {
  rnn_conn *c = p;
  assert(!c || c->refs > 0);
  if (!c || --c->refs > 0) return;
  for (int i = 0; i < RNN_CACHE_MODELS; i++) rnn_entry_release(c->slot[i]);
  sqlite3_free(c);
}

static void cache_trim(rnn_conn *c, rnn_entry *keep) {
  for (;;) {
    size_t bytes = 0;
    int used = 0, oldest = -1;
    for (int i = 0; i < RNN_CACHE_MODELS; i++) {
      rnn_entry *e = c->slot[i];
      if (!e) continue;
      used++;
      bytes += e->len;
      if (e != keep && (oldest < 0 || e->last_use < c->slot[oldest]->last_use)) oldest = i;
    }
    if ((used <= RNN_CACHE_MODELS && bytes <= RNN_CACHE_BYTES) || oldest < 0) return;
    rnn_entry_release(c->slot[oldest]);
    c->slot[oldest] = NULL;
  }
}

/* The static functions below follow util.h: an SQLite code, the entry (referenced)
** in *out, the error in err. */

/* The cached entry for these bytes, parsing them on a miss. `what` names the
** registry row in messages (" 'm'"), or is "" for a BLOB argument. */
static int by_content(rnn_conn *c, const unsigned char *p, size_t n, const char *fname, const char *what,
                      rnn_entry **out, rnn_err *err) {
  *out = NULL;
  /* No hash first: it reads every byte as memcmp does, only slower (it added
  ** 1.2 ms to each statement using a 4 MB model by name), and models of one
  ** length differ early, in their first weights. */
  for (int i = 0; i < RNN_CACHE_MODELS; i++) {
    rnn_entry *e = c->slot[i];
    if (e && e->len == n && memcmp(e->blob, p, n) == 0) {
      e->last_use = ++c->clock;
      e->refs++;
      c->hits++;
      *out = e;
      return SQLITE_OK;
    }
  }
  rnn_model *m = NULL;
  int rc = rnn_model_load(p, n, &m, err);
  c->parses++;
  if (rc != SQLITE_OK) return rnn_err_prefix(err, "%s(): invalid model%s: ", fname, what);
  rnn_entry *e = sqlite3_malloc64(sizeof(*e));
  unsigned char *copy = sqlite3_malloc64(n ? n : 1);
  if (!e || !copy) {
    sqlite3_free(e);
    sqlite3_free(copy);
    rnn_model_free(m);
    return rnn_err_nomem(err);
  }
  memcpy(copy, p, n);
  e->model = m;
  e->blob = copy;
  e->len = n;
  e->hash_known = 0;
  e->last_use = ++c->clock;
  e->refs = 2; /* the cache slot and the caller */
  int free_slot = -1;
  for (int i = 0; i < RNN_CACHE_MODELS && free_slot < 0; i++) {
    if (!c->slot[i]) free_slot = i;
  }
  if (free_slot < 0) {
    int oldest = 0;
    for (int i = 1; i < RNN_CACHE_MODELS; i++) {
      if (c->slot[i]->last_use < c->slot[oldest]->last_use) oldest = i;
    }
    rnn_entry_release(c->slot[oldest]);
    free_slot = oldest;
  }
  c->slot[free_slot] = e;
  cache_trim(c, e);
  *out = e;
  return SQLITE_OK;
}

/* Rule 7: whether a table or view named rnn_models exists in any schema
** (1 yes, 0 no, -1 cannot tell: SQLite before 3.37 has no pragma_table_list). */
static int registry_exists(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  int found = -1;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_list('rnn_models')", -1, &st, NULL) == SQLITE_OK) {
    int rc = sqlite3_step(st);
    found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
  }
  sqlite3_finalize(st);
  return found;
}

/* The prepare of the registry read failed: say what to create, or why it cannot be read. */
static int registry_unreadable(sqlite3 *db, int rc, const char *fname, rnn_err *err) {
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  char *why = sqlite3_mprintf("%s", sqlite3_errmsg(db)); /* the probe below replaces it */
  if (!why) return rnn_err_nomem(err);
  if (registry_exists(db) == 0) {
    rnn_err_set(err, "%s(): no table rnn_models: create it with CREATE TABLE rnn_models(name TEXT PRIMARY KEY, "
                     "model BLOB NOT NULL) (sql/rnn_models.sql), then insert the model", fname);
  } else {
    rnn_err_set(err, "%s(): cannot read rnn_models(name, model): %s", fname, why);
  }
  sqlite3_free(why);
  return err->rc;
}

/* The model of the row as it is now: rule 3. */
static int by_name(rnn_conn *c, const char *name, int nname, const char *fname, rnn_entry **out, rnn_err *err) {
  sqlite3 *db = c->db;
  sqlite3_stmt *st = NULL;
  *out = NULL;
  if (c->depth >= RNN_MAX_DEPTH) {
    return rnn_err_set(err, "%s(): model lookup nested too deeply (rnn_models must be a plain table)", fname);
  }
  c->depth++;
  c->reads++;
  int rc = sqlite3_prepare_v2(db, "SELECT model FROM rnn_models WHERE name = ?1", -1, &st, NULL);
  if (rc != SQLITE_OK) {
    registry_unreadable(db, rc, fname, err);
    goto done;
  }
  if (sqlite3_bind_text(st, 1, name, nname, SQLITE_STATIC) != SQLITE_OK) {
    rnn_err_nomem(err);
    goto done;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int t = sqlite3_column_type(st, 0);
    if (t != SQLITE_BLOB) {
      rnn_err_set(err, "%s(): rnn_models.model of %U is %s, expected a safetensors BLOB", fname, name, nname,
                  rnn_type_name(t));
      goto done;
    }
    const unsigned char *p = sqlite3_column_blob(st, 0);
    int n = sqlite3_column_bytes(st, 0);
    if (!p && n > 0) {
      rnn_err_nomem(err);
      goto done;
    }
    char *what = rnn_mprintf(" %U", name, nname);
    if (!what) {
      rnn_err_nomem(err);
      goto done;
    }
    by_content(c, p ? p : (const unsigned char *)"", (size_t)n, fname, what, out, err);
    sqlite3_free(what);
  } else if (rc == SQLITE_DONE) {
    rnn_err_set(err, "%s(): no model named %U in rnn_models: INSERT INTO rnn_models(name, model) VALUES "
                     "(%U, <safetensors BLOB>)", fname, name, nname, name, nname);
  } else if (rc == SQLITE_NOMEM) {
    rnn_err_nomem(err);
  } else {
    rnn_err_set(err, "%s(): cannot read rnn_models: %s", fname, sqlite3_errmsg(db));
  }
done:
  sqlite3_finalize(st);
  c->depth--;
  return err->rc;
}

/* Rule 3: within one execution of a statement a name is read once. The memo
** is the statement's auxiliary data for the model argument, which SQLite drops
** when the statement ends or is reset (and, for an argument that is not a
** constant, after each call), so it never outlives the statement. */
typedef struct stmt_memo {
  rnn_entry *e;           /* referenced; released with the memo */
  int len;                /* bytes of name */
  char name[];            /* the name, not NUL-terminated */
} stmt_memo;

static void stmt_memo_free(void *p) {
  stmt_memo *m = p;
  rnn_entry_release(m->e);
  sqlite3_free(m);
}

static int by_name_in_statement(sqlite3_context *ctx, const char *name, int n, const char *fname, rnn_entry **out,
                                rnn_err *err) {
  rnn_conn *c = sqlite3_user_data(ctx);
  stmt_memo *m = sqlite3_get_auxdata(ctx, 0);
  if (m && m->len == n && memcmp(m->name, name, (size_t)n) == 0) {
    m->e->refs++;
    m->e->last_use = ++c->clock;
    c->hits++;
    *out = m->e;
    return SQLITE_OK;
  }
  if (by_name(c, name, n, fname, out, err)) return err->rc;
  rnn_entry *e = *out;
  m = sqlite3_malloc64(sizeof(*m) + (size_t)n);
  if (m) { /* a memo that cannot be stored is only a missed shortcut */
    m->e = e;
    e->refs++;
    m->len = n;
    memcpy(m->name, name, (size_t)n);
    sqlite3_set_auxdata(ctx, 0, m, stmt_memo_free); /* frees m at once if it cannot keep it */
  }
  return SQLITE_OK;
}

/* Rule 1 for a value: a BLOB, or a name read now (ctx NULL) or through the
** statement's memo (rule 3). */
static int resolve(rnn_conn *c, sqlite3_context *ctx, sqlite3_value *arg, const char *fname, rnn_entry **out,
                   rnn_err *err) {
  *out = NULL;
  switch (sqlite3_value_type(arg)) {
    case SQLITE_BLOB: {
      const unsigned char *p = sqlite3_value_blob(arg);
      int n = sqlite3_value_bytes(arg);
      if (!p && n > 0) return rnn_err_nomem(err);
      return by_content(c, p ? p : (const unsigned char *)"", (size_t)n, fname, "", out, err);
    }
    case SQLITE_TEXT: {
      const char *name = (const char *)sqlite3_value_text(arg);
      int n = sqlite3_value_bytes(arg);
      if (!name) return rnn_err_nomem(err);
      if (ctx) return by_name_in_statement(ctx, name, n, fname, out, err);
      return by_name(c, name, n, fname, out, err);
    }
    default:
      return rnn_err_set(err, "%s(): model argument is %s: pass a safetensors BLOB or the name of a row in "
                         "rnn_models", fname, rnn_type_name(sqlite3_value_type(arg)));
  }
}

rnn_entry *rnn_resolve_value(rnn_conn *c, sqlite3_value *arg, const char *fname, rnn_err *err) {
  rnn_entry *e;
  resolve(c, NULL, arg, fname, &e, err);
  return e;
}

rnn_entry *rnn_resolve(sqlite3_context *ctx, sqlite3_value *arg, const char *fname) {
  rnn_err err = {SQLITE_OK, NULL};
  rnn_entry *e;
  if (resolve(sqlite3_user_data(ctx), ctx, arg, fname, &e, &err)) rnn_err_result(ctx, &err);
  return e;
}

char *rnn_cache_stats_json(rnn_conn *c) {
  int n = 0;
  size_t bytes = 0;
  for (int i = 0; i < RNN_CACHE_MODELS; i++) {
    if (c->slot[i]) {
      n++;
      bytes += c->slot[i]->len;
    }
  }
  return sqlite3_mprintf("{\"models\":%d,\"bytes\":%llu,\"parses\":%lld,\"hits\":%lld,\"reads\":%lld}", n,
                         (unsigned long long)bytes, (long long)c->parses, (long long)c->hits,
                         (long long)c->reads);
}

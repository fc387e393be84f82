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
**  2. Parsed models are cached per connection keyed by content (length, hash,
**     then a full comparison with a kept copy), so a model is parsed once however
**     many partitions, statements or names use it, and an UPDATE of a row is seen
**     at once: new bytes are a new key.
**  3. A name resolves through a per-connection memo keyed by every attached
**     database's SQLITE_FCNTL_DATA_VERSION plus sqlite3_total_changes64(), which
**     together change on any commit (ours or another connection's) and on any
**     change of ours. A memo entry is never written inside a write transaction,
**     so a ROLLBACK cannot leave a memo of rolled-back bytes, and used only while
**     a read is open (the versions refresh when a read starts; with none open, a
**     probe of the row that reads no BLOB starts one). On a miss the
**     row is read again (a prepared statement per lookup, never kept across
**     calls: a kept statement would block sqlite3_close).
**  4. Lookups re-entering the functions through the registry (a view or virtual
**     table named rnn_models calling rnn_predict) stop at depth RNN_MAX_DEPTH.
**  5. The cache holds at most RNN_CACHE_MODELS models and RNN_CACHE_BYTES bytes
**     of BLOB copies; least recently used entries go first. Entries in use by a
**     running statement stay alive through their reference count.
*/
#include "registry.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

#define RNN_CACHE_MODELS 8
#define RNN_CACHE_BYTES  (256u << 20)
#define RNN_NAME_MEMO    16
#define RNN_MAX_DEPTH    4

typedef struct name_memo {
  char *name;             /* owned */
  rnn_entry *e;           /* referenced */
  uint64_t version;       /* data versions + total changes when memoised */
} name_memo;

struct rnn_conn {
  sqlite3 *db;
  int refs;                         /* function registrations alive */
  int depth;                        /* registry lookups in progress */
  uint64_t clock;
  rnn_entry *slot[RNN_CACHE_MODELS];
  name_memo memo[RNN_NAME_MEMO];
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
  if (e && --e->refs == 0) {
    rnn_model_free(e->model);
    sqlite3_free(e->blob);
    sqlite3_free(e);
  }
}

static void memo_clear(name_memo *m) {
  sqlite3_free(m->name);
  rnn_entry_release(m->e);
  memset(m, 0, sizeof(*m));
}

void rnn_conn_unref(void *p) {
  rnn_conn *c = p;
  if (!c || --c->refs > 0) return;
  for (int i = 0; i < RNN_CACHE_MODELS; i++) rnn_entry_release(c->slot[i]);
  for (int i = 0; i < RNN_NAME_MEMO; i++) memo_clear(&c->memo[i]);
  sqlite3_free(c);
}

/* A fast 64-bit hash, 8 bytes per round (a candidate key only: hits are
** confirmed with memcmp). */
static uint64_t hash_bytes(const unsigned char *p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  for (; i < n; i++) h = (h ^ p[i]) * 0x94D049BB133111EBull;
  return h ^ (h >> 29);
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

/* The cached entry for these bytes, parsing them on a miss. `what` names the
** registry row in messages (" 'm'"), or is "" for a BLOB argument. */
static rnn_entry *by_content(rnn_conn *c, const unsigned char *p, size_t n, const char *fname, const char *what,
                             rnn_err *err) {
  uint64_t h = hash_bytes(p, n);
  for (int i = 0; i < RNN_CACHE_MODELS; i++) {
    rnn_entry *e = c->slot[i];
    if (e && e->len == n && e->hash == h && memcmp(e->blob, p, n) == 0) {
      e->last_use = ++c->clock;
      e->refs++;
      c->hits++;
      return e;
    }
  }
  rnn_model *m = NULL;
  char *why = NULL;
  int rc = rnn_model_load(p, n, &m, &why);
  c->parses++;
  if (rc != SQLITE_OK) {
    if (rc == SQLITE_NOMEM) rnn_err_nomem(err);
    else rnn_err_set(err, "%s(): invalid model%s: %s", fname, what, why);
    sqlite3_free(why);
    return NULL;
  }
  rnn_entry *e = sqlite3_malloc64(sizeof(*e));
  unsigned char *copy = sqlite3_malloc64(n ? n : 1);
  if (!e || !copy) {
    sqlite3_free(e);
    sqlite3_free(copy);
    rnn_model_free(m);
    rnn_err_nomem(err);
    return NULL;
  }
  memcpy(copy, p, n);
  e->model = m;
  e->blob = copy;
  e->len = n;
  e->hash = h;
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
  return e;
}

/* Rule 3: a number that changes whenever the registry row could have changed. */
static uint64_t db_version(sqlite3 *db) {
  uint64_t v = (uint64_t)sqlite3_total_changes64(db) * 0x9E3779B97F4A7C15ull;
  const char *schema;
  for (int i = 0; (schema = sqlite3_db_name(db, i)) != NULL; i++) {
    unsigned int dv = 0;
    if (sqlite3_file_control(db, schema, SQLITE_FCNTL_DATA_VERSION, &dv) == SQLITE_OK) {
      v = (v ^ ((uint64_t)dv + (uint64_t)i * 0x10001ull)) * 0xBF58476D1CE4E5B9ull;
    }
  }
  return v;
}

static rnn_entry *by_name(rnn_conn *c, const char *name, int nname, const char *fname, rnn_err *err) {
  sqlite3 *db = c->db;
  sqlite3_stmt *probe = NULL;
  name_memo *slot = NULL;
  for (int i = 0; i < RNN_NAME_MEMO && !slot; i++) {
    name_memo *m = &c->memo[i];
    if (m->name && (int)strlen(m->name) == nname && memcmp(m->name, name, (size_t)nname) == 0) slot = m;
  }
  if (slot && c->depth < RNN_MAX_DEPTH) {
    /* The data versions refresh only when a read starts: with no transaction
    ** open, a cheap probe of the row starts one (and reads no BLOB). */
    if (sqlite3_txn_state(db, NULL) == SQLITE_TXN_NONE &&
        sqlite3_prepare_v2(db, "SELECT 1 FROM rnn_models WHERE name = ?1", -1, &probe, NULL) == SQLITE_OK &&
        sqlite3_bind_text(probe, 1, name, nname, SQLITE_STATIC) == SQLITE_OK) {
      c->depth++;
      sqlite3_step(probe);
      c->depth--;
    }
    int hit = sqlite3_txn_state(db, NULL) != SQLITE_TXN_NONE && slot->version == db_version(db);
    sqlite3_finalize(probe);
    if (hit) {
      slot->e->refs++;
      slot->e->last_use = ++c->clock;
      c->hits++;
      return slot->e;
    }
  }
  uint64_t ver;
  if (c->depth >= RNN_MAX_DEPTH) {
    rnn_err_set(err, "%s(): model lookup nested too deeply (rnn_models must be a plain table)", fname);
    return NULL;
  }
  sqlite3_stmt *st = NULL;
  rnn_entry *e = NULL;
  c->depth++;
  c->reads++;
  int rc = sqlite3_prepare_v2(db, "SELECT model FROM rnn_models WHERE name = ?1", -1, &st, NULL);
  if (rc != SQLITE_OK) {
    const char *why = sqlite3_errmsg(db);
    if (rc == SQLITE_NOMEM) rnn_err_nomem(err);
    else if (strncmp(why, "no such table", 13) == 0) {
      rnn_err_set(err, "%s(): no table rnn_models: create it with CREATE TABLE rnn_models(name TEXT PRIMARY KEY, "
                       "model BLOB NOT NULL) (sql/rnn_models.sql), then insert the model", fname);
    } else {
      rnn_err_set(err, "%s(): cannot read rnn_models(name, model): %s", fname, why);
    }
    goto done;
  }
  if (sqlite3_bind_text(st, 1, name, nname, SQLITE_STATIC) != SQLITE_OK) {
    rnn_err_nomem(err);
    goto done;
  }
  rc = sqlite3_step(st);
  ver = db_version(db); /* read while our statement holds the snapshot it read */
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
    e = by_content(c, p ? p : (const unsigned char *)"", (size_t)n, fname, what, err);
    sqlite3_free(what);
    if (!e) goto done;
  } else if (rc == SQLITE_DONE) {
    rnn_err_set(err, "%s(): no model named %U in rnn_models: INSERT INTO rnn_models(name, model) VALUES "
                     "(%U, <safetensors BLOB>)", fname, name, nname, name, nname);
    goto done;
  } else {
    if (rc == SQLITE_NOMEM) rnn_err_nomem(err);
    else rnn_err_set(err, "%s(): cannot read rnn_models: %s", fname, sqlite3_errmsg(db));
    goto done;
  }
  /* Rule 3: memoise only outside write transactions. */
  if (sqlite3_txn_state(db, NULL) != SQLITE_TXN_WRITE) {
    if (!slot) {
      for (int i = 0; i < RNN_NAME_MEMO && !slot; i++) {
        if (!c->memo[i].name) slot = &c->memo[i];
      }
      if (!slot) slot = &c->memo[c->clock % RNN_NAME_MEMO];
    }
    memo_clear(slot);
    slot->name = sqlite3_malloc64((size_t)nname + 1);
    if (slot->name) { /* a memo that cannot be stored is only a missed shortcut */
      memcpy(slot->name, name, (size_t)nname);
      slot->name[nname] = 0;
      slot->e = e;
      e->refs++;
      slot->version = ver;
    }
  }
done:
  sqlite3_finalize(st);
  c->depth--;
  return e;
}

rnn_entry *rnn_resolve_value(rnn_conn *c, sqlite3_value *arg, const char *fname, rnn_err *err) {
  switch (sqlite3_value_type(arg)) {
    case SQLITE_BLOB: {
      const unsigned char *p = sqlite3_value_blob(arg);
      int n = sqlite3_value_bytes(arg);
      if (!p && n > 0) {
        rnn_err_nomem(err);
        return NULL;
      }
      return by_content(c, p ? p : (const unsigned char *)"", (size_t)n, fname, "", err);
    }
    case SQLITE_TEXT: {
      const char *name = (const char *)sqlite3_value_text(arg);
      int n = sqlite3_value_bytes(arg);
      if (!name) {
        rnn_err_nomem(err);
        return NULL;
      }
      return by_name(c, name, n, fname, err);
    }
    default:
      rnn_err_set(err, "%s(): model argument is %s: pass a safetensors BLOB or the name of a row in rnn_models",
                  fname, rnn_type_name(sqlite3_value_type(arg)));
      return NULL;
  }
}

rnn_entry *rnn_resolve(sqlite3_context *ctx, sqlite3_value *arg, const char *fname) {
  rnn_err err = {SQLITE_OK, NULL};
  rnn_entry *e = rnn_resolve_value(sqlite3_user_data(ctx), arg, fname, &err);
  if (!e) rnn_err_result(ctx, &err);
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

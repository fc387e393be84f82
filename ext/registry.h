/*
** registry.h: finding a model from a function argument, and the per-connection
** cache of parsed models. See registry.c.
*/
#ifndef RNN_REGISTRY_H
#define RNN_REGISTRY_H
#include "model.h"
#include "sqlite3ext.h"
#include "util.h"

/* A parsed model shared by the cache and the statements using it. */
typedef struct rnn_entry {
  rnn_model *model;       /* owned */
  unsigned char *blob;    /* copy of the BLOB it was parsed from; owned */
  size_t len;
  uint64_t hash;          /* rnn_model_hash of blob, identifying the model in its states; see rnn_entry_hash */
  int hash_known;         /* hash is computed */
  uint64_t last_use;      /* cache clock at the last hit */
  int refs;               /* cache slot + each user; freed at 0 */
} rnn_entry;

typedef struct rnn_conn rnn_conn;

/* Per-connection state, created by sqlite3_rnn_init and shared by every function
** registration (refcounted: SQLite calls each registration's destructor). */
rnn_conn *rnn_conn_new(sqlite3 *db);
void rnn_conn_ref(rnn_conn *c);
void rnn_conn_unref(void *c);

/* Resolve argument `arg` (a model BLOB or a name in rnn_models) for function
** `fname` ("rnn_predict"). On success returns a referenced entry; on failure
** sets the SQL error on ctx and returns NULL (util.h exception 5: it is part of
** the callbacks' boundary). `arg` must be the function's first argument: a
** name's model is kept as its auxiliary data until the statement ends
** (registry.c rule 3). */
rnn_entry *rnn_resolve(sqlite3_context *ctx, sqlite3_value *arg, const char *fname);
/* The same for callers without a context (virtual tables), which read a name's
** row on every call: the entry, or NULL with the error in err. */
rnn_entry *rnn_resolve_value(rnn_conn *c, sqlite3_value *arg, const char *fname, rnn_err *err);
void rnn_entry_release(rnn_entry *e);
/* e's model hash, computed at the first call: it reads every byte of the BLOB
** (4.5 ms for 4 MB), which only the state functions need. */
uint64_t rnn_entry_hash(rnn_entry *e);

/* JSON counters for rnn_cache_stats(). sqlite3_malloc'd, NULL on OOM. */
char *rnn_cache_stats_json(rnn_conn *c);
#endif

/*
** train.c: rnn_train(), training a model in the database, an eponymous
** table-valued function with one row per epoch.
**
**   SELECT epoch, train_loss, val_loss, improved
**     FROM rnn_train('m', 'SELECT id, t, v FROM readings', '{"epochs": 50, "save_as": "m2"}');
**   SELECT model FROM rnn_train(rnn_init('{"cell": "gru", ...}'), 'SELECT ...') WHERE model NOT NULL;
**
** rnn_train(model, query [, options]): model is a name in rnn_models or a
** model BLOB (rnn_init's, or any unidirectional model); query gives the rows
** (train_data.c); options a JSON object (train_opts.c). Columns: epoch (1..),
** train_loss, val_loss (NULL without validation rows), learning_rate,
** seconds (since the call began), improved, and the HIDDEN column model: NULL
** on every row but the last, which holds the best model's BLOB.
**
** Rules kept:
**  1. DIRECTONLY: it runs SQL the caller passes as text, and may write
**     rnn_models, so it is refused in views and triggers.
**  2. Each row is one epoch, computed when the row is asked for (xFilter runs
**     the first, xNext each next one): progress shows live, and a query that
**     stops reading (LIMIT) stops training.
**  3. An epoch: the training batches in order (train_batch.c), each one
**     rnn_loss_grad then one Adam step (train_adam.c); then the validation
**     loss with the new weights. Losses are in standardised units, each the
**     mean over the epoch's counted targets (batch losses weighted by their
**     target counts).
**  4. improved: the epoch's val loss (train loss without validation rows) is
**     finite and below every earlier epoch's; the weights after such an
**     epoch are the best model. Training stops after `epochs`, after
**     `patience` epochs in a row without improvement (patience > 0), or at
**     the end of the epoch during which max_seconds passed (max_seconds > 0).
**  5. The last row carries the best model as a BLOB (rnn_params_to_blob) with
**     metadata (README "Training"); save_as writes the same BLOB to
**     rnn_models with INSERT OR REPLACE when that row is made. The statement
**     is prepared before training starts, so a missing rnn_models fails at once.
**  6. sqlite3_interrupt() and progress handlers are checked before every
**     batch (poll.c); the call then fails with SQLITE_INTERRUPT. A write cannot
**     succeed once the connection is interrupted, so keep_on_interrupt writes
**     the best model to save_as at every improvement instead: an interrupted
**     call leaves the best model so far there. Without it nothing is written.
**  7. Same data, options and seed give the same BLOB byte for byte: the
**     training math is scalar C with a fixed order (train.h, train_adam.c).
**  8. Threads: SQLITE_RNN_THREADS, else the online CPUs, at most 8 (as
**     rnn_scan). A pool lives from xFilter to the cursor's reset; each batch's
**     chunks of sequences run on it (grad.c rule 5), the same bits for any
**     number of threads. SQLite is called only from the connection's thread.
*/
#include "registry.h"
#include "poll.h"
#include "train_drive.h"
#include "functions.h"
#include "train_pool.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <string.h>
#include <time.h>

enum { C_EPOCH, C_TRAIN_LOSS, C_VAL_LOSS, C_LR, C_SECONDS, C_IMPROVED, C_SOURCE, C_QUERY, C_OPTIONS, C_MODEL };

typedef struct train_vtab {
  sqlite3_vtab base;
  rnn_conn *conn;         /* borrowed from the module's pAux */
  sqlite3 *db;
} train_vtab;

typedef struct train_cursor {
  sqlite3_vtab_cursor base;
  train_opts o;
  train_data d;
  rnn_params *p;          /* the weights being trained; owned */
  float *best;            /* [p->n] the best epoch's weights; owned */
  float *grad;            /* [p->n]; owned */
  int64_t *order;         /* [d.n_train + d.n_val] window indices; owned */
  train_adam adam;
  train_batch_buf bb;
  rnn_poll poll;          /* its statement is finalized at reset */
  rnn_pool *pool;         /* rule 8; NULL: one thread; owned */
  sqlite3_stmt *save;     /* INSERT OR REPLACE INTO rnn_models; owned */
  char *meta;             /* members of the source model's metadata to keep ("k":"v",...); owned */
  int n_labels;           /* labels for the metadata (options' or the source model's) */
  char *labels_json;      /* a JSON array text, or NULL; owned */
  double *hist;           /* [epochs][2] train, val (NaN: none); owned */
  uint64_t rng;           /* the shuffle generator (train_batch.c rule 2) */
  double t0;              /* when xFilter began, seconds */
  int epoch, best_epoch, since_best;
  double best_loss;       /* NAN before any improvement */
  double train_loss, val_loss, seconds; /* the current row */
  int improved, last, eof;
  unsigned char *blob;    /* the last row's BLOB; owned */
  size_t nblob;
} train_cursor;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int train_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **pp, char **err) {
  (void)argc;
  (void)argv;
  (void)err;
  /* the arguments are the first three HIDDEN columns; the result BLOB comes after them */
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(epoch INTEGER, train_loss REAL, val_loss REAL, learning_rate "
                                "REAL, seconds REAL, improved INTEGER, source HIDDEN, query HIDDEN, options HIDDEN, "
                                "model BLOB HIDDEN)");
  if (rc == SQLITE_OK) rc = sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY); /* rule 1 */
  if (rc != SQLITE_OK) return rc;
  train_vtab *v = sqlite3_malloc64(sizeof(*v));
  if (!v) return SQLITE_NOMEM;
  memset(v, 0, sizeof(*v));
  v->conn = aux;
  v->db = db;
  *pp = &v->base;
  return SQLITE_OK;
}

static int train_disconnect(sqlite3_vtab *p) {
  sqlite3_free(p);
  return SQLITE_OK;
}

/* model and query are required, options optional. */
static int train_best_index(sqlite3_vtab *p, sqlite3_index_info *info) {
  static const char *const names[] = {"model", "query"};
  int idx[3] = {-1, -1, -1}, unusable = 0;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    int a = c->iColumn - C_SOURCE;
    if (a < 0 || a > 2 || c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (!c->usable) unusable |= 1 << a;
    else idx[a] = i;
  }
  for (int a = 0; a < 3; a++) {
    if (idx[a] >= 0) {
      info->aConstraintUsage[idx[a]].argvIndex = a + 1;
      info->aConstraintUsage[idx[a]].omit = 1;
      continue;
    }
    if (unusable & (1 << a)) return SQLITE_CONSTRAINT;
    if (a == 2) break;
    rnn_err err = {SQLITE_OK, NULL};
    rnn_err_set(&err, TRAIN_FN "(): missing argument %d (%s)", a + 1, names[a]);
    return rnn_err_vtab(p, &err);
  }
  info->estimatedCost = 1e9;
  info->estimatedRows = 20;
  return SQLITE_OK;
}

static int train_open(sqlite3_vtab *p, sqlite3_vtab_cursor **pp) {
  (void)p;
  train_cursor *c = sqlite3_malloc64(sizeof(*c));
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof(*c));
  *pp = &c->base;
  return SQLITE_OK;
}

static void train_reset(train_cursor *c) {
  rnn_pool_stop(c->pool);
  rnn_train_opts_free(&c->o);
  rnn_train_data_free(&c->d);
  rnn_params_free(c->p);
  sqlite3_free(c->best);
  sqlite3_free(c->grad);
  sqlite3_free(c->order);
  rnn_train_adam_free(&c->adam);
  rnn_train_batch_free(&c->bb);
  rnn_poll_finish(&c->poll);
  sqlite3_finalize(c->save);
  sqlite3_free(c->meta);
  sqlite3_free(c->labels_json);
  sqlite3_free(c->hist);
  sqlite3_free(c->blob);
  sqlite3_vtab_cursor base = c->base;
  memset(c, 0, sizeof(*c));
  c->base = base;
}

static int train_close(sqlite3_vtab_cursor *p) {
  train_reset((train_cursor *)p);
  sqlite3_free(p);
  return SQLITE_OK;
}

/* The model's shape against the task and options. */
static int check_model(const rnn_model *m, const train_opts *o, rnn_err *err) {
  const rnn_net *n = &m->net;
  if (n->dirs != 1) {
    return rnn_err_set(err, TRAIN_FN "(): model is bidirectional: training supports unidirectional models only");
  }
  if (o->task == TASK_NEXT && n->n_out != n->n_in) {
    return rnn_err_set(err, TRAIN_FN "(): task next predicts the next row's features: the model needs as many "
                       "outputs as inputs (%d), it has %d", n->n_in, n->n_out);
  }
  if (o->task == TASK_CLASSIFY && n->n_out < 2) {
    return rnn_err_set(err, TRAIN_FN "(): task classify needs a model with an output per class (2 or more), it has "
                       "%d", n->n_out);
  }
  if (o->n_labels && o->n_labels != n->n_out) {
    return rnn_err_set(err, TRAIN_FN "(): option labels has %d label%s, the model has %d outputs", o->n_labels,
                       o->n_labels == 1 ? "" : "s", n->n_out);
  }
  return SQLITE_OK;
}

/* Metadata keys the trained model gets anew, not copied from the source model. */
static int replaced_key(const char *k) {
  static const char *const keys[] = {"cell", "recurrent_prefix", "head_prefix", "output_activation",
                                     "hidden_activation", "readout", "input_mean", "input_std", "output_mean",
                                     "output_std", "labels"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    if (strcmp(k, keys[i]) == 0) return 1;
  }
  return strncmp(k, "train_", 6) == 0;
}

/* The source model's other metadata members, kept as they were (c->meta). */
static int source_meta(train_cursor *c, const rnn_entry *e, rnn_err *err) {
  uint64_t hl = 0;
  for (int i = 0; i < 8 && e->len >= 8; i++) hl |= (uint64_t)e->blob[i] << (8 * i);
  rnn_json_doc d;
  if (rnn_json_parse((const char *)e->blob + 8, (size_t)hl, &d, err) != SQLITE_OK) return err->rc;
  int md = rnn_json_get(&d, 0, "__metadata__");
  sqlite3_str *s = sqlite3_str_new(NULL);
  for (int k = md >= 0 ? d.nodes[md].child : -1; k >= 0; k = d.nodes[d.nodes[k].next].next) {
    if (replaced_key(d.nodes[k].str)) continue;
    rnn_json_string(s, d.nodes[k].str);
    sqlite3_str_appendchar(s, 1, ':');
    rnn_json_string(s, d.nodes[d.nodes[k].next].str);
    sqlite3_str_appendchar(s, 1, ',');
  }
  rnn_json_free(&d);
  int bad = sqlite3_str_errcode(s);
  c->meta = sqlite3_str_finish(s);
  if (bad) return rnn_err_nomem(err);
  return SQLITE_OK;
}

/* The labels the metadata records: the options', else the source model's. */
static int labels_meta(train_cursor *c, const rnn_model *m, rnn_err *err) {
  int n = c->o.n_labels ? c->o.n_labels : m->n_labels;
  char *const *names = c->o.n_labels ? c->o.labels : m->labels;
  if (c->o.task != TASK_CLASSIFY || n == 0) return SQLITE_OK;
  sqlite3_str *s = sqlite3_str_new(NULL);
  for (int i = 0; i < n; i++) {
    sqlite3_str_appendchar(s, 1, i ? ',' : '[');
    rnn_json_string(s, names[i]);
  }
  sqlite3_str_appendchar(s, 1, ']');
  int bad = sqlite3_str_errcode(s);
  c->labels_json = sqlite3_str_finish(s);
  return bad ? rnn_err_nomem(err) : SQLITE_OK;
}

/* Rule 5: the save statement, prepared before any training. */
static int prepare_save(train_cursor *c, sqlite3 *db, rnn_err *err) {
  if (!c->o.save_as) return SQLITE_OK;
  int rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO rnn_models(name, model) VALUES (?1, ?2)", -1, &c->save,
                              NULL);
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  if (rc != SQLITE_OK) {
    return rnn_err_set(err, TRAIN_FN "(): save_as needs a table rnn_models(name, model) to write to: %s (create it "
                       "with CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL))",
                       sqlite3_errmsg(db));
  }
  if (sqlite3_bind_text(c->save, 1, c->o.save_as, -1, SQLITE_STATIC) != SQLITE_OK) return rnn_err_nomem(err);
  return SQLITE_OK;
}

/* Everything before the first epoch, from the model entry. */
static int setup_model(train_cursor *c, train_vtab *v, sqlite3_value **argv, rnn_err *err) {
  rnn_entry *e = rnn_resolve_value(v->conn, argv[0], TRAIN_FN, err);
  if (!e) return err->rc;
  const rnn_model *m = e->model;
  const char *q = (const char *)sqlite3_value_text(argv[1]);
  int nq = sqlite3_value_bytes(argv[1]);
  if (check_model(m, &c->o, err) == SQLITE_OK && source_meta(c, e, err) == SQLITE_OK &&
      labels_meta(c, m, err) == SQLITE_OK && prepare_save(c, v->db, err) == SQLITE_OK &&
      rnn_params_from_model(m, &c->p, err) == SQLITE_OK) {
    rnn_poll_init(&c->poll, v->db, &m->net);
    c->poll.per_step = RNN_POLL_WORK; /* rule 6: every rnn_poll_step checks: once per batch */
    if (!q) rnn_err_nomem(err);
    else rnn_train_data_read(v->db, q, nq, &c->o, m, &c->d, err);
  }
  rnn_entry_release(e);
  return err->rc;
}

/* The arguments, the model, the rows, and every buffer. */
static int setup(train_cursor *c, train_vtab *v, int argc, sqlite3_value **argv, rnn_err *err) {
  if (sqlite3_value_type(argv[1]) != SQLITE_TEXT) {
    return rnn_err_set(err, TRAIN_FN "(): query is %s, expected TEXT: one SELECT statement",
                       rnn_type_name(sqlite3_value_type(argv[1])));
  }
  sqlite3_value *opt = argc > 2 ? argv[2] : NULL;
  int ot = opt ? sqlite3_value_type(opt) : SQLITE_NULL;
  if (ot != SQLITE_NULL && ot != SQLITE_TEXT) {
    return rnn_err_set(err, TRAIN_FN "(): options is %s, expected TEXT: a JSON object", rnn_type_name(ot));
  }
  const char *oz = ot == SQLITE_TEXT ? (const char *)sqlite3_value_text(opt) : NULL;
  if (ot == SQLITE_TEXT && !oz) return rnn_err_nomem(err);
  if (rnn_train_opts_parse(oz, oz ? sqlite3_value_bytes(opt) : 0, &c->o, err) != SQLITE_OK) return err->rc;
  if (setup_model(c, v, argv, err) != SQLITE_OK) return err->rc;
  if (rnn_train_data_prepare(&c->d, &c->o, err) != SQLITE_OK) return err->rc;
  if (rnn_train_batch_alloc(&c->bb, &c->d, &c->o, err) != SQLITE_OK) return err->rc;
  if (rnn_train_adam_init(&c->adam, c->p->n, err) != SQLITE_OK) return err->rc;
  c->best = sqlite3_malloc64(sizeof(float) * (c->p->n + 1));
  c->grad = sqlite3_malloc64(sizeof(float) * (c->p->n + 1));
  c->order = sqlite3_malloc64(sizeof(int64_t) * (size_t)(c->d.n_train + c->d.n_val + 1));
  c->hist = sqlite3_malloc64(sizeof(double) * 2 * (size_t)c->o.epochs);
  if (!c->best || !c->grad || !c->order || !c->hist) return rnn_err_nomem(err);
  memcpy(c->best, c->p->w, sizeof(float) * c->p->n);
  c->pool = rnn_pool_start(rnn_threads()); /* rule 8 */
  c->rng = c->o.seed;
  c->best_loss = NAN;
  return SQLITE_OK;
}

/* Rule 3: one pass over n windows of w in the order idx; grad NULL: no steps. */
static int pass(train_cursor *c, const train_window *w, const int64_t *idx, int64_t n, int learn, double *loss,
                rnn_err *err) {
  double sum = 0, count = 0;
  for (int64_t k = 0; k < n; k += c->o.batch_size) {
    int nb = (int)(n - k < c->o.batch_size ? n - k : c->o.batch_size);
    if (rnn_poll_step(&c->poll) != SQLITE_OK) return rnn_poll_err(&c->poll, err); /* rule 6 */
    rnn_train_batch_fill(&c->bb, &c->d, &c->o, w, idx + k, nb);
    double l = 0;
    if (rnn_loss_grad_pool(c->p, &c->bb.b, learn ? c->grad : NULL, &l, NULL, c->pool, err)) return err->rc;
    double cnt = (double)rnn_batch_targets(c->p, &c->bb.b); /* the divisor of l: rule 3's weight */
    sum += l * cnt;
    count += cnt;
    if (learn) rnn_train_adam_step(&c->adam, &c->o, c->p, c->grad);
  }
  *loss = count > 0 ? sum / count : NAN;
  return SQLITE_OK;
}

/* Append "key":"<value as JSON text>" with the value made by the format. */
static void meta_member(sqlite3_str *s, const char *key, const char *value) {
  rnn_json_string(s, key);
  sqlite3_str_appendchar(s, 1, ':');
  rnn_json_string(s, value);
  sqlite3_str_appendchar(s, 1, ',');
}

/* Returns 0 when out of memory. */
static int meta_floats(sqlite3_str *s, const char *key, const float *v, int n) {
  int len;
  char *z = rnn_json_floats(v, n, &len);
  if (z) meta_member(s, key, z);
  sqlite3_free(z);
  return z != NULL;
}

/* [[train, val], ...] of the epochs run (null: no validation rows). */
static char *history(const train_cursor *c) {
  sqlite3_str *h = sqlite3_str_new(NULL);
  int ok = 1;
  sqlite3_str_appendchar(h, 1, '[');
  for (int e = 0; e < c->epoch; e++) {
    sqlite3_str_appendall(h, e ? ",[" : "[");
    ok &= rnn_train_json_number(h, c->hist[2 * e]);
    sqlite3_str_appendchar(h, 1, ',');
    if (isnan(c->hist[2 * e + 1])) sqlite3_str_appendall(h, "null");
    else ok &= rnn_train_json_number(h, c->hist[2 * e + 1]);
    sqlite3_str_appendchar(h, 1, ']');
  }
  sqlite3_str_appendchar(h, 1, ']');
  if (!ok || sqlite3_str_errcode(h)) {
    sqlite3_free(sqlite3_str_finish(h));
    return NULL;
  }
  return sqlite3_str_finish(h);
}

/* Rule 5: the trained model's metadata (README "Training"), a JSON object
** text; NULL when out of memory. */
static char *metadata(const train_cursor *c) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  char *hist = history(c), buf[64];
  int ok = hist != NULL;
  sqlite3_str_appendf(s, "{%s", c->meta ? c->meta : "");
  meta_member(s, "readout", "last_output");
  if (c->d.in_mean) ok &= meta_floats(s, "input_mean", c->d.in_mean, c->d.n_in) &&
                          meta_floats(s, "input_std", c->d.in_std, c->d.n_in);
  if (c->d.out_mean) ok &= meta_floats(s, "output_mean", c->d.out_mean, c->d.n_out) &&
                           meta_floats(s, "output_std", c->d.out_std, c->d.n_out);
  if (c->labels_json) meta_member(s, "labels", c->labels_json);
  meta_member(s, "train_options", c->o.json);
  if (hist) meta_member(s, "train_loss_history", hist);
  sqlite3_free(hist);
  sqlite3_snprintf(sizeof(buf), buf, "%d", c->epoch);
  meta_member(s, "train_epochs", buf);
  sqlite3_snprintf(sizeof(buf), buf, "%d", c->best_epoch);
  meta_member(s, "train_best_epoch", buf);
  sqlite3_snprintf(sizeof(buf), buf, "%016llx", (unsigned long long)c->d.hash);
  meta_member(s, "train_data_hash", buf);
  sqlite3_snprintf(sizeof(buf), buf, "%lld", (long long)c->d.rows);
  meta_member(s, "train_rows", buf);
  sqlite3_snprintf(sizeof(buf), buf, "%lld", (long long)c->d.n_series);
  rnn_json_string(s, "train_series");
  sqlite3_str_appendchar(s, 1, ':');
  rnn_json_string(s, buf);
  sqlite3_str_appendchar(s, 1, '}');
  if (!ok || sqlite3_str_errcode(s)) {
    sqlite3_free(sqlite3_str_finish(s));
    return NULL;
  }
  return sqlite3_str_finish(s);
}

/* The best weights as a BLOB in c->blob (rule 5). */
static int make_blob(train_cursor *c, rnn_err *err) {
  char *meta = metadata(c);
  if (!meta) return rnn_err_nomem(err);
  float *w = c->p->w;
  c->p->w = c->best;
  sqlite3_free(c->blob);
  c->blob = NULL;
  int rc = rnn_params_to_blob(c->p, meta, &c->blob, &c->nblob, err);
  c->p->w = w;
  sqlite3_free(meta);
  return rc;
}

/* Write c->blob under save_as (rule 5). */
static int save(train_cursor *c, sqlite3 *db, rnn_err *err) {
  if (!c->save) return SQLITE_OK;
  sqlite3_reset(c->save);
  int rc = sqlite3_bind_blob64(c->save, 2, c->blob, c->nblob, SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_step(c->save);
  sqlite3_reset(c->save);
  if (rc == SQLITE_DONE) return SQLITE_OK;
  if (rc == SQLITE_NOMEM || rc == SQLITE_INTERRUPT) return rnn_err_code(err, rc);
  return rnn_err_set(err, TRAIN_FN "(): cannot save the model as %.40U: %s", c->o.save_as, -1, sqlite3_errmsg(db));
}

/* Rules 2-6: one epoch, and whether it is the last. */
static int run_epoch(train_cursor *c, sqlite3 *db, rnn_err *err) {
  train_data *d = &c->d;
  for (int64_t i = 0; i < d->n_train; i++) c->order[i] = i;
  if (c->o.shuffle) rnn_train_shuffle(c->order, d->n_train, &c->rng);
  if (pass(c, d->train, c->order, d->n_train, 1, &c->train_loss, err) != SQLITE_OK) return err->rc;
  for (int64_t i = 0; i < d->n_val; i++) c->order[i] = i;
  c->val_loss = NAN;
  if (d->n_val && pass(c, d->val, c->order, d->n_val, 0, &c->val_loss, err) != SQLITE_OK) return err->rc;
  c->hist[2 * c->epoch] = c->train_loss;
  c->hist[2 * c->epoch + 1] = c->val_loss;
  c->epoch++;
  c->seconds = now() - c->t0;
  double l = d->n_val ? c->val_loss : c->train_loss;
  c->improved = isfinite(l) && (isnan(c->best_loss) || l < c->best_loss);
  if (c->improved) {
    c->best_loss = l;
    c->best_epoch = c->epoch;
    c->since_best = 0;
    memcpy(c->best, c->p->w, sizeof(float) * c->p->n);
  } else {
    c->since_best++;
  }
  if (c->best_epoch == 0) memcpy(c->best, c->p->w, sizeof(float) * c->p->n); /* nothing finite yet: the latest */
  c->last = c->epoch >= c->o.epochs || (c->o.patience > 0 && c->since_best >= c->o.patience) ||
            (c->o.max_seconds > 0 && c->seconds >= c->o.max_seconds);
  if (c->last || (c->improved && c->o.keep_on_interrupt)) { /* rule 6: keep_on_interrupt saves each best */
    if (make_blob(c, err) != SQLITE_OK || save(c, db, err) != SQLITE_OK) return err->rc;
  }
  return SQLITE_OK;
}

static int train_filter(sqlite3_vtab_cursor *p, int idxNum, const char *idxStr, int argc, sqlite3_value **argv) {
  (void)idxNum;
  (void)idxStr;
  train_cursor *c = (train_cursor *)p;
  train_vtab *v = (train_vtab *)p->pVtab;
  rnn_err err = {SQLITE_OK, NULL};
  train_reset(c);
  c->t0 = now();
  c->eof = 1;
  if (argc < 2) return SQLITE_OK; /* train_best_index asked for both */
  if (setup(c, v, argc, argv, &err) != SQLITE_OK || run_epoch(c, v->db, &err) != SQLITE_OK) {
    return rnn_err_vtab(p->pVtab, &err);
  }
  c->eof = 0;
  return SQLITE_OK;
}

static int train_next(sqlite3_vtab_cursor *p) {
  train_cursor *c = (train_cursor *)p;
  train_vtab *v = (train_vtab *)p->pVtab;
  rnn_err err = {SQLITE_OK, NULL};
  if (c->last) {
    c->eof = 1;
    return SQLITE_OK;
  }
  if (run_epoch(c, v->db, &err) != SQLITE_OK) {
    c->eof = 1;
    return rnn_err_vtab(p->pVtab, &err);
  }
  return SQLITE_OK;
}

static int train_eof(sqlite3_vtab_cursor *p) { return ((train_cursor *)p)->eof; }

static int train_rowid(sqlite3_vtab_cursor *p, sqlite3_int64 *rowid) {
  *rowid = ((train_cursor *)p)->epoch;
  return SQLITE_OK;
}

static int train_column(sqlite3_vtab_cursor *p, sqlite3_context *ctx, int col) {
  train_cursor *c = (train_cursor *)p;
  switch (col) {
    case C_EPOCH: sqlite3_result_int(ctx, c->epoch); break;
    case C_TRAIN_LOSS: sqlite3_result_double(ctx, c->train_loss); break; /* NaN reads as NULL */
    case C_VAL_LOSS:
      if (!isnan(c->val_loss)) sqlite3_result_double(ctx, c->val_loss);
      break;
    case C_LR: sqlite3_result_double(ctx, c->o.lr); break;
    case C_SECONDS: sqlite3_result_double(ctx, c->seconds); break;
    case C_IMPROVED: sqlite3_result_int(ctx, c->improved); break;
    case C_MODEL:
      if (c->last && c->blob) sqlite3_result_blob64(ctx, c->blob, c->nblob, SQLITE_TRANSIENT);
      break;
    default: break; /* the arguments read as NULL */
  }
  return SQLITE_OK;
}

/* Installed by the registration table in rnn.c (functions.h). */
const sqlite3_module rnn_train_module = {
  0,              /* iVersion */
  NULL,           /* xCreate: NULL makes the table eponymous-only */
  train_connect, train_best_index, train_disconnect, NULL /* xDestroy */,
  train_open, train_close, train_filter, train_next, train_eof, train_column, train_rowid,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, /* xUpdate .. xShadowName */
};

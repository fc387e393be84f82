/*
** trainsql.c: the SQL face of the training math (train.h): rnn_init(spec), a
** new model BLOB initialised as PyTorch initialises the same modules, and
** rnn_grad_internal(model, batch), an internal function the tests use to
** compare rnn_loss_grad with torch autograd.
**
**   SELECT rnn_init('{"cell":"gru","input_size":1,"hidden_size":16,"output_size":1,"seed":7}');
**
** Rules kept:
**  1. spec is a JSON object; its keys are cell, input_size, hidden_size
**     (required), num_layers (1), proj_size (0), bias (true), output_size (0:
**     no head), output_activation ("none"), hidden_activation ("tanh", cell seed
**     only), seed (0). Any other key, a key given twice, a value of the wrong
**     type and a size outside the loader's limits are errors that name the key.
**  2. The result is a pure function of spec (params.c rule 2): DETERMINISTIC
**     and INNOCUOUS; a BLOB longer than SQLite's length limit is refused before
**     anything is allocated for it.
**  3. rnn_grad_internal and rnn_params_internal are for the tests only (README
**     "Training"): DIRECTONLY, not an API, their formats may change.
*/
#include "train.h"
#include "json.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

static const char *const spec_keys[] = {
  "cell", "input_size", "hidden_size", "num_layers", "proj_size", "bias", "output_size", "output_activation",
  "hidden_activation", "seed",
};
#define N_SPEC_KEYS (int)(sizeof(spec_keys) / sizeof(spec_keys[0]))
#define KNOWN_SPEC_KEYS "cell, input_size, hidden_size, num_layers, proj_size, bias, output_size, " \
  "output_activation, hidden_activation, seed"

static const char *json_type_name(rnn_json_type t) {
  static const char *const names[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
  return names[t];
}

/* Integer member `key` of spec object obj into *out (unchanged when absent). */
static int spec_int(const rnn_json_doc *d, int obj, const char *key, int *out, rnn_err *err) {
  int v = rnn_json_get(d, obj, key);
  if (v < 0) return SQLITE_OK;
  const rnn_json_node *n = &d->nodes[v];
  if (n->type != RNN_JSON_NUMBER || !n->is_uint || n->u > 0x7fffffffu) {
    if (n->type == RNN_JSON_NUMBER) {
      return rnn_err_set(err, "rnn_init(): %s must be a non-negative integer, got %.15g", key, n->num);
    }
    return rnn_err_set(err, "rnn_init(): %s must be a non-negative integer, got %s", key, json_type_name(n->type));
  }
  *out = (int)n->u;
  return SQLITE_OK;
}

/* String member `key` naming one of names[0..count) into *out; `allowed` lists them. */
static int spec_name(const rnn_json_doc *d, int obj, const char *key, const char *const *names, int count,
                     const char *allowed, int *out, rnn_err *err) {
  int v = rnn_json_get(d, obj, key);
  if (v < 0) return SQLITE_OK;
  const rnn_json_node *n = &d->nodes[v];
  if (n->type == RNN_JSON_STRING) {
    for (int i = 0; i < count; i++) {
      if (names[i] && strcmp(n->str, names[i]) == 0) {
        *out = i;
        return SQLITE_OK;
      }
    }
    return rnn_err_set(err, "rnn_init(): %s is %.40U, expected one of %s", key, n->str, -1, allowed);
  }
  return rnn_err_set(err, "rnn_init(): %s must be a string (one of %s), got %s", key, allowed, json_type_name(n->type));
}

/* Rule 1: the keys of the spec object, each known (json.c refuses a key given twice). */
static int spec_keys_check(const rnn_json_doc *d, rnn_err *err) {
  const rnn_json_node *nd = d->nodes;
  if (nd[0].type != RNN_JSON_OBJECT) {
    return rnn_err_set(err, "rnn_init(): spec must be a JSON object, got %s", json_type_name(nd[0].type));
  }
  for (int k = nd[0].child; k >= 0; k = nd[nd[k].next].next) {
    int known = 0;
    for (int i = 0; i < N_SPEC_KEYS; i++) known |= strcmp(nd[k].str, spec_keys[i]) == 0;
    if (!known) return rnn_err_set(err, "rnn_init(): unknown key %.40U in spec; known keys: " KNOWN_SPEC_KEYS, nd[k].str, -1);
  }
  static const char *const required[] = {"cell", "input_size", "hidden_size"};
  for (int i = 0; i < 3; i++) {
    if (rnn_json_get(d, 0, required[i]) < 0) {
      return rnn_err_set(err, "rnn_init(): spec needs '%s' (required keys: cell, input_size, hidden_size)", required[i]);
    }
  }
  return SQLITE_OK;
}

/* Rule 1: the spec's values; sizes are range-checked by rnn_spec_check. */
static int spec_values(const rnn_json_doc *d, rnn_spec *s, uint64_t *seed, rnn_err *err) {
  static const char *const out_acts[] = {"none", "sigmoid", "tanh", "softmax", "log_softmax", NULL};
  static const char *const hid_acts[] = {"none", "sigmoid", "tanh", NULL, NULL, "relu"};
  memset(s, 0, sizeof(*s));
  s->layers = 1;
  s->bias = 1;
  s->hidden_act = ACT_TANH;
  *seed = 0;
  if (spec_name(d, 0, "cell", rnn_cell_names, 5, "rnn_tanh, rnn_relu, lstm, gru, seed", &s->cell, err) ||
      spec_int(d, 0, "input_size", &s->n_in, err) || spec_int(d, 0, "hidden_size", &s->hidden, err) ||
      spec_int(d, 0, "num_layers", &s->layers, err) || spec_int(d, 0, "proj_size", &s->proj, err) ||
      spec_int(d, 0, "output_size", &s->n_out, err) ||
      spec_name(d, 0, "output_activation", out_acts, 6, "none, sigmoid, tanh, softmax, log_softmax", &s->out_act,
                err) ||
      spec_name(d, 0, "hidden_activation", hid_acts, 6, "none, tanh, relu, sigmoid", &s->hidden_act, err)) {
    return err->rc;
  }
  int v = rnn_json_get(d, 0, "bias");
  if (v >= 0) {
    rnn_json_type t = d->nodes[v].type;
    if (t != RNN_JSON_TRUE && t != RNN_JSON_FALSE) {
      return rnn_err_set(err, "rnn_init(): bias must be true or false, got %s", json_type_name(t));
    }
    s->bias = t == RNN_JSON_TRUE;
  }
  v = rnn_json_get(d, 0, "seed");
  if (v >= 0) {
    if (d->nodes[v].type != RNN_JSON_NUMBER || !d->nodes[v].is_uint) {
      return rnn_err_set(err, "rnn_init(): seed must be a non-negative integer of at most 18 digits");
    }
    *seed = d->nodes[v].u;
  }
  if (rnn_json_get(d, 0, "hidden_activation") >= 0 && s->cell != CELL_SEED) {
    return rnn_err_set(err, "rnn_init(): hidden_activation applies only to cell seed, got cell %s",
                       rnn_cell_names[s->cell]);
  }
  if (rnn_spec_check(s, err)) return rnn_err_prefix(err, "rnn_init(): ");
  return SQLITE_OK;
}

void rnn_init_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  rnn_err err = {SQLITE_OK, NULL};
  rnn_json_doc d;
  rnn_spec s;
  uint64_t seed;
  rnn_params *p = NULL;
  unsigned char *blob = NULL;
  size_t n = 0;
  (void)argc;
  memset(&d, 0, sizeof(d));
  if (sqlite3_value_type(argv[0]) != SQLITE_TEXT) {
    rnn_result_errorf(ctx, "rnn_init(): spec must be JSON object text, got %s",
                      rnn_type_name(sqlite3_value_type(argv[0])));
    return;
  }
  const char *z = (const char *)sqlite3_value_text(argv[0]);
  if (!z) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (rnn_json_parse(z, (size_t)sqlite3_value_bytes(argv[0]), &d, &err)) {
    rnn_err_prefix(&err, "rnn_init(): spec is not valid JSON: ");
    goto done;
  }
  if (spec_keys_check(&d, &err) || spec_values(&d, &s, &seed, &err)) goto done;
  uint64_t bytes = 4 * rnn_spec_floats(&s);
  int limit = sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LENGTH, -1);
  if (bytes > (uint64_t)limit) {
    rnn_err_set(&err, "rnn_init(): the model would be %llu bytes, more than SQLite's length limit %d",
                (unsigned long long)bytes, limit);
    goto done;
  }
  if (rnn_params_init(&s, seed, &p, &err) || rnn_params_to_blob(p, NULL, &blob, &n, &err)) goto done;
  sqlite3_result_blob64(ctx, blob, n, sqlite3_free);
  blob = NULL;
done:
  rnn_json_free(&d);
  rnn_params_free(p);
  sqlite3_free(blob);
  if (err.rc) rnn_err_result(ctx, &err);
}

/* ---- rnn_grad_internal(model BLOB, batch JSON) -> JSON (rule 3) ----
** batch: {"T": steps, "len": [B], "x": [B*T*I], "target": "step"|"last",
**         "loss": "mse"|"cross_entropy", "y": [B*T*O or B*O], "label": [B*T or B],
**         "h0": [B*state] (optional)}
** result: {"loss": L, "targets": rnn_batch_targets, "grad": [n floats in tensor order], "hT": [B*state]} */

/* Array member `key` of exactly want numbers into a new float or int buffer. */
static void *batch_array(const rnn_json_doc *d, const char *key, uint64_t want, int ints, int required, rnn_err *err) {
  int v = rnn_json_get(d, 0, key);
  if (v < 0) {
    if (required) rnn_err_set(err, "batch needs '%s'", key);
    return NULL;
  }
  const rnn_json_node *nd = d->nodes;
  if (nd[v].type != RNN_JSON_ARRAY || (uint64_t)nd[v].n != want) {
    rnn_err_set(err, "batch '%s' must be an array of %llu numbers", key, (unsigned long long)want);
    return NULL;
  }
  void *buf = sqlite3_malloc64(4 * (want ? want : 1));
  if (!buf) {
    rnn_err_nomem(err);
    return NULL;
  }
  uint64_t i = 0;
  for (int k = nd[v].child; k >= 0; k = nd[k].next, i++) {
    if (nd[k].type != RNN_JSON_NUMBER) {
      sqlite3_free(buf);
      rnn_err_set(err, "batch '%s' must be an array of %llu numbers", key, (unsigned long long)want);
      return NULL;
    }
    if (ints) ((int *)buf)[i] = (int)nd[k].num;
    else ((float *)buf)[i] = (float)nd[k].num;
  }
  return buf;
}

static void append_floats(sqlite3_str *s, const char *key, const float *v, size_t n) {
  sqlite3_str_appendf(s, ",\"%s\":[", key);
  for (size_t i = 0; i < n; i++) sqlite3_str_appendf(s, i ? ",%.9g" : "%.9g", (double)v[i]);
  sqlite3_str_appendchar(s, 1, ']');
}

/* The batch of d for p; its buffers are freed by batch_free. */
static int batch_read(const rnn_json_doc *d, const rnn_params *p, rnn_batch *b, rnn_err *err) {
  int v = rnn_json_get(d, 0, "len"), tv = rnn_json_get(d, 0, "T");
  const rnn_spec *s = &p->spec;
  const uint64_t O = (uint64_t)(s->n_out ? s->n_out : s->proj ? s->proj : s->hidden);
  if (d->nodes[0].type != RNN_JSON_OBJECT || v < 0 || tv < 0 || d->nodes[v].type != RNN_JSON_ARRAY ||
      !d->nodes[tv].is_uint || d->nodes[tv].u < 1 || d->nodes[tv].u > 1000000 || d->nodes[v].n < 1) {
    return rnn_err_set(err, "batch needs T (1..1000000) and len (an array of one length per sequence)");
  }
  b->B = d->nodes[v].n;
  b->T = (int)d->nodes[tv].u;
  v = rnn_json_get(d, 0, "target");
  b->target = v >= 0 && d->nodes[v].type == RNN_JSON_STRING && strcmp(d->nodes[v].str, "last") == 0;
  v = rnn_json_get(d, 0, "loss");
  b->loss = v >= 0 && d->nodes[v].type == RNN_JSON_STRING && strcmp(d->nodes[v].str, "cross_entropy") == 0;
  const uint64_t B = (uint64_t)b->B, per = b->target == RNN_TARGET_LAST ? B : B * (uint64_t)b->T;
  if (!(b->len = batch_array(d, "len", B, 1, 1, err))) return err->rc;
  if (!(b->x = batch_array(d, "x", B * (uint64_t)b->T * (uint64_t)s->n_in, 0, 1, err))) return err->rc;
  if (b->loss == RNN_LOSS_CE ? !(b->label = batch_array(d, "label", per, 1, 1, err))
                             : !(b->y = batch_array(d, "y", per * O, 0, 1, err))) {
    return err->rc;
  }
  b->h0 = batch_array(d, "h0", B * rnn_batch_state_floats(p), 0, 0, err);
  return err->rc;
}

static void batch_free(rnn_batch *b) {
  sqlite3_free((void *)b->len);
  sqlite3_free((void *)b->x);
  sqlite3_free((void *)b->y);
  sqlite3_free((void *)b->label);
  sqlite3_free((void *)b->h0);
}

/* Run rnn_loss_grad on model m and the batch text z; the result JSON into *out. */
static int grad_run(const rnn_model *m, const char *z, size_t nz, char **out, rnn_err *err) {
  rnn_params *p = NULL;
  rnn_json_doc d;
  rnn_batch b;
  float *grad = NULL, *hT = NULL;
  double loss = 0;
  memset(&b, 0, sizeof(b));
  memset(&d, 0, sizeof(d));
  if (rnn_params_from_model(m, &p, err) || rnn_json_parse(z, nz, &d, err) || batch_read(&d, p, &b, err)) goto done;
  size_t nh = (size_t)b.B * rnn_batch_state_floats(p);
  grad = sqlite3_malloc64(sizeof(float) * (p->n + 1));
  hT = sqlite3_malloc64(sizeof(float) * (nh + 1));
  if (!grad || !hT) {
    rnn_err_nomem(err);
    goto done;
  }
  if (rnn_loss_grad(p, &b, grad, &loss, hT, err)) goto done;
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendf(s, "{\"loss\":%.17g,\"targets\":%llu", loss, (unsigned long long)rnn_batch_targets(p, &b));
  append_floats(s, "grad", grad, p->n);
  append_floats(s, "hT", hT, nh);
  sqlite3_str_appendchar(s, 1, '}');
  if (sqlite3_str_errcode(s)) rnn_err_nomem(err);
  *out = sqlite3_str_finish(s);
  if (!err->rc && !*out) rnn_err_nomem(err);
done:
  rnn_params_free(p);
  rnn_json_free(&d);
  batch_free(&b);
  sqlite3_free(grad);
  sqlite3_free(hT);
  return err->rc;
}

void rnn_grad_internal_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  rnn_err err = {SQLITE_OK, NULL};
  rnn_model *m = NULL;
  char *out = NULL;
  (void)argc;
  if (sqlite3_value_type(argv[0]) != SQLITE_BLOB || sqlite3_value_type(argv[1]) != SQLITE_TEXT) {
    rnn_result_errorf(ctx, "rnn_grad_internal(): expects a model BLOB and a batch JSON text");
    return;
  }
  const unsigned char *blob = sqlite3_value_blob(argv[0]);
  int nb = sqlite3_value_bytes(argv[0]);
  const char *z = (const char *)sqlite3_value_text(argv[1]);
  if (!blob || !z) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (rnn_model_load(blob, (size_t)nb, &m, &err) == SQLITE_OK) {
    grad_run(m, z, (size_t)sqlite3_value_bytes(argv[1]), &out, &err);
  }
  rnn_model_free(m);
  if (err.rc) {
    sqlite3_free(out);
    rnn_err_prefix(&err, "rnn_grad_internal(): ");
    rnn_err_result(ctx, &err);
    return;
  }
  sqlite3_result_text(ctx, out, -1, sqlite3_free);
}

/* rnn_params_internal(model BLOB, meta TEXT or NULL) -> BLOB: the model's
** parameters read back (rnn_params_from_model) and written again
** (rnn_params_to_blob) with metadata meta; internal, for the tests (rule 3). */
void rnn_params_internal_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  rnn_err err = {SQLITE_OK, NULL};
  rnn_model *m = NULL;
  rnn_params *p = NULL;
  unsigned char *blob = NULL;
  size_t n = 0;
  (void)argc;
  int mt = sqlite3_value_type(argv[1]);
  if (sqlite3_value_type(argv[0]) != SQLITE_BLOB || (mt != SQLITE_TEXT && mt != SQLITE_NULL)) {
    rnn_result_errorf(ctx, "rnn_params_internal(): expects a model BLOB and metadata JSON text or NULL");
    return;
  }
  const unsigned char *b = sqlite3_value_blob(argv[0]);
  size_t nb = (size_t)sqlite3_value_bytes(argv[0]);
  const char *meta = (const char *)sqlite3_value_text(argv[1]);
  if (!b || (mt == SQLITE_TEXT && !meta)) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (!rnn_model_load(b, nb, &m, &err) && !rnn_params_from_model(m, &p, &err) &&
      !rnn_params_to_blob(p, meta, &blob, &n, &err)) {
    sqlite3_result_blob64(ctx, blob, n, sqlite3_free);
    blob = NULL;
  }
  rnn_model_free(m);
  rnn_params_free(p);
  sqlite3_free(blob);
  if (err.rc) {
    rnn_err_prefix(&err, "rnn_params_internal(): ");
    rnn_err_result(ctx, &err);
  }
}

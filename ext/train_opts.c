/*
** train_opts.c: the options argument of rnn_train() (train.c), a JSON object.
**
**   SELECT * FROM rnn_train('m', 'SELECT id, t, v FROM s', '{"epochs": 5, "lr": 0.01}');
**
** Rules kept:
**  1. NULL, '' and '{}' take every default (README "Training" lists them).
**  2. Anything but a JSON object, a key not in the list, or a value of the
**     wrong type or range is an error naming the option, what it must be and
**     the value given; an unknown key lists the known ones.
**  3. Options that depend on each other are checked together: cross_entropy
**     needs classify, classify holds out whole series, keep_on_interrupt needs
**     save_as, labels go with classify.
**  4. o->json records the options with every default filled in, in a fixed
**     order, numbers as the shortest text that reads back as the same double:
**     the same options give the same text (it goes into the model's metadata).
*/
#include "train_drive.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <string.h>

static const char *const known[] = {
  "task", "loss", "epochs", "lr", "betas", "eps", "weight_decay", "batch_size", "window", "clip", "standardize",
  "val_fraction", "val_split", "patience", "max_seconds", "seed", "shuffle", "save_as", "keep_on_interrupt",
  "labels",
};
#define N_KNOWN ((int)(sizeof(known) / sizeof(known[0])))

/* The value given, for messages: a number, a quoted string, or its kind;
** NULL when out of memory. */
static const char *shown(const rnn_json_node *v, char *buf, size_t n) {
  switch (v->type) {
    case RNN_JSON_NUMBER: sqlite3_snprintf((int)n, buf, "%.15g", v->num); return buf;
    case RNN_JSON_STRING: {
      char *z = rnn_mprintf("%.40U", v->str, v->n);
      if (z) sqlite3_snprintf((int)n, buf, "%s", z);
      sqlite3_free(z);
      return z ? buf : NULL;
    }
    case RNN_JSON_TRUE: return "true";
    case RNN_JSON_FALSE: return "false";
    case RNN_JSON_NULL: return "null";
    case RNN_JSON_ARRAY: return "an array";
    default: return "an object";
  }
}

static int bad(rnn_err *err, const char *key, const char *must, const rnn_json_node *v) {
  char buf[160];
  const char *got = shown(v, buf, sizeof(buf));
  if (!got) return rnn_err_nomem(err);
  return rnn_err_set(err, TRAIN_FN "(): option %s must be %s, got %s", key, must, got);
}

static int opt_int(const rnn_json_node *v, const char *key, int64_t lo, int64_t hi, int64_t *out, rnn_err *err) {
  int ok = v->type == RNN_JSON_NUMBER;
  if (ok && v->is_uint) ok = v->u >= (uint64_t)lo && v->u <= (uint64_t)hi; /* lo >= 0 for every option */
  else if (ok) ok = v->num == floor(v->num) && v->num >= (double)lo && v->num <= (double)hi && v->num < 0x1p62;
  if (!ok) {
    char must[96];
    sqlite3_snprintf(sizeof(must), must, "an integer from %lld to %lld", (long long)lo, (long long)hi);
    return bad(err, key, must, v);
  }
  *out = v->is_uint ? (int64_t)v->u : (int64_t)v->num;
  return SQLITE_OK;
}

static int opt_int32(const rnn_json_node *v, const char *key, int lo, int hi, int *out, rnn_err *err) {
  int64_t i = 0;
  int rc = opt_int(v, key, lo, hi, &i, err);
  *out = rc == SQLITE_OK ? (int)i : *out;
  return rc;
}

/* A finite number >= 0 (or > 0 with positive). */
static int opt_num(const rnn_json_node *v, const char *key, int positive, double *out, rnn_err *err) {
  if (v->type != RNN_JSON_NUMBER || !isfinite(v->num) || v->num < 0 || (positive && v->num == 0)) {
    return bad(err, key, positive ? "a positive number" : "a number >= 0", v);
  }
  *out = v->num;
  return SQLITE_OK;
}

static int opt_bool(const rnn_json_node *v, const char *key, int *out, rnn_err *err) {
  if (v->type != RNN_JSON_TRUE && v->type != RNN_JSON_FALSE) return bad(err, key, "true or false", v);
  *out = v->type == RNN_JSON_TRUE;
  return SQLITE_OK;
}

/* One of the words in list (NUL-separated, ending with an empty word); its index. */
static int opt_word(const rnn_json_node *v, const char *key, const char *list, const char *must, int *out,
                    rnn_err *err) {
  int i = 0;
  for (const char *w = list; *w; w += strlen(w) + 1, i++) {
    if (v->type == RNN_JSON_STRING && strcmp(v->str, w) == 0) {
      *out = i;
      return SQLITE_OK;
    }
  }
  return bad(err, key, must, v);
}

static int opt_betas(const rnn_json_doc *d, int v, train_opts *o, rnn_err *err) {
  const rnn_json_node *nd = d->nodes;
  double b[2];
  int ok = nd[v].type == RNN_JSON_ARRAY && nd[v].n == 2, k = 0;
  for (int i = ok ? nd[v].child : -1; i >= 0; i = nd[i].next, k++) {
    if (nd[i].type != RNN_JSON_NUMBER || !(nd[i].num >= 0 && nd[i].num < 1)) ok = 0;
    else b[k] = nd[i].num;
  }
  if (!ok) return bad(err, "betas", "an array of two numbers in [0, 1)", &nd[v]);
  o->beta1 = b[0];
  o->beta2 = b[1];
  return SQLITE_OK;
}

static int opt_labels(const rnn_json_doc *d, int v, train_opts *o, rnn_err *err) {
  const rnn_json_node *nd = d->nodes;
  int ok = nd[v].type == RNN_JSON_ARRAY && nd[v].n >= 1 && nd[v].n <= RNN_TRAIN_MAX_LABELS;
  size_t bytes = 0;
  for (int i = ok ? nd[v].child : -1; i >= 0; i = nd[i].next) {
    if (nd[i].type != RNN_JSON_STRING || nd[i].n == 0 || memchr(nd[i].str, 0, (size_t)nd[i].n)) ok = 0;
    else bytes += (size_t)nd[i].n + 1;
  }
  if (!ok) return bad(err, "labels", "an array of non-empty strings", &nd[v]);
  for (int i = nd[v].child; i >= 0; i = nd[i].next) {
    for (int j = nd[i].next; j >= 0; j = nd[j].next) {
      if (strcmp(nd[i].str, nd[j].str) == 0) {
        return rnn_err_set(err, TRAIN_FN "(): option labels has %.40U twice", nd[i].str, -1);
      }
    }
  }
  o->labels = sqlite3_malloc64(sizeof(char *) * (size_t)nd[v].n);
  o->labels_text = sqlite3_malloc64(bytes);
  if (!o->labels || !o->labels_text) return rnn_err_nomem(err);
  char *p = o->labels_text;
  for (int i = nd[v].child; i >= 0; i = nd[i].next) {
    memcpy(p, nd[i].str, (size_t)nd[i].n + 1);
    o->labels[o->n_labels++] = p;
    p += nd[i].n + 1;
  }
  return SQLITE_OK;
}

/* Rule 2: one key's value. */
static int opt_one(const rnn_json_doc *d, int k, int v, train_opts *o, rnn_err *err) {
  const char *key = d->nodes[k].str;
  const rnn_json_node *n = &d->nodes[v];
  int64_t i = 0;
  int rc = SQLITE_OK;
  if (!strcmp(key, "task")) rc = opt_word(n, key, "next\0regress\0classify\0", "one of next, regress, classify",
                                          &o->task, err);
  else if (!strcmp(key, "loss")) rc = opt_word(n, key, "mse\0cross_entropy\0", "one of mse, cross_entropy",
                                               &o->loss, err);
  else if (!strcmp(key, "val_split")) rc = opt_word(n, key, "tail\0series\0", "one of tail, series",
                                                    &o->val_series, err);
  else if (!strcmp(key, "epochs")) rc = opt_int32(n, key, 1, RNN_TRAIN_MAX_EPOCHS, &o->epochs, err);
  else if (!strcmp(key, "batch_size")) rc = opt_int32(n, key, 1, RNN_TRAIN_MAX_BATCH, &o->batch_size, err);
  else if (!strcmp(key, "window")) rc = opt_int32(n, key, 1, RNN_TRAIN_MAX_WINDOW, &o->window, err);
  else if (!strcmp(key, "patience")) rc = opt_int32(n, key, 0, RNN_TRAIN_MAX_EPOCHS, &o->patience, err);
  else if (!strcmp(key, "seed")) { rc = opt_int(n, key, 0, INT64_MAX, &i, err); o->seed = (uint64_t)i; }
  else if (!strcmp(key, "lr")) rc = opt_num(n, key, 1, &o->lr, err);
  else if (!strcmp(key, "eps")) rc = opt_num(n, key, 0, &o->eps, err);
  else if (!strcmp(key, "weight_decay")) rc = opt_num(n, key, 0, &o->weight_decay, err);
  else if (!strcmp(key, "clip")) rc = opt_num(n, key, 0, &o->clip, err);
  else if (!strcmp(key, "max_seconds")) rc = opt_num(n, key, 0, &o->max_seconds, err);
  else if (!strcmp(key, "val_fraction")) {
    if (n->type != RNN_JSON_NUMBER || !(n->num >= 0 && n->num < 1)) return bad(err, key, "a number in [0, 1)", n);
    o->val_fraction = n->num;
  }
  else if (!strcmp(key, "standardize")) rc = opt_bool(n, key, &o->standardize, err);
  else if (!strcmp(key, "shuffle")) rc = opt_bool(n, key, &o->shuffle, err);
  else if (!strcmp(key, "keep_on_interrupt")) rc = opt_bool(n, key, &o->keep_on_interrupt, err);
  else if (!strcmp(key, "betas")) rc = opt_betas(d, v, o, err);
  else if (!strcmp(key, "labels")) rc = opt_labels(d, v, o, err);
  else if (!strcmp(key, "save_as")) {
    if (n->type != RNN_JSON_STRING || n->n == 0) return bad(err, key, "a non-empty string (a model name)", n);
    if (!(o->save_as = sqlite3_mprintf("%s", n->str))) return rnn_err_nomem(err);
  }
  return rc;
}

static void defaults(train_opts *o) {
  memset(o, 0, sizeof(*o));
  o->task = TASK_NEXT;
  o->loss = -1; /* by task */
  o->epochs = 20;
  o->lr = 0.001;
  o->beta1 = 0.9;
  o->beta2 = 0.999;
  o->eps = 1e-8;
  o->batch_size = 16;
  o->window = 64;
  o->standardize = 1;
  o->val_fraction = 0.2;
  o->val_series = -1; /* by task */
  o->shuffle = 1;
}

/* Rule 3. */
static int opts_check(train_opts *o, int has_loss, int has_split, rnn_err *err) {
  const int cls = o->task == TASK_CLASSIFY;
  if (!has_loss) o->loss = cls ? RNN_LOSS_CE : RNN_LOSS_MSE;
  if (!has_split) o->val_series = cls;
  if (o->loss == RNN_LOSS_CE && !cls) {
    return rnn_err_set(err, TRAIN_FN "(): loss cross_entropy needs task classify (tasks next and regress predict "
                       "numbers: use mse)");
  }
  if (cls && !o->val_series) {
    return rnn_err_set(err, TRAIN_FN "(): val_split tail needs task next or regress: task classify holds out whole "
                       "series (val_split series)");
  }
  if (o->n_labels && !cls) return rnn_err_set(err, TRAIN_FN "(): option labels needs task classify");
  if (o->keep_on_interrupt && !o->save_as) {
    return rnn_err_set(err, TRAIN_FN "(): option keep_on_interrupt needs save_as (the name to keep the best model "
                       "under)");
  }
  return SQLITE_OK;
}

int rnn_train_json_number(sqlite3_str *s, double x) {
  char buf[40];
  for (int p = 15; p <= 17; p++) { /* '!' (more than 16 digits) only when needed: it also writes 1.0 for 1 */
    sqlite3_snprintf(sizeof(buf), buf, p == 15 ? "%.*g" : "%!.*g", p, x);
    rnn_json_doc d;
    rnn_err e = {SQLITE_OK, NULL};
    int rc = rnn_json_parse(buf, strlen(buf), &d, &e);
    sqlite3_free(e.msg);
    if (rc == SQLITE_NOMEM) return 0; /* never a longer text instead: the same number, the same text */
    if (rc != SQLITE_OK) continue;
    int same = d.nodes[0].num == x;
    rnn_json_free(&d);
    if (same) break;
  }
  sqlite3_str_appendall(s, buf);
  return 1;
}

/* Rule 4. */
static int opts_json(train_opts *o, rnn_err *err) {
  static const char *const tasks[] = {"next", "regress", "classify"};
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendf(s, "{\"task\":\"%s\",\"loss\":\"%s\",\"epochs\":%d,\"lr\":", tasks[o->task],
                      o->loss == RNN_LOSS_CE ? "cross_entropy" : "mse", o->epochs);
  int ok = rnn_train_json_number(s, o->lr);
  sqlite3_str_appendall(s, ",\"betas\":[");
  ok &= rnn_train_json_number(s, o->beta1);
  sqlite3_str_appendchar(s, 1, ',');
  ok &= rnn_train_json_number(s, o->beta2);
  sqlite3_str_appendall(s, "],\"eps\":");
  ok &= rnn_train_json_number(s, o->eps);
  sqlite3_str_appendall(s, ",\"weight_decay\":");
  ok &= rnn_train_json_number(s, o->weight_decay);
  sqlite3_str_appendf(s, ",\"batch_size\":%d,\"window\":%d,\"clip\":", o->batch_size, o->window);
  ok &= rnn_train_json_number(s, o->clip);
  sqlite3_str_appendf(s, ",\"standardize\":%s,\"val_fraction\":", o->standardize ? "true" : "false");
  ok &= rnn_train_json_number(s, o->val_fraction);
  sqlite3_str_appendf(s, ",\"val_split\":\"%s\",\"patience\":%d,\"max_seconds\":", o->val_series ? "series" : "tail",
                      o->patience);
  ok &= rnn_train_json_number(s, o->max_seconds);
  sqlite3_str_appendf(s, ",\"seed\":%llu,\"shuffle\":%s,\"save_as\":", (unsigned long long)o->seed,
                      o->shuffle ? "true" : "false");
  if (o->save_as) rnn_json_string(s, o->save_as);
  else sqlite3_str_appendall(s, "null");
  sqlite3_str_appendf(s, ",\"keep_on_interrupt\":%s,\"labels\":", o->keep_on_interrupt ? "true" : "false");
  if (!o->n_labels) sqlite3_str_appendall(s, "null");
  for (int i = 0; i < o->n_labels; i++) {
    sqlite3_str_appendchar(s, 1, i ? ',' : '[');
    rnn_json_string(s, o->labels[i]);
    if (i == o->n_labels - 1) sqlite3_str_appendchar(s, 1, ']');
  }
  sqlite3_str_appendchar(s, 1, '}');
  if (!ok || sqlite3_str_errcode(s)) {
    sqlite3_free(sqlite3_str_finish(s));
    return rnn_err_nomem(err);
  }
  o->json = sqlite3_str_finish(s);
  return SQLITE_OK;
}

static int unknown_key(const char *key, rnn_err *err) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  for (int i = 0; i < N_KNOWN; i++) sqlite3_str_appendf(s, "%s%s", i ? ", " : "", known[i]);
  char *list = sqlite3_str_finish(s);
  if (!list) return rnn_err_nomem(err);
  rnn_err_set(err, TRAIN_FN "(): unknown option %.40U: the options are %s", key, -1, list);
  sqlite3_free(list);
  return err->rc;
}

int rnn_train_opts_parse(const char *z, int n, train_opts *o, rnn_err *err) {
  defaults(o);
  int has_loss = 0, has_split = 0;
  if (z && n > 0) {
    rnn_json_doc d;
    int rc = rnn_json_parse(z, (size_t)n, &d, err);
    if (rc != SQLITE_OK) return rnn_err_prefix(err, TRAIN_FN "(): options are not valid JSON: ");
    if (d.nodes[0].type != RNN_JSON_OBJECT) {
      rnn_json_free(&d);
      return rnn_err_set(err, TRAIN_FN "(): options must be a JSON object, got %.40U", z, n);
    }
    for (int k = d.nodes[0].child; k >= 0 && rc == SQLITE_OK; k = d.nodes[d.nodes[k].next].next) {
      const char *key = d.nodes[k].str;
      int i = 0;
      while (i < N_KNOWN && strcmp(key, known[i]) != 0) i++;
      if (i == N_KNOWN) rc = unknown_key(key, err);
      else rc = opt_one(&d, k, d.nodes[k].next, o, err);
      has_loss |= i == 1;
      has_split |= i == 12;
    }
    rnn_json_free(&d);
    if (rc != SQLITE_OK) return rc;
  }
  if (opts_check(o, has_loss, has_split, err) != SQLITE_OK) return err->rc;
  return opts_json(o, err);
}

void rnn_train_opts_free(train_opts *o) {
  sqlite3_free(o->save_as);
  sqlite3_free(o->labels);
  sqlite3_free(o->labels_text);
  sqlite3_free(o->json);
  memset(o, 0, sizeof(*o));
}

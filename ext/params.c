/*
** params.c: the trainable parameters of a model in PyTorch's own layout
** (train.h): their tensor table, PyTorch's initialisation from a documented
** generator, the parameters of a loaded model, and the model BLOB of a set of
** parameters. The gradients over them are grad.c's; rnn_init() is trainsql.c's.
**
** Rules kept:
**  1. Tensors are named and ordered as PyTorch's state_dict and the exporter
**     (python/sqlite_rnn.py) name them: without a head weight_ih_l{k},
**     weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k} per layer; with
**     a head the same under "rnn." and the head as "fc.weight", "fc.bias"; the
**     tutorial cell "i2h.weight", "i2h.bias", "i2o.weight", "i2o.bias". A
**     tensor whose name holds "bias" is a vector, every other a matrix.
**  2. Initialisation (README "Training"): splitmix64 seeded with the seed; each
**     value u = (next() >> 40) * 2^-24, w = float32((2u - 1) * k) computed in
**     double, drawn tensor by tensor in the order of rule 1, row-major.
**     k = 1/sqrt(hidden_size) for every recurrent tensor (nn.RNN/LSTM/GRU),
**     1/sqrt(fan_in) for nn.Linear (the head; the tutorial's i2h and i2o, fan_in
**     I + H), as PyTorch's reset_parameters draw them.
**  3. A spec is checked against the loader's limits (model.h) before anything
**     is allocated, so every BLOB written here loads.
**  4. The BLOB is safetensors as the exporter writes it: header
**     {"__metadata__":{...},name:{"dtype":"F32","shape":[...],"data_offsets":[a,b]},...}
**     without spaces, padded with spaces to a multiple of 8 bytes.
*/
#include "train.h"
#include "f32.h"
#include "json.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t rnn_batch_state_floats(const rnn_params *p) {
  const rnn_spec *s = &p->spec;
  size_t hout = (size_t)(s->proj ? s->proj : s->hidden);
  size_t f = (size_t)s->layers * hout;
  if (s->cell == CELL_LSTM) f += (size_t)s->layers * (size_t)s->hidden;
  return f;
}

static int round_up(int64_t n) { return (int)((n + RNN_LANES - 1) / RNN_LANES * RNN_LANES); }

/* Floats the loader's arena takes for spec s (model.c's lay_out), for its limit. */
static int64_t padded_floats(const rnn_spec *s) {
  const int64_t H = s->hidden, hout = s->proj ? s->proj : H, I = s->n_in;
  int64_t ldo = round_up(s->n_out ? s->n_out : hout), f = 2 * (int64_t)round_up(I) + 2 * ldo;
  if (s->cell == CELL_SEED) return f + (I + H) * (round_up(H) + ldo) + 2 * round_up(H) + ldo;
  int64_t ldg = round_up((s->cell == CELL_LSTM ? 4 : s->cell == CELL_GRU ? 3 : 1) * H);
  for (int l = 0; l < s->layers; l++) {
    f += ((l ? hout : I) + hout) * ldg + 3 * ldg + (s->proj ? H * round_up(s->proj) : 0);
  }
  if (s->n_out) f += hout * ldo + ldo;
  return f;
}

int rnn_spec_check(const rnn_spec *s, rnn_err *err) {
  if (s->cell < CELL_RNN_TANH || s->cell > CELL_SEED) return rnn_err_set(err, "unknown cell code %d", s->cell);
  const char *cell = rnn_cell_names[s->cell];
  if (s->n_in < 1 || s->n_in > RNN_MAX_INPUT) {
    return rnn_err_set(err, "input_size %d is outside 1..%d", s->n_in, RNN_MAX_INPUT);
  }
  if (s->hidden < 1 || s->hidden > RNN_MAX_HIDDEN) {
    return rnn_err_set(err, "hidden_size %d is outside 1..%d", s->hidden, RNN_MAX_HIDDEN);
  }
  if (s->cell == CELL_SEED && s->layers != 1) return rnn_err_set(err, "num_layers must be 1 for cell seed, got %d", s->layers);
  if (s->layers < 1 || s->layers > RNN_MAX_TRAIN_LAYERS) {
    return rnn_err_set(err, "num_layers %d is outside 1..%d", s->layers, RNN_MAX_TRAIN_LAYERS);
  }
  if (s->proj && s->cell != CELL_LSTM) return rnn_err_set(err, "proj_size applies only to cell lstm, got cell %s", cell);
  if (s->proj < 0 || s->proj >= s->hidden) {
    return rnn_err_set(err, "proj_size %d must be 0 or smaller than hidden_size %d", s->proj, s->hidden);
  }
  if (s->n_out < 0 || s->n_out > RNN_MAX_OUTPUT) {
    return rnn_err_set(err, "output_size %d is outside 0..%d", s->n_out, RNN_MAX_OUTPUT);
  }
  if (s->cell == CELL_SEED && s->n_out < 1) {
    return rnn_err_set(err, "cell seed needs output_size >= 1 (its i2o layer)");
  }
  if (s->out_act < ACT_NONE || s->out_act > ACT_LOG_SOFTMAX) {
    return rnn_err_set(err, "output_activation must be one of none, sigmoid, tanh, softmax, log_softmax");
  }
  if (s->cell == CELL_SEED && s->hidden_act != ACT_NONE && s->hidden_act != ACT_TANH && s->hidden_act != ACT_RELU &&
      s->hidden_act != ACT_SIGMOID) {
    return rnn_err_set(err, "hidden_activation must be one of none, tanh, relu, sigmoid");
  }
  int64_t f = padded_floats(s);
  if (f > RNN_MAX_PARAMS) {
    return rnn_err_set(err, "model needs %lld floats after padding, more than the limit %u", (long long)f,
                       RNN_MAX_PARAMS);
  }
  return SQLITE_OK;
}

static void add(rnn_params *p, const char *pre, const char *name, int layer, int rows, int cols) {
  rnn_tensor *t = &p->t[p->n_tensors++];
  if (layer >= 0) snprintf(t->name, sizeof(t->name), "%s%s%d", pre, name, layer);
  else snprintf(t->name, sizeof(t->name), "%s%s", pre, name);
  t->rows = rows;
  t->cols = cols;
  t->off = p->n;
  p->n += (size_t)rows * (size_t)cols;
}

/* Rule 1: the tensor table of a checked spec, and p->n. */
static void lay_out(rnn_params *p) {
  const rnn_spec *s = &p->spec;
  const int H = s->hidden, hout = s->proj ? s->proj : H, I = s->n_in, bias = s->bias;
  p->n_tensors = 0;
  p->n = 0;
  if (s->cell == CELL_SEED) {
    add(p, "", "i2h.weight", -1, H, I + H);
    if (bias) add(p, "", "i2h.bias", -1, H, 1);
    add(p, "", "i2o.weight", -1, s->n_out, I + H);
    if (bias) add(p, "", "i2o.bias", -1, s->n_out, 1);
    return;
  }
  const char *pre = s->n_out ? "rnn." : "";
  const int GH = (s->cell == CELL_LSTM ? 4 : s->cell == CELL_GRU ? 3 : 1) * H;
  for (int l = 0; l < s->layers; l++) {
    add(p, pre, "weight_ih_l", l, GH, l ? hout : I);
    add(p, pre, "weight_hh_l", l, GH, hout);
    if (bias) {
      add(p, pre, "bias_ih_l", l, GH, 1);
      add(p, pre, "bias_hh_l", l, GH, 1);
    }
    if (s->proj) add(p, pre, "weight_hr_l", l, s->proj, H);
  }
  if (s->n_out) {
    add(p, "", "fc.weight", -1, s->n_out, hout);
    if (bias) add(p, "", "fc.bias", -1, s->n_out, 1);
  }
}

uint64_t rnn_spec_floats(const rnn_spec *s) {
  rnn_params p;
  p.spec = *s;
  lay_out(&p);
  return p.n;
}

/* Checked parameters of spec s with the tensor table and zeroed weights. */
static int params_new(const rnn_spec *s, rnn_params **out, rnn_err *err) {
  *out = NULL;
  if (rnn_spec_check(s, err)) return err->rc;
  rnn_params *p = sqlite3_malloc64(sizeof(*p));
  if (!p) return rnn_err_nomem(err);
  memset(p, 0, sizeof(*p));
  p->spec = *s;
  lay_out(p);
  p->w = sqlite3_malloc64(sizeof(float) * (p->n ? p->n : 1));
  if (!p->w) {
    sqlite3_free(p);
    return rnn_err_nomem(err);
  }
  memset(p->w, 0, sizeof(float) * p->n);
  *out = p;
  return SQLITE_OK;
}

void rnn_params_free(rnn_params *p) {
  if (!p) return;
  sqlite3_free(p->w);
  sqlite3_free(p);
}

uint64_t rnn_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

/* Rule 2: the bound k of tensor t. */
static double init_bound(const rnn_params *p, const rnn_tensor *t) {
  const rnn_spec *s = &p->spec;
  const int hout = s->proj ? s->proj : s->hidden;
  if (s->cell == CELL_SEED) return 1.0 / sqrt((double)(s->n_in + s->hidden));
  if (strncmp(t->name, "fc.", 3) == 0) return 1.0 / sqrt((double)hout);
  return 1.0 / sqrt((double)s->hidden);
}

int rnn_params_init(const rnn_spec *s, uint64_t seed, rnn_params **out, rnn_err *err) {
  if (params_new(s, out, err)) return err->rc;
  rnn_params *p = *out;
  uint64_t state = seed;
  for (int i = 0; i < p->n_tensors; i++) {
    const rnn_tensor *t = &p->t[i];
    double k = init_bound(p, t);
    float *w = p->w + t->off;
    for (size_t j = 0; j < (size_t)t->rows * (size_t)t->cols; j++) {
      double u = (double)(rnn_splitmix64(&state) >> 40) * (1.0 / 16777216.0);
      w[j] = (float)((2.0 * u - 1.0) * k);
    }
  }
  return SQLITE_OK;
}

/* ---- from a loaded model ---- */

/* t (rows x cols, row-major) from src, stored transposed as [cols][ld]. */
static void untranspose(float *dst, const rnn_tensor *t, const float *src, int ld) {
  for (int r = 0; r < t->rows; r++) {
    for (int c = 0; c < t->cols; c++) dst[(size_t)r * (size_t)t->cols + (size_t)c] = src[(size_t)c * (size_t)ld + (size_t)r];
  }
}

/* Copy the model's weights into p (layout rule 1); whh follows wih in memory. */
static void copy_model(rnn_params *p, const rnn_net *net) {
  const rnn_spec *s = &p->spec;
  const char *pre = s->n_out && s->cell != CELL_SEED ? "rnn." : "";
  for (int i = 0; i < p->n_tensors; i++) {
    const rnn_tensor *t = &p->t[i];
    float *w = p->w + t->off;
    int l = 0;
    const char *nm = strncmp(t->name, "fc.", 3) == 0 ? t->name : t->name + strlen(pre);
    if (strncmp(t->name, "fc.", 3) != 0 && s->cell != CELL_SEED) l = atoi(strrchr(t->name, 'l') + 1);
    const rnn_dir *d = &net->layer[l].dir[0];
    if (strcmp(nm, "fc.weight") == 0) untranspose(w, t, net->head_w, net->ldo);
    else if (strcmp(nm, "fc.bias") == 0) memcpy(w, net->head_b, sizeof(float) * (size_t)t->rows);
    else if (strcmp(nm, "i2h.weight") == 0) untranspose(w, t, d->wih, net->ldg);
    else if (strcmp(nm, "i2h.bias") == 0) memcpy(w, d->bih, sizeof(float) * (size_t)t->rows);
    else if (strcmp(nm, "i2o.weight") == 0) untranspose(w, t, net->seed_o, net->ldo);
    else if (strcmp(nm, "i2o.bias") == 0) memcpy(w, net->seed_ob, sizeof(float) * (size_t)t->rows);
    else if (strncmp(nm, "weight_ih", 9) == 0) untranspose(w, t, d->wih, net->ldg);
    else if (strncmp(nm, "weight_hh", 9) == 0) untranspose(w, t, d->whh, net->ldg);
    else if (strncmp(nm, "bias_ih", 7) == 0) memcpy(w, d->bih, sizeof(float) * (size_t)t->rows);
    else if (strncmp(nm, "bias_hh", 7) == 0) memcpy(w, d->bhh, sizeof(float) * (size_t)t->rows);
    else if (strncmp(nm, "weight_hr", 9) == 0) untranspose(w, t, d->whr, net->ldp);
  }
}

int rnn_params_from_model(const rnn_model *m, rnn_params **out, rnn_err *err) {
  const rnn_net *net = &m->net;
  rnn_spec s;
  *out = NULL;
  if (net->dirs != 1) return rnn_err_set(err, "bidirectional models cannot be trained");
  if (net->layers > RNN_MAX_TRAIN_LAYERS) {
    return rnn_err_set(err, "model has %d layers; training supports at most %d", net->layers, RNN_MAX_TRAIN_LAYERS);
  }
  memset(&s, 0, sizeof(s));
  s.cell = net->cell;
  s.n_in = net->n_in;
  s.hidden = net->hidden;
  s.layers = net->layers;
  s.proj = net->proj;
  s.n_out = net->cell == CELL_SEED || net->head_w ? net->n_out : 0;
  s.out_act = net->out_act;
  s.hidden_act = net->cell == CELL_SEED ? net->hidden_act : ACT_TANH;
  /* The loader keeps no flag for bias: a model without bias tensors stores
  ** exactly the weights counted without them (an absent tensor reads as zeros,
  ** and training then learns it). */
  s.bias = 0;
  rnn_params *p;
  if (params_new(&s, &p, err)) return err->rc;
  if ((int64_t)p->n != m->n_params) {
    rnn_params_free(p);
    s.bias = 1;
    if (params_new(&s, &p, err)) return err->rc;
  }
  copy_model(p, net);
  *out = p;
  return SQLITE_OK;
}

/* ---- the model BLOB (rule 4) ---- */

/* Index just past the JSON value starting at z[i] (z is valid JSON). */
static size_t skip_value(const char *z, size_t i) {
  int depth = 0;
  do {
    char c = z[i];
    if (c == '"') {
      for (i++; z[i] != '"'; i++) {
        if (z[i] == '\\') i++;
      }
      i++;
    } else if (c == '{' || c == '[') {
      depth++;
      i++;
    } else if (c == '}' || c == ']') {
      depth--;
      i++;
    } else if (depth && (c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
      i++;
    } else {
      while (z[i] && !strchr(",:]} \t\n\r", z[i])) i++;
    }
  } while (depth > 0);
  return i;
}

static size_t skip_space(const char *z, size_t i) {
  while (z[i] == ' ' || z[i] == '\t' || z[i] == '\n' || z[i] == '\r') i++;
  return i;
}

/* Keys the parameters decide; a caller's member with one of these names is dropped. */
static int own_key(const char *k) {
  return strcmp(k, "cell") == 0 || strcmp(k, "output_activation") == 0 || strcmp(k, "hidden_activation") == 0 ||
         strcmp(k, "recurrent_prefix") == 0 || strcmp(k, "head_prefix") == 0;
}

/* The members of the JSON object text meta, appended to s as ,"key":"value":
** a string member as its string, any other value as its JSON text. */
static int append_meta(sqlite3_str *s, const char *meta, rnn_err *err) {
  rnn_json_doc d;
  if (rnn_json_parse(meta, strlen(meta), &d, err)) return rnn_err_prefix(err, "metadata is not valid JSON: ");
  int rc = SQLITE_OK;
  if (d.nodes[0].type != RNN_JSON_OBJECT) {
    rc = rnn_err_set(err, "metadata must be a JSON object");
    goto done;
  }
  size_t i = skip_space(meta, 0) + 1;
  for (int k = d.nodes[0].child; k >= 0; k = d.nodes[d.nodes[k].next].next) {
    const rnn_json_node *v = &d.nodes[d.nodes[k].next];
    i = skip_space(meta, skip_value(meta, skip_space(meta, i)));  /* the key */
    size_t b = skip_space(meta, i + 1), e = skip_value(meta, b);  /* past ':' */
    i = skip_space(meta, e) + 1;                                   /* past ',' or '}' */
    if (own_key(d.nodes[k].str)) continue;
    sqlite3_str_appendchar(s, 1, ',');
    rnn_json_string(s, d.nodes[k].str);
    sqlite3_str_appendchar(s, 1, ':');
    if (v->type == RNN_JSON_STRING) {
      rnn_json_string(s, v->str);
    } else {
      char *raw = sqlite3_mprintf("%.*s", (int)(e - b), meta + b);
      if (!raw) {
        rc = rnn_err_nomem(err);
        goto done;
      }
      rnn_json_string(s, raw);
      sqlite3_free(raw);
    }
  }
done:
  rnn_json_free(&d);
  return rc;
}

/* The header JSON (unpadded) of p with metadata meta. */
static int blob_header(const rnn_params *p, const char *meta, sqlite3_str *s, rnn_err *err) {
  const rnn_spec *sp = &p->spec;
  sqlite3_str_appendf(s, "{\"__metadata__\":{\"cell\":\"%s\"", rnn_cell_names[sp->cell]);
  if (sp->out_act != ACT_NONE) sqlite3_str_appendf(s, ",\"output_activation\":\"%s\"", rnn_act_names[sp->out_act]);
  if (sp->cell == CELL_SEED) sqlite3_str_appendf(s, ",\"hidden_activation\":\"%s\"", rnn_act_names[sp->hidden_act]);
  if (meta && append_meta(s, meta, err)) return err->rc;
  sqlite3_str_appendchar(s, 1, '}');
  for (int i = 0; i < p->n_tensors; i++) {
    const rnn_tensor *t = &p->t[i];
    size_t a = 4 * t->off, b = a + 4 * (size_t)t->rows * (size_t)t->cols;
    sqlite3_str_appendf(s, ",\"%s\":{\"dtype\":\"F32\",\"shape\":", t->name);
    if (strstr(t->name, "bias")) sqlite3_str_appendf(s, "[%d]", t->rows);
    else sqlite3_str_appendf(s, "[%d,%d]", t->rows, t->cols);
    sqlite3_str_appendf(s, ",\"data_offsets\":[%llu,%llu]}", (unsigned long long)a, (unsigned long long)b);
  }
  sqlite3_str_appendchar(s, 1, '}');
  return SQLITE_OK;
}

int rnn_params_to_blob(const rnn_params *p, const char *meta, unsigned char **blob, size_t *n, rnn_err *err) {
  *blob = NULL;
  *n = 0;
  sqlite3_str *s = sqlite3_str_new(NULL);
  if (blob_header(p, meta, s, err)) {
    sqlite3_free(sqlite3_str_finish(s));
    return err->rc;
  }
  int len = sqlite3_str_length(s);
  sqlite3_str_appendchar(s, (len % 8) ? 8 - len % 8 : 0, ' ');
  if (sqlite3_str_errcode(s)) {
    int code = sqlite3_str_errcode(s);
    sqlite3_free(sqlite3_str_finish(s));
    return code == SQLITE_TOOBIG ? rnn_err_set(err, "model header too large") : rnn_err_nomem(err);
  }
  size_t hlen = (size_t)sqlite3_str_length(s);
  if (hlen > RNN_MAX_HEADER) {
    sqlite3_free(sqlite3_str_finish(s));
    return rnn_err_set(err, "model header of %llu bytes (metadata included) is more than the limit %u",
                       (unsigned long long)hlen, RNN_MAX_HEADER);
  }
  char *h = sqlite3_str_finish(s);
  size_t total = 8 + hlen + 4 * p->n;
  unsigned char *out = sqlite3_malloc64(total);
  if (!h || !out) {
    sqlite3_free(h);
    sqlite3_free(out);
    return rnn_err_nomem(err);
  }
  rnn_le64_put(out, (uint64_t)hlen);
  memcpy(out + 8, h, hlen);
  sqlite3_free(h);
  for (size_t i = 0; i < p->n; i++) rnn_f32_put(out + 8 + hlen + 4 * i, p->w[i]);
  *blob = out;
  *n = total;
  return SQLITE_OK;
}

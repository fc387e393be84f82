/*
** info.c: rnn_info()'s JSON, the presentation of a loaded model. Built once
** per load (model.c calls rnn_info_json) and kept with the model.
**
**   SELECT rnn_info('sensor');
**   -- {"cell":"gru","input_size":1,...,"readout":"last_output",...,"metadata":{...}}
**
** Rules kept:
**  1. Keys appear in a fixed order; optional ones (hidden_activation for the
**     tutorial cell, head_prefix with a head, output_names, warnings) only
**     when they apply, so a model's text never changes between loads.
**  2. `metadata` echoes __metadata__ as stored, every key, known or not.
**  3. `warnings` lists each metadata key the loader does not read, with the
**     known key it is a typo of when there is one; loading still succeeds
**     (user keys are allowed).
*/
#include "model.h"
#include "json.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

/* z escaped for the inside of a JSON string. */
static void json_escape(sqlite3_str *s, const char *z) {
  for (; *z; z++) {
    unsigned char c = (unsigned char)*z;
    if (c == '"' || c == '\\') sqlite3_str_appendf(s, "\\%c", c);
    else if (c < 0x20) sqlite3_str_appendf(s, "\\u%04x", c);
    else sqlite3_str_appendchar(s, 1, (char)c);
  }
}

void rnn_json_string(sqlite3_str *s, const char *z) {
  sqlite3_str_appendchar(s, 1, '"');
  json_escape(s, z);
  sqlite3_str_appendchar(s, 1, '"');
}

/* Rule 2: "metadata":{...} */
static void info_metadata(sqlite3_str *s, const rnn_load_facts *f) {
  const rnn_json_node *nd = f->doc->nodes;
  sqlite3_str_appendall(s, "\"metadata\":{");
  for (int k = f->md >= 0 ? nd[f->md].child : -1; k >= 0; k = nd[nd[k].next].next) {
    if (k != nd[f->md].child) sqlite3_str_appendchar(s, 1, ',');
    rnn_json_string(s, nd[k].str);
    sqlite3_str_appendchar(s, 1, ':');
    rnn_json_string(s, nd[nd[k].next].str);
  }
  sqlite3_str_appendchar(s, 1, '}');
}

/* Rule 3: ,"warnings":[...] when a metadata key is not one the loader reads. */
static void info_warnings(sqlite3_str *s, const rnn_load_facts *f) {
  const rnn_json_node *nd = f->doc->nodes;
  int n = 0;
  for (int k = f->md >= 0 ? nd[f->md].child : -1; k >= 0; k = nd[nd[k].next].next) {
    const char *near;
    if (rnn_meta_key_known(nd[k].str, &near)) continue;
    sqlite3_str_appendall(s, n++ ? ",\"" : ",\"warnings\":[\"");
    sqlite3_str_appendall(s, "unknown metadata key '");
    json_escape(s, nd[k].str);
    sqlite3_str_appendall(s, "' (ignored)");
    if (near) sqlite3_str_appendf(s, "; did you mean '%s'?", near);
    sqlite3_str_appendchar(s, 1, '"');
  }
  if (n) sqlite3_str_appendchar(s, 1, ']');
}

char *rnn_info_json(const rnn_model *m, const rnn_load_facts *f) {
  const rnn_net *net = &m->net;
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendf(s, "{\"cell\":\"%s\",\"input_size\":%d,\"hidden_size\":%d,\"proj_size\":%d,"
                         "\"num_layers\":%d,\"bidirectional\":%s,\"bias\":%s,\"output_size\":%d,",
                      rnn_cell_names[net->cell], net->n_in, net->hidden, net->proj, net->layers,
                      net->dirs == 2 ? "true" : "false", f->bias ? "true" : "false", net->n_out);
  if (m->n_output_names) {
    sqlite3_str_appendall(s, "\"output_names\":[");
    for (int i = 0; i < m->n_output_names; i++) {
      if (i) sqlite3_str_appendchar(s, 1, ',');
      sqlite3_str_appendall(s, m->output_names[i]);
    }
    sqlite3_str_appendall(s, "],");
  }
  sqlite3_str_appendf(s, "\"head\":%s,\"output_activation\":\"%s\",\"readout\":\"%s\",",
                      f->head_prefix ? "true" : "false", rnn_act_names[net->out_act],
                      net->readout == READOUT_FINAL_STATES ? "final_states" : "last_output");
  if (net->cell == CELL_SEED) sqlite3_str_appendf(s, "\"hidden_activation\":\"%s\",", rnn_act_names[net->hidden_act]);
  sqlite3_str_appendall(s, "\"recurrent_prefix\":");
  rnn_json_string(s, f->recurrent_prefix);
  if (f->head_prefix) {
    sqlite3_str_appendall(s, ",\"head_prefix\":");
    rnn_json_string(s, f->head_prefix);
  }
  sqlite3_str_appendf(s, ",\"parameters\":%lld,\"tensors\":%d,\"dtypes\":{", (long long)m->n_params, f->tensors);
  for (int d = 0, first = 1; d < 4; d++) {
    if (!f->dtype_count[d]) continue;
    sqlite3_str_appendf(s, "%s\"%s\":%d", first ? "" : ",", rnn_dtype_names[d], f->dtype_count[d]);
    first = 0;
  }
  sqlite3_str_appendf(s, "},\"kernel\":\"%s\",", net->k->name);
  info_metadata(s, f);
  info_warnings(s, f);
  sqlite3_str_appendchar(s, 1, '}');
  if (sqlite3_str_errcode(s)) {
    sqlite3_free(sqlite3_str_finish(s));
    return NULL;
  }
  return sqlite3_str_finish(s);
}

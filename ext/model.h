/*
** model.h: a parsed, validated model (see model.c for the format rules).
*/
#ifndef RNN_MODEL_H
#define RNN_MODEL_H
#include "cells.h"
#include "util.h"

/* Limits, checked before any allocation they size (see README "Limits"). */
#define RNN_MAX_HEADER   (64u << 20)   /* safetensors JSON header bytes */
#define RNN_MAX_TENSORS  4096
#define RNN_MAX_LAYERS   64
#define RNN_MAX_HIDDEN   8192
#define RNN_MAX_INPUT    65536
#define RNN_MAX_OUTPUT   65536
#define RNN_MAX_PARAMS   (1u << 27)    /* float32 values after padding: 512 MiB */
#define RNN_MAX_NAME     256           /* tensor name bytes */

typedef struct rnn_model {
  rnn_net net;            /* numbers and weight pointers into `arena` */
  rnn_layer *layers;      /* [net.layers]; owned; net.layer points here */
  float *arena;           /* every weight, 64-byte aligned blocks; owned */
  void *arena_raw;        /* the allocation behind arena; owned */
  char *info;             /* rnn_info() JSON text; owned (sqlite3_malloc) */
  int64_t n_params;       /* parameters as stored (before padding) */
  /* metadata `vocab` (TEXT input is split into these tokens and one-hot encoded),
  ** `unknown_token` and `labels`: filled by tokenizer.c, all in tok_block */
  int n_vocab;            /* 0: the model has no vocab */
  char **vocab;           /* [n_vocab] NUL-terminated UTF-8 */
  int *vocab_len;         /* [n_vocab] bytes */
  uint32_t *vocab_fnv;    /* [n_vocab] FNV-1a hash of each token */
  int *vocab_hash;        /* [hash_size] token index or -1, open addressing */
  int hash_size;          /* a power of two >= 2 * n_vocab */
  int max_token;          /* longest token, bytes */
  unsigned char *has_len; /* [max_token + 1] 1 where some token has that many bytes */
  int unknown;            /* index of unknown_token, -1 if none */
  int n_labels;           /* 0: no labels */
  char **labels;          /* [n_labels] */
  char *tok_block;        /* owned */
  /* metadata `output_names`: multi-feature results become JSON objects */
  int n_output_names;     /* 0 (no names) or net.n_out */
  char **output_names;    /* [n_output_names] JSON string literals ("name", escaped) into
                          ** names_text, then the same sorted; owned */
  char *names_text;       /* owned (sqlite3_malloc) */
} rnn_model;

/* Parse and validate a safetensors BLOB (util.h convention). SQLITE_OK: *out
** owns a new model. Otherwise *out is NULL and err holds the error: SQLITE_ERROR
** with the rule broken (callers prefix it with what they were loading), or
** SQLITE_NOMEM. */
int rnn_model_load(const unsigned char *blob, size_t n, rnn_model **out, rnn_err *err);
void rnn_model_free(rnn_model *m);
/* Names of the CELL_*, ACT_* and dtype codes, as metadata and rnn_info() spell them. */
extern const char *const rnn_cell_names[];
extern const char *const rnn_act_names[];
extern const char *const rnn_dtype_names[];  /* F32, F16, BF16, F64 */

/* 1 if the loader reads metadata key `key`; else 0, with *suggestion a known
** key a typo away from it, or NULL. */
int rnn_meta_key_known(const char *key, const char **suggestion);

/* What rnn_info() shows beyond the model itself: gathered by the loader,
** rendered by info.c. Everything is borrowed for the duration of the call. */
struct rnn_json_doc;
typedef struct rnn_load_facts {
  const char *recurrent_prefix;
  const char *head_prefix;    /* NULL: no head */
  int bias;                   /* the model has bias tensors */
  int tensors;                /* tensors in the BLOB */
  int dtype_count[4];         /* tensors per dtype, in rnn_dtype_names order */
  const struct rnn_json_doc *doc;   /* the parsed header */
  int md;                     /* doc node of __metadata__, or -1 */
} rnn_load_facts;

/* rnn_info()'s JSON text (sqlite3_malloc'd), or NULL when out of memory. */
char *rnn_info_json(const rnn_model *m, const rnn_load_facts *f);
/* Append z as a JSON string literal. */
struct sqlite3_str;
void rnn_json_string(struct sqlite3_str *s, const char *z);
#endif

/*
** tokenizer.h: a model's vocab, unknown_token and labels, and TEXT split into
** vocab tokens (see tokenizer.c).
*/
#ifndef RNN_TOKENIZER_H
#define RNN_TOKENIZER_H
#include "model.h"

/* Fill m's vocab, unknown and labels fields from the __metadata__ texts (each
** NULL when absent). Returns an SQLite code, the error in err (util.h). Freed
** by freeing m->tok_block. */
int rnn_tokens_load(rnn_model *m, const char *vocab, const char *labels, const char *unknown, rnn_err *err);

/* The vocab index of the token z[0..n), or -1. */
int rnn_model_token(const rnn_model *m, const char *z, int n);

/* The outcome of splitting TEXT into tokens. */
typedef struct rnn_tokens {
  int64_t T;         /* tokens in the text (up to the bad character) */
  int bad;           /* 1: the character at bad_at starts no token and there is no unknown_token */
  int bad_at, bad_len, bad_char; /* its byte offset, bytes, and 1-based character position */
} rnn_tokens;

/* Split z[0..n) longest match first (tokenizer.c rule 2). tok is NULL to count
** only, else it has room for the count a first call gave. */
void rnn_tokenize(const rnn_model *m, const char *z, int n, int *tok, rnn_tokens *out);
#endif

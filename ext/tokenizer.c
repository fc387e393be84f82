/*
** tokenizer.c: owns the vocab, unknown_token and labels fields of rnn_model
** (built from __metadata__ at load) and the split of TEXT into vocab tokens.
**
**   SELECT rnn_classify('lang', 'schmidt');   -- TEXT -> tokens -> one-hot rows
**
** Rules kept:
**  1. vocab is a JSON array of distinct non-empty strings, one per model input;
**     labels a JSON array of strings, one per output; unknown_token must be in
**     vocab, and needs one.
**  2. TEXT is split greedily: at each position the longest token that starts
**     there is taken. A character that starts no token is an error, unless the
**     model declares an unknown_token, which stands in for that one character.
**  3. Splitting costs O(text bytes x longest token) byte steps: the FNV-1a hash
**     of every prefix at a position is built incrementally, and the hash table
**     is probed only at token lengths that exist (was O(text x longest^2)).
**  4. Memory is O(vocab bytes) for the tables; a split first counts its tokens
**     (storing nothing), so the caller checks its limits before it allocates.
*/
#include "tokenizer.h"
#include "util.h"
#include "json.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3
#include <string.h>

#define FNV_BASIS 2166136261u
#define FNV_STEP(h, c) (((h) ^ (unsigned char)(c)) * 16777619u)

static uint32_t token_hash(const char *z, int n) {
  uint32_t h = FNV_BASIS;
  for (int i = 0; i < n; i++) h = FNV_STEP(h, z[i]);
  return h;
}

/* The token of n bytes at z whose hash is h, or -1. */
static int lookup(const rnn_model *m, const char *z, int n, uint32_t h) {
  const uint32_t mask = (uint32_t)(m->hash_size - 1);
  for (uint32_t i = h & mask;; i = (i + 1) & mask) {
    int t = m->vocab_hash[i];
    if (t < 0) return -1;
    if (m->vocab_fnv[t] == h && m->vocab_len[t] == n && memcmp(m->vocab[t], z, (size_t)n) == 0) return t;
  }
}

int rnn_model_token(const rnn_model *m, const char *z, int n) {
  if (!m->n_vocab || n <= 0 || n > m->max_token) return -1;
  return lookup(m, z, n, token_hash(z, n));
}

/* Rule 2 at one position: the longest token starting at z (n bytes left), or
** -1; *len its bytes. Rule 3: one pass over at most max_token bytes. */
static int longest_at(const rnn_model *m, const char *z, int n, int *len) {
  int best = -1, lim = m->max_token < n ? m->max_token : n;
  uint32_t h = FNV_BASIS;
  for (int k = 1; k <= lim; k++) {
    h = FNV_STEP(h, z[k - 1]);
    if (!m->has_len[k]) continue;
    int t = lookup(m, z, k, h);
    if (t >= 0) {
      best = t;
      *len = k;
    }
  }
  return best;
}

void rnn_tokenize(const rnn_model *m, const char *z, int n, int *tok, rnn_tokens *out) {
  int chars = 0;
  memset(out, 0, sizeof(*out));
  for (int i = 0; i < n;) {
    int len = 0, t = longest_at(m, z + i, n - i, &len);
    if (t < 0) {
      int cl = 1; /* the offending UTF-8 character */
      while (i + cl < n && ((unsigned char)z[i + cl] & 0xC0) == 0x80) cl++;
      if (m->unknown < 0) {
        out->bad = 1;
        out->bad_at = i;
        out->bad_len = cl;
        out->bad_char = chars + 1;
        return;
      }
      t = m->unknown;
      len = cl;
    }
    if (tok) tok[out->T] = t;
    out->T++;
    for (int k = 0; k < len; k++) chars += ((unsigned char)z[i + k] & 0xC0) != 0x80;
    i += len;
  }
}

/* Rule 1 for the metadata array `key`: strings (non-empty if nonempty), their
** count in *count and text bytes (with NULs) added to *bytes. On SQLITE_ERROR
** err says "__metadata__ <key> must be <what>": the JSON error is not shown. */
static int parse_strings(rnn_err *err, const char *key, const char *what, const char *z, rnn_json_doc *d,
                         int nonempty, int *count, size_t *bytes) {
  rnn_err jerr = {SQLITE_OK, NULL};
  int rc = rnn_json_parse(z, strlen(z), d, &jerr);
  sqlite3_free(jerr.msg);
  if (rc == SQLITE_NOMEM) return rnn_err_nomem(err);
  int ok = rc == SQLITE_OK && d->nodes[0].type == RNN_JSON_ARRAY && (!nonempty || d->nodes[0].n > 0);
  for (int i = ok ? d->nodes[0].child : -1; i >= 0; i = d->nodes[i].next) {
    if (d->nodes[i].type != RNN_JSON_STRING || (nonempty && d->nodes[i].n == 0)) ok = 0;
    else *bytes += (size_t)d->nodes[i].n + 1;
  }
  *count = ok ? d->nodes[0].n : 0;
  return ok ? SQLITE_OK : rnn_err_set(err, "__metadata__ %s must be %s", key, what);
}

/* Carve the tables from one block; fills vocab (with the duplicate check) and labels. */
static int fill(rnn_err *err, rnn_model *m, const rnn_json_doc *dv, int nv, const rnn_json_doc *dl, int nl,
                size_t bytes) {
  int hs = 1, maxlen = 0;
  for (int i = nv ? dv->nodes[0].child : -1; i >= 0; i = dv->nodes[i].next) {
    if (dv->nodes[i].n > maxlen) maxlen = dv->nodes[i].n;
  }
  while (hs < 2 * nv) hs *= 2;
  m->tok_block = sqlite3_malloc64(sizeof(char *) * (size_t)(nv + nl) + sizeof(int) * (size_t)(nv + hs) +
                                  sizeof(uint32_t) * (size_t)nv + (size_t)maxlen + 1 + bytes);
  if (!m->tok_block) return rnn_err_nomem(err);
  m->vocab = (char **)m->tok_block;
  m->labels = m->vocab + nv;
  m->vocab_fnv = (uint32_t *)(m->labels + nl);
  m->vocab_len = (int *)(m->vocab_fnv + nv);
  m->vocab_hash = m->vocab_len + nv;
  m->has_len = (unsigned char *)(m->vocab_hash + hs);
  char *sp = (char *)(m->has_len + maxlen + 1);
  m->hash_size = hs;
  memset(m->has_len, 0, (size_t)maxlen + 1);
  for (int i = 0; i < hs; i++) m->vocab_hash[i] = -1;
  for (int i = nv ? dv->nodes[0].child : -1; i >= 0; i = dv->nodes[i].next) {
    const char *tok = dv->nodes[i].str;
    int len = dv->nodes[i].n;
    if (rnn_model_token(m, tok, len) >= 0) return rnn_err_set(err, "__metadata__ vocab has the token '%s' twice", tok);
    int t = m->n_vocab++;
    memcpy(sp, tok, (size_t)len + 1);
    m->vocab[t] = sp;
    m->vocab_len[t] = len;
    m->vocab_fnv[t] = token_hash(tok, len);
    sp += len + 1;
    if (len > m->max_token) m->max_token = len;
    m->has_len[len] = 1;
    uint32_t h = m->vocab_fnv[t] & (uint32_t)(hs - 1);
    while (m->vocab_hash[h] >= 0) h = (h + 1) & (uint32_t)(hs - 1);
    m->vocab_hash[h] = t;
  }
  for (int i = nl ? dl->nodes[0].child : -1; i >= 0; i = dl->nodes[i].next) {
    memcpy(sp, dl->nodes[i].str, (size_t)dl->nodes[i].n + 1);
    m->labels[m->n_labels++] = sp;
    sp += dl->nodes[i].n + 1;
  }
  return SQLITE_OK;
}

#define FAIL(...) do { rc = rnn_err_set(err, __VA_ARGS__); goto done; } while (0)

int rnn_tokens_load(rnn_model *m, const char *vz, const char *lz, const char *uz, rnn_err *err) {
  rnn_json_doc dv, dl;
  int rc = SQLITE_OK, nv = 0, nl = 0;
  size_t bytes = 0;
  memset(&dv, 0, sizeof(dv));
  memset(&dl, 0, sizeof(dl));
  m->unknown = -1;
  if (vz) {
    rc = parse_strings(err, "vocab", "a JSON array of distinct non-empty strings", vz, &dv, 1, &nv, &bytes);
    if (rc) goto done;
    if (nv != m->net.n_in) FAIL("__metadata__ vocab has %d tokens but the model takes %d inputs", nv, m->net.n_in);
  } else if (uz) {
    FAIL("__metadata__ unknown_token needs a vocab");
  }
  if (lz) {
    rc = parse_strings(err, "labels", "a JSON array of strings", lz, &dl, 0, &nl, &bytes);
    if (rc) goto done;
    if (nl != m->net.n_out) FAIL("__metadata__ labels has %d names but the model has %d outputs", nl, m->net.n_out);
  }
  if (!nv && !nl) goto done;
  rc = fill(err, m, &dv, nv, &dl, nl, bytes);
  if (rc == SQLITE_OK && uz) {
    m->unknown = rnn_model_token(m, uz, (int)strlen(uz));
    if (m->unknown < 0) FAIL("__metadata__ unknown_token '%s' is not in vocab", uz);
  }
done:
  rnn_json_free(&dv);
  rnn_json_free(&dl);
  return rc;
}

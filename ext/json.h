/*
** json.h: a strict, bounded JSON reader for safetensors headers and metadata values.
** See json.c for the rules it keeps.
*/
#ifndef RNN_JSON_H
#define RNN_JSON_H
#include "util.h"
#include <stddef.h>
#include <stdint.h>

typedef enum {
  RNN_JSON_NULL, RNN_JSON_FALSE, RNN_JSON_TRUE, RNN_JSON_NUMBER, RNN_JSON_STRING, RNN_JSON_ARRAY, RNN_JSON_OBJECT
} rnn_json_type;

/* One parsed value. Children of arrays and objects are linked through `next`;
** an object's children alternate key (a string), value. */
typedef struct rnn_json_node {
  rnn_json_type type;
  int n;            /* ARRAY: element count; OBJECT: pair count; STRING: bytes */
  int child;        /* index of the first child, -1 if none */
  int next;         /* index of the next sibling, -1 if last */
  int is_uint;      /* NUMBER written as a plain non-negative integer < 2^63 */
  uint64_t u;       /* NUMBER: its value when is_uint; STRING: a hash of the text */
  double num;       /* NUMBER value */
  const char *str;  /* STRING: decoded UTF-8, NUL-terminated, owned by the doc pool */
} rnn_json_node;

/* A parsed document. nodes[0] is the root. Free with rnn_json_free(). */
typedef struct rnn_json_doc {
  rnn_json_node *nodes;   /* owned; sqlite3_malloc64 */
  int n_nodes;
  int cap_nodes;
  char *pool;       /* decoded strings; owned; sqlite3_malloc64 */
  size_t pool_used;
} rnn_json_doc;

#define RNN_JSON_MAX_DEPTH 16
#define RNN_JSON_MAX_NODES (1 << 18)   /* values in one parsed document: 12 MiB of nodes */
#define RNN_JSON_MAX_KEYS 8192

/* Parse z[0..n) into doc (util.h convention). Returns SQLITE_OK; or
** SQLITE_ERROR with "<what> at byte <offset>" in err (callers prefix it),
** or SQLITE_NOMEM, and doc empty. */
int rnn_json_parse(const char *z, size_t n, rnn_json_doc *doc, rnn_err *err);
void rnn_json_free(rnn_json_doc *doc);

/* Object lookup: the value node index for key, or -1. */
int rnn_json_get(const rnn_json_doc *doc, int obj, const char *key);

/* A streaming reader (json.c rule 6): for a JSON text of any length, memory
** that does not grow with it. */
typedef struct rnn_json_reader {
  const unsigned char *z;
  size_t n, i;
  rnn_json_doc doc;        /* scratch for the value being checked; owned */
  rnn_err *err;      /* the caller's; receives the error of RNN_JSON_EV_ERROR */
  int depth;         /* arrays open */
  int state;         /* in the innermost array: first item, item after ',', or separator next */
  int root_done;
  rnn_json_type type;      /* RNN_JSON_EV_VALUE: its type, and its number if RNN_JSON_NUMBER */
  double num;
} rnn_json_reader;

enum { RNN_JSON_EV_NOMEM = -2, RNN_JSON_EV_ERROR = -1, RNN_JSON_EV_END = 0, RNN_JSON_EV_OPEN, RNN_JSON_EV_CLOSE, RNN_JSON_EV_VALUE };

void rnn_json_reader_init(rnn_json_reader *r, const char *z, size_t n, rnn_err *err);
/* The next event (an iterator, not an error code): RNN_JSON_EV_OPEN /
** RNN_JSON_EV_CLOSE for array brackets, RNN_JSON_EV_VALUE for any other value,
** RNN_JSON_EV_END once the text ended properly. The two negative events are
** failures recorded in the reader's rnn_err: RNN_JSON_EV_ERROR (its rc is
** SQLITE_ERROR, message "<what> at byte <offset>", or SQLITE_NOMEM if the
** message could not be made) and RNN_JSON_EV_NOMEM (SQLITE_NOMEM). */
int rnn_json_reader_next(rnn_json_reader *r);
void rnn_json_reader_free(rnn_json_reader *r);

#endif

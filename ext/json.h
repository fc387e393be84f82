/*
** json.h: a strict, bounded JSON reader for safetensors headers and metadata values.
** See json.c for the rules it keeps.
*/
#ifndef RNN_JSON_H
#define RNN_JSON_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
  RJ_NULL, RJ_FALSE, RJ_TRUE, RJ_NUMBER, RJ_STRING, RJ_ARRAY, RJ_OBJECT
} rj_type;

/* One parsed value. Children of arrays and objects are linked through `next`;
** an object's children alternate key (a string), value. */
typedef struct rj_node {
  rj_type type;
  int n;            /* ARRAY: element count; OBJECT: pair count; STRING: bytes */
  int child;        /* index of the first child, -1 if none */
  int next;         /* index of the next sibling, -1 if last */
  int is_uint;      /* NUMBER written as a plain non-negative integer < 2^63 */
  uint64_t u;       /* NUMBER: its value when is_uint; STRING: a hash of the text */
  double num;       /* NUMBER value */
  const char *str;  /* STRING: decoded UTF-8, NUL-terminated, owned by the doc pool */
} rj_node;

/* A parsed document. nodes[0] is the root. Free with rj_free(). */
typedef struct rj_doc {
  rj_node *nodes;   /* owned; sqlite3_malloc64 */
  int n_nodes;
  int cap_nodes;
  char *pool;       /* decoded strings; owned; sqlite3_malloc64 */
  size_t pool_used;
} rj_doc;

#define RJ_MAX_DEPTH 16
#define RJ_MAX_NODES (1 << 18)   /* values in one parsed document: 12 MiB of nodes */
#define RJ_MAX_KEYS 8192

/* Parse z[0..n). Returns 0 on success; on failure returns 1 and writes a
** message (no trailing period) into err, or 2 on out of memory. */
int rj_parse(const char *z, size_t n, rj_doc *doc, char *err, size_t errlen);
void rj_free(rj_doc *doc);

/* Object lookup: the value node index for key, or -1. */
int rj_get(const rj_doc *doc, int obj, const char *key);

/* A streaming reader (json.c rule 6): for a JSON text of any length, memory
** that does not grow with it. */
typedef struct rj_reader {
  const unsigned char *z;
  size_t n, i;
  rj_doc doc;        /* scratch for the value being checked; owned */
  char *err;         /* the caller's message buffer */
  size_t errlen;
  int depth;         /* arrays open */
  int state;         /* in the innermost array: first item, item after ',', or separator next */
  int root_done;
  rj_type type;      /* RJ_EV_VALUE: its type, and its number if RJ_NUMBER */
  double num;
} rj_reader;

enum { RJ_EV_NOMEM = -2, RJ_EV_ERROR = -1, RJ_EV_END = 0, RJ_EV_OPEN, RJ_EV_CLOSE, RJ_EV_VALUE };

void rj_reader_init(rj_reader *r, const char *z, size_t n, char *err, size_t errlen);
/* The next event: RJ_EV_OPEN / RJ_EV_CLOSE for array brackets, RJ_EV_VALUE for
** any other value, RJ_EV_END once the text ended properly; RJ_EV_ERROR (message
** in err) or RJ_EV_NOMEM. */
int rj_reader_next(rj_reader *r);
void rj_reader_free(rj_reader *r);

#endif

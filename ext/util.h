/*
** util.h: error reporting shared by scalar, aggregate and table-valued
** functions, and how outputs become SQL values.
**
** Errors: the one convention every ext/ file follows.
**  1. A function that can fail takes the caller's rnn_err and returns an SQLite
**     result code: SQLITE_OK, or the code it recorded in the rnn_err
**     (SQLITE_ERROR with a message, SQLITE_NOMEM with none, SQLITE_TOOBIG,
**     SQLITE_INTERRUPT with SQLite's "interrupted", from rnn_err_code).
**     The caller passes an rnn_err holding no error ({SQLITE_OK, NULL}).
**     What it makes comes back through out-parameters. A static helper whose
**     natural result is an index or a pointer (json.c's node numbers,
**     model.c's expect()) returns it, or -1 / NULL on failure: the code is
**     then the rnn_err's rc. "Nothing here", which is no error, is an
**     out-parameter too: rnn_seq_read leaves xs NULL for a NULL sequence,
**     rnn_row_read sets *used to 0 for a row to skip. A call stopped by
**     sqlite3_interrupt() or a progress handler is SQLITE_INTERRUPT (poll.c).
**  2. Messages are made only by rnn_err_set (rnn_vmprintf: user bytes are
**     escaped), lack of memory only by rnn_err_nomem, so it always reads as
**     SQLite's "out of memory". The first error recorded wins.
**  3. A caller that adds context prefixes the message it was given
**     (rnn_err_prefix): "rnn_eval(): invalid model: " + the loader's message.
**  4. Only the SQLite callbacks report, at the boundary: rnn_err_result on a
**     function's context, rnn_err_vtab into a virtual table's zErrMsg,
**     *pzErrMsg in sqlite3_rnn_init. A callback reports an error it finds
**     itself with rnn_result_errorf; the rnn_result_* helpers that make a
**     callback's result (and window.c's result_*) report running out of memory
**     while making it.
**  5. Exceptions, each documented where it is declared:
**     rnn_resolve reports on its context itself (it keeps its memo there)
**     and rnn_resolve_value returns the entry or NULL (both wrap registry.c's
**     resolve(), which follows rule 1);
**     a function that can only run out of memory returns NULL, as
**     sqlite3_malloc does (rnn_mprintf, rnn_info_json, rnn_f32_blob);
**     rnn_json_reader_next returns events, RNN_JSON_EV_ERROR and
**     RNN_JSON_EV_NOMEM among them, with the error in its rnn_err.
*/
#ifndef RNN_UTIL_H
#define RNN_UTIL_H
#include "sqlite3ext.h"
#include <stdarg.h>
#include <stddef.h>

#ifndef SQLITE_RESULT_SUBTYPE
#define SQLITE_RESULT_SUBTYPE 0x001000000 /* 3.45+; masked off by older SQLite */
#endif
#define RNN_SUBTYPE_F32 223   /* sqlite-vec's float32 vector subtype */
#define RNN_SUBTYPE_JSON 74   /* SQLite's JSON subtype ('J') */

/* An error on its way to the caller: functions report it on their context,
** virtual tables in zErrMsg. */
typedef struct rnn_err {
  int rc;       /* SQLITE_OK, SQLITE_ERROR, SQLITE_NOMEM, SQLITE_TOOBIG or SQLITE_INTERRUPT */
  char *msg;    /* sqlite3_malloc'd; NULL for NOMEM */
} rnn_err;

/*
** Messages. rnn_vmprintf formats like sqlite3_vmprintf (d i u x X o c with l/ll,
** f e E g G, s z q Q w p, flags, width and precision, '*'), plus:
**   %U   two arguments (const char *z, int n): user bytes z[0..n) (n < 0: up to
**        the NUL) in single quotes, NULL for a NULL z; %.40U shows at most 40
**        bytes, never cutting a character.
** Then, over the whole message, every byte that is not part of valid UTF-8 and
** every control byte (C0, DEL) becomes the four characters \xNN: a message is
** always valid UTF-8 (Python raises UnicodeDecodeError on anything else) and
** never cut short by a NUL. Backslashes are left alone, so escaping twice (a
** nested message quoted with %s) changes nothing. sqlite3_malloc'd; NULL on OOM.
*/
char *rnn_vmprintf(const char *fmt, va_list ap);
char *rnn_mprintf(const char *fmt, ...);
/* Length of the valid UTF-8 character starting at z[0..n), n >= 1, or 0. */
int rnn_utf8_len(const unsigned char *z, size_t n);

/* Record the first error (later ones are dropped); formats with rnn_vmprintf.
** Both return e->rc afterwards, for `return rnn_err_set(err, ...);`. */
int rnn_err_set(rnn_err *e, const char *fmt, ...);
int rnn_err_nomem(rnn_err *e);
/* Record SQLite's own error for the code rc, keeping the code: for
** SQLITE_INTERRUPT, the message "interrupted" (as SQLite's own). */
int rnn_err_code(rnn_err *e, int rc);
/* Prefix e's message (if it has one) with the formatted text; returns e->rc. */
int rnn_err_prefix(rnn_err *e, const char *fmt, ...);
/* Move src's error into dst unless dst has one already (then src's is
** dropped); src is left clear. Returns dst->rc. */
int rnn_err_take(rnn_err *dst, rnn_err *src);
/* Set an error message on ctx from a format (out of memory if it cannot be made). */
void rnn_result_errorf(sqlite3_context *ctx, const char *fmt, ...);
/* Report on ctx and clear. */
void rnn_err_result(sqlite3_context *ctx, rnn_err *e);
/* Report into a vtab's zErrMsg, clear, and return the SQLite code. */
int rnn_err_vtab(sqlite3_vtab *vtab, rnn_err *e);

/* "INTEGER", "REAL", "TEXT", "BLOB" or "NULL" for an SQLITE_* type code. */
const char *rnn_type_name(int type);

/* out[0..n) as an SQL value: REAL for n == 1, else a JSON array (subtype JSON). */
void rnn_result_output(sqlite3_context *ctx, const float *out, int n);
/* As rnn_result_output, but with names (JSON string literals, the model's
** output_names, or NULL) several outputs become a JSON object {name: value}. */
void rnn_result_output_named(sqlite3_context *ctx, const float *out, int n, char *const *names);
/* out[0..n) as JSON array text (sqlite3_malloc'd), or NULL on OOM. */
char *rnn_json_floats(const float *out, int n, int *len);
/* v[0..n) as a little-endian float32 BLOB (sqlite3_malloc'd), or NULL on OOM. */
unsigned char *rnn_f32_blob(const float *v, int n);
/* Threads a parallel call (rnn_scan, rnn_train) uses: the environment variable
** SQLITE_RNN_THREADS (clamped to 1..RNN_MAX_THREADS) when set, else the online
** CPUs, at most RNN_MAX_THREADS. Read at each call, so nothing is cached. */
#define RNN_MAX_THREADS 8
int rnn_threads(void);
#endif

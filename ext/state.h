/*
** state.h: state BLOBs as SQL values (state.c), for the functions that take or
** return a model's recurrent state: rnn_state (window.c), rnn_step, rnn_output
** (state.c), rnn_eval (eval.c), rnn_steps and rnn_forecast (tvf.c).
*/
#ifndef RNN_STATE_H
#define RNN_STATE_H
#include "registry.h"

/* SQLITE_OK, or the error recorded in err when e's model is bidirectional (its
** state has no meaning from row to row). */
int rnn_state_usable(rnn_err *err, const rnn_entry *e, const char *fn);
/* Load argument number `arg` (1-based), a state BLOB of e's model, into st,
** which rnn_state_init carved; a NULL value is the zero state. Returns SQLITE_OK,
** or the code of the error recorded in err: not a BLOB, not a state, another
** layout version, another model, or the wrong length, each said so. */
int rnn_state_read(rnn_err *err, rnn_entry *e, sqlite3_value *v, const char *fn, int arg, rnn_state *st);
/* st as the function's result: a state BLOB naming e's model. */
void rnn_result_state(sqlite3_context *ctx, rnn_entry *e, const rnn_state *st);
#endif

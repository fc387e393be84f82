/*
** functions.h: the SQL callbacks that rnn.c's registration table installs,
** exported by the files that implement them. Nothing else should call them.
*/
#ifndef RNN_FUNCTIONS_H
#define RNN_FUNCTIONS_H
#include "sqlite3ext.h"

/* window.c: rnn_predict, rnn_hidden and rnn_state, aggregate window functions. */
void rnn_predict_step(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_predict_inverse(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_predict_value(sqlite3_context *ctx);
void rnn_predict_final(sqlite3_context *ctx);
void rnn_hidden_step(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_hidden_inverse(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_hidden_value(sqlite3_context *ctx);
void rnn_hidden_final(sqlite3_context *ctx);
void rnn_state_win_step(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_state_win_inverse(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_state_win_value(sqlite3_context *ctx);
void rnn_state_win_final(sqlite3_context *ctx);

/* state.c: rnn_step and rnn_output, scalar functions over a state BLOB. */
void rnn_step_func(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_output_func(sqlite3_context *ctx, int argc, sqlite3_value **argv);

/* eval.c: rnn_eval and rnn_classify, scalar functions over a whole sequence. */
void rnn_eval_func(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_classify_func(sqlite3_context *ctx, int argc, sqlite3_value **argv);

/* seqagg.c: rnn_sequence, a plain aggregate. */
void rnn_sequence_step(sqlite3_context *ctx, int argc, sqlite3_value **argv);
void rnn_sequence_final(sqlite3_context *ctx);

/* tvf.c: the module behind the eponymous tables rnn_steps and rnn_forecast. */
extern const sqlite3_module rnn_tvf_module;

/* scan.c: the module behind the eponymous table rnn_scan, and the function
** its statement calls for every row it reads. */
extern const sqlite3_module rnn_scan_module;
void rnn_scan_feed(sqlite3_context *ctx, int argc, sqlite3_value **argv);

/* train.c: the module behind the eponymous table rnn_train. */
extern const sqlite3_module rnn_train_module;
#endif

/*
** poll.h: keeping one long call (rnn_eval, rnn_classify, rnn_steps,
** rnn_forecast) stoppable by sqlite3_interrupt() and progress handlers, and its
** bidirectional working memory bounded. See poll.c.
*/
#ifndef RNN_POLL_H
#define RNN_POLL_H
#include "cells.h"
#include "util.h"

/* Multiply-adds between two checks: a fraction of a millisecond of work on one
** core; a check (one step of a prepared SELECT 1, well under a microsecond)
** then costs under 0.1%. */
#define RNN_POLL_WORK (1u << 18)

typedef struct rnn_poll {
  sqlite3 *db;            /* the connection running the call (borrowed) */
  sqlite3_stmt *ping;     /* "SELECT 1", prepared at the first check; owned */
  int unchecked;          /* the statement could not be prepared: run unchecked */
  uint64_t done;          /* multiply-adds since the last check */
  uint64_t per_step;      /* multiply-adds of one step of the whole model */
  uint64_t per_cell;      /* of one step of one layer in one direction */
  int rc;                 /* SQLITE_OK, or the code that stopped the call */
} rnn_poll;

void rnn_poll_init(rnn_poll *p, sqlite3 *db, const rnn_net *net);
/* Count one step of the whole model (rnn_step): SQLITE_OK, or the code that
** stops the call (rule 4): SQLITE_INTERRUPT, or what else stopped the check
** statement, e.g. SQLITE_NOMEM. Kept in p->rc. */
int rnn_poll_step(rnn_poll *p);
/* The same for one cell step; the rnn_tick of the bidirectional passes (cells.h),
** which hand its code back. */
int rnn_poll_cell(void *p);
/* Record why the call stopped in err ("interrupted" with SQLITE_INTERRUPT, as
** SQLite's own) and return the code. */
int rnn_poll_err(const rnn_poll *p, rnn_err *err);
void rnn_poll_finish(rnn_poll *p);

/* SQLITE_OK if a bidirectional pass over T steps fits RNN_MAX_BIDIR_FLOATS
** (cells.h), else the code of the limit error for fn recorded in err. */
int rnn_bidir_fits(rnn_err *err, const rnn_net *net, int64_t T, int last_only, const char *fn);
#endif

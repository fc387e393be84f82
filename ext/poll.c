/*
** poll.c: the guards of a long call, in SQLite terms for cells.c (which has
** none): stopping when the connection asks it to (rules 1-4), and refusing a
** bidirectional pass whose working memory would pass its limit (rule 5).
**
** A single rnn_eval() over a long sequence runs inside one VDBE instruction, so
** neither sqlite3_interrupt() nor a progress handler can reach it: SQLite checks
** both only between instructions. Every RNN_POLL_WORK multiply-adds the call
** steps a trivial nested statement on its own connection. Stepping it runs
** SQLite's own checks: it fails with SQLITE_INTERRUPT when the connection was
** interrupted (the flag stays set while the outer statement runs), and its
** instructions count towards the progress handler, which stops it the same way
** when it returns non-zero. This works on every SQLite the extension loads into
** (sqlite3_is_interrupted() is 3.41+ and would not run progress handlers).
**
** Rules kept:
**  1. Checks are spaced by work, not by steps: a big model checks every step or
**     so, a small one every few thousand steps.
**  2. A call shorter than one interval prepares nothing.
**  3. If the check statement cannot be prepared (an authorizer refusing SELECT)
**     the call runs unchecked, as before; out of memory stops it.
**  4. A stopped call is the error SQLITE_INTERRUPT, "interrupted", as SQLite's own.
**  5. A bidirectional pass keeps what its outputs need across the whole sequence
**     (rnn_bidir_seq_floats: nothing for one layer's last output, one or two
**     hidden states per step otherwise); more than RNN_MAX_BIDIR_FLOATS is
**     refused before anything is allocated.
*/
#include "poll.h"
SQLITE_EXTENSION_INIT3

void rnn_poll_init(rnn_poll *p, sqlite3 *db, const rnn_net *n) {
  uint64_t per = 0;
  for (int l = 0; l < n->layers; l++) {
    per += (uint64_t)(n->layer[l].in + n->hout) * (uint64_t)n->ldg;
    if (n->proj) per += (uint64_t)n->hidden * (uint64_t)n->ldp;
  }
  per *= (uint64_t)n->dirs;
  per += (uint64_t)(n->cell == CELL_SEED ? n->n_in + n->hidden : n->dirs * n->hout) * (uint64_t)n->ldo;
  p->db = db;
  p->ping = NULL;
  p->unchecked = 0;
  p->done = 0;
  p->per_step = per;
  p->per_cell = per / (uint64_t)(n->layers * n->dirs) + 1;
  p->rc = SQLITE_OK;
}

/* SQLITE_OK, or the code that stops the call (kept in p->rc). */
static int check(rnn_poll *p) {
  p->done = 0;
  if (p->unchecked) return SQLITE_OK;
  if (!p->ping) {
    int rc = sqlite3_prepare_v2(p->db, "SELECT 1", -1, &p->ping, NULL);
    if (rc != SQLITE_OK) { /* rule 3 */
      sqlite3_finalize(p->ping);
      p->ping = NULL;
      p->unchecked = 1;
      if (rc == SQLITE_NOMEM) p->rc = rc;
      return p->rc;
    }
  }
  int rc = sqlite3_step(p->ping);
  sqlite3_reset(p->ping);
  if (rc == SQLITE_ROW || rc == SQLITE_DONE) return SQLITE_OK;
  p->rc = rc; /* SQLITE_INTERRUPT for sqlite3_interrupt() and progress handlers alike */
  return p->rc;
}

int rnn_poll_step(rnn_poll *p) {
  p->done += p->per_step;
  return p->done >= RNN_POLL_WORK ? check(p) : SQLITE_OK;
}

int rnn_poll_cell(void *arg) {
  rnn_poll *p = arg;
  p->done += p->per_cell;
  return p->done >= RNN_POLL_WORK ? check(p) : SQLITE_OK;
}

int rnn_poll_err(const rnn_poll *p, rnn_err *err) {
  return rnn_err_code(err, p->rc);
}

void rnn_poll_finish(rnn_poll *p) {
  sqlite3_finalize(p->ping);
  p->ping = NULL;
}

int rnn_bidir_fits(rnn_err *err, const rnn_net *n, int64_t T, int last_only, const char *fn) {
  uint64_t f = rnn_bidir_seq_floats(n, T, last_only);
  if (f <= RNN_MAX_BIDIR_FLOATS) return SQLITE_OK;
  return rnn_err_set(err, "%s(): %lld steps through this %d-layer bidirectional model need %llu MiB of working "
                     "memory, more than the limit of %u MiB", fn, (long long)T, n->layers,
                     (unsigned long long)((f * sizeof(float) + (1u << 20) - 1) >> 20),
                     (unsigned)((RNN_MAX_BIDIR_FLOATS * sizeof(float)) >> 20));
}

/*
** scan.h: what rnn_scan's SQLite side (scan.c) and its arithmetic
** (scan_compute.c) share: a group, i.e. up to SCAN_B consecutive series of the
** table in (key, order) order, their rows, and the outputs computed for them.
** No SQLite types: scan_compute.c is pure C, like cells.c.
*/
#ifndef RNN_SCAN_H
#define RNN_SCAN_H
#include "cells.h"

#define SCAN_B 16     /* series of one group, run in lockstep */
#define SCAN_STEPS 16 /* steps whose rows are gathered (and standardised) at once */

/* A key or order value as read: numbers inline, TEXT and BLOB bytes in the
** group's arena (they live as long as the group's fill). */
typedef struct scan_val {
  int type;       /* SQLITE_INTEGER .. SQLITE_NULL (sqlite3.h's numbering) */
  int len;        /* bytes of TEXT or BLOB */
  union {
    int64_t i;
    double d;
    size_t off;   /* into the group's arena */
  } u;
} scan_val;

typedef struct scan_series {
  scan_val key;   /* the key of its first row */
  int64_t row0;   /* its rows are row0 .. row0 + n - 1 of the group */
  int64_t n;
  int cont_in;    /* the series began in the previous group: its state continues from there */
  int cont_out;   /* it goes on in the next group */
} scan_series;

enum { SCAN_FREE, SCAN_READY, SCAN_BUSY, SCAN_DONE };
#define SCAN_USE 1    /* flag: the row takes a step (no NULL feature) */
#define SCAN_OUT 2    /* flag: the row has an output (a step was taken by then) */
#define SCAN_OWNKEY 4 /* flag: the row's key is a number equal to its series' key but not the same (1.0 and 1): in okey */

typedef struct scan_group scan_group;
struct scan_group {
  int nser;
  scan_series ser[SCAN_B];
  int64_t nrow, cap;     /* rows filled; capacity of the arrays below */
  float *x;              /* [cap][I] raw features; owned */
  float *out;            /* [cap][O] outputs; owned */
  scan_val *ord;         /* [cap] order values; owned */
  scan_val *okey;        /* [cap] the keys of SCAN_OWNKEY rows (numbers), nothing else written; owned */
  unsigned char *flag;   /* [cap] SCAN_USE | SCAN_OUT; owned */
  char *arena;           /* TEXT and BLOB bytes of keys and order values; owned */
  size_t alen, acap;
  float *stmem;          /* the states' memory; owned */
  rnn_state st[SCAN_B];  /* one per series, carved from stmem */
  scan_group *pred;      /* the group before it in the table: its last series continues here if ser[0].cont_in */
  int status;            /* SCAN_*, under the cursor's mutex when threads run */
  int carry_taken;       /* with ser[nser-1].cont_out: the next group copied the state, so this one may be reused */
};

/* Per-thread scratch of scan_compute, sized by scan_work_floats. */
typedef struct scan_work {
  float *xs;   /* [SCAN_STEPS * SCAN_B][I] standardised layer-0 inputs */
  float *g;    /* [SCAN_B][ldg] gates (GRU: W_ih x + b_ih) */
  float *gh;   /* [SCAN_B][ldg] GRU W_hh h + b_hh; LSTM output before its projection */
  float *pm;   /* [SCAN_B][ldp] projections */
  float *ho;   /* [SCAN_B][ldo] head outputs */
  float *o;    /* [ldo] output scratch */
  int bat[SCAN_STEPS * SCAN_B]; /* series of each row of xs */
} scan_work;

size_t rnn_scan_work_floats(const rnn_net *n);
void rnn_scan_work_init(const rnn_net *n, scan_work *w, float *mem);
/* Compute every row of g (its series' states continue from g->pred's last
** when ser[0].cont_in, which the caller has waited for): each row's output
** bit for bit what rnn_step and rnn_output give it alone. */
void rnn_scan_compute(const rnn_net *n, scan_group *g, scan_work *w);
#endif

/*
** train_pool.h: the worker threads of one rnn_train call (train_pool.c).
** rnn_loss_grad_pool (grad.c) runs a batch's chunks on them.
*/
#ifndef RNN_TRAIN_POOL_H
#define RNN_TRAIN_POOL_H

#include "util.h"

#define RNN_POOL_MAX_THREADS RNN_MAX_THREADS

typedef struct rnn_pool rnn_pool;
/* One job: job in 0..n_jobs-1, worker in 0..rnn_pool_size-1 (0: the caller's
** thread); no two jobs run on the same worker at the same time. */
typedef void (*rnn_pool_fn)(void *arg, int job, int worker);

/* A pool of `threads` workers counting the caller's thread, or NULL (out of
** memory, or threads <= 1): callers then run every job on their own thread,
** which gives the same results. Fewer threads may start than asked. */
rnn_pool *rnn_pool_start(int threads);
int rnn_pool_size(const rnn_pool *pool);  /* 1 for NULL */
/* Run jobs 0..n_jobs-1 on workers 0..workers-1 only (the caller's thread,
** worker 0, takes part) and return when all are done. pool NULL, or workers
** 1: in order on the caller's thread. */
void rnn_pool_run(rnn_pool *pool, int n_jobs, int workers, rnn_pool_fn fn, void *arg);
void rnn_pool_stop(rnn_pool *pool);  /* joins the threads; NULL is a no-op */
#endif

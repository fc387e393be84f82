/*
** train_pool.c: the worker threads of one rnn_train call (train_pool.h). The
** cursor starts them with the call and joins them when it resets; between
** batches they sleep on a condition variable.
**
** Rules kept:
**  1. Workers run only the job function: no SQLite call, no allocation. Which
**     worker takes which job varies from run to run, so a job's result must
**     not depend on it (grad.c gives each job its own output slot and each
**     worker its own scratch).
**  2. No process-global state: everything lives in the rnn_pool.
*/
#include "train_pool.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct pool_worker {
  struct rnn_pool *pool;
  pthread_t th;
  int id;                 /* 1.. (0 is the caller's thread) */
} pool_worker;

struct rnn_pool {
  pthread_mutex_t mu;
  pthread_cond_t go;      /* a new round of jobs, or quit */
  pthread_cond_t done;    /* a worker finished its part of the round */
  pool_worker w[RNN_POOL_MAX_THREADS];
  int started;            /* workers running, besides the caller's thread */
  unsigned long round;    /* counts rnn_pool_run calls */
  int quit;
  rnn_pool_fn fn;
  void *arg;
  int n_jobs, next;       /* jobs of this round; the next one to take */
  int workers;            /* only workers 0..workers-1 take this round's jobs */
  int busy;               /* workers not yet through this round */
};

/* Take and run jobs until none is left; called and returns with mu held. */
static void drain(rnn_pool *p, int worker) {
  while (worker < p->workers && p->next < p->n_jobs) {
    int job = p->next++;
    pthread_mutex_unlock(&p->mu);
    p->fn(p->arg, job, worker);
    pthread_mutex_lock(&p->mu);
  }
}

static void *worker_main(void *arg) {
  pool_worker *w = arg;
  rnn_pool *p = w->pool;
  unsigned long seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->quit && p->round == seen) pthread_cond_wait(&p->go, &p->mu);
    if (p->quit) break;
    seen = p->round;
    drain(p, w->id);
    if (--p->busy == 0) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

rnn_pool *rnn_pool_start(int threads) {
  if (threads <= 1) return NULL;
  rnn_pool *p = sqlite3_malloc64(sizeof(*p));
  if (!p) return NULL;
  memset(p, 0, sizeof(*p));
  if (pthread_mutex_init(&p->mu, NULL)) goto fail_mu;
  if (pthread_cond_init(&p->go, NULL)) goto fail_go;
  if (pthread_cond_init(&p->done, NULL)) goto fail_done;
  if (threads > RNN_POOL_MAX_THREADS) threads = RNN_POOL_MAX_THREADS;
  for (int i = 1; i < threads; i++) {
    pool_worker *w = &p->w[p->started];
    w->pool = p;
    w->id = i;
    if (pthread_create(&w->th, NULL, worker_main, w)) break;
    p->started++;
  }
  if (p->started > 0) return p;
  pthread_cond_destroy(&p->done);
fail_done:
  pthread_cond_destroy(&p->go);
fail_go:
  pthread_mutex_destroy(&p->mu);
fail_mu:
  sqlite3_free(p);
  return NULL;
}

int rnn_pool_size(const rnn_pool *pool) { return pool ? pool->started + 1 : 1; }

void rnn_pool_run(rnn_pool *p, int n_jobs, int workers, rnn_pool_fn fn, void *arg) {
  if (!p || n_jobs <= 1 || workers <= 1) {
    for (int j = 0; j < n_jobs; j++) fn(arg, j, 0);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->fn = fn;
  p->arg = arg;
  p->n_jobs = n_jobs;
  p->next = 0;
  p->workers = workers;
  p->busy = p->started;
  p->round++;
  pthread_cond_broadcast(&p->go);
  drain(p, 0);
  while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

void rnn_pool_stop(rnn_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->quit = 1;
  pthread_cond_broadcast(&p->go);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->started; i++) pthread_join(p->w[i].th, NULL);
  pthread_cond_destroy(&p->done);
  pthread_cond_destroy(&p->go);
  pthread_mutex_destroy(&p->mu);
  sqlite3_free(p);
}

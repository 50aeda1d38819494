/* worker.h -- threads that apply batches to Redis, each on its own connection.
 *
 * The main thread polls Kafka, parses and hands every event to the worker
 * that owns its customer's shard (shard % workers), so a customer is only
 * ever updated by one worker, in the order its events were handed over; the
 * compare-and-set in Redis stays the guarantee against everyone else.  Each
 * worker double-buffers: the main thread fills one job while the worker
 * applies the other.  A completed job goes back to the main thread, which
 * produces its outputs, marks its input messages done, merges its
 * statistics and reuses it; a failed one is kept and submitted again.
 *
 * Ownership: the main thread owns every job it holds (filling, completed,
 * failed) and a worker owns the job it was given until it hands it back.
 * The pool's mutex guards only the handoff slots, the hold flag and each
 * worker's published statistics; batches are never touched under it.
 * Workers read the config and the rules the main thread owns while they
 * apply: the main thread changes them only between workers_hold() and
 * workers_release(). */
#ifndef CLVD_WORKER_H
#define CLVD_WORKER_H

#include <pthread.h>

#include "cache.h"
#include "config.h"
#include "consumer.h"
#include "log.h"
#include "metrics.h"
#include "stages.h"
#include "state.h"
#include "store.h"

#define CLV_MAX_WORKERS 16

/* A batch and what the main thread needs once it is applied. */
struct clv_job {
    struct clv_batch batch;
    struct clv_msgref *refs; /* the input messages of the batch's events */
    int nrefs, refs_cap;
    clv_ms min_ts;   /* earliest event time in the batch, 0 if none */
    int nadvances;   /* customers queued by the sweeper */
    int rc;          /* set by the worker: 0 applied, -1 not (retry it) */
    int failures;    /* the main thread's count of failed attempts */
    int store_fatal; /* Redis holds another deployment */
    char err[CLV_ERRLEN];
};

void job_init(struct clv_job *j);
void job_free(struct clv_job *j);
void job_reset(struct clv_job *j);
/* Events or advances queued, i.e. something to apply. */
int job_pending(const struct clv_job *j);
void job_add_ref(struct clv_job *j, const struct clv_msgref *ref);

/* A worker's connection, as last published by the worker thread. */
struct clv_store_stats {
    uint64_t commands, round_trips;
    uint64_t reconnects; /* connections made after the first, since the last take */
    int up;
    struct clv_histogram rtt; /* round trips not yet taken by the main thread */
};

struct clv_workers;

struct clv_worker {
    struct clv_workers *pool;
    int index;
    pthread_t thread;
    int started;
    pthread_cond_t wake;
    /* the worker thread's alone once started */
    struct clv_store store;
    struct clv_histogram rtt;     /* store.rtt points here */
    struct clv_state_cache cache; /* the states this worker wrote last */
    struct clv_job jobs[2];
    /* guarded by pool->mu */
    struct clv_job *todo, *done;
    int active; /* applying or connecting, with the mutex released */
    struct clv_store_stats stats;
    /* the main thread's alone */
    struct clv_job *filling;
    struct clv_job *inflight; /* handed to the worker, not yet collected */
    struct clv_job *failed;   /* to be submitted again at retry_at */
    clv_ms retry_at;
};

struct clv_workers {
    int n;
    struct clv_worker w[CLV_MAX_WORKERS];
    pthread_mutex_t mu;
    pthread_cond_t progress; /* a job completed, or a worker went idle */
    int stop, hold;
    /* owned by the main thread; read by workers while not held */
    const struct clv_config *cfg;
    const struct clv_rules *rules;
    const struct clv_log *log;
};

/* Start n (1..CLV_MAX_WORKERS) workers, each connecting to Redis on its own
 * (store_ensure with backoff, again whenever it is idle and disconnected)
 * and with its share of processing.state_cache_mb of state cache.
 * The threads block every signal: the main thread handles them. */
int workers_start(struct clv_workers *p, int n, const struct clv_config *cfg,
                  const struct clv_rules *rules, const struct clv_log *lg, char *err,
                  size_t errlen);
/* Stop the threads (a job being applied is finished first) and join them.
 * Jobs handed back meanwhile stay collectable. */
void workers_stop(struct clv_workers *p);
/* After workers_stop(): close the connections, free the jobs. */
void workers_free(struct clv_workers *p);

/* The worker owning a shard. */
struct clv_worker *workers_for_shard(struct clv_workers *p, uint32_t shard);

/* Main thread: hand the worker its next job if it is idle -- the failed one
 * once `now_mono` reaches its retry time, else the filling one if it holds
 * something (the other buffer then becomes the filling one).  Returns 1 if
 * a job was handed over. */
int worker_dispatch(struct clv_worker *w, clv_ms now_mono);
/* Main thread: the job the worker finished, or NULL.  Give it back with
 * worker_recycle() (applied) or worker_retry() (failed). */
struct clv_job *worker_collect(struct clv_worker *w);
void worker_recycle(struct clv_worker *w, struct clv_job *j);
void worker_retry(struct clv_worker *w, struct clv_job *j, clv_ms at_mono);
/* A job handed over and not yet collected, or a failed one waiting. */
int worker_busy(const struct clv_worker *w);

/* Some worker has a job to collect. */
int workers_any_done(struct clv_workers *p);
/* Wait up to timeout_ms until some worker has a job to collect. */
void workers_wait(struct clv_workers *p, int timeout_ms);

/* Quiesce: on return no worker applies or connects until workers_release()
 * (a job being applied is finished first). */
void workers_hold(struct clv_workers *p);
void workers_release(struct clv_workers *p);

/* Copy a worker's published statistics; its round trips and reconnects are
 * moved into `out` (counted once, by whoever takes them). */
void worker_take_stats(struct clv_worker *w, struct clv_store_stats *out);

#endif

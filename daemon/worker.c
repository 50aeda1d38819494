/* worker.c -- batch-applying threads and their handoff; see worker.h. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- jobs --------------------------------------------------------------------- */

void job_init(struct clv_job *j)
{
    memset(j, 0, sizeof(*j));
    batch_init(&j->batch);
}

void job_free(struct clv_job *j)
{
    batch_free(&j->batch);
    free(j->refs);
    job_init(j);
}

void job_reset(struct clv_job *j)
{
    batch_reset(&j->batch);
    j->nrefs = 0;
    j->min_ts = 0;
    j->nadvances = 0;
    j->rc = 0;
    j->failures = 0;
    j->store_fatal = 0;
    j->err[0] = '\0';
}

int job_pending(const struct clv_job *j)
{
    return j->batch.nitems > 0 || j->nrefs > 0;
}

void job_add_ref(struct clv_job *j, const struct clv_msgref *ref)
{
    if (j->nrefs == j->refs_cap) {
        int ncap = j->refs_cap ? j->refs_cap * 2 : 256;
        struct clv_msgref *n = realloc(j->refs, sizeof(*n) * (size_t)ncap);
        if (n == NULL)
            abort(); /* as the batch itself: a few hundred kilobytes or a restart */
        j->refs = n;
        j->refs_cap = ncap;
    }
    j->refs[j->nrefs++] = *ref;
}

/* ---- the worker thread: holds pool->mu except while it works -------------------- */

/* What the main thread may read: the connection's counters, and the round
 * trips timed since the last publication. */
static void publish_stats(struct clv_worker *w)
{
    struct clv_store_stats *s = &w->stats;

    s->commands = w->store.commands;
    s->round_trips = w->store.round_trips;
    s->up = store_connected(&w->store);
    if (w->store.reconnected) {
        w->store.reconnected = 0;
        s->reconnects++;
    }
    histogram_merge(&s->rtt, &w->rtt);
    histogram_init_redis(&w->rtt);
}

static void apply_job(struct clv_worker *w, struct clv_job *j)
{
    const struct clv_workers *p = w->pool;

    j->rc = state_apply_batch(&w->store, &j->batch, p->rules, p->cfg, j->err, sizeof(j->err));
    j->store_fatal = w->store.fatal;
}

/* An idle worker keeps its connection, so that redis_up tells the truth and
 * the next batch does not pay for the connect. */
static int wants_connection(const struct clv_worker *w)
{
    return !store_connected(&w->store) && !w->store.fatal && clv_mono_ms() >= w->store.next_attempt;
}

static void connect_store(struct clv_worker *w)
{
    char err[CLV_ERRLEN];

    /* failures are the main thread's to report: its own connection sees them too */
    store_ensure(&w->store, err, sizeof(err));
}

static struct timespec deadline_in(clv_ms ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Idle: sleep until signalled, or until the reconnect backoff ends. */
static void idle_wait(struct clv_worker *w)
{
    struct clv_workers *p = w->pool;
    struct timespec ts;
    clv_ms wait;

    if (store_connected(&w->store) || w->store.fatal) {
        pthread_cond_wait(&w->wake, &p->mu);
        return;
    }
    wait = w->store.next_attempt - clv_mono_ms();
    ts = deadline_in(wait < 1 ? 1 : wait);
    pthread_cond_timedwait(&w->wake, &p->mu, &ts);
}

static void *worker_main(void *arg)
{
    struct clv_worker *w = arg;
    struct clv_workers *p = w->pool;

    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        struct clv_job *j = p->hold ? NULL : w->todo;
        int connect = j == NULL && !p->hold && wants_connection(w);

        if (j == NULL && !connect) {
            idle_wait(w);
            continue;
        }
        w->todo = NULL;
        w->active = 1;
        pthread_mutex_unlock(&p->mu);
        if (j != NULL)
            apply_job(w, j);
        else
            connect_store(w);
        pthread_mutex_lock(&p->mu);
        w->active = 0;
        if (j != NULL)
            w->done = j;
        publish_stats(w);
        pthread_cond_broadcast(&p->progress);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- starting and stopping ------------------------------------------------------- */

static int init_cond(pthread_cond_t *c)
{
    pthread_condattr_t a;
    int rc;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

static int init_worker(struct clv_workers *p, int i, int n, char *err, size_t errlen)
{
    struct clv_worker *w = &p->w[i];

    memset(w, 0, sizeof(*w));
    w->pool = p;
    w->index = i;
    init_cond(&w->wake);
    store_init(&w->store, &p->cfg->redis, p->log);
    histogram_init_redis(&w->rtt);
    histogram_init_redis(&w->stats.rtt);
    w->store.rtt = &w->rtt;
    job_init(&w->jobs[0]);
    job_init(&w->jobs[1]);
    w->filling = &w->jobs[0];
    /* one cache for both jobs: only this worker's thread applies them */
    if (cache_init(&w->cache, ((size_t)p->cfg->processing_state_cache_mb << 20) / (size_t)n) != 0) {
        clv_seterr(err, errlen, "worker %d: no memory for the state cache", i + 1);
        return -1;
    }
    w->jobs[0].batch.cache = &w->cache;
    w->jobs[1].batch.cache = &w->cache;
    return 0;
}

/* Signals go to the main thread, which polls its flags; a worker must not
 * be interrupted in the middle of a Redis read. */
static int spawn(struct clv_worker *w, char *err, size_t errlen)
{
    sigset_t all, old;
    char name[32];
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        clv_seterr(err, errlen, "cannot start worker thread %d: %s", w->index + 1, strerror(rc));
        return -1;
    }
    w->started = 1;
    /* for top -H and perf; best effort, within the kernel's 15 bytes */
    snprintf(name, sizeof(name), "clvd-worker%d", w->index + 1);
    name[15] = '\0';
    pthread_setname_np(w->thread, name);
    return 0;
}

int workers_start(struct clv_workers *p, int n, const struct clv_config *cfg,
                  const struct clv_rules *rules, const struct clv_log *lg, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    if (n < 1 || n > CLV_MAX_WORKERS) {
        clv_seterr(err, errlen, "processing.workers: %d is out of range (1 .. %d)", n,
                   CLV_MAX_WORKERS);
        return -1;
    }
    p->cfg = cfg;
    p->rules = rules;
    p->log = lg;
    pthread_mutex_init(&p->mu, NULL);
    init_cond(&p->progress);
    p->n = n;
    for (int i = 0; i < n; i++)
        if (init_worker(p, i, n, err, errlen) != 0)
            return -1;
    for (int i = 0; i < n; i++)
        if (spawn(&p->w[i], err, errlen) != 0)
            return -1; /* the caller's workers_stop() and workers_free() clean up */
    return 0;
}

void workers_stop(struct clv_workers *p)
{
    if (p->n == 0)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    for (int i = 0; i < p->n; i++)
        pthread_cond_signal(&p->w[i].wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        if (p->w[i].started) {
            pthread_join(p->w[i].thread, NULL);
            p->w[i].started = 0;
        }
}

void workers_free(struct clv_workers *p)
{
    if (p->n == 0)
        return;
    for (int i = 0; i < p->n; i++) {
        struct clv_worker *w = &p->w[i];
        if (w->pool == NULL)
            continue; /* the start failed before this one */
        store_disconnect(&w->store);
        job_free(&w->jobs[0]);
        job_free(&w->jobs[1]);
        cache_free(&w->cache);
        pthread_cond_destroy(&w->wake);
    }
    pthread_cond_destroy(&p->progress);
    pthread_mutex_destroy(&p->mu);
    p->n = 0;
}

/* ---- the main thread's side ------------------------------------------------------- */

struct clv_worker *workers_for_shard(struct clv_workers *p, uint32_t shard)
{
    return &p->w[shard % (uint32_t)p->n];
}

static struct clv_job *other_job(struct clv_worker *w, const struct clv_job *j)
{
    return j == &w->jobs[0] ? &w->jobs[1] : &w->jobs[0];
}

int worker_dispatch(struct clv_worker *w, clv_ms now_mono)
{
    struct clv_workers *p = w->pool;
    struct clv_job *j = NULL;

    if (w->inflight != NULL)
        return 0;
    if (w->failed != NULL) {
        /* before anything queued after it: a customer's events stay in order */
        if (now_mono < w->retry_at)
            return 0;
        j = w->failed;
        w->failed = NULL;
    } else if (job_pending(w->filling)) {
        j = w->filling;
        w->filling = other_job(w, j); /* free: nothing in flight or failed */
    } else {
        return 0;
    }
    pthread_mutex_lock(&p->mu);
    w->todo = j;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&p->mu);
    w->inflight = j;
    return 1;
}

struct clv_job *worker_collect(struct clv_worker *w)
{
    struct clv_workers *p = w->pool;
    struct clv_job *j;

    if (w->inflight == NULL)
        return NULL;
    pthread_mutex_lock(&p->mu);
    j = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&p->mu);
    if (j != NULL)
        w->inflight = NULL;
    return j;
}

void worker_recycle(struct clv_worker *w, struct clv_job *j)
{
    (void)w;
    job_reset(j);
}

void worker_retry(struct clv_worker *w, struct clv_job *j, clv_ms at_mono)
{
    w->failed = j;
    w->retry_at = at_mono;
}

int worker_busy(const struct clv_worker *w)
{
    return w->inflight != NULL || w->failed != NULL;
}

static int any_done(const struct clv_workers *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->w[i].done != NULL)
            return 1;
    return 0;
}

int workers_any_done(struct clv_workers *p)
{
    int done;

    pthread_mutex_lock(&p->mu);
    done = any_done(p);
    pthread_mutex_unlock(&p->mu);
    return done;
}

void workers_wait(struct clv_workers *p, int timeout_ms)
{
    struct timespec ts = deadline_in(timeout_ms);

    pthread_mutex_lock(&p->mu);
    if (!any_done(p))
        pthread_cond_timedwait(&p->progress, &p->mu, &ts);
    pthread_mutex_unlock(&p->mu);
}

static int any_active(const struct clv_workers *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->w[i].active)
            return 1;
    return 0;
}

void workers_hold(struct clv_workers *p)
{
    pthread_mutex_lock(&p->mu);
    p->hold = 1;
    while (any_active(p))
        pthread_cond_wait(&p->progress, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void workers_release(struct clv_workers *p)
{
    pthread_mutex_lock(&p->mu);
    p->hold = 0;
    for (int i = 0; i < p->n; i++)
        pthread_cond_signal(&p->w[i].wake);
    pthread_mutex_unlock(&p->mu);
}

void worker_take_stats(struct clv_worker *w, struct clv_store_stats *out)
{
    struct clv_workers *p = w->pool;

    pthread_mutex_lock(&p->mu);
    *out = w->stats;
    w->stats.reconnects = 0;
    histogram_init_redis(&w->stats.rtt);
    pthread_mutex_unlock(&p->mu);
}

/* state.c -- batched customer updates: read, compute, compare-and-set. */
#define _GNU_SOURCE /* qsort_r */
#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

#define MAX_CAS_ROUNDS 32

/* ---- batches ---------------------------------------------------------------- */

void batch_init(struct clv_batch *b)
{
    memset(b, 0, sizeof(*b));
    sbuf_init(&b->out);
    sbuf_init(&b->ids);
}

void batch_free(struct clv_batch *b)
{
    sbuf_free(&b->evbuf);
    free(b->ev_off);
    free(b->ev_next);
    free(b->items);
    free(b->index);
    free(b->msgs);
    sbuf_free(&b->blobs);
    sbuf_free(&b->states);
    free(b->trs);
    free(b->work);
    free(b->cas.args);
    free(b->cas.argv);
    free(b->cas.argvlen);
    sbuf_free(&b->cas.text);
    sbuf_free(&b->out);
    sbuf_free(&b->ids);
    batch_init(b);
}

/* The buffers only a batch being applied uses -- its rendered outputs, the
 * states read and written -- are given back when large: a worker's job
 * spends half its life being filled, when it needs none of them, and with
 * glibc's mmap threshold fixed (main.c) a large block freed goes back to the
 * kernel.  At 1 M customers, where most customers of a batch are written
 * and many have an output, that was 16 MB of peak RSS (performance.md).
 * Small ones are kept, so that batches of a steady stream do not fault
 * their pages in again each time. */
#define BATCH_KEEP_BYTES (256 << 10)

static void reset_or_release(struct clv_sbuf *s)
{
    if (s->cap > BATCH_KEEP_BYTES)
        sbuf_free(s);
    else
        sbuf_reset(s);
}

void batch_reset(struct clv_batch *b)
{
    b->nevents = b->nitems = b->nmsgs = b->ntrs = 0;
    sbuf_reset(&b->evbuf);
    if (b->index)
        memset(b->index, -1, sizeof(int) * (size_t)b->index_cap);
    reset_or_release(&b->out);
    reset_or_release(&b->blobs);
    reset_or_release(&b->states);
    sbuf_reset(&b->ids);
    memset(&b->stats, 0, sizeof(b->stats));
}

static void *grow(void *p, int *cap, int need, size_t elem)
{
    int n = *cap ? *cap : 64;

    if (need <= *cap)
        return p;
    while (n < need)
        n *= 2;
    p = realloc(p, (size_t)n * elem);
    if (p == NULL)
        abort();
    *cap = n;
    return p;
}

static uint64_t id_hash(const char *id, size_t len)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void index_rebuild(struct clv_batch *b, int cap)
{
    free(b->index);
    b->index = malloc(sizeof(int) * (size_t)cap);
    if (b->index == NULL)
        abort();
    b->index_cap = cap;
    memset(b->index, -1, sizeof(int) * (size_t)cap);
    for (int i = 0; i < b->nitems; i++) {
        size_t h = id_hash(batch_item_id(b, &b->items[i]), b->items[i].idlen) & (size_t)(cap - 1);
        while (b->index[h] >= 0)
            h = (h + 1) & (size_t)(cap - 1);
        b->index[h] = i;
    }
}

/* The item of a customer, created on first sight. */
static struct clv_item *item_for(struct clv_batch *b, const char *id, size_t idlen, uint32_t shards)
{
    size_t h;
    struct clv_item *it;

    if (b->index_cap < 2 * (b->nitems + 1))
        index_rebuild(b, b->index_cap ? b->index_cap * 2 : 256);
    h = id_hash(id, idlen) & (size_t)(b->index_cap - 1);
    for (; b->index[h] >= 0; h = (h + 1) & (size_t)(b->index_cap - 1)) {
        it = &b->items[b->index[h]];
        if (it->idlen == idlen && memcmp(batch_item_id(b, it), id, idlen) == 0)
            return it;
    }
    b->items = grow(b->items, &b->items_cap, b->nitems + 1, sizeof(*b->items));
    b->index[h] = b->nitems;
    it = &b->items[b->nitems++];
    it->id_off = b->ids.len;
    sbuf_append(&b->ids, id, idlen);
    sbuf_append(&b->ids, "", 1);
    it->idlen = idlen;
    it->shard = keys_shard_of(id, idlen, shards);
    it->ev_head = it->ev_tail = -1;
    it->advance_to = 0;
    it->input_ts = 0;
    it->done = 0;
    return it;
}

/* An event as a batch keeps it; event id and channel follow it. */
struct packed_event {
    clv_ms ts, received, src_ts;
    double amount;
    int64_t src_offset, src_frontier;
    int32_t src_partition;
    int8_t type, src_topic;
    uint8_t event_id_len, channel_len;
};

static void pack_event(struct clv_sbuf *buf, const struct clv_event *ev)
{
    size_t chlen = strlen(ev->channel);
    struct packed_event p = {ev->ts,
                             ev->received,
                             ev->src_ts,
                             ev->amount,
                             ev->src_offset,
                             ev->src_frontier,
                             ev->src_partition,
                             (int8_t)ev->type,
                             ev->src_topic,
                             (uint8_t)ev->event_id_len,
                             (uint8_t)chlen};

    sbuf_append(buf, &p, sizeof(p));
    sbuf_append(buf, ev->event_id, ev->event_id_len);
    sbuf_append(buf, ev->channel, chlen);
}

/* Into b->ev, with the customer id of the item the event belongs to. */
static const struct clv_event *unpack_event(struct clv_batch *b, int e, const struct clv_item *it)
{
    const char *at = b->evbuf.buf + b->ev_off[e];
    struct clv_event *ev = &b->ev;
    struct packed_event p;

    memcpy(&p, at, sizeof(p));
    at += sizeof(p);
    ev->type = (enum clv_event_type)p.type;
    ev->ts = p.ts;
    ev->received = p.received;
    ev->amount = p.amount;
    memcpy(ev->event_id, at, p.event_id_len);
    ev->event_id[p.event_id_len] = '\0';
    ev->event_id_len = p.event_id_len;
    memcpy(ev->channel, at + p.event_id_len, p.channel_len);
    ev->channel[p.channel_len] = '\0';
    memcpy(ev->customer_id, batch_item_id(b, it), it->idlen + 1);
    ev->customer_id_len = it->idlen;
    ev->src_topic = p.src_topic;
    ev->src_partition = p.src_partition;
    ev->src_offset = p.src_offset;
    ev->src_frontier = p.src_frontier;
    ev->src_ts = p.src_ts;
    return ev;
}

void batch_add_event(struct clv_batch *b, const struct clv_event *ev, uint32_t shards)
{
    struct clv_item *it = item_for(b, ev->customer_id, ev->customer_id_len, shards);
    int cap = b->events_cap;

    b->ev_off = grow(b->ev_off, &b->events_cap, b->nevents + 1, sizeof(*b->ev_off));
    b->ev_next = grow(b->ev_next, &cap, b->nevents + 1, sizeof(*b->ev_next));
    b->ev_off[b->nevents] = b->evbuf.len;
    pack_event(&b->evbuf, ev);
    if (ev->src_ts > 0 && (it->input_ts == 0 || ev->src_ts < it->input_ts))
        it->input_ts = ev->src_ts;
    b->ev_next[b->nevents] = -1;
    if (it->ev_tail >= 0)
        b->ev_next[it->ev_tail] = b->nevents;
    else
        it->ev_head = b->nevents;
    it->ev_tail = b->nevents++;
}

void batch_add_advance(struct clv_batch *b, const char *id, size_t idlen, uint32_t shards,
                       clv_ms until)
{
    struct clv_item *it = item_for(b, id, idlen, shards);

    if (until > it->advance_to)
        it->advance_to = until;
}

size_t state_outbox_field(char *buf, size_t buflen, enum clv_out_topic topic, uint32_t seq,
                          const char *id, size_t idlen)
{
    int n = snprintf(buf, buflen, "%d:%u:", (int)topic, seq);

    if (n < 0 || (size_t)n + idlen >= buflen)
        return 0;
    memcpy(buf + n, id, idlen);
    buf[(size_t)n + idlen] = '\0';
    return (size_t)n + idlen;
}

/* ---- building commands ------------------------------------------------------------ */

/* One EVALSHA of apply.lua carries up to CAS_MAX_PER_CALL customers
 * (bounded so that the script's argument lists stay small): of one shard on
 * a Redis Cluster, of as many shards as fill it on a single Redis. */
#define CAS_MAX_PER_CALL 64
/* One MGET carries up to READ_MAX_PER_CALL states: of one shard on a Redis
 * Cluster (a command stays in one hash slot), of any on a single Redis. */
#define READ_MAX_PER_CALL 128

/* Arguments are collected as (pointer, length), or as an offset into
 * a->text for those formatted here, and resolved once the call is complete
 * (a->text may move while it grows). */
static void arg(struct clv_cas_args *a, const char *p, size_t len)
{
    a->args = grow(a->args, &a->cap, a->argc + 1, sizeof(*a->args));
    a->args[a->argc++] = (struct clv_cas_arg){p, 0, len};
}

static void arg_str(struct clv_cas_args *a, const char *p)
{
    arg(a, p, strlen(p));
}

static void arg_text(struct clv_cas_args *a, const char *p, size_t len)
{
    a->args = grow(a->args, &a->cap, a->argc + 1, sizeof(*a->args));
    a->args[a->argc++] = (struct clv_cas_arg){NULL, a->text.len, len};
    sbuf_append(&a->text, p, len);
}

static void arg_int(struct clv_cas_args *a, long long v)
{
    size_t off = a->text.len;

    sbuf_int(&a->text, v);
    a->args = grow(a->args, &a->cap, a->argc + 1, sizeof(*a->args));
    a->args[a->argc++] = (struct clv_cas_arg){NULL, off, a->text.len - off};
}

static void resolve_args(struct clv_cas_args *a)
{
    int cap = a->vcap;

    a->argv = grow(a->argv, &cap, a->argc, sizeof(*a->argv));
    cap = a->vcap;
    a->argvlen = grow(a->argvlen, &cap, a->argc, sizeof(*a->argvlen));
    a->vcap = cap;
    for (int i = 0; i < a->argc; i++) {
        const struct clv_cas_arg *g = &a->args[i];
        a->argv[i] = g->p ? g->p : a->text.buf + g->off;
        a->argvlen[i] = g->len;
    }
}

static int by_shard(const void *x, const void *y, void *items)
{
    const struct clv_item *it = items;
    uint32_t a = it[*(const int *)x].shard, b = it[*(const int *)y].shard;

    if (a != b)
        return a < b ? -1 : 1;
    return *(const int *)x - *(const int *)y;
}

/* ---- phase 1: read every state ------------------------------------------------ */

/* Keep the state as read (decoded later, by compute_item). */
static int load_state(struct clv_batch *b, struct clv_item *it, const redisReply *r, char *err,
                      size_t errlen)
{
    if (r->type == REDIS_REPLY_NIL) {
        it->existed = 0;
        it->statelen = 0;
        memset(it->old_version, 0, 8);
        return 0;
    }
    if (r->type != REDIS_REPLY_STRING || r->len < 8) {
        clv_seterr(err, errlen, "customer %s: unexpected state reply", batch_item_id(b, it));
        return -1;
    }
    it->existed = 1;
    it->state_off = b->states.len;
    it->statelen = r->len;
    sbuf_append(&b->states, r->str, r->len);
    memcpy(it->old_version, r->str, 8);
    return 0;
}

/* A remembered state stands for the GET (see cache.h). */
static int from_cache(struct clv_batch *b, struct clv_item *it)
{
    size_t len;
    const unsigned char *p =
        b->cache ? cache_get(b->cache, batch_item_id(b, it), it->idlen, &len) : NULL;

    if (p == NULL || len < 8)
        return 0;
    it->existed = 1;
    it->state_off = b->states.len;
    it->statelen = len;
    sbuf_append(&b->states, p, len);
    memcpy(it->old_version, p, 8);
    return 1;
}

/* One MGET's states: every customer's loaded, or -1. */
static int read_reply(struct clv_batch *b, const int *items, int n, const redisReply *r, char *err,
                      size_t errlen)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n) {
        clv_seterr(err, errlen, "redis MGET: %s",
                   r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (load_state(b, &b->items[items[i]], r->element[i], err, errlen) != 0)
            return -1;
    return 0;
}

/* Sends MGETs for miss[0 .. nmiss), each up to READ_MAX_PER_CALL keys (of
 * one shard on a Redis Cluster), and puts the length of each in calls[].
 * Returns the number of calls. */
static int send_reads(struct clv_store *st, struct clv_batch *b, int *miss, int nmiss, int *calls)
{
    struct clv_cas_args *a = &b->cas;
    char key[CLV_KEY_MAX];
    int ncalls = 0;

    if (st->cfg->cluster)
        qsort_r(miss, (size_t)nmiss, sizeof(*miss), by_shard, b->items);
    for (int first = 0; first < nmiss; first += calls[ncalls++]) {
        uint32_t shard = b->items[miss[first]].shard;
        int n = 0;
        a->argc = 0;
        sbuf_reset(&a->text);
        arg_str(a, "MGET");
        while (first + n < nmiss && n < READ_MAX_PER_CALL) {
            const struct clv_item *it = &b->items[miss[first + n]];
            if (st->cfg->cluster && it->shard != shard)
                break;
            arg_text(a, key,
                     keys_customer(key, st->cfg->key_prefix, it->shard, batch_item_id(b, it),
                                   it->idlen));
            n++;
        }
        resolve_args(a);
        store_append_argv(st, a->argc, a->argv, a->argvlen);
        calls[ncalls] = n;
    }
    return ncalls;
}

/* Every state not in the cache, in one pipeline; `miss` and `calls` are
 * scratch. */
static int read_states(struct clv_store *st, struct clv_batch *b, int *miss, int *calls, char *err,
                       size_t errlen)
{
    double t0;
    int rc = 0, nmiss = 0, ncalls;

    if (b->cache)
        cache_validate(b->cache, st->generation);
    for (int i = 0; i < b->nitems; i++)
        if (!from_cache(b, &b->items[i]))
            miss[nmiss++] = i;
    b->stats.cache_hits += (uint64_t)(b->nitems - nmiss);
    b->stats.state_reads += (uint64_t)nmiss;
    if (nmiss == 0)
        return 0;
    t0 = store_pipeline_begin();
    ncalls = send_reads(st, b, miss, nmiss, calls);
    for (int c = 0, i = 0; c < ncalls; i += calls[c++]) {
        redisReply *r = store_read_reply(st);
        if (r == NULL) {
            clv_seterr(err, errlen, "redis MGET: connection lost");
            return -1;
        }
        if (rc == 0)
            rc = read_reply(b, miss + i, calls[c], r, err, errlen);
        freeReplyObject(r);
    }
    store_pipeline_end(st, t0);
    return rc;
}

/* ---- phase 2: compute ------------------------------------------------------------ */

/* Record a step's transitions and render their messages. */
static void emit_transitions(struct clv_batch *b, int item, const struct clv_transitions *tr,
                             const struct clv_config *cfg, clv_ms now)
{
    struct clv_item *it = &b->items[item];
    struct clv_outmsg m[CLV_MAX_MSGS_PER_TRANSITION];

    b->trs = grow(b->trs, &b->trs_cap, b->ntrs + tr->n, sizeof(*b->trs));
    for (int i = 0; i < tr->n; i++) {
        const struct clv_transition *t = &tr->t[i];
        int n = output_transition(t, batch_item_id(b, it), it->idlen, cfg->tiers, cfg->ntiers, now,
                                  &b->out, m);
        b->trs[b->ntrs++] =
            (struct clv_trpair){(int8_t)(t->kind == CLV_TRANSITION_TIER ? -2 : t->from),
                                (int8_t)t->to, (int8_t)t->purchased, t->at};
        b->msgs = grow(b->msgs, &b->msgs_cap, b->nmsgs + n, sizeof(*b->msgs));
        for (int k = 0; k < n; k++)
            b->msgs[b->nmsgs++] =
                (struct clv_batch_msg){item, m[k].topic, t->seq, m[k].off, m[k].len};
    }
}

static int decode_item(struct clv_batch *b, const struct clv_item *it, char *err, size_t errlen)
{
    if (!it->existed) {
        customer_init(&b->cust);
        return 0;
    }
    if (customer_decode(&b->cust, (const unsigned char *)b->states.buf + it->state_off,
                        it->statelen, err, errlen) != 0) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (customer %s)", batch_item_id(b, it));
        return -1;
    }
    return 0;
}

/* Apply the item's events and deadlines to its state (b->cust), rendering
 * the messages of every transition.  Returns 1 if the state must be written. */
static int compute_item(struct clv_batch *b, int item, const struct clv_rules *rules,
                        const struct clv_config *cfg, clv_ms now)
{
    struct clv_item *it = &b->items[item];
    struct clv_customer *c = &b->cust;
    int changed = 0;

    it->from_stage = c->stage;
    it->from_buyer = c->purchases > 0;
    it->n_applied = it->n_duplicates = 0;
    it->msg_first = b->nmsgs;
    it->tr_first = b->ntrs;
    for (int e = it->ev_head; e >= 0; e = b->ev_next[e]) {
        b->tr.n = 0;
        if (stages_apply_event(c, rules, unpack_event(b, e, it), &b->tr) == CLV_DUPLICATE) {
            it->n_duplicates++;
            continue;
        }
        it->n_applied++;
        changed = 1;
        emit_transitions(b, item, &b->tr, cfg, now);
    }
    if (it->advance_to) {
        b->tr.n = 0;
        stages_advance(c, rules, it->advance_to, &b->tr);
        emit_transitions(b, item, &b->tr, cfg, now);
        /* a sweep of an existing customer always writes, so that a due
         * entry made stale by a rule change (SIGHUP) is refreshed */
        changed = changed || it->existed;
    }
    it->to_stage = c->stage;
    it->to_buyer = c->purchases > 0;
    it->msg_count = b->nmsgs - it->msg_first;
    it->ntr = b->ntrs - it->tr_first;
    return changed;
}

/* Compute the item and prepare what its compare-and-set writes.  Returns 1
 * if there is something to write, 0 if not, -1 if its state is corrupt. */
static int prepare_item(struct clv_batch *b, int item, const struct clv_rules *rules,
                        const struct clv_config *cfg, clv_ms now, char *err, size_t errlen)
{
    struct clv_item *it = &b->items[item];

    if (decode_item(b, it, err, errlen) != 0)
        return -1;
    it->old_due = it->existed ? stages_next_deadline(&b->cust, rules) : 0;
    if (!compute_item(b, item, rules, cfg, now)) {
        it->bloblen = 0;
        return 0;
    }
    b->cust.version++;
    sbuf_reserve(&b->blobs, CLV_STATE_MAX_BYTES);
    it->blob_off = b->blobs.len;
    it->bloblen = customer_encode(&b->cust, (unsigned char *)b->blobs.buf + it->blob_off,
                                  CLV_STATE_MAX_BYTES);
    b->blobs.len += it->bloblen;
    it->due = stages_next_deadline(&b->cust, rules);
    return 1;
}

/* ---- phase 3: compare-and-set ----------------------------------------------------- */

static int is_churned_buyer(int stage, int buyer)
{
    return stage == CLV_STAGE_CHURNED && buyer;
}

static int churn_of_buyer(const struct clv_trpair *t)
{
    return t->from != -2 && t->to == CLV_STAGE_CHURNED && t->purchased;
}

/* The shard's counters (SPEC section 10), moved in the same script as the
 * state so that their sums over shards are exact with any number of
 * instances:
 *   <stage>            customers in each stage
 *   buyers             customers with at least one purchase
 *   buyers_churned     of those, how many are churned now
 *   churn:<hour>       buyers entering churned, by the hour of `at`
 * Written as the number of moves, `n` (counter_moves()), then
 * name/increment pairs. */
static int counter_moves(const struct clv_batch *b, const struct clv_item *it)
{
    int was = is_churned_buyer(it->from_stage, it->from_buyer);
    int is = is_churned_buyer(it->to_stage, it->to_buyer);
    int moved = it->from_stage != it->to_stage, born = it->from_stage == CLV_STAGE_NONE;
    int n = (moved ? (born ? 1 : 2) : 0) + (it->to_buyer && !it->from_buyer) + (was != is);

    for (int i = it->tr_first; i < it->tr_first + it->ntr; i++)
        n += churn_of_buyer(&b->trs[i]);
    return n;
}

/* See counter_moves(). */
static void stats_args(struct clv_cas_args *a, const struct clv_batch *b, const struct clv_item *it,
                       int n)
{
    int was = is_churned_buyer(it->from_stage, it->from_buyer);
    int is = is_churned_buyer(it->to_stage, it->to_buyer);
    int moved = it->from_stage != it->to_stage, born = it->from_stage == CLV_STAGE_NONE;

    arg_int(a, n);
    if (moved) {
        if (!born) {
            arg_str(a, stage_name(it->from_stage));
            arg_str(a, "-1");
        }
        arg_str(a, stage_name(it->to_stage));
        arg_str(a, "1");
    }
    if (it->to_buyer && !it->from_buyer) {
        arg_str(a, "buyers");
        arg_str(a, "1");
    }
    if (was != is) {
        arg_str(a, "buyers_churned");
        arg_str(a, is ? "1" : "-1");
    }
    for (int i = it->tr_first; i < it->tr_first + it->ntr; i++)
        if (churn_of_buyer(&b->trs[i])) {
            char name[32];
            int len = snprintf(name, sizeof(name), "churn:%lld",
                               (long long)(b->trs[i].at / CLV_MS_PER_HOUR));
            arg_text(a, name, (size_t)len);
            arg_str(a, "1");
        }
}

/* Most updates push the customer's deadline later (activity resets the
 * at-risk clock).  The due entry then stays where it is: an entry earlier
 * than the deadline is harmless, because the sweeper recomputes the customer
 * when it fires and writes the exact deadline then.  This keeps the entry at
 * or before the deadline of the stored state, which is all the sweeper
 * needs, and spares the due index most of its writes.  A sweep always
 * writes the exact deadline: that is how early entries are corrected. */
static int keeps_due_entry(const struct clv_item *it)
{
    return it->existed && it->advance_to == 0 && it->old_due > 0 && it->due >= it->old_due;
}

/* The update writes nothing but the state: apply.lua's short form. */
static int short_form(const struct clv_batch *b, const struct clv_item *it)
{
    return keeps_due_entry(it) && it->msg_count == 0 && counter_moves(b, it) == 0;
}

/* One customer's part of ARGV (see apply.lua). */
static void item_args(struct clv_cas_args *a, const struct clv_batch *b, const struct clv_item *it)
{
    char field[32 + CLV_ID_MAX];
    int keeps_due = keeps_due_entry(it), moves = counter_moves(b, it);

    arg(a, it->old_version, it->existed ? 8 : 0);
    arg(a, b->blobs.buf + it->blob_off, it->bloblen);
    if (short_form(b, it)) {
        arg_str(a, "");
        return;
    }
    arg_str(a, "+");
    arg(a, batch_item_id(b, it), it->idlen);
    if (keeps_due)
        arg_str(a, "-");
    else if (it->due)
        arg_int(a, it->due);
    else
        arg_str(a, "");
    arg_int(a, it->msg_count);
    for (int m = 0; m < it->msg_count; m++) {
        const struct clv_batch_msg *msg = &b->msgs[it->msg_first + m];
        size_t n = state_outbox_field(field, sizeof(field), msg->topic, msg->seq,
                                      batch_item_id(b, it), it->idlen);
        arg_text(a, field, n);
        arg(a, b->out.buf + msg->off, msg->len);
    }
    stats_args(a, b, it, moves);
}

/* Length of the run of items of one shard at the start of sent[0 .. n). */
static int shard_run(const struct clv_batch *b, const int *sent, int n)
{
    int m = 1;

    while (m < n && b->items[sent[m]].shard == b->items[sent[0]].shard)
        m++;
    return m;
}

/* A run of one shard's items with one in the full form: its group takes
 * the shard's due index, outbox and counters keys. */
static int run_needs_keys(const struct clv_batch *b, const int *sent, int m)
{
    for (int j = 0; j < m; j++)
        if (!short_form(b, &b->items[sent[j]]))
            return 1;
    return 0;
}

/* The call for sent[0 .. n), sorted by shard: the customers' keys, then the
 * due index, outbox and counters of each shard's run that writes them, and
 * a group of arguments for each run (see apply.lua). */
static void build_call(struct clv_store *st, struct clv_batch *b, const int *sent, int n)
{
    struct clv_cas_args *a = &b->cas;
    const char *prefix = st->cfg->key_prefix;
    char key[CLV_KEY_MAX];
    int nkeys = n, m;

    for (int i = 0; i < n; i += m) {
        m = shard_run(b, sent + i, n - i);
        nkeys += run_needs_keys(b, sent + i, m) ? 3 : 0;
        b->stats.groups++;
    }
    a->argc = 0;
    sbuf_reset(&a->text);
    arg_str(a, "EVALSHA");
    arg(a, store_script_sha(st, CLV_SCRIPT_APPLY), 40);
    arg_int(a, nkeys);
    for (int i = 0; i < n; i++) {
        const struct clv_item *it = &b->items[sent[i]];
        arg_text(a, key, keys_customer(key, prefix, it->shard, batch_item_id(b, it), it->idlen));
    }
    for (int i = 0; i < n; i += m) {
        uint32_t shard = b->items[sent[i]].shard;
        m = shard_run(b, sent + i, n - i);
        if (!run_needs_keys(b, sent + i, m))
            continue;
        arg_text(a, key, keys_due(key, prefix, shard));
        arg_text(a, key, keys_outbox(key, prefix, shard));
        arg_text(a, key, keys_stats(key, prefix, shard));
    }
    arg_int(a, n);
    for (int i = 0; i < n; i += m) {
        m = shard_run(b, sent + i, n - i);
        arg_int(a, m);
        for (int j = i; j < i + m; j++)
            item_args(a, b, &b->items[sent[j]]);
    }
    resolve_args(a);
}

static void add_item_stats(struct clv_batch *b, const struct clv_item *it)
{
    b->stats.applied += (uint64_t)it->n_applied;
    b->stats.duplicates += (uint64_t)it->n_duplicates;
    for (int i = it->tr_first; i < it->tr_first + it->ntr; i++) {
        if (b->trs[i].from == -2)
            b->stats.tier_changes++;
        else
            b->stats.transitions[b->trs[i].from + 1][b->trs[i].to]++;
    }
}

static void item_applied(struct clv_batch *b, int item)
{
    struct clv_item *it = &b->items[item];

    it->done = 1;
    b->stats.updates++;
    if (b->cache)
        cache_put(b->cache, batch_item_id(b, it), it->idlen,
                  (const unsigned char *)b->blobs.buf + it->blob_off, it->bloblen);
    add_item_stats(b, it);
}

/* The state changed since it was read: recompute from the new one, `r`
 * (nil if there is none). */
static int item_conflict(struct clv_batch *b, int item, const redisReply *r, int *redo, int *nredo,
                         char *err, size_t errlen)
{
    struct clv_item *it = &b->items[item];

    if (r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_STRING) {
        clv_seterr(err, errlen, "redis EVALSHA apply: unexpected reply for customer %s",
                   batch_item_id(b, it));
        return -1;
    }
    if (b->cache)
        cache_drop(b->cache, batch_item_id(b, it), it->idlen);
    if (load_state(b, it, r, err, errlen) != 0)
        return -1;
    b->stats.conflicts++;
    redo[(*nredo)++] = item;
    return 0;
}

/* The 0-based position of the reply's k-th conflict; -1 unless it is a
 * position of the call at or after `next` (conflicts come in order). */
static int conflict_at(const redisReply *r, size_t k, int n, int next)
{
    const redisReply *p = r->element[2 * k];

    if (p->type != REDIS_REPLY_INTEGER || p->integer <= next || p->integer > n)
        return -1;
    return (int)p->integer - 1;
}

/* Sort out one call's reply -- the conflicts, as (position, current state)
 * pairs in order: every customer done or to be redone, or the whole call
 * to be re-sent after NOSCRIPT. */
static int call_result(struct clv_batch *b, const int *sent, int n, const redisReply *r, int *redo,
                       int *nredo, int *resend, int *nresend, char *err, size_t errlen)
{
    int next = 0;

    if (store_is_noscript(r)) {
        for (int i = 0; i < n; i++)
            resend[(*nresend)++] = sent[i];
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0 || r->elements / 2 > (size_t)n) {
        clv_seterr(err, errlen, "redis EVALSHA apply: %s",
                   r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return -1;
    }
    for (size_t k = 0; k < r->elements / 2; k++) {
        int at = conflict_at(r, k, n, next);
        if (at < 0) {
            clv_seterr(err, errlen, "redis EVALSHA apply: unexpected reply");
            return -1;
        }
        while (next < at)
            item_applied(b, sent[next++]);
        if (item_conflict(b, sent[next++], r->element[2 * k + 1], redo, nredo, err, errlen) != 0)
            return -1;
    }
    while (next < n)
        item_applied(b, sent[next++]);
    return 0;
}

static void finish_unchanged(struct clv_batch *b, int item)
{
    b->items[item].done = 1;
    add_item_stats(b, &b->items[item]);
}

/* Compute the item if it is stale (see run_cas_round): 1 if it has
 * something to write, 0 if not (it is finished), -1 on a corrupt state. */
static int ready_item(struct clv_batch *b, int item, const struct clv_rules *rules,
                      const struct clv_config *cfg, clv_ms now, char *err, size_t errlen)
{
    int rc;

    if (!b->items[item].stale)
        return 1;
    b->items[item].stale = 0;
    rc = prepare_item(b, item, rules, cfg, now, err, errlen);
    if (rc == 0)
        finish_unchanged(b, item);
    return rc;
}

/* Computes and sends list[] (sorted here by shard) one call at a time --
 * each call carries up to CAS_MAX_PER_CALL customers, of one shard on a
 * Redis Cluster -- so that Redis works on the first calls while the worker
 * computes the rest (the store writes the pipeline out as it grows).
 * list[] keeps the items sent, in order; the length of each call goes to
 * calls[].  Returns the number of calls; stops early, setting *failed, on a
 * corrupt state. */
static int send_calls(struct clv_store *st, struct clv_batch *b, int *list, int n, int *calls,
                      const struct clv_rules *rules, const struct clv_config *cfg, clv_ms now,
                      int *failed, char *err, size_t errlen)
{
    int ncalls = 0, nsent = 0, first = 0;

    qsort_r(list, (size_t)n, sizeof(*list), by_shard, b->items);
    for (int i = 0; i < n; i++) {
        int item = list[i], rc = ready_item(b, item, rules, cfg, now, err, errlen);
        int ends =
            i + 1 == n || (st->cfg->cluster && b->items[list[i + 1]].shard != b->items[item].shard);
        if (rc < 0) {
            *failed = 1;
            ends = 1;
        } else if (rc > 0) {
            list[nsent++] = item;
        }
        if (nsent > first && (ends || nsent - first == CAS_MAX_PER_CALL)) {
            build_call(st, b, list + first, nsent - first);
            store_append_argv(st, b->cas.argc, b->cas.argv, b->cas.argvlen);
            calls[ncalls++] = nsent - first;
            first = nsent;
        }
        if (*failed)
            break;
    }
    b->stats.calls += (uint64_t)ncalls;
    return ncalls;
}

/* One round of compare-and-set for list[]: items marked stale are computed
 * first, the others (re-sent after NOSCRIPT) go as prepared.  Items that
 * conflicted get their fresh state loaded and need computing again
 * (`redo`); after NOSCRIPT (Redis restarted or failed over) the script is
 * loaded again and the same writes are re-sent (`resend`).  After a
 * corrupt state stopped the round, the replies of the calls already sent
 * are still read, to keep the connection in step; the batch fails and goes
 * again as a whole, like one whose connection broke half-way. */
static int run_cas_round(struct clv_store *st, struct clv_batch *b, int *list, int n,
                         const struct clv_rules *rules, const struct clv_config *cfg, clv_ms now,
                         int *redo, int *nredo, int *resend, int *nresend, char *err, size_t errlen)
{
    int *calls = b->work + 3 * b->nitems, ncalls, failed = 0, rc = 0;
    double t0 = store_pipeline_begin();

    *nredo = *nresend = 0;
    ncalls = send_calls(st, b, list, n, calls, rules, cfg, now, &failed, err, errlen);
    for (int c = 0, i = 0; c < ncalls; i += calls[c++]) {
        redisReply *r = store_read_reply(st);
        if (r == NULL) {
            if (!failed)
                clv_seterr(err, errlen, "redis EVALSHA: connection lost");
            return -1;
        }
        if (rc == 0 && !failed)
            rc = call_result(b, list + i, calls[c], r, redo, nredo, resend, nresend, err, errlen);
        freeReplyObject(r);
    }
    if (ncalls > 0)
        store_pipeline_end(st, t0);
    return failed ? -1 : rc;
}

static int reload_script(struct clv_store *st, char *err, size_t errlen)
{
    log_warn(st->log, "redis: script cache empty (restart or failover?): loading it again");
    return store_load_scripts(st, err, errlen);
}

static void reserve_work(struct clv_batch *b)
{
    int cap = b->work_cap;

    sbuf_reset(&b->blobs);
    sbuf_reset(&b->states);
    b->work = grow(b->work, &cap, 4 * b->nitems, sizeof(int));
    b->work_cap = cap;
}

int state_apply_batch(struct clv_store *st, struct clv_batch *b, const struct clv_rules *rules,
                      const struct clv_config *cfg, char *err, size_t errlen)
{
    clv_ms now = clv_now_ms();
    int *todo, *redo, *resend, ntodo, nredo = 0, nresend = 0;

    if (b->nitems == 0)
        return 0;
    if (store_ensure(st, err, errlen) != 0)
        return -1;
    reserve_work(b);
    todo = b->work;
    redo = todo + b->nitems;
    resend = redo + b->nitems;
    if (read_states(st, b, todo, todo + 3 * b->nitems, err, errlen) != 0)
        return -1;
    for (int i = 0; i < b->nitems; i++)
        redo[nredo++] = i;
    for (int round = 0; nredo > 0 || nresend > 0; round++) {
        if (round == MAX_CAS_ROUNDS) {
            clv_seterr(err, errlen, "customer %s: state keeps changing under us",
                       batch_item_id(b, &b->items[redo[0]]));
            return -1;
        }
        ntodo = 0;
        for (int i = 0; i < nresend; i++)
            todo[ntodo++] = resend[i]; /* prepared, not stale */
        for (int i = 0; i < nredo; i++) {
            b->items[redo[i]].stale = 1;
            todo[ntodo++] = redo[i];
        }
        if (nresend > 0 && reload_script(st, err, errlen) != 0)
            return -1;
        if (run_cas_round(st, b, todo, ntodo, rules, cfg, now, redo, &nredo, resend, &nresend, err,
                          errlen) != 0)
            return -1;
    }
    return 0;
}

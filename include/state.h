/* state.h -- customer state in Redis: batched updates (store.h: the connection).
 *
 * A batch is a set of customers, each with the events to apply (in order)
 * and/or a time to advance to.  state_apply_batch() runs it in two pipelined
 * round trips: GET every state, compute every update in C (stages.h), then
 * one EVALSHA of apply.lua per shard, which writes each of the shard's
 * changed customers -- state, due index, outbox and counters -- atomically
 * if its state is unchanged since the GET.  A customer whose state changed meanwhile (another
 * instance, the sweeper) is recomputed from the state the script returned and sent again. */
#ifndef CLVD_STATE_H
#define CLVD_STATE_H

#include "cache.h"
#include "config.h"
#include "customer.h"
#include "event.h"
#include "keys.h"
#include "output.h"
#include "sbuf.h"
#include "stages.h"
#include "store.h"

/* ---- batches -------------------------------------------------------------- */

/* A customer of the batch.  Its state is kept encoded, as Redis returned it
 * (in batch->states), and decoded into the batch's one scratch customer only
 * while it is computed: a batch of 2 000 customers then costs kilobytes, not
 * the 15 MB that decoded states (room for 400 purchase days each) would. */
struct clv_item {
    size_t id_off, idlen; /* the customer id, NUL-terminated, in batch->ids */
    uint32_t shard;
    int ev_head, ev_tail; /* linked list of this customer's events, -1 if none */
    clv_ms advance_to;    /* apply deadlines up to here; 0 = only the events */
    clv_ms input_ts;      /* earliest Kafka timestamp of its events, 0 none */
    int done;             /* written (or nothing to write) */
    int stale;            /* to be computed (again) before it is sent */
    int existed;
    char old_version[8];
    size_t state_off, statelen;  /* the state read, in batch->states */
    int8_t from_stage, to_stage; /* stage before and after the batch */
    int8_t from_buyer, to_buyer; /* purchased before / after the batch */
    /* what the compare-and-set writes, kept so it can be re-sent as is */
    size_t blob_off, bloblen;
    clv_ms old_due, due; /* next deadline before and after the batch, 0 none */
    int msg_first, msg_count;
    int n_applied, n_duplicates;
    int tr_first, ntr; /* its transitions in batch->trs */
};

struct clv_batch_msg {
    int item;
    enum clv_out_topic topic;
    uint32_t seq;
    size_t off, len; /* payload in batch->out */
};

struct clv_batch_stats {
    uint64_t applied, duplicates, conflicts;
    uint64_t updates;                 /* customers written (compare-and-set applied) */
    uint64_t calls;                   /* apply.lua calls */
    uint64_t groups;                  /* their groups: one per shard a call writes */
    uint64_t cache_hits, state_reads; /* states taken from the cache, read with MGET */
    uint64_t transitions[CLV_STAGE_COUNT + 1][CLV_STAGE_COUNT]; /* [from+1][to] */
    uint64_t tier_changes;
};

/* Arguments of one command -- an EVALSHA of apply.lua or an MGET -- built in
 * place (internal to state.c). */
struct clv_cas_arg {
    const char *p; /* NULL: at `off` in text */
    size_t off, len;
};
struct clv_cas_args {
    struct clv_cas_arg *args;
    int argc, cap;
    const char **argv;
    size_t *argvlen;
    int vcap;
    struct clv_sbuf text; /* keys, numbers and field names formatted here */
};

/* A transition's stages for the counters; from -2 marks a tier change. */
struct clv_trpair {
    int8_t from, to;
    int8_t purchased;
    clv_ms at;
};

struct clv_batch {
    /* the events, packed (a fixed head, then event id and channel; the
     * customer id is the item's): a fifth of a struct clv_event each */
    struct clv_sbuf evbuf;
    size_t *ev_off; /* event -> its offset in evbuf */
    int *ev_next;   /* event -> the customer's next one, -1 none */
    int nevents, events_cap;
    struct clv_event ev; /* scratch: the event being applied, unpacked */
    struct clv_item *items;
    int nitems, items_cap;
    /* the items' customer ids: out of line, as most are far shorter than
     * CLV_ID_MAX and every job keeps its arrays at their largest */
    struct clv_sbuf ids;
    int *index; /* open addressing: customer id -> item */
    int index_cap;
    struct clv_sbuf out;
    struct clv_batch_msg *msgs;
    int nmsgs, msgs_cap;
    struct clv_trpair *trs;
    int ntrs, trs_cap;
    struct clv_batch_stats stats;
    /* scratch reused by every batch */
    struct clv_transitions tr;
    struct clv_sbuf blobs;    /* encoded states, packed; item->blob_off into it */
    struct clv_sbuf states;   /* states as read; item->state_off into it */
    struct clv_customer cust; /* the item being computed, decoded */
    int *work;
    int work_cap;
    struct clv_cas_args cas;
    struct clv_state_cache *cache; /* the owner's, or NULL (cache.h) */
};

static inline const char *batch_item_id(const struct clv_batch *b, const struct clv_item *it)
{
    return b->ids.buf + it->id_off;
}

void batch_init(struct clv_batch *b);
void batch_free(struct clv_batch *b);
void batch_reset(struct clv_batch *b);

/* Queue an event (copied) for its customer. */
void batch_add_event(struct clv_batch *b, const struct clv_event *ev, uint32_t shards);
/* Queue a customer to advance to `until` (the sweeper). */
void batch_add_advance(struct clv_batch *b, const char *id, size_t idlen, uint32_t shards,
                       clv_ms until);

/* Apply the batch.  On success every item is durable in Redis and its
 * messages are in batch->msgs (and in the shards' outboxes).  On failure
 * (Redis unreachable or erroring) nothing is reported applied; the caller
 * retries the whole batch later, which is safe: the compare-and-set and the
 * event-id de-duplication make a repeated update change nothing twice. */
int state_apply_batch(struct clv_store *st, struct clv_batch *b, const struct clv_rules *rules,
                      const struct clv_config *cfg, char *err, size_t errlen);

/* Outbox field for a message, "<topic>:<seq>:<id>"; returns its length. */
size_t state_outbox_field(char *buf, size_t buflen, enum clv_out_topic topic, uint32_t seq,
                          const char *id, size_t idlen);

#endif

/* sweeper.h -- finds customers whose time-driven deadline has passed.
 *
 * Each shard's due index is a sorted set scored by deadline; a tick reads
 * the due members of a bounded number of shards (one pipeline) and queues
 * them in a batch to be advanced to `now`.  The batch's compare-and-set
 * makes it harmless if another instance, or an event, got there first. */
#ifndef CLVD_SWEEPER_H
#define CLVD_SWEEPER_H

#include "state.h"

struct clv_sweeper {
    uint32_t cursor;    /* next shard to look at */
    uint32_t per_tick;  /* shards per tick */
    int per_shard;      /* customers per shard per tick */
    uint64_t swept;
};

void sweeper_init(struct clv_sweeper *s, uint32_t shards);

/* Queue due customers into b.  Returns the number queued, or -1 on a Redis
 * error. */
int sweeper_collect(struct clv_sweeper *s, struct clv_store *st, clv_ms now, struct clv_batch *b,
                    char *err, size_t errlen);

#endif

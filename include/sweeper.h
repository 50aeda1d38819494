/* sweeper.h -- finds customers whose time-driven deadline has passed.
 *
 * Each shard's due index is a sorted set scored by deadline.  A tick looks at
 * a bounded number of shards (one pipeline of sweep.lua calls): for each, it
 * takes or renews the shard's sweep lease and reads up to `per_shard` due
 * customers, which are queued in a batch to be advanced to `now`.  Shards
 * leased by another live instance are skipped, so instances share the work
 * and no customer is swept by two at once; the batch's compare-and-set keeps
 * even that harmless. */
#ifndef CLVD_SWEEPER_H
#define CLVD_SWEEPER_H

#include "state.h"

struct clv_sweeper {
    char instance[96]; /* this process: host:pid:random */
    uint32_t cursor;   /* next shard to look at */
    uint32_t per_tick; /* shards per tick */
    int per_shard;     /* customers per shard per tick */
    clv_ms lease_ms;
    clv_ms next_tick; /* monotonic: no sweep before (0 = at once) */
    uint64_t swept;
    /* After a reload that brought deadlines forward every due entry is
     * re-evaluated once; per shard, the score the scan has reached
     * (INT64_MAX when done). */
    int64_t *rescan_from;
    uint32_t rescan_left;
};

void sweeper_init(struct clv_sweeper *s, uint32_t shards);

/* Queue due customers into b.  Returns the number queued, or -1 on a Redis
 * error. */
int sweeper_collect(struct clv_sweeper *s, struct clv_store *st, clv_ms now, struct clv_batch *b,
                    char *err, size_t errlen);

/* Re-evaluate, once, every customer in the due index, a few shards per
 * tick: a reload moved deadlines earlier, so every score may be stale. */
void sweeper_rescan(struct clv_sweeper *s, uint32_t shards);
void sweeper_free(struct clv_sweeper *s);

/* Event clock across instances: publish this instance's watermark (0 when it
 * holds no partition) and whether all its partitions are idle, and return
 * the group's (the smallest of the live, active instances; the largest when
 * all are idle), or 0 when unknown. */
clv_ms sweeper_group_clock(struct clv_sweeper *s, struct clv_store *st, clv_ms own, int idle,
                           clv_ms ttl);

#endif

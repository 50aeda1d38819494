/* cache.h -- the states this worker wrote last, so that the next update of
 * the same customer need not read it back from Redis.
 *
 * The compare-and-set makes a stale entry harmless: apply.lua checks the
 * version the update was computed from, and a state someone else changed
 * comes back as a conflict and is recomputed from Redis's copy.  So the
 * cache only saves the GET (a command per update, and a round trip when
 * every customer of a batch is cached); it never decides what is written.
 * Entries are exact: the customer id is stored and compared, never a hash
 * alone, because versions are small counters that two customers can share.
 *
 * A direct-mapped table of fixed slots, sized once: no allocation after
 * cache_init, a bounded footprint (SPEC section 15), and an entry that does
 * not fit a slot is simply not cached.  Pure: no I/O. */
#ifndef CLVD_CACHE_H
#define CLVD_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define CLV_CACHE_SLOT 256 /* bytes per slot: header, id and state */

struct clv_state_cache {
    unsigned char *slots;
    uint32_t nslots;     /* a power of two; 0 = disabled */
    uint64_t generation; /* the connection the entries were read or written on */
    uint64_t hits, misses;
};

/* A cache of about `bytes` (rounded down to a power-of-two slot count);
 * 0 disables it.  Returns -1 if the memory cannot be had. */
int cache_init(struct clv_state_cache *c, size_t bytes);
void cache_free(struct clv_state_cache *c);

/* Forget everything when the connection changed: a Redis that restarted
 * may hold older states than the ones remembered (see cache.c). */
void cache_validate(struct clv_state_cache *c, uint64_t generation);
void cache_clear(struct clv_state_cache *c);

/* The remembered state of a customer, or NULL; *len receives its length.
 * The pointer is valid until the next cache_put or cache_drop. */
const unsigned char *cache_get(struct clv_state_cache *c, const char *id, size_t idlen,
                               size_t *len);
/* Remember a state as written (or read); one that does not fit a slot
 * drops whatever the slot held for this customer. */
void cache_put(struct clv_state_cache *c, const char *id, size_t idlen, const unsigned char *state,
               size_t len);
void cache_drop(struct clv_state_cache *c, const char *id, size_t idlen);

#endif

/* cache.c -- the states this worker wrote last; see cache.h.
 *
 * Why the generation: versions only grow, so an entry older than Redis's
 * copy is caught by the compare-and-set.  But a Redis that restarted from an
 * older snapshot may since have been written by another instance up to the
 * very version remembered here, with other content; the compare-and-set
 * would then accept an update computed from the wrong state.  Such a
 * restart always breaks the connection, so entries are forgotten whenever
 * the connection changes. */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

/* slot: [0] id length (0 = empty), [1..2] state length, id, state */
#define SLOT_HEADER 3
#define SLOT_ROOM (CLV_CACHE_SLOT - SLOT_HEADER)

int cache_init(struct clv_state_cache *c, size_t bytes)
{
    uint32_t n = 1;

    memset(c, 0, sizeof(*c));
    if (bytes < 2 * CLV_CACHE_SLOT)
        return 0;
    while ((size_t)n * 2 * CLV_CACHE_SLOT <= bytes && n < (1u << 30))
        n *= 2;
    c->slots = calloc(n, CLV_CACHE_SLOT);
    if (c->slots == NULL)
        return -1;
    c->nslots = n;
    return 0;
}

void cache_free(struct clv_state_cache *c)
{
    free(c->slots);
    memset(c, 0, sizeof(*c));
}

void cache_clear(struct clv_state_cache *c)
{
    if (c->slots)
        memset(c->slots, 0, (size_t)c->nslots * CLV_CACHE_SLOT);
}

void cache_validate(struct clv_state_cache *c, uint64_t generation)
{
    if (c->generation != generation) {
        cache_clear(c);
        c->generation = generation;
    }
}

static unsigned char *slot_of(const struct clv_state_cache *c, const char *id, size_t idlen)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < idlen; i++) {
        h ^= (unsigned char)id[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 29; /* the low bits pick the slot: mix the high ones in */
    return c->slots + (size_t)(h & (c->nslots - 1)) * CLV_CACHE_SLOT;
}

static int slot_holds(const unsigned char *s, const char *id, size_t idlen)
{
    return s[0] == idlen && idlen > 0 && memcmp(s + SLOT_HEADER, id, idlen) == 0;
}

const unsigned char *cache_get(struct clv_state_cache *c, const char *id, size_t idlen, size_t *len)
{
    const unsigned char *s;

    if (c->nslots == 0)
        return NULL;
    s = slot_of(c, id, idlen);
    if (!slot_holds(s, id, idlen)) {
        c->misses++;
        return NULL;
    }
    c->hits++;
    *len = (size_t)s[1] << 8 | s[2];
    return s + SLOT_HEADER + idlen;
}

void cache_put(struct clv_state_cache *c, const char *id, size_t idlen, const unsigned char *state,
               size_t len)
{
    unsigned char *s;

    if (c->nslots == 0 || idlen == 0)
        return;
    s = slot_of(c, id, idlen);
    if (idlen > 255 || idlen + len > SLOT_ROOM) {
        if (slot_holds(s, id, idlen))
            s[0] = 0;
        return;
    }
    s[0] = (unsigned char)idlen;
    s[1] = (unsigned char)(len >> 8);
    s[2] = (unsigned char)len;
    memcpy(s + SLOT_HEADER, id, idlen);
    memcpy(s + SLOT_HEADER + idlen, state, len);
}

void cache_drop(struct clv_state_cache *c, const char *id, size_t idlen)
{
    unsigned char *s;

    if (c->nslots == 0)
        return;
    s = slot_of(c, id, idlen);
    if (slot_holds(s, id, idlen))
        s[0] = 0;
}

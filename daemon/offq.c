/* offq.c -- one input partition's offsets in flight (offq.h). */
#include "offq.h"

#include <stdlib.h>

static struct clv_offq_entry *at(const struct clv_offq *q, size_t i)
{
    return &q->q[(q->head + i) & (q->cap - 1)];
}

void offq_free(struct clv_offq *q)
{
    free(q->q);
    q->q = NULL;
    q->head = q->len = q->cap = 0;
}

void offq_clear(struct clv_offq *q)
{
    q->head = q->len = 0;
}

void offq_push(struct clv_offq *q, int64_t offset)
{
    if (q->len == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 1024;
        struct clv_offq_entry *nq = malloc(sizeof(*nq) * ncap);
        if (nq == NULL)
            abort();
        for (size_t i = 0; i < q->len; i++)
            nq[i] = *at(q, i);
        free(q->q);
        q->q = nq;
        q->cap = ncap;
        q->head = 0;
    }
    *at(q, q->len++) = (struct clv_offq_entry){offset, 0};
}

/* Offsets in flight are nearly consecutive, so an entry is almost always
 * where its distance from the head says (consumer_done looks up every
 * message); across gaps, a binary search. */
static struct clv_offq_entry *find(const struct clv_offq *q, int64_t offset)
{
    size_t lo = 0, hi = q->len;
    int64_t first;

    if (q->len == 0)
        return NULL;
    first = at(q, 0)->offset;
    if (offset >= first && (uint64_t)(offset - first) < q->len) {
        struct clv_offq_entry *e = at(q, (size_t)(offset - first));
        if (e->offset == offset)
            return e;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at(q, mid)->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < q->len && at(q, lo)->offset == offset ? at(q, lo) : NULL;
}

int offq_mark_done(struct clv_offq *q, int64_t offset)
{
    struct clv_offq_entry *e = find(q, offset);

    if (e == NULL)
        return -1;
    e->done = 1;
    return 0;
}

int64_t offq_advance(struct clv_offq *q)
{
    int64_t frontier = -1;

    while (q->len > 0 && at(q, 0)->done) {
        frontier = at(q, 0)->offset + 1;
        q->head = (q->head + 1) & (q->cap - 1);
        q->len--;
    }
    return frontier;
}

int64_t offq_first(const struct clv_offq *q)
{
    return q->len > 0 ? at(q, 0)->offset : -1;
}

/* offq.h -- one input partition's offsets in flight, and how far they may
 * be committed.
 *
 * The consumer pushes every offset it hands out, in ascending order (not
 * necessarily consecutive: compaction and transaction markers leave gaps);
 * a batch applied marks its offsets done, in any order; the frontier -- the
 * offset to commit -- is one past the longest done prefix.  Pure logic, no
 * I/O: unit-tested in tests/unit/test_offq.c. */
#ifndef CLVD_OFFQ_H
#define CLVD_OFFQ_H
#include <stddef.h>
#include <stdint.h>

struct clv_offq_entry {
    int64_t offset;
    int done;
};

/* A ring whose capacity is a power of two (an index wraps with a mask). */
struct clv_offq {
    struct clv_offq_entry *q;
    size_t head, len, cap;
};

void offq_free(struct clv_offq *q);
/* Forget every offset, keeping the memory (a new assignment). */
void offq_clear(struct clv_offq *q);
/* Append `offset`, larger than every offset in the queue.  Aborts when out
 * of memory, like any allocation of clvd's. */
void offq_push(struct clv_offq *q, int64_t offset);
/* Mark `offset` done: 0, or -1 if it is not in flight. */
int offq_mark_done(struct clv_offq *q, int64_t offset);
/* Drop the done prefix: the new frontier (one past its last offset), or -1
 * when the prefix was empty. */
int64_t offq_advance(struct clv_offq *q);
/* The oldest offset in flight, or -1 when none is. */
int64_t offq_first(const struct clv_offq *q);

#endif

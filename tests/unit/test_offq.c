/* test_offq.c -- a partition's offsets in flight and the commit frontier
 * (include/offq.h; SPEC section 8: an offset is committed only once it and
 * everything before it are applied). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "offq.h"

static void test_empty(void **state)
{
    struct clv_offq q = {0};

    (void)state;
    assert_int_equal(offq_first(&q), -1);
    assert_int_equal(offq_advance(&q), -1);
    assert_int_equal(offq_mark_done(&q, 0), -1);
    offq_free(&q);
}

/* Done out of order: the frontier moves only over a done prefix. */
static void test_frontier_waits_for_the_oldest(void **state)
{
    struct clv_offq q = {0};

    (void)state;
    for (int64_t o = 100; o < 105; o++)
        offq_push(&q, o);
    assert_int_equal(offq_mark_done(&q, 102), 0);
    assert_int_equal(offq_mark_done(&q, 101), 0);
    assert_int_equal(offq_advance(&q), -1); /* 100 is still in flight */
    assert_int_equal(offq_first(&q), 100);
    assert_int_equal(offq_mark_done(&q, 100), 0);
    assert_int_equal(offq_advance(&q), 103);
    assert_int_equal(offq_first(&q), 103);
    assert_int_equal(offq_mark_done(&q, 104), 0);
    assert_int_equal(offq_mark_done(&q, 103), 0);
    assert_int_equal(offq_advance(&q), 105);
    assert_int_equal(offq_first(&q), -1);
    assert_int_equal(q.len, 0);
    offq_free(&q);
}

/* Gaps (compaction, transaction markers): offsets not in flight are not
 * found, those around them are, and the frontier jumps the gap. */
static void test_gaps(void **state)
{
    static const int64_t offs[] = {5, 6, 9, 10, 11, 40, 41, 1000};
    struct clv_offq q = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
        offq_push(&q, offs[i]);
    assert_int_equal(offq_mark_done(&q, 7), -1);
    assert_int_equal(offq_mark_done(&q, 12), -1);
    assert_int_equal(offq_mark_done(&q, 999), -1);
    assert_int_equal(offq_mark_done(&q, 4), -1);
    assert_int_equal(offq_mark_done(&q, 1001), -1);
    /* 9 sits at index 2: the direct index (9 - 5 = 4) points at 11 */
    assert_int_equal(offq_mark_done(&q, 9), 0);
    assert_int_equal(offq_mark_done(&q, 41), 0);
    assert_int_equal(offq_mark_done(&q, 1000), 0);
    assert_int_equal(offq_mark_done(&q, 5), 0);
    assert_int_equal(offq_mark_done(&q, 6), 0);
    assert_int_equal(offq_advance(&q), 10); /* 5, 6, 9 */
    assert_int_equal(offq_mark_done(&q, 10), 0);
    assert_int_equal(offq_mark_done(&q, 11), 0);
    assert_int_equal(offq_mark_done(&q, 40), 0);
    assert_int_equal(offq_advance(&q), 1001);
    offq_free(&q);
}

/* Many more offsets than the first capacity, with the ring wrapped when it
 * grows; done in a scrambled order, every frontier is the longest done
 * prefix, checked against a plain array. */
static void test_wraps_and_grows(void **state)
{
    enum { N = 20000 };
    struct clv_offq q = {0};
    unsigned char *done = calloc(N, 1);
    int64_t pushed = 0, frontier = 0;
    uint64_t x = 88172645463325252ULL;

    (void)state;
    assert_non_null(done);
    /* keep ~700 in flight so that head moves round the ring before it grows */
    while (frontier < N) {
        while (pushed < N && pushed - frontier < 700 + (pushed / 5000) * 900)
            offq_push(&q, pushed++);
        for (int k = 0; k < 50; k++) {
            int64_t o;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            o = frontier + (int64_t)(x % (uint64_t)(pushed - frontier));
            assert_int_equal(offq_mark_done(&q, o), 0); /* at or past the frontier: queued */
            done[o] = 1;
        }
        {
            int64_t want = frontier, got;
            while (want < pushed && done[want])
                want++;
            got = offq_advance(&q);
            assert_int_equal(got, want > frontier ? want : -1);
            frontier = want;
            assert_int_equal(offq_first(&q), frontier < pushed ? frontier : -1);
        }
        if (pushed == N && frontier < N) /* finish the stragglers */
            for (int64_t o = frontier; o < N; o++)
                if (!done[o]) {
                    assert_int_equal(offq_mark_done(&q, o), 0);
                    done[o] = 1;
                    break;
                }
    }
    assert_true(q.cap > 1024); /* it grew */
    assert_int_equal(q.len, 0);
    free(done);
    offq_free(&q);
}

/* A new assignment forgets what was in flight but keeps the memory. */
static void test_clear(void **state)
{
    struct clv_offq q = {0};

    (void)state;
    offq_push(&q, 7);
    offq_push(&q, 8);
    offq_clear(&q);
    assert_int_equal(offq_first(&q), -1);
    assert_int_equal(offq_mark_done(&q, 7), -1);
    assert_non_null(q.q);
    offq_push(&q, 50);
    assert_int_equal(offq_mark_done(&q, 50), 0);
    assert_int_equal(offq_advance(&q), 51);
    offq_free(&q);
    assert_null(q.q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty), cmocka_unit_test(test_frontier_waits_for_the_oldest),
        cmocka_unit_test(test_gaps),  cmocka_unit_test(test_wraps_and_grows),
        cmocka_unit_test(test_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

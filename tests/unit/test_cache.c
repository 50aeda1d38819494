/* test_cache.c -- the worker's cache of the states it wrote (cache.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cache.h"

static const unsigned char *get(struct clv_state_cache *c, const char *id, size_t *len)
{
    return cache_get(c, id, strlen(id), len);
}

static void put(struct clv_state_cache *c, const char *id, const char *state)
{
    cache_put(c, id, strlen(id), (const unsigned char *)state, strlen(state));
}

static void test_disabled_below_two_slots(void **state)
{
    struct clv_state_cache c;
    size_t len;

    (void)state;
    assert_int_equal(cache_init(&c, 0), 0);
    assert_int_equal(c.nslots, 0);
    put(&c, "c1", "version1state");
    assert_null(get(&c, "c1", &len));
    cache_free(&c);
}

static void test_size_is_a_power_of_two_within_budget(void **state)
{
    struct clv_state_cache c;

    (void)state;
    assert_int_equal(cache_init(&c, 1000 * CLV_CACHE_SLOT), 0);
    assert_int_equal(c.nslots, 512);
    cache_free(&c);
    assert_int_equal(cache_init(&c, 1024 * CLV_CACHE_SLOT), 0);
    assert_int_equal(c.nslots, 1024);
    cache_free(&c);
}

static void test_put_get_exact(void **state)
{
    struct clv_state_cache c;
    const unsigned char *p;
    size_t len = 0;

    (void)state;
    assert_int_equal(cache_init(&c, 64 * CLV_CACHE_SLOT), 0);
    put(&c, "c1", "AAAAAAAA-state-one");
    p = get(&c, "c1", &len);
    assert_non_null(p);
    assert_int_equal(len, 18);
    assert_memory_equal(p, "AAAAAAAA-state-one", 18);
    /* an id that is a prefix of another is another customer */
    assert_null(get(&c, "c", &len));
    assert_null(get(&c, "c10", &len));
    put(&c, "c1", "BBBBBBBB-two");
    p = get(&c, "c1", &len);
    assert_int_equal(len, 12);
    assert_memory_equal(p, "BBBBBBBB-two", 12);
    assert_int_equal(c.hits, 2);
    assert_int_equal(c.misses, 2);
    cache_free(&c);
}

/* Two customers in one slot: the later one evicts, and the earlier one is
 * a miss (never the other's state). */
static void test_collision_evicts_never_confuses(void **state)
{
    struct clv_state_cache c;
    char a[16], b[16];
    size_t len;
    int found = 0;

    (void)state;
    assert_int_equal(cache_init(&c, 2 * CLV_CACHE_SLOT), 0);
    assert_int_equal(c.nslots, 2);
    snprintf(a, sizeof(a), "x0");
    put(&c, a, "AAAAAAAA");
    for (int i = 1; i < 100 && !found; i++) {
        size_t l0;
        snprintf(b, sizeof(b), "x%d", i);
        put(&c, b, "BBBBBBBB");
        found = get(&c, a, &l0) == NULL;
        if (!found)
            cache_drop(&c, b, strlen(b));
    }
    assert_true(found);
    assert_non_null(get(&c, b, &len));
    assert_memory_equal(get(&c, b, &len), "BBBBBBBB", 8);
    cache_free(&c);
}

static void test_too_big_drops_the_old_entry(void **state)
{
    struct clv_state_cache c;
    unsigned char big[CLV_CACHE_SLOT];
    size_t len;

    (void)state;
    memset(big, 'z', sizeof(big));
    assert_int_equal(cache_init(&c, 16 * CLV_CACHE_SLOT), 0);
    put(&c, "c7", "AAAAAAAA-small");
    assert_non_null(get(&c, "c7", &len));
    /* the customer grew past a slot: the stale small state must go */
    cache_put(&c, "c7", 2, big, sizeof(big) - 4);
    assert_null(get(&c, "c7", &len));
    /* the largest that fits: slot minus header minus id */
    cache_put(&c, "c7", 2, big, CLV_CACHE_SLOT - 3 - 2);
    assert_non_null(get(&c, "c7", &len));
    assert_int_equal(len, CLV_CACHE_SLOT - 5);
    cache_free(&c);
}

static void test_drop_and_generation(void **state)
{
    struct clv_state_cache c;
    size_t len;

    (void)state;
    assert_int_equal(cache_init(&c, 16 * CLV_CACHE_SLOT), 0);
    cache_validate(&c, 1);
    put(&c, "c1", "AAAAAAAA");
    put(&c, "c2", "BBBBBBBB");
    cache_drop(&c, "c1", 2);
    assert_null(get(&c, "c1", &len));
    assert_non_null(get(&c, "c2", &len));
    cache_validate(&c, 1); /* same connection: kept */
    assert_non_null(get(&c, "c2", &len));
    cache_validate(&c, 2); /* a new connection: forgotten */
    assert_null(get(&c, "c2", &len));
    cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disabled_below_two_slots),
        cmocka_unit_test(test_size_is_a_power_of_two_within_budget),
        cmocka_unit_test(test_put_get_exact),
        cmocka_unit_test(test_collision_evicts_never_confuses),
        cmocka_unit_test(test_too_big_drops_the_old_entry),
        cmocka_unit_test(test_drop_and_generation),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_keys.c -- virtual shards, key names and Redis Cluster slots (SPEC
 * sections 4 and 13). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng_state = 0x853c49e6748fea9bULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static unsigned slot_of(const char *key)
{
    return keys_cluster_slot(key, strlen(key));
}

static uint32_t shard_of(const char *id, uint32_t shards)
{
    return keys_shard_of(id, strlen(id), shards);
}

/* ---- shard hash ------------------------------------------------------------ */

/* Fixed values (FNV-1a 64 of the id, mod the shard count): a change of hash
 * moves every customer of a deployment to another shard, so it must break
 * this test. */
static void test_shard_stability(void **state)
{
    (void)state;
    assert_int_equal(shard_of("c42", 1024), 650);
    assert_int_equal(shard_of("customer-1", 1024), 413);
    assert_int_equal(shard_of("a", 1024), 262);
    assert_int_equal(shard_of("alice@example.com", 1024), 936);
    assert_int_equal(shard_of("{user1000}", 1024), 245);
    assert_int_equal(keys_shard_of("\xff\x80", 2, 1024), 348);
    assert_int_equal(keys_shard_of("", 0, 1024), 899);
    assert_int_equal(shard_of("c42", 16), 10);
    assert_int_equal(shard_of("customer-1", 65536), 36253);
    assert_int_equal(shard_of("a", 65536), 39174);
    assert_int_equal(shard_of("anything", 1), 0);
}

static void test_shard_range_and_spread(void **state)
{
    static const uint32_t counts[] = {1, 2, 7, 1024, 65536};
    unsigned hist[1024];
    char id[32];

    (void)state;
    for (size_t k = 0; k < ARRAY_LEN(counts); k++)
        for (int i = 0; i < 2000; i++) {
            snprintf(id, sizeof(id), "cust-%d", i);
            assert_true(shard_of(id, counts[k]) < counts[k]);
        }
    /* the id bytes, not the string: a NUL inside counts */
    assert_int_not_equal(keys_shard_of("a\0b", 3, 65536), keys_shard_of("a", 1, 65536));
    /* 102400 sequential ids over 1024 shards: every shard used, none more
     * than twice its share */
    memset(hist, 0, sizeof(hist));
    for (int i = 0; i < 102400; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        hist[shard_of(id, 1024)]++;
    }
    for (int s = 0; s < 1024; s++)
        if (hist[s] < 40 || hist[s] > 200)
            fail_msg("shard %d holds %u of 102400 ids", s, hist[s]);
}

/* ---- cluster slot ----------------------------------------------------------- */

static void test_cluster_slot_vectors(void **state)
{
    (void)state;
    /* CRC16-XMODEM("123456789") = 0x31C3, below 16384 */
    assert_int_equal(slot_of("123456789"), 0x31C3);
    /* Redis Cluster specification examples */
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    /* only the first {...} counts */
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    /* empty tag: the whole key */
    assert_int_equal(slot_of("foo{}{bar}"), keys_cluster_slot("foo{}{bar}", 10));
    assert_int_not_equal(slot_of("foo{}{bar}"), slot_of("bar"));
    /* the tag runs to the first } after the first { */
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    /* no closing brace: the whole key */
    assert_int_equal(slot_of("foo{bar"), keys_cluster_slot("foo{bar", 7));
    assert_int_not_equal(slot_of("foo{bar"), slot_of("bar"));
    /* the length bounds the key: a tag beyond it is not seen */
    assert_int_equal(keys_cluster_slot("abc{x}", 3), slot_of("abc"));
    for (int i = 0; i < 1000; i++) {
        char k[16];

        snprintf(k, sizeof(k), "k%d", i);
        assert_true(slot_of(k) < 16384);
    }
}

/* ---- key names --------------------------------------------------------------- */

/* Ids that try to break out: braces, separators, shard-key words, high bytes. */
static const struct {
    const char *id;
    size_t len;
} nasty[] = {
    {"c42", 3},
    {"{", 1},
    {"}", 1},
    {"{}", 2},
    {"{s1}", 4},
    {"}{s1}", 5},
    {":", 1},
    {"::", 2},
    {"due", 3},
    {"out", 3},
    {"stats", 5},
    {"c:", 2},
    {"c:due", 5},
    {":c:x", 4},
    {"x}:due", 6},
    {"meta", 4},
    {"\x80", 1},
    {"\xff\xfe", 2},
    {"\xc3\xa9t\xc3\xa9", 6},
    {"a\0b", 3},
    {"a", 1},
    {"a\0", 2},
    {" ", 1},
    {"*", 1},
    {"\r\n", 2},
};

static size_t cust_key(char *buf, const char *prefix, uint32_t shard, const char *id, size_t len)
{
    size_t n = keys_customer(buf, prefix, shard, id, len);

    assert_true(n < CLV_KEY_MAX);
    assert_int_equal(buf[n], '\0');
    return n;
}

static void check_prefix(const char *key, size_t n, const char *prefix, uint32_t shard)
{
    char want[64];
    int wn = snprintf(want, sizeof(want), "%s{s%u}:c:", prefix, shard);

    if (n < (size_t)wn || memcmp(key, want, (size_t)wn) != 0)
        fail_msg("key does not start with \"%s\"", want);
}

static void test_customer_key_layout(void **state)
{
    char buf[CLV_KEY_MAX];
    size_t n;

    (void)state;
    n = cust_key(buf, "clv:", 42, "c42", 3);
    assert_string_equal(buf, "clv:{s42}:c:c42");
    assert_int_equal(n, strlen("clv:{s42}:c:c42"));
    n = keys_due(buf, "clv:", 42);
    assert_string_equal(buf, "clv:{s42}:due");
    assert_int_equal(n, strlen(buf));
    n = keys_outbox(buf, "clv:", 42);
    assert_string_equal(buf, "clv:{s42}:out");
    assert_int_equal(n, strlen(buf));
    n = keys_stats(buf, "clv:", 42);
    assert_string_equal(buf, "clv:{s42}:stats");
    assert_int_equal(n, strlen(buf));
    n = keys_meta(buf, "clv:");
    assert_string_equal(buf, "clv:meta");
    assert_int_equal(n, strlen(buf));
    n = cust_key(buf, "", 0, "x", 1);
    assert_string_equal(buf, "{s0}:c:x");
    n = cust_key(buf, "shop-eu:", 65535, "x", 1);
    assert_string_equal(buf, "shop-eu:{s65535}:c:x");
    /* raw bytes, NUL included */
    n = cust_key(buf, "clv:", 7, "a\0b", 3);
    assert_int_equal(n, strlen("clv:{s7}:c:") + 3);
    assert_memory_equal(buf, "clv:{s7}:c:a\0b", n);
    /* the longest id fits */
    {
        char id[128];

        memset(id, 'z', sizeof(id));
        n = cust_key(buf, "clv:", 1023, id, sizeof(id));
        assert_int_equal(n, strlen("clv:{s1023}:c:") + 128);
        assert_memory_equal(buf + n - 128, id, 128);
    }
}

static void test_customer_keys_prefix_and_slot(void **state)
{
    static const char *const prefixes[] = {"clv:", "", "x", "prod:clv:"};
    static const uint32_t shards[] = {0, 1, 42, 1023, 65535};
    char buf[CLV_KEY_MAX], other[CLV_KEY_MAX];

    (void)state;
    for (size_t p = 0; p < ARRAY_LEN(prefixes); p++)
        for (size_t s = 0; s < ARRAY_LEN(shards); s++) {
            const char *pre = prefixes[p];
            uint32_t sh = shards[s];
            size_t n;
            unsigned slot;

            n = keys_due(other, pre, sh);
            slot = keys_cluster_slot(other, n);
            /* the tag is {sN}: the slot is CRC16("sN") */
            {
                char tag[16];
                snprintf(tag, sizeof(tag), "s%u", sh);
                assert_int_equal(slot, slot_of(tag));
            }
            n = keys_outbox(other, pre, sh);
            assert_int_equal(keys_cluster_slot(other, n), slot);
            n = keys_stats(other, pre, sh);
            assert_int_equal(keys_cluster_slot(other, n), slot);
            for (size_t i = 0; i < ARRAY_LEN(nasty); i++) {
                size_t kn = cust_key(buf, pre, sh, nasty[i].id, nasty[i].len);

                check_prefix(buf, kn, pre, sh);
                assert_memory_equal(buf + kn - nasty[i].len, nasty[i].id, nasty[i].len);
                if (keys_cluster_slot(buf, kn) != slot)
                    fail_msg("id #%zu in shard %u: slot %u, shard keys in %u", i, sh,
                             keys_cluster_slot(buf, kn), slot);
                /* never one of the shard's own keys, nor the meta key */
                n = keys_due(other, pre, sh);
                assert_false(kn == n && memcmp(buf, other, n) == 0);
                n = keys_outbox(other, pre, sh);
                assert_false(kn == n && memcmp(buf, other, n) == 0);
                n = keys_stats(other, pre, sh);
                assert_false(kn == n && memcmp(buf, other, n) == 0);
                n = keys_meta(other, pre);
                assert_false(kn == n && memcmp(buf, other, n) == 0);
            }
        }
}

struct keyrec {
    char key[CLV_KEY_MAX];
    size_t len;
};

static int cmp_keyrec(const void *a, const void *b)
{
    const struct keyrec *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);

    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Different ids give different keys, within a shard and across shards (each
 * id in its own shard), and no id's key equals a shard key. */
static void test_customer_keys_injective(void **state)
{
    enum { NRAND = 4000 };
    size_t nk = ARRAY_LEN(nasty) + NRAND;
    struct keyrec *recs = calloc(nk, sizeof(*recs));
    static const char alphabet[] = "{}:cdueotsa\x80\xff\0";
    char ids[NRAND][12];
    size_t lens[NRAND];

    (void)state;
    assert_non_null(recs);
    /* random ids over an alphabet of the dangerous bytes, lengths 0..11;
     * duplicates among them are removed by comparing ids too */
    for (int i = 0; i < NRAND; i++) {
        lens[i] = 1 + (size_t)(rnd() % 11);
        for (size_t k = 0; k < lens[i]; k++)
            ids[i][k] = alphabet[rnd() % (sizeof(alphabet) - 1)]; /* incl. the NUL */
    }
    for (int same_shard = 0; same_shard < 2; same_shard++) {
        size_t n = 0;

        for (size_t i = 0; i < ARRAY_LEN(nasty); i++, n++) {
            uint32_t sh = same_shard ? 7 : keys_shard_of(nasty[i].id, nasty[i].len, 1024);
            recs[n].len = cust_key(recs[n].key, "clv:", sh, nasty[i].id, nasty[i].len);
        }
        for (int i = 0; i < NRAND; i++, n++) {
            uint32_t sh = same_shard ? 7 : keys_shard_of(ids[i], lens[i], 1024);
            recs[n].len = cust_key(recs[n].key, "clv:", sh, ids[i], lens[i]);
        }
        qsort(recs, n, sizeof(*recs), cmp_keyrec);
        for (size_t i = 1; i < n; i++)
            if (cmp_keyrec(&recs[i - 1], &recs[i]) == 0) {
                /* equal keys are fine only for equal ids: the id is the tail
                 * after the fixed-length ":c:" marker of a given shard */
                const char *a = strstr(recs[i].key, "}:c:");
                assert_non_null(a);
                /* same key means same shard and same bytes after the marker:
                 * recover the id and check it occurs twice in the inputs */
                {
                    size_t idlen = recs[i].len - (size_t)(a + 4 - recs[i].key);
                    int count = 0;
                    for (size_t k = 0; k < ARRAY_LEN(nasty); k++)
                        count += nasty[k].len == idlen && memcmp(nasty[k].id, a + 4, idlen) == 0;
                    for (int k = 0; k < NRAND; k++)
                        count += lens[k] == idlen && memcmp(ids[k], a + 4, idlen) == 0;
                    if (count < 2)
                        fail_msg("two different ids share the key \"%s\"", recs[i].key);
                }
            }
    }
    free(recs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_stability),
        cmocka_unit_test(test_shard_range_and_spread),
        cmocka_unit_test(test_cluster_slot_vectors),
        cmocka_unit_test(test_customer_key_layout),
        cmocka_unit_test(test_customer_keys_prefix_and_slot),
        cmocka_unit_test(test_customer_keys_injective),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

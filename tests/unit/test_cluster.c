/* test_cluster.c -- the pure parts of Redis Cluster routing (cluster.h):
 * CLUSTER SLOTS replies, MOVED / ASK errors, addresses, routing keys, RESP
 * formatting and the slot table (SPEC section 13).  Replies are built by
 * hiredis's own reader from RESP text, as the store receives them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cluster.h"
#include "keys.h"

/* ---- helpers ---------------------------------------------------------------- */

/* A reply parsed from RESP text (the test fails on malformed text). */
static redisReply *resp(const char *text)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;

    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, text, strlen(text)), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

/* A master entry [host, port, id, metadata] as Redis 7 sends it. */
#define NODE(len, host, port, id)                                                                  \
    "*4\r\n$" #len "\r\n" #host "\r\n:" #port "\r\n$40\r\n" id "\r\n*0\r\n"
#define ID1 "1111111111111111111111111111111111111111"
#define ID2 "2222222222222222222222222222222222222222"
#define ID3 "3333333333333333333333333333333333333333"
#define ID4 "4444444444444444444444444444444444444444"

static const char three_masters[] = "*3\r\n"
                                    "*3\r\n:0\r\n:5460\r\n"
                                    "*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n$40\r\n" ID1 "\r\n*0\r\n"
                                    "*3\r\n:5461\r\n:10922\r\n"
                                    "*4\r\n$9\r\n127.0.0.1\r\n:7002\r\n$40\r\n" ID2 "\r\n*0\r\n"
                                    "*3\r\n:10923\r\n:16383\r\n"
                                    "*4\r\n$9\r\n127.0.0.1\r\n:7003\r\n$40\r\n" ID3 "\r\n*0\r\n";

static struct clv_cluster_map *new_map(void)
{
    struct clv_cluster_map *m = malloc(sizeof(*m));

    assert_non_null(m);
    cluster_map_init(m);
    return m;
}

static int node_port(const struct clv_cluster_map *m, unsigned slot)
{
    int n = cluster_slot_node(m, slot);

    return n < 0 ? -1 : m->node[n].port;
}

/* ---- CLUSTER SLOTS ------------------------------------------------------------ */

static void test_slots_three_masters(void **state)
{
    struct clv_cluster_map *m = new_map();
    redisReply *r = resp(three_masters);
    char err[256] = "";

    (void)state;
    assert_int_equal(cluster_apply_slots(m, r, "seed", err, sizeof(err)), 3);
    assert_int_equal(node_port(m, 0), 7001);
    assert_int_equal(node_port(m, 5460), 7001);
    assert_int_equal(node_port(m, 5461), 7002);
    assert_int_equal(node_port(m, 10922), 7002);
    assert_int_equal(node_port(m, 10923), 7003);
    assert_int_equal(node_port(m, 16383), 7003);
    assert_int_equal(cluster_slot_node(m, 16384), -1);
    assert_string_equal(m->node[cluster_slot_node(m, 0)].host, "127.0.0.1");
    assert_int_equal(cluster_node_slots(m, cluster_slot_node(m, 0)), 5461);
    assert_int_equal(cluster_node_slots(m, cluster_slot_node(m, 16383)), 5461);
    assert_int_equal(m->nnodes, 3);
    /* a key's slot, as the store routes it */
    assert_int_equal(node_port(m, keys_cluster_slot("clv:{s2}:c:x", 12)), 7001); /* 2843 */
    assert_int_equal(node_port(m, keys_cluster_slot("clv:{s3}:due", 12)), 7002); /* 6970 */
    assert_int_equal(node_port(m, keys_cluster_slot("clv:{s0}:out", 12)), 7003); /* 11097 */
    freeReplyObject(r);
    free(m);
}

/* Replicas follow the master in an entry: they are not routed to.  After
 * a reshard one master serves several ranges; slots nobody serves stay
 * unknown. */
static void test_slots_replicas_ranges_and_gaps(void **state)
{
    struct clv_cluster_map *m = new_map();
    redisReply *r = resp(
        "*3\r\n"
        "*4\r\n:0\r\n:99\r\n" NODE(8, 10.0.0.1, 7001, ID1)
            NODE(8, 10.0.0.4, 7004, ID4) "*3\r\n:100\r\n:199\r\n" NODE(
                8, 10.0.0.2, 7002, ID2) "*3\r\n:300\r\n:16383\r\n" NODE(8, 10.0.0.1, 7001, ID1));
    char err[256];

    (void)state;
    assert_int_equal(cluster_apply_slots(m, r, "seed", err, sizeof(err)), 2);
    assert_int_equal(m->nnodes, 2);
    assert_int_equal(cluster_node_find(m, "10.0.0.4", 7004), -1);
    assert_int_equal(node_port(m, 50), 7001);
    assert_int_equal(node_port(m, 150), 7002);
    assert_int_equal(node_port(m, 200), -1);
    assert_int_equal(node_port(m, 299), -1);
    assert_int_equal(node_port(m, 300), 7001);
    assert_int_equal(cluster_node_slots(m, cluster_node_find(m, "10.0.0.1", 7001)),
                     100 + 16384 - 300);
    freeReplyObject(r);
    free(m);
}

/* A node that does not know its address announces "" (or "?"): it is the
 * node that was asked. */
static void test_slots_unknown_endpoint(void **state)
{
    struct clv_cluster_map *m = new_map();
    redisReply *r = resp("*2\r\n"
                         "*3\r\n:0\r\n:8191\r\n*2\r\n$0\r\n\r\n:7001\r\n"
                         "*3\r\n:8192\r\n:16383\r\n*2\r\n$1\r\n?\r\n:7002\r\n");
    char err[256];

    (void)state;
    assert_int_equal(cluster_apply_slots(m, r, "redis-a.example", err, sizeof(err)), 2);
    assert_string_equal(m->node[cluster_slot_node(m, 0)].host, "redis-a.example");
    assert_string_equal(m->node[cluster_slot_node(m, 9000)].host, "redis-a.example");
    assert_int_equal(node_port(m, 9000), 7002);
    freeReplyObject(r);
    free(m);
}

/* A second map keeps the entries of nodes it still names (their
 * connections survive a refresh) and moves the slots. */
static void test_slots_refresh_keeps_nodes(void **state)
{
    struct clv_cluster_map *m = new_map();
    redisReply *a = resp(three_masters);
    redisReply *b = resp(
        "*4\r\n"
        "*3\r\n:0\r\n:1999\r\n" NODE(9, 127.0.0.1, 7002, ID2) "*3\r\n:2000\r\n:5460\r\n" NODE(
            9, 127.0.0.1, 7001,
            ID1) "*3\r\n:5461\r\n:10922\r\n" NODE(9, 127.0.0.1, 7002,
                                                  ID2) "*3\r\n:10923\r\n:16383\r\n" NODE(9,
                                                                                         127.0.0.1,
                                                                                         7003,
                                                                                         ID3));
    char err[256];
    int n1, n2;

    (void)state;
    assert_int_equal(cluster_apply_slots(m, a, "seed", err, sizeof(err)), 3);
    n1 = cluster_node_find(m, "127.0.0.1", 7001);
    n2 = cluster_node_find(m, "127.0.0.1", 7002);
    assert_int_equal(cluster_apply_slots(m, b, "seed", err, sizeof(err)), 3);
    assert_int_equal(cluster_node_find(m, "127.0.0.1", 7001), n1);
    assert_int_equal(cluster_node_find(m, "127.0.0.1", 7002), n2);
    assert_int_equal(cluster_slot_node(m, 0), n2);
    assert_int_equal(cluster_slot_node(m, 1999), n2);
    assert_int_equal(cluster_slot_node(m, 2000), n1);
    assert_int_equal(cluster_node_slots(m, n1), 3461);
    assert_int_equal(cluster_node_slots(m, n2), 2000 + 5462);
    freeReplyObject(a);
    freeReplyObject(b);
    free(m);
}

/* Anything malformed is refused and leaves the map as it was. */
static void test_slots_malformed(void **state)
{
    static const char *const bad[] = {
        "-ERR This instance has cluster support disabled\r\n",
        "*0\r\n",                                                  /* no slot served yet */
        "$2\r\nno\r\n",                                            /* not an array */
        "*1\r\n:5\r\n",                                            /* entry not an array */
        "*1\r\n*2\r\n:0\r\n:10\r\n",                               /* no master */
        "*1\r\n*3\r\n:10\r\n:5\r\n" NODE(1, h, 7001, ID1),         /* start > end */
        "*1\r\n*3\r\n:0\r\n:16384\r\n" NODE(1, h, 7001, ID1),      /* end beyond the last slot */
        "*1\r\n*3\r\n:-1\r\n:5\r\n" NODE(1, h, 7001, ID1),         /* negative */
        "*1\r\n*3\r\n$1\r\n0\r\n:5\r\n" NODE(1, h, 7001, ID1),     /* start a string */
        "*1\r\n*3\r\n:0\r\n:5\r\n" NODE(1, h, 0, ID1),             /* port 0 */
        "*1\r\n*3\r\n:0\r\n:5\r\n" NODE(1, h, 65536, ID1),         /* port too big */
        "*1\r\n*3\r\n:0\r\n:5\r\n*1\r\n$1\r\nh\r\n",               /* no port */
        "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n:1\r\n:7001\r\n",           /* host not a string */
        "*2\r\n*3\r\n:0\r\n:5\r\n" NODE(1, h, 7001, ID1) ":7\r\n", /* second entry bad */
    };
    struct clv_cluster_map *m = new_map();
    redisReply *good = resp(three_masters);
    char err[256];

    (void)state;
    assert_int_equal(cluster_apply_slots(m, good, "seed", err, sizeof(err)), 3);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = resp(bad[i]);
        err[0] = '\0';
        if (cluster_apply_slots(m, r, "seed", err, sizeof(err)) != -1)
            fail_msg("accepted malformed reply %zu", i);
        assert_true(strncmp(err, "CLUSTER SLOTS", 13) == 0);
        assert_int_equal(node_port(m, 0), 7001);
        assert_int_equal(node_port(m, 16383), 7003);
        freeReplyObject(r);
    }
    assert_int_equal(cluster_apply_slots(m, NULL, "seed", err, sizeof(err)), -1);
    freeReplyObject(good);
    free(m);
}

/* ---- the node table ---------------------------------------------------------- */

static void test_node_table(void **state)
{
    struct clv_cluster_map *m = new_map();
    char host[32];
    int a, b, c;

    (void)state;
    assert_int_equal(cluster_any_node(m), -1);
    a = cluster_node_add(m, "10.0.0.1", 7001);
    b = cluster_node_add(m, "10.0.0.2", 7001);
    assert_int_not_equal(a, b);
    assert_int_equal(cluster_node_add(m, "10.0.0.1", 7001), a);
    assert_int_equal(cluster_node_find(m, "10.0.0.1", 7002), -1);
    assert_int_equal(cluster_node_add(m, "", 7001), -1);
    cluster_set_slot(m, 42, b);
    cluster_set_slot(m, 16384, a); /* ignored */
    assert_int_equal(cluster_slot_node(m, 42), b);
    assert_int_equal(cluster_any_node(m), b);
    assert_int_equal(cluster_node_slots(m, b), 1);
    /* forgetting a node clears its slots and frees its entry for reuse */
    cluster_node_forget(m, b);
    assert_int_equal(cluster_slot_node(m, 42), -1);
    assert_int_equal(cluster_node_find(m, "10.0.0.2", 7001), -1);
    assert_int_equal(m->nnodes, 1);
    c = cluster_node_add(m, "10.0.0.3", 7003);
    assert_int_equal(c, b);
    cluster_node_forget(m, a); /* a hole below c */
    assert_int_equal(m->nnodes, 2);
    assert_int_equal(cluster_node_add(m, "10.0.0.4", 7004), a);
    /* the table is bounded */
    for (int i = 0; i < CLV_CLUSTER_MAX_NODES; i++) {
        snprintf(host, sizeof(host), "10.1.0.%d", i);
        cluster_node_add(m, host, 7000);
    }
    assert_int_equal(m->nnodes, CLV_CLUSTER_MAX_NODES);
    assert_int_equal(cluster_node_add(m, "10.2.0.1", 7000), -1);
    assert_int_equal(cluster_node_add(m, "10.0.0.3", 7003), c); /* known: still found */
    free(m);
}

/* ---- addresses and redirections ------------------------------------------------ */

static void test_hostport(void **state)
{
    char host[CLV_CLUSTER_HOST_MAX], tiny[4];
    int port = 0;

#define OK(s, h, p)                                                                                \
    do {                                                                                           \
        assert_int_equal(cluster_parse_hostport(s, strlen(s), host, sizeof(host), &port), 0);      \
        assert_string_equal(host, h);                                                              \
        assert_int_equal(port, p);                                                                 \
    } while (0)
#define BAD(s) assert_int_equal(cluster_parse_hostport(s, strlen(s), host, sizeof(host), &port), -1)
    (void)state;
    OK("127.0.0.1:7000", "127.0.0.1", 7000);
    OK("redis-0.redis.svc:6379", "redis-0.redis.svc", 6379);
    OK("[::1]:7000", "::1", 7000);
    OK("fe80::1:7001", "fe80::1", 7001); /* unbracketed: the port follows the last colon */
    OK("h:1", "h", 1);
    OK("h:65535", "h", 65535);
    BAD("h");
    BAD(":7000");
    BAD("h:");
    BAD("h:0");
    BAD("h:65536");
    BAD("h:12x");
    BAD("h:-1");
    BAD("[::1]7000");
    BAD("[::1");
    BAD("[]:7000");
    BAD("");
    assert_int_equal(cluster_parse_hostport("abcd:1", 6, tiny, sizeof(tiny), &port), -1);
    assert_int_equal(cluster_parse_hostport("abc:1", 5, tiny, sizeof(tiny), &port), 0);
    /* only len bytes count */
    assert_int_equal(cluster_parse_hostport("h:70001", 6, host, sizeof(host), &port), 0);
    assert_int_equal(port, 7000);
#undef OK
#undef BAD
}

static void test_redirects(void **state)
{
    char host[CLV_CLUSTER_HOST_MAX];
    unsigned slot = 0;
    int port = 0;

#define PARSE(s) cluster_parse_redirect(s, strlen(s), &slot, host, sizeof(host), &port)
    (void)state;
    assert_int_equal(PARSE("MOVED 3999 127.0.0.1:6381"), CLV_REDIRECT_MOVED);
    assert_int_equal(slot, 3999);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6381);
    assert_int_equal(PARSE("ASK 16383 10.1.2.3:7002"), CLV_REDIRECT_ASK);
    assert_int_equal(slot, 16383);
    assert_string_equal(host, "10.1.2.3");
    assert_int_equal(port, 7002);
    assert_int_equal(PARSE("MOVED 0 redis-2.example:6379"), CLV_REDIRECT_MOVED);
    assert_int_equal(slot, 0);
    assert_string_equal(host, "redis-2.example");
    /* a node that does not know its address: host "" (the one that said it) */
    assert_int_equal(PARSE("MOVED 12 :7003"), CLV_REDIRECT_MOVED);
    assert_string_equal(host, "");
    assert_int_equal(port, 7003);
    assert_int_equal(PARSE("ASK 7 ::1:7004"), CLV_REDIRECT_ASK);
    assert_string_equal(host, "::1");
    assert_int_equal(PARSE("MOVED 7 [::1]:7004"), CLV_REDIRECT_MOVED);
    assert_string_equal(host, "::1");
    /* not redirections */
    assert_int_equal(PARSE("ERR unknown command"), CLV_REDIRECT_NONE);
    assert_int_equal(PARSE("TRYAGAIN Multiple keys request during rehashing of slot"),
                     CLV_REDIRECT_NONE);
    assert_int_equal(PARSE("CLUSTERDOWN Hash slot not served"), CLV_REDIRECT_NONE);
    assert_int_equal(PARSE("MOVEDX 1 h:1"), CLV_REDIRECT_NONE);
    assert_int_equal(PARSE("moved 1 h:1"), CLV_REDIRECT_NONE);
    assert_int_equal(PARSE(""), CLV_REDIRECT_NONE);
    /* malformed redirections */
    assert_int_equal(PARSE("MOVED "), -1);
    assert_int_equal(PARSE("MOVED 1"), -1);
    assert_int_equal(PARSE("MOVED 1 "), -1);
    assert_int_equal(PARSE("MOVED x h:1"), -1);
    assert_int_equal(PARSE("MOVED 16384 h:1"), -1);
    assert_int_equal(PARSE("MOVED 99999999 h:1"), -1);
    assert_int_equal(PARSE("MOVED -1 h:1"), -1);
    assert_int_equal(PARSE("MOVED 1 h"), -1);
    assert_int_equal(PARSE("MOVED 1 h:0"), -1);
    assert_int_equal(PARSE("MOVED 1 h:70000"), -1);
    assert_int_equal(PARSE("MOVED 1 h:1 trailing"), -1);
    assert_int_equal(PARSE("MOVED 1  h:1"), -1);
    assert_int_equal(PARSE("ASK 1x h:1"), -1);
#undef PARSE
}

static void test_is_error(void **state)
{
    redisReply *try = resp("-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
    redisReply *down = resp("-CLUSTERDOWN The cluster is down\r\n");
    redisReply *bare = resp("-TRYAGAIN\r\n");
    redisReply *longer = resp("-TRYAGAINX\r\n");
    redisReply *status = resp("+TRYAGAIN\r\n");

    (void)state;
    assert_true(cluster_is_error(try, "TRYAGAIN"));
    assert_false(cluster_is_error(try, "CLUSTERDOWN"));
    assert_true(cluster_is_error(down, "CLUSTERDOWN"));
    assert_true(cluster_is_error(bare, "TRYAGAIN"));
    assert_false(cluster_is_error(longer, "TRYAGAIN"));
    assert_false(cluster_is_error(status, "TRYAGAIN"));
    assert_false(cluster_is_error(NULL, "TRYAGAIN"));
    freeReplyObject(try);
    freeReplyObject(down);
    freeReplyObject(bare);
    freeReplyObject(longer);
    freeReplyObject(status);
}

/* ---- routing keys --------------------------------------------------------------- */

static const char *route(int argc, const char **argv)
{
    static char buf[CLV_KEY_MAX];
    const char *key;
    size_t len;

    if (cluster_routing_key(argc, argv, NULL, &key, &len) != 0)
        return NULL;
    snprintf(buf, sizeof(buf), "%.*s", (int)len, key);
    return buf;
}

static void test_routing_keys(void **state)
{
    const char *get[] = {"GET", "clv:{s1}:c:a"};
    const char *lower[] = {"get", "k"};
    const char *hset[] = {"HSET", "clv:alerts:state", "f", "v"};
    const char *zr[] = {"ZRANGEBYSCORE", "clv:{s2}:due", "-inf", "+inf"};
    const char *evalsha[] = {"EVALSHA",
                             "0123456789012345678901234567890123456789",
                             "3",
                             "clv:{s3}:due",
                             "clv:{s3}:out",
                             "clv:{s3}:stats",
                             "x"};
    const char *eval[] = {"eval", "return 1", "1", "k1", "a"};
    const char *fcall[] = {"FCALL", "f", "2", "k1", "k2"};
    const char *nokeys[] = {"EVALSHA", "sha", "0", "arg"};
    const char *badnum[] = {"EVALSHA", "sha", "x", "k"};
    const char *short_eval[] = {"EVALSHA", "sha", "1"};
    const char *ping[] = {"PING"};
    const char *script[] = {"SCRIPT", "LOAD", "return 1"};
    const char *cluster[] = {"CLUSTER", "SLOTS"};
    const char *auth[] = {"AUTH", "user", "secret"};
    const char *flush[] = {"flushall"};
    const char *scan[] = {"SCAN", "0"};
    const char *bare[] = {"GET"};
    const char *binkey[] = {"GET", "a\0b{x}"};
    const size_t binlen[] = {3, 6};
    const char *key;
    size_t len;

    (void)state;
    assert_string_equal(route(2, get), "clv:{s1}:c:a");
    assert_string_equal(route(2, lower), "k");
    assert_string_equal(route(4, hset), "clv:alerts:state");
    assert_string_equal(route(4, zr), "clv:{s2}:due");
    assert_string_equal(route(7, evalsha), "clv:{s3}:due");
    assert_string_equal(route(5, eval), "k1");
    assert_string_equal(route(5, fcall), "k1");
    assert_null(route(4, nokeys));
    assert_null(route(4, badnum));
    assert_null(route(3, short_eval));
    assert_null(route(1, ping));
    assert_null(route(3, script));
    assert_null(route(2, cluster));
    assert_null(route(3, auth));
    assert_null(route(1, flush));
    assert_null(route(2, scan));
    assert_null(route(1, bare));
    assert_int_equal(cluster_routing_key(2, binkey, binlen, &key, &len), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(key, "a\0b{x}", 6);
    assert_int_equal(keys_cluster_slot(key, len), keys_cluster_slot("x", 1));
}

/* Every key one script call touches is in one slot, whatever the id (even
 * one with braces: the shard's tag comes first), so a call is routed by its
 * first key. */
static void test_script_keys_share_a_slot(void **state)
{
    static const char *const ids[] = {"c1", "{s9}", "}{", "a{b}c", "\xff\x01", "x:c:y"};
    char k[6][CLV_KEY_MAX];
    size_t n[6];

    (void)state;
    for (uint32_t shard = 0; shard < 1024; shard += 37)
        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
            n[0] = keys_customer(k[0], "clv:", shard, ids[i], strlen(ids[i]));
            n[1] = keys_due(k[1], "clv:", shard);
            n[2] = keys_outbox(k[2], "clv:", shard);
            n[3] = keys_stats(k[3], "clv:", shard);
            n[4] = keys_lease(k[4], "clv:", shard);
            for (int j = 1; j < 5; j++)
                assert_int_equal(keys_cluster_slot(k[0], n[0]), keys_cluster_slot(k[j], n[j]));
        }
    keys_clock(k[0], k[1], "clv:");
    assert_int_equal(keys_cluster_slot(k[0], strlen(k[0])), keys_cluster_slot(k[1], strlen(k[1])));
}

/* ---- RESP ------------------------------------------------------------------------- */

static void test_resp_format_and_split(void **state)
{
    const char *argv[] = {"EVALSHA", "sha", "1", "clv:{s1}:due", "", "bin\0ary"};
    const size_t argvlen[] = {7, 3, 1, 12, 0, 7};
    struct clv_sbuf b;
    char *hiredis = NULL;
    int len = redisFormatCommandArgv(&hiredis, 6, argv, argvlen);
    const char *out[8];
    size_t outlen[8];

    (void)state;
    sbuf_init(&b);
    cluster_format_argv(&b, 6, argv, argvlen);
    assert_int_equal(b.len, (size_t)len);
    assert_memory_equal(b.buf, hiredis, b.len); /* byte for byte what hiredis sends */
    assert_int_equal(cluster_resp_argv(b.buf, b.len, 8, out, outlen), 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(outlen[i], argvlen[i]);
        assert_memory_equal(out[i], argv[i], argvlen[i]);
    }
    assert_int_equal(cluster_resp_argv(b.buf, b.len, 5, out, outlen), -1); /* too many */
    for (size_t cut = 0; cut < b.len; cut++)
        assert_int_equal(cluster_resp_argv(b.buf, cut, 8, out, outlen), -1);
    /* argvlen NULL: NUL-terminated arguments */
    sbuf_reset(&b);
    cluster_format_argv(&b, 2, argv, NULL);
    assert_int_equal(b.len, strlen("*2\r\n$7\r\nEVALSHA\r\n$3\r\nsha\r\n"));
    assert_memory_equal(b.buf, "*2\r\n$7\r\nEVALSHA\r\n$3\r\nsha\r\n", b.len);
    free(hiredis);
    sbuf_free(&b);
}

static void test_resp_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "GET k\r\n",                       /* inline command */
        "*\r\n",                           /* no count */
        "*1\r\n",                          /* missing argument */
        "*1\r\n$3\r\nGET",                 /* no CRLF */
        "*1\r\n$3\r\nGETX\r\n",            /* longer than said */
        "*1\r\n$4\r\nGET\r\n",             /* shorter than said */
        "*1\r\n$x\r\nGET\r\n",             /* bad length */
        "*1\r\n:3\r\nGET\r\n",             /* not a bulk string */
        "*1\r\n$3\r\nGET\r\ntrailing",     /* trailing bytes */
        "*2\r\n$3\r\nGET\r\n",             /* count too big */
        "*1\n$3\nGET\n",                   /* LF only */
        "*99999999999999999999\r\n",       /* absurd count */
        "*1\r\n$99999999999999999999\r\n", /* absurd length */
    };
    const char *argv[4];
    size_t argvlen[4];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (cluster_resp_argv(bad[i], strlen(bad[i]), 4, argv, argvlen) != -1)
            fail_msg("accepted malformed RESP %zu", i);
    assert_int_equal(cluster_resp_argv("*0\r\n", 4, 4, argv, argvlen), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots_three_masters),
        cmocka_unit_test(test_slots_replicas_ranges_and_gaps),
        cmocka_unit_test(test_slots_unknown_endpoint),
        cmocka_unit_test(test_slots_refresh_keeps_nodes),
        cmocka_unit_test(test_slots_malformed),
        cmocka_unit_test(test_node_table),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_is_error),
        cmocka_unit_test(test_routing_keys),
        cmocka_unit_test(test_script_keys_share_a_slot),
        cmocka_unit_test(test_resp_format_and_split),
        cmocka_unit_test(test_resp_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

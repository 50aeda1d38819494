/* cluster.h -- Redis Cluster bookkeeping for the store (SPEC section 13).
 *
 * hiredis 0.14 has no cluster support, so clvd routes by itself: the slot
 * map (16384 slots -> master node) filled from CLUSTER SLOTS and patched by
 * MOVED replies, the table of master nodes (their connections are opened
 * and used by store.c), and the pure parts of routing: which argument a
 * command is routed by, MOVED / ASK error parsing, "host:port" parsing and
 * RESP formatting.  Nothing here does I/O, so all of it is unit-tested
 * without a server (tests/unit/test_cluster.c).
 *
 * Every key clvd writes carries a hash tag (keys.h), so every command and
 * every script call touches exactly one slot and is routed by one key. */
#ifndef CLVD_CLUSTER_H
#define CLVD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "common.h"
#include "sbuf.h"

#define CLV_CLUSTER_SLOTS 16384
#define CLV_CLUSTER_MAX_NODES 64
#define CLV_CLUSTER_HOST_MAX 256

/* One master (or seed) node.  An entry with host[0] == '\0' is free. */
struct clv_cluster_node {
    char host[CLV_CLUSTER_HOST_MAX];
    int port;
    redisContext *ctx;   /* NULL while not connected; owned by store.c */
    clv_ms retry_at;     /* no connection attempt before this (monotonic ms) */
    clv_ms next_warning; /* connection failures are logged at most this often */
    int lost;            /* its connection broke: the next one is a reconnect */
    unsigned gen;        /* connections opened so far: replies of an old one are lost */
};

struct clv_cluster_map {
    int16_t slot[CLV_CLUSTER_SLOTS]; /* node index; -1: no master known */
    struct clv_cluster_node node[CLV_CLUSTER_MAX_NODES];
    int nnodes; /* entries below this index may be in use */
};

/* Every slot unknown, no node. */
void cluster_map_init(struct clv_cluster_map *m);

/* The entry of host:port, or -1. */
int cluster_node_find(const struct clv_cluster_map *m, const char *host, int port);
/* Find host:port or add it (in a free entry); -1 when the table is full. */
int cluster_node_add(struct clv_cluster_map *m, const char *host, int port);
/* Number of slots served by node i. */
int cluster_node_slots(const struct clv_cluster_map *m, int i);
/* Free entry i (its connection must be closed already). */
void cluster_node_forget(struct clv_cluster_map *m, int i);

/* The node serving `slot` (-1 if unknown), or the one a key hashes to. */
int cluster_slot_node(const struct clv_cluster_map *m, unsigned slot);
void cluster_set_slot(struct clv_cluster_map *m, unsigned slot, int node);
/* A node serving some slot (for commands without a key), or -1. */
int cluster_any_node(const struct clv_cluster_map *m);

/* Replace the slot map with a CLUSTER SLOTS reply: an array of
 * [start, end, [host, port, id, ...], replicas...].  An empty host (a node
 * that does not know its address) means `asked_host`, the host the reply
 * came from.  The map is changed only if the whole reply is valid and
 * covers at least one slot; returns the number of masters, or -1. */
int cluster_apply_slots(struct clv_cluster_map *m, const redisReply *r, const char *asked_host,
                        char *err, size_t errlen);

/* "host:port", "[v6addr]:port" or "v6addr:port" (the port follows the last
 * colon) -> host and port; -1 if malformed or the host does not fit. */
int cluster_parse_hostport(const char *s, size_t len, char *host, size_t hostlen, int *port);

enum clv_redirect { CLV_REDIRECT_NONE = 0, CLV_REDIRECT_MOVED, CLV_REDIRECT_ASK };

/* An error reply's text: "MOVED <slot> <host>:<port>" or "ASK ..." gives
 * the kind, slot and address (host "" when the node did not know it: then
 * it is the host the reply came from).  CLV_REDIRECT_NONE for any other
 * error, -1 for a MOVED / ASK that cannot be parsed. */
int cluster_parse_redirect(const char *msg, size_t len, unsigned *slot, char *host, size_t hostlen,
                           int *port);

/* The error reply begins with `word` followed by a space or the end
 * ("TRYAGAIN", "CLUSTERDOWN", "NOSCRIPT"). */
int cluster_is_error(const redisReply *r, const char *word);

/* The key a command is routed by: EVAL / EVALSHA / FCALL (and their _RO
 * forms) -> argv[3] when numkeys > 0; node-level commands (PING, AUTH,
 * SCRIPT, CLUSTER, INFO, ...) -> none; any other command -> argv[1].
 * Returns 0 with key / keylen set, or -1 when the command has no key.
 * argvlen may be NULL (NUL-terminated arguments). */
int cluster_routing_key(int argc, const char **argv, const size_t *argvlen, const char **key,
                        size_t *keylen);

/* Split a RESP command ("*N\r\n$L\r\n...") into at most `max` arguments
 * (pointers into buf); returns the argument count, or -1 if malformed or
 * longer than max. */
int cluster_resp_argv(const char *buf, size_t len, int max, const char **argv, size_t *argvlen);

/* Append a command in RESP to b, as hiredis would send it. */
void cluster_format_argv(struct clv_sbuf *b, int argc, const char **argv, const size_t *argvlen);

#endif

/* sweeper.c -- due index scanning; see sweeper.h. */
#include "sweeper.h"

#include <stdio.h>
#include <string.h>

#include "keys.h"

void sweeper_init(struct clv_sweeper *s, uint32_t shards)
{
    memset(s, 0, sizeof(*s));
    s->per_tick = shards < 64 ? shards : 64;
    s->per_shard = 256;
}

int sweeper_collect(struct clv_sweeper *s, struct clv_store *st, clv_ms now, struct clv_batch *b,
                    char *err, size_t errlen)
{
    uint32_t shards = (uint32_t)st->cfg->shards;
    char key[CLV_KEY_MAX], max[32], limit[16];
    const char *argv[7] = {"ZRANGEBYSCORE", key, "-inf", max, "LIMIT", "0", limit};
    size_t argvlen[7] = {13, 0, 4, 0, 5, 1, 0};
    uint32_t first = s->cursor;
    int queued = 0, rc = 0;

    if (store_ensure(st, err, errlen) != 0)
        return -1;
    argvlen[3] = (size_t)snprintf(max, sizeof(max), "%lld", (long long)now);
    argvlen[6] = (size_t)snprintf(limit, sizeof(limit), "%d", s->per_shard);
    for (uint32_t i = 0; i < s->per_tick; i++) {
        argvlen[1] = keys_due(key, st->cfg->key_prefix, (first + i) % shards);
        store_append_argv(st, 7, argv, argvlen);
    }
    st->round_trips++;
    for (uint32_t i = 0; i < s->per_tick; i++) {
        redisReply *r = store_read_reply(st);
        if (r == NULL) {
            clv_seterr(err, errlen, "redis ZRANGEBYSCORE: connection lost");
            return -1;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            clv_seterr(err, errlen, "redis ZRANGEBYSCORE: %s",
                       r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            rc = -1;
        }
        for (size_t k = 0; rc == 0 && k < r->elements; k++) {
            batch_add_advance(b, r->element[k]->str, r->element[k]->len, shards, now);
            queued++;
        }
        freeReplyObject(r);
    }
    if (rc != 0)
        return -1;
    s->cursor = (first + s->per_tick) % shards;
    s->swept += (uint64_t)queued;
    return queued;
}

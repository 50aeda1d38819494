/* keys.h -- virtual shards and Redis key names (SPEC section 4).
 *
 * A customer lives in shard fnv1a64(id) % shards.  Every key of a shard
 * carries the hash tag "{sN}" so that, on Redis Cluster, all of them hash to
 * one slot and one script may touch them together:
 *
 *   <prefix>{sN}:c:<id>   customer state (binary, customer_encode)
 *   <prefix>{sN}:due      due index: sorted set, member <id>, score deadline ms
 *   <prefix>{sN}:out      outbox: hash, field "<topic>:<seq>:<id>", value payload
 *   <prefix>{sN}:stats    counters: hash, stage populations and churn buckets
 *   <prefix>{sN}:lease    which instance sweeps the shard (sweep.lua)
 *   <prefix>{clock}:wm, <prefix>{clock}:exp   the group's event clock
 *   <prefix>meta          deployment facts (shard count), no hash tag needed
 *
 * The id is appended raw after the fixed ":c:" marker.  That is injective
 * (two ids never give one key), cannot collide with a shard's own keys
 * (those never contain ":c:" after the tag), cannot move the key to another
 * slot (Redis Cluster hashes the first "{...}" only, which is ours), and
 * cannot leave the prefix, whatever bytes the id holds. */
#ifndef CLVD_KEYS_H
#define CLVD_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define CLV_KEY_MAX 512

uint32_t keys_shard_of(const char *id, size_t len, uint32_t shards);

/* Each writes a NUL-terminated key into buf (CLV_KEY_MAX bytes) and returns
 * its length. */
size_t keys_customer(char *buf, const char *prefix, uint32_t shard, const char *id, size_t len);
size_t keys_due(char *buf, const char *prefix, uint32_t shard);
size_t keys_outbox(char *buf, const char *prefix, uint32_t shard);
size_t keys_stats(char *buf, const char *prefix, uint32_t shard);
size_t keys_lease(char *buf, const char *prefix, uint32_t shard);
size_t keys_meta(char *buf, const char *prefix);
void keys_clock(char *watermarks, char *expiries, const char *prefix);

/* Redis Cluster's slot of a key (CRC16 of the hash tag, mod 16384). */
unsigned keys_cluster_slot(const char *key, size_t len);

#endif

/* keys.c -- shard hashing and key names; see keys.h for the layout. */
#include "keys.h"

#include <stdio.h>
#include <string.h>

uint32_t keys_shard_of(const char *id, size_t len, uint32_t shards)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64: stable across releases */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 1099511628211ULL;
    }
    return (uint32_t)(h % shards);
}

/* Appends `s` (n bytes) at buf[at], within CLV_KEY_MAX - 1 bytes. */
static size_t put(char *buf, size_t at, const char *s, size_t n)
{
    if (at + n > CLV_KEY_MAX - 1)
        n = CLV_KEY_MAX - 1 - at;
    memcpy(buf + at, s, n);
    return at + n;
}

/* "<prefix>{s<shard>}:<suffix>", without printf: a few of these per
 * customer update. */
static size_t shard_key(char *buf, const char *prefix, uint32_t shard, const char *suffix)
{
    char digits[10];
    int i = (int)sizeof(digits);
    size_t n;

    do {
        digits[--i] = (char)('0' + shard % 10);
        shard /= 10;
    } while (shard > 0);
    n = put(buf, 0, prefix, strlen(prefix));
    n = put(buf, n, "{s", 2);
    n = put(buf, n, digits + i, sizeof(digits) - (size_t)i);
    n = put(buf, n, "}:", 2);
    n = put(buf, n, suffix, strlen(suffix));
    buf[n] = '\0';
    return n;
}

size_t keys_customer(char *buf, const char *prefix, uint32_t shard, const char *id, size_t len)
{
    size_t n = shard_key(buf, prefix, shard, "c:");

    if (n + len >= CLV_KEY_MAX)
        len = CLV_KEY_MAX - 1 - n; /* unreachable: ids are at most 128 bytes */
    memcpy(buf + n, id, len);
    buf[n + len] = '\0';
    return n + len;
}

size_t keys_due(char *buf, const char *prefix, uint32_t shard)
{
    return shard_key(buf, prefix, shard, "due");
}

size_t keys_outbox(char *buf, const char *prefix, uint32_t shard)
{
    return shard_key(buf, prefix, shard, "out");
}

size_t keys_stats(char *buf, const char *prefix, uint32_t shard)
{
    return shard_key(buf, prefix, shard, "stats");
}

size_t keys_lease(char *buf, const char *prefix, uint32_t shard)
{
    return shard_key(buf, prefix, shard, "lease");
}

void keys_clock(char *watermarks, char *expiries, const char *prefix)
{
    snprintf(watermarks, CLV_KEY_MAX, "%s{clock}:wm", prefix);
    snprintf(expiries, CLV_KEY_MAX, "%s{clock}:exp", prefix);
}

size_t keys_meta(char *buf, const char *prefix)
{
    int n = snprintf(buf, CLV_KEY_MAX, "%smeta", prefix);

    return n < CLV_KEY_MAX ? (size_t)n : CLV_KEY_MAX - 1;
}

/* CRC16-CCITT (XMODEM), as in the Redis Cluster specification. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned keys_cluster_slot(const char *key, size_t len)
{
    size_t s, e;

    for (s = 0; s < len && key[s] != '{'; s++)
        ;
    if (s < len) {
        for (e = s + 1; e < len && key[e] != '}'; e++)
            ;
        if (e < len && e != s + 1)
            return crc16(key + s + 1, e - s - 1) & 16383;
    }
    return crc16(key, len) & 16383;
}

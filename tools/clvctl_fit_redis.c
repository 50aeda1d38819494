/* clvctl_fit_redis.c -- `clvctl fit --redis`: fit BG/NBD and Gamma-Gamma to
 * the state of every customer in clvd's Redis (SPEC section 9).
 *
 * Every customer state is read with SCAN MATCH <prefix>{s*}:c:* (COUNT
 * SCAN_COUNT) and pipelined GETs, decoded with customer_decode(), and
 * reduced to the customer's sufficient statistics; T is computed once the
 * scan is over (the default end of observation is the last purchase day
 * seen), exactly as stages.c feeds clv_predict().  On a cluster every
 * master is scanned.  SCAN may return a key twice (while Redis rehashes); a
 * set of 64-bit key hashes drops the repeats.  Connecting: clvctl_redis.c. */
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clvctl.h"
#include "common.h"
#include "config.h"
#include "customer.h"
#include "fit.h"
#include "keys.h"
#include "timeutil.h"

#define SCAN_COUNT 1000

/* A set of 64-bit hashes, open addressing, at most half full; 0 marks a
 * free slot (a hash of 0 is stored as 1). */
struct hash_set {
    uint64_t *slots;
    size_t cap, count;
};

static int hash_set_grow(struct hash_set *h)
{
    size_t cap = h->cap ? 2 * h->cap : 4096;
    uint64_t *slots = calloc(cap, sizeof(*slots));

    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < h->cap; i++) {
        if (h->slots[i] == 0)
            continue;
        size_t j = h->slots[i] & (cap - 1);
        while (slots[j] != 0)
            j = (j + 1) & (cap - 1);
        slots[j] = h->slots[i];
    }
    free(h->slots);
    h->slots = slots;
    h->cap = cap;
    return 0;
}

/* 1 if added, 0 if already present, -1 out of memory. */
static int hash_set_add(struct hash_set *h, uint64_t v)
{
    size_t i;

    v = v ? v : 1;
    if (2 * (h->count + 1) > h->cap && hash_set_grow(h) < 0)
        return -1;
    for (i = v & (h->cap - 1); h->slots[i] != 0; i = (i + 1) & (h->cap - 1)) {
        if (h->slots[i] == v)
            return 0;
    }
    h->slots[i] = v;
    h->count++;
    return 1;
}

static uint64_t key_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, then a finaliser */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

/* The customers with a purchase, as their sufficient statistics. */
struct redis_rows {
    int32_t *first, *last; /* purchase days */
    double *x, *m_x;
    size_t n, cap;
    int32_t max_last;
    size_t keys, states, no_purchase, corrupt, vanished, other, repeats;
    int masters; /* of a cluster; 1 otherwise */
    char first_corrupt[CLV_ERRLEN];
    struct hash_set seen;
    struct clv_customer scratch;
};

static void redis_rows_free(struct redis_rows *r)
{
    free(r->first);
    free(r->last);
    free(r->x);
    free(r->m_x);
    free(r->seen.slots);
}

static int redis_rows_push(struct redis_rows *r, const struct clv_customer *c)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 4096;
        int32_t *first = realloc(r->first, cap * sizeof(*first));
        if (first != NULL)
            r->first = first;
        int32_t *last = realloc(r->last, cap * sizeof(*last));
        if (last != NULL)
            r->last = last;
        double *x = realloc(r->x, cap * sizeof(*x));
        if (x != NULL)
            r->x = x;
        double *m_x = realloc(r->m_x, cap * sizeof(*m_x));
        if (m_x != NULL)
            r->m_x = m_x;
        if (first == NULL || last == NULL || x == NULL || m_x == NULL)
            return -1;
        r->cap = cap;
    }
    /* as stages.c's model_inputs: x repeat purchase days, m_x their mean */
    r->first[r->n] = c->first_pday;
    r->last[r->n] = c->last_pday;
    r->x[r->n] = (double)(c->purchase_days - 1);
    r->m_x[r->n] = c->purchase_days > 1
                       ? (c->revenue - c->first_day_revenue) / (double)(c->purchase_days - 1)
                       : 0.0;
    if (r->n == 0 || c->last_pday > r->max_last)
        r->max_last = c->last_pday;
    r->n++;
    return 0;
}

/* <prefix>{s<digits>}:c:<id>, id not empty. */
static int is_customer_key(const char *key, size_t len, const char *prefix)
{
    size_t p = strlen(prefix), i;

    if (len < p + 7 || memcmp(key, prefix, p) != 0 || key[p] != '{' || key[p + 1] != 's')
        return 0;
    for (i = p + 2; i < len && key[i] >= '0' && key[i] <= '9'; i++)
        ;
    return i > p + 2 && len > i + 4 && memcmp(key + i, "}:c:", 4) == 0;
}

/* One GET reply of a customer key. */
static int take_state(struct redis_rows *r, const redisReply *reply)
{
    char err[CLV_ERRLEN];

    if (reply->type == REDIS_REPLY_NIL) {
        r->vanished++; /* deleted between SCAN and GET */
        return 0;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        r->other++;
        return 0;
    }
    if (customer_decode(&r->scratch, (const unsigned char *)reply->str, reply->len, err,
                        sizeof(err)) != 0) {
        if (r->corrupt++ == 0)
            snprintf(r->first_corrupt, sizeof(r->first_corrupt), "%s", err);
        return 0;
    }
    r->states++;
    if (r->scratch.purchases == 0 || r->scratch.purchase_days == 0) {
        r->no_purchase++;
        return 0;
    }
    return redis_rows_push(r, &r->scratch);
}

/* GET every customer key of one SCAN page, pipelined. */
static int read_page(redisContext *c, const redisReply *keys, struct redis_rows *r,
                     const char *prefix, char *err, size_t errlen)
{
    size_t sent = 0;

    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        int fresh;
        if (k->type != REDIS_REPLY_STRING || !is_customer_key(k->str, k->len, prefix))
            continue;
        r->keys++;
        fresh = hash_set_add(&r->seen, key_hash(k->str, k->len));
        if (fresh < 0)
            goto oom;
        if (fresh == 0) {
            r->repeats++;
            continue;
        }
        redisAppendCommand(c, "GET %b", k->str, k->len);
        sent++;
    }
    for (size_t i = 0; i < sent; i++) {
        redisReply *reply = NULL;
        if (redisGetReply(c, (void **)&reply) != REDIS_OK)
            return reply_failed(c, NULL, "GET", err, errlen);
        int rc = take_state(r, reply);
        freeReplyObject(reply);
        if (rc < 0)
            goto oom;
    }
    return 0;
oom:
    clv_seterr(err, errlen, "out of memory after %zu customers", r->n);
    return -1;
}

/* How far a SCAN is, from its cursor: Redis walks its table in the order of
 * the bit-reversed cursor, so reversing the cursor's 64 bits gives the share
 * of the table already visited (whatever the table size). */
static double scan_fraction(unsigned long long cursor)
{
    unsigned long long rev = 0;

    for (int i = 0; i < 64; i++) {
        rev = (rev << 1) | (cursor & 1);
        cursor >>= 1;
    }
    return ldexp((double)rev, -64);
}

/* The MATCH pattern: the prefix with glob characters escaped. */
static int scan_pattern(const char *prefix, char *buf, size_t buflen)
{
    size_t n = 0;

    for (const char *p = prefix; *p; p++) {
        if (n + 2 >= buflen)
            return -1;
        if (strchr("*?[]\\", *p) != NULL)
            buf[n++] = '\\';
        buf[n++] = *p;
    }
    if (n + sizeof("{s*}:c:*") > buflen)
        return -1;
    memcpy(buf + n, "{s*}:c:*", sizeof("{s*}:c:*"));
    return 0;
}

struct scan_progress {
    struct progress bar;
    int node, nodes;
};

static void scan_show(struct scan_progress *sp, const struct redis_rows *r, double fraction,
                      int force)
{
    char text[128];

    if (sp->nodes > 1)
        snprintf(text, sizeof(text), "node %d/%d  %zu states, %zu with purchases", sp->node + 1,
                 sp->nodes, r->states, r->n);
    else
        snprintf(text, sizeof(text), "%zu states, %zu with purchases", r->states, r->n);
    progress_show(&sp->bar, (sp->node + fraction) / sp->nodes, text, force);
}

/* SCAN one node to the end. */
static int scan_node(redisContext *c, const char *prefix, struct redis_rows *r,
                     struct scan_progress *sp, char *err, size_t errlen)
{
    char pattern[CLV_KEY_MAX * 2 + 16], cursor[32] = "0";
    int ret = -1;

    if (scan_pattern(prefix, pattern, sizeof(pattern)) < 0) {
        clv_seterr(err, errlen, "key prefix too long");
        return -1;
    }
    do {
        redisReply *reply =
            redisCommand(c, "SCAN %s MATCH %s COUNT %d", cursor, pattern, SCAN_COUNT);
        if (reply_failed(c, reply, "SCAN", err, errlen) < 0)
            return -1;
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_STRING ||
            reply->element[1]->type != REDIS_REPLY_ARRAY ||
            reply->element[0]->len >= sizeof(cursor)) {
            clv_seterr(err, errlen, "redis SCAN: unexpected reply");
            freeReplyObject(reply);
            return -1;
        }
        memcpy(cursor, reply->element[0]->str, reply->element[0]->len + 1);
        ret = read_page(c, reply->element[1], r, prefix, err, errlen);
        freeReplyObject(reply);
        if (ret < 0)
            return -1;
        scan_show(sp, r, strcmp(cursor, "0") == 0 ? 1.0 : scan_fraction(strtoull(cursor, NULL, 10)),
                  0);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

static int scan_all(const struct redis_target *t, struct redis_rows *r, char *err, size_t errlen)
{
    struct master masters[MAX_MASTERS];
    struct scan_progress sp = {.nodes = 1};
    redisContext *c = redis_open(t, t->host, t->port, t->socket, err, errlen);
    int n = 0, ret = -1;

    if (c == NULL)
        return -1;
    progress_init(&sp.bar, 1);
    if (cluster_masters(c, t, masters, MAX_MASTERS, &n, err, errlen) < 0)
        goto out;
    if (n == 0) {
        ret = scan_node(c, t->prefix, r, &sp, err, errlen);
        goto out;
    }
    sp.nodes = n;
    for (sp.node = 0; sp.node < n; sp.node++) {
        redisContext *mc =
            redis_open(t, masters[sp.node].host, masters[sp.node].port, NULL, err, errlen);
        if (mc == NULL)
            goto out;
        ret = scan_node(mc, t->prefix, r, &sp, err, errlen);
        redisFree(mc);
        if (ret < 0)
            goto out;
    }
    ret = 0;
out:
    r->masters = sp.nodes;
    if (ret == 0) {
        sp.node = sp.nodes - 1;
        scan_show(&sp, r, 1.0, 1);
    }
    progress_end(&sp.bar);
    redisFree(c);
    return ret;
}

/* (x, t_x, T, m_x) in model units as of `now`, exactly as stages.c feeds
 * clv_predict(): T runs from 00:00 UTC of the first purchase day. */
static int redis_summarize(const struct redis_rows *r, clv_ms now, double unit,
                           struct fit_summary *s, size_t *after, char *err, size_t errlen)
{
    size_t m = r->n ? r->n : 1;

    memset(s, 0, sizeof(*s));
    *after = 0;
    s->x = calloc(m, sizeof(double));
    s->t_x = calloc(m, sizeof(double));
    s->T = calloc(m, sizeof(double));
    s->m_x = calloc(m, sizeof(double));
    if (!s->x || !s->t_x || !s->T || !s->m_x) {
        fit_summary_free(s);
        clv_seterr(err, errlen, "out of memory for %zu customers", r->n);
        return -1;
    }
    for (size_t i = 0; i < r->n; i++) {
        clv_ms first_start = (clv_ms)r->first[i] * CLV_MS_PER_DAY;
        size_t k = s->n;
        if (first_start > now) {
            s->n_later++;
            continue;
        }
        if ((clv_ms)r->last[i] * CLV_MS_PER_DAY > now) {
            (*after)++; /* bought after `now`: the state cannot be cut back */
            continue;
        }
        s->x[k] = r->x[i];
        s->t_x[k] = (double)(r->last[i] - r->first[i]) / unit;
        s->T[k] = (double)(now - first_start) / (double)CLV_MS_PER_DAY / unit;
        s->m_x[k] = r->m_x[i];
        s->n_repeat += r->x[i] > 0.0;
        s->repeat_days += (size_t)r->x[i];
        s->n++;
    }
    return 0;
}

static void print_redis_header(const struct redis_target *t, const struct redis_rows *r, clv_ms now,
                               double unit, const struct fit_summary *s, size_t after)
{
    char at[32];

    rfc3339_format(now, at, sizeof(at));
    if (t->socket)
        printf("# redis unix:%s", t->socket);
    else
        printf("# redis %s:%d", t->host, t->port);
    if (r->masters > 1)
        printf(" (cluster, %d masters)", r->masters);
    printf(", prefix '%s': ", t->prefix);
    printf("%zu customer states, %zu with a purchase, %zu without\n", r->states, r->n,
           r->no_purchase);
    if (r->corrupt || r->vanished || r->other || r->repeats)
        printf("# skipped: %zu undecodable%s%s%s, %zu deleted during the scan, %zu not strings, "
               "%zu returned twice by SCAN\n",
               r->corrupt, r->corrupt ? " (first: " : "", r->corrupt ? r->first_corrupt : "",
               r->corrupt ? ")" : "", r->vanished, r->other, r->repeats);
    printf("# as of %s, time unit %g days: %zu customers, %zu with repeat purchases (%zu repeat "
           "purchase days); %zu first purchase later, %zu bought after it: left out\n",
           at, unit, s->n, s->n_repeat, s->repeat_days, s->n_later, after);
}

int fit_redis(const struct fit_redis_opts *o, double time_unit_days, char *err, size_t errlen)
{
    struct clv_config cfg;
    struct redis_target t;
    struct redis_rows *r = calloc(1, sizeof(*r));
    struct fit_summary s = {0};
    struct fit_bgnbd_result bg;
    struct fit_gg_result gg;
    size_t after = 0;
    clv_ms now;
    int ret = -1, have_cfg;

    if (r == NULL) {
        clv_seterr(err, errlen, "out of memory");
        return -1;
    }
    have_cfg = (o->conn.config_path ? config_load(o->conn.config_path, &cfg, err, errlen)
                                    : config_defaults(&cfg, err, errlen)) == 0;
    if (!have_cfg)
        goto out;
    redis_target_from(&o->conn, &cfg, &t);
    if (scan_all(&t, r, err, errlen) < 0)
        goto out;
    if (r->n == 0) {
        clv_seterr(err, errlen, "no customer with a purchase under %s{s*}:c:* (%zu states)",
                   t.prefix, r->states);
        goto out;
    }
    now = o->have_now ? o->now : (clv_ms)r->max_last * CLV_MS_PER_DAY;
    if (redis_summarize(r, now, time_unit_days, &s, &after, err, errlen) < 0 ||
        fit_bgnbd(s.x, s.t_x, s.T, s.n, &bg, err, errlen) < 0 ||
        fit_gamma_gamma(s.x, s.m_x, s.n, &gg, err, errlen) < 0)
        goto out;
    if (after > 0)
        fprintf(stderr,
                "clvctl fit: warning: %zu of %zu customers bought after --now and are left out "
                "(a state cannot be cut back to an earlier time), which biases the fit; for a "
                "past date fit a CSV export with --calibration-end\n",
                after, r->n);
    print_redis_header(&t, r, now, time_unit_days, &s, after);
    print_models(time_unit_days, &bg, &gg);
    ret = 0;
out:
    fit_summary_free(&s);
    redis_rows_free(r);
    free(r);
    if (have_cfg)
        config_free(&cfg);
    return ret;
}

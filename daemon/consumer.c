/* consumer.c -- Kafka consumer group member, offsets and the event clock. */
#include "consumer.h"

#include <stdlib.h>
#include <string.h>

static const char *input_topic(const struct clv_config *cfg, int i)
{
    const char *names[CLV_INPUT_TOPICS] = {cfg->kafka.topics.purchases, cfg->kafka.topics.logins,
                                           cfg->kafka.topics.visits};
    return names[i];
}

int consumer_topic_index(const struct clv_consumer *c, const char *topic)
{
    for (int i = 0; i < CLV_INPUT_TOPICS; i++)
        if (strcmp(input_topic(c->cfg, i), topic) == 0)
            return i;
    return -1;
}

/* ---- partitions ---------------------------------------------------------------- */

static struct clv_partition *partition(struct clv_consumer *c, int topic, int32_t p)
{
    if (topic < 0 || topic >= CLV_INPUT_TOPICS || p < 0)
        return NULL;
    if (p >= c->nparts[topic]) {
        int n = p + 1;
        struct clv_partition *np = realloc(c->parts[topic], sizeof(*np) * (size_t)n);
        if (np == NULL)
            abort();
        memset(np + c->nparts[topic], 0, sizeof(*np) * (size_t)(n - c->nparts[topic]));
        c->parts[topic] = np;
        c->nparts[topic] = n;
    }
    return &c->parts[topic][p];
}

static void partition_reset(struct clv_partition *pt, uint32_t gen, clv_ms now_mono)
{
    pt->gen = gen;
    offq_clear(&pt->inflight);
    pt->stored = -1;
    pt->max_ts = 0;
    pt->last_msg_mono = 0;
    pt->assigned_mono = now_mono;
    pt->paused = 0;
    pt->high_watermark = -1;
    pt->last_offset = -1;
    pt->start_offset = -1;
}

struct clv_msgref consumer_track(struct clv_consumer *c, const rd_kafka_message_t *m, int topic,
                                 clv_ms ts, clv_ms now_mono)
{
    struct clv_partition *pt = partition(c, topic, m->partition);
    struct clv_msgref ref = {(int8_t)topic, m->partition, m->offset, pt ? pt->gen : 0};

    fetchwake_consumed(&c->wake, 1);
    if (pt == NULL || !pt->assigned)
        return ref;
    offq_push(&pt->inflight, m->offset);
    pt->last_msg_mono = now_mono;
    pt->last_offset = m->offset;
    if (ts > pt->max_ts)
        pt->max_ts = ts;
    return ref;
}

void consumer_done(struct clv_consumer *c, const struct clv_msgref *ref)
{
    struct clv_partition *pt = partition(c, ref->topic, ref->partition);
    int64_t frontier;
    rd_kafka_topic_partition_list_t *l;

    if (pt == NULL || !pt->assigned || pt->gen != ref->gen)
        return; /* revoked since: the new owner re-reads it */
    if (offq_mark_done(&pt->inflight, ref->offset) != 0)
        return;
    frontier = offq_advance(&pt->inflight);
    if (frontier < 0)
        return;
    pt->stored = frontier;
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, input_topic(c->cfg, ref->topic), ref->partition)->offset =
        frontier;
    rd_kafka_offsets_store(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

int64_t consumer_frontier(const struct clv_consumer *c, const struct clv_msgref *ref)
{
    const struct clv_partition *pt;

    if (ref->topic < 0 || ref->topic >= CLV_INPUT_TOPICS || ref->partition < 0 ||
        ref->partition >= c->nparts[ref->topic])
        return -1;
    pt = &c->parts[ref->topic][ref->partition];
    if (!pt->assigned || pt->gen != ref->gen)
        return -1;
    return pt->inflight.len > 0 ? offq_first(&pt->inflight) : pt->stored;
}

/* ---- rebalancing ----------------------------------------------------------------- */

static void heap_drop_revoked(struct clv_consumer *c);

/* Where each newly assigned partition starts: its committed offset.  The
 * event clock needs it to tell "caught up" from "not fetched yet". */
static void learn_start_offsets(struct clv_consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_resp_err_t e = rd_kafka_committed(c->rk, l, 10000);

    if (e)
        log_warn(c->log, "kafka: committed offsets unknown (%s): assuming log start",
                 rd_kafka_err2str(e));
    for (int i = 0; !e && i < l->cnt; i++) {
        int t = consumer_topic_index(c, l->elems[i].topic);
        struct clv_partition *pt = partition(c, t, l->elems[i].partition);
        if (pt && l->elems[i].offset >= 0)
            pt->start_offset = l->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void on_assign(struct clv_consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    clv_ms now = clv_mono_ms();

    c->gen++;
    for (int i = 0; i < parts->cnt; i++) {
        int t = consumer_topic_index(c, parts->elems[i].topic);
        struct clv_partition *pt = partition(c, t, parts->elems[i].partition);
        if (pt == NULL)
            continue;
        partition_reset(pt, c->gen, now);
        pt->assigned = 1;
    }
    learn_start_offsets(c, parts);
    /* inherited partitions may hold events far behind our old clock */
    c->watermark = 0;
    if (c->assignment)
        rd_kafka_topic_partition_list_destroy(c->assignment);
    c->assignment = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_assign(c->rk, parts);
    fetchwake_set_targets(&c->wake, parts);
    c->ever_assigned = 1;
    c->rebalanced = 1;
    log_info(c->log, "kafka: assigned %d partition(s)", parts->cnt);
}

static void on_revoke(struct clv_consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_resp_err_t e;

    /* what is done is stored; commit it now so the next owner starts there */
    e = rd_kafka_commit(c->rk, NULL, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_warn(c->log, "kafka: commit on revoke: %s", rd_kafka_err2str(e));
    for (int i = 0; i < parts->cnt; i++) {
        int t = consumer_topic_index(c, parts->elems[i].topic);
        struct clv_partition *pt = partition(c, t, parts->elems[i].partition);
        if (pt)
            pt->assigned = 0;
    }
    heap_drop_revoked(c);
    if (c->assignment) {
        rd_kafka_topic_partition_list_destroy(c->assignment);
        c->assignment = NULL;
    }
    fetchwake_set_targets(&c->wake, NULL);
    rd_kafka_assign(c->rk, NULL);
    c->rebalanced = 1;
    log_info(c->log, "kafka: revoked %d partition(s)", parts->cnt);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct clv_consumer *c = opaque;

    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(c, parts);
    else
        on_revoke(c, parts);
}

/* ---- setup ------------------------------------------------------------------------ */

#define FETCH_MAX_BYTES (2 << 20)
#define QUEUED_MIN_MESSAGES "10000"
#define QUEUED_MAX_KBYTES "2048"

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    char kerr[256];

    if (rd_kafka_conf_set(conf, k, v, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        clv_seterr(err, errlen, "kafka property %s: %s", k, kerr);
        return -1;
    }
    return 0;
}

/* An integer property as librdkafka will use it (after kafka.properties). */
static int conf_int(const rd_kafka_conf_t *conf, const char *k)
{
    char v[32];
    size_t n = sizeof(v);

    if (rd_kafka_conf_get(conf, k, v, &n) != RD_KAFKA_CONF_OK)
        return 0;
    return atoi(v);
}

static void consumer_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct clv_consumer *c = rd_kafka_opaque(rk);

    log_write(c->log, log_level_from_syslog(level), "kafka consumer: %s: %s", fac, buf);
}

static rd_kafka_conf_t *consumer_conf(struct clv_consumer *c, const char *brokers, char *err,
                                      size_t errlen)
{
    const struct clv_config *cfg = c->cfg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char maxb[32];
    /* An eager assignor: cooperative-sticky misbehaves with manual offset
     * storage in librdkafka 2.0.2. */
    const char *fixed[][2] = {
        {"bootstrap.servers", brokers},
        {"group.id", cfg->kafka.group_id},
        {"enable.auto.offset.store", "false"},
        {"enable.auto.commit", "true"},
        {"auto.commit.interval.ms", "1000"},
        {"auto.offset.reset", "earliest"},
        {"partition.assignment.strategy", "range"},
        {"enable.partition.eof", "false"},
        {"client.id", "clvd"},
    };

    for (size_t i = 0; i < CLV_ARRAY_LEN(fixed); i++)
        if (conf_set(conf, fixed[i][0], fixed[i][1], err, errlen) != 0)
            goto fail;
    /* Bound the prefetch.  Under a backlog librdkafka's defaults queue up
     * to 64 MB of payload, and each queued message costs several hundred
     * bytes of its own besides: most of clvd's memory budget (SPEC section
     * 15).  A small queue is enough because the fetch waker (fetchwake.h)
     * restarts fetching as soon as the workers have drained it; without it
     * librdkafka 2.0.2 would wait up to a second, and the queue would have
     * to hold a second of input.  Measured in performance.md; kafka.properties
     * can change both.  A fetch response stays allocated until the last of
     * its messages is consumed, so responses are kept to 2 MB (8 MB measured
     * 10 MB more peak RSS at the same throughput), or two of the largest
     * messages. */
    snprintf(maxb, sizeof(maxb), "%d",
             cfg->kafka.max_message_bytes * 2 + 1024 > FETCH_MAX_BYTES
                 ? cfg->kafka.max_message_bytes * 2 + 1024
                 : FETCH_MAX_BYTES);
    if (conf_set(conf, "fetch.max.bytes", maxb, err, errlen) != 0 ||
        conf_set(conf, "queued.min.messages", QUEUED_MIN_MESSAGES, err, errlen) != 0 ||
        conf_set(conf, "queued.max.messages.kbytes", QUEUED_MAX_KBYTES, err, errlen) != 0)
        goto fail;
    for (int i = 0; i < cfg->kafka.nproperties; i++)
        if (conf_set(conf, cfg->kafka.properties[i].key, cfg->kafka.properties[i].value, err,
                     errlen) != 0)
            goto fail;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_log_cb(conf, consumer_log_cb);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int consumer_open(struct clv_consumer *c, const struct clv_config *cfg, const char *brokers,
                  const struct clv_log *lg, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_conf_t *conf;
    char kerr[512];
    rd_kafka_resp_err_t e;
    int queued_min;

    memset(c, 0, sizeof(*c));
    c->cfg = cfg;
    c->log = lg;
    conf = consumer_conf(c, brokers, err, errlen);
    if (conf == NULL)
        return -1;
    queued_min = conf_int(conf, "queued.min.messages");
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (c->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        clv_seterr(err, errlen, "kafka consumer: %s", kerr);
        return -1;
    }
    rd_kafka_poll_set_consumer(c->rk);
    topics = rd_kafka_topic_partition_list_new(CLV_INPUT_TOPICS);
    for (int i = 0; i < CLV_INPUT_TOPICS; i++)
        rd_kafka_topic_partition_list_add(topics, input_topic(cfg, i), RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        clv_seterr(err, errlen, "kafka subscribe: %s", rd_kafka_err2str(e));
        rd_kafka_destroy(c->rk);
        c->rk = NULL;
        return -1;
    }
    if (fetchwake_start(&c->wake, c->rk, queued_min, err, errlen) != 0) {
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
        c->rk = NULL;
        return -1;
    }
    return 0;
}

void consumer_close(struct clv_consumer *c)
{
    if (c->rk == NULL)
        return;
    fetchwake_stop(&c->wake);
    rd_kafka_consumer_close(c->rk); /* commits the stored offsets */
    rd_kafka_destroy(c->rk);
    c->rk = NULL;
    if (c->assignment)
        rd_kafka_topic_partition_list_destroy(c->assignment);
    for (int t = 0; t < CLV_INPUT_TOPICS; t++) {
        for (int p = 0; p < c->nparts[t]; p++)
            offq_free(&c->parts[t][p].inflight);
        free(c->parts[t]);
    }
    free(c->heap);
    free(c->slab);
    free(c->free_slots);
    memset(c, 0, sizeof(*c));
}

static void set_paused(struct clv_consumer *c, struct clv_partition *pt, int topic, int32_t p,
                       int pause)
{
    rd_kafka_topic_partition_list_t *l;

    if (pt->paused == pause)
        return;
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, input_topic(c->cfg, topic), p);
    if (pause)
        rd_kafka_pause_partitions(c->rk, l);
    else
        rd_kafka_resume_partitions(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    pt->paused = pause;
}

void consumer_pause_all(struct clv_consumer *c, int pause)
{
    for (int t = 0; t < CLV_INPUT_TOPICS; t++)
        for (int p = 0; p < c->nparts[t]; p++)
            if (c->parts[t][p].assigned)
                set_paused(c, &c->parts[t][p], t, p, pause);
}

int64_t consumer_lag(struct clv_consumer *c)
{
    int64_t lag = 0;

    for (int t = 0; t < CLV_INPUT_TOPICS; t++) {
        for (int p = 0; p < c->nparts[t]; p++) {
            struct clv_partition *pt = &c->parts[t][p];
            int64_t lo, hi;
            if (!pt->assigned)
                continue;
            if (rd_kafka_get_watermark_offsets(c->rk, input_topic(c->cfg, t), p, &lo, &hi) != 0)
                continue;
            pt->high_watermark = hi;
            if (hi >= 0)
                lag += hi - (pt->last_offset >= 0 ? pt->last_offset + 1 : lo);
        }
    }
    return lag;
}

/* ---- event clock: a binary heap of held events ------------------------------------ */

static int held_before(const struct clv_heldkey *a, const struct clv_heldkey *b)
{
    if (a->ts != b->ts)
        return a->ts < b->ts;
    if (a->topic != b->topic)
        return a->topic < b->topic;
    if (a->partition != b->partition)
        return a->partition < b->partition;
    return a->offset < b->offset;
}

static void heap_swap(struct clv_heldkey *h, size_t i, size_t j)
{
    struct clv_heldkey t = h[i];

    h[i] = h[j];
    h[j] = t;
}

static void heap_up(struct clv_heldkey *h, size_t i)
{
    while (i > 0 && held_before(&h[i], &h[(i - 1) / 2])) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct clv_heldkey *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && held_before(&h[l], &h[m]))
            m = l;
        if (r < n && held_before(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        heap_swap(h, i, m);
        i = m;
    }
}

/* Grow heap, slab and free list together: at most heap_cap events held. */
static void held_grow(struct clv_consumer *c)
{
    size_t ncap = c->heap_cap ? c->heap_cap * 2 : 1024;
    struct clv_heldkey *nh = realloc(c->heap, sizeof(*nh) * ncap);
    struct clv_held *ns = realloc(c->slab, sizeof(*ns) * ncap);
    uint32_t *nf = realloc(c->free_slots, sizeof(*nf) * ncap);

    if (nh == NULL || ns == NULL || nf == NULL)
        abort();
    c->heap = nh;
    c->slab = ns;
    c->free_slots = nf;
    for (size_t i = ncap; i-- > c->heap_cap;)
        c->free_slots[c->nfree++] = (uint32_t)i;
    c->heap_cap = ncap;
}

void consumer_hold(struct clv_consumer *c, const struct clv_event *ev, const struct clv_msgref *ref)
{
    uint32_t slot;

    if (c->nfree == 0)
        held_grow(c);
    slot = c->free_slots[--c->nfree];
    c->slab[slot] = (struct clv_held){*ev, *ref};
    c->heap[c->nheld] = (struct clv_heldkey){ev->ts, ref->offset, ref->partition, ref->topic, slot};
    heap_up(c->heap, c->nheld++);
}

clv_ms consumer_applied_until(const struct clv_consumer *c)
{
    if (c->nheld > 0 && c->heap[0].ts <= c->watermark)
        return c->heap[0].ts - 1;
    return c->watermark;
}

static void heap_pop(struct clv_consumer *c)
{
    c->free_slots[c->nfree++] = c->heap[0].slot;
    c->heap[0] = c->heap[--c->nheld];
    heap_down(c->heap, c->nheld, 0);
}

int consumer_release(struct clv_consumer *c, struct clv_held *out)
{
    if (c->nheld == 0 || c->heap[0].ts > c->watermark)
        return 0;
    *out = c->slab[c->heap[0].slot];
    heap_pop(c);
    return 1;
}

static void heap_drop_revoked(struct clv_consumer *c)
{
    size_t n = 0;

    for (size_t i = 0; i < c->nheld; i++) {
        const struct clv_heldkey *k = &c->heap[i];
        struct clv_partition *pt = partition(c, k->topic, k->partition);
        if (pt && pt->assigned && pt->gen == c->slab[k->slot].ref.gen)
            c->heap[n++] = *k;
        else
            c->free_slots[c->nfree++] = k->slot;
    }
    c->nheld = n;
    for (size_t i = n / 2 + 1; i-- > 0;)
        heap_down(c->heap, c->nheld, i);
}

/* Read up to what the broker last said the partition holds; not while the
 * broker has not said (no fetch answered yet). */
static int partition_caught_up(const struct clv_consumer *c, const struct clv_partition *pt,
                               int topic, int32_t p)
{
    int64_t lo = -1, hi = -1, next;

    rd_kafka_get_watermark_offsets(c->rk, input_topic(c->cfg, topic), p, &lo, &hi);
    if (hi < 0)
        return 0;
    if (pt->last_offset >= 0)
        next = pt->last_offset + 1;
    else if (pt->start_offset >= 0)
        next = pt->start_offset;
    else /* no commit: consumption starts at the log start, which may be unknown */
        next = lo >= 0 ? lo : 0;
    return next >= hi;
}

static int partition_idle(const struct clv_consumer *c, const struct clv_partition *pt, int topic,
                          int32_t p, clv_ms now_mono)
{
    clv_ms last = pt->last_msg_mono ? pt->last_msg_mono : pt->assigned_mono;

    return now_mono - last >= c->cfg->clock.idle_after && partition_caught_up(c, pt, topic, p);
}

int consumer_caught_up(const struct clv_consumer *c)
{
    for (int t = 0; t < CLV_INPUT_TOPICS; t++)
        for (int p = 0; p < c->nparts[t]; p++)
            if (c->parts[t][p].assigned && !partition_caught_up(c, &c->parts[t][p], t, p))
                return 0;
    return 1;
}

/* While the heap is full, only the partitions holding the watermark back
 * may fetch; the others wait (SPEC section 7). */
static void pause_runners_ahead(struct clv_consumer *c, clv_ms slowest)
{
    int full = c->nheld >= (size_t)c->cfg->clock.max_held_events;
    int relieved = c->nheld < (size_t)c->cfg->clock.max_held_events / 2;

    if (!full && !(c->held_paused && relieved))
        return;
    c->held_paused = full;
    for (int t = 0; t < CLV_INPUT_TOPICS; t++)
        for (int p = 0; p < c->nparts[t]; p++) {
            struct clv_partition *pt = &c->parts[t][p];
            if (pt->assigned)
                set_paused(c, pt, t, p, full && pt->max_ts > slowest);
        }
}

clv_ms consumer_watermark(struct clv_consumer *c, clv_ms now_mono)
{
    clv_ms slowest = 0, fastest = 0, wm;
    int active = 0;

    for (int t = 0; t < CLV_INPUT_TOPICS; t++)
        for (int p = 0; p < c->nparts[t]; p++) {
            struct clv_partition *pt = &c->parts[t][p];
            if (!pt->assigned)
                continue;
            if (pt->max_ts > fastest)
                fastest = pt->max_ts;
            if (partition_idle(c, pt, t, p, now_mono))
                continue;
            if (!active || pt->max_ts < slowest)
                slowest = pt->max_ts;
            active = 1;
        }
    /* With every partition idle nothing is on its way that lateness would
     * wait for: let the clock reach the newest event. */
    wm = active ? (slowest ? slowest - c->cfg->clock.lateness : 0) : fastest;
    c->all_idle = !active;
    if (wm > c->watermark)
        c->watermark = wm;
    pause_runners_ahead(c, active ? slowest : fastest);
    return c->watermark;
}

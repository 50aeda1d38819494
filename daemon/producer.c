/* producer.c -- idempotent producer, outbox trimming and draining. */
#include "producer.h"

#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "metrics.h"

enum dr_kind { DR_OUTBOX, DR_DEAD_LETTER, DR_PLAIN };

/* What a delivery report must act on; the message's opaque. */
struct clv_dr_ref {
    enum dr_kind kind;
    enum clv_out_topic topic;
    struct clv_msgref input; /* DR_DEAD_LETTER */
    uint32_t shard;          /* DR_OUTBOX */
    clv_ms input_ts;         /* DR_OUTBOX: earliest input timestamp behind it, 0 none */
    size_t fieldlen;
    char field[];
};

static struct clv_dr_ref *ref_new(enum dr_kind kind, enum clv_out_topic topic, size_t fieldlen)
{
    struct clv_dr_ref *r = calloc(1, sizeof(*r) + fieldlen + 1);

    if (r == NULL)
        abort();
    r->kind = kind;
    r->topic = topic;
    r->fieldlen = fieldlen;
    return r;
}

static void push_acked(struct clv_producer *p, struct clv_dr_ref *r)
{
    if (p->nacked == p->acked_cap) {
        size_t ncap = p->acked_cap ? p->acked_cap * 2 : 1024;
        struct clv_dr_ref **na = realloc(p->acked, sizeof(*na) * ncap);
        if (na == NULL)
            abort();
        p->acked = na;
        p->acked_cap = ncap;
    }
    p->acked[p->nacked++] = r;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct clv_producer *p = opaque;
    struct clv_dr_ref *r = m->_private;

    (void)rk;
    p->in_flight--;
    if (r == NULL)
        return;
    if (m->err) {
        p->failed[r->topic]++;
        log_error(p->log, "kafka: delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
                  rd_kafka_err2str(m->err));
        if (r->kind == DR_DEAD_LETTER)
            p->fatal = 1; /* the input offset stays uncommitted; a restart retries it */
        else
            p->drain_needed = 1; /* still in the outbox */
        free(r);
        return;
    }
    p->delivered[r->topic]++;
    if (r->input_ts > 0 && p->latency)
        histogram_observe(p->latency, (double)(clv_now_ms() - r->input_ts) / 1000.0);
    if (r->kind == DR_DEAD_LETTER)
        consumer_done(p->consumer, &r->input);
    if (r->kind == DR_OUTBOX)
        push_acked(p, r);
    else
        free(r);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct clv_producer *p = opaque;
    char fatal[512];

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        log_error(p->log, "kafka producer: fatal error: %s", fatal);
        p->fatal = 1;
        return;
    }
    log_warn(p->log, "kafka producer: %s", reason);
}

static void producer_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct clv_producer *p = rd_kafka_opaque(rk);

    log_write(p->log, log_level_from_syslog(level), "kafka producer: %s: %s", fac, buf);
}

/* How long the start waits for the output topics' metadata. */
#define METADATA_TIMEOUT_MS 3000

/* Ask for the output topics' leaders before the first output.  Otherwise
 * librdkafka learns them only at its next topic scan, up to a second or
 * two after the first produce: measured, 1.1 s in which 7 300 outputs
 * filled the producer's queue and the input stopped behind it
 * (docs/performance.md, ninth session).  A topic the cluster does not
 * have is named now rather than when its first message fails. */
static void learn_output_topics(struct clv_producer *p)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e;

    for (int t = 0; t < CLV_OUT_COUNT; t++)
        p->topics[t] = rd_kafka_topic_new(
            p->rk, output_topic_name(&p->cfg->kafka.topics, (enum clv_out_topic)t), NULL);
    /* all_topics 0, no topic given: the ones this handle knows, i.e. ours */
    e = rd_kafka_metadata(p->rk, 0, NULL, &md, METADATA_TIMEOUT_MS);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn(p->log, "kafka producer: output topics' metadata: %s (asked again when needed)",
                 rd_kafka_err2str(e));
        return;
    }
    for (int i = 0; i < md->topic_cnt; i++)
        if (md->topics[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_warn(p->log, "kafka producer: output topic %s: %s", md->topics[i].topic,
                     rd_kafka_err2str(md->topics[i].err));
    rd_kafka_metadata_destroy(md);
}

int producer_open(struct clv_producer *p, const struct clv_config *cfg, const char *brokers,
                  struct clv_consumer *consumer, const struct clv_log *lg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[512];
    const char *fixed[][2] = {
        {"bootstrap.servers", brokers},
        {"enable.idempotence", "true"},
        /* outputs are latency-bound (SPEC section 15: p99 25 ms end to end);
         * at 1 ms a busy clvd still sends batches of many messages */
        {"linger.ms", "1"},
        /* Bound what waits for delivery: librdkafka's default (1 GB) would
         * let a burst of transitions -- every customer is new at first --
         * take tens of MB of the 64 MB budget (SPEC section 15).  Beyond it
         * produce() waits for deliveries, holding the input back. */
        {"queue.buffering.max.messages", "16384"},
        {"queue.buffering.max.kbytes", "4096"},
        {"client.id", "clvd"},
    };

    memset(p, 0, sizeof(*p));
    p->cfg = cfg;
    p->log = lg;
    p->consumer = consumer;
    p->drain_needed = 1; /* whatever a previous run left behind */
    for (size_t i = 0; i < CLV_ARRAY_LEN(fixed); i++)
        if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    for (int i = 0; i < cfg->kafka.nproperties; i++)
        if (rd_kafka_conf_set(conf, cfg->kafka.properties[i].key, cfg->kafka.properties[i].value,
                              kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK)
            goto fail;
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_log_cb(conf, producer_log_cb);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (p->rk == NULL)
        goto fail;
    learn_output_topics(p);
    return 0;
fail:
    rd_kafka_conf_destroy(conf);
    clv_seterr(err, errlen, "kafka producer: %s", kerr);
    return -1;
}

void producer_flush(struct clv_producer *p, int timeout_ms)
{
    if (p->rk)
        rd_kafka_flush(p->rk, timeout_ms);
}

void producer_close(struct clv_producer *p)
{
    for (int t = 0; t < CLV_OUT_COUNT; t++)
        if (p->topics[t])
            rd_kafka_topic_destroy(p->topics[t]);
    if (p->rk)
        rd_kafka_destroy(p->rk);
    for (size_t i = 0; i < p->nacked; i++)
        free(p->acked[i]);
    free(p->acked);
    memset(p, 0, sizeof(*p));
}

void producer_poll(struct clv_producer *p, int timeout_ms)
{
    rd_kafka_poll(p->rk, timeout_ms);
}

static int produce(struct clv_producer *p, enum clv_out_topic topic, const char *key, size_t keylen,
                   const char *payload, size_t len, struct clv_dr_ref *ref)
{
    const char *name = output_topic_name(&p->cfg->kafka.topics, topic);
    rd_kafka_resp_err_t e;

    for (;;) {
        e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(name), RD_KAFKA_V_KEY(key, keylen),
                              RD_KAFKA_V_VALUE((void *)payload, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(ref),
                              RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(p->rk, 10); /* back-pressure: let deliveries drain */
    }
    if (e) {
        log_error(p->log, "kafka: produce to %s: %s", name, rd_kafka_err2str(e));
        free(ref);
        return -1;
    }
    p->produced[topic]++;
    p->in_flight++;
    return 0;
}

int producer_send_outbox(struct clv_producer *p, enum clv_out_topic topic, uint32_t shard,
                         const char *field, size_t fieldlen, const char *key, size_t keylen,
                         const char *payload, size_t len, clv_ms input_ts)
{
    struct clv_dr_ref *r = ref_new(DR_OUTBOX, topic, fieldlen);

    r->shard = shard;
    r->input_ts = input_ts;
    memcpy(r->field, field, fieldlen);
    if (produce(p, topic, key, keylen, payload, len, r) != 0) {
        p->drain_needed = 1;
        return -1;
    }
    return 0;
}

int producer_send_plain(struct clv_producer *p, enum clv_out_topic topic, const char *key,
                        size_t keylen, const char *payload, size_t len)
{
    return produce(p, topic, key, keylen, payload, len, ref_new(DR_PLAIN, topic, 0));
}

void producer_send_batch(struct clv_producer *p, const struct clv_batch *b)
{
    char field[64 + CLV_ID_MAX];

    for (int i = 0; i < b->nmsgs; i++) {
        const struct clv_batch_msg *m = &b->msgs[i];
        const struct clv_item *it = &b->items[m->item];
        size_t fl;
        if (!it->done || m - b->msgs < it->msg_first ||
            m - b->msgs >= it->msg_first + it->msg_count)
            continue; /* rendered for an attempt that lost a compare-and-set */
        fl = state_outbox_field(field, sizeof(field), m->topic, m->seq, batch_item_id(b, it),
                                it->idlen);
        producer_send_outbox(p, m->topic, it->shard, field, fl, batch_item_id(b, it), it->idlen,
                             b->out.buf + m->off, m->len, it->input_ts);
    }
}

void producer_dead_letter(struct clv_producer *p, const struct clv_msgref *ref, const char *payload,
                          size_t len, const char *key, size_t keylen)
{
    struct clv_dr_ref *r = ref_new(DR_DEAD_LETTER, CLV_OUT_DEAD_LETTER, 0);

    r->input = *ref;
    if (produce(p, CLV_OUT_DEAD_LETTER, key, keylen, payload, len, r) != 0)
        p->fatal = 1;
}

/* ---- outbox ------------------------------------------------------------------------ */

int producer_trim_outbox(struct clv_producer *p, struct clv_store *st)
{
    char key[CLV_KEY_MAX];
    const char *argv[3] = {"HDEL", key, NULL};
    size_t argvlen[3] = {4, 0, 0};
    size_t n = p->nacked;
    double t0;

    if (n == 0)
        return 0;
    if (!store_connected(st))
        return -1;
    t0 = store_pipeline_begin();
    for (size_t i = 0; i < n; i++) {
        struct clv_dr_ref *r = p->acked[i];
        argvlen[1] = keys_outbox(key, p->cfg->redis.key_prefix, r->shard);
        argv[2] = r->field;
        argvlen[2] = r->fieldlen;
        store_append_argv(st, 3, argv, argvlen);
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *rep = store_read_reply(st);
        if (rep == NULL)
            return -1; /* the entries stay; a later trim or drain handles them */
        freeReplyObject(rep);
    }
    store_pipeline_end(st, t0);
    for (size_t i = 0; i < n; i++)
        free(p->acked[i]);
    /* deliveries reported while the replies were awaited (the store's wait
     * hook produces, and a full queue polls) are the next trim's */
    p->nacked -= n;
    memmove(p->acked, p->acked + n, p->nacked * sizeof(*p->acked));
    return 0;
}

/* Field "<topic>:<seq>:<id>" back into its parts. */
static int parse_field(const char *f, size_t len, enum clv_out_topic *topic, const char **id,
                       size_t *idlen)
{
    const char *c1 = memchr(f, ':', len), *c2;

    if (c1 == NULL)
        return -1;
    c2 = memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - f));
    if (c2 == NULL)
        return -1;
    *topic = (enum clv_out_topic)atoi(f);
    if (*topic < 0 || *topic >= CLV_OUT_COUNT)
        return -1;
    *id = c2 + 1;
    *idlen = len - (size_t)(c2 + 1 - f);
    return 0;
}

static int drain_shard(struct clv_producer *p, struct clv_store *st, uint32_t shard)
{
    char key[CLV_KEY_MAX];
    redisReply *r;
    int n = 0;

    keys_outbox(key, p->cfg->redis.key_prefix, shard);
    r = store_command(st, "HGETALL %s", key);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        redisReply *f = r->element[i], *v = r->element[i + 1];
        enum clv_out_topic topic;
        const char *id;
        size_t idlen;
        if (parse_field(f->str, f->len, &topic, &id, &idlen) != 0) {
            log_warn(p->log, "outbox %s: malformed field skipped", key);
            continue;
        }
        producer_send_outbox(p, topic, shard, f->str, f->len, id, idlen, v->str, v->len, 0);
        n++;
    }
    freeReplyObject(r);
    if (n)
        log_info(p->log, "outbox: re-published %d message(s) of shard %u", n, shard);
    return 0;
}

int producer_drain_step(struct clv_producer *p, struct clv_store *st, uint32_t max_shards)
{
    uint32_t shards = (uint32_t)p->cfg->redis.shards;

    if (!p->drain_active) {
        if (!p->drain_needed)
            return 0;
        p->drain_active = 1;
        p->drain_needed = 0;
        p->drain_cursor = 0;
    }
    for (uint32_t i = 0; i < max_shards && p->drain_cursor < shards; i++) {
        if (drain_shard(p, st, p->drain_cursor) != 0) {
            p->drain_needed = 1;
            p->drain_active = 0;
            return 0;
        }
        p->drain_cursor++;
    }
    if (p->drain_cursor >= shards)
        p->drain_active = 0;
    return p->drain_active;
}

/* clvctl_kafka.c -- the producer of `clvctl loadgen --brokers` and `clvctl
 * replay`: idempotent (librdkafka retries without duplicating or reordering
 * a partition's messages), delivery reports counted, a full queue waited
 * out, and at the end every report waited for. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

#include "clvctl.h"
#include "common.h"
#include "event.h"

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct delivery *dr = opaque;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        dr->delivered++;
        return;
    }
    if (dr->failed++ == 0)
        snprintf(dr->first_error, sizeof(dr->first_error), "%s: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
}

static int kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                     size_t errlen)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        clv_seterr(err, errlen, "kafka %s: %s", key, errstr);
        return -1;
    }
    return 0;
}

rd_kafka_t *kafka_producer(const char *brokers, const char *const *props, int nprops,
                           struct delivery *dr, char *err, size_t errlen)
{
    static const char *const defaults[][2] = {
        {"enable.idempotence", "true"}, /* no duplicates or reordering on retries */
        {"linger.ms", "5"},
        {"message.timeout.ms", "60000"},
        {"queue.buffering.max.messages", "1000000"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    char errstr[512], prop[512];

    if (kafka_set(conf, "bootstrap.servers", brokers, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < CLV_ARRAY_LEN(defaults); i++)
        if (kafka_set(conf, defaults[i][0], defaults[i][1], err, errlen) < 0)
            goto fail;
    for (int i = 0; i < nprops; i++) {
        const char *eq = strchr(props[i], '=');
        snprintf(prop, sizeof(prop), "%.*s", (int)(eq - props[i]), props[i]);
        if (kafka_set(conf, prop, eq + 1, err, errlen) < 0)
            goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, delivered);
    rd_kafka_conf_set_opaque(conf, dr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        clv_seterr(err, errlen, "kafka: %s", errstr);
        goto fail;
    }
    return rk; /* rd_kafka_new took conf */
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int kafka_send(rd_kafka_t *rk, const struct delivery *dr, const char *topic, const char *key,
               size_t keylen, const void *value, size_t len, char *err, size_t errlen)
{
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
                              RD_KAFKA_V_VALUE((void *)value, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            clv_seterr(err, errlen, "kafka produce to %s: %s", topic, rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 50); /* serve delivery reports to make room */
    }
    rd_kafka_poll(rk, 0);
    if (dr->failed > 0) {
        clv_seterr(err, errlen, "kafka delivery failed: %s", dr->first_error);
        return -1;
    }
    return 0;
}

int kafka_finish(rd_kafka_t *rk, const struct delivery *dr, int timeout_ms, char *err,
                 size_t errlen)
{
    if (rd_kafka_flush(rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        clv_seterr(err, errlen, "kafka: %d messages not delivered after %d s",
                   rd_kafka_outq_len(rk), timeout_ms / 1000);
        return -1;
    }
    if (dr->failed > 0) {
        clv_seterr(err, errlen, "kafka: %llu messages failed, first: %s",
                   (unsigned long long)dr->failed, dr->first_error);
        return -1;
    }
    return 0;
}

int kafka_prop_add(const char *cmd, const char *v, const char **props, int *nprops)
{
    if (strchr(v, '=') == NULL || v[0] == '=') {
        fprintf(stderr, "clvctl %s: -X wants KEY=VALUE, not '%s'\n", cmd, v);
        return -1;
    }
    if (*nprops == MAX_KAFKA_PROPS) {
        fprintf(stderr, "clvctl %s: at most %d -X options\n", cmd, MAX_KAFKA_PROPS);
        return -1;
    }
    props[(*nprops)++] = v;
    return 0;
}

int parse_topics(const char *v, char *buf, size_t buflen, const char *topics[3])
{
    static const enum clv_event_type order[3] = {CLV_EV_PURCHASE, CLV_EV_LOGIN, CLV_EV_VISIT};
    char *save = NULL, *tok;
    int k = 0;

    if (strlen(v) >= buflen || v[0] == ',' || v[strlen(v) - 1] == ',' || strstr(v, ",,"))
        return -1;
    strcpy(buf, v);
    for (tok = strtok_r(buf, ",", &save); tok != NULL && k < 3; tok = strtok_r(NULL, ",", &save))
        topics[order[k++]] = tok;
    return k == 3 && tok == NULL ? 0 : -1;
}

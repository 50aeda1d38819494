/* embedded.c -- librdkafka mock cluster with clvd's topics. */
#include "embedded.h"

#include <string.h>

#include "output.h"

int embedded_start(struct clv_embedded *e, const struct clv_config *cfg, char *err, size_t errlen)
{
    const struct clv_kafka_topics *t = &cfg->kafka.topics;
    const char *inputs[] = {t->purchases, t->logins, t->visits};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[256];

    memset(e, 0, sizeof(*e));
    /* this handle only owns the cluster; it never connects anywhere */
    rd_kafka_conf_set(conf, "log_level", "3", kerr, sizeof(kerr));
    e->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (e->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        clv_seterr(err, errlen, "embedded kafka: %s", kerr);
        return -1;
    }
    e->mc = rd_kafka_mock_cluster_new(e->rk, 1);
    if (e->mc == NULL) {
        clv_seterr(err, errlen, "embedded kafka: cannot start the mock cluster");
        embedded_stop(e);
        return -1;
    }
    for (size_t i = 0; i < CLV_ARRAY_LEN(inputs); i++)
        rd_kafka_mock_topic_create(e->mc, inputs[i], cfg->kafka.embedded_partitions, 1);
    for (int i = 0; i < CLV_OUT_COUNT; i++)
        rd_kafka_mock_topic_create(e->mc, output_topic_name(t, (enum clv_out_topic)i), 1, 1);
    snprintf(e->bootstraps, sizeof(e->bootstraps), "%s", rd_kafka_mock_cluster_bootstraps(e->mc));
    return 0;
}

void embedded_stop(struct clv_embedded *e)
{
    if (e->mc)
        rd_kafka_mock_cluster_destroy(e->mc);
    if (e->rk)
        rd_kafka_destroy(e->rk);
    memset(e, 0, sizeof(*e));
}

/* embedded.h -- `kafka.brokers: embedded`: an in-process Kafka for the demo
 * and tests (librdkafka's mock cluster, real protocol on a loopback port).
 * Never for production: it keeps ~5 MB per partition and nothing on disk. */
#ifndef CLVD_EMBEDDED_H
#define CLVD_EMBEDDED_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"

struct clv_embedded {
    rd_kafka_t *rk; /* owner of the mock cluster */
    rd_kafka_mock_cluster_t *mc;
    char bootstraps[256];
};

/* Start the cluster and create every configured topic. */
int embedded_start(struct clv_embedded *e, const struct clv_config *cfg, char *err, size_t errlen);
void embedded_stop(struct clv_embedded *e);

#endif

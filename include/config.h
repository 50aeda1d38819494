/* config.h -- the clvd YAML configuration (SPEC section 11).
 *
 * One struct holds every setting.  config_load() fills it from a file,
 * starting from the defaults, and fails on the first unknown key, wrong type
 * or out-of-range value with "FILE:LINE:COLUMN: message".  Strings are owned
 * by the struct and released by config_free(). */
#ifndef CLVD_CONFIG_H
#define CLVD_CONFIG_H

#include <stdio.h>

#include "common.h"

enum clv_clock_mode { CLV_CLOCK_WALL = 0, CLV_CLOCK_EVENT = 1 };
enum clv_clv_model { CLV_MODEL_NONE = 0, CLV_MODEL_BGNBD = 1 };
enum clv_log_format { CLV_LOG_TEXT = 0, CLV_LOG_JSON = 1 };
enum clv_log_level { CLV_LOG_DEBUG = 0, CLV_LOG_INFO, CLV_LOG_WARNING, CLV_LOG_ERROR };

/* A key/value pair handed verbatim to librdkafka (kafka.properties). */
struct clv_kv {
    char *key;
    char *value;
};

struct clv_channel_cac {
    char *channel;
    double cac;
};

#define CLV_MAX_TIERS 16
struct clv_tier {
    char *name;
    double min_spend;
};

#define CLV_MAX_ALERTS 32
enum clv_alert_metric { CLV_ALERT_CHURN_RATE = 0, CLV_ALERT_STAGE_SHARE = 1 };
struct clv_alert_rule {
    char *name;
    enum clv_alert_metric metric;
    int stage;     /* enum clv_stage, for CLV_ALERT_STAGE_SHARE */
    clv_ms window; /* for churn_rate; default 24h */
    double above;
    double hysteresis; /* resolved when value < above * (1 - hysteresis); default 0.1 */
};

struct clv_kafka_topics {
    char *purchases, *logins, *visits;
    char *stage_changes, *churn_warnings, *win_back, *tier_changes, *alerts, *dead_letter;
};

struct clv_kafka_config {
    char *brokers; /* "host:port,..." or "embedded" */
    char *group_id;
    struct clv_kafka_topics topics;
    int max_message_bytes;   /* >= 1024 */
    int embedded_partitions; /* partitions per topic when brokers is "embedded"; default 4 */
    struct clv_kv *properties;
    int nproperties;
};

struct clv_redis_config {
    char *host;
    int port;
    char *unix_socket; /* "" = use host/port */
    int db;
    char *user;
    char *password;      /* secret: never printed */
    char *password_file; /* read at load time into password when set */
    int timeout_ms;
    char *key_prefix;
    int shards; /* 1 .. 65536 */
    int cluster;
    char **seeds;
    int nseeds;
};

struct clv_clock_config {
    enum clv_clock_mode mode;
    clv_ms lateness;
    clv_ms idle_after;
    long max_held_events;
    clv_ms max_future_skew;
};

struct clv_lifecycle_config {
    double at_risk_min_gap_days;
    double at_risk_gap_factor;
    double at_risk_default_gap_days;
    double at_risk_p_alive_below; /* 0 = off */
    double dormant_after_days;
    double churned_after_days;
    int loyal_min_purchases;
    int loyal_window_days;
};

struct clv_model_config {
    enum clv_clv_model model;
    double r, alpha, a, b, time_unit_days; /* BG/NBD */
    double gg_p, gg_q, gg_gamma;           /* Gamma-Gamma */
    double horizon_days;
    double discount_rate;
    double margin;
    double lifespan_years;
    double cac_default;
    struct clv_channel_cac *cac_by_channel;
    int ncac_by_channel;
};

struct clv_rfm_config {
    double recency_days[4];
    double frequency[4];
    double monetary[4];
};

struct clv_config {
    char *path; /* file it was loaded from, for messages */
    struct clv_kafka_config kafka;
    struct clv_redis_config redis;
    struct clv_clock_config clock;
    int processing_workers;        /* threads applying batches to Redis; 1..16, default 2 */
    int processing_state_cache_mb; /* the workers' state caches together; 0 = none */
    struct clv_lifecycle_config lifecycle;
    clv_ms dedupe_window;
    int dedupe_max_ids; /* event ids remembered per customer; 1..64, default 16 */
    struct clv_model_config clv;
    struct clv_rfm_config rfm;
    int tiers_window_days; /* 0 = lifetime */
    struct clv_tier tiers[CLV_MAX_TIERS];
    int ntiers;
    struct clv_alert_rule alerts[CLV_MAX_ALERTS];
    int nalerts;
    char *metrics_listen; /* "host:port"; "" disables the endpoint */
    enum clv_log_level log_level;
    enum clv_log_format log_format;
};

/* Fill cfg with the defaults of SPEC section 11. */
int config_defaults(struct clv_config *cfg, char *err, size_t errlen);

/* Load a YAML file over the defaults.  On failure cfg is left freed and err
 * reads "path:line:column: what is wrong". */
int config_load(const char *path, struct clv_config *cfg, char *err, size_t errlen);

/* Same, from a string in memory; `name` stands for the file name in errors. */
int config_load_string(const char *name, const char *yaml, struct clv_config *cfg, char *err,
                       size_t errlen);

void config_free(struct clv_config *cfg);

/* Print the effective configuration as YAML, secrets replaced by "***". */
void config_print(const struct clv_config *cfg, FILE *out);

/* For SIGHUP: 0 if `next` differs from `cur` only in settings that can be
 * reloaded live (lifecycle, dedupe, clv, rfm, tiers, alerts, log level);
 * otherwise -1 and err names the first setting that needs a restart. */
int config_reloadable(const struct clv_config *cur, const struct clv_config *next, char *err,
                      size_t errlen);

/* Parse "500ms", "30s", "5m", "24h", "7d" (a non-negative integer and a unit). */
int config_parse_duration(const char *s, clv_ms *out);

#endif

/* test_config.c -- unit tests of the configuration module (daemon/config.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#ifndef CLVD_SOURCE_DIR
#error "CLVD_SOURCE_DIR must name the repository root"
#endif

#define ERRLEN 512

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

static char *print_to_string(const struct clv_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    assert_non_null(out);
    config_print(cfg, out);
    assert_int_equal(fclose(out), 0);
    return buf;
}

static void load_ok(const char *yaml, struct clv_config *cfg)
{
    char err[ERRLEN] = "";
    int rc = config_load_string("t.yaml", yaml, cfg, err, sizeof err);

    if (rc != 0)
        fail_msg("unexpected error: %s", err);
}

/* Loading `yaml` fails with exactly `message`. */
static void expect_error(const char *yaml, const char *message)
{
    struct clv_config cfg;
    char err[ERRLEN] = "";

    assert_int_equal(config_load_string("t.yaml", yaml, &cfg, err, sizeof err), -1);
    assert_string_equal(err, message);
    assert_null(cfg.kafka.brokers); /* left freed */
}

static void assert_prints_like_defaults(const struct clv_config *cfg)
{
    struct clv_config def;
    char err[ERRLEN];
    char *a, *b;

    assert_int_equal(config_defaults(&def, err, sizeof err), 0);
    a = print_to_string(&def);
    b = print_to_string(cfg);
    assert_string_equal(b, a);
    free(a);
    free(b);
    config_free(&def);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* ---------------------------------------------------------------------- */
/* Defaults                                                                */

static void test_defaults(void **state)
{
    struct clv_config c;
    char err[ERRLEN];

    (void)state;
    assert_int_equal(config_defaults(&c, err, sizeof err), 0);
    assert_string_equal(c.kafka.brokers, "localhost:9092");
    assert_string_equal(c.kafka.group_id, "clvd");
    assert_string_equal(c.kafka.topics.purchases, "purchases");
    assert_string_equal(c.kafka.topics.logins, "logins");
    assert_string_equal(c.kafka.topics.visits, "visits");
    assert_string_equal(c.kafka.topics.stage_changes, "customer.stage-changes");
    assert_string_equal(c.kafka.topics.churn_warnings, "customer.churn-warnings");
    assert_string_equal(c.kafka.topics.win_back, "customer.win-back");
    assert_string_equal(c.kafka.topics.tier_changes, "customer.tier-changes");
    assert_string_equal(c.kafka.topics.alerts, "clvd.alerts");
    assert_string_equal(c.kafka.topics.dead_letter, "clvd.dead-letter");
    assert_int_equal(c.kafka.max_message_bytes, 65536);
    assert_int_equal(c.kafka.embedded_partitions, 4);
    assert_int_equal(c.kafka.nproperties, 0);
    assert_string_equal(c.redis.host, "127.0.0.1");
    assert_int_equal(c.redis.port, 6379);
    assert_string_equal(c.redis.unix_socket, "");
    assert_int_equal(c.redis.db, 0);
    assert_string_equal(c.redis.user, "");
    assert_string_equal(c.redis.password, "");
    assert_string_equal(c.redis.password_file, "");
    assert_int_equal(c.redis.timeout_ms, 2000);
    assert_string_equal(c.redis.key_prefix, "clv:");
    assert_int_equal(c.redis.shards, 1024);
    assert_int_equal(c.redis.cluster, 0);
    assert_int_equal(c.redis.nseeds, 0);
    assert_int_equal(c.clock.mode, CLV_CLOCK_WALL);
    assert_int_equal(c.clock.lateness, 5 * CLV_MS_PER_MIN);
    assert_int_equal(c.clock.idle_after, 30 * CLV_MS_PER_SEC);
    assert_int_equal(c.clock.max_held_events, 1000000);
    assert_int_equal(c.clock.max_future_skew, 5 * CLV_MS_PER_MIN);
    assert_int_equal(c.processing_workers, 2);
    assert_int_equal(c.processing_state_cache_mb, 4);
    assert_true(c.lifecycle.at_risk_min_gap_days == 14);
    assert_true(c.lifecycle.at_risk_gap_factor == 2.0);
    assert_true(c.lifecycle.at_risk_default_gap_days == 30);
    assert_true(c.lifecycle.at_risk_p_alive_below == 0);
    assert_true(c.lifecycle.dormant_after_days == 60);
    assert_true(c.lifecycle.churned_after_days == 180);
    assert_int_equal(c.lifecycle.loyal_min_purchases, 5);
    assert_int_equal(c.lifecycle.loyal_window_days, 180);
    assert_int_equal(c.dedupe_window, 7 * CLV_MS_PER_DAY);
    assert_int_equal(c.dedupe_max_ids, 16);
    config_free(&c);
}

static void test_defaults_model_and_tiers(void **state)
{
    static const double rec[4] = {7, 30, 90, 180}, freq[4] = {2, 3, 5, 10},
                        mon[4] = {50, 100, 250, 1000};
    static const char *const tiers[4] = {"standard", "silver", "gold", "platinum"};
    static const double spend[4] = {0, 500, 1000, 5000};
    struct clv_config c;
    char err[ERRLEN];

    (void)state;
    assert_int_equal(config_defaults(&c, err, sizeof err), 0);
    assert_int_equal(c.clv.model, CLV_MODEL_NONE);
    assert_true(c.clv.r == 0.243 && c.clv.alpha == 4.414 && c.clv.a == 0.793 && c.clv.b == 2.426);
    assert_true(c.clv.time_unit_days == 7);
    assert_true(c.clv.gg_p == 6.25 && c.clv.gg_q == 3.74 && c.clv.gg_gamma == 15.44);
    assert_true(c.clv.horizon_days == 365 && c.clv.discount_rate == 0.10);
    assert_true(c.clv.margin == 0.3 && c.clv.lifespan_years == 3 && c.clv.cac_default == 0);
    assert_int_equal(c.clv.ncac_by_channel, 0);
    assert_memory_equal(c.rfm.recency_days, rec, sizeof rec);
    assert_memory_equal(c.rfm.frequency, freq, sizeof freq);
    assert_memory_equal(c.rfm.monetary, mon, sizeof mon);
    assert_int_equal(c.tiers_window_days, 365);
    assert_int_equal(c.ntiers, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(c.tiers[i].name, tiers[i]);
        assert_true(c.tiers[i].min_spend == spend[i]);
    }
    assert_int_equal(c.nalerts, 0);
    assert_string_equal(c.metrics_listen, "127.0.0.1:9464");
    assert_int_equal(c.log_level, CLV_LOG_INFO);
    assert_int_equal(c.log_format, CLV_LOG_TEXT);
    config_free(&c);
}

static void test_shipped_config_equals_defaults(void **state)
{
    struct clv_config c;
    char err[ERRLEN] = "";

    (void)state;
    if (config_load(CLVD_SOURCE_DIR "/config/clvd.yaml", &c, err, sizeof err) != 0)
        fail_msg("config/clvd.yaml: %s", err);
    assert_prints_like_defaults(&c);
    assert_string_equal(c.path, CLVD_SOURCE_DIR "/config/clvd.yaml");
    config_free(&c);
}

/* The example of SPEC section 11, verbatim. */
static void test_spec_example_equals_defaults(void **state)
{
    static const char yaml[] =
        "kafka:\n"
        "  brokers: \"localhost:9092\"      # or \"embedded\"\n"
        "  group_id: clvd\n"
        "  topics:\n"
        "    purchases: purchases\n"
        "    logins: logins\n"
        "    visits: visits\n"
        "    stage_changes: customer.stage-changes\n"
        "    churn_warnings: customer.churn-warnings\n"
        "    win_back: customer.win-back\n"
        "    tier_changes: customer.tier-changes\n"
        "    alerts: clvd.alerts\n"
        "    dead_letter: clvd.dead-letter\n"
        "  max_message_bytes: 65536\n"
        "  properties: {}\n"
        "redis:\n"
        "  host: 127.0.0.1\n"
        "  port: 6379\n"
        "  unix_socket: \"\"\n"
        "  db: 0\n"
        "  user: \"\"\n"
        "  password: \"\"\n"
        "  password_file: \"\"\n"
        "  timeout_ms: 2000\n"
        "  key_prefix: \"clv:\"\n"
        "  shards: 1024\n"
        "  cluster: false\n"
        "  seeds: []\n"
        "clock:\n"
        "  mode: wall\n"
        "  lateness: 5m\n"
        "  idle_after: 30s\n"
        "  max_held_events: 1000000\n"
        "  max_future_skew: 5m\n"
        "lifecycle:\n"
        "  at_risk: {min_gap_days: 14, gap_factor: 2.0, default_gap_days: 30, p_alive_below: 0}\n"
        "  dormant_after_days: 60\n"
        "  churned_after_days: 180\n"
        "  loyal: {min_purchases: 5, window_days: 180}\n"
        "dedupe:\n"
        "  window: 7d\n"
        "clv:\n"
        "  model: none\n"
        "  bgnbd: {r: 0.243, alpha: 4.414, a: 0.793, b: 2.426, time_unit_days: 7}\n"
        "  gamma_gamma: {p: 6.25, q: 3.74, gamma: 15.44}\n"
        "  horizon_days: 365\n"
        "  discount_rate: 0.10\n"
        "  margin: 0.3\n"
        "  lifespan_years: 3\n"
        "  cac: 0\n"
        "rfm: {recency_days: [7, 30, 90, 180], frequency: [2, 3, 5, 10], monetary: [50, 100, "
        "250, 1000]}\n"
        "tiers:\n"
        "  window_days: 365\n"
        "  levels: [{name: standard, min_spend: 0}, {name: silver, min_spend: 500},\n"
        "           {name: gold, min_spend: 1000}, {name: platinum, min_spend: 5000}]\n"
        "alerts: []\n"
        "metrics: {listen: \"127.0.0.1:9464\"}\n"
        "log: {level: info, format: text}  # text | json\n";
    struct clv_config c;

    (void)state;
    load_ok(yaml, &c);
    assert_prints_like_defaults(&c);
    config_free(&c);
}

static void test_empty_and_null_sections_are_defaults(void **state)
{
    struct clv_config c;

    (void)state;
    load_ok("", &c);
    assert_prints_like_defaults(&c);
    config_free(&c);
    load_ok("# nothing but a comment\n", &c);
    assert_prints_like_defaults(&c);
    config_free(&c);
    load_ok("kafka:\n  # brokers: x\nalerts:\nredis: ~\n", &c);
    assert_prints_like_defaults(&c);
    config_free(&c);
}

/* ---------------------------------------------------------------------- */
/* Every key                                                               */

static const char every_key_block[] = "kafka:\n"
                                      "  brokers: \"b1:9092,b2:9092\"\n"
                                      "  group_id: g2\n"
                                      "  topics:\n"
                                      "    purchases: p2\n"
                                      "    logins: l2\n"
                                      "    visits: v2\n"
                                      "    stage_changes: sc2\n"
                                      "    churn_warnings: cw2\n"
                                      "    win_back: wb2\n"
                                      "    tier_changes: tc2\n"
                                      "    alerts: al2\n"
                                      "    dead_letter: dl2\n"
                                      "  max_message_bytes: 2048\n"
                                      "  embedded_partitions: 8\n"
                                      "  properties:\n"
                                      "    security.protocol: SASL_SSL\n"
                                      "    linger.ms: 5\n"
                                      "redis:\n"
                                      "  host: redis.local\n"
                                      "  port: 6380\n"
                                      "  unix_socket: /run/redis.sock\n"
                                      "  db: 3\n"
                                      "  user: clvd\n"
                                      "  password: pw\n"
                                      "  password_file: \"\"\n"
                                      "  timeout_ms: 500\n"
                                      "  key_prefix: \"x:\"\n"
                                      "  shards: 16\n"
                                      "  cluster: false\n"
                                      "  seeds:\n"
                                      "    - \"s1:7000\"\n"
                                      "    - \"[::1]:7001\"\n"
                                      "clock:\n"
                                      "  mode: event\n"
                                      "  lateness: 10s\n"
                                      "  idle_after: 1500ms\n"
                                      "  max_held_events: 5000\n"
                                      "  max_future_skew: 1h\n"
                                      "processing:\n"
                                      "  workers: 5\n"
                                      "  state_cache_mb: 0\n"
                                      "lifecycle:\n"
                                      "  at_risk:\n"
                                      "    min_gap_days: 10\n"
                                      "    gap_factor: 3.5\n"
                                      "    default_gap_days: 20\n"
                                      "    p_alive_below: 0.25\n"
                                      "  dormant_after_days: 45\n"
                                      "  churned_after_days: 120.5\n"
                                      "  loyal:\n"
                                      "    min_purchases: 7\n"
                                      "    window_days: 90\n"
                                      "dedupe:\n"
                                      "  window: 3d\n"
                                      "  max_ids: 32\n"
                                      "clv:\n"
                                      "  model: bgnbd\n"
                                      "  bgnbd:\n"
                                      "    r: 0.5\n"
                                      "    alpha: 5\n"
                                      "    a: 0.6\n"
                                      "    b: 2.5\n"
                                      "    time_unit_days: 1\n"
                                      "  gamma_gamma:\n"
                                      "    p: 7\n"
                                      "    q: 4\n"
                                      "    gamma: 16\n"
                                      "  horizon_days: 180\n"
                                      "  discount_rate: 0.05\n"
                                      "  margin: 0.4\n"
                                      "  lifespan_years: 2\n"
                                      "  cac:\n"
                                      "    default: 20\n"
                                      "    by_channel:\n"
                                      "      search: 35\n"
                                      "      social: 12.5\n"
                                      "rfm:\n"
                                      "  recency_days: [1, 2, 3, 4]\n"
                                      "  frequency:\n"
                                      "    - 5\n"
                                      "    - 6\n"
                                      "    - 7\n"
                                      "    - 8\n"
                                      "  monetary: [10, 20, 30, 40]\n"
                                      "tiers:\n"
                                      "  window_days: 0\n"
                                      "  levels:\n"
                                      "    - name: basic\n"
                                      "      min_spend: 0\n"
                                      "    - name: vip\n"
                                      "      min_spend: 100\n"
                                      "alerts:\n"
                                      "  - name: churn_spike\n"
                                      "    metric: churn_rate\n"
                                      "    window: 12h\n"
                                      "    above: 0.02\n"
                                      "    hysteresis: 0.2\n"
                                      "  - name: dormant_share\n"
                                      "    metric: stage_share.dormant\n"
                                      "    above: 0.15\n"
                                      "metrics:\n"
                                      "  listen: \"0.0.0.0:9100\"\n"
                                      "log:\n"
                                      "  level: debug\n"
                                      "  format: json\n";

static const char every_key_flow[] =
    "{kafka: {brokers: \"b1:9092,b2:9092\", group_id: g2,\n"
    "   topics: {purchases: p2, logins: l2, visits: v2, stage_changes: sc2, churn_warnings: cw2,\n"
    "            win_back: wb2, tier_changes: tc2, alerts: al2, dead_letter: dl2},\n"
    "   max_message_bytes: 2048, embedded_partitions: 8,\n"
    "   properties: {security.protocol: SASL_SSL, linger.ms: 5}},\n"
    " redis: {host: redis.local, port: 6380, unix_socket: /run/redis.sock, db: 3, user: clvd,\n"
    "   password: pw, password_file: \"\", timeout_ms: 500, key_prefix: \"x:\", shards: 16,\n"
    "   cluster: false, seeds: [\"s1:7000\", \"[::1]:7001\"]},\n"
    " clock: {mode: event, lateness: 10s, idle_after: 1500ms, max_held_events: 5000,\n"
    "   max_future_skew: 1h},\n"
    " processing: {workers: 5, state_cache_mb: 0},\n"
    " lifecycle: {at_risk: {min_gap_days: 10, gap_factor: 3.5, default_gap_days: 20,\n"
    "   p_alive_below: 0.25}, dormant_after_days: 45, churned_after_days: 120.5,\n"
    "   loyal: {min_purchases: 7, window_days: 90}},\n"
    " dedupe: {window: 3d, max_ids: 32},\n"
    " clv: {model: bgnbd, bgnbd: {r: 0.5, alpha: 5, a: 0.6, b: 2.5, time_unit_days: 1},\n"
    "   gamma_gamma: {p: 7, q: 4, gamma: 16}, horizon_days: 180, discount_rate: 0.05,\n"
    "   margin: 0.4, lifespan_years: 2,\n"
    "   cac: {default: 20, by_channel: {search: 35, social: 12.5}}},\n"
    " rfm: {recency_days: [1, 2, 3, 4], frequency: [5, 6, 7, 8], monetary: [10, 20, 30, 40]},\n"
    " tiers: {window_days: 0, levels: [{name: basic, min_spend: 0}, {name: vip, min_spend: "
    "100}]},\n"
    " alerts: [{name: churn_spike, metric: churn_rate, window: 12h, above: 0.02, hysteresis: "
    "0.2},\n"
    "          {name: dormant_share, metric: stage_share.dormant, above: 0.15}],\n"
    " metrics: {listen: \"0.0.0.0:9100\"},\n"
    " log: {level: debug, format: json}}\n";

static void assert_kafka_redis_set(const struct clv_config *c)
{
    assert_string_equal(c->kafka.brokers, "b1:9092,b2:9092");
    assert_string_equal(c->kafka.group_id, "g2");
    assert_string_equal(c->kafka.topics.purchases, "p2");
    assert_string_equal(c->kafka.topics.logins, "l2");
    assert_string_equal(c->kafka.topics.visits, "v2");
    assert_string_equal(c->kafka.topics.stage_changes, "sc2");
    assert_string_equal(c->kafka.topics.churn_warnings, "cw2");
    assert_string_equal(c->kafka.topics.win_back, "wb2");
    assert_string_equal(c->kafka.topics.tier_changes, "tc2");
    assert_string_equal(c->kafka.topics.alerts, "al2");
    assert_string_equal(c->kafka.topics.dead_letter, "dl2");
    assert_int_equal(c->kafka.max_message_bytes, 2048);
    assert_int_equal(c->kafka.embedded_partitions, 8);
    assert_int_equal(c->kafka.nproperties, 2);
    assert_string_equal(c->kafka.properties[0].key, "security.protocol");
    assert_string_equal(c->kafka.properties[0].value, "SASL_SSL");
    assert_string_equal(c->kafka.properties[1].key, "linger.ms");
    assert_string_equal(c->kafka.properties[1].value, "5");
    assert_string_equal(c->redis.host, "redis.local");
    assert_int_equal(c->redis.port, 6380);
    assert_string_equal(c->redis.unix_socket, "/run/redis.sock");
    assert_int_equal(c->redis.db, 3);
    assert_string_equal(c->redis.user, "clvd");
    assert_string_equal(c->redis.password, "pw");
    assert_string_equal(c->redis.password_file, "");
    assert_int_equal(c->redis.timeout_ms, 500);
    assert_string_equal(c->redis.key_prefix, "x:");
    assert_int_equal(c->redis.shards, 16);
    assert_int_equal(c->redis.cluster, 0);
    assert_int_equal(c->redis.nseeds, 2);
    assert_string_equal(c->redis.seeds[0], "s1:7000");
    assert_string_equal(c->redis.seeds[1], "[::1]:7001");
}

static void assert_clock_lifecycle_set(const struct clv_config *c)
{
    assert_int_equal(c->clock.mode, CLV_CLOCK_EVENT);
    assert_int_equal(c->clock.lateness, 10000);
    assert_int_equal(c->clock.idle_after, 1500);
    assert_int_equal(c->clock.max_held_events, 5000);
    assert_int_equal(c->clock.max_future_skew, CLV_MS_PER_HOUR);
    assert_int_equal(c->processing_workers, 5);
    assert_int_equal(c->processing_state_cache_mb, 0);
    assert_true(c->lifecycle.at_risk_min_gap_days == 10);
    assert_true(c->lifecycle.at_risk_gap_factor == 3.5);
    assert_true(c->lifecycle.at_risk_default_gap_days == 20);
    assert_true(c->lifecycle.at_risk_p_alive_below == 0.25);
    assert_true(c->lifecycle.dormant_after_days == 45);
    assert_true(c->lifecycle.churned_after_days == 120.5);
    assert_int_equal(c->lifecycle.loyal_min_purchases, 7);
    assert_int_equal(c->lifecycle.loyal_window_days, 90);
    assert_int_equal(c->dedupe_window, 3 * CLV_MS_PER_DAY);
    assert_int_equal(c->dedupe_max_ids, 32);
}

static void assert_model_rest_set(const struct clv_config *c)
{
    static const double rec[4] = {1, 2, 3, 4}, freq[4] = {5, 6, 7, 8}, mon[4] = {10, 20, 30, 40};

    assert_int_equal(c->clv.model, CLV_MODEL_BGNBD);
    assert_true(c->clv.r == 0.5 && c->clv.alpha == 5 && c->clv.a == 0.6 && c->clv.b == 2.5);
    assert_true(c->clv.time_unit_days == 1);
    assert_true(c->clv.gg_p == 7 && c->clv.gg_q == 4 && c->clv.gg_gamma == 16);
    assert_true(c->clv.horizon_days == 180 && c->clv.discount_rate == 0.05);
    assert_true(c->clv.margin == 0.4 && c->clv.lifespan_years == 2 && c->clv.cac_default == 20);
    assert_int_equal(c->clv.ncac_by_channel, 2);
    assert_string_equal(c->clv.cac_by_channel[0].channel, "search");
    assert_true(c->clv.cac_by_channel[0].cac == 35);
    assert_string_equal(c->clv.cac_by_channel[1].channel, "social");
    assert_true(c->clv.cac_by_channel[1].cac == 12.5);
    assert_memory_equal(c->rfm.recency_days, rec, sizeof rec);
    assert_memory_equal(c->rfm.frequency, freq, sizeof freq);
    assert_memory_equal(c->rfm.monetary, mon, sizeof mon);
    assert_int_equal(c->tiers_window_days, 0);
    assert_int_equal(c->ntiers, 2);
    assert_string_equal(c->tiers[0].name, "basic");
    assert_true(c->tiers[0].min_spend == 0);
    assert_string_equal(c->tiers[1].name, "vip");
    assert_true(c->tiers[1].min_spend == 100);
    assert_int_equal(c->nalerts, 2);
    assert_string_equal(c->alerts[0].name, "churn_spike");
    assert_int_equal(c->alerts[0].metric, CLV_ALERT_CHURN_RATE);
    assert_int_equal(c->alerts[0].window, 12 * CLV_MS_PER_HOUR);
    assert_true(c->alerts[0].above == 0.02 && c->alerts[0].hysteresis == 0.2);
    assert_string_equal(c->alerts[1].name, "dormant_share");
    assert_int_equal(c->alerts[1].metric, CLV_ALERT_STAGE_SHARE);
    assert_int_equal(c->alerts[1].stage, 5); /* dormant */
    assert_true(c->alerts[1].above == 0.15 && c->alerts[1].hysteresis == 0.1);
    assert_string_equal(c->metrics_listen, "0.0.0.0:9100");
    assert_int_equal(c->log_level, CLV_LOG_DEBUG);
    assert_int_equal(c->log_format, CLV_LOG_JSON);
}

static void test_every_key_block_style(void **state)
{
    struct clv_config c;

    (void)state;
    load_ok(every_key_block, &c);
    assert_kafka_redis_set(&c);
    assert_clock_lifecycle_set(&c);
    assert_model_rest_set(&c);
    config_free(&c);
}

static void test_every_key_flow_style(void **state)
{
    struct clv_config c, b;
    char *flow, *block;

    (void)state;
    load_ok(every_key_flow, &c);
    assert_kafka_redis_set(&c);
    assert_clock_lifecycle_set(&c);
    assert_model_rest_set(&c);
    load_ok(every_key_block, &b);
    flow = print_to_string(&c);
    block = print_to_string(&b);
    assert_string_equal(flow, block);
    free(flow);
    free(block);
    config_free(&b);
    config_free(&c);
}

static void test_scalar_spellings(void **state)
{
    struct clv_config c;

    (void)state;
    /* Quoted numbers (as ${ENV} often produces), yes/no booleans, exponents. */
    load_ok("redis: {port: \"6390\", cluster: yes, seeds: [\"h:1\"]}\n"
            "clv: {margin: 5e-1}\n",
            &c);
    assert_int_equal(c.redis.port, 6390);
    assert_int_equal(c.redis.cluster, 1);
    assert_true(c.clv.margin == 0.5);
    config_free(&c);
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */

static void test_unknown_key(void **state)
{
    (void)state;
    expect_error("lifecycle:\n  dormant_after_day: 90\n",
                 "t.yaml:2:3: unknown key \"dormant_after_day\" (did you mean "
                 "\"dormant_after_days\"?)");
    expect_error("redis: {host: a, prot: 1}\n",
                 "t.yaml:1:18: unknown key \"prot\" (did you mean \"port\"?)");
    expect_error("kafka:\n  gruop_id: x\n",
                 "t.yaml:2:3: unknown key \"gruop_id\" (did you mean \"group_id\"?)");
    expect_error("dormant_after_days: 3\n", "t.yaml:1:1: unknown key \"dormant_after_days\" (did "
                                            "you mean \"lifecycle.dormant_after_days\"?)");
    expect_error("kafka:\n  zzz: 1\n",
                 "t.yaml:2:3: unknown key \"zzz\" (valid keys under kafka: brokers, group_id, "
                 "topics, max_message_bytes, embedded_partitions, properties)");
    expect_error("log: {level: info}\nfoo: 1\n",
                 "t.yaml:2:1: unknown key \"foo\" (valid top-level keys: kafka, redis, clock, "
                 "processing, lifecycle, dedupe, clv, rfm, tiers, alerts, metrics, log)");
    expect_error("alerts:\n  - name: a\n    metric: churn_rate\n    above: 0.1\n    abovee: 2\n",
                 "t.yaml:5:5: unknown key \"abovee\" (did you mean \"above\"?)");
}

static void test_wrong_type(void **state)
{
    (void)state;
    expect_error("redis:\n  port: \"abc\"\n",
                 "t.yaml:2:9: redis.port: expected an integer, got \"abc\"");
    expect_error("dedupe: {max_ids: 1.5}\n",
                 "t.yaml:1:19: dedupe.max_ids: expected an integer, got \"1.5\"");
    expect_error("processing: {workers: two}\n",
                 "t.yaml:1:23: processing.workers: expected an integer, got \"two\"");
    expect_error("clv:\n  margin: high\n",
                 "t.yaml:2:11: clv.margin: expected a number, got \"high\"");
    expect_error("clv:\n  margin: nan\n",
                 "t.yaml:2:11: clv.margin: expected a number, got \"nan\"");
    expect_error("kafka:\n  brokers: {a: 1}\n",
                 "t.yaml:2:12: kafka.brokers: expected a string, got a mapping");
    expect_error("lifecycle: [1, 2]\n", "t.yaml:1:12: lifecycle: expected a mapping, got a list");
    expect_error("redis: {cluster: maybe}\n",
                 "t.yaml:1:18: redis.cluster: expected true or false, got \"maybe\"");
    expect_error("clock: {mode: walll}\n",
                 "t.yaml:1:15: clock.mode: unknown value \"walll\" (did you mean \"wall\"?)");
    expect_error("log: {level: verbose}\n", "t.yaml:1:14: log.level: unknown value \"verbose\" "
                                            "(expected one of: debug, info, warning, error)");
    expect_error("lifecycle:\n  dormant_after_days:\n",
                 "t.yaml:2:22: lifecycle.dormant_after_days: expected a number, got an empty "
                 "value");
    expect_error("- a\n", "t.yaml:1:1: top level: expected a mapping of sections (kafka, redis, "
                          "...), got a list");
    expect_error("kafka: {properties: {a: {b: 1}}}\n",
                 "t.yaml:1:25: kafka.properties.a: expected a scalar value, got a mapping");
}

static void test_out_of_range(void **state)
{
    (void)state;
    expect_error("redis:\n  port: 65536\n",
                 "t.yaml:2:9: redis.port: 65536 is out of range (must be between 1 and 65535)");
    expect_error("redis: {port: 0}\n",
                 "t.yaml:1:15: redis.port: 0 is out of range (must be between 1 and 65535)");
    expect_error("redis: {shards: 65537}\n",
                 "t.yaml:1:17: redis.shards: 65537 is out of range (must be between 1 and 65536)");
    expect_error("processing: {workers: 0}\n",
                 "t.yaml:1:23: processing.workers: 0 is out of range (must be between 1 and 16)");
    expect_error("processing:\n  workers: 17\n",
                 "t.yaml:2:12: processing.workers: 17 is out of range (must be between 1 and 16)");
    expect_error("processing:\n  state_cache_mb: 5000\n",
                 "t.yaml:2:19: processing.state_cache_mb: 5000 is out of range (must be between 0 "
                 "and 4096)");
    expect_error("processing: {state_cache_mb: -1}\n",
                 "t.yaml:1:30: processing.state_cache_mb: -1 is out of range (must be between 0 "
                 "and 4096)");
    expect_error("kafka: {max_message_bytes: 100}\n",
                 "t.yaml:1:28: kafka.max_message_bytes: 100 is out of range (must be between 1024 "
                 "and 1000000000)");
    expect_error("lifecycle: {at_risk: {p_alive_below: 1}}\n",
                 "t.yaml:1:38: lifecycle.at_risk.p_alive_below: 1 is out of range (must be >= 0 "
                 "and < 1)");
    expect_error("clv: {gamma_gamma: {q: 1}}\n",
                 "t.yaml:1:24: clv.gamma_gamma.q: 1 is out of range (must be > 1)");
    expect_error("clock: {idle_after: 0s}\n",
                 "t.yaml:1:21: clock.idle_after: 0s is out of range (must be between 1ms and 1d)");
    expect_error("lifecycle: {dormant_after_days: -1}\n",
                 "t.yaml:1:33: lifecycle.dormant_after_days: -1 is out of range (must be > 0 and "
                 "<= 3650)");
    expect_error("lifecycle: {churned_after_days: 50}\n",
                 "t.yaml:1:33: lifecycle.churned_after_days (50) must be greater than "
                 "lifecycle.dormant_after_days (60)");
    expect_error("lifecycle: {at_risk: {p_alive_below: 0.2}}\n",
                 "t.yaml:1:38: lifecycle.at_risk.p_alive_below needs clv.model: bgnbd (P(alive) "
                 "comes from the model)");
    expect_error("metrics: {listen: \"localhost\"}\n",
                 "t.yaml:1:19: metrics.listen: \"localhost\": expected host:port");
    expect_error("kafka: {topics: {logins: purchases}}\n",
                 "t.yaml:1:26: kafka.topics.purchases and kafka.topics.logins are both "
                 "\"purchases\": every topic must be different");
    expect_error("kafka: {topics: {visits: \"a b\"}}\n",
                 "t.yaml:1:26: kafka.topics.visits: \"a b\" is not a valid Kafka topic name (1 to "
                 "249 of A-Z a-z 0-9 . _ -)");
    expect_error("redis: {key_prefix: \"a{b}\"}\n",
                 "t.yaml:1:21: redis.key_prefix: \"a{b}\" is not a valid key prefix (at most 64 "
                 "bytes, no spaces, no '{' or '}')");
    expect_error("redis: {cluster: true}\n",
                 "t.yaml:1:18: redis.cluster is true but redis.seeds is empty");
    expect_error("kafka: {group_id: \"\"}\n", "t.yaml:1:19: kafka.group_id: must not be empty");
}

static void test_lists_out_of_range(void **state)
{
    (void)state;
    expect_error("rfm: {recency_days: [1, 2, 3]}\n",
                 "t.yaml:1:21: rfm.recency_days: expected exactly 4 cut points, got 3");
    expect_error("rfm: {monetary: [1, 2, 2, 3]}\n",
                 "t.yaml:1:24: rfm.monetary[2]: cut points must be strictly increasing");
    expect_error("tiers: {levels: [{name: a, min_spend: 1}]}\n",
                 "t.yaml:1:39: tiers.levels[0].min_spend: the first tier must start at 0");
    expect_error("tiers: {levels: [{name: a, min_spend: 0}, {name: b, min_spend: 0}]}\n",
                 "t.yaml:1:64: tiers.levels[1].min_spend: must be greater than the previous "
                 "tier's min_spend");
    expect_error("tiers: {levels: [{name: a, min_spend: 0}, {name: a, min_spend: 5}]}\n",
                 "t.yaml:1:50: tiers.levels[1].name: \"a\" is used twice");
    expect_error("tiers: {levels: []}\n",
                 "t.yaml:1:17: tiers.levels: expected 1 to 16 tiers, got 0");
    expect_error("tiers: {levels: [{name: a}]}\n", "t.yaml:1:18: tiers.levels[0]: missing "
                                                   "\"min_spend\"");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    expect_error("redis:\n  port: 1\n  host: h\n  port: 2\n",
                 "t.yaml:4:3: duplicate key \"port\" (first defined at line 2, column 3)");
    expect_error("redis: {port: 1, port: 2}\n",
                 "t.yaml:1:18: duplicate key \"port\" (first defined at line 1, column 9)");
    expect_error("log: {level: info}\nlog: {format: json}\n",
                 "t.yaml:2:1: duplicate key \"log\" (first defined at line 1, column 1)");
    expect_error("kafka:\n  properties:\n    acks: all\n    acks: 1\n",
                 "t.yaml:4:5: duplicate key \"acks\" (first defined at line 3, column 5)");
}

static void test_parse_duration(void **state)
{
    clv_ms v = -1;

    (void)state;
    assert_int_equal(config_parse_duration("500ms", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(config_parse_duration("30s", &v), 0);
    assert_int_equal(v, 30000);
    assert_int_equal(config_parse_duration("5m", &v), 0);
    assert_int_equal(v, 5 * CLV_MS_PER_MIN);
    assert_int_equal(config_parse_duration("24h", &v), 0);
    assert_int_equal(v, 24 * CLV_MS_PER_HOUR);
    assert_int_equal(config_parse_duration("7d", &v), 0);
    assert_int_equal(v, 7 * CLV_MS_PER_DAY);
    assert_int_equal(config_parse_duration("0s", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(config_parse_duration("30", &v), -1);
    assert_int_equal(config_parse_duration("-5s", &v), -1);
    assert_int_equal(config_parse_duration("1.5h", &v), -1);
    assert_int_equal(config_parse_duration("5 m", &v), -1);
    assert_int_equal(config_parse_duration("5w", &v), -1);
    assert_int_equal(config_parse_duration("s", &v), -1);
    assert_int_equal(config_parse_duration("", &v), -1);
    assert_int_equal(config_parse_duration("99999999999999999999d", &v), -1);
    assert_int_equal(config_parse_duration("9223372036854775807d", &v), -1);
}

static void test_bad_duration(void **state)
{
    (void)state;
    expect_error("clock:\n  lateness: 5\n",
                 "t.yaml:2:13: clock.lateness: duration \"5\" needs a unit (ms, s, m, h or d), "
                 "e.g. \"5s\"");
    expect_error("dedupe: {window: 1 week}\n",
                 "t.yaml:1:18: dedupe.window: bad duration \"1 week\" (write a whole number and a "
                 "unit: ms, s, m, h or d, e.g. \"500ms\", \"30s\", \"5m\", \"24h\", \"7d\")");
    expect_error("clock: {lateness: 31d}\n",
                 "t.yaml:1:19: clock.lateness: 31d is out of range (must be between 0s and 30d)");
}

static void test_syntax_error_position(void **state)
{
    (void)state;
    expect_error("kafka:\n  brokers: [a\n",
                 "t.yaml:3:1: YAML syntax error: did not find expected ',' or ']' (while parsing "
                 "a flow sequence at line 2, column 12)");
    expect_error("kafka:\n  brokers: a\n   group_id: b\n",
                 "t.yaml:3:12: YAML syntax error: mapping values are not allowed in this context");
    expect_error("kafka:\n\tbrokers: a\n",
                 "t.yaml:2:1: YAML syntax error: found character that cannot start any token "
                 "(while scanning for the next token at line 2, column 1)");
    expect_error("log: {level: info}\n---\nlog: {level: debug}\n",
                 "t.yaml:2:1: more than one YAML document: put everything in one");
}

/* ---------------------------------------------------------------------- */
/* ${ENV}, password_file                                                   */

static void test_env_expansion(void **state)
{
    struct clv_config c;

    (void)state;
    setenv("CLVD_T_BROKERS", "k1:9092,k2:9092", 1);
    setenv("CLVD_T_PORT", "6399", 1);
    setenv("CLVD_T_EMPTY", "", 1);
    load_ok("kafka:\n  brokers: ${CLVD_T_BROKERS}\n  group_id: \"g-${CLVD_T_PORT}-$${LIT}\"\n"
            "redis: {port: \"${CLVD_T_PORT}\", user: \"${CLVD_T_EMPTY}\", key_prefix: a$b}\n",
            &c);
    assert_string_equal(c.kafka.brokers, "k1:9092,k2:9092");
    assert_string_equal(c.kafka.group_id, "g-6399-${LIT}");
    assert_int_equal(c.redis.port, 6399);
    assert_string_equal(c.redis.user, "");
    assert_string_equal(c.redis.key_prefix, "a$b");
    config_free(&c);
    unsetenv("CLVD_T_BROKERS");
    unsetenv("CLVD_T_PORT");
    unsetenv("CLVD_T_EMPTY");
}

static void test_env_errors(void **state)
{
    (void)state;
    unsetenv("CLVD_T_UNSET");
    expect_error("log: {level: info}\nkafka:\n  brokers: \"x,${CLVD_T_UNSET}\"\n",
                 "t.yaml:3:12: kafka.brokers: environment variable \"CLVD_T_UNSET\" is not set");
    expect_error("kafka: {brokers: \"${CLVD\"}\n",
                 "t.yaml:1:18: kafka.brokers: unterminated \"${\" (write \"$${\" for a literal "
                 "\"${\")");
    expect_error("kafka: {brokers: \"${A:-b}\"}\n",
                 "t.yaml:1:18: kafka.brokers: \"${A:-b}\" is not a valid reference: write ${NAME} "
                 "with letters, digits and _ only");
    setenv("CLVD_T_PORT", "http", 1);
    expect_error("redis:\n  port: ${CLVD_T_PORT}\n",
                 "t.yaml:2:9: redis.port: expected an integer, got \"http\"");
    unsetenv("CLVD_T_PORT");
}

static void test_password_file(void **state)
{
    char dir[] = "/tmp/clvd-test-XXXXXX", secret[64], yaml_path[64], err[ERRLEN] = "";
    struct clv_config c;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(secret, sizeof secret, "%s/secret", dir);
    snprintf(yaml_path, sizeof yaml_path, "%s/clvd.yaml", dir);
    write_file(secret, "s3cret\n");
    /* A relative password_file is read next to the config file. */
    write_file(yaml_path, "redis:\n  password_file: secret\n");
    if (config_load(yaml_path, &c, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(c.redis.password, "s3cret");
    assert_string_equal(c.redis.password_file, "secret");
    config_free(&c);

    write_file(yaml_path, "redis:\n  password: x\n  password_file: secret\n");
    assert_int_equal(config_load(yaml_path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "clvd.yaml:3:18: redis.password and redis.password_file are both "
                                "set: use one"));

    write_file(yaml_path, "redis:\n  password_file: missing\n");
    assert_int_equal(config_load(yaml_path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "clvd.yaml:2:3: redis.password_file: cannot read \""));
    assert_non_null(strstr(err, "/missing\": No such file or directory"));
    unlink(secret);
    unlink(yaml_path);
    rmdir(dir);
}

static void test_missing_config_file(void **state)
{
    struct clv_config c;
    char err[ERRLEN];

    (void)state;
    assert_int_equal(config_load("/nonexistent/clvd.yaml", &c, err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/clvd.yaml: cannot read: No such file or directory");
}

/* ---------------------------------------------------------------------- */
/* clv.cac, alerts                                                         */

static void test_cac_number_or_map(void **state)
{
    struct clv_config c;

    (void)state;
    load_ok("clv: {cac: 12.5}\n", &c);
    assert_true(c.clv.cac_default == 12.5);
    assert_int_equal(c.clv.ncac_by_channel, 0);
    config_free(&c);

    load_ok("clv:\n  cac:\n    default: 20\n    by_channel: {search: 35, email: 0}\n", &c);
    assert_true(c.clv.cac_default == 20);
    assert_int_equal(c.clv.ncac_by_channel, 2);
    assert_string_equal(c.clv.cac_by_channel[0].channel, "search");
    assert_true(c.clv.cac_by_channel[0].cac == 35);
    assert_string_equal(c.clv.cac_by_channel[1].channel, "email");
    assert_true(c.clv.cac_by_channel[1].cac == 0);
    config_free(&c);

    load_ok("clv: {cac: {by_channel: {search: 35}}}\n", &c);
    assert_true(c.clv.cac_default == 0);
    assert_int_equal(c.clv.ncac_by_channel, 1);
    config_free(&c);

    expect_error("clv: {cac: -1}\n", "t.yaml:1:12: clv.cac: -1 is out of range (must be >= 0)");
    expect_error("clv: {cac: [1]}\n", "t.yaml:1:12: clv.cac: expected a number or {default: N, "
                                      "by_channel: {NAME: N}}, got a list");
    expect_error("clv: {cac: {default: 1, by_chanel: {}}}\n",
                 "t.yaml:1:25: unknown key \"by_chanel\" (did you mean \"by_channel\"?)");
    expect_error("clv: {cac: {by_channel: {search: x}}}\n",
                 "t.yaml:1:34: clv.cac.by_channel.search: expected a number, got \"x\"");
}

static void test_alerts(void **state)
{
    struct clv_config c;

    (void)state;
    load_ok("alerts:\n"
            "  - name: churn_spike\n"
            "    metric: churn_rate      # comment\n"
            "    above: 0.02\n"
            "  - {name: back, metric: stage_share.reactivated, above: 0.5, hysteresis: 0}\n",
            &c);
    assert_int_equal(c.nalerts, 2);
    assert_string_equal(c.alerts[0].name, "churn_spike");
    assert_int_equal(c.alerts[0].metric, CLV_ALERT_CHURN_RATE);
    assert_int_equal(c.alerts[0].window, 24 * CLV_MS_PER_HOUR);
    assert_true(c.alerts[0].above == 0.02);
    assert_true(c.alerts[0].hysteresis == 0.1);
    assert_int_equal(c.alerts[1].metric, CLV_ALERT_STAGE_SHARE);
    assert_int_equal(c.alerts[1].stage, 7);
    assert_true(c.alerts[1].hysteresis == 0);
    config_free(&c);

    load_ok("alerts: [{name: p, metric: stage_share.prospect, above: 0.5}]\n", &c);
    assert_int_equal(c.alerts[0].stage, 0);
    config_free(&c);

    expect_error("alerts: [{name: a, metric: churn_rate}]\n",
                 "t.yaml:1:10: alerts[0]: missing \"above\"");
    expect_error("alerts: [{name: a, metric: stage_share.atrisk, above: 0.1}]\n",
                 "t.yaml:1:28: alerts[0].metric: unknown metric \"stage_share.atrisk\" (did you "
                 "mean \"stage_share.at_risk\"?)");
    expect_error("alerts: [{name: a, metric: stage_share.dormant, above: 0.1, window: 1h}]\n",
                 "t.yaml:1:69: alerts[0].window: only churn_rate takes a window");
    expect_error("alerts: [{name: a, metric: churn_rate, above: 0.1, hysteresis: 1}]\n",
                 "t.yaml:1:64: alerts[0].hysteresis: 1 is out of range (must be >= 0 and < 1)");
    expect_error("alerts: [{name: a, metric: churn_rate, above: 1.5}]\n",
                 "t.yaml:1:47: alerts[0].above: 1.5 is out of range (must be between 0 and 1)");
    expect_error("alerts: {name: a}\n", "t.yaml:1:9: alerts: expected a list of {name, metric, "
                                        "above, ...}, got a mapping");
}

/* ---------------------------------------------------------------------- */
/* Printing                                                                */

static void assert_round_trips(const char *yaml)
{
    struct clv_config a, b;
    char *text, *again;

    load_ok(yaml, &a);
    text = print_to_string(&a);
    load_ok(text, &b);
    again = print_to_string(&b);
    assert_string_equal(again, text);
    assert_string_equal(b.redis.password, a.redis.password);
    free(text);
    free(again);
    config_free(&a);
    config_free(&b);
}

static void test_print_round_trip(void **state)
{
    (void)state;
    assert_round_trips("");
    /* Quotes, backslashes and a literal "${" in a string; sub-second and
     * odd durations; doubles that need all 17 digits. */
    assert_round_trips("kafka: {brokers: \"we\\\"ird\\\\$${HOME}\", properties: {acks: all}}\n"
                       "redis: {seeds: [\"a:1\"], cluster: true, host: h}\n"
                       "clock: {lateness: 1500ms, idle_after: 90m}\n"
                       "lifecycle: {dormant_after_days: 0.1, churned_after_days: "
                       "0.30000000000000004}\n"
                       "clv: {model: bgnbd, bgnbd: {r: 1e-7}, cac: {default: 1, by_channel: {x: "
                       "2}}}\n");
    /* Unicode line breaks must be escaped; property keys are never expanded
     * so their "${" stays as is (both found by fuzzing). */
    assert_round_trips("kafka: {properties: {\"a${b}\": \"\\u2028x\\u0085y\\uFEFF\\t\"}}\n"
                       "redis: {user: \"\\x01\\u00e9t\u00e9\"}\n");
}

static void test_print_round_trip_every_key(void **state)
{
    struct clv_config a, b;
    char *text, *again;

    (void)state;
    load_ok(every_key_block, &a);
    text = print_to_string(&a);
    load_ok(text, &b);
    again = print_to_string(&b);
    assert_string_equal(again, text);
    /* The masked password is the only value that does not survive. */
    assert_string_equal(b.redis.password, "***");
    free(b.redis.password);
    b.redis.password = strdup("pw");
    assert_kafka_redis_set(&b);
    assert_clock_lifecycle_set(&b);
    assert_model_rest_set(&b);
    free(text);
    free(again);
    config_free(&a);
    config_free(&b);
}

static void test_print_masks_secrets(void **state)
{
    struct clv_config c;
    char *text;

    (void)state;
    load_ok("kafka:\n  properties:\n"
            "    sasl.password: hunter2\n"
            "    ssl.key.password: keypw\n"
            "    sasl.oauthbearer.config: \"principal=tok3n\"\n"
            "    sasl.oauthbearer.client.secret: cs\n"
            "    sasl.username: alice\n"
            "redis: {password: s3cret-pw}\n",
            &c);
    text = print_to_string(&c);
    assert_null(strstr(text, "hunter2"));
    assert_null(strstr(text, "keypw"));
    assert_null(strstr(text, "tok3n"));
    assert_null(strstr(text, "\"cs\""));
    assert_null(strstr(text, "s3cret-pw"));
    assert_non_null(strstr(text, "  password: \"***\"\n"));
    assert_non_null(strstr(text, "    \"sasl.password\": \"***\"\n"));
    assert_non_null(strstr(text, "    \"sasl.username\": \"alice\"\n"));
    free(text);
    config_free(&c);
}

/* ---------------------------------------------------------------------- */
/* SIGHUP                                                                  */

static void expect_reload(const char *cur_yaml, const char *next_yaml, int rc, const char *msg)
{
    struct clv_config cur, next;
    char err[ERRLEN] = "";

    load_ok(cur_yaml, &cur);
    load_ok(next_yaml, &next);
    assert_int_equal(config_reloadable(&cur, &next, err, sizeof err), rc);
    if (msg != NULL)
        assert_string_equal(err, msg);
    config_free(&cur);
    config_free(&next);
}

static void test_reloadable(void **state)
{
    (void)state;
    expect_reload("", "", 0, NULL);
    expect_reload("", "lifecycle: {dormant_after_days: 30}\n", 0, NULL);
    expect_reload("", every_key_block, -1, "kafka.brokers changed: needs a restart");
    expect_reload("", "kafka: {brokers: \"other:9092\"}\n", -1,
                  "kafka.brokers changed: needs a restart");
    /* Everything below lifecycle, dedupe, clv, rfm, tiers, alerts and
     * log.level may change live. */
    expect_reload("",
                  "lifecycle: {loyal: {min_purchases: 3}}\ndedupe: {window: 1d, max_ids: 8}\n"
                  "clv: {model: bgnbd, cac: {by_channel: {a: 1}}}\nrfm: {frequency: [1, 2, 3, 4]}\n"
                  "tiers: {window_days: 0, levels: [{name: x, min_spend: 0}]}\n"
                  "alerts: [{name: a, metric: churn_rate, above: 0.1}]\nlog: {level: debug}\n",
                  0, NULL);
    expect_reload("", "log: {format: json}\n", -1, "log.format changed: needs a restart");
    expect_reload("", "metrics: {listen: \"\"}\n", -1, "metrics.listen changed: needs a restart");
    expect_reload("", "clock: {lateness: 1m}\n", -1, "clock.lateness changed: needs a restart");
    expect_reload("", "processing: {workers: 3}\n", -1,
                  "processing.workers changed: needs a restart");
    expect_reload("", "redis: {password: x}\n", -1, "redis.password changed: needs a restart");
    expect_reload("kafka: {properties: {acks: all}}\n", "kafka: {properties: {acks: \"1\"}}\n", -1,
                  "kafka.properties changed: needs a restart");
    expect_reload("redis: {cluster: true, seeds: [\"a:1\"]}\n",
                  "redis: {cluster: true, seeds: [\"b:1\"]}\n", -1,
                  "redis.seeds changed: needs a restart");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_defaults_model_and_tiers),
        cmocka_unit_test(test_shipped_config_equals_defaults),
        cmocka_unit_test(test_spec_example_equals_defaults),
        cmocka_unit_test(test_empty_and_null_sections_are_defaults),
        cmocka_unit_test(test_every_key_block_style),
        cmocka_unit_test(test_every_key_flow_style),
        cmocka_unit_test(test_scalar_spellings),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_lists_out_of_range),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_bad_duration),
        cmocka_unit_test(test_syntax_error_position),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_password_file),
        cmocka_unit_test(test_missing_config_file),
        cmocka_unit_test(test_cac_number_or_map),
        cmocka_unit_test(test_alerts),
        cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_print_round_trip_every_key),
        cmocka_unit_test(test_print_masks_secrets),
        cmocka_unit_test(test_reloadable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

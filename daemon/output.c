/* output.c -- message rendering; see output.h. */
#include "output.h"

#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

const char *output_topic_name(const struct clv_kafka_topics *t, enum clv_out_topic which)
{
    switch (which) {
    case CLV_OUT_STAGE_CHANGES:
        return t->stage_changes;
    case CLV_OUT_CHURN_WARNINGS:
        return t->churn_warnings;
    case CLV_OUT_WIN_BACK:
        return t->win_back;
    case CLV_OUT_TIER_CHANGES:
        return t->tier_changes;
    case CLV_OUT_ALERTS:
        return t->alerts;
    case CLV_OUT_DEAD_LETTER:
        return t->dead_letter;
    default:
        return NULL;
    }
}

static void put_time(struct clv_sbuf *b, clv_ms t)
{
    char ts[32];

    rfc3339_format(t, ts, sizeof(ts));
    sbuf_json_str(b, ts, strlen(ts));
}

static void put_time_or_null(struct clv_sbuf *b, clv_ms t, int present)
{
    if (present)
        put_time(b, t);
    else
        sbuf_puts(b, "null");
}

static void put_num_or_null(struct clv_sbuf *b, double v, int decimals, int present)
{
    if (present)
        sbuf_json_num(b, v, decimals);
    else
        sbuf_puts(b, "null");
}

static void put_key(struct clv_sbuf *b, const char *key)
{
    sbuf_append(b, ",\"", 2);
    sbuf_puts(b, key);
    sbuf_append(b, "\":", 2);
}

static void put_int(struct clv_sbuf *b, const char *key, long long v)
{
    put_key(b, key);
    sbuf_int(b, v);
}

static void put_customer(struct clv_sbuf *b, const struct clv_snapshot *s, const char *channel,
                         const struct clv_tier *tiers, int ntiers)
{
    int bought = s->purchases > 0;
    const char *tier = s->tier >= 0 && s->tier < ntiers ? tiers[s->tier].name : "";

    sbuf_puts(b, "{\"first_purchase_at\":");
    put_time_or_null(b, s->first_purchase, bought);
    put_key(b, "last_purchase_at");
    put_time_or_null(b, s->last_purchase, bought);
    put_key(b, "last_activity_at");
    put_time(b, s->last_activity);
    put_int(b, "purchases", s->purchases);
    put_key(b, "revenue");
    sbuf_json_num(b, s->revenue, 2);
    put_key(b, "avg_order_value");
    sbuf_json_num(b, s->avg_order_value, 2);
    put_key(b, "recency_days");
    put_num_or_null(b, s->recency_days, 1, bought);
    put_key(b, "tenure_days");
    sbuf_json_num(b, s->tenure_days, 1);
    put_int(b, "active_days_30d", s->active_days_30d);
    put_int(b, "purchases_90d", s->purchases_90d);
    put_key(b, "tier");
    sbuf_json_str(b, tier, strlen(tier));
    sbuf_printf(b, ",\"rfm\":\"%03d\"", s->rfm);
    put_key(b, "channel");
    if (channel[0])
        sbuf_json_str(b, channel, strlen(channel));
    else
        sbuf_puts(b, "null");
    put_key(b, "clv_historical");
    sbuf_json_num(b, s->clv_historical, 2);
    put_key(b, "clv_predicted");
    put_num_or_null(b, s->clv_predicted, 2, s->model_on);
    put_key(b, "p_alive");
    put_num_or_null(b, s->p_alive, 4, s->model_on);
    put_key(b, "expected_purchases_90d");
    put_num_or_null(b, s->expected_purchases_90d, 3, s->model_on);
    sbuf_puts(b, "}");
}

static const char *stage_or_tier(const struct clv_transition *t, int v,
                                 const struct clv_tier *tiers, int ntiers)
{
    if (t->kind == CLV_TRANSITION_TIER)
        return v >= 0 && v < ntiers ? tiers[v].name : NULL;
    return stage_name(v);
}

/* The envelope shared by every customer message, without its closing brace. */
static void put_envelope(struct clv_sbuf *b, const char *schema, const struct clv_transition *t,
                         const char *id, size_t idlen, const struct clv_tier *tiers, int ntiers,
                         clv_ms emitted_at)
{
    const char *from = stage_or_tier(t, t->from, tiers, ntiers);
    const char *to = stage_or_tier(t, t->to, tiers, ntiers);

    sbuf_puts(b, "{\"schema\":\"");
    sbuf_puts(b, schema);
    sbuf_puts(b, "\",\"event_id\":");
    sbuf_json_str(b, id, idlen);
    b->len--; /* reopen the string to append ":<seq>" */
    sbuf_append(b, ":", 1);
    sbuf_int(b, t->seq);
    sbuf_append(b, "\"", 1);
    put_key(b, "customer_id");
    sbuf_json_str(b, id, idlen);
    put_key(b, "from");
    if (from)
        sbuf_json_str(b, from, strlen(from));
    else
        sbuf_puts(b, "null");
    put_key(b, "to");
    sbuf_json_str(b, to, strlen(to));
    put_key(b, "reason");
    sbuf_json_str(b, reason_name(t->reason), strlen(reason_name(t->reason)));
    put_key(b, "at");
    put_time(b, t->at);
    put_key(b, "emitted_at");
    put_time(b, emitted_at);
}

static const char *win_back_kind(const struct clv_transition *t)
{
    if (t->kind != CLV_TRANSITION_STAGE || !t->purchased)
        return NULL;
    if (t->reason == CLV_REASON_WON_BACK)
        return "won_back";
    if (t->reason == CLV_REASON_RETURNED)
        return "returned";
    if (t->to == CLV_STAGE_DORMANT)
        return "dormant";
    if (t->to == CLV_STAGE_CHURNED)
        return "churned";
    return NULL;
}

static void begin_msg(struct clv_sbuf *b, struct clv_outmsg *m, enum clv_out_topic topic)
{
    m->topic = topic;
    m->off = b->len;
}

static void end_msg(struct clv_sbuf *b, struct clv_outmsg *m)
{
    m->len = b->len - m->off;
}

int output_transition(const struct clv_transition *t, const char *id, size_t idlen,
                      const struct clv_tier *tiers, int ntiers, clv_ms emitted_at,
                      struct clv_sbuf *b, struct clv_outmsg *msgs)
{
    const char *channel = t->snap.channel;
    const char *kind = win_back_kind(t);
    int n = 0;

    if (t->kind == CLV_TRANSITION_TIER) {
        begin_msg(b, &msgs[n], CLV_OUT_TIER_CHANGES);
        put_envelope(b, "clvd.tier_change.v1", t, id, idlen, tiers, ntiers, emitted_at);
        sbuf_printf(b, ",\"direction\":\"%s\"",
                    t->reason == CLV_REASON_TIER_UPGRADE ? "upgrade" : "downgrade");
        put_key(b, "customer");
        put_customer(b, &t->snap, channel, tiers, ntiers);
        sbuf_puts(b, "}");
        end_msg(b, &msgs[n++]);
        return n;
    }
    begin_msg(b, &msgs[n], CLV_OUT_STAGE_CHANGES);
    put_envelope(b, "clvd.stage_change.v1", t, id, idlen, tiers, ntiers, emitted_at);
    put_key(b, "customer");
    put_customer(b, &t->snap, channel, tiers, ntiers);
    sbuf_puts(b, "}");
    end_msg(b, &msgs[n++]);
    if (t->to == CLV_STAGE_AT_RISK) {
        begin_msg(b, &msgs[n], CLV_OUT_CHURN_WARNINGS);
        put_envelope(b, "clvd.churn_warning.v1", t, id, idlen, tiers, ntiers, emitted_at);
        put_key(b, "risk");
        sbuf_json_num(b, t->snap.risk, 4);
        put_key(b, "clv_at_stake");
        sbuf_json_num(b, t->snap.clv_at_stake, 2);
        put_key(b, "customer");
        put_customer(b, &t->snap, channel, tiers, ntiers);
        sbuf_puts(b, "}");
        end_msg(b, &msgs[n++]);
    }
    if (kind) { /* "returned" enters at_risk: both a warning and a trigger */
        begin_msg(b, &msgs[n], CLV_OUT_WIN_BACK);
        put_envelope(b, "clvd.win_back.v1", t, id, idlen, tiers, ntiers, emitted_at);
        sbuf_printf(b, ",\"kind\":\"%s\"", kind);
        put_key(b, "customer");
        put_customer(b, &t->snap, channel, tiers, ntiers);
        sbuf_puts(b, "}");
        end_msg(b, &msgs[n++]);
    }
    return n;
}

void output_dead_letter(struct clv_sbuf *b, const char *reason, const char *topic,
                        int32_t partition, int64_t offset, const void *key, size_t keylen,
                        const void *value, size_t len, clv_ms emitted_at)
{
    sbuf_puts(b, "{\"schema\":\"clvd.dead_letter.v1\",\"reason\":");
    sbuf_json_str(b, reason, strlen(reason));
    put_key(b, "topic");
    sbuf_json_str(b, topic, strlen(topic));
    sbuf_printf(b, ",\"partition\":%d,\"offset\":%lld", (int)partition, (long long)offset);
    put_key(b, "key");
    if (key == NULL)
        sbuf_puts(b, "null");
    else if (utf8_valid(key, keylen))
        sbuf_json_str(b, key, keylen);
    else
        sbuf_puts(b, "null");
    if (utf8_valid(value, len)) {
        put_key(b, "value");
        sbuf_json_str(b, value, len);
    } else {
        char *enc = malloc(base64_len(len) + 1);
        if (enc == NULL)
            abort();
        base64_encode(value, len, enc);
        put_key(b, "value_base64");
        sbuf_json_str(b, enc, strlen(enc));
        free(enc);
    }
    put_key(b, "emitted_at");
    put_time(b, emitted_at);
    sbuf_puts(b, "}");
}

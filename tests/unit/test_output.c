/* test_output.c -- the JSON messages of SPEC section 6 and the dead-letter
 * record of section 3, checked with a small strict JSON parser (RFC 8259,
 * strict UTF-8, paired surrogates, no duplicate keys, nothing trailing). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "customer.h"
#include "output.h"
#include "sbuf.h"
#include "stages.h"
#include "timeutil.h"

#define D0 1767225600000LL /* 2026-01-01T00:00:00.000Z */
#define DAY CLV_MS_PER_DAY
#define HOUR CLV_MS_PER_HOUR
#define T(d, h) (D0 + (clv_ms)(d)*DAY + (clv_ms)(h)*HOUR)
#define T_2026_03_02_10 1772445600000LL /* 2026-03-02T10:00:00.000Z */
#define MAXMSG 8

enum { PUR = CLV_EV_PURCHASE, LOG = CLV_EV_LOGIN, VIS = CLV_EV_VISIT };

/* ======================================================================
 * A strict JSON parser into a small tree
 * ====================================================================== */

enum jtype { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
    enum jtype t;
    double num;
    char *s; /* J_STR: decoded bytes (NUL-terminated, may hold NULs); J_NUM: the literal */
    size_t slen;
    struct jv *items; /* J_ARR, J_OBJ values */
    char **keys;      /* J_OBJ */
    size_t *klens;
    size_t n;
};

struct jp {
    const unsigned char *p, *end;
    const char *err;
    int depth;
};

static void jfree(struct jv *v)
{
    for (size_t i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->klens);
    free(v->s);
    memset(v, 0, sizeof(*v));
}

static int jfail(struct jp *p, const char *why)
{
    if (p->err == NULL)
        p->err = why;
    return -1;
}

static void jws(struct jp *p)
{
    while (p->p < p->end && (*p->p == ' ' || *p->p == '\t' || *p->p == '\n' || *p->p == '\r'))
        p->p++;
}

struct growbuf {
    char *b;
    size_t len, cap;
};

static void gb_put(struct growbuf *g, const void *src, size_t n)
{
    if (g->len + n + 1 > g->cap) {
        g->cap = (g->len + n + 1) * 2;
        g->b = realloc(g->b, g->cap);
        if (g->b == NULL)
            abort();
    }
    memcpy(g->b + g->len, src, n);
    g->len += n;
    g->b[g->len] = '\0';
}

/* Length of one well-formed UTF-8 sequence at s (RFC 3629), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

static int hex4(struct jp *p, unsigned *out)
{
    unsigned v = 0;

    if (p->end - p->p < 4)
        return jfail(p, "short \\u escape");
    for (int i = 0; i < 4; i++) {
        unsigned char c = *p->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return jfail(p, "bad hex digit in \\u escape");
    }
    *out = v;
    return 0;
}

static void put_utf8(struct growbuf *g, unsigned cp)
{
    unsigned char b[4];
    size_t n;

    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    gb_put(g, b, n);
}

static int jstring(struct jp *p, char **out, size_t *outlen)
{
    struct growbuf g = {NULL, 0, 0};

    p->p++; /* opening quote */
    gb_put(&g, "", 0);
    for (;;) {
        unsigned char c;

        if (p->p >= p->end) {
            free(g.b);
            return jfail(p, "unterminated string");
        }
        c = *p->p;
        if (c == '"') {
            p->p++;
            break;
        }
        if (c < 0x20) {
            free(g.b);
            return jfail(p, "raw control character in string");
        }
        if (c == '\\') {
            unsigned char e;

            if (p->end - p->p < 2) {
                free(g.b);
                return jfail(p, "unterminated escape");
            }
            e = p->p[1];
            p->p += 2;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                gb_put(&g, &e, 1);
                break;
            case 'b':
                gb_put(&g, "\b", 1);
                break;
            case 'f':
                gb_put(&g, "\f", 1);
                break;
            case 'n':
                gb_put(&g, "\n", 1);
                break;
            case 'r':
                gb_put(&g, "\r", 1);
                break;
            case 't':
                gb_put(&g, "\t", 1);
                break;
            case 'u': {
                unsigned cp, lo;

                if (hex4(p, &cp) != 0) {
                    free(g.b);
                    return -1;
                }
                if (cp >= 0xdc00 && cp <= 0xdfff) {
                    free(g.b);
                    return jfail(p, "lone low surrogate");
                }
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (p->end - p->p < 6 || p->p[0] != '\\' || p->p[1] != 'u') {
                        free(g.b);
                        return jfail(p, "unpaired high surrogate");
                    }
                    p->p += 2;
                    if (hex4(p, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
                        free(g.b);
                        return jfail(p, "bad low surrogate");
                    }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                put_utf8(&g, cp);
                break;
            }
            default:
                free(g.b);
                return jfail(p, "bad escape");
            }
            continue;
        }
        {
            size_t k = utf8_len(p->p, (size_t)(p->end - p->p));
            if (k == 0) {
                free(g.b);
                return jfail(p, "invalid UTF-8 in string");
            }
            gb_put(&g, p->p, k);
            p->p += k;
        }
    }
    *out = g.b;
    *outlen = g.len;
    return 0;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int jnumber(struct jp *p, struct jv *v)
{
    const unsigned char *s = p->p;

    if (p->p < p->end && *p->p == '-')
        p->p++;
    if (p->p >= p->end || !is_digit(*p->p))
        return jfail(p, "bad number");
    if (*p->p == '0') {
        p->p++;
        if (p->p < p->end && is_digit(*p->p))
            return jfail(p, "leading zero");
    } else {
        while (p->p < p->end && is_digit(*p->p))
            p->p++;
    }
    if (p->p < p->end && *p->p == '.') {
        p->p++;
        if (p->p >= p->end || !is_digit(*p->p))
            return jfail(p, "no digit after the point");
        while (p->p < p->end && is_digit(*p->p))
            p->p++;
    }
    if (p->p < p->end && (*p->p == 'e' || *p->p == 'E')) {
        p->p++;
        if (p->p < p->end && (*p->p == '+' || *p->p == '-'))
            p->p++;
        if (p->p >= p->end || !is_digit(*p->p))
            return jfail(p, "bad exponent");
        while (p->p < p->end && is_digit(*p->p))
            p->p++;
    }
    v->t = J_NUM;
    v->slen = (size_t)(p->p - s);
    v->s = malloc(v->slen + 1);
    if (v->s == NULL)
        abort();
    memcpy(v->s, s, v->slen);
    v->s[v->slen] = '\0';
    v->num = strtod(v->s, NULL);
    return 0;
}

static int jvalue(struct jp *p, struct jv *v);

static int jliteral(struct jp *p, const char *lit, enum jtype t, struct jv *v)
{
    size_t n = strlen(lit);

    if ((size_t)(p->end - p->p) < n || memcmp(p->p, lit, n) != 0)
        return jfail(p, "bad literal");
    p->p += n;
    v->t = t;
    return 0;
}

static void jpush(struct jv *v, size_t *cap)
{
    if (v->n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        v->items = realloc(v->items, *cap * sizeof(*v->items));
        if (v->t == J_OBJ) {
            v->keys = realloc(v->keys, *cap * sizeof(*v->keys));
            v->klens = realloc(v->klens, *cap * sizeof(*v->klens));
            if (v->keys == NULL || v->klens == NULL)
                abort();
        }
        if (v->items == NULL)
            abort();
    }
    memset(&v->items[v->n], 0, sizeof(v->items[0]));
    if (v->t == J_OBJ)
        v->keys[v->n] = NULL;
}

static int jcontainer(struct jp *p, struct jv *v, int obj)
{
    size_t cap = 0;

    v->t = obj ? J_OBJ : J_ARR;
    if (++p->depth > 64)
        return jfail(p, "too deep");
    p->p++;
    jws(p);
    if (p->p < p->end && *p->p == (obj ? '}' : ']')) {
        p->p++;
        p->depth--;
        return 0;
    }
    for (;;) {
        jws(p);
        jpush(v, &cap);
        if (obj) {
            if (p->p >= p->end || *p->p != '"')
                return jfail(p, "object key is not a string");
            if (jstring(p, &v->keys[v->n], &v->klens[v->n]) != 0)
                return -1;
            for (size_t i = 0; i < v->n; i++)
                if (v->klens[i] == v->klens[v->n] &&
                    memcmp(v->keys[i], v->keys[v->n], v->klens[i]) == 0) {
                    free(v->keys[v->n]);
                    v->keys[v->n] = NULL;
                    return jfail(p, "duplicate key");
                }
            jws(p);
            if (p->p >= p->end || *p->p != ':') {
                free(v->keys[v->n]);
                v->keys[v->n] = NULL;
                return jfail(p, "missing ':'");
            }
            p->p++;
        }
        v->n++;
        if (jvalue(p, &v->items[v->n - 1]) != 0)
            return -1;
        jws(p);
        if (p->p < p->end && *p->p == ',') {
            p->p++;
            continue;
        }
        if (p->p < p->end && *p->p == (obj ? '}' : ']')) {
            p->p++;
            p->depth--;
            return 0;
        }
        return jfail(p, "missing ',' or closing bracket");
    }
}

static int jvalue(struct jp *p, struct jv *v)
{
    jws(p);
    if (p->p >= p->end)
        return jfail(p, "unexpected end");
    switch (*p->p) {
    case '{':
        return jcontainer(p, v, 1);
    case '[':
        return jcontainer(p, v, 0);
    case '"':
        v->t = J_STR;
        return jstring(p, &v->s, &v->slen);
    case 'n':
        return jliteral(p, "null", J_NULL, v);
    case 't':
        return jliteral(p, "true", J_TRUE, v);
    case 'f':
        return jliteral(p, "false", J_FALSE, v);
    default:
        return jnumber(p, v);
    }
}

/* Parse exactly one JSON text; 0 or -1 with *err set. */
static int json_parse(const char *buf, size_t len, struct jv *out, const char **err)
{
    struct jp p = {(const unsigned char *)buf, (const unsigned char *)buf + len, NULL, 0};

    memset(out, 0, sizeof(*out));
    if (jvalue(&p, out) == 0) {
        jws(&p);
        if (p.p == p.end)
            return 0;
        jfail(&p, "trailing bytes");
    }
    *err = p.err;
    jfree(out);
    return -1;
}

static const struct jv *jget(const struct jv *o, const char *key)
{
    if (o == NULL || o->t != J_OBJ)
        return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (o->klens[i] == strlen(key) && memcmp(o->keys[i], key, o->klens[i]) == 0)
            return &o->items[i];
    return NULL;
}

/* ---- assertions on parsed messages ------------------------------------- */

static const struct jv *need(const struct jv *o, const char *key, enum jtype t, int line)
{
    const struct jv *v = jget(o, key);

    if (v == NULL)
        fail_msg("line %d: no \"%s\"", line, key);
    if (v->t != t)
        fail_msg("line %d: \"%s\" has type %d, want %d", line, key, (int)v->t, (int)t);
    return v;
}

static void expect_str_at(const struct jv *o, const char *key, const char *want, size_t wlen,
                          int line)
{
    const struct jv *v = need(o, key, J_STR, line);

    if (v->slen != wlen || memcmp(v->s, want, wlen) != 0)
        fail_msg("line %d: \"%s\" is \"%s\", want \"%s\"", line, key, v->s, want);
}

static void expect_num_at(const struct jv *o, const char *key, double want, int line)
{
    const struct jv *v = need(o, key, J_NUM, line);

    if (!(fabs(v->num - want) <= 1e-9 * (1 + fabs(want))))
        fail_msg("line %d: \"%s\" is %s, want %.10g", line, key, v->s, want);
}

static void expect_null_at(const struct jv *o, const char *key, int line)
{
    need(o, key, J_NULL, line);
}

#define EXPECT_STR(o, k, w) expect_str_at((o), (k), (w), strlen(w), __LINE__)
#define EXPECT_NUM(o, k, w) expect_num_at((o), (k), (w), __LINE__)
#define EXPECT_NULL(o, k) expect_null_at((o), (k), __LINE__)
#define NEED(o, k, t) need((o), (k), (t), __LINE__)

/* ======================================================================
 * Fixtures
 * ====================================================================== */

static struct clv_config g_cfg;
static struct clv_rules g_rules;
static int g_evno;

static int group_setup(void **state)
{
    char err[CLV_ERRLEN];

    (void)state;
    if (config_defaults(&g_cfg, err, sizeof(err)) != 0)
        return -1;
    rules_from_config(&g_rules, &g_cfg);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    config_free(&g_cfg);
    return 0;
}

static void apply(struct clv_customer *c, int type, clv_ms ts, double amount,
                  struct clv_transitions *out)
{
    struct clv_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = (enum clv_event_type)type;
    ev.ts = ts;
    ev.amount = amount;
    ev.event_id_len = (size_t)snprintf(ev.event_id, sizeof(ev.event_id), "e%d", ++g_evno);
    ev.customer_id_len = (size_t)snprintf(ev.customer_id, sizeof(ev.customer_id), "c42");
    out->n = 0;
    stages_apply_event(c, &g_rules, &ev, out);
}

static void advance(struct clv_customer *c, clv_ms until, struct clv_transitions *out)
{
    out->n = 0;
    stages_advance(c, &g_rules, until, out);
}

/* Render one transition; every message must parse.  Returns the count. */
static int render(const struct clv_transition *t, const char *id, size_t idlen, clv_ms emitted,
                  struct clv_sbuf *b, struct clv_outmsg *msgs, struct jv *parsed)
{
    int n;

    memset(msgs, 0, MAXMSG * sizeof(*msgs));
    n = output_transition(t, id, idlen, g_cfg.tiers, g_cfg.ntiers, emitted, b, msgs);
    assert_true(n >= 1 && n <= MAXMSG);
    for (int i = 0; i < n; i++) {
        const char *err = NULL;

        assert_true(msgs[i].off + msgs[i].len <= b->len);
        if (json_parse(b->buf + msgs[i].off, msgs[i].len, &parsed[i], &err) != 0)
            fail_msg("message %d is not valid JSON (%s): %.*s", i, err, (int)msgs[i].len,
                     b->buf + msgs[i].off);
        assert_int_equal(parsed[i].t, J_OBJ);
    }
    return n;
}

static void free_parsed(struct jv *parsed, int n)
{
    for (int i = 0; i < n; i++)
        jfree(&parsed[i]);
}

static void fmt_time(clv_ms t, char *buf)
{
    assert_int_equal(rfc3339_format(t, buf, 32), 24);
}

static int is_rfc3339_ms_utc(const char *s, size_t n)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";

    if (n != 24)
        return 0;
    for (size_t i = 0; i < 24; i++)
        if (pat[i] == 'd' ? !is_digit((unsigned char)s[i]) : s[i] != pat[i])
            return 0;
    return 1;
}

/* The envelope and the customer object every customer message carries. */
static void check_envelope(const struct jv *m, const char *schema, const struct clv_transition *t,
                           const char *id, size_t idlen, clv_ms emitted, int line)
{
    char want[160], ts[32];
    int wn;
    const struct jv *v, *cust;
    static const char *const customer_keys[] = {"first_purchase_at",
                                                "last_purchase_at",
                                                "last_activity_at",
                                                "purchases",
                                                "revenue",
                                                "avg_order_value",
                                                "recency_days",
                                                "tenure_days",
                                                "active_days_30d",
                                                "purchases_90d",
                                                "tier",
                                                "rfm",
                                                "channel",
                                                "clv_historical",
                                                "clv_predicted",
                                                "p_alive",
                                                "expected_purchases_90d"};

    expect_str_at(m, "schema", schema, strlen(schema), line);
    memcpy(want, id, idlen);
    wn = (int)idlen + snprintf(want + idlen, sizeof(want) - idlen, ":%u", t->seq);
    expect_str_at(m, "event_id", want, (size_t)wn, line);
    expect_str_at(m, "customer_id", id, idlen, line);
    fmt_time(t->at, ts);
    expect_str_at(m, "at", ts, 24, line);
    fmt_time(emitted, ts);
    expect_str_at(m, "emitted_at", ts, 24, line);
    v = jget(m, "from");
    if (v == NULL || (v->t != J_NULL && v->t != J_STR))
        fail_msg("line %d: bad \"from\"", line);
    need(m, "to", J_STR, line);
    need(m, "reason", J_STR, line);
    cust = need(m, "customer", J_OBJ, line);
    for (size_t i = 0; i < CLV_ARRAY_LEN(customer_keys); i++)
        if (jget(cust, customer_keys[i]) == NULL)
            fail_msg("line %d: customer has no \"%s\"", line, customer_keys[i]);
    for (size_t i = 0; i < cust->n; i++)
        if (cust->keys[i][cust->klens[i] - 1] == 't' && cust->klens[i] > 3 &&
            strcmp(cust->keys[i] + cust->klens[i] - 3, "_at") == 0 && cust->items[i].t == J_STR &&
            !is_rfc3339_ms_utc(cust->items[i].s, cust->items[i].slen))
            fail_msg("line %d: %s = \"%s\" is not RFC 3339 ms UTC", line, cust->keys[i],
                     cust->items[i].s);
    v = need(cust, "rfm", J_STR, line);
    if (v->slen != 3)
        fail_msg("line %d: rfm \"%s\"", line, v->s);
}

#define CHECK_ENVELOPE(m, schema, t, id, idlen, emitted)                                           \
    check_envelope((m), (schema), (t), (id), (idlen), (emitted), __LINE__)

/* The SPEC section 6 example, as a transition. */
static struct clv_transition spec_example(void)
{
    struct clv_transition t;

    memset(&t, 0, sizeof(t));
    t.kind = CLV_TRANSITION_STAGE;
    t.from = CLV_STAGE_ACTIVE;
    t.to = CLV_STAGE_AT_RISK;
    t.reason = CLV_REASON_PURCHASE_GAP;
    t.at = T_2026_03_02_10;
    t.seq = 7;
    t.purchased = 1;
    t.snap.first_purchase = T_2026_03_02_10 - 300 * DAY;
    t.snap.last_purchase = T_2026_03_02_10 - 45 * DAY;
    t.snap.last_activity = T_2026_03_02_10 - 3 * DAY;
    t.snap.purchases = 7;
    t.snap.revenue = 412.5;
    t.snap.avg_order_value = 412.5 / 7;
    t.snap.recency_days = 45.2;
    t.snap.tenure_days = 300.1;
    t.snap.active_days_30d = 2;
    t.snap.purchases_90d = 1;
    t.snap.tier = 2;
    t.snap.rfm = 245;
    strcpy(t.snap.channel, "search");
    t.snap.clv_historical = 880.0;
    t.snap.model_on = 1;
    t.snap.clv_predicted = 312.4;
    t.snap.p_alive = 0.31;
    t.snap.expected_purchases_90d = 0.8;
    t.snap.risk = 0.69;
    t.snap.clv_at_stake = 312.4;
    return t;
}

/* ======================================================================
 * Tests
 * ====================================================================== */

static void test_stage_change_spec_example(void **state)
{
    struct clv_transition t = spec_example();
    struct clv_sbuf b;
    struct clv_outmsg msgs[MAXMSG];
    struct jv m[MAXMSG];
    const struct jv *cust;
    clv_ms emitted = T_2026_03_02_10 + 1234;
    int n;
    static const char golden[] =
        "{\"schema\":\"clvd.stage_change.v1\",\"event_id\":\"c42:7\",\"customer_id\":\"c42\","
        "\"from\":\"active\",\"to\":\"at_risk\",\"reason\":\"purchase_gap\","
        "\"at\":\"2026-03-02T10:00:00.000Z\",\"emitted_at\":\"2026-03-02T10:00:01.234Z\","
        "\"customer\":{\"first_purchase_at\":\"2025-05-06T10:00:00.000Z\","
        "\"last_purchase_at\":\"2026-01-16T10:00:00.000Z\","
        "\"last_activity_at\":\"2026-02-27T10:00:00.000Z\",\"purchases\":7,\"revenue\":412.5,"
        "\"avg_order_value\":58.93,\"recency_days\":45.2,\"tenure_days\":300.1,"
        "\"active_days_30d\":2,\"purchases_90d\":1,\"tier\":\"gold\",\"rfm\":\"245\","
        "\"channel\":\"search\",\"clv_historical\":880,\"clv_predicted\":312.4,"
        "\"p_alive\":0.31,\"expected_purchases_90d\":0.8}}";

    (void)state;
    sbuf_init(&b);
    n = render(&t, "c42", 3, emitted, &b, msgs, m);
    assert_int_equal(n, 2);
    assert_int_equal(msgs[0].topic, CLV_OUT_STAGE_CHANGES);
    assert_int_equal(msgs[1].topic, CLV_OUT_CHURN_WARNINGS);
    /* fixed field order and number format: byte for byte */
    if (msgs[0].len != strlen(golden) || memcmp(b.buf + msgs[0].off, golden, msgs[0].len) != 0)
        fail_msg("stage change:\n got  %.*s\n want %s", (int)msgs[0].len, b.buf + msgs[0].off,
                 golden);
    CHECK_ENVELOPE(&m[0], "clvd.stage_change.v1", &t, "c42", 3, emitted);
    EXPECT_STR(&m[0], "from", "active");
    EXPECT_STR(&m[0], "to", "at_risk");
    EXPECT_STR(&m[0], "reason", "purchase_gap");
    cust = NEED(&m[0], "customer", J_OBJ);
    EXPECT_NUM(cust, "purchases", 7);
    EXPECT_NUM(cust, "revenue", 412.5);
    EXPECT_NUM(cust, "avg_order_value", 58.93);
    EXPECT_NUM(cust, "p_alive", 0.31);
    EXPECT_STR(cust, "tier", "gold");
    EXPECT_STR(cust, "channel", "search");
    /* the churn warning: same envelope, risk and CLV at stake */
    CHECK_ENVELOPE(&m[1], "clvd.churn_warning.v1", &t, "c42", 3, emitted);
    EXPECT_NUM(&m[1], "risk", 0.69);
    EXPECT_NUM(&m[1], "clv_at_stake", 312.4);
    EXPECT_STR(&m[1], "to", "at_risk");
    free_parsed(m, n);
    sbuf_free(&b);
}

static void test_first_transition_nulls(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;
    struct clv_sbuf b;
    struct clv_outmsg msgs[MAXMSG];
    struct jv m[MAXMSG];
    const struct jv *cust;
    int n;

    (void)state;
    sbuf_init(&b);
    customer_init(&c);
    apply(&c, VIS, T(3, 10), 0, &out);
    assert_int_equal(out.n, 1);
    n = render(&out.t[0], "c42", 3, T(3, 11), &b, msgs, m);
    assert_int_equal(n, 1); /* no win-back, no churn warning */
    CHECK_ENVELOPE(&m[0], "clvd.stage_change.v1", &out.t[0], "c42", 3, T(3, 11));
    EXPECT_NULL(&m[0], "from");
    EXPECT_STR(&m[0], "to", "prospect");
    EXPECT_STR(&m[0], "reason", "first_seen");
    EXPECT_STR(&m[0], "event_id", "c42:1");
    cust = NEED(&m[0], "customer", J_OBJ);
    EXPECT_NULL(cust, "first_purchase_at");
    EXPECT_NULL(cust, "last_purchase_at");
    EXPECT_NULL(cust, "recency_days");
    EXPECT_NULL(cust, "channel");
    EXPECT_NULL(cust, "clv_predicted"); /* model off */
    EXPECT_NULL(cust, "p_alive");
    EXPECT_NULL(cust, "expected_purchases_90d");
    EXPECT_STR(cust, "last_activity_at", "2026-01-04T10:00:00.000Z");
    EXPECT_NUM(cust, "purchases", 0);
    EXPECT_NUM(cust, "revenue", 0);
    EXPECT_STR(cust, "tier", "standard");
    free_parsed(m, n);

    /* a first purchase: from null, to new */
    customer_init(&c);
    apply(&c, PUR, T(3, 10), 19.99, &out);
    sbuf_reset(&b);
    n = render(&out.t[0], "c42", 3, T(3, 11), &b, msgs, m);
    assert_int_equal(n, 1);
    EXPECT_NULL(&m[0], "from");
    EXPECT_STR(&m[0], "to", "new");
    cust = NEED(&m[0], "customer", J_OBJ);
    EXPECT_STR(cust, "first_purchase_at", "2026-01-04T10:00:00.000Z");
    EXPECT_NUM(cust, "revenue", 19.99);
    EXPECT_NUM(cust, "recency_days", 0);
    free_parsed(m, n);
    sbuf_free(&b);
}

/* Messages of one transition: topics and, for win-back, the kind. */
struct expect_msgs {
    int n;
    enum clv_out_topic topics[3];
    const char *kind; /* win-back kind, or NULL */
};

static void check_messages(const struct clv_transition *t, const struct expect_msgs *want, int line)
{
    struct clv_sbuf b;
    struct clv_outmsg msgs[MAXMSG];
    struct jv m[MAXMSG];
    int n, wb = -1;

    sbuf_init(&b);
    n = render(t, "c42", 3, t->at + 5, &b, msgs, m);
    for (int i = 0; i < n; i++)
        if (msgs[i].topic == CLV_OUT_WIN_BACK)
            wb = i;
    if (n != want->n) {
        char got[64] = "";
        size_t len = 0;
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(got + len, sizeof(got) - len, " %d", (int)msgs[i].topic);
        fail_msg("line %d: %s -> %s (%s): %d messages (topics%s), want %d", line,
                 stage_name(t->from) ? stage_name(t->from) : "null", stage_name(t->to),
                 reason_name(t->reason), n, got, want->n);
    }
    for (int i = 0; i < n; i++)
        if (msgs[i].topic != want->topics[i])
            fail_msg("line %d: message %d on topic %d, want %d", line, i, (int)msgs[i].topic,
                     (int)want->topics[i]);
    if (want->kind) {
        assert_true(wb >= 0);
        check_envelope(&m[wb], "clvd.win_back.v1", t, "c42", 3, t->at + 5, line);
        expect_str_at(&m[wb], "kind", want->kind, strlen(want->kind), line);
    } else if (wb >= 0) {
        fail_msg("line %d: unexpected win-back message", line);
    }
    for (int i = 0; i < n; i++)
        if (msgs[i].topic == CLV_OUT_CHURN_WARNINGS) {
            check_envelope(&m[i], "clvd.churn_warning.v1", t, "c42", 3, t->at + 5, line);
            need(&m[i], "risk", J_NUM, line);
            need(&m[i], "clv_at_stake", J_NUM, line);
        } else if (msgs[i].topic == CLV_OUT_STAGE_CHANGES) {
            check_envelope(&m[i], "clvd.stage_change.v1", t, "c42", 3, t->at + 5, line);
        }
    free_parsed(m, n);
    sbuf_free(&b);
}

#define CHECK_MSGS(t, ...)                                                                         \
    do {                                                                                           \
        struct expect_msgs w_ = __VA_ARGS__;                                                       \
        check_messages((t), &w_, __LINE__);                                                        \
    } while (0)

#define SC CLV_OUT_STAGE_CHANGES
#define CW CLV_OUT_CHURN_WARNINGS
#define WB CLV_OUT_WIN_BACK

static void test_win_back_and_churn_warning_routing(void **state)
{
    struct clv_customer c, d;
    struct clv_transitions out;

    (void)state;
    /* buyer: new, active, at_risk, dormant, churned, then won back */
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 20, &out);
    CHECK_MSGS(&out.t[0], {1, {SC}, NULL}); /* new */
    apply(&c, PUR, T(1, 10), 20, &out);
    CHECK_MSGS(&out.t[0], {1, {SC}, NULL}); /* active */
    d = c;
    advance(&c, T(400, 0), &out);
    assert_int_equal(out.n, 3);
    CHECK_MSGS(&out.t[0], {2, {SC, CW}, NULL});      /* at_risk: churn warning */
    CHECK_MSGS(&out.t[1], {2, {SC, WB}, "dormant"}); /* start a campaign */
    CHECK_MSGS(&out.t[2], {2, {SC, WB}, "churned"}); /* last chance */
    apply(&c, PUR, T(401, 0), 20, &out);
    CHECK_MSGS(&out.t[0], {2, {SC, WB}, "won_back"}); /* reactivated */
    apply(&c, PUR, T(402, 0), 20, &out);
    CHECK_MSGS(&out.t[0], {1, {SC}, NULL}); /* reactivated -> active */

    /* buyer comes back without buying: at_risk (returned) is both a churn
     * warning (entering at_risk) and a win-back of kind "returned" */
    advance(&d, T(100, 0), &out);
    assert_int_equal(d.stage, CLV_STAGE_DORMANT);
    apply(&d, LOG, T(101, 0), 0, &out);
    assert_int_equal(out.n, 1);
    assert_int_equal(out.t[0].reason, CLV_REASON_RETURNED);
    CHECK_MSGS(&out.t[0], {3, {SC, CW, WB}, "returned"});

    /* never bought: no win-back at all */
    customer_init(&c);
    apply(&c, VIS, T(0, 10), 0, &out);
    advance(&c, T(300, 0), &out);
    assert_int_equal(out.n, 2);
    CHECK_MSGS(&out.t[0], {1, {SC}, NULL}); /* prospect -> dormant */
    CHECK_MSGS(&out.t[1], {1, {SC}, NULL}); /* dormant -> churned */
    apply(&c, VIS, T(301, 0), 0, &out);
    assert_int_equal(out.t[0].to, CLV_STAGE_PROSPECT);
    CHECK_MSGS(&out.t[0], {1, {SC}, NULL}); /* returned, but never bought */
    advance(&c, T(400, 0), &out);
    apply(&c, PUR, T(401, 0), 5, &out); /* first purchase while dormant */
    assert_int_equal(out.t[0].reason, CLV_REASON_WON_BACK);
    CHECK_MSGS(&out.t[0], {2, {SC, WB}, "won_back"});
}

static void test_churn_warning_risk_values(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;
    struct clv_sbuf b;
    struct clv_outmsg msgs[MAXMSG];
    struct jv m[MAXMSG];
    const struct jv *cust;
    int n;

    (void)state;
    /* purchases on days 0, 10, 20: at_risk on day 40 (mean gap 10): 10 days
     * overdue / 10 expected = 1 */
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 100, &out);
    apply(&c, PUR, T(10, 10), 50, &out);
    apply(&c, PUR, T(20, 10), 30, &out);
    advance(&c, T(45, 0), &out);
    assert_int_equal(out.n, 1);
    sbuf_init(&b);
    n = render(&out.t[0], "c42", 3, T(45, 0), &b, msgs, m);
    assert_int_equal(n, 2);
    assert_int_equal(msgs[1].topic, CLV_OUT_CHURN_WARNINGS);
    EXPECT_NUM(&m[1], "risk", 1);
    cust = NEED(&m[1], "customer", J_OBJ);
    /* no model: the CLV at stake is the historical CLV */
    EXPECT_NUM(&m[1], "clv_at_stake", NEED(cust, "clv_historical", J_NUM)->num);
    EXPECT_NUM(cust, "recency_days", 20);
    EXPECT_NUM(cust, "tenure_days", 40);
    EXPECT_STR(cust, "last_purchase_at", "2026-01-21T10:00:00.000Z");
    free_parsed(m, n);
    sbuf_free(&b);
}

static void test_tier_change_message(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;
    struct clv_sbuf b;
    struct clv_outmsg msgs[MAXMSG];
    struct jv m[MAXMSG];
    int n;

    (void)state;
    sbuf_init(&b);
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 600, &out);
    assert_int_equal(out.n, 2);
    assert_int_equal(out.t[1].kind, CLV_TRANSITION_TIER);
    n = render(&out.t[1], "c42", 3, T(0, 11), &b, msgs, m);
    assert_int_equal(n, 1);
    assert_int_equal(msgs[0].topic, CLV_OUT_TIER_CHANGES);
    CHECK_ENVELOPE(&m[0], "clvd.tier_change.v1", &out.t[1], "c42", 3, T(0, 11));
    EXPECT_STR(&m[0], "from", "standard");
    EXPECT_STR(&m[0], "to", "silver");
    EXPECT_STR(&m[0], "reason", "upgrade");
    EXPECT_STR(&m[0], "direction", "upgrade");
    EXPECT_STR(&m[0], "event_id", "c42:2");
    EXPECT_STR(NEED(&m[0], "customer", J_OBJ), "tier", "silver");
    free_parsed(m, n);

    advance(&c, T(365, 0), &out);
    assert_int_equal(out.t[out.n - 1].kind, CLV_TRANSITION_TIER);
    sbuf_reset(&b);
    n = render(&out.t[out.n - 1], "c42", 3, T(365, 1), &b, msgs, m);
    assert_int_equal(n, 1);
    EXPECT_STR(&m[0], "from", "silver");
    EXPECT_STR(&m[0], "to", "standard");
    EXPECT_STR(&m[0], "reason", "downgrade");
    EXPECT_STR(&m[0], "direction", "downgrade");
    EXPECT_STR(&m[0], "at", "2027-01-01T00:00:00.000Z");
    EXPECT_STR(NEED(&m[0], "customer", J_OBJ), "tier", "standard");
    free_parsed(m, n);
    sbuf_free(&b);
}

static void test_escaping_of_ids(void **state)
{
    static const struct {
        const char *id;
        size_t len;
    } ids[] = {
        {"a\"b", 3},      {"back\\slash", 10}, {"\\", 1},
        {"\"", 1},        {"x\\\"", 3},        {"ctl\x01\x1f\n\t\r\b\f", 10},
        {"del\x7f", 4},   {"nul\0x", 5},       {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14},
        {"</script>", 9}, {"\xe2\x80\xa8", 3},
    };
    struct clv_transition t = spec_example();

    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(ids); i++) {
        struct clv_sbuf b;
        struct clv_outmsg msgs[MAXMSG];
        struct jv m[MAXMSG];
        int n;

        sbuf_init(&b);
        t.seq = (uint32_t)(100 + i);
        n = render(&t, ids[i].id, ids[i].len, t.at, &b, msgs, m);
        for (int k = 0; k < n; k++) {
            CHECK_ENVELOPE(&m[k], k == 0 ? "clvd.stage_change.v1" : "clvd.churn_warning.v1", &t,
                           ids[i].id, ids[i].len, t.at);
            /* no raw control byte anywhere in the message */
            for (size_t j = 0; j < msgs[k].len; j++)
                if ((unsigned char)b.buf[msgs[k].off + j] < 0x20)
                    fail_msg("id #%zu: raw control byte in message", i);
        }
        free_parsed(m, n);
        sbuf_free(&b);
    }
}

static void test_rendering_is_deterministic(void **state)
{
    struct clv_transition t = spec_example();
    struct clv_sbuf a, b;
    struct clv_outmsg ma[MAXMSG], mb[MAXMSG];
    int na, nb;

    (void)state;
    sbuf_init(&a);
    sbuf_init(&b);
    sbuf_puts(&b, "some earlier message in the batch");
    na = output_transition(&t, "c42", 3, g_cfg.tiers, g_cfg.ntiers, t.at + 9, &a, ma);
    nb = output_transition(&t, "c42", 3, g_cfg.tiers, g_cfg.ntiers, t.at + 9, &b, mb);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++) {
        assert_int_equal(ma[i].topic, mb[i].topic);
        assert_int_equal(ma[i].len, mb[i].len);
        assert_memory_equal(a.buf + ma[i].off, b.buf + mb[i].off, ma[i].len);
    }
    /* again into the same buffer: the same bytes once more */
    nb = output_transition(&t, "c42", 3, g_cfg.tiers, g_cfg.ntiers, t.at + 9, &a, mb);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++) {
        assert_int_equal(ma[i].len, mb[i].len);
        assert_true(mb[i].off >= ma[na - 1].off + ma[na - 1].len);
        assert_memory_equal(a.buf + ma[i].off, a.buf + mb[i].off, ma[i].len);
    }
    /* only emitted_at depends on the wall clock */
    sbuf_reset(&b);
    nb = output_transition(&t, "c42", 3, g_cfg.tiers, g_cfg.ntiers, t.at + 99999, &b, mb);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++) {
        const char *x = strstr(a.buf + ma[i].off, "\"emitted_at\":\"");
        const char *y = strstr(b.buf + mb[i].off, "\"emitted_at\":\"");
        assert_non_null(x);
        assert_non_null(y);
        assert_int_equal(ma[i].len, mb[i].len);
        assert_memory_equal(a.buf + ma[i].off, b.buf + mb[i].off,
                            (size_t)(x - (a.buf + ma[i].off)));
        assert_memory_equal(x + 14 + 24, y + 14 + 24,
                            ma[i].len - (size_t)(x + 14 + 24 - (a.buf + ma[i].off)));
    }
    sbuf_free(&a);
    sbuf_free(&b);
}

/* Every transition of random histories renders to valid JSON with the right
 * envelope; at is the transition's own time. */
static void test_random_histories_render_valid_json(void **state)
{
    struct clv_rules saved = g_rules;
    uint64_t x = 88172645463325252ULL;
    int total = 0;

    (void)state;
    for (int round = 0; round < 60; round++) {
        struct clv_customer c;
        clv_ms now = T(0, 0);

        if (round % 2) {
            g_rules.model_on = 1;
            g_rules.lc.at_risk_p_alive_below = 0.3;
        } else {
            g_rules = saved;
        }
        customer_init(&c);
        for (int i = 0; i < 50; i++) {
            struct clv_transitions out;

            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += (clv_ms)(x % (80 * (uint64_t)DAY));
            apply(&c, (int)(x >> 40) % 3, now, (double)(x % 200000) / 100.0, &out);
            for (int k = 0; k < out.n; k++) {
                struct clv_sbuf b;
                struct clv_outmsg msgs[MAXMSG];
                struct jv m[MAXMSG];
                int n;
                const char *schema = out.t[k].kind == CLV_TRANSITION_TIER ? "clvd.tier_change.v1"
                                                                          : "clvd.stage_change.v1";

                sbuf_init(&b);
                n = render(&out.t[k], "cust\"7", 6, now + 1, &b, msgs, m);
                CHECK_ENVELOPE(&m[0], schema, &out.t[k], "cust\"7", 6, now + 1);
                if (out.t[k].from == CLV_STAGE_NONE)
                    EXPECT_NULL(&m[0], "from");
                if (out.t[k].kind == CLV_TRANSITION_STAGE)
                    EXPECT_STR(&m[0], "to", stage_name(out.t[k].to));
                EXPECT_STR(&m[0], "reason", reason_name(out.t[k].reason));
                EXPECT_NUM(NEED(&m[0], "customer", J_OBJ), "purchases", out.t[k].snap.purchases);
                free_parsed(m, n);
                sbuf_free(&b);
                total++;
            }
        }
    }
    g_rules = saved;
    assert_true(total > 300);
}

/* ---- dead letters --------------------------------------------------------- */

static void test_dead_letter(void **state)
{
    struct clv_sbuf b;
    struct jv m;
    const char *err = NULL;
    static const char valid[] = "{\"event_id\":\"x\",\"ts\":\"nope\"}\n\t\x01";
    static const unsigned char invalid[] = {0xff, 0xfe, 0x00, 'a'};

    (void)state;
    /* valid UTF-8: the original text in "value" */
    sbuf_init(&b);
    output_dead_letter(&b, "bad_timestamp", "purchases", 3, 123456789012LL, "c42", 3, valid,
                       sizeof(valid) - 1, T_2026_03_02_10);
    if (json_parse(b.buf, b.len, &m, &err) != 0)
        fail_msg("dead letter is not valid JSON (%s): %s", err, b.buf);
    EXPECT_STR(&m, "schema", "clvd.dead_letter.v1");
    EXPECT_STR(&m, "reason", "bad_timestamp");
    EXPECT_STR(&m, "topic", "purchases");
    EXPECT_NUM(&m, "partition", 3);
    assert_string_equal(NEED(&m, "offset", J_NUM)->s, "123456789012");
    EXPECT_STR(&m, "key", "c42");
    expect_str_at(&m, "value", valid, sizeof(valid) - 1, __LINE__);
    assert_null(jget(&m, "value_base64"));
    EXPECT_STR(&m, "emitted_at", "2026-03-02T10:00:00.000Z");
    jfree(&m);

    /* not UTF-8: base64 of the bytes; missing key: null; big offsets exact */
    sbuf_reset(&b);
    output_dead_letter(&b, "invalid_json", "visits", 0, 9007199254740993LL, NULL, 0, invalid,
                       sizeof(invalid), T_2026_03_02_10);
    if (json_parse(b.buf, b.len, &m, &err) != 0)
        fail_msg("dead letter is not valid JSON (%s): %s", err, b.buf);
    EXPECT_STR(&m, "reason", "invalid_json");
    EXPECT_STR(&m, "topic", "visits");
    EXPECT_NULL(&m, "key");
    assert_string_equal(NEED(&m, "offset", J_NUM)->s, "9007199254740993");
    EXPECT_STR(&m, "value_base64", "//4AYQ==");
    assert_null(jget(&m, "value"));
    jfree(&m);

    /* empty value, a NUL inside valid UTF-8, a reason with ':' */
    sbuf_reset(&b);
    output_dead_letter(&b, "missing_field:customer_id", "logins", 1, 0, "", 0, "a\0b", 3,
                       T_2026_03_02_10);
    if (json_parse(b.buf, b.len, &m, &err) != 0)
        fail_msg("dead letter is not valid JSON (%s): %s", err, b.buf);
    EXPECT_STR(&m, "reason", "missing_field:customer_id");
    EXPECT_STR(&m, "key", "");
    expect_str_at(&m, "value", "a\0b", 3, __LINE__);
    jfree(&m);
    sbuf_reset(&b);
    output_dead_letter(&b, "too_large", "logins", 1, 0, "k", 1, "", 0, T_2026_03_02_10);
    if (json_parse(b.buf, b.len, &m, &err) != 0)
        fail_msg("dead letter is not valid JSON (%s): %s", err, b.buf);
    EXPECT_STR(&m, "value", "");
    jfree(&m);
    /* a truncated multi-byte sequence is not UTF-8 */
    sbuf_reset(&b);
    output_dead_letter(&b, "invalid_json", "logins", 1, 0, "k", 1, "\xc3", 1, T_2026_03_02_10);
    if (json_parse(b.buf, b.len, &m, &err) != 0)
        fail_msg("dead letter is not valid JSON (%s): %s", err, b.buf);
    EXPECT_STR(&m, "value_base64", "ww==");
    jfree(&m);
    sbuf_free(&b);
}

/* ---- sbuf ------------------------------------------------------------------- */

static void num(double v, int decimals, const char *want)
{
    struct clv_sbuf b;

    sbuf_init(&b);
    sbuf_json_num(&b, v, decimals);
    if (strcmp(b.buf, want) != 0)
        fail_msg("%.17g with %d decimals: \"%s\", want \"%s\"", v, decimals, b.buf, want);
    sbuf_free(&b);
}

static void test_sbuf_numbers(void **state)
{
    (void)state;
    num(412.5, 2, "412.5");
    num(880.0, 2, "880");
    num(58.928571, 2, "58.93");
    num(0.31, 4, "0.31");
    num(0.00001, 4, "0");
    num(-0.001, 2, "0");
    num(-0.0, 2, "0");
    num(-1.5, 2, "-1.5");
    num(100, 0, "100");
    num(1e15, 2, "1000000000000000");
    num(NAN, 2, "null");
    num(INFINITY, 2, "null");
    num(-INFINITY, 2, "null");
}

/* "null when not finite": a finite number is a number, however large. */
static void test_sbuf_large_finite_number(void **state)
{
    struct clv_sbuf b;
    struct jv v;
    const char *err = NULL;

    (void)state;
    sbuf_init(&b);
    sbuf_json_num(&b, 1e300, 2);
    if (json_parse(b.buf, b.len, &v, &err) != 0)
        fail_msg("not JSON: %s", b.buf);
    if (v.t != J_NUM || !(fabs(v.num - 1e300) <= 1e286))
        fail_msg("1e300 rendered as %s", b.buf);
    jfree(&v);
    sbuf_free(&b);
}

static void test_sbuf_growth_and_strings(void **state)
{
    struct clv_sbuf b;
    struct jv v;
    const char *err = NULL;
    char all[256];

    (void)state;
    sbuf_init(&b);
    for (int i = 0; i < 20000; i++)
        sbuf_printf(&b, "%05d", i);
    assert_int_equal(b.len, 100000);
    assert_memory_equal(b.buf + 5 * 12345, "12345", 5);
    assert_int_equal(b.buf[b.len], '\0');
    sbuf_reset(&b);
    assert_int_equal(b.len, 0);
    /* every byte value below 0x80 escapes into a string that reads back */
    for (int i = 0; i < 128; i++)
        all[i] = (char)i;
    sbuf_json_str(&b, all, 128);
    if (json_parse(b.buf, b.len, &v, &err) != 0)
        fail_msg("not JSON (%s): %s", err, b.buf);
    assert_int_equal(v.t, J_STR);
    assert_int_equal(v.slen, 128);
    assert_memory_equal(v.s, all, 128);
    jfree(&v);
    sbuf_free(&b);
}

/* sbuf_printf formats into the free space and again only when the result
 * did not fit: both paths, at the boundary too (room counts the NUL). */
static void test_sbuf_printf_fits_or_grows(void **state)
{
    struct clv_sbuf b;
    char big[1000], filler[1024];

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memset(filler, 'f', sizeof(filler));
    sbuf_init(&b);
    sbuf_printf(&b, "%s", "ab");
    sbuf_printf(&b, "<%s>", big); /* longer than the free space */
    assert_int_equal(b.len, 2 + 1 + 999 + 1);
    assert_memory_equal(b.buf, "ab<xxx", 6);
    assert_memory_equal(b.buf + b.len - 4, "xxx>", 4);
    assert_int_equal(b.buf[b.len], '\0');
    for (int extra = 0; extra <= 1; extra++) {
        size_t cap;
        sbuf_free(&b);
        sbuf_reserve(&b, 1000);
        cap = b.cap;
        sbuf_append(&b, filler, cap - 65); /* room for 64 characters and the NUL */
        sbuf_printf(&b, "%.*s", 64 + extra, big);
        assert_int_equal(b.len, cap - 65 + 64 + (size_t)extra);
        assert_true(extra ? b.cap > cap : b.cap == cap);
        assert_memory_equal(b.buf + cap - 65, big, 64 + (size_t)extra);
        assert_int_equal(b.buf[b.len], '\0');
    }
    sbuf_free(&b);
}

static void test_sbuf_int(void **state)
{
    static const struct {
        long long v;
        const char *text;
    } cases[] = {{0, "0"},
                 {7, "7"},
                 {-1, "-1"},
                 {1234567890, "1234567890"},
                 {9223372036854775807LL, "9223372036854775807"},
                 {-9223372036854775807LL - 1, "-9223372036854775808"}};
    struct clv_sbuf b;

    (void)state;
    sbuf_init(&b);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sbuf_reset(&b);
        sbuf_puts(&b, "n=");
        sbuf_int(&b, cases[i].v);
        assert_string_equal(b.buf + 2, cases[i].text);
    }
    sbuf_free(&b);
}

static void test_output_topic_names(void **state)
{
    const struct clv_kafka_topics *t = &g_cfg.kafka.topics;

    (void)state;
    assert_string_equal(output_topic_name(t, CLV_OUT_STAGE_CHANGES), "customer.stage-changes");
    assert_string_equal(output_topic_name(t, CLV_OUT_CHURN_WARNINGS), "customer.churn-warnings");
    assert_string_equal(output_topic_name(t, CLV_OUT_WIN_BACK), "customer.win-back");
    assert_string_equal(output_topic_name(t, CLV_OUT_TIER_CHANGES), "customer.tier-changes");
    assert_string_equal(output_topic_name(t, CLV_OUT_ALERTS), "clvd.alerts");
    assert_string_equal(output_topic_name(t, CLV_OUT_DEAD_LETTER), "clvd.dead-letter");
    assert_null(output_topic_name(t, CLV_OUT_COUNT));
}

/* The checker itself must reject what is not JSON. */
static void test_json_checker_is_strict(void **state)
{
    static const char *const bad[] = {
        "",
        "{",
        "{\"a\":1,}",
        "{\"a\":1}x",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":nul}",
        "{a:1}",
        "[1,]",
        "{\"a\":1,\"a\":2}",
        "\"\\ud800\"",
        "\"\xc3\"",
        "\"\xed\xa0\x80\"",
        "{\"a\":-}",
        "{\"a\":1e}",
        "NaN",
        "{\"a\":Infinity}",
    };
    static const char *const good[] = {
        "{}",
        "[]",
        "{\"a\":[1,-0.5,2e10,true,false,null,\"\\u00e9\\ud83d\\ude00\"]}",
        " 0 ",
    };

    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(bad); i++) {
        struct jv v;
        const char *err = NULL;
        if (json_parse(bad[i], strlen(bad[i]), &v, &err) == 0)
            fail_msg("checker accepted %s", bad[i]);
    }
    for (size_t i = 0; i < CLV_ARRAY_LEN(good); i++) {
        struct jv v;
        const char *err = NULL;
        if (json_parse(good[i], strlen(good[i]), &v, &err) != 0)
            fail_msg("checker rejected %s (%s)", good[i], err);
        jfree(&v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_checker_is_strict),
        cmocka_unit_test(test_stage_change_spec_example),
        cmocka_unit_test(test_first_transition_nulls),
        cmocka_unit_test(test_win_back_and_churn_warning_routing),
        cmocka_unit_test(test_churn_warning_risk_values),
        cmocka_unit_test(test_tier_change_message),
        cmocka_unit_test(test_escaping_of_ids),
        cmocka_unit_test(test_rendering_is_deterministic),
        cmocka_unit_test(test_random_histories_render_valid_json),
        cmocka_unit_test(test_dead_letter),
        cmocka_unit_test(test_sbuf_numbers),
        cmocka_unit_test(test_sbuf_large_finite_number),
        cmocka_unit_test(test_sbuf_growth_and_strings),
        cmocka_unit_test(test_sbuf_printf_fits_or_grows),
        cmocka_unit_test(test_sbuf_int),
        cmocka_unit_test(test_output_topic_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

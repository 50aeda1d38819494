/* event.c -- parse and validate one input message (SPEC section 3) with yajl.
 *
 * yajl was chosen by measurement (docs/json.md): its callback parser lets us
 * look only at the six top-level keys clvd reads and build no tree.  Each
 * value is validated in its callback, the moment the (unescaped) bytes are
 * available, and the result is written straight into the caller's event;
 * the reason for a rejected field is kept and reported after the whole
 * message has been parsed, so that invalid JSON always wins over a field
 * error.
 *
 * Handle reuse: yajl 2.1 has no reset, but a handle configured with
 * yajl_allow_multiple_values that has finished one value cleanly accepts the
 * next, so one handle parses message after message.  A second top-level
 * value inside one message is detected in the callbacks.  After any yajl
 * error the handle is in an error state and is re-created.
 *
 * UTF-8: yajl's own check accepts overlongs and surrogates, so it is off and
 * the whole message goes through the strict utf8_valid() first. */
#define _GNU_SOURCE /* strtod_l */
#include "event.h"

#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "timeutil.h"

/* Longest number text converted; longer amounts are bad_amount (no valid
 * integer ts is this long either: JSON forbids leading zeros). */
#define NUMBER_TEXT_MAX 511

/* The top-level keys clvd reads, in the order they are reported. */
enum field { F_EVENT_ID, F_CUSTOMER_ID, F_TS, F_TYPE, F_AMOUNT, F_CHANNEL, F_COUNT };
#define F_OTHER F_COUNT

static const char *const FIELD_NAME[F_COUNT] = {"event_id", "customer_id", "ts",
                                                "type",     "amount",      "channel"};
static const char *const MISSING[F_COUNT] = {"missing_field:event_id", "missing_field:customer_id",
                                             "missing_field:ts",       "missing_field:type",
                                             "missing_field:amount",   "missing_field:channel"};
static const char *const BAD_TYPE[F_COUNT] = {"bad_type:event_id", "bad_type:customer_id",
                                              "bad_type:ts",       "bad_type:type",
                                              "bad_type:amount",   "bad_type:channel"};

/* Per-message state shared with the yajl callbacks. */
struct capture {
    /* inputs */
    enum clv_event_type topic;
    clv_ms wall_now;
    clv_ms max_future_skew;
    locale_t c_locale;
    struct clv_event *ev;
    /* structure */
    int depth;      /* 0 = outside any container, 1 = in the top-level one */
    int top_values; /* top-level values started (more than 1 is invalid) */
    int top_is_object;
    enum field pending;       /* field of the key just read at depth 1 */
    unsigned seen;            /* bit per field: key present */
    int duplicate;            /* a key clvd reads appeared twice */
    const char *why[F_COUNT]; /* reason a present field is rejected, NULL = fine */
};

struct event_parser {
    yajl_handle h; /* NULL after an error until re-created */
    locale_t c_locale;
    struct capture cap;
};

const char *event_type_name(enum clv_event_type t)
{
    switch (t) {
    case CLV_EV_PURCHASE:
        return "purchase";
    case CLV_EV_LOGIN:
        return "login";
    case CLV_EV_VISIT:
        return "visit";
    }
    return "unknown";
}

/* ---- byte-level helpers ------------------------------------------------- */

/* C0 controls, DEL and C1 controls (U+0080..U+009F, encoded C2 80..C2 9F)
 * are not printable; s must already be valid UTF-8. */
static int has_control(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return 1;
        if (s[i] == 0xc2 && i + 1 < n && s[i + 1] < 0xa0)
            return 1;
    }
    return 0;
}

/* Longest prefix of at most max bytes that does not split a character. */
static size_t utf8_cut(const unsigned char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    while (max > 0 && (s[max] & 0xc0) == 0x80)
        max--;
    return max;
}

static int hex4(const char *p, const char *end, unsigned *out)
{
    unsigned v = 0;

    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            v |= (unsigned)((c | 0x20) - 'a' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* yajl turns a lone high surrogate escape into '?' and mis-decodes a high
 * surrogate followed by a non-surrogate escape into a wrong but valid
 * character, so a damaged id would pass silently.  Reject unpaired
 * surrogates up front, as jansson does.  Backslashes are rare, hence memchr;
 * a malformed escape is left for yajl to report. */
static int surrogates_paired(const char *buf, size_t len)
{
    const char *end = buf + len;
    const char *p = memchr(buf, '\\', len);
    unsigned hi, lo;

    while (p != NULL && end - p >= 2) {
        if (p[1] != 'u') {
            p += 2; /* skips the escaped char, so "\\\\u" is not an escape */
        } else if (hex4(p + 2, end, &hi) != 0) {
            return 1;
        } else if (hi >= 0xdc00 && hi <= 0xdfff) {
            return 0;
        } else if (hi >= 0xd800 && hi <= 0xdbff) {
            if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, end, &lo) != 0 ||
                lo < 0xdc00 || lo > 0xdfff)
                return 0;
            p += 12;
        } else {
            p += 6;
        }
        p = memchr(p, '\\', (size_t)(end - p));
    }
    return 1;
}

/* ---- value checks (one per field kind) ---------------------------------- */

/* JSON integer literal -> epoch ms.  Returns the reason, NULL if fine. */
static const char *ts_from_number(const char *s, size_t n, clv_ms *out)
{
    size_t i = 0;
    int neg = 0;
    clv_ms v = 0;

    if (memchr(s, '.', n) || memchr(s, 'e', n) || memchr(s, 'E', n))
        return BAD_TYPE[F_TS]; /* integral numbers only, documented in event.h */
    if (i < n && s[i] == '-')
        neg = 1, i++;
    for (; i < n; i++) {
        v = v * 10 + (s[i] - '0'); /* yajl guarantees digits */
        if (v > CLV_EVENT_TS_MAX)
            return "bad_timestamp";
    }
    if (neg && v != 0)
        return "bad_timestamp";
    *out = v;
    return NULL;
}

static const char *ts_check_range(const struct capture *c, clv_ms t)
{
    if (t < 0 || t > CLV_EVENT_TS_MAX)
        return "bad_timestamp";
    if (t > c->wall_now + c->max_future_skew)
        return "future_timestamp";
    c->ev->ts = t;
    return NULL;
}

static const char *amount_from_number(const struct capture *c, const char *s, size_t n)
{
    char tmp[NUMBER_TEXT_MAX + 1];
    double d;

    if (n > NUMBER_TEXT_MAX)
        return "bad_amount";
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    /* strtod_l: JSON's decimal point is '.', whatever LC_NUMERIC says.
     * Overflow gives HUGE_VAL (not finite); underflow gives a tiny or zero
     * value, which is a fine amount. */
    d = strtod_l(tmp, NULL, c->c_locale);
    if (!isfinite(d))
        return "bad_amount";
    if (d < 0)
        return "negative_amount";
    c->ev->amount = d + 0.0; /* -0 becomes +0 */
    return NULL;
}

/* Copy an id into its slot; the checks shared by event_id and customer_id. */
static int id_store(const unsigned char *s, size_t n, char *dst, size_t *dlen)
{
    if (n == 0 || n > CLV_ID_MAX || !utf8_valid((const char *)s, n))
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    *dlen = n;
    return 0;
}

static const char *string_value(struct capture *c, enum field f, const unsigned char *s, size_t n)
{
    struct clv_event *ev = c->ev;
    clv_ms t;

    switch (f) {
    case F_EVENT_ID:
        if (memchr(s, '\0', n) || id_store(s, n, ev->event_id, &ev->event_id_len))
            return "bad_event_id";
        return NULL;
    case F_CUSTOMER_ID:
        if (has_control(s, n) || id_store(s, n, ev->customer_id, &ev->customer_id_len))
            return "bad_customer_id";
        return NULL;
    case F_TS:
        if (rfc3339_parse((const char *)s, n, &t) != 0)
            return "bad_timestamp";
        return ts_check_range(c, t);
    case F_TYPE:
        if (strlen(event_type_name(c->topic)) != n || memcmp(s, event_type_name(c->topic), n))
            return "type_mismatch";
        return NULL;
    case F_AMOUNT:
        return BAD_TYPE[F_AMOUNT];
    case F_CHANNEL:
        /* optional and informational: anything unusable is dropped */
        if (utf8_valid((const char *)s, n) && !has_control(s, n)) {
            size_t k = utf8_cut(s, n, CLV_CHANNEL_MAX);

            memcpy(ev->channel, s, k);
            ev->channel[k] = '\0';
        }
        return NULL;
    case F_COUNT:
        break;
    }
    return NULL;
}

static const char *number_value(struct capture *c, enum field f, const char *s, size_t n)
{
    clv_ms t = 0;
    const char *why;

    switch (f) {
    case F_TS:
        why = ts_from_number(s, n, &t);
        return why ? why : ts_check_range(c, t);
    case F_AMOUNT:
        return amount_from_number(c, s, n);
    case F_CHANNEL:
        return NULL; /* non-string channel: ignored */
    default:
        return BAD_TYPE[f];
    }
}

/* ---- yajl callbacks ----------------------------------------------------- */

/* Book-keeping common to every value; returns the field the value belongs
 * to (F_OTHER for values clvd does not read). */
static enum field value_field(struct capture *c, int is_object)
{
    enum field f = F_OTHER;

    if (c->depth == 0) {
        c->top_values++;
        c->top_is_object = is_object;
    } else if (c->depth == 1) {
        f = c->pending;
        c->pending = F_OTHER;
    }
    return f;
}

/* null, booleans, objects and arrays are never a valid value for a field
 * clvd reads; for channel they are ignored. */
static void other_value(struct capture *c, int is_object)
{
    enum field f = value_field(c, is_object);

    if (f != F_OTHER && f != F_CHANNEL)
        c->why[f] = BAD_TYPE[f];
}

static int cb_null(void *ctx)
{
    other_value(ctx, 0);
    return 1;
}

static int cb_boolean(void *ctx, int b)
{
    (void)b;
    other_value(ctx, 0);
    return 1;
}

static int cb_number(void *ctx, const char *s, size_t n)
{
    struct capture *c = ctx;
    enum field f = value_field(c, 0);

    if (f != F_OTHER)
        c->why[f] = number_value(c, f, s, n);
    return 1;
}

static int cb_string(void *ctx, const unsigned char *s, size_t n)
{
    struct capture *c = ctx;
    enum field f = value_field(c, 0);

    if (f != F_OTHER)
        c->why[f] = string_value(c, f, s, n);
    return 1;
}

static int cb_start_map(void *ctx)
{
    struct capture *c = ctx;

    other_value(c, 1);
    c->depth++;
    return 1;
}

static int cb_start_array(void *ctx)
{
    struct capture *c = ctx;

    other_value(c, 0);
    c->depth++;
    return 1;
}

static int cb_end(void *ctx)
{
    ((struct capture *)ctx)->depth--;
    return 1;
}

static enum field field_of(const unsigned char *k, size_t n)
{
    for (int f = 0; f < F_COUNT; f++)
        if (strlen(FIELD_NAME[f]) == n && memcmp(k, FIELD_NAME[f], n) == 0)
            return (enum field)f;
    return F_OTHER;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t n)
{
    struct capture *c = ctx;

    c->pending = c->depth == 1 ? field_of(k, n) : F_OTHER;
    if (c->pending != F_OTHER) {
        if (c->seen & (1u << c->pending))
            c->duplicate = 1;
        c->seen |= 1u << c->pending;
    }
    return 1;
}

static const yajl_callbacks CALLBACKS = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number, /* raw text: we choose how to convert */
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

/* ---- parser ------------------------------------------------------------- */

static yajl_handle handle_new(struct event_parser *p)
{
    yajl_handle h = yajl_alloc(&CALLBACKS, NULL, &p->cap);

    if (h == NULL)
        return NULL;
    yajl_config(h, yajl_dont_validate_strings, 1); /* utf8_valid() did it, strictly */
    yajl_config(h, yajl_allow_multiple_values, 1); /* handle reuse, see top */
    return h;
}

struct event_parser *event_parser_create(char *err, size_t errlen)
{
    struct event_parser *p = calloc(1, sizeof(*p));

    if (p == NULL)
        goto fail;
    /* strtod_l() reads only LC_NUMERIC; asking for all of "C" lets glibc
     * hand back its static C locale instead of allocating one */
    p->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (p->c_locale == (locale_t)0)
        goto fail;
    p->h = handle_new(p);
    if (p->h == NULL)
        goto fail;
    return p;
fail:
    clv_seterr(err, errlen, "event parser: out of memory");
    event_parser_free(p);
    return NULL;
}

void event_parser_free(struct event_parser *p)
{
    if (p == NULL)
        return;
    if (p->h != NULL)
        yajl_free(p->h);
    if (p->c_locale != (locale_t)0)
        freelocale(p->c_locale);
    free(p);
}

/* Run yajl over the message.  0 if it is well-formed JSON. */
static int run_yajl(struct event_parser *p, const char *buf, size_t len)
{
    int ok = yajl_parse(p->h, (const unsigned char *)buf, len) == yajl_status_ok &&
             yajl_complete_parse(p->h) == yajl_status_ok;

    if (!ok) {
        yajl_free(p->h);
        p->h = handle_new(p); /* NULL is retried on the next message */
    }
    return ok ? 0 : -1;
}

/* The first reason, in SPEC order, why the parsed fields are unusable. */
static const char *first_field_error(const struct capture *c)
{
    for (int f = 0; f < F_COUNT; f++) {
        int required = f == F_EVENT_ID || f == F_CUSTOMER_ID || f == F_TS ||
                       (f == F_AMOUNT && c->topic == CLV_EV_PURCHASE);
        int present = (c->seen >> f) & 1;

        if (f == F_AMOUNT && c->topic != CLV_EV_PURCHASE)
            continue; /* amount of a login/visit is ignored */
        if (!present && required)
            return MISSING[f];
        if (present && c->why[f] != NULL)
            return c->why[f];
    }
    return NULL;
}

static void capture_init(struct event_parser *p, enum clv_event_type topic_type,
                         const struct clv_event_limits *lim, clv_ms wall_now, struct clv_event *ev)
{
    memset(&p->cap, 0, sizeof(p->cap));
    p->cap.topic = topic_type;
    p->cap.wall_now = wall_now;
    p->cap.max_future_skew = lim->max_future_skew;
    p->cap.c_locale = p->c_locale;
    p->cap.ev = ev;
    p->cap.pending = F_OTHER;
    ev->type = topic_type;
    ev->ts = 0;
    ev->received = wall_now;
    ev->src_topic = -1; /* the consumer fills in where it came from */
    ev->src_partition = -1;
    ev->src_offset = -1;
    ev->src_frontier = -1;
    ev->src_ts = 0;
    ev->amount = 0;
    ev->event_id[0] = ev->customer_id[0] = ev->channel[0] = '\0';
    ev->event_id_len = ev->customer_id_len = 0;
}

/* Everything that makes a message invalid_json / not_object / too_large. */
static const char *syntax_error(struct event_parser *p, const char *buf, size_t len,
                                const struct clv_event_limits *lim)
{
    const struct capture *c = &p->cap;

    if (len > lim->max_message_bytes)
        return "too_large";
    if (!utf8_valid(buf, len) || !surrogates_paired(buf, len))
        return "invalid_json";
    if (run_yajl(p, buf, len) != 0)
        return "invalid_json";
    if (c->top_values != 1 || c->duplicate)
        return "invalid_json";
    if (!c->top_is_object)
        return "not_object";
    return NULL;
}

int event_parser_parse(struct event_parser *p, const char *buf, size_t len,
                       enum clv_event_type topic_type, const struct clv_event_limits *lim,
                       clv_ms wall_now, struct clv_event *ev, char *reason, size_t reasonlen)
{
    const char *why;

    if (p->h == NULL && (p->h = handle_new(p)) == NULL) {
        clv_seterr(reason, reasonlen, "internal_error");
        return -1;
    }
    capture_init(p, topic_type, lim, wall_now, ev);
    why = syntax_error(p, buf, len, lim);
    if (why == NULL)
        why = first_field_error(&p->cap);
    if (why != NULL) {
        clv_seterr(reason, reasonlen, "%s", why);
        return -1;
    }
    if (topic_type != CLV_EV_PURCHASE)
        ev->amount = 0;
    return 0;
}

int event_parse(const char *buf, size_t len, enum clv_event_type topic_type,
                const struct clv_event_limits *lim, clv_ms wall_now, struct clv_event *ev,
                char *reason, size_t reasonlen)
{
    struct event_parser *p = event_parser_create(NULL, 0);
    int rc;

    if (p == NULL) {
        clv_seterr(reason, reasonlen, "internal_error");
        return -1;
    }
    rc = event_parser_parse(p, buf, len, topic_type, lim, wall_now, ev, reason, reasonlen);
    event_parser_free(p);
    return rc;
}

/* customer.c -- aggregates of one customer and their binary encoding. */
#include "customer.h"

#include <string.h>

#include "common.h"
#include "config.h"

static const char *const stage_names[CLV_STAGE_COUNT] = {
    "prospect", "new", "active", "loyal", "at_risk", "dormant", "churned", "reactivated",
};

const char *stage_name(int stage)
{
    if (stage < 0 || stage >= CLV_STAGE_COUNT)
        return NULL;
    return stage_names[stage];
}

int stage_from_name(const char *name)
{
    for (int i = 0; i < CLV_STAGE_COUNT; i++)
        if (strcmp(stage_names[i], name) == 0)
            return i;
    return CLV_STAGE_NONE;
}

void customer_init(struct clv_customer *c)
{
    memset(c, 0, sizeof(*c));
    c->stage = CLV_STAGE_NONE;
    c->tier = 0;
}

/* ---- active days: a 128-bit window ending at active_anchor ------------- */

static int active_bit_get(const struct clv_customer *c, int32_t day)
{
    int32_t i = c->active_anchor - day;

    if (i < 0 || i >= 128)
        return 0;
    return (int)((c->active_bits[i / 64] >> (i % 64)) & 1);
}

static void active_shift(struct clv_customer *c, int32_t by)
{
    if (by >= 128) {
        c->active_bits[0] = c->active_bits[1] = 0;
    } else if (by >= 64) {
        c->active_bits[1] = c->active_bits[0] << (by - 64);
        c->active_bits[0] = 0;
    } else if (by > 0) {
        c->active_bits[1] = (c->active_bits[1] << by) | (c->active_bits[0] >> (64 - by));
        c->active_bits[0] <<= by;
    }
}

static void active_mark(struct clv_customer *c, int32_t day)
{
    int32_t i;

    if (c->active_bits[0] == 0 && c->active_bits[1] == 0) {
        c->active_anchor = day;
    } else if (day > c->active_anchor) {
        active_shift(c, day - c->active_anchor);
        c->active_anchor = day;
    }
    i = c->active_anchor - day;
    if (i < 128)
        c->active_bits[i / 64] |= 1ULL << (i % 64);
}

static int active_days_within(const struct clv_customer *c, int32_t last_day, int days)
{
    int n = 0;

    for (int32_t d = last_day - days + 1; d <= last_day; d++)
        n += active_bit_get(c, d);
    return n;
}

/* ---- purchase days ------------------------------------------------------ */

static int pday_find(const struct clv_customer *c, int32_t day, int *pos)
{
    int lo = 0, hi = c->npdays;

    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (c->pdays[mid].day < day)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return lo < c->npdays && c->pdays[lo].day == day;
}

static void pday_drop_oldest(struct clv_customer *c)
{
    c->pdays_from = c->pdays[0].day + 1;
    memmove(&c->pdays[0], &c->pdays[1], (size_t)(c->npdays - 1) * sizeof(c->pdays[0]));
    c->npdays--;
}

/* Record a purchase on `day`.  Returns 1 if the day is a new purchase day.
 * A purchase older than the retained log cannot be merged with its day, so it
 * counts as a day of its own: an approximation only for purchases that arrive
 * more than `keep_days` late. */
static int pday_add(struct clv_customer *c, int32_t day, double amount, int keep_days)
{
    int pos;

    if (pday_find(c, day, &pos)) {
        if (c->pdays[pos].count < UINT16_MAX)
            c->pdays[pos].count++;
        c->pdays[pos].revenue += amount;
        return 0;
    }
    (void)keep_days;
    if (day < c->pdays_from) /* its day was trimmed: cannot be merged */
        return c->purchase_days == 0 || (day != c->first_pday && day != c->last_pday);
    if (c->npdays == CLV_MAX_PDAYS) {
        if (pos == 0)
            return 1;
        pday_drop_oldest(c);
        pos--;
    }
    memmove(&c->pdays[pos + 1], &c->pdays[pos], (size_t)(c->npdays - pos) * sizeof(c->pdays[0]));
    c->pdays[pos] = (struct clv_pday){.day = day, .count = 1, .revenue = amount};
    c->npdays++;
    return 1;
}

void customer_trim_pdays(struct clv_customer *c, clv_ms now, int keep_days)
{
    int32_t oldest = clv_day_of(now) - keep_days;
    int drop = 0;

    if (oldest > c->pdays_from)
        c->pdays_from = oldest;
    while (drop < c->npdays && c->pdays[drop].day < oldest)
        drop++;
    if (drop == 0)
        return;
    memmove(&c->pdays[0], &c->pdays[drop], (size_t)(c->npdays - drop) * sizeof(c->pdays[0]));
    c->npdays -= (uint16_t)drop;
}

static void add_purchase(struct clv_customer *c, clv_ms ts, double amount, int keep_days)
{
    int32_t day = clv_day_of(ts);
    int new_day = pday_add(c, day, amount, keep_days);

    c->purchases++;
    c->revenue += amount;
    if (c->first_purchase == 0 || ts < c->first_purchase)
        c->first_purchase = ts;
    if (ts > c->last_purchase)
        c->last_purchase = ts;
    if (new_day)
        c->purchase_days++;
    if (new_day && (c->purchase_days == 1 || day < c->first_pday)) {
        c->first_pday = day;
        c->first_day_revenue = amount;
    } else if (day == c->first_pday) {
        c->first_day_revenue += amount;
    }
    if (c->purchase_days == 1 || day > c->last_pday)
        c->last_pday = day;
}

void customer_add_event(struct clv_customer *c, const struct clv_event *ev, int keep_days)
{
    if (c->first_seen == 0 || ev->ts < c->first_seen)
        c->first_seen = ev->ts;
    if (ev->ts > c->last_activity)
        c->last_activity = ev->ts;
    if (ev->channel[0] != '\0' &&
        (c->channel[0] == '\0' || ev->ts < c->channel_ts ||
         (ev->ts == c->channel_ts && strcmp(ev->channel, c->channel) < 0))) {
        memcpy(c->channel, ev->channel, sizeof(c->channel));
        c->channel_ts = ev->ts;
    }
    active_mark(c, clv_day_of(ev->ts));
    switch (ev->type) {
    case CLV_EV_PURCHASE:
        add_purchase(c, ev->ts, ev->amount, keep_days);
        break;
    case CLV_EV_LOGIN:
        c->logins++;
        break;
    case CLV_EV_VISIT:
        c->visits++;
        break;
    }
}

int customer_purchases_within(const struct clv_customer *c, clv_ms at, int days)
{
    int32_t last = clv_day_of(at), first = last - days + 1;
    int n = 0;

    for (int i = 0; i < c->npdays; i++)
        if (c->pdays[i].day >= first && c->pdays[i].day <= last)
            n += c->pdays[i].count;
    return n;
}

double customer_revenue_within(const struct clv_customer *c, clv_ms at, int days)
{
    int32_t last = clv_day_of(at), first = last - days + 1;
    double sum = 0;

    for (int i = 0; i < c->npdays; i++)
        if (c->pdays[i].day >= first && c->pdays[i].day <= last)
            sum += c->pdays[i].revenue;
    return sum;
}

void customer_windows(const struct clv_customer *c, clv_ms at, struct clv_windows *w)
{
    int32_t day = clv_day_of(at);

    w->active_days_7d = active_days_within(c, day, 7);
    w->active_days_30d = active_days_within(c, day, 30);
    w->active_days_90d = active_days_within(c, day, 90);
    w->purchases_7d = customer_purchases_within(c, at, 7);
    w->purchases_30d = customer_purchases_within(c, at, 30);
    w->purchases_90d = customer_purchases_within(c, at, 90);
    w->revenue_7d = customer_revenue_within(c, at, 7);
    w->revenue_30d = customer_revenue_within(c, at, 30);
    w->revenue_90d = customer_revenue_within(c, at, 90);
}

/* ---- de-duplication ----------------------------------------------------- */

#define DEDUPE_HOUR_BITS 24
#define DEDUPE_HOUR_MASK ((1ULL << DEDUPE_HOUR_BITS) - 1)

uint64_t customer_event_fingerprint(const char *event_id, size_t len, clv_ms ts)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
    uint64_t hour = (uint64_t)(ts / CLV_MS_PER_HOUR) & DEDUPE_HOUR_MASK;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)event_id[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 29; /* fold the well-mixed high bits down before truncating */
    return (h << DEDUPE_HOUR_BITS) | hour;
}

int customer_seen_event(const struct clv_customer *c, uint64_t fp)
{
    for (int i = 0; i < c->ndedupe; i++)
        if ((c->dedupe[i] >> DEDUPE_HOUR_BITS) == (fp >> DEDUPE_HOUR_BITS))
            return 1;
    return 0;
}

/* Keep the ids of the newest events: evict what is older than the window
 * (relative to the newest remembered event), then the oldest. */
void customer_remember_event(struct clv_customer *c, uint64_t fp, clv_ms window, int max_ids)
{
    uint64_t newest = fp & DEDUPE_HOUR_MASK;
    uint64_t window_hours = (uint64_t)(window / CLV_MS_PER_HOUR);
    int n = 0, oldest = -1;

    if (max_ids > CLV_MAX_DEDUPE)
        max_ids = CLV_MAX_DEDUPE;
    for (int i = 0; i < c->ndedupe; i++)
        if ((c->dedupe[i] & DEDUPE_HOUR_MASK) > newest)
            newest = c->dedupe[i] & DEDUPE_HOUR_MASK;
    for (int i = 0; i < c->ndedupe; i++)
        if ((c->dedupe[i] & DEDUPE_HOUR_MASK) + window_hours >= newest)
            c->dedupe[n++] = c->dedupe[i];
    c->ndedupe = (uint8_t)n;
    if ((fp & DEDUPE_HOUR_MASK) + window_hours < newest)
        return;
    if (c->ndedupe >= max_ids) {
        for (int i = 0; i < c->ndedupe; i++)
            if (oldest < 0 ||
                (c->dedupe[i] & DEDUPE_HOUR_MASK) < (c->dedupe[oldest] & DEDUPE_HOUR_MASK))
                oldest = i;
        if ((fp & DEDUPE_HOUR_MASK) < (c->dedupe[oldest] & DEDUPE_HOUR_MASK))
            return; /* older than everything remembered: keep the newer ids */
        c->dedupe[oldest] = c->dedupe[--c->ndedupe];
    }
    c->dedupe[c->ndedupe++] = fp;
}

/* ---- offset marks ---------------------------------------------------------- */

static struct clv_mark *mark_find(struct clv_customer *c, int topic, int32_t partition)
{
    for (int i = 0; i < c->nmarks; i++)
        if (c->marks[i].topic == topic && c->marks[i].partition == partition)
            return &c->marks[i];
    return NULL;
}

int customer_below_mark(const struct clv_customer *c, const struct clv_event *ev, clv_ms window)
{
    const struct clv_mark *m;

    if (ev->src_topic < 0)
        return 0;
    m = mark_find((struct clv_customer *)c, ev->src_topic, ev->src_partition);
    return m && ev->src_offset < m->frontier && m->at + window >= ev->received;
}

static void marks_expire(struct clv_customer *c, clv_ms now, clv_ms window)
{
    int n = 0;

    for (int i = 0; i < c->nmarks; i++)
        if (c->marks[i].at + window >= now)
            c->marks[n++] = c->marks[i];
    c->nmarks = (uint8_t)n;
}

void customer_update_mark(struct clv_customer *c, const struct clv_event *ev, clv_ms window)
{
    struct clv_mark *m;

    if (ev->src_topic < 0 || ev->src_frontier < 0)
        return;
    marks_expire(c, ev->received, window);
    m = mark_find(c, ev->src_topic, ev->src_partition);
    if (m == NULL && c->nmarks == CLV_MAX_MARKS) {
        m = &c->marks[0];
        for (int i = 1; i < c->nmarks; i++)
            if (c->marks[i].at < m->at)
                m = &c->marks[i];
        m->frontier = -1;
    } else if (m == NULL) {
        m = &c->marks[c->nmarks++];
        m->frontier = -1;
    }
    m->topic = ev->src_topic;
    m->partition = ev->src_partition;
    if (ev->src_frontier > m->frontier)
        m->frontier = ev->src_frontier;
    m->at = ev->received;
}

/* ---- codec ----------------------------------------------------------------
 * Little-endian, fixed header then variable parts.  Timestamps are varint
 * deltas where that saves space: most customers fit in ~100 bytes. */

#define CODEC_FORMAT 1

struct wbuf {
    unsigned char *p, *end;
    int overflow;
};

struct rbuf {
    const unsigned char *p, *end;
    int underflow;
};

static void put_bytes(struct wbuf *w, const void *src, size_t n)
{
    if ((size_t)(w->end - w->p) < n) {
        w->overflow = 1;
        return;
    }
    memcpy(w->p, src, n);
    w->p += n;
}

static void put_u64le(struct wbuf *w, uint64_t v)
{
    unsigned char b[8];

    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(w, b, 8);
}

static void put_varint(struct wbuf *w, uint64_t v)
{
    unsigned char b[10];
    size_t n = 0;

    do {
        b[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    put_bytes(w, b, n);
}

/* zig-zag so small negative deltas stay small */
static void put_svarint(struct wbuf *w, int64_t v)
{
    put_varint(w, ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0));
}

static void put_double(struct wbuf *w, double d)
{
    uint64_t v;

    memcpy(&v, &d, 8);
    put_u64le(w, v);
}

static void get_bytes(struct rbuf *r, void *dst, size_t n)
{
    if ((size_t)(r->end - r->p) < n) {
        r->underflow = 1;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, r->p, n);
    r->p += n;
}

static uint64_t get_u64le(struct rbuf *r)
{
    unsigned char b[8];
    uint64_t v = 0;

    get_bytes(r, b, 8);
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static uint64_t get_varint(struct rbuf *r)
{
    uint64_t v = 0;

    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->underflow = 1;
            return 0;
        }
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->underflow = 1;
    return 0;
}

static int64_t get_svarint(struct rbuf *r)
{
    uint64_t v = get_varint(r);

    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static double get_double(struct rbuf *r)
{
    uint64_t v = get_u64le(r);
    double d;

    memcpy(&d, &v, 8);
    return d;
}

/* Times are stored relative to first_seen, which every customer has. */
size_t customer_encode(const struct clv_customer *c, unsigned char *buf, size_t buflen)
{
    struct wbuf w = {buf, buf + buflen, 0};
    size_t chlen = strlen(c->channel);

    put_u64le(&w, c->version);
    put_varint(&w, CODEC_FORMAT);
    put_svarint(&w, c->stage);
    put_svarint(&w, c->tier);
    put_varint(&w, c->seq);
    put_svarint(&w, c->first_seen);
    put_svarint(&w, c->stage_since - c->first_seen);
    put_svarint(&w, c->last_activity - c->first_seen);
    put_svarint(&w, c->first_purchase ? c->first_purchase - c->first_seen + 1 : 0);
    put_svarint(&w, c->last_purchase ? c->last_purchase - c->first_seen + 1 : 0);
    put_varint(&w, c->purchases);
    put_double(&w, c->revenue);
    put_varint(&w, c->logins);
    put_varint(&w, c->visits);
    put_varint(&w, c->purchase_days);
    put_svarint(&w, c->first_pday);
    put_svarint(&w, c->last_pday - c->first_pday);
    put_double(&w, c->first_day_revenue);
    put_svarint(&w, c->active_anchor);
    put_varint(&w, c->active_bits[0]);
    put_varint(&w, c->active_bits[1]);
    put_varint(&w, c->npdays);
    for (int i = 0, prev = c->first_pday; i < c->npdays; i++) {
        put_svarint(&w, c->pdays[i].day - prev);
        put_varint(&w, c->pdays[i].count);
        put_double(&w, c->pdays[i].revenue);
        prev = c->pdays[i].day;
    }
    put_varint(&w, c->ndedupe);
    for (int i = 0; i < c->ndedupe; i++)
        put_u64le(&w, c->dedupe[i]);
    put_varint(&w, c->nmarks);
    for (int i = 0; i < c->nmarks; i++) {
        put_varint(&w, (uint64_t)c->marks[i].topic);
        put_varint(&w, (uint64_t)c->marks[i].partition);
        put_varint(&w, (uint64_t)c->marks[i].frontier);
        put_varint(&w, (uint64_t)c->marks[i].at);
    }
    put_svarint(&w, c->pdays_from);
    put_varint(&w, chlen);
    put_bytes(&w, c->channel, chlen);
    if (chlen)
        put_svarint(&w, c->channel_ts - c->first_seen);
    return w.overflow ? 0 : (size_t)(w.p - buf);
}

static int decode_fail(char *err, size_t errlen, const char *what)
{
    clv_seterr(err, errlen, "corrupt customer state: %s", what);
    return -1;
}

/* Deltas are added with wrap-around arithmetic (no undefined behaviour on
 * corrupt input) and the results range-checked afterwards. */
static clv_ms add_ms(clv_ms base, int64_t delta)
{
    return (clv_ms)((uint64_t)base + (uint64_t)delta);
}

static int32_t add_day(int32_t base, int64_t delta)
{
    return (int32_t)(uint32_t)((uint64_t)(uint32_t)base + (uint64_t)delta);
}

static int time_ok(clv_ms t)
{
    return t >= 0 && t <= CLV_EVENT_TS_MAX;
}

static int day_ok(int32_t d)
{
    return d >= 0 && d <= (int32_t)(CLV_EVENT_TS_MAX / CLV_MS_PER_DAY);
}

static void decode_times(struct clv_customer *c, struct rbuf *r)
{
    int64_t d;

    c->first_seen = get_svarint(r);
    c->stage_since = add_ms(c->first_seen, get_svarint(r));
    c->last_activity = add_ms(c->first_seen, get_svarint(r));
    d = get_svarint(r);
    c->first_purchase = d ? add_ms(c->first_seen, d - 1) : 0;
    d = get_svarint(r);
    c->last_purchase = d ? add_ms(c->first_seen, d - 1) : 0;
}

static int decode_pdays(struct clv_customer *c, struct rbuf *r, char *err, size_t errlen)
{
    uint64_t n = get_varint(r);
    int32_t prev = c->first_pday;

    if (n > CLV_MAX_PDAYS)
        return decode_fail(err, errlen, "too many purchase days");
    c->npdays = (uint16_t)n;
    for (int i = 0; i < c->npdays; i++) {
        c->pdays[i].day = add_day(prev, get_svarint(r));
        c->pdays[i].count = (uint16_t)get_varint(r);
        c->pdays[i].revenue = get_double(r);
        if (!day_ok(c->pdays[i].day) || (i > 0 && c->pdays[i].day <= prev))
            return decode_fail(err, errlen, "purchase days out of order");
        prev = c->pdays[i].day;
    }
    return 0;
}

static int decode_dedupe(struct clv_customer *c, struct rbuf *r, char *err, size_t errlen)
{
    uint64_t n = get_varint(r);

    if (n > CLV_MAX_DEDUPE)
        return decode_fail(err, errlen, "too many event ids");
    c->ndedupe = (uint8_t)n;
    for (int i = 0; i < c->ndedupe; i++)
        c->dedupe[i] = get_u64le(r);
    n = get_varint(r);
    if (n > CLV_MAX_MARKS)
        return decode_fail(err, errlen, "too many offset marks");
    c->nmarks = (uint8_t)n;
    for (int i = 0; i < c->nmarks; i++) {
        uint64_t topic = get_varint(r), part = get_varint(r);
        c->marks[i].frontier = (int64_t)get_varint(r);
        c->marks[i].at = (clv_ms)get_varint(r);
        if (topic > 2 || part > INT32_MAX)
            return decode_fail(err, errlen, "bad offset mark");
        c->marks[i].topic = (int8_t)topic;
        c->marks[i].partition = (int32_t)part;
    }
    c->pdays_from = (int32_t)get_svarint(r);
    return 0;
}

static int decode_channel(struct clv_customer *c, struct rbuf *r, char *err, size_t errlen)
{
    uint64_t n = get_varint(r);

    if (n > CLV_CHANNEL_MAX)
        return decode_fail(err, errlen, "channel too long");
    get_bytes(r, c->channel, n);
    c->channel[n] = '\0';
    if (n)
        c->channel_ts = add_ms(c->first_seen, get_svarint(r));
    return 0;
}

static int decode_body(struct clv_customer *c, struct rbuf *r, char *err, size_t errlen)
{
    int64_t stage = get_svarint(r), tier = get_svarint(r);

    if (stage < CLV_STAGE_NONE || stage >= CLV_STAGE_COUNT)
        return decode_fail(err, errlen, "unknown stage");
    if (tier < 0 || tier >= CLV_MAX_TIERS)
        return decode_fail(err, errlen, "unknown tier");
    c->stage = (int8_t)stage;
    c->tier = (int8_t)tier;
    c->seq = (uint32_t)get_varint(r);
    decode_times(c, r);
    c->purchases = (uint32_t)get_varint(r);
    c->revenue = get_double(r);
    c->logins = (uint32_t)get_varint(r);
    c->visits = (uint32_t)get_varint(r);
    c->purchase_days = (uint32_t)get_varint(r);
    c->first_pday = (int32_t)get_svarint(r);
    c->last_pday = add_day(c->first_pday, get_svarint(r));
    c->first_day_revenue = get_double(r);
    c->active_anchor = (int32_t)get_svarint(r);
    c->active_bits[0] = get_varint(r);
    c->active_bits[1] = get_varint(r);
    if (decode_pdays(c, r, err, errlen) != 0 || decode_dedupe(c, r, err, errlen) != 0 ||
        decode_channel(c, r, err, errlen) != 0)
        return -1;
    if (!time_ok(c->first_seen) || !time_ok(c->stage_since) || !time_ok(c->last_activity) ||
        !time_ok(c->first_purchase) || !time_ok(c->last_purchase) || !time_ok(c->channel_ts) ||
        !day_ok(c->first_pday) || !day_ok(c->last_pday))
        return decode_fail(err, errlen, "time out of range");
    return 0;
}

int customer_decode(struct clv_customer *c, const unsigned char *buf, size_t len, char *err,
                    size_t errlen)
{
    struct rbuf r = {buf, buf + len, 0};
    uint64_t format;

    customer_init(c);
    c->version = get_u64le(&r);
    format = get_varint(&r);
    if (r.underflow)
        return decode_fail(err, errlen, "truncated header");
    if (format != CODEC_FORMAT) {
        clv_seterr(err, errlen, "customer state has format %llu, this clvd reads %d",
                   (unsigned long long)format, CODEC_FORMAT);
        return -1;
    }
    if (decode_body(c, &r, err, errlen) != 0)
        return -1;
    if (r.underflow)
        return decode_fail(err, errlen, "truncated");
    if (r.p != r.end)
        return decode_fail(err, errlen, "trailing bytes");
    return 0;
}

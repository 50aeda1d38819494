/* json_parse_bench.c -- which JSON library should clvd use for input events?
 *
 * Generates a realistic corpus of SPEC section 3 input events (default
 * 200 000 messages: 60 % visits, 30 % logins, 10 % purchases; ts as RFC 3339
 * string or epoch-ms integer; order_id, channel, currency and unknown fields,
 * some nested, some with \u escapes) and parses it with jansson, json-c, cJSON
 * and yajl, extracting the fields clvd needs (event_id, customer_id, ts, type,
 * amount, channel) into a fixed struct, the way event.c has to.  Each library
 * is run 3 times over the whole corpus and the best run is reported.  A
 * checksum of the extracted fields must agree between libraries, so that a
 * library cannot win by skipping work.
 *
 * Standalone (no clvd headers).  Build and run: bench/json_parse_bench.sh
 *   gcc -O2 -std=gnu11 bench/json_parse_bench.c -o json_parse_bench \
 *       -ljansson -ljson-c -lcjson -lyajl
 *   ./json_parse_bench [messages]
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <jansson.h>
#include <yajl/yajl_parse.h>

/* json-c's and jansson's headers cannot share a translation unit (both
 * define json_type, json_object, json_object_get ...; the shared libraries
 * are symbol-versioned, so linking both is fine).  The json-c 0.16 functions
 * used are declared here, copied from <json-c/json_object.h> and
 * <json-c/json_tokener.h>. */
struct json_object;
struct json_tokener;
enum json_type {
    json_type_null,
    json_type_boolean,
    json_type_double,
    json_type_int,
    json_type_object,
    json_type_array,
    json_type_string
};
extern struct json_tokener *json_tokener_new(void);
extern void json_tokener_free(struct json_tokener *tok);
extern void json_tokener_reset(struct json_tokener *tok);
extern struct json_object *json_tokener_parse_ex(struct json_tokener *tok, const char *str,
                                                 int len);
extern size_t json_tokener_get_parse_end(struct json_tokener *tok);
extern int json_object_put(struct json_object *obj);
extern int json_object_is_type(const struct json_object *obj, enum json_type type);
extern int json_object_object_get_ex(const struct json_object *obj, const char *key,
                                     struct json_object **value);
extern const char *json_object_get_string(struct json_object *obj);
extern int json_object_get_string_len(const struct json_object *obj);
extern int64_t json_object_get_int64(const struct json_object *obj);
extern double json_object_get_double(const struct json_object *obj);

#define RUNS 3
#define ID_MAX 128
#define CHANNEL_MAX 64
#define TS_MAX 64
#define TYPE_MAX 16

/* ---- what every parser must extract ---------------------------------- */

enum ts_kind { TS_NONE, TS_STRING, TS_INT, TS_OTHER };

struct fields {
    char event_id[ID_MAX + 1];
    size_t event_id_len;
    char customer_id[ID_MAX + 1];
    size_t customer_id_len;
    enum ts_kind ts_kind;
    char ts_str[TS_MAX + 1];
    size_t ts_len;
    long long ts_int;
    char type[TYPE_MAX + 1];
    size_t type_len;
    int has_amount;
    double amount;
    char channel[CHANNEL_MAX + 1];
    size_t channel_len;
};

/* Bounded copy with the true length kept, as event.c does (it reports
 * "too long" from the length, so the copy itself may truncate). */
static void copy_str(char *dst, size_t cap, size_t *dlen, const char *s, size_t n)
{
    size_t c = n < cap ? n : cap;

    memcpy(dst, s, c);
    dst[c] = '\0';
    *dlen = n;
}

static void set_ts_string(struct fields *f, const char *s, size_t n)
{
    f->ts_kind = TS_STRING;
    copy_str(f->ts_str, TS_MAX, &f->ts_len, s, n);
}

/* Number text -> fields.  Used by yajl's raw-number callback; the DOM
 * libraries convert numbers themselves while parsing. */
static void set_number_text(struct fields *f, int is_ts, const char *s, size_t n)
{
    char tmp[64];
    size_t c = n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1;

    memcpy(tmp, s, c);
    tmp[c] = '\0';
    if (is_ts) {
        if (memchr(s, '.', n) || memchr(s, 'e', n) || memchr(s, 'E', n)) {
            f->ts_kind = TS_OTHER;
            return;
        }
        f->ts_kind = TS_INT;
        f->ts_int = strtoll(tmp, NULL, 10);
    } else {
        f->has_amount = 1;
        f->amount = strtod(tmp, NULL);
    }
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static uint64_t fields_hash(uint64_t h, const struct fields *f)
{
    long long cents = f->has_amount ? (long long)(f->amount * 100.0 + 0.5) : -1;

    h = fnv(h, f->event_id, strlen(f->event_id));
    h = fnv(h, f->customer_id, strlen(f->customer_id));
    h = fnv(h, &f->ts_kind, sizeof(f->ts_kind));
    if (f->ts_kind == TS_STRING)
        h = fnv(h, f->ts_str, f->ts_len);
    else if (f->ts_kind == TS_INT)
        h = fnv(h, &f->ts_int, sizeof(f->ts_int));
    h = fnv(h, f->type, strlen(f->type));
    h = fnv(h, &cents, sizeof(cents));
    return fnv(h, f->channel, strlen(f->channel));
}

/* ---- corpus ---------------------------------------------------------- */

struct corpus {
    char *data;
    size_t *off;
    size_t *len;
    size_t n;
    size_t bytes;
};

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: deterministic corpus, same on every machine */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static const char *const CHANNELS[] = {"search",    "social",  "email",   "direct",
                                       "affiliate", "display", "referral"};
static const char *const AGENTS[] = {
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15",
    "clv-loadgen/1.0"};

static int gen_ts(char *p, size_t cap, uint64_t *s)
{
    long long ms = 1735689600000LL + (long long)(rng_next(s) % (365LL * 86400000LL));
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];

    if (rng_next(s) % 2)
        return snprintf(p, cap, "%lld", ms);
    gmtime_r(&sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    switch (rng_next(s) % 3) {
    case 0:
        return snprintf(p, cap, "\"%s.%03dZ\"", base, (int)(ms % 1000));
    case 1:
        return snprintf(p, cap, "\"%sZ\"", base);
    default:
        return snprintf(p, cap, "\"%s.%03d+00:00\"", base, (int)(ms % 1000));
    }
}

/* One message.  Field order varies a little, like real producers. */
static int gen_message(char *p, size_t cap, uint64_t *s)
{
    unsigned r = (unsigned)(rng_next(s) % 10);
    const char *type = r == 0 ? "purchase" : r <= 3 ? "login" : "visit";
    unsigned cust = (unsigned)(rng_next(s) % 100000);
    uint64_t id = rng_next(s);
    char ts[64], cid[64], extra[256] = "";
    int n = 0;

    gen_ts(ts, sizeof(ts), s);
    if (rng_next(s) % 50 == 0)
        snprintf(cid, sizeof(cid), "k\\u00fcnde-%u", cust); /* escaped non-ASCII */
    else
        snprintf(cid, sizeof(cid), "c%06u", cust);
    if (rng_next(s) % 4 == 0)
        snprintf(extra, sizeof(extra),
                 ",\"session\":{\"id\":\"s-%08x\",\"pages\":[1,2,3],\"ref\":null}"
                 ",\"ab\":[\"ctl\",true,0.5]",
                 (unsigned)id);
    n += snprintf(p + n, cap - (size_t)n,
                  "{\"event_id\":\"%08x-%04x-4%03x-a%03x-%012llx\",\"customer_id\":\"%s\",",
                  (unsigned)(id >> 32), (unsigned)(id >> 16) & 0xffff, (unsigned)id & 0xfff,
                  (unsigned)(id >> 4) & 0xfff, (unsigned long long)(rng_next(s) >> 16), cid);
    if (rng_next(s) % 10 < 7)
        n += snprintf(p + n, cap - (size_t)n, "\"type\":\"%s\",", type);
    n += snprintf(p + n, cap - (size_t)n, "\"ts\":%s", ts);
    if (r == 0)
        n += snprintf(p + n, cap - (size_t)n,
                      ",\"order_id\":\"o-%llu\",\"amount\":%u.%02u,\"currency\":\"EUR\"",
                      (unsigned long long)(rng_next(s) % 100000000), (unsigned)(rng_next(s) % 500),
                      (unsigned)(rng_next(s) % 100));
    if (rng_next(s) % 2)
        n += snprintf(p + n, cap - (size_t)n, ",\"channel\":\"%s\"",
                      CHANNELS[rng_next(s) % (sizeof(CHANNELS) / sizeof(CHANNELS[0]))]);
    n += snprintf(p + n, cap - (size_t)n, ",\"user_agent\":\"%s\"%s}",
                  AGENTS[rng_next(s) % (sizeof(AGENTS) / sizeof(AGENTS[0]))], extra);
    return n;
}

static int corpus_build(struct corpus *c, size_t n)
{
    size_t cap = n * 512;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;

    c->data = malloc(cap);
    c->off = malloc(n * sizeof(size_t));
    c->len = malloc(n * sizeof(size_t));
    if (!c->data || !c->off || !c->len)
        return -1;
    c->n = n;
    c->bytes = 0;
    for (size_t i = 0; i < n; i++) {
        int m = gen_message(c->data + c->bytes, cap - c->bytes, &seed);

        c->off[i] = c->bytes;
        c->len[i] = (size_t)m;
        c->bytes += (size_t)m;
    }
    return 0;
}

/* ---- field names (shared by the extractors) ------------------------- */

enum field_id { F_NONE, F_EVENT_ID, F_CUSTOMER_ID, F_TS, F_TYPE, F_AMOUNT, F_CHANNEL };

static enum field_id field_of(const char *k, size_t n)
{
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(k, lit, n) == 0)
    if (IS("event_id"))
        return F_EVENT_ID;
    if (IS("customer_id"))
        return F_CUSTOMER_ID;
    if (IS("ts"))
        return F_TS;
    if (IS("type"))
        return F_TYPE;
    if (IS("amount"))
        return F_AMOUNT;
    if (IS("channel"))
        return F_CHANNEL;
    return F_NONE;
#undef IS
}

static void store_string(struct fields *f, enum field_id id, const char *s, size_t n)
{
    switch (id) {
    case F_EVENT_ID:
        copy_str(f->event_id, ID_MAX, &f->event_id_len, s, n);
        break;
    case F_CUSTOMER_ID:
        copy_str(f->customer_id, ID_MAX, &f->customer_id_len, s, n);
        break;
    case F_TS:
        set_ts_string(f, s, n);
        break;
    case F_TYPE:
        copy_str(f->type, TYPE_MAX, &f->type_len, s, n);
        break;
    case F_CHANNEL:
        copy_str(f->channel, CHANNEL_MAX, &f->channel_len, s, n);
        break;
    default:
        break;
    }
}

/* ---- jansson (DOM) ---------------------------------------------------- */

static int parse_jansson(void *state, const char *m, size_t n, struct fields *f)
{
    json_error_t err;
    json_t *root = json_loadb(m, n, 0, &err);
    static const char *const keys[] = {"event_id", "customer_id", "ts",
                                       "type",     "amount",      "channel"};

    (void)state;
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(root, keys[i]);
        enum field_id id = field_of(keys[i], strlen(keys[i]));

        if (!v)
            continue;
        if (json_is_string(v))
            store_string(f, id, json_string_value(v), json_string_length(v));
        else if (id == F_TS && json_is_integer(v)) {
            f->ts_kind = TS_INT;
            f->ts_int = json_integer_value(v);
        } else if (id == F_TS)
            f->ts_kind = TS_OTHER;
        else if (id == F_AMOUNT && json_is_number(v)) {
            f->has_amount = 1;
            f->amount = json_number_value(v);
        }
    }
    json_decref(root);
    return 0;
}

/* ---- json-c (DOM, reusable tokener) ---------------------------------- */

static int parse_jsonc(void *state, const char *m, size_t n, struct fields *f)
{
    struct json_tokener *tok = state;
    struct json_object *root, *v;
    static const char *const keys[] = {"event_id", "customer_id", "ts",
                                       "type",     "amount",      "channel"};

    json_tokener_reset(tok);
    root = json_tokener_parse_ex(tok, m, (int)n);
    if (!root || json_tokener_get_parse_end(tok) != n ||
        !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return -1;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        enum field_id id = field_of(keys[i], strlen(keys[i]));

        if (!json_object_object_get_ex(root, keys[i], &v) || !v)
            continue;
        if (json_object_is_type(v, json_type_string))
            store_string(f, id, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        else if (id == F_TS && json_object_is_type(v, json_type_int)) {
            f->ts_kind = TS_INT;
            f->ts_int = json_object_get_int64(v);
        } else if (id == F_TS)
            f->ts_kind = TS_OTHER;
        else if (id == F_AMOUNT && (json_object_is_type(v, json_type_double) ||
                                    json_object_is_type(v, json_type_int))) {
            f->has_amount = 1;
            f->amount = json_object_get_double(v);
        }
    }
    json_object_put(root);
    return 0;
}

/* ---- cJSON (DOM) ------------------------------------------------------ */

static int parse_cjson(void *state, const char *m, size_t n, struct fields *f)
{
    cJSON *root = cJSON_ParseWithLength(m, n);
    static const char *const keys[] = {"event_id", "customer_id", "ts",
                                       "type",     "amount",      "channel"};

    (void)state;
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return -1;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        enum field_id id = field_of(keys[i], strlen(keys[i]));

        if (!v)
            continue;
        if (cJSON_IsString(v))
            store_string(f, id, v->valuestring, strlen(v->valuestring));
        else if (id == F_TS && cJSON_IsNumber(v)) {
            /* cJSON keeps every number as a double; an integer ts must be
             * recovered (exact below 2^53, fine for epoch ms). */
            double d = v->valuedouble;

            if (d == (double)(long long)d) {
                f->ts_kind = TS_INT;
                f->ts_int = (long long)d;
            } else
                f->ts_kind = TS_OTHER;
        } else if (id == F_TS)
            f->ts_kind = TS_OTHER;
        else if (id == F_AMOUNT && cJSON_IsNumber(v)) {
            f->has_amount = 1;
            f->amount = v->valuedouble;
        }
    }
    cJSON_Delete(root);
    return 0;
}

/* ---- yajl (event callbacks, extract only what is needed) ------------- */

struct yctx {
    struct fields *f;
    int depth;             /* 1 = inside the top-level object */
    enum field_id pending; /* key just seen at depth 1 */
};

static int y_null(void *c)
{
    ((struct yctx *)c)->pending = F_NONE;
    return 1;
}

static int y_bool(void *c, int b)
{
    (void)b;
    return y_null(c);
}

static int y_number(void *c, const char *s, size_t n)
{
    struct yctx *y = c;

    if (y->depth == 1 && y->pending == F_TS)
        set_number_text(y->f, 1, s, n);
    else if (y->depth == 1 && y->pending == F_AMOUNT)
        set_number_text(y->f, 0, s, n);
    y->pending = F_NONE;
    return 1;
}

static int y_string(void *c, const unsigned char *s, size_t n)
{
    struct yctx *y = c;

    if (y->depth == 1)
        store_string(y->f, y->pending, (const char *)s, n);
    y->pending = F_NONE;
    return 1;
}

static int y_key(void *c, const unsigned char *k, size_t n)
{
    struct yctx *y = c;

    y->pending = y->depth == 1 ? field_of((const char *)k, n) : F_NONE;
    return 1;
}

static int y_open(void *c)
{
    struct yctx *y = c;

    if (y->depth == 1 && y->pending == F_TS)
        y->f->ts_kind = TS_OTHER;
    y->pending = F_NONE;
    y->depth++;
    return 1;
}

static int y_close(void *c)
{
    ((struct yctx *)c)->depth--;
    return 1;
}

static const yajl_callbacks YCB = {
    .yajl_null = y_null,
    .yajl_boolean = y_bool,
    .yajl_number = y_number,
    .yajl_string = y_string,
    .yajl_start_map = y_open,
    .yajl_map_key = y_key,
    .yajl_end_map = y_close,
    .yajl_start_array = y_open,
    .yajl_end_array = y_close,
};

/* yajl 2.1 has no reset: the straightforward use allocates a handle per
 * message. */
static int parse_yajl(void *state, const char *m, size_t n, struct fields *f)
{
    struct yctx y = {.f = f};
    yajl_handle h = yajl_alloc(&YCB, NULL, &y);
    int ok;

    (void)state;
    ok = yajl_parse(h, (const unsigned char *)m, n) == yajl_status_ok &&
         yajl_complete_parse(h) == yajl_status_ok;
    yajl_free(h);
    return ok ? 0 : -1;
}

/* Reusing one handle: with yajl_allow_multiple_values a handle that finished
 * a value accepts the next one, so a clean parse leaves it ready. */
struct yreuse {
    yajl_handle h;
    struct yctx y;
};

static int parse_yajl_reuse(void *state, const char *m, size_t n, struct fields *f)
{
    struct yreuse *r = state;

    r->y = (struct yctx){.f = f};
    if (yajl_parse(r->h, (const unsigned char *)m, n) != yajl_status_ok ||
        yajl_complete_parse(r->h) != yajl_status_ok)
        return -1; /* a real user would re-create the handle here */
    return 0;
}

/* Strict UTF-8 check of the whole message, as event.c runs it before yajl
 * (yajl's own check accepts overlongs and surrogates), with the same
 * 8-bytes-at-a-time ASCII fast path. */
static int utf8_strict(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c;
        size_t k;
        unsigned cp, min;

        for (; i + 8 <= n; i += 8) {
            uint64_t w;

            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
        }
        while (i < n && s[i] < 0x80)
            i++;
        if (i == n)
            break;
        c = s[i];
        if (c >= 0xc2 && c <= 0xdf)
            k = 1, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            k = 2, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            k = 3, cp = c & 0x07, min = 0x10000;
        else
            return 0;
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* What clvd runs: strict UTF-8 pre-pass, then a reused handle with yajl's
 * weaker UTF-8 check switched off. */
static int parse_yajl_clvd(void *state, const char *m, size_t n, struct fields *f)
{
    if (!utf8_strict((const unsigned char *)m, n))
        return -1;
    return parse_yajl_reuse(state, m, n, f);
}

static int parse_utf8_only(void *state, const char *m, size_t n, struct fields *f)
{
    (void)state;
    (void)f;
    return utf8_strict((const unsigned char *)m, n) ? 0 : -1;
}

/* ---- driver ----------------------------------------------------------- */

typedef int (*parse_fn)(void *state, const char *m, size_t n, struct fields *f);

struct bench {
    const char *name;
    parse_fn fn;
    void *state;
};

struct result {
    const char *name;
    double best_s;
    uint64_t hash;
    size_t failures;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One pass over the corpus; keeps the best time in r. */
static void run_once(struct result *r, const struct bench *b, const struct corpus *c)
{
    uint64_t h = 1469598103934665603ULL;
    size_t failures = 0;
    double t0 = now_s(), dt;

    for (size_t i = 0; i < c->n; i++) {
        struct fields f;

        /* a fixed-size struct reset, as clvd does per message */
        memset(&f, 0, sizeof(f));
        if (b->fn(b->state, c->data + c->off[i], c->len[i], &f) != 0)
            failures++;
        h = fields_hash(h, &f);
    }
    dt = now_s() - t0;
    if (dt < r->best_s)
        r->best_s = dt;
    r->hash = h;
    r->failures = failures;
}

static void print_result(const struct result *r, const struct corpus *c, double base_s)
{
    printf("%-28s %12.0f %10.0f %9.1f %8.2fx  %016llx %zu\n", r->name, (double)c->n / r->best_s,
           r->best_s * 1e9 / (double)c->n, (double)c->bytes / r->best_s / 1e6, r->best_s / base_s,
           (unsigned long long)r->hash, r->failures);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    struct corpus c;
    struct json_tokener *tok = json_tokener_new();
    struct yreuse yr = {0}, yc = {0};
    struct result res[8];
    size_t nres = 0;
    double best = 1e30;

    if (n == 0 || corpus_build(&c, n) != 0 || !tok) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    yr.h = yajl_alloc(&YCB, NULL, &yr.y);
    yajl_config(yr.h, yajl_allow_multiple_values, 1);
    yc.h = yajl_alloc(&YCB, NULL, &yc.y);
    yajl_config(yc.h, yajl_allow_multiple_values, 1);
    yajl_config(yc.h, yajl_dont_validate_strings, 1);
    printf("corpus: %zu messages, %zu bytes (avg %.0f B/message), best of %d runs\n", c.n, c.bytes,
           (double)c.bytes / (double)c.n, RUNS);
    printf("sample: %.*s\n\n", (int)c.len[0], c.data + c.off[0]);

    {
        const struct bench benches[] = {
            {"jansson 2.14", parse_jansson, NULL},
            {"json-c 0.16 (reused tokener)", parse_jsonc, tok},
            {"cJSON 1.7.15", parse_cjson, NULL},
            {"yajl 2.1 (handle/message)", parse_yajl, NULL},
            {"yajl 2.1 (reused handle)", parse_yajl_reuse, &yr},
            {"yajl as clvd uses it (*)", parse_yajl_clvd, &yc},
            {"(strict UTF-8 pre-pass)", parse_utf8_only, NULL},
        };

        nres = sizeof(benches) / sizeof(benches[0]);
        for (size_t i = 0; i < nres; i++)
            res[i] = (struct result){.name = benches[i].name, .best_s = 1e30};
        /* round-robin, so a burst of noise on a shared machine hits one run
         * of every library rather than all runs of one */
        for (int run_no = 0; run_no < RUNS; run_no++)
            for (size_t i = 0; i < nres; i++)
                run_once(&res[i], &benches[i], &c);
    }
    for (size_t i = 0; i + 1 < nres; i++) /* the UTF-8 row is not a parser */
        if (res[i].best_s < best)
            best = res[i].best_s;
    res[nres - 1].hash = res[0].hash; /* extracts nothing */
    res[nres - 1].failures = 0;

    printf("%-28s %12s %10s %9s %9s  %-16s %s\n", "library", "messages/s", "ns/message", "MB/s",
           "vs best", "fields checksum", "failures");
    for (size_t i = 0; i < nres; i++)
        print_result(&res[i], &c, best);
    for (size_t i = 1; i < nres; i++)
        if (res[i].hash != res[0].hash || res[i].failures != 0) {
            fprintf(stderr, "MISMATCH: %s extracted different fields\n", res[i].name);
            return 1;
        }
    printf("\nall libraries extracted identical fields\n"
           "(*) strict UTF-8 pre-pass + reused handle, yajl's own UTF-8 check off\n");
    json_tokener_free(tok);
    yajl_free(yr.h);
    yajl_free(yc.h);
    free(c.data);
    free(c.off);
    free(c.len);
    return 0;
}

/* loadgen.c -- synthetic customers from BG/NBD and Gamma-Gamma.  See
 * loadgen.h and docs/clv.md ("loadgen").
 *
 * Time inside the generator is in days since params.start (double).  The
 * customers that have arrived and may still emit events sit in a binary
 * min-heap keyed by their next event time; arrivals come from two streams of
 * sorted uniform times (buyers, prospects) generated one at a time, so a run
 * never holds more than the customers active at once.  Every customer owns
 * two splitmix64 streams (purchases; logins and visits) derived from the
 * seed and its index, so its purchases do not depend on anything else. */
#include "loadgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clv.h"

#define LG_DAY_MS ((double)CLV_MS_PER_DAY)
#define LG_MAX_CUSTOMERS 1000000000u
#define LG_MAX_DAYS 36525.0 /* 100 years */
#define LG_SIMPSON_INTERVALS 64
#define LG_ID_MIN_DIGITS 6

/* ---- random numbers ------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t loadgen_splitmix64(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return mix64(*state);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void loadgen_rng_seed(struct loadgen_rng *g, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        g->s[i] = loadgen_splitmix64(&seed); /* never all zero */
}

uint64_t loadgen_rng_next(struct loadgen_rng *g)
{
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* The two generators behind the bits-function interface. */
static uint64_t bits_xoshiro(void *state)
{
    return loadgen_rng_next(state);
}

static uint64_t bits_splitmix(void *state)
{
    return loadgen_splitmix64(state);
}

double loadgen_uniform(loadgen_bits_fn bits, void *state)
{
    /* 53 random bits, centred in their cell: never 0, never 1 */
    return ((double)(bits(state) >> 11) + 0.5) * 0x1.0p-53;
}

double loadgen_normal(loadgen_bits_fn bits, void *state)
{
    /* Box-Muller, one of the pair */
    double u1 = loadgen_uniform(bits, state), u2 = loadgen_uniform(bits, state);

    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double loadgen_exponential(loadgen_bits_fn bits, void *state)
{
    return -log(loadgen_uniform(bits, state));
}

/* Marsaglia & Tsang, "A simple method for generating gamma variables"
 * (ACM TOMS 26(3), 2000), for shape >= 1. */
static double gamma_mt(loadgen_bits_fn bits, void *state, double shape)
{
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);

    for (;;) {
        double x = loadgen_normal(bits, state), v = 1.0 + c * x, u;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        u = loadgen_uniform(bits, state);
        if (u < 1.0 - 0.0331 * (x * x) * (x * x))
            return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return d * v;
    }
}

double loadgen_gamma(loadgen_bits_fn bits, void *state, double shape)
{
    if (shape < 1.0) {
        /* Gamma(k) = Gamma(k + 1) U^(1/k), the power taken in logs */
        double g = gamma_mt(bits, state, shape + 1.0);
        return g * exp(log(loadgen_uniform(bits, state)) / shape);
    }
    return gamma_mt(bits, state, shape);
}

double loadgen_beta(loadgen_bits_fn bits, void *state, double a, double b)
{
    for (;;) {
        double x = loadgen_gamma(bits, state, a), y = loadgen_gamma(bits, state, b);
        if (x + y > 0.0) /* both can underflow for tiny shapes */
            return x / (x + y);
    }
}

/* ---- parameters ---------------------------------------------------------- */

static const char *const channel_names[LOADGEN_NCHANNELS] = {"search", "social", "email", "direct"};

const char *loadgen_channel_name(enum loadgen_channel c)
{
    return c < LOADGEN_NCHANNELS ? channel_names[c] : "";
}

void loadgen_params_default(struct loadgen_params *p)
{
    memset(p, 0, sizeof(*p));
    p->seed = 1;
    p->customers = 100000;
    p->days = 365.0;
    p->model = (struct loadgen_model){.r = 0.243,
                                      .alpha = 4.414,
                                      .a = 0.793,
                                      .b = 2.426,
                                      .time_unit_days = 7.0,
                                      .p = 6.25,
                                      .q = 3.74,
                                      .gamma = 15.44};
    p->mode = LOADGEN_MIX;
    p->mix[LOADGEN_MIX_VISITS] = 60.0;
    p->mix[LOADGEN_MIX_LOGINS] = 30.0;
    p->mix[LOADGEN_MIX_PURCHASES] = 10.0;
    p->prospect_share = 0.2;
    p->channel_weights[LOADGEN_SEARCH] = 0.35;
    p->channel_weights[LOADGEN_SOCIAL] = 0.25;
    p->channel_weights[LOADGEN_EMAIL] = 0.15;
    p->channel_weights[LOADGEN_DIRECT] = 0.25;
}

static int positive_finite(double v)
{
    return isfinite(v) && v > 0.0;
}

static int nonnegative_finite(double v)
{
    return isfinite(v) && v >= 0.0;
}

static int check_model(const struct loadgen_model *m, char *err, size_t errlen)
{
    const struct {
        const char *name;
        double v;
    } pos[] = {{"r", m->r},         {"alpha", m->alpha},
               {"a", m->a},         {"b", m->b},
               {"p", m->p},         {"q", m->q},
               {"gamma", m->gamma}, {"time_unit_days", m->time_unit_days}};

    for (size_t i = 0; i < CLV_ARRAY_LEN(pos); i++) {
        if (!positive_finite(pos[i].v)) {
            clv_seterr(err, errlen, "loadgen: model %s must be a positive number, not %g",
                       pos[i].name, pos[i].v);
            return -1;
        }
    }
    return 0;
}

static int check_period(const struct loadgen_params *p, char *err, size_t errlen)
{
    if (p->customers == 0 || p->customers > LG_MAX_CUSTOMERS) {
        clv_seterr(err, errlen, "loadgen: customers must be within 1..%u, not %u", LG_MAX_CUSTOMERS,
                   p->customers);
        return -1;
    }
    if (!positive_finite(p->days) || p->days > LG_MAX_DAYS) {
        clv_seterr(err, errlen, "loadgen: days must be within (0, %g], not %g", LG_MAX_DAYS,
                   p->days);
        return -1;
    }
    if (!(nonnegative_finite(p->acquisition_days) && p->acquisition_days <= p->days)) {
        clv_seterr(err, errlen, "loadgen: acquisition_days must be within 0..days (%g), not %g",
                   p->days, p->acquisition_days);
        return -1;
    }
    if (p->start < 0 || p->start + (clv_ms)(p->days * LG_DAY_MS) > CLV_EVENT_TS_MAX) {
        clv_seterr(err, errlen, "loadgen: the period must lie within 1970..9999");
        return -1;
    }
    return 0;
}

static int check_mix(const struct loadgen_params *p, char *err, size_t errlen)
{
    if (p->mode != LOADGEN_MODEL && p->mode != LOADGEN_MIX) {
        clv_seterr(err, errlen, "loadgen: unknown mode %d", (int)p->mode);
        return -1;
    }
    if (p->mode == LOADGEN_MIX) {
        for (int i = 0; i < 3; i++) {
            if (!nonnegative_finite(p->mix[i])) {
                clv_seterr(err, errlen, "loadgen: mix shares must be numbers >= 0");
                return -1;
            }
        }
        if (!(p->mix[LOADGEN_MIX_PURCHASES] > 0.0)) {
            clv_seterr(err, errlen, "loadgen: the mix needs purchases (every buyer makes one)");
            return -1;
        }
        if (!(p->prospect_share >= 0.0 && p->prospect_share < 1.0)) {
            clv_seterr(err, errlen, "loadgen: prospect_share must be within [0, 1), not %g",
                       p->prospect_share);
            return -1;
        }
    }
    if (!nonnegative_finite(p->login_rate) || !nonnegative_finite(p->visit_rate)) {
        clv_seterr(err, errlen, "loadgen: login_rate and visit_rate must be numbers >= 0");
        return -1;
    }
    return 0;
}

static int check_ids_and_channels(const struct loadgen_params *p, char *err, size_t errlen)
{
    double sum = 0.0;
    size_t len = strnlen(p->id_prefix, sizeof(p->id_prefix));

    if (len == sizeof(p->id_prefix)) {
        clv_seterr(err, errlen, "loadgen: id prefix longer than %zu bytes",
                   sizeof(p->id_prefix) - 1);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p->id_prefix[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' || ch == ',') {
            clv_seterr(err, errlen,
                       "loadgen: id prefix may hold printable ASCII only "
                       "(no blank, quote, backslash or comma)");
            return -1;
        }
    }
    for (int i = 0; i < LOADGEN_NCHANNELS; i++) {
        if (!nonnegative_finite(p->channel_weights[i])) {
            clv_seterr(err, errlen, "loadgen: channel weights must be numbers >= 0");
            return -1;
        }
        sum += p->channel_weights[i];
    }
    if (!(sum > 0.0)) {
        clv_seterr(err, errlen, "loadgen: at least one channel weight must be positive");
        return -1;
    }
    return 0;
}

int loadgen_params_check(const struct loadgen_params *p, char *err, size_t errlen)
{
    if (check_model(&p->model, err, errlen) < 0 || check_period(p, err, errlen) < 0 ||
        check_mix(p, err, errlen) < 0 || check_ids_and_channels(p, err, errlen) < 0)
        return -1;
    return 0;
}

static double acquisition_window(const struct loadgen_params *p)
{
    return p->acquisition_days > 0.0 ? p->acquisition_days : p->days;
}

double loadgen_expected_repeats(const struct loadgen_params *p)
{
    const struct clv_bgnbd m = {
        .r = p->model.r, .alpha = p->model.alpha, .a = p->model.a, .b = p->model.b};
    double unit = p->model.time_unit_days, window = acquisition_window(p);
    double h = window / LG_SIMPSON_INTERVALS, sum = 0.0;

    /* arrival a ~ U[0, window): remaining time (days - a) / unit */
    for (int i = 0; i <= LG_SIMPSON_INTERVALS; i++) {
        double w = (i == 0 || i == LG_SIMPSON_INTERVALS) ? 1.0 : (i % 2 ? 4.0 : 2.0);
        sum += w * clv_bgnbd_expected_unconditional(&m, (p->days - i * h) / unit);
    }
    return sum / (3.0 * LG_SIMPSON_INTERVALS);
}

/* LOADGEN_MIX: purchases per buyer are 1 + E (E = expected repeats), and a
 * Poisson process of rate k lambda stopped at the dropout yields k E events
 * on average (Wald), so k = wanted per buyer / E.  Every id gets the same
 * expected number of visits; a prospect at least one. */
static int plan_mix(const struct loadgen_params *p, struct loadgen_plan *pl, char *err,
                    size_t errlen)
{
    double e = pl->expected_repeats, buyers = pl->buyers, prospects = pl->prospects;
    double purchases = buyers * (1.0 + e);
    double logins = purchases * p->mix[LOADGEN_MIX_LOGINS] / p->mix[LOADGEN_MIX_PURCHASES];
    double visits = purchases * p->mix[LOADGEN_MIX_VISITS] / p->mix[LOADGEN_MIX_PURCHASES];

    pl->prospect_visits = prospects > 0 ? fmax(visits / (buyers + prospects), 1.0) : 0.0;
    if (visits < prospects * pl->prospect_visits) {
        clv_seterr(err, errlen,
                   "loadgen: the mix asks for %.0f visits, fewer than one per prospect (%u): "
                   "lower the prospect share",
                   visits, pl->prospects);
        return -1;
    }
    if (!(e > 0.0) && (logins > 0.0 || visits > prospects * pl->prospect_visits)) {
        clv_seterr(err, errlen,
                   "loadgen: buyers expect no repeat purchase in so short a "
                   "period, so logins and visits cannot follow the mix");
        return -1;
    }
    pl->login_rate = e > 0.0 ? logins / buyers / e : 0.0;
    pl->visit_rate = e > 0.0 ? (visits - prospects * pl->prospect_visits) / buyers / e : 0.0;
    return 0;
}

static int make_plan(const struct loadgen_params *p, struct loadgen_plan *pl, char *err,
                     size_t errlen)
{
    double e;

    memset(pl, 0, sizeof(*pl));
    pl->prospects =
        p->mode == LOADGEN_MIX ? (uint32_t)llround(p->customers * p->prospect_share) : 0;
    if (pl->prospects >= p->customers)
        pl->prospects = p->customers - 1; /* at least one buyer */
    pl->buyers = p->customers - pl->prospects;
    e = pl->expected_repeats = loadgen_expected_repeats(p);
    if (!isfinite(e)) {
        clv_seterr(err, errlen, "loadgen: expected purchases did not converge for this model");
        return -1;
    }
    if (p->mode == LOADGEN_MIX) {
        if (plan_mix(p, pl, err, errlen) < 0)
            return -1;
    } else {
        pl->login_rate = p->login_rate;
        pl->visit_rate = p->visit_rate;
    }
    pl->expected_events[LOADGEN_MIX_PURCHASES] = pl->buyers * (1.0 + e);
    pl->expected_events[LOADGEN_MIX_LOGINS] = pl->buyers * pl->login_rate * e;
    pl->expected_events[LOADGEN_MIX_VISITS] =
        pl->buyers * pl->visit_rate * e + pl->prospects * pl->prospect_visits;
    return 0;
}

/* ---- the generator ------------------------------------------------------- */

enum { KIND_BUYER = 0, KIND_PROSPECT = 1 };
enum { STREAM_PURCHASES = 0, STREAM_ACTIVITY = 1 };

/* One customer that has arrived and may still emit events.  Times in days
 * since start; INFINITY = never. */
struct lg_cust {
    double next_purchase;
    double next_activity;
    double lambda;        /* purchases per day */
    double p_drop;        /* dropout probability after each repeat purchase */
    double nu;            /* Gamma-Gamma: spend ~ Gamma(p, nu) */
    double activity_rate; /* logins + visits per day while alive */
    uint64_t rng_purchases, rng_activity;
    uint32_t index; /* within its kind, in order of arrival */
    uint32_t seq;
    uint8_t kind;
    uint8_t channel;
};

/* Sorted uniform arrival times, one at a time: the k-th smallest of n
 * uniforms given the (k-1)-th is u_k = 1 - (1 - u_{k-1}) V^(1/(n-k+1)). */
struct lg_arrivals {
    struct loadgen_rng rng;
    uint32_t n, done;
    double u;
    double next; /* days; INFINITY when all have arrived */
};

struct loadgen {
    struct loadgen_params p;
    struct loadgen_plan plan;
    double unit;        /* model time unit, days */
    double window;      /* acquisition window, days */
    double login_share; /* of a buyer's activity events */
    double channel_cdf[LOADGEN_NCHANNELS];
    int id_digits;
    struct lg_arrivals arrivals[2]; /* KIND_BUYER, KIND_PROSPECT */
    struct lg_cust *heap;
    size_t n, cap;
    struct loadgen_stats stats;
};

static uint64_t stream_seed(uint64_t seed, int kind, int stream, uint32_t index)
{
    uint64_t tag = ((uint64_t)index << 2) | ((uint64_t)kind << 1) | (uint64_t)stream;

    return mix64(mix64(seed ^ 0x6a09e667f3bcc908ULL) + tag * 0x9e3779b97f4a7c15ULL);
}

static void arrivals_advance(struct lg_arrivals *a, double window)
{
    if (a->done >= a->n) {
        a->next = INFINITY;
        return;
    }
    double v = loadgen_uniform(bits_xoshiro, &a->rng);
    a->u = 1.0 - (1.0 - a->u) * exp(log(v) / (double)(a->n - a->done));
    a->next = a->u * window;
}

static void arrivals_init(struct lg_arrivals *a, uint64_t seed, int kind, uint32_t n, double window)
{
    loadgen_rng_seed(&a->rng, mix64(seed ^ (0xbb67ae8584caa73bULL * (uint64_t)(kind + 1))));
    a->n = n;
    a->done = 0;
    a->u = 0.0;
    arrivals_advance(a, window);
}

static double cust_next(const struct lg_cust *c)
{
    return fmin(c->next_purchase, c->next_activity);
}

/* Heap order: time, then buyers before prospects, then index. */
static int cust_before(const struct lg_cust *x, const struct lg_cust *y)
{
    double tx = cust_next(x), ty = cust_next(y);

    if (tx != ty)
        return tx < ty;
    if (x->kind != y->kind)
        return x->kind < y->kind;
    return x->index < y->index;
}

static void heap_sift_down(struct loadgen *g, size_t i)
{
    struct lg_cust c = g->heap[i];

    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= g->n)
            break;
        if (k + 1 < g->n && cust_before(&g->heap[k + 1], &g->heap[k]))
            k++;
        if (!cust_before(&g->heap[k], &c))
            break;
        g->heap[i] = g->heap[k];
        i = k;
    }
    g->heap[i] = c;
}

static int heap_push(struct loadgen *g, const struct lg_cust *c)
{
    size_t i;

    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 1024;
        struct lg_cust *h = realloc(g->heap, cap * sizeof(*h));
        if (h == NULL)
            return -1;
        g->heap = h;
        g->cap = cap;
    }
    for (i = g->n++; i > 0 && cust_before(c, &g->heap[(i - 1) / 2]); i = (i - 1) / 2)
        g->heap[i] = g->heap[(i - 1) / 2];
    g->heap[i] = *c;
    return 0;
}

static void heap_pop(struct loadgen *g)
{
    g->heap[0] = g->heap[--g->n];
    if (g->n > 0)
        heap_sift_down(g, 0);
}

static void channel_cdf_init(struct loadgen *g)
{
    double sum = 0.0, acc = 0.0;

    for (int i = 0; i < LOADGEN_NCHANNELS; i++)
        sum += g->p.channel_weights[i];
    for (int i = 0; i < LOADGEN_NCHANNELS; i++) {
        acc += g->p.channel_weights[i] / sum;
        g->channel_cdf[i] = acc;
    }
    g->channel_cdf[LOADGEN_NCHANNELS - 1] = 1.0;
}

static int digits_of(uint32_t v)
{
    int d = 1;

    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

int loadgen_new(struct loadgen **out, const struct loadgen_params *p, char *err, size_t errlen)
{
    struct loadgen *g;
    double rates;

    *out = NULL;
    if (loadgen_params_check(p, err, errlen) < 0)
        return -1;
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        clv_seterr(err, errlen, "loadgen: out of memory");
        return -1;
    }
    g->p = *p;
    if (make_plan(p, &g->plan, err, errlen) < 0) {
        free(g);
        return -1;
    }
    g->unit = p->model.time_unit_days;
    g->window = acquisition_window(p);
    rates = g->plan.login_rate + g->plan.visit_rate;
    g->login_share = rates > 0.0 ? g->plan.login_rate / rates : 0.0;
    channel_cdf_init(g);
    g->id_digits = digits_of(p->customers);
    if (g->id_digits < LG_ID_MIN_DIGITS)
        g->id_digits = LG_ID_MIN_DIGITS;
    arrivals_init(&g->arrivals[KIND_BUYER], p->seed, KIND_BUYER, g->plan.buyers, g->window);
    arrivals_init(&g->arrivals[KIND_PROSPECT], p->seed, KIND_PROSPECT, g->plan.prospects,
                  g->window);
    *out = g;
    return 0;
}

void loadgen_free(struct loadgen *g)
{
    if (g == NULL)
        return;
    free(g->heap);
    free(g);
}

void loadgen_get_plan(const struct loadgen *g, struct loadgen_plan *plan)
{
    *plan = g->plan;
}

void loadgen_get_stats(const struct loadgen *g, struct loadgen_stats *s)
{
    *s = g->stats;
    s->active = (uint32_t)g->n;
}

/* ---- emitting ------------------------------------------------------------ */

static int pick_channel(const struct loadgen *g, uint64_t *rng)
{
    double u = loadgen_uniform(bits_splitmix, rng);
    int i = 0;

    while (i < LOADGEN_NCHANNELS - 1 && u >= g->channel_cdf[i])
        i++;
    return i;
}

/* One transaction's value: Gamma(p, nu), in whole cents, at least one. */
static double draw_amount(const struct loadgen *g, struct lg_cust *c)
{
    double v = loadgen_gamma(bits_splitmix, &c->rng_purchases, g->p.model.p) / c->nu;
    double cents = round(v * 100.0);

    return (cents < 1.0 ? 1.0 : cents) / 100.0;
}

static double next_after(double t, double rate, uint64_t *rng)
{
    if (!(rate > 0.0))
        return INFINITY;
    return t + loadgen_exponential(bits_splitmix, rng) / rate;
}

static void fill_event(const struct loadgen *g, const struct lg_cust *c, enum clv_event_type type,
                       double t, double amount, struct loadgen_event *ev)
{
    clv_ms end = g->p.start + (clv_ms)llround(g->p.days * LG_DAY_MS);

    ev->type = type;
    ev->ts = g->p.start + (clv_ms)llround(t * LG_DAY_MS);
    if (ev->ts >= end)
        ev->ts = end - 1; /* t < days, but rounding to the millisecond could reach it */
    ev->amount = amount;
    ev->channel = channel_names[c->channel];
    ev->buyer = c->kind == KIND_BUYER;
    ev->seq = c->seq;
    snprintf(ev->customer_id, sizeof(ev->customer_id), "%s%c%0*u", g->p.id_prefix,
             c->kind == KIND_BUYER ? 'c' : 'p', g->id_digits, c->index);
    snprintf(ev->event_id, sizeof(ev->event_id), "%s-%u", ev->customer_id, c->seq);
}

static void count_event(struct loadgen *g, enum clv_event_type type)
{
    g->stats.events[type]++;
}

/* A buyer's first purchase at t: it draws lambda, p and nu, and never drops
 * out here (BG/NBD: dropout follows repeat purchases only). */
static void buyer_arrive(struct loadgen *g, struct lg_cust *c, double t, struct loadgen_event *ev)
{
    const struct loadgen_model *m = &g->p.model;
    uint64_t *rp = &c->rng_purchases;

    c->rng_purchases = stream_seed(g->p.seed, KIND_BUYER, STREAM_PURCHASES, c->index);
    c->rng_activity = stream_seed(g->p.seed, KIND_BUYER, STREAM_ACTIVITY, c->index);
    c->lambda = loadgen_gamma(bits_splitmix, rp, m->r) / m->alpha / g->unit;
    c->p_drop = loadgen_beta(bits_splitmix, rp, m->a, m->b);
    c->nu = loadgen_gamma(bits_splitmix, rp, m->q) / m->gamma;
    c->channel = (uint8_t)pick_channel(g, &c->rng_activity);
    fill_event(g, c, CLV_EV_PURCHASE, t, draw_amount(g, c), ev);
    c->next_purchase = next_after(t, c->lambda, rp);
    c->activity_rate = c->lambda * (g->plan.login_rate + g->plan.visit_rate);
    c->next_activity = next_after(t, c->activity_rate, &c->rng_activity);
}

/* A prospect's first visit at t; prospect_visits - 1 more on average over
 * the rest of the period. */
static void prospect_arrive(struct loadgen *g, struct lg_cust *c, double t,
                            struct loadgen_event *ev)
{
    double rest = g->p.days - t;

    c->rng_activity = stream_seed(g->p.seed, KIND_PROSPECT, STREAM_ACTIVITY, c->index);
    c->channel = (uint8_t)pick_channel(g, &c->rng_activity);
    fill_event(g, c, CLV_EV_VISIT, t, 0.0, ev);
    c->next_purchase = INFINITY;
    c->activity_rate = rest > 0.0 ? (g->plan.prospect_visits - 1.0) / rest : 0.0;
    c->next_activity = next_after(t, c->activity_rate, &c->rng_activity);
}

static int arrive(struct loadgen *g, int kind, struct loadgen_event *ev)
{
    struct lg_arrivals *a = &g->arrivals[kind];
    struct lg_cust c = {.index = a->done, .kind = (uint8_t)kind};
    double t = a->next;

    if (kind == KIND_BUYER)
        buyer_arrive(g, &c, t, ev);
    else
        prospect_arrive(g, &c, t, ev);
    count_event(g, ev->type);
    c.seq = 1;
    a->done++;
    arrivals_advance(a, g->window);
    g->stats.arrived++;
    if (cust_next(&c) < g->p.days && heap_push(g, &c) < 0)
        return -1;
    return 0;
}

/* The next event of the customer on top of the heap. */
static void step_customer(struct loadgen *g, struct loadgen_event *ev)
{
    struct lg_cust *c = &g->heap[0];
    int dropped = 0;

    if (c->next_purchase <= c->next_activity) {
        double t = c->next_purchase;
        fill_event(g, c, CLV_EV_PURCHASE, t, draw_amount(g, c), ev);
        dropped = loadgen_uniform(bits_splitmix, &c->rng_purchases) < c->p_drop;
        c->next_purchase = next_after(t, c->lambda, &c->rng_purchases);
    } else {
        double t = c->next_activity;
        int login = c->kind == KIND_BUYER &&
                    loadgen_uniform(bits_splitmix, &c->rng_activity) < g->login_share;
        fill_event(g, c, login ? CLV_EV_LOGIN : CLV_EV_VISIT, t, 0.0, ev);
        c->next_activity = next_after(t, c->activity_rate, &c->rng_activity);
    }
    count_event(g, ev->type);
    c->seq++;
    g->stats.dropped += (uint32_t)dropped;
    if (dropped || !(cust_next(c) < g->p.days))
        heap_pop(g);
    else
        heap_sift_down(g, 0);
}

int loadgen_next(struct loadgen *g, struct loadgen_event *ev)
{
    const struct lg_arrivals *b = &g->arrivals[KIND_BUYER], *pr = &g->arrivals[KIND_PROSPECT];
    double top = g->n > 0 ? cust_next(&g->heap[0]) : INFINITY;
    double arrival = fmin(b->next, pr->next);

    if (arrival <= top && isfinite(arrival)) {
        if (arrive(g, b->next <= pr->next ? KIND_BUYER : KIND_PROSPECT, ev) < 0)
            return -1;
        return 1;
    }
    if (g->n == 0)
        return 0;
    step_customer(g, ev);
    return 1;
}

int loadgen_run(const struct loadgen_params *p, loadgen_event_fn cb, void *ctx, char *err,
                size_t errlen)
{
    struct loadgen *g;
    struct loadgen_event ev;
    int rc = 0, stop = 0;

    if (loadgen_new(&g, p, err, errlen) < 0)
        return -1;
    while (stop == 0 && (rc = loadgen_next(g, &ev)) == 1)
        stop = cb(&ev, ctx);
    if (stop == 0 && rc < 0)
        clv_seterr(err, errlen, "loadgen: out of memory");
    loadgen_free(g);
    return stop != 0 ? stop : rc;
}

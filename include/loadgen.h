/* loadgen.h -- synthetic customers drawn from the BG/NBD and Gamma-Gamma
 * generative processes, with logins and visits (SPEC sections 9, 14, 15):
 * `clvctl loadgen`, benchmarks, the demo, and the parameter-recovery test.
 *
 * Pure: no I/O, no global state.  A generator is a seeded iterator that
 * yields events of all customers in time order (loadgen_next), or calls a
 * callback for each (loadgen_run).  Memory is O(customers active at once).
 *
 * The generative process (docs/clv.md, "Synthetic customers"):
 *   - buyers arrive (first purchase) uniformly over the acquisition window;
 *   - each draws lambda ~ Gamma(r, alpha) (purchases per model time unit),
 *     p ~ Beta(a, b), nu ~ Gamma(q, gamma);
 *   - while alive, repeat purchases follow a Poisson process of rate lambda;
 *     after each repeat purchase the buyer drops out with probability p;
 *   - each purchase is worth Gamma(p_gg, nu) (Gamma-Gamma), rounded to cents;
 *   - while alive, logins and visits follow Poisson processes of rates
 *     login_rate x lambda and visit_rate x lambda;
 *   - prospects arrive like buyers, never purchase, and visit
 *     prospect_visits times on average over the rest of the period.
 * The purchases are exactly the model's whatever the logins, visits and
 * prospects: each buyer draws its purchases from a random stream of its own,
 * so the same seed and number of buyers give the same purchases with any mix
 * (and `--format csv` the same purchases as the Kafka run).
 *
 * Two uses:
 *   LOADGEN_MODEL  model-faithful: every customer is a buyer; logins and
 *                  visits at the given multiples (default none).  For fits.
 *   LOADGEN_MIX    login_rate, visit_rate and prospect_visits are derived
 *                  from the target mix (visits, logins, purchases), so that
 *                  the expected event counts are in that proportion (SPEC
 *                  section 15: 60 % visits, 30 % logins, 10 % purchases). */
#ifndef CLVD_LOADGEN_H
#define CLVD_LOADGEN_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "event.h"

/* ---- random numbers ------------------------------------------------------ */

/* xoshiro256** (Blackman & Vigna), seeded through splitmix64. */
struct loadgen_rng {
    uint64_t s[4];
};

/* splitmix64: returns the next output and advances *state. */
uint64_t loadgen_splitmix64(uint64_t *state);

void loadgen_rng_seed(struct loadgen_rng *g, uint64_t seed);
uint64_t loadgen_rng_next(struct loadgen_rng *g);

/* Variates drawn from a function returning 64 random bits.  The generator
 * is either a struct loadgen_rng (loadgen_rng_next) or a bare splitmix64
 * state (one word per customer: loadgen_splitmix64). */
typedef uint64_t (*loadgen_bits_fn)(void *state);

double loadgen_uniform(loadgen_bits_fn bits, void *state);     /* in (0, 1) */
double loadgen_normal(loadgen_bits_fn bits, void *state);      /* N(0, 1) */
double loadgen_exponential(loadgen_bits_fn bits, void *state); /* mean 1 */
/* Gamma(shape, 1) by Marsaglia & Tsang (2000); shape < 1 via the boost
 * Gamma(shape) = Gamma(shape + 1) U^(1/shape).  shape > 0. */
double loadgen_gamma(loadgen_bits_fn bits, void *state, double shape);
/* Beta(a, b) = X / (X + Y), X ~ Gamma(a), Y ~ Gamma(b). */
double loadgen_beta(loadgen_bits_fn bits, void *state, double a, double b);

/* ---- parameters ---------------------------------------------------------- */

enum loadgen_mode { LOADGEN_MODEL = 0, LOADGEN_MIX = 1 };

/* Room for an id: a 31-byte prefix, 'c' or 'p', up to 10 digits, NUL. */
#define LOADGEN_ID_MAX 48

enum loadgen_channel {
    LOADGEN_SEARCH = 0,
    LOADGEN_SOCIAL,
    LOADGEN_EMAIL,
    LOADGEN_DIRECT,
    LOADGEN_NCHANNELS
};

/* Order of loadgen_params.mix[]: as SPEC section 15 writes it. */
enum { LOADGEN_MIX_VISITS = 0, LOADGEN_MIX_LOGINS = 1, LOADGEN_MIX_PURCHASES = 2 };

struct loadgen_model {
    double r, alpha, a, b; /* BG/NBD, rates per time unit */
    double time_unit_days;
    double p, q, gamma; /* Gamma-Gamma */
};

struct loadgen_params {
    uint64_t seed;
    uint32_t customers;      /* customer ids, buyers and prospects */
    clv_ms start;            /* the period is [start, start + days) */
    double days;             /* > 0 */
    double acquisition_days; /* first events uniform over [start, start + this); 0 = days */
    struct loadgen_model model;
    enum loadgen_mode mode;
    double mix[3];         /* LOADGEN_MIX: visits, logins, purchases (any scale) */
    double prospect_share; /* fraction of the ids that never purchase (LOADGEN_MIX) */
    double login_rate;     /* LOADGEN_MODEL: logins per unit of lambda while alive */
    double visit_rate;     /* LOADGEN_MODEL: visits per unit of lambda while alive */
    double channel_weights[LOADGEN_NCHANNELS];
    char id_prefix[32]; /* prepended to the customer ids (printable ASCII) */
};

/* SPEC section 15 defaults: 100 000 customers, LOADGEN_MIX 60/30/10, 20 %
 * prospects, the published CDNOW estimates in weeks, 365 days from `start`
 * (0: the caller sets it), acquisition over the whole period, channels
 * search 35 %, social 25 %, email 15 %, direct 25 %, seed 1. */
void loadgen_params_default(struct loadgen_params *p);

/* 0 if usable, else -1 and a message naming the first bad setting. */
int loadgen_params_check(const struct loadgen_params *p, char *err, size_t errlen);

/* E[repeat purchases in the period] of a buyer arriving uniformly over the
 * acquisition window: the mean of the BG/NBD E[X(t)] over the time t from
 * its arrival to the end of the period (Simpson's rule, 64 intervals). */
double loadgen_expected_repeats(const struct loadgen_params *p);

/* What a generator actually runs with (LOADGEN_MIX derives the rates). */
struct loadgen_plan {
    uint32_t buyers, prospects;
    double login_rate, visit_rate; /* multiples of lambda, while alive */
    double prospect_visits;        /* mean visits of a prospect */
    double expected_repeats;       /* per buyer, loadgen_expected_repeats */
    double expected_events[3];     /* visits, logins, purchases over the period */
};

/* ---- the generator ------------------------------------------------------- */

struct loadgen_event {
    enum clv_event_type type;
    clv_ms ts;
    double amount; /* purchases: > 0, whole cents; else 0 */
    const char *channel;
    int buyer;                          /* 1: a buyer, 0: a prospect */
    uint32_t seq;                       /* the customer's own event number, from 0 */
    char customer_id[LOADGEN_ID_MAX];   /* "<prefix>c000042": buyer, "<prefix>p000007": prospect */
    char event_id[LOADGEN_ID_MAX + 16]; /* "<customer_id>-<seq>" */
};

struct loadgen_stats {
    uint64_t events[3]; /* by enum clv_event_type: purchase, login, visit */
    uint32_t arrived;   /* customers whose first event has been emitted */
    uint32_t dropped;   /* buyers who dropped out */
    uint32_t active;    /* customers that may still emit events */
};

struct loadgen;

int loadgen_new(struct loadgen **out, const struct loadgen_params *p, char *err, size_t errlen);
void loadgen_free(struct loadgen *g);
void loadgen_get_plan(const struct loadgen *g, struct loadgen_plan *plan);
void loadgen_get_stats(const struct loadgen *g, struct loadgen_stats *s);

/* The next event in time order (ties: arrivals first, then by customer).
 * Returns 1 with *ev filled, 0 at the end of the period, -1 when out of
 * memory. */
int loadgen_next(struct loadgen *g, struct loadgen_event *ev);

/* Every event in time order to `cb`; a non-zero return from cb stops the run
 * and is returned as is.  Otherwise 0 when the period is done, -1 (with a
 * message) on bad parameters or out of memory. */
typedef int (*loadgen_event_fn)(const struct loadgen_event *ev, void *ctx);
int loadgen_run(const struct loadgen_params *p, loadgen_event_fn cb, void *ctx, char *err,
                size_t errlen);

const char *loadgen_channel_name(enum loadgen_channel c);

#endif

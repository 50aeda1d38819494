/* fit.c -- maximum-likelihood BG/NBD and Gamma-Gamma, and the per-customer
 * summaries they are fitted on.  See fit.h and docs/clv.md.
 *
 * Optimizer: Nelder-Mead on the logarithms of the parameters (so they stay
 * positive without constraints), restarted from its own result with a fresh
 * simplex until a restart no longer improves the likelihood: a plain
 * Nelder-Mead can stall on the long curved ridges these likelihoods have
 * (r with alpha, p with q and gamma), and a restart re-orients the simplex. */
#include "fit.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

/* ---- Nelder-Mead ------------------------------------------------------ */

#define NM_MAX_DIM 4
#define NM_FTOL 1e-13      /* relative spread of f over the simplex */
#define NM_XTOL 1e-8       /* simplex size, in log-parameter units */
#define NM_MAX_EVALS 20000 /* per run */
#define NM_MAX_RESTARTS 12
#define NM_RESTART_GAIN 1e-11 /* relative improvement that earns another restart */

/* Objective to minimise, of the log-parameters. */
typedef double (*nm_objective)(const double *theta, const void *ctx);

struct nm_problem {
    nm_objective f;
    const void *ctx;
    int dim;
    int evals;
};

static double nm_eval(struct nm_problem *p, const double *theta)
{
    double v = p->f(theta, p->ctx);

    p->evals++;
    return isnan(v) ? HUGE_VAL : v; /* outside the domain: worse than anything */
}

/* Insertion sort of the vertices by objective value, best first. */
static void nm_order(double s[][NM_MAX_DIM], double *fs, int nv, int dim)
{
    for (int i = 1; i < nv; i++) {
        double f = fs[i], v[NM_MAX_DIM];
        int j = i - 1;

        memcpy(v, s[i], sizeof(double) * (size_t)dim);
        for (; j >= 0 && fs[j] > f; j--) {
            fs[j + 1] = fs[j];
            memcpy(s[j + 1], s[j], sizeof(double) * (size_t)dim);
        }
        fs[j + 1] = f;
        memcpy(s[j + 1], v, sizeof(double) * (size_t)dim);
    }
}

static int nm_converged(double s[][NM_MAX_DIM], const double *fs, int dim)
{
    double size = 0.0;

    if (!(fs[dim] - fs[0] <= NM_FTOL * (1.0 + fabs(fs[0]))))
        return 0;
    for (int i = 1; i <= dim; i++)
        for (int k = 0; k < dim; k++)
            size = fmax(size, fabs(s[i][k] - s[0][k]));
    return size <= NM_XTOL;
}

/* out = c + coef (c - worst) */
static void nm_point(double *out, const double *c, const double *worst, double coef, int dim)
{
    for (int k = 0; k < dim; k++)
        out[k] = c[k] + coef * (c[k] - worst[k]);
}

static void nm_shrink(struct nm_problem *p, double s[][NM_MAX_DIM], double *fs)
{
    for (int i = 1; i <= p->dim; i++) {
        for (int k = 0; k < p->dim; k++)
            s[i][k] = s[0][k] + 0.5 * (s[i][k] - s[0][k]);
        fs[i] = nm_eval(p, s[i]);
    }
}

/* One step: replace the worst vertex by a reflected, expanded or contracted
 * point, or shrink the simplex towards the best vertex. */
static void nm_step(struct nm_problem *p, double s[][NM_MAX_DIM], double *fs)
{
    int n = p->dim;
    double c[NM_MAX_DIM] = {0}, xr[NM_MAX_DIM], xt[NM_MAX_DIM];
    double fr, ft;

    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
            c[k] += s[i][k] / n;
    nm_point(xr, c, s[n], 1.0, n);
    fr = nm_eval(p, xr);
    if (fr < fs[0]) {
        nm_point(xt, c, s[n], 2.0, n);
        ft = nm_eval(p, xt);
        if (ft < fr) {
            memcpy(s[n], xt, sizeof(xt[0]) * (size_t)n);
            fs[n] = ft;
            return;
        }
    }
    if (fr < fs[n - 1]) {
        memcpy(s[n], xr, sizeof(xr[0]) * (size_t)n);
        fs[n] = fr;
        return;
    }
    /* contract outside when the reflection helped a little, else inside */
    nm_point(xt, c, s[n], fr < fs[n] ? 0.5 : -0.5, n);
    ft = nm_eval(p, xt);
    if (ft < fmin(fr, fs[n])) {
        memcpy(s[n], xt, sizeof(xt[0]) * (size_t)n);
        fs[n] = ft;
        return;
    }
    nm_shrink(p, s, fs);
}

/* One Nelder-Mead run from theta (a simplex of axis steps `step`); theta and
 * *fval become the best vertex. */
static void nm_run(struct nm_problem *p, double *theta, double *fval, double step)
{
    double s[NM_MAX_DIM + 1][NM_MAX_DIM], fs[NM_MAX_DIM + 1];
    int n = p->dim, start = p->evals;

    for (int i = 0; i <= n; i++) {
        memcpy(s[i], theta, sizeof(double) * (size_t)n);
        if (i > 0)
            s[i][i - 1] += step;
        fs[i] = i == 0 ? *fval : nm_eval(p, s[i]);
    }
    nm_order(s, fs, n + 1, n);
    while (!nm_converged(s, fs, n) && p->evals - start < NM_MAX_EVALS) {
        nm_step(p, s, fs);
        nm_order(s, fs, n + 1, n);
    }
    memcpy(theta, s[0], sizeof(double) * (size_t)n);
    *fval = fs[0];
}

/* Minimise from theta, restarting until a run gains nothing.  Returns the
 * minimum; theta holds its argument. */
static double nm_minimise(struct nm_problem *p, double *theta)
{
    double f = nm_eval(p, theta);

    for (int restart = 0; restart < NM_MAX_RESTARTS; restart++) {
        double before = f;

        /* first run explores (unit steps: a factor e), later ones polish */
        nm_run(p, theta, &f, restart == 0 ? 1.0 : 0.1);
        if (restart > 0 && before - f <= NM_RESTART_GAIN * (1.0 + fabs(f)))
            break;
    }
    return f;
}

/* ---- BG/NBD and Gamma-Gamma likelihoods ------------------------------- */

struct bgnbd_data {
    const double *x, *t_x, *T;
    size_t n;
};

static double bgnbd_neg_loglik(const double *theta, const void *ctx)
{
    const struct bgnbd_data *d = ctx;
    const struct clv_bgnbd m = {
        .r = exp(theta[0]), .alpha = exp(theta[1]), .a = exp(theta[2]), .b = exp(theta[3])};
    double ll = 0.0;

    for (size_t i = 0; i < d->n; i++)
        ll += clv_bgnbd_loglik(&m, d->x[i], d->t_x[i], d->T[i]);
    return isfinite(ll) ? -ll : HUGE_VAL;
}

static int bgnbd_data_check(const double *x, const double *t_x, const double *T, size_t n,
                            char *err, size_t errlen)
{
    size_t repeaters = 0;

    for (size_t i = 0; i < n; i++) {
        if (!(x[i] >= 0.0 && t_x[i] >= 0.0 && T[i] >= t_x[i] && isfinite(T[i]))) {
            clv_seterr(err, errlen, "fit: customer %zu has x=%g t_x=%g T=%g", i, x[i], t_x[i],
                       T[i]);
            return -1;
        }
        repeaters += x[i] > 0.0;
    }
    if (n == 0 || repeaters == 0) {
        clv_seterr(err, errlen, "fit: BG/NBD needs customers with repeat purchases (%zu of %zu)",
                   repeaters, n);
        return -1;
    }
    return 0;
}

int fit_bgnbd(const double *x, const double *t_x, const double *T, size_t n,
              struct fit_bgnbd_result *out, char *err, size_t errlen)
{
    const struct bgnbd_data d = {.x = x, .t_x = t_x, .T = T, .n = n};
    struct nm_problem p = {.f = bgnbd_neg_loglik, .ctx = &d, .dim = 4};
    double mean_T = 0.0, theta[4];

    if (bgnbd_data_check(x, t_x, T, n, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        mean_T += T[i] / (double)n;
    /* start: r = a = b = 1 and alpha on the scale of the observation period */
    theta[0] = 0.0;
    theta[1] = log(fmax(mean_T, 1e-3));
    theta[2] = 0.0;
    theta[3] = 0.0;
    double f = nm_minimise(&p, theta);
    if (!isfinite(f)) {
        clv_seterr(err, errlen, "fit: BG/NBD likelihood is not finite anywhere tried");
        return -1;
    }
    out->params = (struct clv_bgnbd){
        .r = exp(theta[0]), .alpha = exp(theta[1]), .a = exp(theta[2]), .b = exp(theta[3])};
    out->loglik = -f;
    out->n = n;
    out->evaluations = p.evals;
    return 0;
}

/* Gamma-Gamma data: only the customers with x > 0 and m_x > 0. */
struct gg_data {
    const double *x, *m_x;
    size_t n;
};

static double gg_neg_loglik(const double *theta, const void *ctx)
{
    const struct gg_data *d = ctx;
    const struct clv_gamma_gamma m = {
        .p = exp(theta[0]), .q = exp(theta[1]), .gamma = exp(theta[2])};
    double ll = 0.0;

    for (size_t i = 0; i < d->n; i++) {
        if (d->x[i] > 0.0 && d->m_x[i] > 0.0)
            ll += clv_gg_loglik(&m, d->x[i], d->m_x[i]);
    }
    return isfinite(ll) ? -ll : HUGE_VAL;
}

int fit_gamma_gamma(const double *x, const double *m_x, size_t n, struct fit_gg_result *out,
                    char *err, size_t errlen)
{
    const struct gg_data d = {.x = x, .m_x = m_x, .n = n};
    struct nm_problem p = {.f = gg_neg_loglik, .ctx = &d, .dim = 3};
    double mean_m = 0.0, theta[3];
    size_t used = 0;

    for (size_t i = 0; i < n; i++) {
        if (!(x[i] >= 0.0 && m_x[i] >= 0.0 && isfinite(m_x[i]))) {
            clv_seterr(err, errlen, "fit: customer %zu has x=%g m_x=%g", i, x[i], m_x[i]);
            return -1;
        }
        if (x[i] > 0.0 && m_x[i] > 0.0) {
            used++;
            mean_m += m_x[i];
        }
    }
    if (used == 0) {
        clv_seterr(err, errlen, "fit: Gamma-Gamma needs customers with repeat spend");
        return -1;
    }
    mean_m /= (double)used;
    /* start: p = 1, q = 2 (finite mean), gamma so that the mean p gamma/(q-1) fits */
    theta[0] = 0.0;
    theta[1] = log(2.0);
    theta[2] = log(mean_m);
    double f = nm_minimise(&p, theta);
    if (!isfinite(f)) {
        clv_seterr(err, errlen, "fit: Gamma-Gamma likelihood is not finite anywhere tried");
        return -1;
    }
    out->params =
        (struct clv_gamma_gamma){.p = exp(theta[0]), .q = exp(theta[1]), .gamma = exp(theta[2])};
    out->loglik = -f;
    out->n = used;
    out->evaluations = p.evals;
    return 0;
}

/* ---- customer ids: an open-addressing hash map ------------------------ */

/* Ids are copied into one growing byte arena; a slot holds the id's hash,
 * where its bytes are, and its dense index (+1, so 0 marks an empty slot).
 * Linear probing, table kept at most half full. */
struct idmap_slot {
    uint64_t hash;
    size_t off;
    size_t len;
    uint32_t index1;
};

struct idmap {
    struct idmap_slot *slots;
    size_t cap; /* power of two */
    size_t count;
    char *keys;
    size_t keys_len, keys_cap;
};

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* The slot holding `id`, or the empty slot where it belongs. */
static struct idmap_slot *idmap_probe(const struct idmap *m, uint64_t h, const char *id, size_t len)
{
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct idmap_slot *s = &m->slots[i];
        if (s->index1 == 0 ||
            (s->hash == h && s->len == len && memcmp(m->keys + s->off, id, len) == 0))
            return s;
    }
}

/* The first empty slot for hash h (rehashing: every key is distinct). */
static struct idmap_slot *idmap_free_slot(const struct idmap *m, uint64_t h)
{
    size_t i = h & (m->cap - 1);

    while (m->slots[i].index1 != 0)
        i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

static int idmap_grow(struct idmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    struct idmap_slot *slots = calloc(cap, sizeof(*slots));
    struct idmap old = *m;

    if (slots == NULL)
        return -1;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++) {
        if (old.slots[i].index1 != 0)
            *idmap_free_slot(m, old.slots[i].hash) = old.slots[i];
    }
    free(old.slots);
    return 0;
}

static int idmap_store_key(struct idmap *m, const char *id, size_t len)
{
    if (m->keys_len + len > m->keys_cap) {
        size_t cap = m->keys_cap ? m->keys_cap : 4096;
        while (cap < m->keys_len + len)
            cap *= 2;
        char *keys = realloc(m->keys, cap);
        if (keys == NULL)
            return -1;
        m->keys = keys;
        m->keys_cap = cap;
    }
    memcpy(m->keys + m->keys_len, id, len);
    m->keys_len += len;
    return 0;
}

/* The dense index of `id`, adding it when new. */
static int idmap_index(struct idmap *m, const char *id, size_t len, uint32_t *index)
{
    uint64_t h = fnv1a(id, len);
    struct idmap_slot *s;

    if (2 * (m->count + 1) > m->cap && idmap_grow(m) < 0)
        return -1;
    s = idmap_probe(m, h, id, len);
    if (s->index1 == 0) {
        if (m->count >= UINT32_MAX - 1 || idmap_store_key(m, id, len) < 0)
            return -1;
        *s = (struct idmap_slot){
            .hash = h, .off = m->keys_len - len, .len = len, .index1 = (uint32_t)++m->count};
    }
    *index = s->index1 - 1;
    return 0;
}

static void idmap_free(struct idmap *m)
{
    free(m->slots);
    free(m->keys);
}

/* ---- transaction set -------------------------------------------------- */

struct txn {
    uint32_t customer;
    int32_t day;
    double amount;
};

struct fit_txns {
    struct idmap ids;
    struct txn *rows;
    size_t n, cap;
    int32_t first_day, last_day;
};

int fit_txns_new(struct fit_txns **out, char *err, size_t errlen)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL) {
        clv_seterr(err, errlen, "fit: out of memory");
        return -1;
    }
    return 0;
}

void fit_txns_free(struct fit_txns *t)
{
    if (t == NULL)
        return;
    idmap_free(&t->ids);
    free(t->rows);
    free(t);
}

int fit_txns_add(struct fit_txns *t, const struct fit_row *row, char *err, size_t errlen)
{
    uint32_t customer;

    if (!(row->amount >= 0.0 && isfinite(row->amount)) || row->id_len == 0) {
        clv_seterr(err, errlen, "fit: bad row (empty id or amount %g)", row->amount);
        return -1;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 4096;
        struct txn *rows = realloc(t->rows, cap * sizeof(*rows));
        if (rows == NULL)
            goto oom;
        t->rows = rows;
        t->cap = cap;
    }
    if (idmap_index(&t->ids, row->id, row->id_len, &customer) < 0)
        goto oom;
    t->rows[t->n++] = (struct txn){.customer = customer, .day = row->day, .amount = row->amount};
    if (t->n == 1 || row->day < t->first_day)
        t->first_day = row->day;
    if (t->n == 1 || row->day > t->last_day)
        t->last_day = row->day;
    return 0;
oom:
    clv_seterr(err, errlen, "fit: out of memory after %zu rows", t->n);
    return -1;
}

size_t fit_txns_rows(const struct fit_txns *t)
{
    return t->n;
}

size_t fit_txns_customers(const struct fit_txns *t)
{
    return t->ids.count;
}

int32_t fit_txns_first_day(const struct fit_txns *t)
{
    return t->first_day;
}

int32_t fit_txns_last_day(const struct fit_txns *t)
{
    return t->last_day;
}

/* ---- summaries -------------------------------------------------------- */

static int txn_cmp(const void *pa, const void *pb)
{
    const struct txn *a = pa, *b = pb;

    if (a->customer != b->customer)
        return a->customer < b->customer ? -1 : 1;
    return (a->day > b->day) - (a->day < b->day);
}

/* Summary of one customer's rows rows[0..n), sorted by day.  Returns 0 when
 * the customer's first purchase is after the calibration period. */
static int summarize_customer(const struct txn *rows, size_t n, int32_t calibration_end,
                              double unit, double *x, double *t_x, double *T, double *m_x)
{
    int32_t first = rows[0].day, last = first;
    double repeat_spend = 0.0;
    size_t days = 1;

    if (first > calibration_end)
        return 0;
    for (size_t i = 1; i < n && rows[i].day <= calibration_end; i++) {
        if (rows[i].day != last) {
            days++;
            last = rows[i].day;
        }
        if (rows[i].day != first)
            repeat_spend += rows[i].amount; /* same-day rows merge by summing */
    }
    *x = (double)(days - 1);
    *t_x = (last - first) / unit;
    *T = (calibration_end - first) / unit;
    *m_x = days > 1 ? repeat_spend / (double)(days - 1) : 0.0;
    return 1;
}

static int summary_alloc(struct fit_summary *s, size_t n)
{
    size_t m = n ? n : 1;

    s->x = calloc(m, sizeof(double));
    s->t_x = calloc(m, sizeof(double));
    s->T = calloc(m, sizeof(double));
    s->m_x = calloc(m, sizeof(double));
    return s->x && s->t_x && s->T && s->m_x ? 0 : -1;
}

int fit_summarize(struct fit_txns *t, int32_t calibration_end, double time_unit_days,
                  struct fit_summary *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!(time_unit_days > 0.0 && isfinite(time_unit_days))) {
        clv_seterr(err, errlen, "fit: time unit must be a positive number of days");
        return -1;
    }
    if (summary_alloc(out, t->ids.count) < 0) {
        fit_summary_free(out);
        clv_seterr(err, errlen, "fit: out of memory for %zu customers", t->ids.count);
        return -1;
    }
    if (t->n > 0)
        qsort(t->rows, t->n, sizeof(t->rows[0]), txn_cmp);
    for (size_t i = 0, j; i < t->n; i = j) {
        size_t k = out->n;
        for (j = i + 1; j < t->n && t->rows[j].customer == t->rows[i].customer; j++)
            ;
        if (!summarize_customer(t->rows + i, j - i, calibration_end, time_unit_days, &out->x[k],
                                &out->t_x[k], &out->T[k], &out->m_x[k])) {
            out->n_later++;
            continue;
        }
        out->n_repeat += out->x[k] > 0.0;
        out->repeat_days += (size_t)out->x[k];
        out->n++;
    }
    return 0;
}

void fit_summary_free(struct fit_summary *s)
{
    free(s->x);
    free(s->t_x);
    free(s->T);
    free(s->m_x);
    memset(s, 0, sizeof(*s));
}

/* ---- dates and lines -------------------------------------------------- */

int fit_civil_to_day(int year, int month, int mday, int32_t *day)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    if (year < 1 || year > 9999 || month < 1 || month > 12 || mday < 1 || mday > mdays[month - 1] ||
        (month == 2 && mday == 29 && !leap))
        return -1;
    /* days_from_civil (H. Hinnant): eras of 400 years, March-based years */
    int y = year - (month <= 2);
    int era = y / 400;
    int yoe = y - era * 400;
    int doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + mday - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    *day = era * 146097 + doe - 719468;
    return 0;
}

void fit_day_to_civil(int32_t day, int *year, int *month, int *mday)
{
    /* civil_from_days (H. Hinnant), the inverse of fit_civil_to_day */
    int32_t z = day + 719468;
    int32_t era = (z >= 0 ? z : z - 146096) / 146097;
    int32_t doe = z - era * 146097;
    int32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int32_t mp = (5 * doy + 2) / 153;

    *mday = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = yoe + era * 400 + (*month <= 2);
}

/* n decimal digits at s; -1 if any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int fit_parse_date(const char *s, size_t len, int32_t *day)
{
    if (len == 8) /* YYYYMMDD */
        return fit_civil_to_day(digits(s, 4), digits(s + 4, 2), digits(s + 6, 2), day);
    if (len < 10 || s[4] != '-' || s[7] != '-')
        return -1;
    if (len == 10)
        return fit_civil_to_day(digits(s, 4), digits(s + 5, 2), digits(s + 8, 2), day);
    clv_ms ms;
    if (rfc3339_parse(s, len, &ms) < 0)
        return -1;
    /* floor division: the UTC day, also before 1970 */
    *day = (int32_t)((ms - (ms < 0 ? CLV_MS_PER_DAY - 1 : 0)) / CLV_MS_PER_DAY);
    return 0;
}

static int parse_amount(const char *s, size_t len, double *out)
{
    char buf[64], *end;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    *out = strtod(buf, &end);
    return errno == 0 && end == buf + len && *out >= 0.0 && isfinite(*out) ? 0 : -1;
}

/* Split at whitespace: up to `max` fields; returns how many were found. */
static int split_ws(const char *line, const char **f, size_t *flen, int max)
{
    int n = 0;
    const char *p = line;

    while (*p != '\0') {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        if (n == max)
            return max + 1;
        f[n] = p;
        while (*p != '\0' && !isspace((unsigned char)*p))
            p++;
        flen[n] = (size_t)(p - f[n]);
        n++;
    }
    return n;
}

int fit_parse_cdnow_line(const char *line, struct fit_row *row, char *err, size_t errlen)
{
    const char *f[5];
    size_t flen[5];
    int n = split_ws(line, f, flen, 5);

    if (n == 0)
        return 0;
    if (n != 5) {
        clv_seterr(err, errlen, "expected 5 fields, found %s%d", n > 5 ? "more than " : "",
                   n > 5 ? 5 : n);
        return -1;
    }
    if (fit_parse_date(f[2], flen[2], &row->day) < 0 || flen[2] != 8) {
        clv_seterr(err, errlen, "bad date '%.*s' (want YYYYMMDD)", (int)flen[2], f[2]);
        return -1;
    }
    if (parse_amount(f[4], flen[4], &row->amount) < 0) {
        clv_seterr(err, errlen, "bad amount '%.*s'", (int)flen[4], f[4]);
        return -1;
    }
    row->id = f[1];
    row->id_len = flen[1];
    return 1;
}

/* The next CSV field from *p: trimmed of blanks, quotes removed. */
static int csv_field(const char **p, const char **f, size_t *flen)
{
    const char *s = *p;

    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '"') {
        const char *close = strchr(s + 1, '"');
        if (close == NULL)
            return -1;
        *f = s + 1;
        *flen = (size_t)(close - s - 1);
        s = close + 1;
    } else {
        *f = s;
        while (*s != '\0' && *s != ',' && *s != '\r' && *s != '\n')
            s++;
        *flen = (size_t)(s - *f);
        while (*flen > 0 && ((*f)[*flen - 1] == ' ' || (*f)[*flen - 1] == '\t'))
            (*flen)--;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    *p = s;
    return 0;
}

/* Split a CSV line into exactly n fields. */
static int csv_split(const char *line, const char **f, size_t *flen, int n)
{
    const char *p = line;

    for (int i = 0; i < n; i++) {
        if (csv_field(&p, &f[i], &flen[i]) < 0)
            return -1;
        if (i < n - 1 && *p++ != ',')
            return -1;
    }
    return *p == '\0' || *p == '\r' || *p == '\n' ? 0 : -1;
}

int fit_parse_csv_line(const char *line, int first_line, struct fit_row *row, char *err,
                       size_t errlen)
{
    const char *f[3];
    size_t flen[3];

    if (line[strspn(line, " \t\r\n")] == '\0')
        return 0;
    if (csv_split(line, f, flen, 3) < 0) {
        clv_seterr(err, errlen, "expected 3 fields customer_id,date,amount");
        return -1;
    }
    if (first_line && (flen[1] == 0 || !isdigit((unsigned char)f[1][0])))
        return 0; /* header */
    if (flen[0] == 0) {
        clv_seterr(err, errlen, "empty customer_id");
        return -1;
    }
    if (fit_parse_date(f[1], flen[1], &row->day) < 0) {
        clv_seterr(err, errlen, "bad date '%.*s' (want YYYY-MM-DD or RFC 3339)", (int)flen[1],
                   f[1]);
        return -1;
    }
    if (parse_amount(f[2], flen[2], &row->amount) < 0) {
        clv_seterr(err, errlen, "bad amount '%.*s' (want a number >= 0)", (int)flen[2], f[2]);
        return -1;
    }
    row->id = f[0];
    row->id_len = flen[0];
    return 1;
}

/* config.c -- load, validate, print and compare the YAML configuration.
 *
 * The whole schema is one tree of `struct field` tables.  Loading, printing
 * and the SIGHUP reload check all walk that tree, so a key added to a table
 * is parsed, range-checked, printed and classified (reloadable or not) with
 * no further code.  libyaml's document API gives the node tree with
 * positions; YAML itself has no notion of types, ranges or duplicate keys, so
 * those checks are ours and every failure names FILE:LINE:COLUMN. */
#define _GNU_SOURCE /* strcasestr */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define CONFIG_FILE_MAX (16u << 20)   /* a config larger than this is a mistake */
#define PASSWORD_FILE_MAX (64u << 10) /* likewise for a password file */
#define PATH_MAX_LEN 160              /* longest key path we name in messages */
#define KEY_MAX 48                    /* longest key we compute suggestions for */
#define NAME_MAX_LEN 64               /* tier, alert and channel names */
#define MAX_SEEDS 64
#define MAX_CHANNELS 1024
#define KEY_PREFIX_MAX 64
#define UNIX_PATH_MAX 107 /* sizeof(sockaddr_un.sun_path) - 1 on Linux */
#define KAFKA_TOPIC_MAX 249

#define DAY_MS ((double)CLV_MS_PER_DAY)

/* ---------------------------------------------------------------------- */
/* Schema                                                                  */

enum kind {
    K_MAP,    /* nested mapping, children in `sub` */
    K_STR,    /* char * */
    K_INT,    /* int, bounds lo..hi */
    K_LONG,   /* long, bounds lo..hi */
    K_DOUBLE, /* double, bounds lo..hi */
    K_BOOL,   /* int 0/1 */
    K_DUR,    /* clv_ms, written with a unit; bounds in ms */
    K_ENUM,   /* int index into `names` */
    K_CUTS,   /* double[4], strictly increasing, each within lo..hi */
    K_CUSTOM, /* handled by `ops` */
};

#define F_RESTART 0x1u  /* a change needs a restart: SIGHUP refuses it */
#define F_LO_OPEN 0x2u  /* lower bound is exclusive */
#define F_HI_OPEN 0x4u  /* upper bound is exclusive */
#define F_NONEMPTY 0x8u /* a string that must not be empty */

struct loader;

/* Extra validation of a string value; reports at the node and returns -1. */
typedef int (*check_fn)(struct loader *ld, const yaml_node_t *node, const char *path,
                        const char *value);

/* Keys whose value is not a plain scalar or cut list (lists of maps, maps of
 * free-form keys, number-or-map).  `base` is the table's base struct. */
struct custom_ops {
    int (*load)(struct loader *ld, yaml_node_t *node, void *base, const char *path);
    /* Writes what follows "key:", newline included. */
    void (*print)(FILE *out, const void *base, int indent);
    /* Only needed for keys under F_RESTART. */
    bool (*equal)(const void *a, const void *b);
};

struct field {
    const char *key;
    enum kind kind;
    size_t off; /* offset of the value in the table's base struct */
    unsigned flags;
    double lo, hi; /* numeric bounds (ms for durations) */
    const struct field *sub;
    const char *const *names;
    check_fn check;
    const struct custom_ops *ops;
};

/* ---------------------------------------------------------------------- */
/* Loader state and error reporting                                        */

/* Where a value was set, so that checks spanning several keys can point at
 * the one the user wrote. */
struct mark_rec {
    const void *field;
    yaml_mark_t key;   /* the key's position */
    yaml_mark_t value; /* the value's position */
};

struct loader {
    const char *name; /* file name for messages */
    yaml_document_t *doc;
    struct clv_config *cfg;
    struct mark_rec *marks;
    size_t nmarks, capmarks;
    char *err;
    size_t errlen;
};

static int fail_at(struct loader *ld, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(struct loader *ld, yaml_mark_t m, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    clv_seterr(ld->err, ld->errlen, "%s:%zu:%zu: %s", ld->name, m.line + 1, m.column + 1, msg);
    return -1;
}

static int fail_oom(struct loader *ld)
{
    clv_seterr(ld->err, ld->errlen, "%s: out of memory", ld->name);
    return -1;
}

static int remember(struct loader *ld, const void *field, yaml_mark_t key, yaml_mark_t value)
{
    if (ld->nmarks == ld->capmarks) {
        size_t cap = ld->capmarks ? ld->capmarks * 2 : 64;
        struct mark_rec *m = realloc(ld->marks, cap * sizeof *m);

        if (m == NULL)
            return fail_oom(ld);
        ld->marks = m;
        ld->capmarks = cap;
    }
    ld->marks[ld->nmarks].field = field;
    ld->marks[ld->nmarks].key = key;
    ld->marks[ld->nmarks].value = value;
    ld->nmarks++;
    return 0;
}

static const struct mark_rec *mark_of(const struct loader *ld, const void *field)
{
    for (size_t i = ld->nmarks; i-- > 0;)
        if (ld->marks[i].field == field)
            return &ld->marks[i];
    return NULL;
}

/* The value position of the first of two settings the file wrote; the
 * defaults are consistent, so one of them was written when a cross-check
 * fails. */
static yaml_mark_t blame(const struct loader *ld, const void *first, const void *second)
{
    static const yaml_mark_t none = {0, 0, 0};
    const struct mark_rec *m = mark_of(ld, first);

    if (m == NULL)
        m = mark_of(ld, second);
    return m ? m->value : none;
}

/* The position of the key that set `field`. */
static yaml_mark_t key_mark(const struct loader *ld, const void *field)
{
    static const yaml_mark_t none = {0, 0, 0};
    const struct mark_rec *m = mark_of(ld, field);

    return m ? m->key : none;
}

/* ---------------------------------------------------------------------- */
/* Small helpers                                                           */

static void *field_ptr(const void *base, const struct field *f)
{
    return (char *)base + f->off;
}

/* Key paths only label messages, so an over-long one is cut and ends in
 * "...", not refused.  `written` is snprintf's result. */
static void mark_cut(char *out, size_t n, int written)
{
    if ((written < 0 || (size_t)written >= n) && n >= 4)
        memcpy(out + n - 4, "...", 4);
}

static void join_path(char *out, size_t n, const char *parent, const char *key)
{
    if (parent[0] == '\0')
        mark_cut(out, n, snprintf(out, n, "%s", key));
    else
        mark_cut(out, n, snprintf(out, n, "%s.%s", parent, key));
}

/* "parent[i]" for the i-th item of a list. */
static void item_path(char *out, size_t n, const char *parent, size_t i)
{
    mark_cut(out, n, snprintf(out, n, "%s[%zu]", parent, i));
}

static yaml_node_t *node_at(const struct loader *ld, int index)
{
    return yaml_document_get_node(ld->doc, index);
}

static size_t npairs(const yaml_node_t *map)
{
    return (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

static size_t nitems(const yaml_node_t *seq)
{
    return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

static const char *scalar_value(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar: YAML's null. */
static bool is_null(const yaml_node_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < CLV_ARRAY_LEN(nulls); i++)
        if (strcmp(scalar_value(n), nulls[i]) == 0)
            return true;
    return false;
}

/* "a mapping", "a list", or the quoted scalar, for "expected X, got Y". */
static void describe_node(const yaml_node_t *n, char *buf, size_t n_buf)
{
    if (n->type == YAML_MAPPING_NODE)
        snprintf(buf, n_buf, "a mapping");
    else if (n->type == YAML_SEQUENCE_NODE)
        snprintf(buf, n_buf, "a list");
    else if (is_null(n))
        snprintf(buf, n_buf, "an empty value");
    else
        snprintf(buf, n_buf, "\"%.60s\"", scalar_value(n));
}

static int type_error(struct loader *ld, const yaml_node_t *n, const char *path,
                      const char *expected)
{
    char got[80];

    describe_node(n, got, sizeof got);
    return fail_at(ld, n->start_mark, "%s: expected %s, got %s", path, expected, got);
}

/* Growable string for ${ENV} expansion. */
struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_add(struct strbuf *sb, const char *s, size_t n)
{
    if (sb->oom)
        return;
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = (sb->len + n + 1) * 2;
        char *p = realloc(sb->p, cap);

        if (p == NULL) {
            sb->oom = true;
            return;
        }
        sb->p = p;
        sb->cap = cap;
    }
    memcpy(sb->p + sb->len, s, n);
    sb->len += n;
    sb->p[sb->len] = '\0';
}

/* ---------------------------------------------------------------------- */
/* Suggestions for near misses                                             */

/* Optimal string alignment distance, case-insensitive: a transposition
 * ("gruop_id") counts as one edit, like a substitution. */
static unsigned edit_distance(const char *a, const char *b)
{
    unsigned d[KEY_MAX + 1][KEY_MAX + 1];
    size_t la = strlen(a), lb = strlen(b);

    if (la > KEY_MAX || lb > KEY_MAX)
        return UINT_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            unsigned cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            unsigned best = d[i - 1][j - 1] + cost;

            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* The closest of `names` to `word`, or NULL when none is close enough to be
 * a plausible typo (short words tolerate fewer edits), or the unique name
 * that `word` abbreviates. */
static const char *closest_name(const char *word, const char *const *names, size_t n)
{
    size_t len = strlen(word);
    unsigned limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    unsigned best = UINT_MAX;
    const char *pick = NULL;

    for (size_t i = 0; i < n; i++) {
        unsigned d = edit_distance(word, names[i]);

        if (d < best) {
            best = d;
            pick = names[i];
        }
    }
    if (best <= limit)
        return pick;
    for (size_t i = 0; len >= 3 && i < n; i++)
        if (strncmp(names[i], word, len) == 0)
            return names[i];
    return NULL;
}

static size_t table_keys(const struct field *fields, const char **keys, size_t max)
{
    size_t n = 0;

    for (const struct field *f = fields; f->key != NULL && n < max; f++)
        keys[n++] = f->key;
    return n;
}

static const struct field top_fields[];

/* The full path of a key named `key` anywhere in the schema, for a key that
 * was written at the wrong level ("dormant_after_days" at the top). */
static bool find_key_path(const struct field *fields, const char *parent, const char *key,
                          char *out, size_t n)
{
    for (const struct field *f = fields; f->key != NULL; f++) {
        char path[PATH_MAX_LEN];

        join_path(path, sizeof path, parent, f->key);
        if (strcmp(f->key, key) == 0 && parent[0] != '\0') {
            snprintf(out, n, "%s", path);
            return true;
        }
        if (f->kind == K_MAP && find_key_path(f->sub, path, key, out, n))
            return true;
    }
    return false;
}

static void list_names(const char *const *names, size_t n, char *buf, size_t buflen)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && used < buflen; i++) {
        int w = snprintf(buf + used, buflen - used, "%s%s", i ? ", " : "", names[i]);

        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static int unknown_key(struct loader *ld, const yaml_node_t *keynode, const struct field *fields,
                       const char *parent)
{
    const char *keys[32], *key = scalar_value(keynode);
    size_t n = table_keys(fields, keys, CLV_ARRAY_LEN(keys));
    const char *near = closest_name(key, keys, n);
    char elsewhere[PATH_MAX_LEN], valid[256];

    if (near != NULL)
        return fail_at(ld, keynode->start_mark, "unknown key \"%s\" (did you mean \"%s\"?)", key,
                       near);
    if (find_key_path(top_fields, "", key, elsewhere, sizeof elsewhere) &&
        strcmp(elsewhere, parent) != 0)
        return fail_at(ld, keynode->start_mark, "unknown key \"%s\" (did you mean \"%s\"?)", key,
                       elsewhere);
    list_names(keys, n, valid, sizeof valid);
    if (parent[0] == '\0')
        return fail_at(ld, keynode->start_mark, "unknown key \"%s\" (valid top-level keys: %s)",
                       key, valid);
    return fail_at(ld, keynode->start_mark, "unknown key \"%s\" (valid keys under %s: %s)", key,
                   parent, valid);
}

/* ---------------------------------------------------------------------- */
/* Scalars: ${ENV} expansion and typing                                    */

static bool env_name_char(char c, bool first)
{
    return c == '_' || isalpha((unsigned char)c) || (!first && isdigit((unsigned char)c));
}

/* Expands the ${NAME} at s (s[0] == '$', s[1] == '{') into sb; sets *used to
 * the bytes consumed. */
static int expand_one(struct loader *ld, const yaml_node_t *n, const char *path, const char *s,
                      struct strbuf *sb, size_t *used)
{
    const char *close = strchr(s + 2, '}');
    char name[128];
    size_t len;
    const char *value;

    if (close == NULL)
        return fail_at(ld, n->start_mark,
                       "%s: unterminated \"${\" (write \"$${\" for a literal \"${\")", path);
    len = (size_t)(close - (s + 2));
    for (size_t i = 0; i < len; i++)
        if (!env_name_char(s[2 + i], i == 0))
            return fail_at(ld, n->start_mark,
                           "%s: \"%.*s\" is not a valid reference: write ${NAME} with letters, "
                           "digits and _ only",
                           path, (int)(len + 3 > 64 ? 64 : len + 3), s);
    if (len == 0 || len >= sizeof name)
        return fail_at(ld, n->start_mark, "%s: bad environment reference \"%.*s\"", path,
                       (int)(len + 3 > 64 ? 64 : len + 3), s);
    memcpy(name, s + 2, len);
    name[len] = '\0';
    value = getenv(name);
    if (value == NULL)
        return fail_at(ld, n->start_mark, "%s: environment variable \"%s\" is not set", path, name);
    sb_add(sb, value, strlen(value));
    *used = len + 3;
    return 0;
}

/* The scalar's text with ${NAME} replaced by the environment's value and
 * "$${" by a literal "${".  Returns a malloc'd string in *out. */
static int expand_env(struct loader *ld, const yaml_node_t *n, const char *path, char **out)
{
    const char *s = scalar_value(n);
    struct strbuf sb = {0};

    if (strlen(s) != n->data.scalar.length)
        return fail_at(ld, n->start_mark, "%s: value contains a NUL byte", path);
    sb_add(&sb, "", 0);
    while (*s != '\0') {
        size_t used = 1;

        if (s[0] == '$' && s[1] == '$' && s[2] == '{') {
            sb_add(&sb, "${", 2);
            used = 3;
        } else if (s[0] == '$' && s[1] == '{') {
            if (expand_one(ld, n, path, s, &sb, &used) != 0) {
                free(sb.p);
                return -1;
            }
        } else {
            sb_add(&sb, s, 1);
        }
        s += used;
    }
    if (sb.oom) {
        free(sb.p);
        return fail_oom(ld);
    }
    *out = sb.p;
    return 0;
}

/* The expanded text of a scalar node; a null becomes "" when allowed. */
static int scalar_text(struct loader *ld, const yaml_node_t *n, const char *path,
                       const char *expected, bool allow_null, char **out)
{
    if (n->type != YAML_SCALAR_NODE || (!allow_null && is_null(n)))
        return type_error(ld, n, path, expected);
    if (is_null(n)) {
        *out = strdup("");
        return *out ? 0 : fail_oom(ld);
    }
    return expand_env(ld, n, path, out);
}

/* 0, or -1 when s is not a decimal integer, or -2 when it overflows. */
static int parse_integer(const char *s, long long *out)
{
    char *end;
    bool sign = s[0] == '-' || s[0] == '+';

    if (!isdigit((unsigned char)s[sign]))
        return -1;
    errno = 0;
    *out = strtoll(s, &end, 10);
    if (*end != '\0')
        return -1;
    return errno == ERANGE ? -2 : 0;
}

/* Decimal numbers only: strtod would also take "inf", "nan" and hex. */
static int parse_number(const char *s, double *out)
{
    char *end;

    if (s[0] == '\0' || strspn(s, "0123456789+-.eE") != strlen(s))
        return -1;
    errno = 0;
    *out = strtod(s, &end);
    return (errno != 0 || *end != '\0' || !isfinite(*out)) ? -1 : 0;
}

int config_parse_duration(const char *s, clv_ms *out)
{
    static const struct {
        const char *unit;
        clv_ms ms;
    } units[] = {{"ms", 1},
                 {"s", CLV_MS_PER_SEC},
                 {"m", CLV_MS_PER_MIN},
                 {"h", CLV_MS_PER_HOUR},
                 {"d", CLV_MS_PER_DAY}};
    clv_ms v = 0;
    size_t i = 0;

    if (s == NULL || !isdigit((unsigned char)s[0]))
        return -1;
    for (; isdigit((unsigned char)s[i]); i++) {
        if (v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    for (size_t u = 0; u < CLV_ARRAY_LEN(units); u++) {
        if (strcmp(s + i, units[u].unit) == 0) {
            if (v > INT64_MAX / units[u].ms)
                return -1;
            *out = v * units[u].ms;
            return 0;
        }
    }
    return -1;
}

static void fmt_duration(clv_ms ms, char *buf, size_t n)
{
    static const struct {
        const char *unit;
        clv_ms ms;
    } units[] = {{"d", CLV_MS_PER_DAY},
                 {"h", CLV_MS_PER_HOUR},
                 {"m", CLV_MS_PER_MIN},
                 {"s", CLV_MS_PER_SEC}};

    if (ms == 0) {
        snprintf(buf, n, "0s");
        return;
    }
    for (size_t u = 0; u < CLV_ARRAY_LEN(units); u++) {
        if (ms % units[u].ms == 0) {
            snprintf(buf, n, "%lld%s", (long long)(ms / units[u].ms), units[u].unit);
            return;
        }
    }
    snprintf(buf, n, "%lldms", (long long)ms);
}

/* Shortest text that reads back as exactly the same double. */
static void fmt_double(double v, char *buf, size_t n)
{
    /* Whole numbers print without an exponent ("1000000", not "1e+06"). */
    if (v > -1e15 && v < 1e15 && v == (double)(long long)v) {
        snprintf(buf, n, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static bool in_range(const struct field *f, double v)
{
    bool lo_ok = (f->flags & F_LO_OPEN) ? v > f->lo : v >= f->lo;
    bool hi_ok = (f->flags & F_HI_OPEN) ? v < f->hi : v <= f->hi;

    return lo_ok && hi_ok;
}

static void fmt_bound(const struct field *f, double v, char *buf, size_t n)
{
    if (f->kind == K_DUR)
        fmt_duration((clv_ms)v, buf, n);
    else
        fmt_double(v, buf, n);
}

/* "between 1 and 65535", "> 0 and <= 3650", ">= 0". */
static void describe_range(const struct field *f, char *buf, size_t n)
{
    char lo[32], hi[32];
    bool lo_open = f->flags & F_LO_OPEN, hi_open = f->flags & F_HI_OPEN;

    fmt_bound(f, f->lo, lo, sizeof lo);
    fmt_bound(f, f->hi, hi, sizeof hi);
    if (isinf(f->hi))
        snprintf(buf, n, "%s %s", lo_open ? ">" : ">=", lo);
    else if (!lo_open && !hi_open)
        snprintf(buf, n, "between %s and %s", lo, hi);
    else
        snprintf(buf, n, "%s %s and %s %s", lo_open ? ">" : ">=", lo, hi_open ? "<" : "<=", hi);
}

static int range_error(struct loader *ld, const struct field *f, const yaml_node_t *n,
                       const char *path, const char *text)
{
    char range[96];

    describe_range(f, range, sizeof range);
    return fail_at(ld, n->start_mark, "%s: %s is out of range (must be %s)", path, text, range);
}

/* ---------------------------------------------------------------------- */
/* String checks                                                           */

static bool has_space_or_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return true;
    return false;
}

static int check_host(struct loader *ld, const yaml_node_t *n, const char *path, const char *v)
{
    if (has_space_or_control(v))
        return fail_at(ld, n->start_mark, "%s: \"%s\" is not a host name or address", path, v);
    return 0;
}

/* Kafka's own rule: 1..249 of [A-Za-z0-9._-], and not "." or "..". */
static int check_topic(struct loader *ld, const yaml_node_t *n, const char *path, const char *v)
{
    size_t len = strlen(v);
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

    if (len > KAFKA_TOPIC_MAX || strspn(v, ok) != len || strcmp(v, ".") == 0 ||
        strcmp(v, "..") == 0)
        return fail_at(ld, n->start_mark,
                       "%s: \"%.60s\" is not a valid Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ "
                       "-)",
                       path, v);
    return 0;
}

/* Names of tiers, alerts and channels end up in JSON and metric labels. */
static int check_name(struct loader *ld, const yaml_node_t *n, const char *path, const char *v)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    size_t len = strlen(v);

    if (len > NAME_MAX_LEN || strspn(v, ok) != len)
        return fail_at(ld, n->start_mark,
                       "%s: \"%.60s\" is not a valid name (1 to 64 of A-Z a-z 0-9 . _ -)", path, v);
    return 0;
}

/* The shard hash tag is "{sN}": braces in the prefix would change the slot. */
static int check_key_prefix(struct loader *ld, const yaml_node_t *n, const char *path,
                            const char *v)
{
    if (strlen(v) > KEY_PREFIX_MAX || strpbrk(v, "{}") != NULL || has_space_or_control(v))
        return fail_at(ld, n->start_mark,
                       "%s: \"%.60s\" is not a valid key prefix (at most 64 bytes, no spaces, no "
                       "'{' or '}')",
                       path, v);
    return 0;
}

static int check_unix_socket(struct loader *ld, const yaml_node_t *n, const char *path,
                             const char *v)
{
    if (strlen(v) > UNIX_PATH_MAX)
        return fail_at(ld, n->start_mark, "%s: socket path longer than %d bytes", path,
                       UNIX_PATH_MAX);
    return 0;
}

/* NULL if s is "host:port" or "[v6addr]:port" with port 1..65535. */
static const char *hostport_problem(const char *s)
{
    const char *colon = strrchr(s, ':');
    long long port;

    if (has_space_or_control(s))
        return "contains spaces";
    if (colon == NULL || colon == s)
        return "expected host:port";
    if (s[0] == '[' && colon[-1] != ']')
        return "expected [address]:port";
    if (parse_integer(colon + 1, &port) != 0 || colon[1] == '+' || colon[1] == '-')
        return "the port is not a number";
    if (port < 1 || port > 65535)
        return "the port must be between 1 and 65535";
    return NULL;
}

static int check_hostport(struct loader *ld, const yaml_node_t *n, const char *path, const char *v)
{
    const char *problem = hostport_problem(v);

    if (problem != NULL)
        return fail_at(ld, n->start_mark, "%s: \"%.60s\": %s", path, v, problem);
    return 0;
}

static int check_listen(struct loader *ld, const yaml_node_t *n, const char *path, const char *v)
{
    return v[0] == '\0' ? 0 : check_hostport(ld, n, path, v);
}

/* ---------------------------------------------------------------------- */
/* Loading typed values                                                    */

static int load_map(struct loader *ld, yaml_node_t *node, const struct field *fields, void *base,
                    const char *path);

static int load_string_into(struct loader *ld, const yaml_node_t *n, const char *path, char **slot,
                            unsigned flags, check_fn check)
{
    char *text;

    if (scalar_text(ld, n, path, "a string", true, &text) != 0)
        return -1;
    if ((flags & F_NONEMPTY) && text[0] == '\0') {
        free(text);
        return fail_at(ld, n->start_mark, "%s: must not be empty", path);
    }
    if (check != NULL && check(ld, n, path, text) != 0) {
        free(text);
        return -1;
    }
    free(*slot);
    *slot = text;
    return 0;
}

static int store_integer(struct loader *ld, const struct field *f, const yaml_node_t *n, void *base,
                         const char *path, const char *text)
{
    long long v;
    int rc = parse_integer(text, &v);

    if (rc == -1)
        return fail_at(ld, n->start_mark, "%s: expected an integer, got \"%.60s\"", path, text);
    if (rc == -2 || !in_range(f, (double)v))
        return range_error(ld, f, n, path, text);
    if (f->kind == K_INT)
        *(int *)field_ptr(base, f) = (int)v;
    else
        *(long *)field_ptr(base, f) = (long)v;
    return 0;
}

static int store_double(struct loader *ld, const struct field *f, const yaml_node_t *n,
                        double *slot, const char *path, const char *text)
{
    double v;

    if (parse_number(text, &v) != 0)
        return fail_at(ld, n->start_mark, "%s: expected a number, got \"%.60s\"", path, text);
    if (!in_range(f, v))
        return range_error(ld, f, n, path, text);
    *slot = v;
    return 0;
}

static int store_bool(struct loader *ld, const yaml_node_t *n, int *slot, const char *path,
                      const char *text)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};

    for (size_t i = 0; i < CLV_ARRAY_LEN(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            *slot = strcasecmp(text, yes[i]) == 0;
            return 0;
        }
    }
    return fail_at(ld, n->start_mark, "%s: expected true or false, got \"%.60s\"", path, text);
}

static int store_duration(struct loader *ld, const struct field *f, const yaml_node_t *n,
                          void *base, const char *path, const char *text)
{
    clv_ms v;

    if (config_parse_duration(text, &v) != 0) {
        if (text[0] != '\0' && strspn(text, "0123456789") == strlen(text))
            return fail_at(ld, n->start_mark,
                           "%s: duration \"%s\" needs a unit (ms, s, m, h or d), e.g. \"%ss\"",
                           path, text, text);
        return fail_at(ld, n->start_mark,
                       "%s: bad duration \"%.60s\" (write a whole number and a unit: ms, s, m, h "
                       "or d, e.g. \"500ms\", \"30s\", \"5m\", \"24h\", \"7d\")",
                       path, text);
    }
    if (!in_range(f, (double)v))
        return range_error(ld, f, n, path, text);
    *(clv_ms *)field_ptr(base, f) = v;
    return 0;
}

static size_t count_names(const char *const *names)
{
    size_t n = 0;

    while (names[n] != NULL)
        n++;
    return n;
}

/* One of a fixed list of words; a near miss gets a suggestion. */
static int store_enum(struct loader *ld, const yaml_node_t *n, const char *const *names, int *slot,
                      const char *path, const char *text)
{
    size_t count = count_names(names);
    const char *near;
    char valid[160];

    for (size_t i = 0; i < count; i++) {
        if (strcmp(text, names[i]) == 0) {
            *slot = (int)i;
            return 0;
        }
    }
    near = closest_name(text, names, count);
    if (near != NULL)
        return fail_at(ld, n->start_mark, "%s: unknown value \"%.60s\" (did you mean \"%s\"?)",
                       path, text, near);
    list_names(names, count, valid, sizeof valid);
    return fail_at(ld, n->start_mark, "%s: unknown value \"%.60s\" (expected one of: %s)", path,
                   text, valid);
}

static const char *expected_for(const struct field *f)
{
    switch (f->kind) {
    case K_INT:
    case K_LONG:
        return "an integer";
    case K_DOUBLE:
        return "a number";
    case K_BOOL:
        return "true or false";
    case K_DUR:
        return "a duration such as 30s";
    default:
        return "a word";
    }
}

static int store_scalar(struct loader *ld, const struct field *f, const yaml_node_t *n, void *base,
                        const char *path, const char *text)
{
    switch (f->kind) {
    case K_INT:
    case K_LONG:
        return store_integer(ld, f, n, base, path, text);
    case K_DOUBLE:
        return store_double(ld, f, n, field_ptr(base, f), path, text);
    case K_BOOL:
        return store_bool(ld, n, field_ptr(base, f), path, text);
    case K_DUR:
        return store_duration(ld, f, n, base, path, text);
    case K_ENUM:
        return store_enum(ld, n, f->names, field_ptr(base, f), path, text);
    default:
        return fail_at(ld, n->start_mark, "%s: internal error: unhandled kind", path);
    }
}

static int load_scalar(struct loader *ld, const struct field *f, const yaml_node_t *n, void *base,
                       const char *path)
{
    char *text;
    int rc;

    if (f->kind == K_STR)
        return load_string_into(ld, n, path, field_ptr(base, f), f->flags, f->check);
    if (scalar_text(ld, n, path, expected_for(f), false, &text) != 0)
        return -1;
    rc = store_scalar(ld, f, n, base, path, text);
    free(text);
    return rc;
}

/* Exactly four strictly increasing numbers: the RFM cut points. */
static int load_cuts(struct loader *ld, const struct field *f, const yaml_node_t *n, void *base,
                     const char *path)
{
    double cuts[4], *slot = field_ptr(base, f);

    if (n->type != YAML_SEQUENCE_NODE)
        return type_error(ld, n, path, "a list of 4 increasing numbers");
    if (nitems(n) != 4)
        return fail_at(ld, n->start_mark, "%s: expected exactly 4 cut points, got %zu", path,
                       nitems(n));
    for (size_t i = 0; i < 4; i++) {
        const yaml_node_t *item = node_at(ld, n->data.sequence.items.start[i]);
        char ipath[PATH_MAX_LEN], *text;
        int rc;

        item_path(ipath, sizeof ipath, path, i);
        if (scalar_text(ld, item, ipath, "a number", false, &text) != 0)
            return -1;
        rc = store_double(ld, f, item, &cuts[i], ipath, text);
        free(text);
        if (rc != 0)
            return -1;
        if (i > 0 && cuts[i] <= cuts[i - 1])
            return fail_at(ld, item->start_mark, "%s: cut points must be strictly increasing",
                           ipath);
    }
    memcpy(slot, cuts, sizeof cuts);
    return 0;
}

static int load_field(struct loader *ld, const struct field *f, const yaml_node_t *key,
                      yaml_node_t *n, void *base, const char *path)
{
    int rc;

    switch (f->kind) {
    case K_MAP:
        return load_map(ld, n, f->sub, base, path);
    case K_CUSTOM:
        rc = f->ops->load(ld, n, base, path);
        break;
    case K_CUTS:
        rc = load_cuts(ld, f, n, base, path);
        break;
    default:
        rc = load_scalar(ld, f, n, base, path);
        break;
    }
    return rc == 0 ? remember(ld, field_ptr(base, f), key->start_mark, n->start_mark) : -1;
}

/* Keys must be non-empty plain strings. */
static int key_text(struct loader *ld, const yaml_node_t *k, const char *path, const char **out)
{
    if (k->type != YAML_SCALAR_NODE)
        return fail_at(ld, k->start_mark, "%s: keys must be plain strings",
                       path[0] ? path : "top level");
    if (strlen(scalar_value(k)) != k->data.scalar.length || k->data.scalar.length == 0)
        return fail_at(ld, k->start_mark, "%s: empty key or key with a NUL byte",
                       path[0] ? path : "top level");
    *out = scalar_value(k);
    return 0;
}

static int check_duplicates(struct loader *ld, const yaml_node_t *map)
{
    const yaml_node_pair_t *start = map->data.mapping.pairs.start;
    const yaml_node_pair_t *top = map->data.mapping.pairs.top;

    for (const yaml_node_pair_t *p = start; p < top; p++) {
        const yaml_node_t *k = node_at(ld, p->key);

        if (k->type != YAML_SCALAR_NODE)
            continue; /* reported by key_text */
        for (const yaml_node_pair_t *q = start; q < p; q++) {
            const yaml_node_t *first = node_at(ld, q->key);

            if (first->type == YAML_SCALAR_NODE &&
                first->data.scalar.length == k->data.scalar.length &&
                memcmp(first->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0)
                return fail_at(ld, k->start_mark,
                               "duplicate key \"%s\" (first defined at line %zu, column %zu)",
                               scalar_value(k), first->start_mark.line + 1,
                               first->start_mark.column + 1);
        }
    }
    return 0;
}

static const struct field *find_field(const struct field *fields, const char *key)
{
    for (const struct field *f = fields; f->key != NULL; f++)
        if (strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

/* A mapping's keys checked against `fields`; a null (a section left empty
 * or all commented out) changes nothing. */
static int load_map(struct loader *ld, yaml_node_t *node, const struct field *fields, void *base,
                    const char *path)
{
    if (is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE)
        return type_error(ld, node, path[0] ? path : "top level", "a mapping");
    if (check_duplicates(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = node_at(ld, p->key);
        const struct field *f;
        const char *key = NULL;
        char child[PATH_MAX_LEN];

        if (key_text(ld, k, path, &key) != 0)
            return -1;
        f = find_field(fields, key);
        if (f == NULL)
            return unknown_key(ld, k, fields, path);
        join_path(child, sizeof child, path, key);
        if (load_field(ld, f, k, node_at(ld, p->value), base, child) != 0)
            return -1;
    }
    return 0;
}

/* The value of `key` in the mapping `map`, or NULL. */
static const yaml_node_t *find_value(const struct loader *ld, const yaml_node_t *map,
                                     const char *key)
{
    if (map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = node_at(ld, p->key);

        if (k->type == YAML_SCALAR_NODE && strcmp(scalar_value(k), key) == 0)
            return node_at(ld, p->value);
    }
    return NULL;
}

/* Every key of `required` present in the list item `item`. */
static int require_keys(struct loader *ld, const yaml_node_t *item, const char *path,
                        const char *const *required)
{
    for (; *required != NULL; required++)
        if (find_value(ld, item, *required) == NULL)
            return fail_at(ld, item->start_mark, "%s: missing \"%s\"", path, *required);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Releasing                                                               */

static void free_properties(struct clv_kafka_config *k)
{
    for (int i = 0; i < k->nproperties; i++) {
        free(k->properties[i].key);
        free(k->properties[i].value);
    }
    free(k->properties);
    k->properties = NULL;
    k->nproperties = 0;
}

static void free_seeds(struct clv_redis_config *r)
{
    for (int i = 0; i < r->nseeds; i++)
        free(r->seeds[i]);
    free(r->seeds);
    r->seeds = NULL;
    r->nseeds = 0;
}

static void free_by_channel(struct clv_model_config *m)
{
    for (int i = 0; i < m->ncac_by_channel; i++)
        free(m->cac_by_channel[i].channel);
    free(m->cac_by_channel);
    m->cac_by_channel = NULL;
    m->ncac_by_channel = 0;
}

static void free_tiers(struct clv_config *cfg)
{
    for (int i = 0; i < cfg->ntiers; i++) {
        free(cfg->tiers[i].name);
        cfg->tiers[i].name = NULL;
    }
    cfg->ntiers = 0;
}

static void free_alerts(struct clv_config *cfg)
{
    for (int i = 0; i < cfg->nalerts; i++) {
        free(cfg->alerts[i].name);
        cfg->alerts[i].name = NULL;
    }
    cfg->nalerts = 0;
}

/* ---------------------------------------------------------------------- */
/* Custom keys                                                             */

static int load_properties(struct loader *ld, yaml_node_t *n, void *base, const char *path)
{
    struct clv_kafka_config *k = &((struct clv_config *)base)->kafka;

    free_properties(k);
    if (is_null(n))
        return 0;
    if (n->type != YAML_MAPPING_NODE)
        return type_error(ld, n, path, "a mapping of librdkafka properties");
    if (check_duplicates(ld, n) != 0)
        return -1;
    k->properties = calloc(npairs(n) + 1, sizeof *k->properties);
    if (k->properties == NULL)
        return fail_oom(ld);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        struct clv_kv *kv = &k->properties[k->nproperties];
        const char *key = NULL;
        char kpath[PATH_MAX_LEN];

        if (key_text(ld, node_at(ld, p->key), path, &key) != 0)
            return -1;
        join_path(kpath, sizeof kpath, path, key);
        if (scalar_text(ld, node_at(ld, p->value), kpath, "a scalar value", true, &kv->value) != 0)
            return -1;
        kv->key = strdup(key);
        k->nproperties++; /* counted before the check so config_free releases it */
        if (kv->key == NULL)
            return fail_oom(ld);
    }
    return 0;
}

static int load_seeds(struct loader *ld, yaml_node_t *n, void *base, const char *path)
{
    struct clv_redis_config *r = &((struct clv_config *)base)->redis;

    free_seeds(r);
    if (is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return type_error(ld, n, path, "a list of host:port");
    if (nitems(n) > MAX_SEEDS)
        return fail_at(ld, n->start_mark, "%s: at most %d seeds", path, MAX_SEEDS);
    r->seeds = calloc(nitems(n) + 1, sizeof *r->seeds);
    if (r->seeds == NULL)
        return fail_oom(ld);
    for (size_t i = 0; i < nitems(n); i++) {
        const yaml_node_t *item = node_at(ld, n->data.sequence.items.start[i]);
        char ipath[PATH_MAX_LEN];

        item_path(ipath, sizeof ipath, path, i);
        r->nseeds++;
        if (load_string_into(ld, item, ipath, &r->seeds[i], F_NONEMPTY, check_hostport) != 0)
            return -1;
    }
    return 0;
}

static int load_password(struct loader *ld, yaml_node_t *n, void *base, const char *path)
{
    return load_string_into(ld, n, path, &((struct clv_config *)base)->redis.password, 0, NULL);
}

static const struct field cac_number = {.key = "cac",
                                        .kind = K_DOUBLE,
                                        .off = offsetof(struct clv_config, clv.cac_default),
                                        .lo = 0,
                                        .hi = INFINITY};
/* A bare non-negative amount: the value of one clv.cac.by_channel entry. */
static const struct field cost_field = {.key = "cost", .kind = K_DOUBLE, .lo = 0, .hi = INFINITY};
static const struct field cac_fields[];

/* clv.cac: a number, or {default: N, by_channel: {name: N}}. */
static int load_cac(struct loader *ld, yaml_node_t *n, void *base, const char *path)
{
    struct clv_config *cfg = base;

    free_by_channel(&cfg->clv);
    if (n->type == YAML_MAPPING_NODE)
        return load_map(ld, n, cac_fields, base, path);
    if (n->type != YAML_SCALAR_NODE)
        return type_error(ld, n, path, "a number or {default: N, by_channel: {NAME: N}}");
    return load_scalar(ld, &cac_number, n, base, path);
}

static int load_channel_cac(struct loader *ld, const yaml_node_pair_t *p, struct clv_channel_cac *c,
                            const char *path)
{
    const yaml_node_t *k = node_at(ld, p->key);
    const char *name = NULL;
    char cpath[PATH_MAX_LEN];

    if (key_text(ld, k, path, &name) != 0 || check_name(ld, k, path, name) != 0)
        return -1;
    join_path(cpath, sizeof cpath, path, name);
    if (load_scalar(ld, &cost_field, node_at(ld, p->value), &c->cac, cpath) != 0)
        return -1;
    c->channel = strdup(name);
    return c->channel ? 0 : fail_oom(ld);
}

static int load_by_channel(struct loader *ld, yaml_node_t *n, void *base, const char *path)
{
    struct clv_model_config *m = &((struct clv_config *)base)->clv;

    free_by_channel(m);
    if (is_null(n))
        return 0;
    if (n->type != YAML_MAPPING_NODE)
        return type_error(ld, n, path, "a mapping of channel: cost");
    if (npairs(n) > MAX_CHANNELS)
        return fail_at(ld, n->start_mark, "%s: at most %d channels", path, MAX_CHANNELS);
    if (check_duplicates(ld, n) != 0)
        return -1;
    m->cac_by_channel = calloc(npairs(n) + 1, sizeof *m->cac_by_channel);
    if (m->cac_by_channel == NULL)
        return fail_oom(ld);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        struct clv_channel_cac *c = &m->cac_by_channel[m->ncac_by_channel];

        m->ncac_by_channel++;
        if (load_channel_cac(ld, p, c, path) != 0)
            return -1;
    }
    return 0;
}

static const char *const stage_names[] = {"prospect", "new",     "active",      "loyal", "at_risk",
                                          "dormant",  "churned", "reactivated", NULL};

/* "churn_rate" or "stage_share.<stage>"; a typo gets the closest of those. */
static int metric_error(struct loader *ld, const yaml_node_t *n, const char *path, const char *text)
{
    char names[CLV_ARRAY_LEN(stage_names)][40];
    const char *ptrs[CLV_ARRAY_LEN(stage_names)];
    const char *near;

    ptrs[0] = "churn_rate";
    for (size_t i = 0; stage_names[i] != NULL; i++) {
        snprintf(names[i], sizeof names[i], "stage_share.%s", stage_names[i]);
        ptrs[i + 1] = names[i];
    }
    near = closest_name(text, ptrs, CLV_ARRAY_LEN(ptrs));
    if (near != NULL)
        return fail_at(ld, n->start_mark, "%s: unknown metric \"%.60s\" (did you mean \"%s\"?)",
                       path, text, near);
    return fail_at(ld, n->start_mark,
                   "%s: unknown metric \"%.60s\" (expected churn_rate or stage_share.STAGE, STAGE "
                   "one of prospect, new, active, loyal, at_risk, dormant, churned, reactivated)",
                   path, text);
}

/* The stage index of "stage_share.<stage>", or -1. */
static int stage_share_index(const char *text)
{
    static const char prefix[] = "stage_share.";

    if (strncmp(text, prefix, sizeof prefix - 1) != 0)
        return -1;
    for (int i = 0; stage_names[i] != NULL; i++)
        if (strcmp(text + sizeof prefix - 1, stage_names[i]) == 0)
            return i;
    return -1;
}

static int load_metric(struct loader *ld, yaml_node_t *n, void *base, const char *path)
{
    struct clv_alert_rule *a = base;
    char *text;
    int stage, rc = 0;

    if (scalar_text(ld, n, path, "churn_rate or stage_share.<stage>", false, &text) != 0)
        return -1;
    stage = stage_share_index(text);
    if (strcmp(text, "churn_rate") == 0) {
        a->metric = CLV_ALERT_CHURN_RATE;
        a->stage = 0;
    } else if (stage >= 0) {
        a->metric = CLV_ALERT_STAGE_SHARE;
        a->stage = stage;
    } else {
        rc = metric_error(ld, n, path, text);
    }
    free(text);
    return rc;
}

static const struct field tier_fields[];
static const struct field alert_fields[];

static int check_unique_name(struct loader *ld, const yaml_node_t *item, const char *path,
                             const char *name, const char *prior)
{
    if (prior != NULL && strcmp(prior, name) == 0)
        return fail_at(ld, find_value(ld, item, "name")->start_mark,
                       "%s.name: \"%s\" is used twice", path, name);
    return 0;
}

static int check_tier(struct loader *ld, const struct clv_config *cfg, int i,
                      const yaml_node_t *item, const char *path)
{
    const yaml_node_t *at = find_value(ld, item, "min_spend");

    if (i == 0 && cfg->tiers[0].min_spend != 0)
        return fail_at(ld, at->start_mark, "%s.min_spend: the first tier must start at 0", path);
    for (int j = 0; j < i; j++)
        if (check_unique_name(ld, item, path, cfg->tiers[i].name, cfg->tiers[j].name) != 0)
            return -1;
    if (i > 0 && cfg->tiers[i].min_spend <= cfg->tiers[i - 1].min_spend)
        return fail_at(ld, at->start_mark,
                       "%s.min_spend: must be greater than the previous tier's min_spend", path);
    return 0;
}

static int load_levels(struct loader *ld, yaml_node_t *n, void *base, const char *path)
{
    static const char *const required[] = {"name", "min_spend", NULL};
    struct clv_config *cfg = base;

    if (n->type != YAML_SEQUENCE_NODE)
        return type_error(ld, n, path, "a list of {name, min_spend}");
    if (nitems(n) < 1 || nitems(n) > CLV_MAX_TIERS)
        return fail_at(ld, n->start_mark, "%s: expected 1 to %d tiers, got %zu", path,
                       CLV_MAX_TIERS, nitems(n));
    free_tiers(cfg);
    for (size_t i = 0; i < nitems(n); i++) {
        yaml_node_t *item = node_at(ld, n->data.sequence.items.start[i]);
        char ipath[PATH_MAX_LEN];

        item_path(ipath, sizeof ipath, path, i);
        memset(&cfg->tiers[i], 0, sizeof cfg->tiers[i]);
        cfg->ntiers++;
        if (load_map(ld, item, tier_fields, &cfg->tiers[i], ipath) != 0 ||
            require_keys(ld, item, ipath, required) != 0 ||
            check_tier(ld, cfg, (int)i, item, ipath) != 0)
            return -1;
    }
    return 0;
}

static int check_alert(struct loader *ld, const struct clv_config *cfg, int i,
                       const yaml_node_t *item, const char *path)
{
    const struct clv_alert_rule *a = &cfg->alerts[i];
    const yaml_node_t *window = find_value(ld, item, "window");

    if (a->metric != CLV_ALERT_CHURN_RATE && window != NULL)
        return fail_at(ld, window->start_mark, "%s.window: only churn_rate takes a window", path);
    for (int j = 0; j < i; j++)
        if (check_unique_name(ld, item, path, a->name, cfg->alerts[j].name) != 0)
            return -1;
    return 0;
}

static int load_alerts(struct loader *ld, yaml_node_t *n, void *base, const char *path)
{
    static const char *const required[] = {"name", "metric", "above", NULL};
    struct clv_config *cfg = base;

    free_alerts(cfg);
    if (is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return type_error(ld, n, path, "a list of {name, metric, above, ...}");
    if (nitems(n) > CLV_MAX_ALERTS)
        return fail_at(ld, n->start_mark, "%s: at most %d alert rules", path, CLV_MAX_ALERTS);
    for (size_t i = 0; i < nitems(n); i++) {
        yaml_node_t *item = node_at(ld, n->data.sequence.items.start[i]);
        struct clv_alert_rule *a = &cfg->alerts[i];
        char ipath[PATH_MAX_LEN];

        item_path(ipath, sizeof ipath, path, i);
        memset(a, 0, sizeof *a);
        a->window = 24 * CLV_MS_PER_HOUR;
        a->hysteresis = 0.1;
        cfg->nalerts++;
        if (load_map(ld, item, alert_fields, a, ipath) != 0 ||
            require_keys(ld, item, ipath, required) != 0 ||
            check_alert(ld, cfg, (int)i, item, ipath) != 0)
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Printing                                                                */

/* Length of the UTF-8 sequence at s and its code point in *cp; 1 with the
 * byte itself for a malformed sequence (possible only via ${ENV}). */
static int utf8_next(const unsigned char *s, unsigned *cp)
{
    int len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 1;

    *cp = len == 1 ? s[0] : s[0] & (0x7fu >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = s[0];
            return 1;
        }
        *cp = (*cp << 6) | (s[i] & 0x3fu);
    }
    return len;
}

/* Characters a double-quoted scalar cannot hold literally: controls, and
 * NEL, LS, PS (YAML line breaks, folded on reading), BOM and non-characters. */
static bool needs_escape(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0xfeff || cp == 0xfffe || cp == 0xffff;
}

/* A double-quoted YAML string that config_load reads back unchanged.  In
 * values (expand_env true) "${" is written "$${" so that it is not expanded
 * again; keys are never expanded. */
static void print_yaml_string(FILE *out, const char *str, bool expand_env)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");

    fputc('"', out);
    while (*s != '\0') {
        unsigned cp;
        int len = utf8_next(s, &cp);

        if (cp == '"' || cp == '\\')
            fprintf(out, "\\%c", (int)cp);
        else if (cp == '\n')
            fputs("\\n", out);
        else if (cp == '\t')
            fputs("\\t", out);
        else if (needs_escape(cp))
            fprintf(out, cp <= 0xff ? "\\x%02x" : "\\u%04x", cp);
        else if (expand_env && cp == '$' && s[1] == '{')
            fputs("$$", out);
        else
            fwrite(s, 1, (size_t)len, out);
        s += len;
    }
    fputc('"', out);
}

static void print_quoted(FILE *out, const char *value)
{
    print_yaml_string(out, value, true);
}

static void print_double(FILE *out, double v)
{
    char buf[40];

    fmt_double(v, buf, sizeof buf);
    fputs(buf, out);
}

static void print_leaf(FILE *out, const struct field *f, const void *base)
{
    const void *p = field_ptr(base, f);
    char buf[40];

    switch (f->kind) {
    case K_STR:
        print_quoted(out, *(char *const *)p);
        break;
    case K_INT:
        fprintf(out, "%d", *(const int *)p);
        break;
    case K_LONG:
        fprintf(out, "%ld", *(const long *)p);
        break;
    case K_DOUBLE:
        print_double(out, *(const double *)p);
        break;
    case K_BOOL:
        fputs(*(const int *)p ? "true" : "false", out);
        break;
    case K_DUR:
        fmt_duration(*(const clv_ms *)p, buf, sizeof buf);
        fputs(buf, out);
        break;
    case K_ENUM:
        fputs(f->names[*(const int *)p], out);
        break;
    case K_CUTS:
        for (int i = 0; i < 4; i++) {
            fputs(i ? ", " : "[", out);
            print_double(out, ((const double *)p)[i]);
        }
        fputc(']', out);
        break;
    default:
        break;
    }
}

static void print_fields(FILE *out, const struct field *fields, const void *base, int indent)
{
    for (const struct field *f = fields; f->key != NULL; f++) {
        fprintf(out, "%*s%s:", indent, "", f->key);
        if (f->kind == K_MAP) {
            fputc('\n', out);
            print_fields(out, f->sub, base, indent + 2);
        } else if (f->kind == K_CUSTOM) {
            f->ops->print(out, base, indent);
        } else {
            fputc(' ', out);
            print_leaf(out, f, base);
            fputc('\n', out);
        }
    }
}

/* librdkafka properties that hold credentials or key material. */
static bool is_secret_property(const char *key)
{
    static const char *const words[] = {"password", "secret", "sasl.oauthbearer", "ssl.key.pem"};

    for (size_t i = 0; i < CLV_ARRAY_LEN(words); i++)
        if (strcasestr(key, words[i]) != NULL)
            return true;
    return false;
}

static void print_properties(FILE *out, const void *base, int indent)
{
    const struct clv_kafka_config *k = &((const struct clv_config *)base)->kafka;

    if (k->nproperties == 0) {
        fputs(" {}\n", out);
        return;
    }
    fputc('\n', out);
    for (int i = 0; i < k->nproperties; i++) {
        fprintf(out, "%*s", indent + 2, "");
        print_yaml_string(out, k->properties[i].key, false);
        fputs(": ", out);
        print_quoted(out,
                     is_secret_property(k->properties[i].key) ? "***" : k->properties[i].value);
        fputc('\n', out);
    }
}

static void print_seeds(FILE *out, const void *base, int indent)
{
    const struct clv_redis_config *r = &((const struct clv_config *)base)->redis;

    (void)indent;
    fputs(" [", out);
    for (int i = 0; i < r->nseeds; i++) {
        fputs(i ? ", " : "", out);
        print_quoted(out, r->seeds[i]);
    }
    fputs("]\n", out);
}

/* A password read from password_file is printed empty so that the output
 * loads back (password and password_file together are refused). */
static void print_password(FILE *out, const void *base, int indent)
{
    const struct clv_redis_config *r = &((const struct clv_config *)base)->redis;

    (void)indent;
    if (r->password_file != NULL && r->password_file[0] != '\0')
        fputs(" \"\"  # masked; read from password_file\n", out);
    else if (r->password != NULL && r->password[0] != '\0')
        fputs(" \"***\"\n", out);
    else
        fputs(" \"\"\n", out);
}

static void print_cac(FILE *out, const void *base, int indent)
{
    const struct clv_model_config *m = &((const struct clv_config *)base)->clv;

    (void)indent;
    fputc(' ', out);
    if (m->ncac_by_channel == 0) {
        print_double(out, m->cac_default);
        fputc('\n', out);
        return;
    }
    fputs("{default: ", out);
    print_double(out, m->cac_default);
    fputs(", by_channel: {", out);
    for (int i = 0; i < m->ncac_by_channel; i++) {
        fputs(i ? ", " : "", out);
        print_quoted(out, m->cac_by_channel[i].channel);
        fputs(": ", out);
        print_double(out, m->cac_by_channel[i].cac);
    }
    fputs("}}\n", out);
}

static void print_levels(FILE *out, const void *base, int indent)
{
    const struct clv_config *cfg = base;

    fputc('\n', out);
    for (int i = 0; i < cfg->ntiers; i++) {
        fprintf(out, "%*s- {name: ", indent + 2, "");
        print_quoted(out, cfg->tiers[i].name);
        fputs(", min_spend: ", out);
        print_double(out, cfg->tiers[i].min_spend);
        fputs("}\n", out);
    }
}

static void print_alert(FILE *out, const struct clv_alert_rule *a, int indent)
{
    char window[40];

    fprintf(out, "%*s- {name: ", indent + 2, "");
    print_quoted(out, a->name);
    if (a->metric == CLV_ALERT_CHURN_RATE) {
        fmt_duration(a->window, window, sizeof window);
        fprintf(out, ", metric: churn_rate, window: %s", window);
    } else {
        fprintf(out, ", metric: stage_share.%s", stage_names[a->stage]);
    }
    fputs(", above: ", out);
    print_double(out, a->above);
    fputs(", hysteresis: ", out);
    print_double(out, a->hysteresis);
    fputs("}\n", out);
}

static void print_alerts(FILE *out, const void *base, int indent)
{
    const struct clv_config *cfg = base;

    if (cfg->nalerts == 0) {
        fputs(" []\n", out);
        return;
    }
    fputc('\n', out);
    for (int i = 0; i < cfg->nalerts; i++)
        print_alert(out, &cfg->alerts[i], indent);
}

void config_print(const struct clv_config *cfg, FILE *out)
{
    fputs("# clvd effective configuration (secrets masked)\n", out);
    print_fields(out, top_fields, cfg, 0);
}

/* ---------------------------------------------------------------------- */
/* Comparing (for SIGHUP)                                                  */

static bool str_equal(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool equal_properties(const void *a, const void *b)
{
    const struct clv_kafka_config *x = &((const struct clv_config *)a)->kafka;
    const struct clv_kafka_config *y = &((const struct clv_config *)b)->kafka;

    if (x->nproperties != y->nproperties)
        return false;
    for (int i = 0; i < x->nproperties; i++)
        if (!str_equal(x->properties[i].key, y->properties[i].key) ||
            !str_equal(x->properties[i].value, y->properties[i].value))
            return false;
    return true;
}

static bool equal_seeds(const void *a, const void *b)
{
    const struct clv_redis_config *x = &((const struct clv_config *)a)->redis;
    const struct clv_redis_config *y = &((const struct clv_config *)b)->redis;

    if (x->nseeds != y->nseeds)
        return false;
    for (int i = 0; i < x->nseeds; i++)
        if (!str_equal(x->seeds[i], y->seeds[i]))
            return false;
    return true;
}

static bool equal_password(const void *a, const void *b)
{
    return str_equal(((const struct clv_config *)a)->redis.password,
                     ((const struct clv_config *)b)->redis.password);
}

static bool leaf_equal(const struct field *f, const void *a, const void *b)
{
    const void *x = field_ptr(a, f), *y = field_ptr(b, f);

    switch (f->kind) {
    case K_STR:
        return str_equal(*(char *const *)x, *(char *const *)y);
    case K_INT:
    case K_BOOL:
    case K_ENUM:
        return *(const int *)x == *(const int *)y;
    case K_LONG:
        return *(const long *)x == *(const long *)y;
    case K_DOUBLE:
        return *(const double *)x == *(const double *)y;
    case K_DUR:
        return *(const clv_ms *)x == *(const clv_ms *)y;
    case K_CUTS:
        return memcmp(x, y, 4 * sizeof(double)) == 0;
    case K_CUSTOM:
        return f->ops->equal == NULL || f->ops->equal(a, b);
    default:
        return true;
    }
}

/* The first key under F_RESTART whose value differs, as a dotted path. */
static bool find_restart_change(const struct field *fields, const void *a, const void *b,
                                bool restart, const char *parent, char *out, size_t n)
{
    for (const struct field *f = fields; f->key != NULL; f++) {
        bool r = restart || (f->flags & F_RESTART);
        char path[PATH_MAX_LEN];

        join_path(path, sizeof path, parent, f->key);
        if (f->kind == K_MAP) {
            if (find_restart_change(f->sub, a, b, r, path, out, n))
                return true;
        } else if (r && !leaf_equal(f, a, b)) {
            snprintf(out, n, "%s", path);
            return true;
        }
    }
    return false;
}

int config_reloadable(const struct clv_config *cur, const struct clv_config *next, char *err,
                      size_t errlen)
{
    char path[PATH_MAX_LEN];

    if (find_restart_change(top_fields, cur, next, false, "", path, sizeof path)) {
        clv_seterr(err, errlen, "%s changed: needs a restart", path);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* The schema tables (SPEC section 11; ranges documented in               */
/* docs/configuration.md)                                                  */

static const char *const clock_modes[] = {"wall", "event", NULL};
static const char *const clv_models[] = {"none", "bgnbd", NULL};
static const char *const log_levels[] = {"debug", "info", "warning", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

static const struct custom_ops properties_ops = {load_properties, print_properties,
                                                 equal_properties};
static const struct custom_ops seeds_ops = {load_seeds, print_seeds, equal_seeds};
static const struct custom_ops password_ops = {load_password, print_password, equal_password};
static const struct custom_ops cac_ops = {load_cac, print_cac, NULL};
static const struct custom_ops by_channel_ops = {load_by_channel, NULL, NULL};
static const struct custom_ops levels_ops = {load_levels, print_levels, NULL};
static const struct custom_ops alerts_ops = {load_alerts, print_alerts, NULL};
static const struct custom_ops metric_ops = {load_metric, NULL, NULL};

#define OFF(m) offsetof(struct clv_config, m)
#define MAP(k, s, fl)                                                                              \
    {                                                                                              \
        .key = k, .kind = K_MAP, .sub = s, .flags = fl                                             \
    }
#define STR(k, o, fl, chk)                                                                         \
    {                                                                                              \
        .key = k, .kind = K_STR, .off = o, .flags = fl, .check = chk                               \
    }
#define NUM(k, kd, o, fl, l, h)                                                                    \
    {                                                                                              \
        .key = k, .kind = kd, .off = o, .flags = fl, .lo = l, .hi = h                              \
    }
#define ENUM(k, o, fl, nm)                                                                         \
    {                                                                                              \
        .key = k, .kind = K_ENUM, .off = o, .flags = fl, .names = nm                               \
    }
#define BOOL(k, o)                                                                                 \
    {                                                                                              \
        .key = k, .kind = K_BOOL, .off = o                                                         \
    }
#define CUTS(k, o)                                                                                 \
    {                                                                                              \
        .key = k, .kind = K_CUTS, .off = o, .lo = 0, .hi = INFINITY                                \
    }
#define CUSTOM(k, o, ops_)                                                                         \
    {                                                                                              \
        .key = k, .kind = K_CUSTOM, .off = o, .ops = ops_                                          \
    }
#define END                                                                                        \
    {                                                                                              \
        .key = NULL                                                                                \
    }

static const struct field topic_fields[] = {
    STR("purchases", OFF(kafka.topics.purchases), F_NONEMPTY, check_topic),
    STR("logins", OFF(kafka.topics.logins), F_NONEMPTY, check_topic),
    STR("visits", OFF(kafka.topics.visits), F_NONEMPTY, check_topic),
    STR("stage_changes", OFF(kafka.topics.stage_changes), F_NONEMPTY, check_topic),
    STR("churn_warnings", OFF(kafka.topics.churn_warnings), F_NONEMPTY, check_topic),
    STR("win_back", OFF(kafka.topics.win_back), F_NONEMPTY, check_topic),
    STR("tier_changes", OFF(kafka.topics.tier_changes), F_NONEMPTY, check_topic),
    STR("alerts", OFF(kafka.topics.alerts), F_NONEMPTY, check_topic),
    STR("dead_letter", OFF(kafka.topics.dead_letter), F_NONEMPTY, check_topic),
    END};

static const struct field kafka_fields[] = {
    STR("brokers", OFF(kafka.brokers), F_NONEMPTY, NULL),
    STR("group_id", OFF(kafka.group_id), F_NONEMPTY, NULL),
    MAP("topics", topic_fields, 0),
    NUM("max_message_bytes", K_INT, OFF(kafka.max_message_bytes), 0, 1024, 1000000000),
    NUM("embedded_partitions", K_INT, OFF(kafka.embedded_partitions), 0, 1, 256),
    CUSTOM("properties", OFF(kafka.properties), &properties_ops),
    END};

static const struct field redis_fields[] = {
    STR("host", OFF(redis.host), F_NONEMPTY, check_host),
    NUM("port", K_INT, OFF(redis.port), 0, 1, 65535),
    STR("unix_socket", OFF(redis.unix_socket), 0, check_unix_socket),
    NUM("db", K_INT, OFF(redis.db), 0, 0, INT_MAX),
    STR("user", OFF(redis.user), 0, NULL),
    CUSTOM("password", OFF(redis.password), &password_ops),
    STR("password_file", OFF(redis.password_file), 0, NULL),
    NUM("timeout_ms", K_INT, OFF(redis.timeout_ms), 0, 1, 600000),
    STR("key_prefix", OFF(redis.key_prefix), 0, check_key_prefix),
    NUM("shards", K_INT, OFF(redis.shards), 0, 1, 65536),
    BOOL("cluster", OFF(redis.cluster)),
    CUSTOM("seeds", OFF(redis.seeds), &seeds_ops),
    END};

static const struct field clock_fields[] = {
    ENUM("mode", OFF(clock.mode), 0, clock_modes),
    NUM("lateness", K_DUR, OFF(clock.lateness), 0, 0, 30 * DAY_MS),
    NUM("idle_after", K_DUR, OFF(clock.idle_after), 0, 1, DAY_MS),
    NUM("max_held_events", K_LONG, OFF(clock.max_held_events), 0, 1000, 1000000000),
    NUM("max_future_skew", K_DUR, OFF(clock.max_future_skew), 0, 1000, 365 * DAY_MS),
    END};

static const struct field processing_fields[] = {
    NUM("workers", K_INT, OFF(processing_workers), 0, 1, 16),
    NUM("state_cache_mb", K_INT, OFF(processing_state_cache_mb), 0, 0, 4096), END};

static const struct field at_risk_fields[] = {
    NUM("min_gap_days", K_DOUBLE, OFF(lifecycle.at_risk_min_gap_days), F_LO_OPEN, 0, 3650),
    NUM("gap_factor", K_DOUBLE, OFF(lifecycle.at_risk_gap_factor), 0, 1, 100),
    NUM("default_gap_days", K_DOUBLE, OFF(lifecycle.at_risk_default_gap_days), F_LO_OPEN, 0, 3650),
    NUM("p_alive_below", K_DOUBLE, OFF(lifecycle.at_risk_p_alive_below), F_HI_OPEN, 0, 1), END};

static const struct field loyal_fields[] = {
    NUM("min_purchases", K_INT, OFF(lifecycle.loyal_min_purchases), 0, 1, 1000000),
    NUM("window_days", K_INT, OFF(lifecycle.loyal_window_days), 0, 1, 3650), END};

static const struct field lifecycle_fields[] = {
    MAP("at_risk", at_risk_fields, 0),
    NUM("dormant_after_days", K_DOUBLE, OFF(lifecycle.dormant_after_days), F_LO_OPEN, 0, 3650),
    NUM("churned_after_days", K_DOUBLE, OFF(lifecycle.churned_after_days), F_LO_OPEN, 0, 3650),
    MAP("loyal", loyal_fields, 0), END};

static const struct field dedupe_fields[] = {
    NUM("window", K_DUR, OFF(dedupe_window), 0, 1000, 365 * DAY_MS),
    NUM("max_ids", K_INT, OFF(dedupe_max_ids), 0, 1, 64), END};

static const struct field bgnbd_fields[] = {
    NUM("r", K_DOUBLE, OFF(clv.r), F_LO_OPEN, 0, INFINITY),
    NUM("alpha", K_DOUBLE, OFF(clv.alpha), F_LO_OPEN, 0, INFINITY),
    NUM("a", K_DOUBLE, OFF(clv.a), F_LO_OPEN, 0, INFINITY),
    NUM("b", K_DOUBLE, OFF(clv.b), F_LO_OPEN, 0, INFINITY),
    NUM("time_unit_days", K_DOUBLE, OFF(clv.time_unit_days), F_LO_OPEN, 0, 365),
    END};

/* q > 1: the Gamma-Gamma mean spend gamma*p/(q-1) is finite only then. */
static const struct field gamma_gamma_fields[] = {
    NUM("p", K_DOUBLE, OFF(clv.gg_p), F_LO_OPEN, 0, INFINITY),
    NUM("q", K_DOUBLE, OFF(clv.gg_q), F_LO_OPEN, 1, INFINITY),
    NUM("gamma", K_DOUBLE, OFF(clv.gg_gamma), F_LO_OPEN, 0, INFINITY), END};

static const struct field cac_fields[] = {
    NUM("default", K_DOUBLE, OFF(clv.cac_default), 0, 0, INFINITY),
    CUSTOM("by_channel", OFF(clv.cac_by_channel), &by_channel_ops), END};

static const struct field clv_fields[] = {
    ENUM("model", OFF(clv.model), 0, clv_models),
    MAP("bgnbd", bgnbd_fields, 0),
    MAP("gamma_gamma", gamma_gamma_fields, 0),
    NUM("horizon_days", K_DOUBLE, OFF(clv.horizon_days), F_LO_OPEN, 0, 36500),
    NUM("discount_rate", K_DOUBLE, OFF(clv.discount_rate), 0, 0, 1),
    NUM("margin", K_DOUBLE, OFF(clv.margin), 0, 0, 1),
    NUM("lifespan_years", K_DOUBLE, OFF(clv.lifespan_years), F_LO_OPEN, 0, 100),
    CUSTOM("cac", OFF(clv.cac_default), &cac_ops),
    END};

static const struct field rfm_fields[] = {CUTS("recency_days", OFF(rfm.recency_days)),
                                          CUTS("frequency", OFF(rfm.frequency)),
                                          CUTS("monetary", OFF(rfm.monetary)), END};

static const struct field tiers_fields[] = {
    NUM("window_days", K_INT, OFF(tiers_window_days), 0, 0, 3650),
    CUSTOM("levels", OFF(tiers), &levels_ops), END};

static const struct field metrics_fields[] = {
    STR("listen", OFF(metrics_listen), F_RESTART, check_listen), END};

static const struct field log_fields[] = {ENUM("level", OFF(log_level), 0, log_levels),
                                          ENUM("format", OFF(log_format), F_RESTART, log_formats),
                                          END};

static const struct field top_fields[] = {MAP("kafka", kafka_fields, F_RESTART),
                                          MAP("redis", redis_fields, F_RESTART),
                                          MAP("clock", clock_fields, F_RESTART),
                                          MAP("processing", processing_fields, F_RESTART),
                                          MAP("lifecycle", lifecycle_fields, 0),
                                          MAP("dedupe", dedupe_fields, 0),
                                          MAP("clv", clv_fields, 0),
                                          MAP("rfm", rfm_fields, 0),
                                          MAP("tiers", tiers_fields, 0),
                                          CUSTOM("alerts", OFF(alerts), &alerts_ops),
                                          MAP("metrics", metrics_fields, 0),
                                          MAP("log", log_fields, 0),
                                          END};

static const struct field tier_fields[] = {
    STR("name", offsetof(struct clv_tier, name), F_NONEMPTY, check_name),
    NUM("min_spend", K_DOUBLE, offsetof(struct clv_tier, min_spend), 0, 0, INFINITY), END};

static const struct field alert_fields[] = {
    STR("name", offsetof(struct clv_alert_rule, name), F_NONEMPTY, check_name),
    CUSTOM("metric", offsetof(struct clv_alert_rule, metric), &metric_ops),
    NUM("window", K_DUR, offsetof(struct clv_alert_rule, window), F_LO_OPEN, 0, 365 * DAY_MS),
    NUM("above", K_DOUBLE, offsetof(struct clv_alert_rule, above), 0, 0, 1),
    NUM("hysteresis", K_DOUBLE, offsetof(struct clv_alert_rule, hysteresis), F_HI_OPEN, 0, 1),
    END};

/* ---------------------------------------------------------------------- */
/* Checks across keys                                                      */

static int validate_lifecycle(struct loader *ld)
{
    const struct clv_config *cfg = ld->cfg;
    const struct clv_lifecycle_config *lc = &cfg->lifecycle;
    char d[32], c[32];

    if (lc->churned_after_days <= lc->dormant_after_days) {
        fmt_double(lc->dormant_after_days, d, sizeof d);
        fmt_double(lc->churned_after_days, c, sizeof c);
        return fail_at(ld, blame(ld, &lc->churned_after_days, &lc->dormant_after_days),
                       "lifecycle.churned_after_days (%s) must be greater than "
                       "lifecycle.dormant_after_days (%s)",
                       c, d);
    }
    if (lc->at_risk_p_alive_below > 0 && cfg->clv.model != CLV_MODEL_BGNBD)
        return fail_at(ld, blame(ld, &lc->at_risk_p_alive_below, &cfg->clv.model),
                       "lifecycle.at_risk.p_alive_below needs clv.model: bgnbd (P(alive) comes "
                       "from the model)");
    return 0;
}

/* An output topic that is also an input would feed clvd its own output. */
static int validate_topics(struct loader *ld)
{
    const struct clv_kafka_topics *t = &ld->cfg->kafka.topics;
    char *const *slots[] = {&t->purchases,     &t->logins,         &t->visits,
                            &t->stage_changes, &t->churn_warnings, &t->win_back,
                            &t->tier_changes,  &t->alerts,         &t->dead_letter};

    for (size_t i = 0; i < CLV_ARRAY_LEN(slots); i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(*slots[i], *slots[j]) == 0)
                return fail_at(ld, blame(ld, slots[i], slots[j]),
                               "kafka.topics.%s and kafka.topics.%s are both \"%s\": every topic "
                               "must be different",
                               topic_fields[j].key, topic_fields[i].key, *slots[i]);
    return 0;
}

static int validate_redis(struct loader *ld)
{
    const struct clv_redis_config *r = &ld->cfg->redis;

    if (r->password[0] != '\0' && r->password_file[0] != '\0')
        return fail_at(ld, blame(ld, &r->password_file, &r->password),
                       "redis.password and redis.password_file are both set: use one");
    if (r->cluster && r->nseeds == 0)
        return fail_at(ld, blame(ld, &r->cluster, &r->seeds),
                       "redis.cluster is true but redis.seeds is empty");
    if (r->cluster && r->db != 0)
        return fail_at(ld, blame(ld, &r->db, &r->cluster),
                       "redis.db must be 0 with redis.cluster (Redis Cluster has one database)");
    if (r->cluster && r->unix_socket[0] != '\0')
        return fail_at(ld, blame(ld, &r->unix_socket, &r->cluster),
                       "redis.unix_socket cannot be used with redis.cluster");
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Files                                                                   */

/* The whole file, NUL-terminated, in a malloc'd buffer.  On failure *why is
 * set to a static reason (or errno's). */
static char *read_whole_file(const char *path, size_t max, size_t *len, const char **why)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    *why = NULL;
    if (f == NULL)
        goto fail;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *p;

            cap = cap ? cap * 2 : 8192;
            p = realloc(buf, cap);
            if (p == NULL)
                goto fail;
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);

        n += got;
        if (n > max) {
            *why = "file too large";
            goto fail;
        }
        if (got == 0)
            break;
    }
    if (ferror(f))
        goto fail;
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    if (*why == NULL)
        *why = strerror(errno);
    if (f != NULL)
        fclose(f);
    free(buf);
    return NULL;
}

/* A relative password_file is taken relative to the config file's folder,
 * so a config and its secret can be moved together. */
static void resolve_relative(const char *config_name, const char *file, char *out, size_t n)
{
    const char *slash = strrchr(config_name, '/');

    if (file[0] == '/' || slash == NULL)
        snprintf(out, n, "%s", file);
    else
        snprintf(out, n, "%.*s/%s", (int)(slash - config_name), config_name, file);
}

static int read_password_file(struct loader *ld)
{
    struct clv_redis_config *r = &ld->cfg->redis;
    yaml_mark_t at = key_mark(ld, &r->password_file);
    char path[4096];
    const char *why;
    size_t len;
    char *secret;

    if (r->password_file[0] == '\0')
        return 0;
    resolve_relative(ld->name, r->password_file, path, sizeof path);
    secret = read_whole_file(path, PASSWORD_FILE_MAX, &len, &why);
    if (secret == NULL)
        return fail_at(ld, at, "redis.password_file: cannot read \"%s\": %s", path, why);
    while (len > 0 && (secret[len - 1] == '\n' || secret[len - 1] == '\r'))
        secret[--len] = '\0';
    if (len == 0 || memchr(secret, '\0', len) != NULL) {
        free(secret);
        return fail_at(ld, at, "redis.password_file: \"%s\" is empty or holds a NUL byte", path);
    }
    free(r->password);
    r->password = secret;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Parsing the document                                                    */

/* Line and column (0-based) of a byte offset, for reader errors that carry
 * only an offset. */
static yaml_mark_t offset_mark(const char *buf, size_t len, size_t offset)
{
    yaml_mark_t m = {offset, 0, 0};

    for (size_t i = 0; i < offset && i < len; i++) {
        if (buf[i] == '\n') {
            m.line++;
            m.column = 0;
        } else {
            m.column++;
        }
    }
    return m;
}

static int syntax_error(struct loader *ld, const yaml_parser_t *p, const char *buf, size_t len)
{
    if (p->error == YAML_MEMORY_ERROR)
        return fail_oom(ld);
    if (p->error == YAML_READER_ERROR)
        return fail_at(ld, offset_mark(buf, len, p->problem_offset), "%s",
                       p->problem ? p->problem : "cannot read the input");
    if (p->context != NULL)
        return fail_at(ld, p->problem_mark, "YAML syntax error: %s (%s at line %zu, column %zu)",
                       p->problem ? p->problem : "?", p->context, p->context_mark.line + 1,
                       p->context_mark.column + 1);
    return fail_at(ld, p->problem_mark, "YAML syntax error: %s", p->problem ? p->problem : "?");
}

/* One document per file: a second one would be silently ignored. */
static int check_no_second_document(struct loader *ld, yaml_parser_t *p, const char *buf,
                                    size_t len)
{
    yaml_document_t next;
    int rc = 0;

    if (!yaml_parser_load(p, &next))
        return syntax_error(ld, p, buf, len);
    if (yaml_document_get_root_node(&next) != NULL && !is_null(yaml_document_get_root_node(&next)))
        rc = fail_at(ld, next.start_mark, "more than one YAML document: put everything in one");
    yaml_document_delete(&next);
    return rc;
}

static int load_root(struct loader *ld)
{
    yaml_node_t *root = yaml_document_get_root_node(ld->doc);

    if (root == NULL || is_null(root))
        return 0; /* empty file: all defaults */
    if (root->type != YAML_MAPPING_NODE)
        return type_error(ld, root, "top level", "a mapping of sections (kafka, redis, ...)");
    return load_map(ld, root, top_fields, ld->cfg, "");
}

static int validate(struct loader *ld)
{
    if (validate_lifecycle(ld) != 0 || validate_topics(ld) != 0 || validate_redis(ld) != 0)
        return -1;
    return read_password_file(ld);
}

static int parse_buffer(struct loader *ld, const char *buf, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = -1;

    if (!yaml_parser_initialize(&parser))
        return fail_oom(ld);
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        syntax_error(ld, &parser, buf, len);
        goto out;
    }
    ld->doc = &doc;
    if (check_no_second_document(ld, &parser, buf, len) == 0 && load_root(ld) == 0 &&
        validate(ld) == 0)
        rc = 0;
    yaml_document_delete(&doc);
    ld->doc = NULL; /* it pointed at this frame */
out:
    yaml_parser_delete(&parser);
    return rc;
}

static int load_buffer(const char *name, const char *buf, size_t len, struct clv_config *cfg,
                       char *err, size_t errlen)
{
    struct loader ld = {.name = name, .cfg = cfg, .err = err, .errlen = errlen};
    int rc = -1;

    if (config_defaults(cfg, err, errlen) != 0)
        return -1;
    cfg->path = strdup(name);
    if (cfg->path == NULL) {
        fail_oom(&ld);
        goto out;
    }
    rc = parse_buffer(&ld, buf, len);
out:
    free(ld.marks);
    if (rc != 0)
        config_free(cfg);
    return rc;
}

int config_load_string(const char *name, const char *yaml, struct clv_config *cfg, char *err,
                       size_t errlen)
{
    return load_buffer(name, yaml, strlen(yaml), cfg, err, errlen);
}

int config_load(const char *path, struct clv_config *cfg, char *err, size_t errlen)
{
    const char *why;
    size_t len;
    char *buf = read_whole_file(path, CONFIG_FILE_MAX, &len, &why);
    int rc;

    memset(cfg, 0, sizeof *cfg);
    if (buf == NULL) {
        clv_seterr(err, errlen, "%s: cannot read: %s", path, why);
        return -1;
    }
    if (memchr(buf, '\0', len) != NULL) {
        clv_seterr(err, errlen, "%s: contains a NUL byte: not a YAML file", path);
        free(buf);
        return -1;
    }
    rc = load_buffer(path, buf, len, cfg, err, errlen);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Defaults and release                                                    */

static bool set_str(char **slot, const char *s)
{
    char *copy = strdup(s);

    if (copy == NULL)
        return false;
    free(*slot);
    *slot = copy;
    return true;
}

static bool kafka_defaults(struct clv_kafka_config *k)
{
    struct clv_kafka_topics *t = &k->topics;
    bool ok = set_str(&k->brokers, "localhost:9092");

    ok &= set_str(&k->group_id, "clvd");
    ok &= set_str(&t->purchases, "purchases");
    ok &= set_str(&t->logins, "logins");
    ok &= set_str(&t->visits, "visits");
    ok &= set_str(&t->stage_changes, "customer.stage-changes");
    ok &= set_str(&t->churn_warnings, "customer.churn-warnings");
    ok &= set_str(&t->win_back, "customer.win-back");
    ok &= set_str(&t->tier_changes, "customer.tier-changes");
    ok &= set_str(&t->alerts, "clvd.alerts");
    ok &= set_str(&t->dead_letter, "clvd.dead-letter");
    k->max_message_bytes = 65536;
    k->embedded_partitions = 4;
    return ok;
}

static bool redis_defaults(struct clv_redis_config *r)
{
    bool ok = set_str(&r->host, "127.0.0.1");

    ok &= set_str(&r->unix_socket, "");
    ok &= set_str(&r->user, "");
    ok &= set_str(&r->password, "");
    ok &= set_str(&r->password_file, "");
    ok &= set_str(&r->key_prefix, "clv:");
    r->port = 6379;
    r->db = 0;
    r->timeout_ms = 2000;
    r->shards = 1024;
    r->cluster = 0;
    return ok;
}

static void clock_and_lifecycle_defaults(struct clv_config *cfg)
{
    cfg->clock.mode = CLV_CLOCK_WALL;
    cfg->clock.lateness = 5 * CLV_MS_PER_MIN;
    cfg->clock.idle_after = 30 * CLV_MS_PER_SEC;
    cfg->clock.max_held_events = 1000000;
    cfg->clock.max_future_skew = 5 * CLV_MS_PER_MIN;
    cfg->processing_workers = 2;
    cfg->processing_state_cache_mb = 4;
    cfg->lifecycle = (struct clv_lifecycle_config){
        .at_risk_min_gap_days = 14,
        .at_risk_gap_factor = 2.0,
        .at_risk_default_gap_days = 30,
        .at_risk_p_alive_below = 0,
        .dormant_after_days = 60,
        .churned_after_days = 180,
        .loyal_min_purchases = 5,
        .loyal_window_days = 180,
    };
    cfg->dedupe_window = 7 * CLV_MS_PER_DAY;
    cfg->dedupe_max_ids = 16;
}

static void model_defaults(struct clv_config *cfg)
{
    static const struct clv_rfm_config rfm = {
        .recency_days = {7, 30, 90, 180},
        .frequency = {2, 3, 5, 10},
        .monetary = {50, 100, 250, 1000},
    };

    cfg->clv = (struct clv_model_config){
        .model = CLV_MODEL_NONE,
        .r = 0.243,
        .alpha = 4.414,
        .a = 0.793,
        .b = 2.426,
        .time_unit_days = 7,
        .gg_p = 6.25,
        .gg_q = 3.74,
        .gg_gamma = 15.44,
        .horizon_days = 365,
        .discount_rate = 0.10,
        .margin = 0.3,
        .lifespan_years = 3,
        .cac_default = 0,
    };
    cfg->rfm = rfm;
}

static bool tier_defaults(struct clv_config *cfg)
{
    static const struct {
        const char *name;
        double min_spend;
    } levels[] = {{"standard", 0}, {"silver", 500}, {"gold", 1000}, {"platinum", 5000}};
    bool ok = true;

    cfg->tiers_window_days = 365;
    for (size_t i = 0; i < CLV_ARRAY_LEN(levels); i++) {
        ok &= set_str(&cfg->tiers[i].name, levels[i].name);
        cfg->tiers[i].min_spend = levels[i].min_spend;
        cfg->ntiers++;
    }
    return ok;
}

int config_defaults(struct clv_config *cfg, char *err, size_t errlen)
{
    bool ok;

    memset(cfg, 0, sizeof *cfg);
    ok = kafka_defaults(&cfg->kafka);
    ok &= redis_defaults(&cfg->redis);
    clock_and_lifecycle_defaults(cfg);
    model_defaults(cfg);
    ok &= tier_defaults(cfg);
    ok &= set_str(&cfg->metrics_listen, "127.0.0.1:9464");
    cfg->log_level = CLV_LOG_INFO;
    cfg->log_format = CLV_LOG_TEXT;
    if (!ok) {
        config_free(cfg);
        clv_seterr(err, errlen, "config defaults: out of memory");
        return -1;
    }
    return 0;
}

static void free_strings(struct clv_config *cfg)
{
    struct clv_kafka_topics *t = &cfg->kafka.topics;
    struct clv_redis_config *r = &cfg->redis;
    char **strings[] = {&cfg->path,
                        &cfg->kafka.brokers,
                        &cfg->kafka.group_id,
                        &t->purchases,
                        &t->logins,
                        &t->visits,
                        &t->stage_changes,
                        &t->churn_warnings,
                        &t->win_back,
                        &t->tier_changes,
                        &t->alerts,
                        &t->dead_letter,
                        &r->host,
                        &r->unix_socket,
                        &r->user,
                        &r->password,
                        &r->password_file,
                        &r->key_prefix,
                        &cfg->metrics_listen};

    for (size_t i = 0; i < CLV_ARRAY_LEN(strings); i++)
        free(*strings[i]);
}

void config_free(struct clv_config *cfg)
{
    if (cfg == NULL)
        return;
    free_strings(cfg);
    free_properties(&cfg->kafka);
    free_seeds(&cfg->redis);
    free_by_channel(&cfg->clv);
    free_tiers(cfg);
    free_alerts(cfg);
    memset(cfg, 0, sizeof *cfg);
}

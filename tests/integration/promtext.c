/* promtext.c -- scraping clvd's metrics endpoint (see promtext.h).  The
 * parser follows the strict validator of tests/unit/test_metrics.c. */
#define _GNU_SOURCE /* strcasestr */
#include "promtext.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LABELS 16

/* ---- the parser ------------------------------------------------------------------ */

struct family {
    char name[128];
    char type[16];
    int has_help, has_type, closed;
};

/* per histogram label set (labels other than le) */
struct group {
    int family;
    char *labels;
    double last_le, last_cum, inf;
    int seen_inf, seen_sum, seen_count;
};

struct parser {
    struct family *fam;
    int nfam, famcap, current;
    struct group *grp;
    int ngrp, grpcap;
    int line;
    char *err;
    size_t errlen;
    struct prom_page *page;
};

static int pfail(struct parser *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int pfail(struct parser *v, const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(v->err, v->errlen, "line %d: %s", v->line, msg);
    return -1;
}

static int is_name_start(int c, int colon_ok)
{
    return isalpha(c) || c == '_' || (colon_ok && c == ':');
}

static int is_name_char(int c, int colon_ok)
{
    return isalnum(c) || c == '_' || (colon_ok && c == ':');
}

/* Scan a metric (colon_ok) or label name at *p into out; -1 if none. */
static int scan_name(const char **p, int colon_ok, char *out, size_t outlen)
{
    const char *s = *p;
    size_t n = 0;

    if (!is_name_start((unsigned char)*s, colon_ok))
        return -1;
    while (is_name_char((unsigned char)s[n], colon_ok))
        n++;
    if (n >= outlen)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = s + n;
    return 0;
}

/* A sample value: a Go float literal in decimal, +Inf, -Inf or NaN. */
static int parse_value(const char *s, size_t n, double *out)
{
    char buf[64];
    char *end;

    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "+Inf") == 0 || strcmp(buf, "Inf") == 0) {
        *out = INFINITY;
        return 0;
    }
    if (strcmp(buf, "-Inf") == 0) {
        *out = -INFINITY;
        return 0;
    }
    if (strcmp(buf, "NaN") == 0) {
        *out = NAN;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)buf[i]) && strchr(".eE+-", buf[i]) == NULL)
            return -1;
    errno = 0;
    *out = strtod(buf, &end);
    return *end == '\0' ? 0 : -1;
}

static int find_family(const struct parser *v, const char *name)
{
    for (int i = 0; i < v->nfam; i++)
        if (strcmp(v->fam[i].name, name) == 0)
            return i;
    return -1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int comment_line(struct parser *v, const char *s)
{
    char name[128];
    const char *p;
    int f;

    if (strncmp(s, "# HELP ", 7) != 0 && strncmp(s, "# TYPE ", 7) != 0)
        return pfail(v, "comment that is neither # HELP nor # TYPE: %.60s", s);
    p = s + 7;
    if (scan_name(&p, 1, name, sizeof(name)) != 0)
        return pfail(v, "bad metric name in %.60s", s);
    if (*p != ' ' || p[1] == '\0')
        return pfail(v, "expected a space and text after the name in %.60s", s);
    p++;
    f = find_family(v, name);
    if (f < 0) {
        if (v->nfam == v->famcap) {
            int ncap = v->famcap ? v->famcap * 2 : 64;
            struct family *nf = realloc(v->fam, sizeof(*nf) * (size_t)ncap);
            if (nf == NULL)
                return pfail(v, "out of memory");
            v->fam = nf;
            v->famcap = ncap;
        }
        f = v->nfam++;
        memset(&v->fam[f], 0, sizeof(v->fam[f]));
        snprintf(v->fam[f].name, sizeof(v->fam[f].name), "%s", name);
    } else if (v->fam[f].closed || f != v->current) {
        return pfail(v, "metadata of family %s after its samples or after another family", name);
    }
    if (s[2] == 'H') {
        if (v->fam[f].has_help)
            return pfail(v, "second HELP for %s", name);
        /* HELP text escapes: \\ and \n only */
        for (const char *q = p; *q; q++) {
            if (*q != '\\')
                continue;
            if (q[1] != '\\' && q[1] != 'n')
                return pfail(v, "bad escape in HELP of %s", name);
            q++;
        }
        v->fam[f].has_help = 1;
    } else {
        if (v->fam[f].has_type)
            return pfail(v, "second TYPE for %s", name);
        if (strcmp(p, "counter") != 0 && strcmp(p, "gauge") != 0 && strcmp(p, "histogram") != 0)
            return pfail(v, "TYPE %s of %s is not counter, gauge or histogram", p, name);
        snprintf(v->fam[f].type, sizeof(v->fam[f].type), "%s", p);
        v->fam[f].has_type = 1;
    }
    if (v->current >= 0 && v->current != f)
        v->fam[v->current].closed = 1;
    v->current = f;
    return 0;
}

struct label {
    char key[64];
    char val[512]; /* as written, escapes kept */
};

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const struct label *)a)->key, ((const struct label *)b)->key);
}

/* Join labels as k="v",... (sorted by key), leaving out `le` unless
 * with_le; returns a malloc'ed string. */
static char *join_labels(struct label *l, int n, int with_le)
{
    size_t cap = 1, len = 0;
    char *out;

    for (int i = 0; i < n; i++)
        cap += strlen(l[i].key) + strlen(l[i].val) + 4;
    out = malloc(cap);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (!with_le && strcmp(l[i].key, "le") == 0)
            continue;
        len += (size_t)snprintf(out + len, cap - len, "%s%s=\"%s\"", len ? "," : "", l[i].key,
                                l[i].val);
    }
    return out;
}

/* Parse {k="v",...} at *pp into l (sorted by key); *n receives the count. */
static int parse_labels(struct parser *v, const char **pp, struct label *l, int *n)
{
    const char *p = *pp;

    *n = 0;
    if (*p != '{')
        return 0;
    p++;
    if (*p == '}') {
        *pp = p + 1;
        return 0;
    }
    for (;;) {
        struct label *cur;
        size_t vl = 0;

        if (*n == MAX_LABELS)
            return pfail(v, "too many labels");
        cur = &l[*n];
        if (scan_name(&p, 0, cur->key, sizeof(cur->key)) != 0)
            return pfail(v, "bad label name at \"%.20s\"", p);
        if (strncmp(cur->key, "__", 2) == 0)
            return pfail(v, "reserved label name %s", cur->key);
        for (int i = 0; i < *n; i++)
            if (strcmp(l[i].key, cur->key) == 0)
                return pfail(v, "label %s twice", cur->key);
        if (p[0] != '=' || p[1] != '"')
            return pfail(v, "expected =\" after label %s", cur->key);
        p += 2;
        while (*p != '"') {
            if (*p == '\0')
                return pfail(v, "unterminated value of label %s", cur->key);
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                    return pfail(v, "bad escape \\%c in label %s", p[1], cur->key);
                if (vl + 2 >= sizeof(cur->val))
                    return pfail(v, "value of label %s too long", cur->key);
                cur->val[vl++] = p[0];
                cur->val[vl++] = p[1];
                p += 2;
                continue;
            }
            if (vl + 1 >= sizeof(cur->val))
                return pfail(v, "value of label %s too long", cur->key);
            cur->val[vl++] = *p++;
        }
        cur->val[vl] = '\0';
        p++;
        (*n)++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '}') {
            p++;
            break;
        }
        return pfail(v, "expected , or } after label %s", cur->key);
    }
    qsort(l, (size_t)*n, sizeof(l[0]), cmp_label);
    *pp = p;
    return 0;
}

static struct group *group_of(struct parser *v, int family, const char *labels)
{
    for (int i = 0; i < v->ngrp; i++)
        if (v->grp[i].family == family && strcmp(v->grp[i].labels, labels) == 0)
            return &v->grp[i];
    if (v->ngrp == v->grpcap) {
        int ncap = v->grpcap ? v->grpcap * 2 : 16;
        struct group *ng = realloc(v->grp, sizeof(*ng) * (size_t)ncap);
        if (ng == NULL)
            return NULL;
        v->grp = ng;
        v->grpcap = ncap;
    }
    memset(&v->grp[v->ngrp], 0, sizeof(v->grp[0]));
    v->grp[v->ngrp].family = family;
    v->grp[v->ngrp].last_le = -INFINITY;
    v->grp[v->ngrp].labels = strdup(labels);
    if (v->grp[v->ngrp].labels == NULL)
        return NULL;
    return &v->grp[v->ngrp++];
}

static int histogram_sample(struct parser *v, int f, const char *suffix, const char *labels,
                            const char *le, double value)
{
    struct group *g = group_of(v, f, labels);
    double bound;

    if (g == NULL)
        return pfail(v, "out of memory");
    if ((isnan(value) || value < 0 || value != floor(value) || isinf(value)) &&
        strcmp(suffix, "_sum") != 0)
        return pfail(v, "histogram %s%s value %g is not a count", v->fam[f].name, suffix, value);
    if (strcmp(suffix, "_bucket") == 0) {
        if (le == NULL || parse_value(le, strlen(le), &bound) != 0 || isnan(bound))
            return pfail(v, "bucket without a valid le label");
        if (g->seen_inf || g->seen_sum || g->seen_count)
            return pfail(v, "bucket after the +Inf bucket, _sum or _count");
        if (bound <= g->last_le)
            return pfail(v, "buckets not in increasing le order (%s)", le);
        if (value < g->last_cum)
            return pfail(v, "buckets not cumulative (le=%s: %g < %g)", le, value, g->last_cum);
        g->last_le = bound;
        g->last_cum = value;
        if (isinf(bound)) {
            g->seen_inf = 1;
            g->inf = value;
        }
        return 0;
    }
    if (le != NULL)
        return pfail(v, "le label on %s%s", v->fam[f].name, suffix);
    if (!g->seen_inf)
        return pfail(v, "%s%s before the +Inf bucket", v->fam[f].name, suffix);
    if (strcmp(suffix, "_sum") == 0) {
        if (g->seen_sum++)
            return pfail(v, "second _sum");
        return 0;
    }
    if (g->seen_count++)
        return pfail(v, "second _count");
    if (value != g->inf)
        return pfail(v, "_count %g differs from the +Inf bucket %g", value, g->inf);
    return 0;
}

static int add_sample(struct prom_page *pg, const char *name, char *labels, const char *type,
                      double value)
{
    struct prom_sample *s;

    if (pg->n == pg->cap) {
        size_t ncap = pg->cap ? pg->cap * 2 : 256;
        struct prom_sample *ns = realloc(pg->s, sizeof(*ns) * ncap);
        if (ns == NULL)
            return -1;
        pg->s = ns;
        pg->cap = ncap;
    }
    s = &pg->s[pg->n];
    s->name = strdup(name);
    s->type = strdup(type);
    s->labels = labels;
    s->value = value;
    if (s->name == NULL || s->type == NULL) {
        free(s->name);
        free(s->type);
        return -1;
    }
    pg->n++;
    return 0;
}

static int sample_line(struct parser *v, const char *s)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    struct label l[MAX_LABELS];
    char name[128], *all = NULL, *rest = NULL;
    const char *p = s, *val, *suffix = "", *le = NULL;
    double value;
    int f, nl, rc;

    if (scan_name(&p, 1, name, sizeof(name)) != 0)
        return pfail(v, "bad metric name at \"%.40s\"", s);
    if (parse_labels(v, &p, l, &nl) != 0)
        return -1;
    for (int i = 0; i < nl; i++)
        if (strcmp(l[i].key, "le") == 0)
            le = l[i].val;
    if (*p != ' ')
        return pfail(v, "expected one space before the value");
    val = ++p;
    while (*p && *p != ' ')
        p++;
    if (parse_value(val, (size_t)(p - val), &value) != 0)
        return pfail(v, "bad value \"%.*s\"", (int)(p - val), val);
    if (*p == ' ') { /* optional timestamp: an integer (ms) */
        const char *ts = ++p;
        if (*p == '-')
            p++;
        while (isdigit((unsigned char)*p))
            p++;
        if (p == ts || *p != '\0')
            return pfail(v, "bad timestamp");
    }
    f = find_family(v, name);
    if (f >= 0 && strcmp(v->fam[f].type, "histogram") == 0)
        return pfail(v, "bare sample %s of a histogram", name);
    for (size_t i = 0; f < 0 && i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        if (ends_with(name, suffixes[i])) {
            char base[128];
            snprintf(base, sizeof(base), "%.*s", (int)(strlen(name) - strlen(suffixes[i])), name);
            f = find_family(v, base);
            if (f >= 0 && strcmp(v->fam[f].type, "histogram") != 0)
                f = -1;
            else
                suffix = suffixes[i];
        }
    }
    if (f < 0 || !v->fam[f].has_type)
        return pfail(v, "sample %s without a # TYPE before it", name);
    if (f != v->current || v->fam[f].closed)
        return pfail(v, "sample %s not grouped with its family", name);
    all = join_labels(l, nl, 1);
    if (all == NULL)
        return pfail(v, "out of memory");
    for (size_t i = 0; i < v->page->n; i++)
        if (strcmp(v->page->s[i].name, name) == 0 && strcmp(v->page->s[i].labels, all) == 0) {
            free(all);
            return pfail(v, "duplicate series %s{%s}", name, v->page->s[i].labels);
        }
    if (strcmp(v->fam[f].type, "histogram") == 0) {
        rest = join_labels(l, nl, 0);
        rc = rest != NULL ? histogram_sample(v, f, suffix, rest, le, value) : -1;
        free(rest);
    } else if (le != NULL) {
        rc = pfail(v, "le label outside a histogram");
    } else if (strcmp(v->fam[f].type, "counter") == 0 && (!isfinite(value) || value < 0)) {
        rc = pfail(v, "counter %s has value %g", name, value);
    } else {
        rc = 0;
    }
    if (rc == 0 && add_sample(v->page, name, all, v->fam[f].type, value) != 0)
        rc = pfail(v, "out of memory");
    if (rc != 0)
        free(all);
    return rc;
}

/* clvd's own rules on top of the format. */
static int naming_rules(struct parser *v)
{
    for (int i = 0; i < v->nfam; i++) {
        const struct family *fm = &v->fam[i];
        if (!fm->has_help || !fm->has_type)
            return pfail(v, "family %s lacks HELP or TYPE", fm->name);
        if (strncmp(fm->name, "clvd_", 5) != 0)
            return pfail(v, "family %s is not prefixed clvd_", fm->name);
        if (strcmp(fm->type, "counter") == 0 && !ends_with(fm->name, "_total"))
            return pfail(v, "counter %s does not end in _total", fm->name);
        if (strcmp(fm->type, "counter") != 0 && ends_with(fm->name, "_total"))
            return pfail(v, "%s %s ends in _total", fm->type, fm->name);
        if (strcmp(fm->type, "histogram") == 0 && !ends_with(fm->name, "_seconds"))
            return pfail(v, "histogram %s does not end in _seconds", fm->name);
    }
    for (int i = 0; i < v->ngrp; i++) {
        const struct group *g = &v->grp[i];
        if (!g->seen_inf || !g->seen_sum || !g->seen_count)
            return pfail(v, "histogram %s{%s} lacks +Inf, _sum or _count", v->fam[g->family].name,
                         g->labels);
    }
    return 0;
}

int prom_parse(const char *text, size_t len, struct prom_page *out, char *err, size_t errlen)
{
    struct parser v;
    const char *p = text, *end = text + len;
    char *line = NULL;
    size_t linecap = 0;
    int rc = 0;

    memset(&v, 0, sizeof(v));
    memset(out, 0, sizeof(*out));
    v.current = -1;
    v.err = err;
    v.errlen = errlen;
    v.page = out;
    if (len > 0 && text[len - 1] != '\n')
        rc = pfail(&v, "the page does not end with a newline");
    while (rc == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

        v.line++;
        if (n + 1 > linecap) {
            char *nlb = realloc(line, n + 1);
            if (nlb == NULL) {
                rc = pfail(&v, "out of memory");
                break;
            }
            line = nlb;
            linecap = n + 1;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        if (memchr(p, '\0', n) != NULL || memchr(line, '\r', n) != NULL)
            rc = pfail(&v, "NUL or CR in a line");
        else if (n == 0)
            rc = pfail(&v, "empty line");
        else if (line[0] == '#')
            rc = comment_line(&v, line);
        else
            rc = sample_line(&v, line);
        p += n + 1;
    }
    if (rc == 0)
        rc = naming_rules(&v);
    free(line);
    free(v.fam);
    for (int i = 0; i < v.ngrp; i++)
        free(v.grp[i].labels);
    free(v.grp);
    if (rc != 0)
        prom_page_free(out);
    return rc;
}

void prom_page_free(struct prom_page *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->s[i].name);
        free(p->s[i].labels);
        free(p->s[i].type);
    }
    free(p->s);
    memset(p, 0, sizeof(*p));
}

int prom_get(const struct prom_page *p, const char *name, const char *labels, double *value)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->s[i].name, name) == 0 && strcmp(p->s[i].labels, labels) == 0) {
            if (value != NULL)
                *value = p->s[i].value;
            return 1;
        }
    return 0;
}

size_t prom_count(const struct prom_page *p, const char *name)
{
    size_t n = 0;

    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->s[i].name, name) == 0)
            n++;
    return n;
}

double prom_sum(const struct prom_page *p, const char *name)
{
    double sum = 0;

    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->s[i].name, name) == 0)
            sum += p->s[i].value;
    return sum;
}

int prom_label(const char *labels, const char *key, char *buf, size_t buflen)
{
    size_t kl = strlen(key);
    const char *p = labels;

    while (*p) {
        const char *q;
        int match = strncmp(p, key, kl) == 0 && p[kl] == '=';

        q = strchr(p, '"');
        if (q == NULL)
            return -1;
        q++;
        {
            const char *e = q;
            while (*e && *e != '"')
                e += e[0] == '\\' && e[1] ? 2 : 1;
            if (match) {
                snprintf(buf, buflen, "%.*s", (int)(e - q), q);
                return 0;
            }
            p = *e ? e + 1 : e;
        }
        if (*p == ',')
            p++;
    }
    return -1;
}

/* ---- HTTP ------------------------------------------------------------------------ */

int prom_free_port(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd < 0)
        return -1;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
        port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

void prom_reply_free(struct prom_reply *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

int prom_http_get(int port, const char *path, struct prom_reply *r, char *err, size_t errlen)
{
    struct sockaddr_in sin;
    struct timeval tv = {5, 0};
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap), *hdr_end, req[512];
    int fd = -1;

    memset(r, 0, sizeof(*r));
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto fail;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        snprintf(err, errlen, "connect 127.0.0.1:%d: %s", port, strerror(errno));
        goto fail;
    }
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        snprintf(err, errlen, "GET %s: write: %s", path, strerror(errno));
        goto fail;
    }
    for (;;) {
        ssize_t n;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            buf = nb;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "GET %s: read: %s", path, strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    fd = -1;
    buf[len] = '\0';
    hdr_end = strstr(buf, "\r\n\r\n");
    if (hdr_end == NULL || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        snprintf(err, errlen, "GET %s: malformed response (%zu bytes)", path, len);
        goto fail;
    }
    snprintf(r->headers, sizeof(r->headers), "%.*s", (int)(hdr_end - buf), buf);
    r->body_len = len - (size_t)(hdr_end + 4 - buf);
    r->body = malloc(r->body_len + 1);
    if (r->body == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    memcpy(r->body, hdr_end + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    return -1;
}

int prom_scrape(int port, struct prom_page *out, char **text, char *err, size_t errlen)
{
    struct prom_reply r;
    char perr[512];

    memset(out, 0, sizeof(*out));
    if (text != NULL)
        *text = NULL;
    if (prom_http_get(port, "/metrics", &r, err, errlen) != 0)
        return -1;
    if (r.status != 200) {
        snprintf(err, errlen, "GET /metrics: status %d", r.status);
        prom_reply_free(&r);
        return -1;
    }
    if (strcasestr(r.headers, "Content-Type: text/plain; version=0.0.4") == NULL) {
        snprintf(err, errlen, "GET /metrics: not the 0.0.4 text format:\n%s", r.headers);
        prom_reply_free(&r);
        return -1;
    }
    if (prom_parse(r.body, r.body_len, out, perr, sizeof(perr)) != 0) {
        snprintf(err, errlen, "GET /metrics: invalid exposition: %s\n---\n%.*s", perr,
                 (int)(r.body_len < 20000 ? r.body_len : 20000), r.body);
        prom_reply_free(&r);
        return -1;
    }
    if (text != NULL) {
        *text = r.body;
        r.body = NULL;
    }
    prom_reply_free(&r);
    return 0;
}

/* ---- promtool ---------------------------------------------------------------------- */

static int on_path(const char *prog, char *out, size_t outlen)
{
    const char *path = getenv("PATH");
    char *copy, *dir, *save = NULL;
    int found = -1;

    if (path == NULL)
        return -1;
    copy = strdup(path);
    if (copy == NULL)
        return -1;
    for (dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(out, outlen, "%s/%s", dir[0] ? dir : ".", prog);
        if (access(out, X_OK) == 0) {
            found = 0;
            break;
        }
    }
    free(copy);
    return found;
}

int prom_promtool_check(const char *text, size_t len, char *err, size_t errlen)
{
    char promtool[512], file[] = "/tmp/clvd-it-metrics-XXXXXX", cmd[1200], out[4096];
    size_t n;
    FILE *fp;
    int fd, status;

    if (on_path("promtool", promtool, sizeof(promtool)) != 0)
        return 1;
    fd = mkstemp(file);
    if (fd < 0) {
        snprintf(err, errlen, "mkstemp: %s", strerror(errno));
        return -1;
    }
    if (write(fd, text, len) != (ssize_t)len) {
        snprintf(err, errlen, "write %s: %s", file, strerror(errno));
        close(fd);
        unlink(file);
        return -1;
    }
    close(fd);
    snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s' 2>&1", promtool, file);
    fp = popen(cmd, "r");
    if (fp == NULL) {
        snprintf(err, errlen, "popen %s: %s", promtool, strerror(errno));
        unlink(file);
        return -1;
    }
    n = fread(out, 1, sizeof(out) - 1, fp);
    out[n] = '\0';
    status = pclose(fp);
    unlink(file);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || n > 0) {
        snprintf(err, errlen, "promtool check metrics (wait status 0x%x):\n%s", status, out);
        return -1;
    }
    return 0;
}

/* promtext.h -- scraping clvd's metrics endpoint in the integration tests.
 *
 * A strict parser of the Prometheus text exposition format 0.0.4 (the rules
 * of the validator in tests/unit/test_metrics.c: HELP and TYPE for every
 * family, before its samples, samples grouped by family, no duplicate series,
 * label syntax and escapes, counters finite and >= 0 and named *_total,
 * histograms cumulative with +Inf, _sum and _count, every family prefixed
 * clvd_) that also keeps the samples for lookups; a minimal HTTP/1.0 GET over
 * loopback; a free loopback port; and `promtool check metrics` when promtool
 * is on PATH (never required).
 *
 * Conventions as in harness.h: 0 on success, -1 with a reason in `err`. */
#ifndef CLVD_IT_PROMTEXT_H
#define CLVD_IT_PROMTEXT_H

#include <stddef.h>

struct prom_sample {
    char *name;   /* as written, e.g. "clvd_processing_latency_seconds_bucket" */
    char *labels; /* canonical: k="v" pairs sorted by name, joined by ","; "" if none */
    char *type;   /* the family's TYPE: counter, gauge or histogram */
    double value;
};

struct prom_page {
    struct prom_sample *s;
    size_t n, cap;
};

/* Validate `text` strictly and collect its samples into `out` (zeroed or
 * freed before).  On error `out` is freed and err says which line and why. */
int prom_parse(const char *text, size_t len, struct prom_page *out, char *err, size_t errlen);
void prom_page_free(struct prom_page *p);

/* The sample `name` with exactly the labels `labels` (canonical form, ""
 * for none); returns 1 and sets *value if present, 0 if absent. */
int prom_get(const struct prom_page *p, const char *name, const char *labels, double *value);
/* Number of samples called `name`. */
size_t prom_count(const struct prom_page *p, const char *name);
/* Sum of the samples called `name`. */
double prom_sum(const struct prom_page *p, const char *name);
/* The value of label `key` in canonical labels (copied to buf); 0 if found. */
int prom_label(const char *labels, const char *key, char *buf, size_t buflen);

/* A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0,
 * read, closed); -1 on error. */
int prom_free_port(void);

struct prom_reply {
    int status;
    char headers[2048];
    char *body; /* NUL-terminated (malloc'ed) */
    size_t body_len;
};

/* GET http://127.0.0.1:port/path (HTTP/1.0, 5 s timeout). */
int prom_http_get(int port, const char *path, struct prom_reply *r, char *err, size_t errlen);
void prom_reply_free(struct prom_reply *r);

/* GET /metrics, check 200 and the 0.0.4 content type, parse strictly.  The
 * raw text is kept in *text (malloc'ed) when text is not NULL. */
int prom_scrape(int port, struct prom_page *out, char **text, char *err, size_t errlen);

/* `promtool check metrics` on the text: 1 if promtool is not on PATH
 * (skipped), 0 if it accepts the page without a remark, -1 otherwise (its
 * output in err). */
int prom_promtool_check(const char *text, size_t len, char *err, size_t errlen);

#endif

/* sbuf.h -- a growable byte buffer, reused across batches so the hot path
 * does not allocate per message. */
#ifndef CLVD_SBUF_H
#define CLVD_SBUF_H

#include <stddef.h>

struct clv_sbuf {
    char *buf;
    size_t len, cap;
};

void sbuf_init(struct clv_sbuf *b);
void sbuf_free(struct clv_sbuf *b);
void sbuf_reset(struct clv_sbuf *b);
/* Aborts on allocation failure: a daemon that cannot allocate a few
 * kilobytes cannot make progress, and systemd restarts it. */
void sbuf_reserve(struct clv_sbuf *b, size_t extra);
void sbuf_append(struct clv_sbuf *b, const void *p, size_t n);
void sbuf_puts(struct clv_sbuf *b, const char *s);
void sbuf_printf(struct clv_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An integer in decimal, without printf. */
void sbuf_int(struct clv_sbuf *b, long long v);
/* A JSON string literal, quoted and escaped. */
void sbuf_json_str(struct clv_sbuf *b, const char *s, size_t n);
/* A JSON number with at most `decimals` decimals, trailing zeros trimmed;
 * null when not finite. */
void sbuf_json_num(struct clv_sbuf *b, double v, int decimals);

#endif

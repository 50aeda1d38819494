#include "sbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_init(struct clv_sbuf *b)
{
    b->buf = NULL;
    b->len = b->cap = 0;
}

void sbuf_free(struct clv_sbuf *b)
{
    free(b->buf);
    sbuf_init(b);
}

void sbuf_reset(struct clv_sbuf *b)
{
    b->len = 0;
}

void sbuf_reserve(struct clv_sbuf *b, size_t extra)
{
    size_t need = b->len + extra + 1, cap = b->cap ? b->cap : 256;
    char *p;

    if (need <= b->cap)
        return;
    while (cap < need)
        cap *= 2;
    p = realloc(b->buf, cap);
    if (p == NULL)
        abort();
    b->buf = p;
    b->cap = cap;
}

void sbuf_append(struct clv_sbuf *b, const void *p, size_t n)
{
    sbuf_reserve(b, n);
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

void sbuf_puts(struct clv_sbuf *b, const char *s)
{
    sbuf_append(b, s, strlen(s));
}

/* Formatted straight into the buffer's free space; only what does not fit
 * is formatted a second time (the hot path renders several of these per
 * output message). */
void sbuf_printf(struct clv_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    size_t room;
    int n;

    sbuf_reserve(b, 64);
    room = b->cap - b->len;
    va_start(ap, fmt);
    n = vsnprintf(b->buf + b->len, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= room) {
        sbuf_reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void sbuf_int(struct clv_sbuf *b, long long v)
{
    char buf[24];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    int i = (int)sizeof(buf);

    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        buf[--i] = '-';
    sbuf_append(b, buf + i, sizeof(buf) - (size_t)i);
}

void sbuf_json_str(struct clv_sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";

    sbuf_reserve(b, n * 6 + 2);
    b->buf[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            b->buf[b->len++] = '\\';
            b->buf[b->len++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            memcpy(b->buf + b->len, "\\u00", 4);
            b->buf[b->len + 4] = hex[ch >> 4];
            b->buf[b->len + 5] = hex[ch & 15];
            b->len += 6;
        } else {
            b->buf[b->len++] = (char)ch;
        }
    }
    b->buf[b->len++] = '"';
    b->buf[b->len] = '\0';
}

void sbuf_json_num(struct clv_sbuf *b, double v, int decimals)
{
    char tmp[64];
    int n;

    if (!isfinite(v)) {
        sbuf_puts(b, "null");
        return;
    }
    n = snprintf(tmp, sizeof(tmp), "%.*f", decimals, v);
    if (n <= 0 || n >= (int)sizeof(tmp)) { /* huge: exponent form, still a number */
        sbuf_printf(b, "%.17g", v);
        return;
    }
    if (decimals > 0) {
        while (n > 0 && tmp[n - 1] == '0')
            n--;
        if (n > 0 && tmp[n - 1] == '.')
            n--;
    }
    if (n == 2 && tmp[0] == '-' && tmp[1] == '0') { /* no "-0" */
        sbuf_puts(b, "0");
        return;
    }
    sbuf_append(b, tmp, (size_t)n);
}

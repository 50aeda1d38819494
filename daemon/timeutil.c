/* timeutil.c -- RFC 3339 timestamps, strict UTF-8 check, base64.
 *
 * Calendar arithmetic uses Howard Hinnant's days-from-civil algorithms
 * (proleptic Gregorian, exact for negative days too) instead of
 * timegm()/gmtime_r(), which depend on time_t width and the C library, and
 * cannot be told apart from a real error at the edges.
 *
 * Leap seconds: "23:59:60" is accepted only where one can occur (the last
 * minute of the last day of a month, in UTC after applying the offset) and
 * is clamped to 23:59:59.999, so it sorts after every earlier instant of that
 * second and before the next day.  Epoch milliseconds have no slot for it. */
#include "timeutil.h"

#include <stdint.h>
#include <string.h>

/* Earliest and latest instant with a four-digit year, which is all that
 * RFC 3339 can write. */
#define MIN_MS (-62167219200000LL) /* 0000-01-01T00:00:00.000Z */
#define MAX_MS 253402300799999LL   /* 9999-12-31T23:59:59.999Z */

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 of y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* ---- parsing ------------------------------------------------------------ */

/* Cursor over the input; every reader checks the remaining length, so the
 * input need not be NUL-terminated. */
struct cursor {
    const char *p;
    const char *end;
};

/* Read exactly n decimal digits. */
static int read_digits(struct cursor *c, int n, int *out)
{
    int v = 0;

    if (c->end - c->p < n)
        return -1;
    for (int i = 0; i < n; i++) {
        if (c->p[i] < '0' || c->p[i] > '9')
            return -1;
        v = v * 10 + (c->p[i] - '0');
    }
    c->p += n;
    *out = v;
    return 0;
}

static int read_char(struct cursor *c, const char *allowed)
{
    if (c->p >= c->end || strchr(allowed, *c->p) == NULL || *c->p == '\0')
        return -1;
    return *c->p++;
}

/* ".d+" -> milliseconds; any number of digits, extra precision truncated
 * (never rounded, so a time never moves into the next second). */
static int read_fraction(struct cursor *c, int *ms)
{
    int digits = 0;

    *ms = 0;
    if (c->p >= c->end || *c->p != '.')
        return 0;
    c->p++;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (digits < 3)
            *ms = *ms * 10 + (*c->p - '0');
        digits++;
        c->p++;
    }
    if (digits == 0)
        return -1;
    for (; digits < 3; digits++)
        *ms *= 10;
    return 0;
}

/* "Z" / "z" / "+HH:MM" / "-HH:MM" -> offset east of UTC in minutes. */
static int read_offset(struct cursor *c, int *minutes)
{
    int sign, hh, mm;

    sign = read_char(c, "Zz+-");
    if (sign < 0)
        return -1;
    if (sign == 'Z' || sign == 'z') {
        *minutes = 0;
        return 0;
    }
    if (read_digits(c, 2, &hh) || read_char(c, ":") < 0 || read_digits(c, 2, &mm))
        return -1;
    if (hh > 23 || mm > 59)
        return -1;
    *minutes = (sign == '-' ? -1 : 1) * (hh * 60 + mm);
    return 0;
}

struct datetime {
    int year, mon, day, hour, min, sec, ms, offset_min;
};

static int read_datetime(struct cursor *c, struct datetime *dt)
{
    if (read_digits(c, 4, &dt->year) || read_char(c, "-") < 0 || read_digits(c, 2, &dt->mon) ||
        read_char(c, "-") < 0 || read_digits(c, 2, &dt->day) || read_char(c, "Tt ") < 0 ||
        read_digits(c, 2, &dt->hour) || read_char(c, ":") < 0 || read_digits(c, 2, &dt->min) ||
        read_char(c, ":") < 0 || read_digits(c, 2, &dt->sec) || read_fraction(c, &dt->ms) ||
        read_offset(c, &dt->offset_min))
        return -1;
    return c->p == c->end ? 0 : -1; /* trailing garbage */
}

/* A leap second exists only as the last second of a month, in UTC. */
static int leap_second_possible(clv_ms utc_of_59)
{
    int64_t days = utc_of_59 >= 0 ? utc_of_59 / CLV_MS_PER_DAY
                                  : -((-utc_of_59 + CLV_MS_PER_DAY - 1) / CLV_MS_PER_DAY);
    int64_t y;
    int m, d;

    if (utc_of_59 - days * CLV_MS_PER_DAY != CLV_MS_PER_DAY - CLV_MS_PER_SEC)
        return 0; /* not 23:59:59 UTC */
    civil_from_days(days, &y, &m, &d);
    return d == days_in_month(y, m);
}

int rfc3339_parse(const char *s, size_t len, clv_ms *out)
{
    struct cursor c = {s, s + len};
    struct datetime dt;
    int leap;
    clv_ms t;

    if (s == NULL || read_datetime(&c, &dt) != 0)
        return -1;
    if (dt.mon < 1 || dt.mon > 12 || dt.day < 1 || dt.day > days_in_month(dt.year, dt.mon) ||
        dt.hour > 23 || dt.min > 59 || dt.sec > 60)
        return -1;
    leap = dt.sec == 60;
    if (leap)
        dt.sec = 59;
    t = days_from_civil(dt.year, dt.mon, dt.day) * CLV_MS_PER_DAY + dt.hour * CLV_MS_PER_HOUR +
        dt.min * CLV_MS_PER_MIN + dt.sec * CLV_MS_PER_SEC - dt.offset_min * CLV_MS_PER_MIN;
    if (leap) {
        if (!leap_second_possible(t))
            return -1;
        dt.ms = 999;
    }
    *out = t + dt.ms;
    return 0;
}

/* ---- formatting --------------------------------------------------------- */

static void put_digits(char *p, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Times outside years 0000..9999 are clamped: RFC 3339 cannot write them
 * and a valid string is more useful to a consumer than a failure here. */
int rfc3339_format(clv_ms t, char *buf, size_t buflen)
{
    int64_t days, msod, y;
    int m, d;

    if (buf == NULL || buflen < 25) {
        if (buf != NULL && buflen > 0)
            buf[0] = '\0';
        return -1;
    }
    if (t < MIN_MS)
        t = MIN_MS;
    if (t > MAX_MS)
        t = MAX_MS;
    /* floor division: -1 ms is 1969-12-31T23:59:59.999Z */
    days = t >= 0 ? t / CLV_MS_PER_DAY : -((-t + CLV_MS_PER_DAY - 1) / CLV_MS_PER_DAY);
    msod = t - days * CLV_MS_PER_DAY;
    civil_from_days(days, &y, &m, &d);
    memcpy(buf, "0000-00-00T00:00:00.000Z", 25);
    put_digits(buf, y, 4);
    put_digits(buf + 5, m, 2);
    put_digits(buf + 8, d, 2);
    put_digits(buf + 11, msod / CLV_MS_PER_HOUR, 2);
    put_digits(buf + 14, msod / CLV_MS_PER_MIN % 60, 2);
    put_digits(buf + 17, msod / CLV_MS_PER_SEC % 60, 2);
    put_digits(buf + 20, msod % CLV_MS_PER_SEC, 3);
    return 24;
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length of an all-ASCII prefix, 8 bytes at a time: input events are
 * almost entirely ASCII, so this is where the time goes. */
static size_t ascii_prefix(const unsigned char *s, size_t len)
{
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        uint64_t w;

        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL)
            break;
    }
    while (i < len && s[i] < 0x80)
        i++;
    return i;
}

/* One multi-byte sequence at s[0..avail); returns its length, 0 if
 * ill-formed (bad lead, truncated, bad continuation, overlong, surrogate,
 * or above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    size_t k;
    uint32_t cp, min;

    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        k = 2, cp = s[0] & 0x1fu, min = 0x80;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        k = 3, cp = s[0] & 0x0fu, min = 0x800;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        k = 4, cp = s[0] & 0x07u, min = 0x10000;
    else
        return 0; /* continuation byte, C0/C1 overlong lead, or F5..FF */
    if (avail < k)
        return 0;
    for (size_t j = 1; j < k; j++) {
        if ((s[j] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[j] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k;
}

int utf8_valid(const char *buf, size_t len)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;

    if (len > 0 && buf == NULL)
        return 0;
    while (i < len) {
        size_t k;

        i += ascii_prefix(s + i, len - i);
        if (i == len)
            break;
        k = utf8_seq(s + i, len - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

/* ---- base64 ------------------------------------------------------------- */

size_t base64_len(size_t len)
{
    return (len + 2) / 3 * 4;
}

size_t base64_encode(const unsigned char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);

        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

/* common.h -- conventions shared by every clvd module.
 *
 * Error handling: a function that can fail returns 0 on success and -1 on
 * failure, and writes a one-line, human-readable reason into the caller's
 * buffer (`char *err, size_t errlen`).  Callers that only propagate pass their
 * own buffer down.  Cleanup uses a single exit label. */
#ifndef CLVD_COMMON_H
#define CLVD_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define CLV_ERRLEN 256

/* All times inside clvd are milliseconds since the Unix epoch, UTC. */
typedef int64_t clv_ms;

#define CLV_MS_PER_SEC 1000LL
#define CLV_MS_PER_MIN (60LL * CLV_MS_PER_SEC)
#define CLV_MS_PER_HOUR (60LL * CLV_MS_PER_MIN)
#define CLV_MS_PER_DAY (24LL * CLV_MS_PER_HOUR)

/* printf-style formatting into an error buffer; always NUL-terminates. */
void clv_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Wall clock (CLOCK_REALTIME) and monotonic clock, in milliseconds. */
clv_ms clv_now_ms(void);
clv_ms clv_mono_ms(void);

#define CLV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif

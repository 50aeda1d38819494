#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

void clv_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static clv_ms clock_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (clv_ms)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

clv_ms clv_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

clv_ms clv_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

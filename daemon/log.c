/* log.c -- one line per record, written with a single fwrite so lines from
 * different threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timeutil.h"

static const char *const level_names[] = {"debug", "info", "warning", "error"};
static const int level_priorities[] = {7, 6, 4, 3}; /* syslog: debug, info, warning, err */

void log_init(struct clv_log *lg, enum clv_log_level level, enum clv_log_format format)
{
    const char *js = getenv("JOURNAL_STREAM");

    lg->level = level;
    lg->format = format;
    lg->journal = js != NULL && js[0] != '\0';
    lg->out = stderr;
}

/* JSON string escaping for the message field. */
static size_t json_escape(const char *s, char *out, size_t outlen)
{
    size_t n = 0;

    for (; *s && n + 7 < outlen; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, outlen - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
    return n;
}

void log_write(const struct clv_log *lg, enum clv_log_level level, const char *fmt, ...)
{
    char msg[2048], line[4608], ts[32];
    va_list ap;
    int n;

    if (level < lg->level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rfc3339_format(clv_now_ms(), ts, sizeof(ts));
    if (lg->format == CLV_LOG_JSON) {
        char esc[4200];
        json_escape(msg, esc, sizeof(esc));
        char prio[8] = "";
        if (lg->journal)
            snprintf(prio, sizeof(prio), "<%d>", level_priorities[level]);
        n = snprintf(line, sizeof(line), "%s{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n",
                     prio, ts, level_names[level], esc);
    } else if (lg->journal) {
        /* journald adds its own timestamp */
        n = snprintf(line, sizeof(line), "<%d>%s\n", level_priorities[level], msg);
    } else {
        n = snprintf(line, sizeof(line), "%s %-7s %s\n", ts, level_names[level], msg);
    }
    if (n > (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 1;
    fwrite(line, 1, (size_t)n, lg->out);
    fflush(lg->out);
}

enum clv_log_level log_level_from_syslog(int severity)
{
    if (severity <= 3)
        return CLV_LOG_ERROR;
    if (severity == 4)
        return CLV_LOG_WARNING;
    if (severity <= 6)
        return CLV_LOG_INFO;
    return CLV_LOG_DEBUG;
}

/* log.h -- leveled logging to stderr (SPEC section 12).
 *
 * Text lines by default; under systemd (JOURNAL_STREAM set) each line starts
 * with the "<N>" syslog priority so journald files it correctly; `json`
 * writes one object per line for log shippers.  The logger is a value the
 * daemon owns and passes down, not a global. */
#ifndef CLVD_LOG_H
#define CLVD_LOG_H

#include <stdio.h>

#include "config.h"

struct clv_log {
    enum clv_log_level level;
    enum clv_log_format format;
    int journal; /* prefix lines with <N> */
    FILE *out;
};

void log_init(struct clv_log *lg, enum clv_log_level level, enum clv_log_format format);

void log_write(const struct clv_log *lg, enum clv_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Map a syslog severity (librdkafka's log levels) to ours. */
enum clv_log_level log_level_from_syslog(int severity);

#define log_debug(lg, ...) log_write((lg), CLV_LOG_DEBUG, __VA_ARGS__)
#define log_info(lg, ...) log_write((lg), CLV_LOG_INFO, __VA_ARGS__)
#define log_warn(lg, ...) log_write((lg), CLV_LOG_WARNING, __VA_ARGS__)
#define log_error(lg, ...) log_write((lg), CLV_LOG_ERROR, __VA_ARGS__)

#endif

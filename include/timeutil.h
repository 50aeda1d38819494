/* timeutil.h -- RFC 3339 timestamps, UTF-8 checks, base64 (pure helpers). */
#ifndef CLVD_TIMEUTIL_H
#define CLVD_TIMEUTIL_H

#include <stddef.h>

#include "common.h"

/* Parse an RFC 3339 date-time ("2026-03-02T10:00:00Z", fractional seconds
 * and numeric offsets allowed, 'T' or ' ' or 't' separator) into epoch ms.
 * Returns 0 on success, -1 if malformed or out of range. */
int rfc3339_parse(const char *s, size_t len, clv_ms *out);

/* Format as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf (>= 25 bytes).  Returns the
 * length written (24). */
int rfc3339_format(clv_ms t, char *buf, size_t buflen);

/* 1 if buf[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
int utf8_valid(const char *buf, size_t len);

/* Base64 (RFC 4648, padded).  out must hold base64_len(len)+1 bytes; the
 * result is NUL-terminated.  Returns the encoded length. */
size_t base64_len(size_t len);
size_t base64_encode(const unsigned char *in, size_t len, char *out);

#endif

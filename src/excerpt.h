/*
 * excerpt.h
 *		A bounded, sanitised excerpt of text a gateway sent, fit to be
 *		stored in the payment's event log and shown to operators.
 *		Pure C, no PostgreSQL headers, unit-tested on its own.
 */
#ifndef COUPON_EXCERPT_H
#define COUPON_EXCERPT_H

#include <stddef.h>

/* at most this many bytes of gateway text are kept (UTF-8, whole characters) */
#define EXCERPT_MAX_BYTES 300

/*
 * Copy at most max_bytes of `text` into `out` (max_bytes + 1 bytes): control
 * characters become spaces, every occurrence of `secret` and of the base64
 * of "secret:" (HTTP Basic credentials) becomes "[redacted]", and a cut
 * never splits a UTF-8 character.  An empty secret redacts nothing.
 */
extern void excerpt_make(const char *text, const char *secret, char *out, size_t max_bytes);

#endif							/* COUPON_EXCERPT_H */

/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Small helpers shared by the parts of coupon-mockpg: allocation that
 *	  never returns NULL, clocks, ISO 8601 time, base64 and key checks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_UTIL_H
#define MOCKPG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Largest amount the gateway accepts (as the extension: 0 <= amount <= 10^15). */
#define MOCKPG_MAX_AMOUNT	INT64_C(1000000000000000)

/* Room for "YYYY-MM-DDTHH:MM:SS+00:00" and its terminator. */
#define ISO_TIME_LEN		32
#define KST_OFFSET_SECONDS	(9 * 3600)	/* Korea's time, Toss's: +09:00 all year */

extern void *xmalloc(size_t size);
extern void *xcalloc(size_t n, size_t size);
extern void *xrealloc(void *p, size_t size);
extern char *xstrdup(const char *s);
extern char *xmemdup(const void *p, size_t len);
extern void fatal(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

extern int64_t monotonic_ms(void);
extern void format_iso_time(time_t t, char *out);
extern bool parse_iso_time(const char *s, bool end_of_day, time_t *out);

extern bool base64_decode(const char *in, size_t inlen, char *out, size_t outcap,
						  size_t *outlen);
extern bool secure_equal(const char *a, size_t alen, const char *b, size_t blen);

extern bool valid_payment_key(const char *s, size_t len);
extern bool valid_order_id(const char *s, size_t len);
extern bool valid_currency(const char *s);

#endif							/* MOCKPG_UTIL_H */

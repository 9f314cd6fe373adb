/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small helpers shared by the parts of coupon-mockpg.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* A mock server that runs out of memory cannot answer honestly: stop loudly. */
void *
xmalloc(size_t size)
{
	void	   *p = malloc(size ? size : 1);

	if (p == NULL)
		fatal("out of memory (%zu bytes)", size);
	return p;
}

/* Zeroed allocation that never returns NULL. */
void *
xcalloc(size_t n, size_t size)
{
	void	   *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		fatal("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

/* Growing arrays and buffers without checking at every call site. */
void *
xrealloc(void *p, size_t size)
{
	void	   *q = realloc(p, size ? size : 1);

	if (q == NULL)
		fatal("out of memory (%zu bytes)", size);
	return q;
}

/* Copy a C string that the store keeps after the request is gone. */
char *
xstrdup(const char *s)
{
	return xmemdup(s, strlen(s));
}

/* Copy bytes and add a terminator, so bodies can be used as C strings too. */
char *
xmemdup(const void *p, size_t len)
{
	char	   *q = xmalloc(len + 1);

	if (len > 0)
		memcpy(q, p, len);
	q[len] = '\0';
	return q;
}

/* Report an unrecoverable error (bad journal, failed fsync) and exit. */
void
fatal(const char *fmt,...)
{
	va_list		ap;

	fputs("coupon-mockpg: fatal: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	_exit(3);
}

/* Deadlines for latency and stalls must not jump with the wall clock. */
int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Payments carry ISO 8601 times in Korea's time (+09:00, no daylight
 * saving), to the second, as Toss's API writes them.
 */
void
format_iso_time(time_t t, char *out)
{
	struct tm	tm;
	time_t		kst = t + KST_OFFSET_SECONDS;

	gmtime_r(&kst, &tm);
	strftime(out, ISO_TIME_LEN, "%Y-%m-%dT%H:%M:%S+09:00", &tm);
}

/* Read exactly n decimal digits; the ISO parser is strict about widths. */
static bool
read_digits(const char **p, int n, int *out)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) (*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* Days in a month, so that 2026-02-30 is rejected instead of normalised. */
static int
days_in_month(int year, int month)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool		leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return (month == 2 && leap) ? 29 : days[month - 1];
}

/*
 * /v1/transactions takes startDate/endDate as YYYY-MM-DD or as full ISO 8601
 * timestamps (optional fraction, Z or +HH:MM offset; none means Korea's time,
 * +09:00, as at Toss).  A bare date means the start of that day in Korea, or
 * its last second when end_of_day is set.
 * A space is accepted where '+' belongs, since query strings turn '+' into one.
 */
bool
parse_iso_time(const char *s, bool end_of_day, time_t *out)
{
	const char *p = s;
	struct tm	tm;
	int			y, mo, d, h = 0, mi = 0, sec = 0;
	int			offset = KST_OFFSET_SECONDS;
	time_t		t;

	memset(&tm, 0, sizeof(tm));
	if (!read_digits(&p, 4, &y) || *p++ != '-' ||
		!read_digits(&p, 2, &mo) || *p++ != '-' ||
		!read_digits(&p, 2, &d))
		return false;
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 ||
		d > days_in_month(y, mo))
		return false;
	if (*p == '\0')
	{
		if (end_of_day)
		{
			h = 23;
			mi = 59;
			sec = 59;
		}
	}
	else
	{
		if (*p != 'T' && *p != 't' && *p != ' ')
			return false;
		p++;
		if (!read_digits(&p, 2, &h) || *p++ != ':' || !read_digits(&p, 2, &mi))
			return false;
		if (*p == ':')
		{
			p++;
			if (!read_digits(&p, 2, &sec))
				return false;
			if (*p == '.')
			{
				p++;
				if (!isdigit((unsigned char) *p))
					return false;
				while (isdigit((unsigned char) *p))
					p++;
			}
		}
		if (h > 23 || mi > 59 || sec > 59)
			return false;
		if (*p == 'Z' || *p == 'z')
		{
			p++;
			offset = 0;
		}
		else if (*p == '+' || *p == '-' || *p == ' ')
		{
			int			sign = (*p == '-') ? -1 : 1;
			int			oh, om;

			p++;
			if (!read_digits(&p, 2, &oh))
				return false;
			if (*p == ':')
				p++;
			if (!read_digits(&p, 2, &om) || oh > 23 || om > 59)
				return false;
			offset = sign * (oh * 3600 + om * 60);
		}
		if (*p != '\0')
			return false;
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	*out = t - offset;
	return true;
}

/* Value of one base64 character, or -1; Basic auth is decoded by hand. */
static int
base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Decode standard base64 (padding optional) into out; false on any invalid
 * character, bad padding or when the result would not fit.
 */
bool
base64_decode(const char *in, size_t inlen, char *out, size_t outcap,
			  size_t *outlen)
{
	uint32_t	acc = 0;
	int			bits = 0;
	size_t		n = 0;
	size_t		pad = 0;

	while (inlen > 0 && in[inlen - 1] == '=')
	{
		inlen--;
		pad++;
	}
	if (pad > 2 || (pad > 0 && (inlen + pad) % 4 != 0) || inlen % 4 == 1)
		return false;
	for (size_t i = 0; i < inlen; i++)
	{
		int			v = base64_value((unsigned char) in[i]);

		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			if (n >= outcap)
				return false;
			out[n++] = (char) ((acc >> bits) & 0xff);
		}
	}
	*outlen = n;
	return true;
}

/* Compare a presented secret without leaking where it first differs. */
bool
secure_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	unsigned char diff = (alen != blen);
	size_t		n = alen < blen ? alen : blen;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char) a[i] ^ (unsigned char) b[i];
	return diff == 0;
}

/*
 * A paymentKey travels in URL paths, so it is 1..200 visible ASCII characters
 * without '/', '?', '#', '%', '\\' or '"'.
 */
bool
valid_payment_key(const char *s, size_t len)
{
	if (len < 1 || len > 200)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x21 || c > 0x7e || strchr("/?#%\\\"", c) != NULL)
			return false;
	}
	return true;
}

/*
 * An orderId is the caller's id (text of 1..200 characters, as the extension takes it):
 * any UTF-8 text without control characters.  The JSON parser has already
 * checked the encoding, so counting non-continuation bytes counts characters.
 */
bool
valid_order_id(const char *s, size_t len)
{
	size_t		chars = 0;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f)
			return false;
		if ((c & 0xc0) != 0x80)
			chars++;
	}
	return chars >= 1 && chars <= 200;
}

/* An ISO 4217 code as the gateway takes it: three upper-case letters. */
bool
valid_currency(const char *s)
{
	return s != NULL && strlen(s) == 3 &&
		s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' && s[2] >= 'A' && s[2] <= 'Z';
}

/*
 * excerpt.c
 *		A bounded, sanitised excerpt of gateway text (see excerpt.h).
 *
 * A gateway's error message is stored in the append-only event log and in
 * payment.last_error: a hostile or broken gateway must not fill them with
 * megabytes, nor with the credentials it was sent (a gateway that echoes
 * the request's headers would otherwise hand them to anyone who can read
 * the log).
 */
#include <stdlib.h>
#include <string.h>

#include "excerpt.h"

#define REDACTED "[redacted]"

/* standard base64 of `in` (len bytes) into out (4 * ((len + 2) / 3) + 1 bytes) */
static void
base64_encode(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t		o = 0;

	for (size_t i = 0; i < len; i += 3)
	{
		unsigned	v = (unsigned) in[i] << 16;

		if (i + 1 < len)
			v |= (unsigned) in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = digits[(v >> 18) & 63];
		out[o++] = digits[(v >> 12) & 63];
		out[o++] = i + 1 < len ? digits[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? digits[v & 63] : '=';
	}
	out[o] = '\0';
}

/* the length of the needle among `needles` that starts text at p, or 0 */
static size_t
match_at(const char *p, const char *const *needles, int n)
{
	for (int i = 0; i < n; i++)
	{
		size_t		len = strlen(needles[i]);

		if (len > 0 && strncmp(p, needles[i], len) == 0)
			return len;
	}
	return 0;
}

/* bytes of the UTF-8 character that starts with byte c (1 for a stray byte) */
static size_t
utf8_len(unsigned char c)
{
	if (c >= 0xf0 && c < 0xf8)
		return 4;
	if (c >= 0xe0)
		return c < 0xf0 ? 3 : 1;
	if (c >= 0xc0)
		return 2;
	return 1;
}

void
excerpt_make(const char *text, const char *secret, char *out, size_t max_bytes)
{
	size_t		slen = secret ? strlen(secret) : 0;
	char	   *basic_in = NULL;
	char	   *basic = NULL;
	const char *needles[2] = {"", ""};
	size_t		o = 0;
	const char *p = text ? text : "";

	if (slen > 0)
	{
		basic_in = malloc(slen + 2);
		basic = malloc(4 * ((slen + 3) / 3) + 1);
		if (basic_in != NULL && basic != NULL)
		{
			memcpy(basic_in, secret, slen);
			basic_in[slen] = ':';
			basic_in[slen + 1] = '\0';
			base64_encode((const unsigned char *) basic_in, slen + 1, basic);
			needles[1] = basic;
		}
		needles[0] = secret;
	}

	while (*p != '\0')
	{
		size_t		m = match_at(p, needles, 2);
		size_t		clen;

		if (m > 0)
		{
			if (o + strlen(REDACTED) > max_bytes)
				break;
			memcpy(out + o, REDACTED, strlen(REDACTED));
			o += strlen(REDACTED);
			p += m;
			continue;
		}
		clen = utf8_len((unsigned char) *p);
		for (size_t k = 1; k < clen; k++)
			if (((unsigned char) p[k] & 0xc0) != 0x80)
				clen = 1;		/* a broken sequence: take one byte */
		if (o + clen > max_bytes)
			break;
		if (clen == 1 && ((unsigned char) *p < 0x20 || *p == 0x7f || (unsigned char) *p >= 0x80))
			out[o++] = (unsigned char) *p >= 0x80 ? '?' : ' ';
		else
		{
			memcpy(out + o, p, clen);
			o += clen;
		}
		p += clen;
	}
	out[o] = '\0';
	free(basic_in);
	free(basic);
}

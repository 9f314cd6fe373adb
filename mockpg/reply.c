/*-------------------------------------------------------------------------
 *
 * reply.c
 *	  Building answers: JSON bodies and {code, message} errors.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "util.h"

/* Serialise a JSON value (taking ownership of it) as the answer's body. */
void
reply_json(Reply *r, int status, json_t *value)
{
	char	   *text = json_dumps(value, JSON_COMPACT | JSON_REAL_PRECISION(15));

	if (text == NULL)
		fatal("cannot serialise a JSON answer");
	json_decref(value);
	free(r->body);
	r->status = status;
	r->body = text;
	r->len = strlen(text);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if invalid. */
static size_t
utf8_sequence(const unsigned char *s, size_t n)
{
	size_t		len;
	uint32_t	cp;

	if (s[0] < 0x80)
		return 1;
	else if ((s[0] & 0xe0) == 0xc0)
		len = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
	{
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		(len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		(cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * Messages may quote client input (the parser's "near '...'"), so bytes that
 * are not valid UTF-8 become '?' to keep the answer valid JSON.
 */
static void
sanitize_utf8(char *s)
{
	size_t		n = strlen(s);

	for (size_t i = 0; i < n;)
	{
		size_t		k = utf8_sequence((const unsigned char *) s + i, n - i);

		if (k == 0)
		{
			s[i++] = '?';
			continue;
		}
		i += k;
	}
}

/* Every error answer has the Toss shape {"code": ..., "message": ...}. */
void
reply_error(Reply *r, int status, const char *code, const char *fmt,...)
{
	char		message[512];
	va_list		ap;
	StrBuf		sb;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	sanitize_utf8(message);
	sb_init(&sb, 128 + strlen(message));
	sb_adds(&sb, "{");
	sb_member_string(&sb, "code", code);
	sb_member_string(&sb, "message", message);
	sb_adds(&sb, "}");
	reply_take(r, status, &sb);
}

/* An answer replayed byte for byte from an idempotency record. */
void
reply_copy(Reply *r, int status, const char *body, size_t len)
{
	free(r->body);
	r->status = status;
	r->body = xmemdup(body, len);
	r->len = len;
}

/* Take a buffer the caller has written as the answer's body. */
void
reply_take(Reply *r, int status, StrBuf *sb)
{
	free(r->body);
	r->status = status;
	r->body = sb_steal(sb, &r->len);
}

/* Release whatever the reply still owns. */
void
reply_free(Reply *r)
{
	free(r->body);
	r->body = NULL;
	if (r->stream)
		txn_stream_free(r->stream);
	r->stream = NULL;
}

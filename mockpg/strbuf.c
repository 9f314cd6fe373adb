/*-------------------------------------------------------------------------
 *
 * strbuf.c
 *	  Growing byte buffer with JSON writers.
 *
 *	  The JSON written here is compact and escapes exactly what RFC 8259
 *	  requires ('"', '\\' and control characters); everything else, UTF-8
 *	  included, is copied as is.  Callers only pass text that the JSON
 *	  parser or the validators have already accepted.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "util.h"

/* Start a buffer with room for cap bytes. */
void
sb_init(StrBuf *sb, size_t cap)
{
	sb->cap = cap ? cap : 64;
	sb->data = xmalloc(sb->cap);
	sb->len = 0;
	sb->data[0] = '\0';
}

/* Make room for n more bytes and the terminator. */
static inline void
sb_reserve(StrBuf *sb, size_t n)
{
	if (sb->len + n + 1 > sb->cap)
	{
		size_t		cap = sb->cap * 2;

		while (cap < sb->len + n + 1)
			cap *= 2;
		sb->data = xrealloc(sb->data, cap);
		sb->cap = cap;
	}
}

/* Append raw bytes. */
void
sb_add(StrBuf *sb, const char *data, size_t len)
{
	sb_reserve(sb, len);
	memcpy(sb->data + sb->len, data, len);
	sb->len += len;
	sb->data[sb->len] = '\0';
}

/* Append a C string as raw bytes (JSON punctuation, literal names). */
void
sb_adds(StrBuf *sb, const char *s)
{
	sb_add(sb, s, strlen(s));
}

/* Append a quoted, escaped JSON string. */
void
sb_json_string(StrBuf *sb, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t		start = 0;

	sb_reserve(sb, len + 2);
	sb->data[sb->len++] = '"';
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		char		esc[7];
		size_t		n = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		sb_add(sb, s + start, i - start);
		esc[0] = '\\';
		switch (c)
		{
			case '"':
				esc[1] = '"';
				break;
			case '\\':
				esc[1] = '\\';
				break;
			case '\n':
				esc[1] = 'n';
				break;
			case '\r':
				esc[1] = 'r';
				break;
			case '\t':
				esc[1] = 't';
				break;
			case '\b':
				esc[1] = 'b';
				break;
			case '\f':
				esc[1] = 'f';
				break;
			default:
				memcpy(esc + 1, "u00", 3);
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				n = 6;
				break;
		}
		sb_add(sb, esc, n);
		start = i + 1;
	}
	sb_add(sb, s + start, len - start);
	sb_add(sb, "\"", 1);
}

/* Append an integer. */
void
sb_json_int(StrBuf *sb, int64_t v)
{
	char		buf[24];
	int			n = snprintf(buf, sizeof(buf), "%" PRId64, v);

	sb_add(sb, buf, (size_t) n);
}

/* Append a time as a quoted ISO 8601 string. */
void
sb_json_time(StrBuf *sb, time_t t)
{
	char		buf[ISO_TIME_LEN + 2];

	buf[0] = '"';
	format_iso_time(t, buf + 1);
	strcat(buf, "\"");
	sb_adds(sb, buf);
}

/* Append "name": (with a leading comma unless the object was just opened). */
void
sb_member(StrBuf *sb, const char *name)
{
	if (sb->len > 0 && sb->data[sb->len - 1] != '{')
		sb_add(sb, ",", 1);
	sb_add(sb, "\"", 1);
	sb_adds(sb, name);
	sb_add(sb, "\":", 2);
}

/* Append "name":"value". */
void
sb_member_string(StrBuf *sb, const char *name, const char *value)
{
	sb_member(sb, name);
	sb_json_string(sb, value, strlen(value));
}

/* Append "name":value for an integer. */
void
sb_member_int(StrBuf *sb, const char *name, int64_t value)
{
	sb_member(sb, name);
	sb_json_int(sb, value);
}

/* Hand the bytes over (malloc'd, NUL-terminated); the buffer is left empty. */
char *
sb_steal(StrBuf *sb, size_t *len)
{
	char	   *p = sb->data;

	if (len)
		*len = sb->len;
	sb->data = NULL;
	sb->len = sb->cap = 0;
	return p;
}

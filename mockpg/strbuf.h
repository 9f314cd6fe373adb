/*-------------------------------------------------------------------------
 *
 * strbuf.h
 *	  A growing byte buffer with JSON writers.  Answers and journal records
 *	  are written with it directly: building jansson objects only to print
 *	  them cost more than the rest of a confirm.  (Bodies are still parsed
 *	  with jansson.)
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_STRBUF_H
#define MOCKPG_STRBUF_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct StrBuf
{
	char	   *data;			/* always NUL-terminated once anything is added */
	size_t		len;
	size_t		cap;
} StrBuf;

extern void sb_init(StrBuf *sb, size_t cap);
extern void sb_add(StrBuf *sb, const char *data, size_t len);
extern void sb_adds(StrBuf *sb, const char *s);
extern void sb_json_string(StrBuf *sb, const char *s, size_t len);
extern void sb_json_int(StrBuf *sb, int64_t v);
extern void sb_json_time(StrBuf *sb, time_t t);
extern void sb_member(StrBuf *sb, const char *name);
extern void sb_member_string(StrBuf *sb, const char *name, const char *value);
extern void sb_member_int(StrBuf *sb, const char *name, int64_t value);
extern char *sb_steal(StrBuf *sb, size_t *len);

#endif							/* MOCKPG_STRBUF_H */

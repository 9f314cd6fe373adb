/*-------------------------------------------------------------------------
 *
 * reply.h
 *	  The answer to one request, built by api.c and sent by http.c: status,
 *	  JSON body (or a stream), and what must happen before it may be sent
 *	  (journal record on disk, stall of a timeout fault).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_REPLY_H
#define MOCKPG_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "strbuf.h"

typedef struct TxnStream TxnStream;

typedef struct Reply
{
	int			status;
	char	   *body;			/* malloc'd JSON text, or NULL with stream */
	size_t		len;
	TxnStream  *stream;			/* GET /v1/transactions streams its array */
	uint64_t	seq;			/* journal record that must be durable first */
	int			stall_ms;		/* hold the answer back (timeout fault) */
	const char *allow;			/* Allow header of a 405 */
	bool		auth_challenge; /* WWW-Authenticate header of a 401 */
} Reply;

extern void reply_json(Reply *r, int status, json_t *value);
extern void reply_error(Reply *r, int status, const char *code,
						const char *fmt,...) __attribute__((format(printf, 4, 5)));
extern void reply_copy(Reply *r, int status, const char *body, size_t len);
extern void reply_take(Reply *r, int status, StrBuf *sb);
extern void reply_free(Reply *r);

/* Streams are implemented in api.c; http.c only pulls bytes from them. */
extern ssize_t txn_stream_read(TxnStream *s, char *buf, size_t max);
extern void txn_stream_free(TxnStream *s);

#endif							/* MOCKPG_REPLY_H */

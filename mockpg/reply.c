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
	char	   *text = json_dumps(value, JSON_COMPACT);

	if (text == NULL)
		fatal("cannot serialise a JSON answer");
	json_decref(value);
	free(r->body);
	r->status = status;
	r->body = text;
	r->len = strlen(text);
}

/* Every error answer has the Toss shape {"code": ..., "message": ...}. */
void
reply_error(Reply *r, int status, const char *code, const char *fmt,...)
{
	char		message[512];
	va_list		ap;
	json_t	   *o;
	json_t	   *m;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	/* messages may quote client input; stay valid UTF-8 no matter what */
	m = json_string(message);
	if (m == NULL)
		m = json_string("the request is invalid");
	o = json_object();
	json_object_set_new(o, "code", json_string(code));
	json_object_set_new(o, "message", m);
	reply_json(r, status, o);
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

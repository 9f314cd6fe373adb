/*-------------------------------------------------------------------------
 *
 * api.h
 *	  The gateway's endpoints (Toss Payments v1 subset) and the /__mock
 *	  control endpoints, independent of the HTTP library: http.c hands in
 *	  an ApiRequest and sends back the Reply.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_API_H
#define MOCKPG_API_H

#include <stdbool.h>
#include <stddef.h>

#include "reply.h"

typedef struct ApiRequest
{
	const char *method;
	const char *path;			/* decoded path, without the query string */
	const char *body;			/* never NULL; may contain anything */
	size_t		body_len;
	const char *authorization;	/* headers and query arguments, or NULL */
	const char *idempotency_key;
	const char *trace_id;		/* X-Trace-Id */
	const char *start_date;
	const char *end_date;
	const char *starting_after;	/* transactionKey: the page starts after it */
	const char *limit;			/* most transactions in the page */
} ApiRequest;

extern void api_init(const char *secret);
extern void api_destroy(void);
extern bool api_delayed_path(const char *path);
extern void api_handle(const ApiRequest *q, Reply *out);

#endif							/* MOCKPG_API_H */

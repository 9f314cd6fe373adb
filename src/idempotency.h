/*
 * idempotency.h
 *		Idempotency keys (docs/concepts.md, "Idempotency"): the same key and request replay
 *		the first response; a different request is refused; a request still
 *		running with the same key is refused at once.
 */
#ifndef COUPON_IDEMPOTENCY_H
#define COUPON_IDEMPOTENCY_H

#include "fmgr.h"

typedef struct IdemRequest
{
	int64		merchant_id;
	text	   *key;
	char	   *actor;			/* who used it: client:<id>, user:<sub> or "" */
	bytea	   *hash;			/* SHA-256 of the request signature */
} IdemRequest;

/* the key argument checked: NULL when absent, PT400 when malformed */
/* the key argument, else the Idempotency-Key header; NULL when neither */
extern text *idem_key_arg(FunctionCallInfo fcinfo, int argno);

/* the Idempotency-Key header alone (a function without a key argument) */
extern text *idem_key_header(void);

/*
 * Claim the key for this transaction.  Returns the stored response (jsonb)
 * when the same request already ran, or (Datum) 0 when the caller should
 * do the work and then call idem_finish.  Must run inside SPI.
 */
extern Datum idem_begin(IdemRequest *req, int64 merchant_id, text *key,
						const char *signature);

/* remember the response (a composite datum) in the same transaction */
extern void idem_finish(IdemRequest *req, Datum response_row);

#endif							/* COUPON_IDEMPOTENCY_H */

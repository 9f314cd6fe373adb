/*
 * gateway.h
 *		HTTP calls to the payment gateway (DESIGN section 8) with the libcurl
 *		multi interface.  Many calls run at once; waiting on them also waits
 *		on the process latch, so a worker that is busy with calls still wakes
 *		at once for new work.  No transaction may be open across a wait.
 */
#ifndef COUPON_GATEWAY_H
#define COUPON_GATEWAY_H

#include "postgres.h"

#include "utils/timestamp.h"

typedef struct Gateway Gateway;

/* one request and, once done, its answer; owned by the caller */
typedef struct GatewayCall
{
	/* request: method "GET" or "POST", path below the base URL */
	const char *method;
	char	   *path;			/* e.g. "/v1/payments/confirm" (already escaped) */
	char	   *body;			/* JSON for POST, NULL for GET */
	char	   *idempotency_key;	/* NULL: no Idempotency-Key header */
	void	   *arg;			/* the caller's own pointer */

	/* answer, filled in when the call is done */
	bool		done;
	int			http_status;	/* 0: no HTTP answer (timeout, refused, reset) */
	char	   *response;		/* body as received (NUL-terminated), or NULL */
	char	   *error;			/* transport error in words, or NULL */
	int64		latency_us;		/* from start to done */

	/* private to gateway.c */
	void	   *handle;
	TimestampTz started_at;
	struct GatewayCall *next_done;
} GatewayCall;

/* the fields of a gateway answer the saga reads (absent: NULL / -1) */
typedef struct GatewayReply
{
	char	   *status;			/* Payment.status: DONE, CANCELED, ... */
	char	   *code;			/* error code: REJECT_CARD_PAYMENT, ... */
	char	   *message;		/* error message */
	int64		total_amount;	/* Payment.totalAmount */
	int64		balance_amount; /* Payment.balanceAmount */
} GatewayReply;

/*
 * A client for base_url (http or https only) authenticating with secret.
 * Memory lives in a child of TopMemoryContext until gateway_close.
 */
extern Gateway *gateway_open(const char *base_url, const char *secret,
							 int timeout_ms);
extern void gateway_close(Gateway *gw);

/* start a call; the GatewayCall must stay valid until it is returned done */
extern void gateway_start(Gateway *gw, GatewayCall *call);

/* calls started and not yet returned by gateway_next_done */
extern int	gateway_in_flight(Gateway *gw);

/*
 * Drive the calls for at most timeout_ms (-1: until something happens),
 * also waking when MyLatch is set or the postmaster dies (then the process
 * exits).  Returns true if the latch was set; the caller resets it.
 */
extern bool gateway_wait(Gateway *gw, long timeout_ms, uint32 wait_event_info);

/* the next finished call, or NULL */
extern GatewayCall *gateway_next_done(Gateway *gw);

/* parse the top-level members of a gateway JSON answer; false if not JSON */
extern bool gateway_parse_reply(const char *body, GatewayReply *reply);

/* a path segment percent-encoded (RFC 3986 unreserved kept), palloc'd */
extern char *gateway_escape(const char *segment);

#endif							/* COUPON_GATEWAY_H */

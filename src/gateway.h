/*
 * gateway.h
 *		HTTP calls to the payment gateway (docs/saga.md, docs/mockpg.md) with the libcurl
 *		multi interface.  Many calls run at once; waiting on them also waits
 *		on the process latch, so a worker that is busy with calls still wakes
 *		at once for new work.  No transaction may be open across a wait.
 *		What the answers say is read by gateway_reply.h.
 */
#ifndef COUPON_GATEWAY_H
#define COUPON_GATEWAY_H

#include "postgres.h"

#include "utils/timestamp.h"

typedef struct Gateway Gateway;

/*
 * One request and, once done, its answer; owned by the caller.
 *
 * gateway_start copies method, path, body, idempotency_key and trace_id, so they may
 * be freed (or their memory context reset) as soon as it returns; only the
 * GatewayCall itself must stay valid (allocate it in a long-lived context)
 * until gateway_next_done hands it back.
 *
 * done, http_status and latency_us are set when the transfer finishes.
 * response and error are set by gateway_next_done, palloc'd in the memory
 * context that is current when it is called; from then on they belong to
 * the caller and nothing in gateway.c refers to them.  Before that they are
 * NULL.
 */
typedef struct GatewayCall
{
	/* request: method "GET" or "POST", path below the base URL */
	const char *method;
	char	   *path;			/* e.g. "/v1/payments/confirm" (already escaped) */
	char	   *body;			/* JSON for POST, NULL for GET */
	char	   *idempotency_key;	/* NULL: no Idempotency-Key header */
	char	   *trace_id;		/* NULL: no X-Trace-Id header */
	void	   *arg;			/* the caller's own pointer */

	/* answer, filled in when the call is done */
	bool		done;
	int			http_status;	/* 0: no HTTP answer (timeout, refused, reset,
								 * answer over 1 MiB) */
	char	   *response;		/* body as received (NUL-terminated; "" when
								 * empty), or NULL when http_status is 0 */
	char	   *error;			/* transport error in words, or NULL when an
								 * HTTP answer (any status) arrived */
	bool		too_large;		/* the answer passed 1 MiB and was dropped */
	int64		latency_us;		/* from start to done */

	/* private to gateway.c */
	void	   *handle;
	TimestampTz started_at;
	struct GatewayCall *next_done;
} GatewayCall;

/*
 * A client for base_url (http or https only; a trailing slash is dropped)
 * authenticating with secret.  timeout_ms (> 0) limits each call as a whole,
 * from gateway_start.  Connections are kept alive and capped a little below
 * max_safe_fds / 3 (about 320 by default); calls beyond the cap wait inside
 * libcurl for a free connection.  Memory lives in a child of
 * TopMemoryContext until gateway_close, which also forgets calls still in
 * flight (their GatewayCalls stay untouched).
 */
extern Gateway *gateway_open(const char *base_url, const char *secret,
							 int timeout_ms);
extern void gateway_close(Gateway *gw);

/*
 * Start a call (it is sent at once); the GatewayCall must stay valid until
 * gateway_next_done returns it.  Errors only for the caller's mistakes or a
 * broken libcurl; network trouble shows up in the finished call instead.
 */
extern void gateway_start(Gateway *gw, GatewayCall *call);

/* calls started and not yet returned by gateway_next_done */
extern int	gateway_in_flight(Gateway *gw);

/*
 * Drive the calls for at most timeout_ms (-1: until something happens),
 * also waking when MyLatch is set or the postmaster dies (then the process
 * exits).  Returns true if the latch was set; the caller resets it.  It may
 * return sooner (some socket was served, or libcurl's own timer fired), so
 * callers loop, collecting gateway_next_done.  If the latch is already set
 * on entry it does not sleep: it serves whatever sockets are ready and
 * returns true, so a busy latch cannot starve the calls.
 */
extern bool gateway_wait(Gateway *gw, long timeout_ms, uint32 wait_event_info);

/*
 * The next finished call (oldest first), or NULL; sets its response and
 * error in the current memory context (see GatewayCall).
 */
extern GatewayCall *gateway_next_done(Gateway *gw);

/* is a finished call waiting for gateway_next_done? */
extern bool gateway_has_done(Gateway *gw);

/* a path segment percent-encoded (RFC 3986 unreserved kept), palloc'd */
extern char *gateway_escape(const char *segment);

#endif							/* COUPON_GATEWAY_H */

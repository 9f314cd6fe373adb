/*
 * payment.h
 *		The payment saga's state machine (docs/saga.md): which step a
 *		payment's state calls for, how a gateway answer is read, and where
 *		each outcome leads.  Also the retry backoff and the circuit breaker.
 *		Pure C, no PostgreSQL headers, unit-tested on its own; saga.c does
 *		the I/O.
 */
#ifndef COUPON_PAYMENT_H
#define COUPON_PAYMENT_H

#include <stdbool.h>
#include <stdint.h>

typedef enum PayState
{
	PAY_PENDING,				/* recorded, confirm not sent */
	PAY_AUTHORIZING,			/* confirm sent; outcome unknown until answered */
	PAY_APPROVED,				/* the gateway approved; coupons not yet spent */
	PAY_COMPLETED,
	PAY_VOIDING,				/* approved but the coupons could not be spent */
	PAY_RELEASING,				/* nothing charged; coupons to give back */
	PAY_FAILED,
	PAY_REFUNDING,
	PAY_REFUNDED,
	PAY_PARTIALLY_REFUNDED,
	PAY_NEEDS_ATTENTION,
	PAY_STATE_COUNT
} PayState;

/* what a due payment needs next */
typedef enum PayStep
{
	STEP_NONE,					/* nothing: terminal or waiting for a human */
	/* gateway calls */
	STEP_CONFIRM,				/* POST /v1/payments/confirm */
	STEP_LOOKUP,				/* GET /v1/payments/orders/{orderId} */
	STEP_VOID,					/* POST /v1/payments/{key}/cancel, everything */
	STEP_REFUND,				/* POST /v1/payments/{key}/cancel, refund_amount */
	/* local work, done in the database */
	STEP_SPEND_COUPONS,			/* confirm the payment's holds */
	STEP_RELEASE_COUPONS,		/* release the payment's holds */
} PayStep;

/* how a gateway answer reads, for the step it answers */
typedef enum PayOutcome
{
	OUTCOME_OK,					/* approved / cancelled / found DONE */
	OUTCOME_DECLINED,			/* a final no: nothing was charged */
	OUTCOME_NOT_FOUND,			/* lookup: the gateway never saw the confirm */
	OUTCOME_PENDING,			/* lookup: the gateway is still working on it */
	OUTCOME_REJECTED,			/* a final no to a cancel: the books disagree */
	OUTCOME_UNKNOWN				/* no answer, 5xx, or an answer we cannot read */
} PayOutcome;

/* what a transition needs to know of the payment besides its state */
typedef struct PayContext
{
	bool		cancel_requested;	/* cancel_payment() waits for the authorization */
	bool		cancel_all;		/* ... and it asks for everything back */
	bool		confirm_sent;	/* a confirm was ever sent (and committed as sent) */
	bool		refund_full;	/* the refund in progress takes the rest */
	bool		refunded_before;	/* an earlier refund went through */
	int			attempts;		/* gateway calls of this step so far, this one included */
	int			max_attempts;
} PayContext;

/* where a payment goes after a step */
typedef struct PayTransition
{
	PayState	next;
	bool		backoff;		/* next attempt after a delay, not at once */
	bool		reset_attempts; /* a new step starts: attempts back to 0 */
} PayTransition;

/* the circuit breaker shared by everyone calling the gateway */
typedef enum BreakerState
{
	BREAKER_CLOSED,
	BREAKER_OPEN,
	BREAKER_HALF_OPEN
} BreakerState;

typedef struct Breaker
{
	BreakerState state;
	int			failures;		/* consecutive */
	int64_t		open_until;		/* open: until when; half open: probe deadline (us) */
	bool		probing;		/* half open: the one probe is out */
	int64_t		opened_at;		/* when it last opened from closed (us) */
} Breaker;

/*
 * What a recorded result did to the breaker, for the one log line per
 * change: an outage opens it once (closed -> open) and closes it once
 * (open or half open -> closed); a failed probe only reopens it.
 */
typedef enum BreakerEdge
{
	BREAKER_EDGE_NONE,
	BREAKER_EDGE_OPENED,
	BREAKER_EDGE_CLOSED
} BreakerEdge;

/* names of the SQL state values; parse returns false for an unknown name */
extern const char *pay_state_name(PayState state);
extern bool pay_state_from_name(const char *name, PayState *out);
extern const char *pay_step_name(PayStep step);

/* is this a state the saga drives (has a due step)? */
extern bool pay_state_live(PayState state);

/* is it final (the saga has nothing more to do)? */
extern bool pay_state_final(PayState state);

/*
 * The step a due payment in this state needs.  look_first: a full cancel
 * waits and no confirm was ever sent, so a pending payment is looked up
 * (to be sure) instead of confirmed.
 */
extern PayStep pay_step_for(PayState state, bool look_first);

/* pay_step_for's look_first for a payment in this context */
extern bool pay_look_first(const PayContext *ctx);

/* does the step call the gateway? */
extern bool pay_step_remote(PayStep step);

/* the state recorded while a gateway step is in flight (pending -> authorizing) */
extern PayState pay_claim_state(PayState state, PayStep step);

/*
 * Read a gateway answer for a step: HTTP status (0 = no answer), the
 * Payment.status and error code members (NULL if absent).
 */
extern PayOutcome pay_classify(PayStep step, int http_status,
							   const char *status, const char *code);

/* where the outcome of a step leads (see PayContext) */
extern PayTransition pay_transition(PayState state, PayStep step, PayOutcome outcome,
									const PayContext *ctx);

/* the delay before retry number `attempt` (1-based): base * 2^(n-1), capped, with jitter */
extern int64_t pay_backoff_ms(int attempt, int base_ms, int max_ms, uint32_t random);

/* circuit breaker: may a call go out now?  (takes the half-open probe) */
extern bool breaker_allow(Breaker *b, int64_t now, int64_t cooldown_us);

/* circuit breaker: record a call's result; says whether it opened or closed */
extern BreakerEdge breaker_record(Breaker *b, bool success, int64_t now,
								  int threshold, int64_t cooldown_us);

extern const char *breaker_state_name(BreakerState state);

#endif							/* COUPON_PAYMENT_H */

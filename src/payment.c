/*
 * payment.c
 *		The payment saga's transitions, backoff and circuit breaker: its pure
 *		state machine (the SQL functions of payments are payment_funcs.c).
 *
 * Pure C (no PostgreSQL headers) so the unit tests link it directly.  The
 * rule behind every transition: money moves only on an answer we can read;
 * anything else (no answer, 5xx, an odd answer) is retried with the same
 * idempotency key, and an unknown confirm is first looked up by order id.
 */
#include <string.h>

#include "payment.h"

static const char *const state_names[PAY_STATE_COUNT] = {
	[PAY_PENDING] = "pending",
	[PAY_AUTHORIZING] = "authorizing",
	[PAY_APPROVED] = "approved",
	[PAY_COMPLETED] = "completed",
	[PAY_VOIDING] = "voiding",
	[PAY_RELEASING] = "releasing",
	[PAY_FAILED] = "failed",
	[PAY_REFUNDING] = "refunding",
	[PAY_REFUNDED] = "refunded",
	[PAY_PARTIALLY_REFUNDED] = "partially_refunded",
	[PAY_NEEDS_ATTENTION] = "needs_attention",
};

/* SQL name of a state */
const char *
pay_state_name(PayState state)
{
	return (state >= 0 && state < PAY_STATE_COUNT) ? state_names[state] : "unknown";
}

/* parse a state name read from the table */
bool
pay_state_from_name(const char *name, PayState *out)
{
	for (int i = 0; i < PAY_STATE_COUNT; i++)
	{
		if (strcmp(name, state_names[i]) == 0)
		{
			*out = (PayState) i;
			return true;
		}
	}
	return false;
}

/* event log name of a step */
const char *
pay_step_name(PayStep step)
{
	switch (step)
	{
		case STEP_CONFIRM:
			return "confirm";
		case STEP_LOOKUP:
			return "lookup";
		case STEP_VOID:
			return "void";
		case STEP_REFUND:
			return "refund";
		case STEP_SPEND_COUPONS:
			return "spend_coupons";
		case STEP_RELEASE_COUPONS:
			return "release_coupons";
		case STEP_NONE:
			break;
	}
	return "none";
}

/* states the saga drives on its own */
bool
pay_state_live(PayState state)
{
	return pay_step_for(state, false) != STEP_NONE;
}

/* states nothing more happens to without a new request */
bool
pay_state_final(PayState state)
{
	return state == PAY_COMPLETED || state == PAY_FAILED ||
		state == PAY_REFUNDED || state == PAY_PARTIALLY_REFUNDED;
}

/* the one step each live state calls for */
PayStep
pay_step_for(PayState state, bool look_first)
{
	switch (state)
	{
		case PAY_PENDING:
			/* cancelled before it went out: make sure it never did, then release */
			return look_first ? STEP_LOOKUP : STEP_CONFIRM;
		case PAY_AUTHORIZING:
			return STEP_LOOKUP;	/* a confirm went out and its answer is lost */
		case PAY_APPROVED:
			return STEP_SPEND_COUPONS;
		case PAY_VOIDING:
			return STEP_VOID;
		case PAY_RELEASING:
			return STEP_RELEASE_COUPONS;
		case PAY_REFUNDING:
			return STEP_REFUND;
		default:
			return STEP_NONE;
	}
}

/*
 * A full cancel of a payment whose confirm never went out needs no charge:
 * a lookup that finds nothing lets it fail.  Once a confirm went out, only
 * the same confirm again settles it (the gateway may still process the
 * first), so the cancel becomes a refund after the approval.
 */
bool
pay_look_first(const PayContext *ctx)
{
	return ctx->cancel_all && !ctx->confirm_sent;
}

/* gateway steps run between transactions; the others inside one */
bool
pay_step_remote(PayStep step)
{
	return step == STEP_CONFIRM || step == STEP_LOOKUP ||
		step == STEP_VOID || step == STEP_REFUND;
}

/*
 * The state written (and committed) before a gateway call goes out, so a
 * crash during the call leaves a row that says a confirm may have happened.
 */
PayState
pay_claim_state(PayState state, PayStep step)
{
	if (state == PAY_PENDING && (step == STEP_CONFIRM || step == STEP_LOOKUP))
		return PAY_AUTHORIZING;
	return state;
}

/* answers that say nothing final: retry them */
static bool
retryable_http(int http_status)
{
	return http_status == 0 || http_status >= 500 || http_status == 401 ||
		http_status == 408 || http_status == 409 || http_status == 422 ||
		http_status == 429;
}

/* is s (possibly NULL) equal to lit? */
static bool
is(const char *s, const char *lit)
{
	return s != NULL && strcmp(s, lit) == 0;
}

/* read a gateway answer for the step it answers */
PayOutcome
pay_classify(PayStep step, int http_status, const char *status, const char *code)
{
	bool		ok = http_status >= 200 && http_status < 300;

	if (retryable_http(http_status))
		return OUTCOME_UNKNOWN;

	switch (step)
	{
		case STEP_CONFIRM:
			if (ok)
				return is(status, "DONE") ? OUTCOME_OK : OUTCOME_UNKNOWN;

			/*
			 * Any other 4xx is final, ALREADY_PROCESSED_PAYMENT included:
			 * our own earlier confirm would be answered 200 (same key, order
			 * and amount), so it means the paymentKey belongs to another order.
			 */
			if (http_status >= 400 && http_status < 500)
				return OUTCOME_DECLINED;
			return OUTCOME_UNKNOWN;

		case STEP_LOOKUP:
			if (http_status == 404)
				return OUTCOME_NOT_FOUND;
			if (!ok)
				return OUTCOME_UNKNOWN;
			if (is(status, "DONE"))
				return OUTCOME_OK;
			if (is(status, "CANCELED") || is(status, "ABORTED") || is(status, "EXPIRED"))
				return OUTCOME_DECLINED;
			if (is(status, "READY") || is(status, "IN_PROGRESS") ||
				is(status, "WAITING_FOR_DEPOSIT"))
				return OUTCOME_PENDING;
			return OUTCOME_UNKNOWN;

		case STEP_VOID:
		case STEP_REFUND:
			if (ok)
				return (is(status, "CANCELED") || is(status, "PARTIAL_CANCELED"))
					? OUTCOME_OK : OUTCOME_UNKNOWN;
			/* voiding what is already void is done; a refund must match */
			if (step == STEP_VOID && is(code, "ALREADY_CANCELED_PAYMENT"))
				return OUTCOME_OK;
			if (http_status >= 400 && http_status < 500)
				return OUTCOME_REJECTED;
			return OUTCOME_UNKNOWN;

		default:
			return OUTCOME_UNKNOWN;
	}
}

/* a transition to `next` starting a new step */
static PayTransition
go(PayState next)
{
	PayTransition t = {next, false, true};

	return t;
}

/* try the same state again later, or give up to a human */
static PayTransition
again(PayState state, int attempts, int max_attempts)
{
	PayTransition t = {state, true, false};

	if (attempts >= max_attempts)
		t.next = PAY_NEEDS_ATTENTION;
	return t;
}

/* where the outcome of a step leads */
PayTransition
pay_transition(PayState state, PayStep step, PayOutcome outcome, const PayContext *ctx)
{
	switch (step)
	{
		case STEP_CONFIRM:
		case STEP_LOOKUP:
			if (outcome == OUTCOME_OK)
				return go(PAY_APPROVED);
			if (outcome == OUTCOME_DECLINED)
				return go(PAY_RELEASING);
			if (outcome == OUTCOME_NOT_FOUND)
			{
				PayTransition t = {PAY_PENDING, false, false};

				/* never reached the gateway: cancelled, or confirm again (same key) */
				if (pay_look_first(ctx))
					return go(PAY_RELEASING);
				if (ctx->attempts >= ctx->max_attempts)
					t = again(PAY_PENDING, ctx->attempts, ctx->max_attempts);
				return t;
			}
			/* unknown: look the order up before anything else */
			return again(PAY_AUTHORIZING, ctx->attempts, ctx->max_attempts);

		case STEP_SPEND_COUPONS:
			if (outcome == OUTCOME_OK)
				return go(ctx->cancel_requested ? PAY_REFUNDING : PAY_COMPLETED);
			return go(PAY_VOIDING);

		case STEP_RELEASE_COUPONS:
			return go(PAY_FAILED);

		case STEP_VOID:
			if (outcome == OUTCOME_OK)
				return go(PAY_RELEASING);
			if (outcome == OUTCOME_REJECTED)
				return go(PAY_NEEDS_ATTENTION);
			return again(PAY_VOIDING, ctx->attempts, ctx->max_attempts);

		case STEP_REFUND:
			if (outcome == OUTCOME_OK)
				return go(ctx->refund_full ? PAY_REFUNDED : PAY_PARTIALLY_REFUNDED);
			/* refused (e.g. more than the gateway holds): back where it was */
			if (outcome == OUTCOME_REJECTED)
				return go(ctx->refunded_before ? PAY_PARTIALLY_REFUNDED : PAY_COMPLETED);
			return again(PAY_REFUNDING, ctx->attempts, ctx->max_attempts);

		case STEP_NONE:
			break;
	}
	return go(state);
}

/* exponential backoff with equal jitter: half fixed, half random */
int64_t
pay_backoff_ms(int attempt, int base_ms, int max_ms, uint32_t random)
{
	int64_t		delay = base_ms;
	int64_t		half;

	for (int i = 1; i < attempt && delay < max_ms; i++)
		delay *= 2;
	if (delay > max_ms)
		delay = max_ms;
	half = delay / 2;
	return delay - half + (half > 0 ? (int64_t) (random % (uint64_t) (half + 1)) : 0);
}

/* closed lets everything through; open nothing; half open one probe */
bool
breaker_allow(Breaker *b, int64_t now, int64_t cooldown_us)
{
	switch (b->state)
	{
		case BREAKER_CLOSED:
			return true;
		case BREAKER_OPEN:
			if (now < b->open_until)
				return false;
			b->state = BREAKER_HALF_OPEN;
			break;
		case BREAKER_HALF_OPEN:
			/* one probe at a time; a probe lost with its caller is replaced */
			if (b->probing && now < b->open_until)
				return false;
			break;
	}
	b->probing = true;
	b->open_until = now + cooldown_us;	/* the probe's deadline */
	return true;
}

/*
 * Count a call's result; enough failures in a row open the circuit.  The
 * answer names the edge crossed, so the caller can log an outage's start
 * and end exactly once without looking at the state itself.
 */
BreakerEdge
breaker_record(Breaker *b, bool success, int64_t now, int threshold, int64_t cooldown_us)
{
	BreakerState before = b->state;

	if (success)
	{
		b->state = BREAKER_CLOSED;
		b->failures = 0;
		b->probing = false;
		b->open_until = 0;
		return before == BREAKER_CLOSED ? BREAKER_EDGE_NONE : BREAKER_EDGE_CLOSED;
	}
	b->failures++;
	if (b->state == BREAKER_HALF_OPEN || b->failures >= threshold)
	{
		b->state = BREAKER_OPEN;
		b->open_until = now + cooldown_us;
		b->probing = false;
		if (before == BREAKER_CLOSED)
		{
			b->opened_at = now;
			return BREAKER_EDGE_OPENED;
		}
	}
	return BREAKER_EDGE_NONE;
}

/* name shown in worker_status */
const char *
breaker_state_name(BreakerState state)
{
	switch (state)
	{
		case BREAKER_CLOSED:
			return "closed";
		case BREAKER_OPEN:
			return "open";
		case BREAKER_HALF_OPEN:
			return "half_open";
	}
	return "unknown";
}

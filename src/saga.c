/*
 * saga.c
 *		Claiming due payments, starting their gateway calls, recording the
 *		answers, and the local steps (spending, releasing and restoring
 *		coupons).  The transitions themselves are payment.c's.
 *
 * A gateway step goes through three moments: the claim (state and lease
 * written, committed), the call (no transaction open), the record (answer
 * and next state written, committed).  A crash between them leaves a row
 * whose lease lapses, and whose state says what to do: a payment left in
 * authorizing is looked up at the gateway before anything else.
 *
 * Lock order: the saga takes the payment row first and then its coupons.
 * No other path locks a coupon and then a payment (pay() creates the
 * payment after its holds, cancel_payment() locks only the payment), so
 * this order cannot deadlock with the rest of the API.
 *
 * One file of about 850 lines, on purpose: claim and record are two ends
 * of the same step and share its private pieces (the payment row as read,
 * the call in flight, advance() with its event log, the breaker under its
 * lock); split apart they would need a header of saga internals for every
 * one of them.  The pure rules are payment.c's, the holds
 * payment_hold.c's, the worker's loop saga_worker.c's.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "callctx.h"
#include "coupon.h"
#include "gateway_reply.h"
#include "payment_hold.h"
#include "saga.h"
#include "shmem.h"
#include "spi_util.h"

/* answers recorded per transaction: the subtransaction ids one backend caches */
#define SAGA_RECORD_BATCH 64

#define LIVE_STATES "('pending', 'authorizing', 'approved', 'voiding', 'releasing', 'refunding')"
#define PAYMENT_COLUMNS "id, state, attempts, payment_key, amount - discount," \
	" refund_amount, coalesce(refund_reason, 'customer request'), refunds," \
	" approved_amount, refunded_amount, authorized_at IS NOT NULL," \
	" (SELECT m.currency FROM coupon.merchant m WHERE m.id = merchant_id), trace_id"

/* due payments, oldest first, skipping those another runner holds */
static SavedPlan claim_plan = {
	.sql = "SELECT " PAYMENT_COLUMNS " FROM coupon.payment"
	" WHERE state IN " LIVE_STATES " AND next_attempt_at <= $2"
	" ORDER BY next_attempt_at LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
	.nargs = 2,
	.argtypes = {INT4OID, TIMESTAMPTZOID}
};

/* the same, local steps only: while the circuit is open */
static SavedPlan claim_local_plan = {
	.sql = "SELECT " PAYMENT_COLUMNS " FROM coupon.payment"
	" WHERE state IN ('approved', 'releasing') AND next_attempt_at <= $2"
	" ORDER BY next_attempt_at LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
	.nargs = 2,
	.argtypes = {INT4OID, TIMESTAMPTZOID}
};

/* milliseconds until the next payment falls due */
static SavedPlan next_due_plan = {
	.sql = "SELECT ceil(extract(epoch FROM min(next_attempt_at) - clock_timestamp()) * 1000)::bigint"
	"  FROM coupon.payment WHERE state IN " LIVE_STATES,
	.nargs = 0
};

/* the row again when its answer comes back, locked */
static SavedPlan lock_plan = {
	.sql = "SELECT " PAYMENT_COLUMNS " FROM coupon.payment WHERE id = $1 FOR NO KEY UPDATE",
	.nargs = 1,
	.argtypes = {INT8OID}
};

/* the claims of one round, in one statement: in flight until the lease ends */
static SavedPlan claim_update_plan = {
	.sql = "UPDATE coupon.payment p SET state = c.state, attempts = p.attempts + 1,"
	"       next_attempt_at = clock_timestamp() + $4 * interval '1 millisecond',"
	"       lease_until = clock_timestamp() + $4 * interval '1 millisecond',"
	"       authorized_at = CASE WHEN c.confirm THEN coalesce(p.authorized_at, now())"
	"                            ELSE p.authorized_at END,"
	"       updated_at = now()"
	"  FROM unnest($1::bigint[], $2::text[], $3::boolean[]) AS c (id, state, confirm)"
	" WHERE p.id = c.id",
	.nargs = 4,
	.argtypes = {INT8ARRAYOID, TEXTARRAYOID, BOOLARRAYOID, INT8OID}
};

/* where a step led */
static SavedPlan advance_plan = {
	.sql = "UPDATE coupon.payment SET state = $2,"
	"       attempts = CASE WHEN $3 THEN 0 ELSE attempts END,"
	"       next_attempt_at = clock_timestamp() + $4 * interval '1 millisecond',"
	"       lease_until = NULL, resume_state = $5,"
	"       approved_amount = $6, refunded_amount = $7, refund_amount = $8,"
	"       last_error = coalesce($9, last_error),"
	"       approved_at = CASE WHEN $10 THEN now() ELSE approved_at END,"
	"       completed_at = CASE WHEN $2 = 'completed' THEN coalesce(completed_at, now())"
	"                          ELSE completed_at END,"
	"       failed_at = CASE WHEN $2 = 'failed' THEN now() ELSE failed_at END,"
	"       refunded_at = CASE WHEN $11 THEN now() ELSE refunded_at END,"
	"       updated_at = now()"
	" WHERE id = $1",
	.nargs = 11,
	.argtypes = {INT8OID, TEXTOID, BOOLOID, INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID,
	TEXTOID, BOOLOID, BOOLOID}
};

/* a payment whose answer could not be recorded: a human looks at it */
static SavedPlan attention_plan = {
	.sql = "UPDATE coupon.payment SET state = 'needs_attention', resume_state = $2,"
	"       lease_until = NULL, last_error = $3, updated_at = now()"
	" WHERE id = $1",
	.nargs = 3,
	.argtypes = {INT8OID, TEXTOID, TEXTOID}
};

static SavedPlan event_plan = {
	.sql = "INSERT INTO coupon.payment_event (payment_id, step, from_state, to_state, attempt,"
	"       idempotency_key, http_status, gateway_code, latency_ms, error, actor)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
	.nargs = 11,
	.argtypes = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, INT4OID, TEXTOID,
	FLOAT8OID, TEXTOID, TEXTOID}
};

/* a payment as the saga reads it */
typedef struct PaymentRow
{
	int64		id;
	PayState	state;
	int32		attempts;
	char	   *payment_key;
	int64		charge;			/* amount - discount */
	bool		has_refund;		/* a refund is requested or in progress */
	int64		refund_amount;
	char	   *refund_reason;
	int32		refunds;
	int64		approved_amount;
	int64		refunded_amount;
	bool		confirm_sent;	/* authorized_at is set */
	char	   *currency;		/* the merchant's: what the gateway charges in */
	char	   *trace_id;		/* sent with each call (X-Trace-Id) */
} PaymentRow;

/* a gateway call of the saga, alive from claim to record */
typedef struct SagaCall
{
	GatewayCall call;			/* first: the gateway hands this pointer back */
	int64		payment_id;
	PayState	claimed;		/* the state written at the claim */
	PayStep		step;
	int32		attempt;		/* attempts after the claim */
	struct SagaCall *next_queued;	/* claimed, not yet sent */
} SagaCall;

/* what one step's outcome contributes to the next event and row update */
typedef struct StepResult
{
	int			http_status;	/* -1: a local step */
	const char *gateway_code;
	double		latency_ms;
	const char *error;
	const char *idempotency_key;
} StepResult;

static bool wake_pending = false;

/* row `i` of SPI_tuptable as a PaymentRow (PAYMENT_COLUMNS order) */
static void
read_payment(int i, PaymentRow *row)
{
	char	   *state = spi_text(i, 2);
	bool		isnull;

	row->id = spi_int64(i, 1, NULL);
	if (!pay_state_from_name(state, &row->state))
		elog(ERROR, "payment %lld has unknown state \"%s\"", (long long) row->id, state);
	row->attempts = spi_int32(i, 3, NULL);
	row->payment_key = spi_text(i, 4);
	row->charge = spi_int64(i, 5, NULL);
	row->refund_amount = spi_int64(i, 6, &isnull);
	row->has_refund = !isnull;
	row->refund_reason = spi_text(i, 7);
	row->refunds = spi_int32(i, 8, NULL);
	row->approved_amount = spi_int64(i, 9, NULL);
	row->refunded_amount = spi_int64(i, 10, NULL);
	row->confirm_sent = spi_bool(i, 11);
	row->currency = spi_text(i, 12);
	row->trace_id = spi_text(i, 13);
}

/* the breaker: shared by every process when preloaded, else this backend's */
static Breaker *
breaker_lock(SagaRunner *runner)
{
	CouponShared *sh = coupon_shared();

	if (sh == NULL)
		return &runner->local_breaker;
	SpinLockAcquire(&sh->saga_mutex);
	return &sh->breaker;
}

/* release what breaker_lock took */
static void
breaker_unlock(void)
{
	CouponShared *sh = coupon_shared();

	if (sh != NULL)
		SpinLockRelease(&sh->saga_mutex);
}

/*
 * One LOG line when the circuit opens and one when it closes, whoever
 * records the call that moved it (the edge is taken under the lock, so
 * exactly one process sees it); outside the lock, since ereport may not
 * run under a spinlock.
 */
static void
log_breaker_edge(BreakerEdge edge, const Breaker *seen, TimestampTz now)
{
	if (edge == BREAKER_EDGE_OPENED)
		ereport(LOG,
				(errmsg("coupon: gateway circuit opened after %d failed calls in a row",
						seen->failures),
				 errdetail("Gateway calls stop; one probe call goes out every %d ms until one is answered.",
						   coupon_circuit_cooldown_ms),
				 errhidestmt(true)));
	else if (edge == BREAKER_EDGE_CLOSED)
		ereport(LOG,
				(errmsg("coupon: gateway circuit closed after %.1f s open",
						(double) (now - seen->opened_at) / USECS_PER_SEC),
				 errdetail("The gateway answered again; gateway calls flow."),
				 errhidestmt(true)));
}

/* a copy of the breaker's state, for worker_status and the worker's wait */
BreakerState
saga_breaker_state(Breaker *copy)
{
	CouponShared *sh = coupon_shared();

	if (sh == NULL)
	{
		memset(copy, 0, sizeof(*copy));
		return BREAKER_CLOSED;
	}
	SpinLockAcquire(&sh->saga_mutex);
	*copy = sh->breaker;
	SpinLockRelease(&sh->saga_mutex);
	return copy->state;
}

/* the Idempotency-Key of a gateway step (none for lookups) */
static char *
step_key(const PaymentRow *row, PayStep step)
{
	switch (step)
	{
		case STEP_CONFIRM:
			return psprintf("%lld-confirm", (long long) row->id);
		case STEP_VOID:
			return psprintf("%lld-void", (long long) row->id);
		case STEP_REFUND:
			return psprintf("%lld-refund-%d", (long long) row->id, row->refunds);
		default:
			return NULL;
	}
}

/* fill in the HTTP request of a gateway step */
static void
build_request(SagaCall *sc, const PaymentRow *row)
{
	GatewayCall *call = &sc->call;
	StringInfoData body;

	initStringInfo(&body);
	call->idempotency_key = step_key(row, sc->step);
	call->trace_id = row->trace_id ? pstrdup(row->trace_id) : NULL;
	switch (sc->step)
	{
		case STEP_CONFIRM:
			call->method = "POST";
			call->path = pstrdup("/v1/payments/confirm");
			appendStringInfoString(&body, "{\"paymentKey\":");
			escape_json(&body, row->payment_key);
			appendStringInfo(&body, ",\"orderId\":\"cp-%lld\",\"amount\":%lld,\"currency\":",
							 (long long) row->id, (long long) row->charge);
			escape_json(&body, row->currency);
			appendStringInfoChar(&body, '}');
			break;
		case STEP_LOOKUP:
			call->method = "GET";
			call->path = psprintf("/v1/payments/orders/cp-%lld", (long long) row->id);
			break;
		case STEP_VOID:
		case STEP_REFUND:
			call->method = "POST";
			call->path = psprintf("/v1/payments/%s/cancel", gateway_escape(row->payment_key));
			appendStringInfoString(&body, "{\"cancelReason\":");
			if (sc->step == STEP_VOID)
				escape_json(&body, "the coupons of the payment could not be applied");
			else
				escape_json(&body, row->refund_reason);
			if (sc->step == STEP_VOID)
				appendStringInfo(&body, "}");
			else
				appendStringInfo(&body, ",\"cancelAmount\":%lld}", (long long) row->refund_amount);
			break;
		default:
			elog(ERROR, "step %s is not a gateway call", pay_step_name(sc->step));
	}
	call->body = (strcmp(call->method, "POST") == 0) ? body.data : NULL;
}

/* append one event to the payment's log */
static void
log_event(SagaRunner *runner, int64 payment_id, PayStep step, PayState from, PayState to,
		  int32 attempt, const StepResult *res)
{
	Datum		v[11];
	char		n[11];

	memset(n, ' ', sizeof(n));
	v[0] = Int64GetDatum(payment_id);
	v[1] = CStringGetTextDatum(pay_step_name(step));
	v[2] = CStringGetTextDatum(pay_state_name(from));
	v[3] = CStringGetTextDatum(pay_state_name(to));
	v[4] = Int32GetDatum(attempt);
	if (res->idempotency_key)
		v[5] = CStringGetTextDatum(res->idempotency_key);
	else
		n[5] = 'n';
	if (res->http_status >= 0)
	{
		v[6] = Int32GetDatum(res->http_status);
		v[8] = Float8GetDatum(res->latency_ms);
	}
	else
		n[6] = n[8] = 'n';
	if (res->gateway_code)
		v[7] = CStringGetTextDatum(res->gateway_code);
	else
		n[7] = 'n';
	if (res->error)
		v[9] = CStringGetTextDatum(res->error);
	else
		n[9] = 'n';
	v[10] = CStringGetTextDatum(runner->actor);
	spi_run(&event_plan, v, n, false, 0);
}

/* what pay_transition needs to know of the row */
static PayContext
row_context(const PaymentRow *row, int32 attempts)
{
	PayContext	ctx;

	ctx.cancel_requested = row->has_refund;
	ctx.cancel_all = row->has_refund && row->refund_amount >= row->charge;
	ctx.confirm_sent = row->confirm_sent;
	ctx.refund_full = row->has_refund &&
		row->refunded_amount + row->refund_amount >= row->approved_amount;
	ctx.refunded_before = row->refunded_amount > 0;
	ctx.attempts = attempts;
	ctx.max_attempts = coupon_max_attempts;
	return ctx;
}

/* run a local step (the payment's coupons) in this transaction */
static PayOutcome
run_local_step(const PaymentRow *row, PayStep step, StepResult *res)
{
	memset(res, 0, sizeof(*res));
	res->http_status = -1;
	if (step == STEP_SPEND_COUPONS)
	{
		if (reserve_spend_holds(row->id))
			return OUTCOME_OK;
		res->error = "a coupon of the payment was no longer held";
		return OUTCOME_DECLINED;
	}
	reserve_release_holds(row->id);
	return OUTCOME_OK;
}

/*
 * Carry a payment from `state` through the outcome of `step` and every
 * local step that follows, then write the row once.  The payment is locked
 * by the caller; `row` holds its columns as read under that lock.
 */
static void
advance(SagaRunner *runner, PaymentRow *row, PayState state, PayStep step,
		PayOutcome outcome, int32 attempts, const StepResult *first)
{
	StepResult	local;
	const StepResult *res = first;
	bool		reset = false;
	bool		approved_now = false;
	bool		refunded_now = false;
	int64		delay_ms = 0;
	PayState	resume = state;
	const char *error = first->error;
	Datum		v[11];
	char		n[11];

	for (;;)
	{
		PayContext	ctx = row_context(row, attempts);
		PayTransition t = pay_transition(state, step, outcome, &ctx);

		if (t.next == PAY_NEEDS_ATTENTION)
			resume = state;
		log_event(runner, row->id, step, state, t.next, attempts, res);
		if (t.reset_attempts)
		{
			reset = true;
			attempts = 0;
		}
		if (t.backoff)
			delay_ms = pay_backoff_ms(attempts, coupon_retry_base_ms, coupon_retry_max_ms,
									  pg_prng_uint32(&pg_global_prng_state));

		/* what entering the new state means for the books and the coupons */
		if (t.next == PAY_APPROVED && state != PAY_APPROVED)
		{
			row->approved_amount = row->charge;
			approved_now = true;
		}
		if (step == STEP_VOID && outcome == OUTCOME_OK)
		{
			/* the charge went back: the books say so, like a refund */
			row->refunded_amount = row->approved_amount;
			refunded_now = true;
		}
		if (step == STEP_REFUND && outcome == OUTCOME_OK)
		{
			row->refunded_amount += row->refund_amount;
			row->has_refund = false;
			refunded_now = true;
			if (t.next == PAY_REFUNDED)
				reserve_restore_holds(row->id);
		}
		if (t.next == PAY_FAILED || (step == STEP_REFUND && outcome == OUTCOME_REJECTED))
			row->has_refund = false;	/* nothing to refund, or the gateway refused it */
		if (t.next == PAY_REFUNDING && state != PAY_REFUNDING)
		{
			/* a cancel that waited for the authorization: the whole rest */
			if (row->refund_amount <= 0 ||
				row->refund_amount > row->approved_amount - row->refunded_amount)
				row->refund_amount = row->approved_amount - row->refunded_amount;
		}

		state = t.next;
		{
			PayContext	next = row_context(row, 0);

			step = pay_step_for(state, pay_look_first(&next));
		}
		if (state == PAY_NEEDS_ATTENTION || pay_step_remote(step) || step == STEP_NONE)
			break;

		/* a local step: run it now, in this transaction */
		res = &local;
		attempts = 0;
		outcome = run_local_step(row, step, &local);
		if (local.error)
			error = local.error;
	}

	memset(n, ' ', sizeof(n));
	v[0] = Int64GetDatum(row->id);
	v[1] = CStringGetTextDatum(pay_state_name(state));
	v[2] = BoolGetDatum(reset);
	v[3] = Int64GetDatum(delay_ms);
	if (state == PAY_NEEDS_ATTENTION)
		v[4] = CStringGetTextDatum(pay_state_name(resume));
	else
		n[4] = 'n';
	v[5] = Int64GetDatum(row->approved_amount);
	v[6] = Int64GetDatum(row->refunded_amount);
	if (row->has_refund && row->refund_amount > 0)
		v[7] = Int64GetDatum(row->refund_amount);
	else
		n[7] = 'n';
	if (error)
		v[8] = CStringGetTextDatum(error);
	else
		n[8] = 'n';
	v[9] = BoolGetDatum(approved_now);
	v[10] = BoolGetDatum(refunded_now);
	spi_run(&advance_plan, v, n, false, 0);
	runner->done++;
}

/* the lease of a gateway step: long enough for the call and its timeout */
static int64
lease_ms(void)
{
	return 2 * (int64) coupon_gateway_timeout_ms + 1000;
}

/* claim one due payment: run a local step, or queue its gateway call */
static void
claim_one(SagaRunner *runner, PaymentRow *row)
{
	PayContext	ctx = row_context(row, 0);
	PayStep		step = pay_step_for(row->state, pay_look_first(&ctx));
	SagaCall   *sc;
	MemoryContext old;

	if (!pay_step_remote(step))
	{
		StepResult	local;
		PayOutcome	outcome = run_local_step(row, step, &local);

		advance(runner, row, row->state, step, outcome, 0, &local);
		return;
	}

	old = MemoryContextSwitchTo(runner->call_cxt);
	sc = palloc0(sizeof(SagaCall));
	sc->payment_id = row->id;
	sc->claimed = pay_claim_state(row->state, step);
	sc->step = step;
	sc->attempt = row->attempts + 1;
	sc->call.arg = sc;
	build_request(sc, row);
	sc->next_queued = runner->queued;
	runner->queued = sc;
	MemoryContextSwitchTo(old);
}

/* write the claims of the queued calls: state, attempt, lease */
static void
mark_in_flight(SagaRunner *runner)
{
	int			n = 0;
	Datum	   *ids;
	Datum	   *states;
	Datum	   *confirms;
	Datum		v[4];

	for (SagaCall *sc = runner->queued; sc != NULL; sc = sc->next_queued)
		n++;
	if (n == 0)
		return;
	ids = palloc(sizeof(Datum) * n);
	states = palloc(sizeof(Datum) * n);
	confirms = palloc(sizeof(Datum) * n);
	n = 0;
	for (SagaCall *sc = runner->queued; sc != NULL; sc = sc->next_queued, n++)
	{
		ids[n] = Int64GetDatum(sc->payment_id);
		states[n] = CStringGetTextDatum(pay_state_name(sc->claimed));
		confirms[n] = BoolGetDatum(sc->step == STEP_CONFIRM);
	}
	v[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	v[1] = PointerGetDatum(construct_array(states, n, TEXTOID, -1, false, TYPALIGN_INT));
	v[2] = PointerGetDatum(construct_array(confirms, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	v[3] = Int64GetDatum(lease_ms());
	if (spi_run(&claim_update_plan, v, NULL, false, 0) != (uint64) n)
		elog(ERROR, "could not mark %d claimed payments in flight", n);
}

/*
 * Send the calls saga_claim queued.  Only once the claim is committed: a
 * call that went out must always have its row saying so.
 */
void
saga_start_queued(SagaRunner *runner)
{
	while (runner->queued != NULL)
	{
		SagaCall   *sc = runner->queued;

		runner->queued = sc->next_queued;
		gateway_start(runner->gw, &sc->call);
	}
}

/* claim due payments; see saga.h */
int
saga_claim(SagaRunner *runner, int max_rows, long *next_due_ms)
{
	Breaker    *b;
	SavedPlan  *plan = &claim_plan;
	int			limit = max_rows;
	bool		took_probe = false;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz blocked_until = 0;
	Datum		args[2];
	uint64		n;
	PaymentRow *rows;
	bool		isnull;
	int64		due;

	/* no gateway, or an open circuit: local steps only; half open: one probe */
	if (runner->gw == NULL)
		plan = &claim_local_plan;
	else
	{
		b = breaker_lock(runner);
		if (b->state != BREAKER_CLOSED)
		{
			if (breaker_allow(b, now, (int64) coupon_circuit_cooldown_ms * 1000))
			{
				limit = 1;
				took_probe = true;
			}
			else
			{
				plan = &claim_local_plan;
				blocked_until = b->open_until;
			}
		}
		breaker_unlock();
	}

	args[0] = Int32GetDatum(limit);
	args[1] = TimestampTzGetDatum(now);
	n = (limit > 0) ? spi_run(plan, args, NULL, false, limit) : 0;
	rows = palloc(sizeof(PaymentRow) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
		read_payment(i, &rows[i]);
	for (uint64 i = 0; i < n; i++)
		claim_one(runner, &rows[i]);
	mark_in_flight(runner);

	/* a probe slot no gateway call took is given back for the next claim */
	if (took_probe && runner->queued == NULL)
	{
		b = breaker_lock(runner);
		if (b->state == BREAKER_HALF_OPEN)
			b->probing = false;
		breaker_unlock();
	}

	/* when to look again: the next due payment, or the circuit's next probe */
	spi_run(&next_due_plan, NULL, NULL, true, 1);
	due = spi_int64(0, 1, &isnull);
	*next_due_ms = isnull ? -1 : (long) Min(Max(due, 0), INT_MAX);
	if (plan == &claim_local_plan && runner->gw != NULL)
		*next_due_ms = Max(1, Min((blocked_until - now) / 1000 + 1, INT_MAX));
	else if (runner->gw == NULL)
		*next_due_ms = -1;
	return (int) n;
}

/* record one finished call; the payment may have moved on without us */
static void
record_one(SagaRunner *runner, SagaCall *sc)
{
	GatewayCall *call = &sc->call;
	GatewayReply reply = {NULL, NULL, NULL, NULL, -1, -1};
	StepResult	res;
	PaymentRow	row;
	PayOutcome	outcome;
	bool		transport_failure;
	Datum		arg = Int64GetDatum(sc->payment_id);
	Breaker    *b;
	Breaker		seen;
	BreakerEdge edge = BREAKER_EDGE_NONE;
	TimestampTz now;

	if (spi_run(&lock_plan, &arg, NULL, false, 1) != 1)
		elog(ERROR, "payment %lld vanished", (long long) sc->payment_id);
	read_payment(0, &row);

	if (call->response)
		gateway_parse_reply(call->response, &reply);
	outcome = pay_classify(sc->step, call->http_status, reply.status, reply.code);

	res.http_status = call->http_status;
	res.gateway_code = gateway_text(reply.status ? reply.status : reply.code);
	res.latency_ms = call->latency_us / 1000.0;
	res.idempotency_key = call->idempotency_key;
	if (call->error)
		res.error = gateway_text(call->error);
	else if (reply.code)
		res.error = gateway_text(psprintf("%s: %s", reply.code, reply.message ? reply.message : ""));
	else if (outcome == OUTCOME_UNKNOWN || call->http_status >= 400)
		res.error = psprintf("HTTP %d without an error code", call->http_status);
	else
		res.error = NULL;

	/*
	 * An approval is taken only for exactly the amount charged: one of
	 * another amount, or without a readable totalAmount (absent, negative,
	 * fractional or past bigint), is not ours to accept: a human looks.
	 */
	if (outcome == OUTCOME_OK && (sc->step == STEP_CONFIRM || sc->step == STEP_LOOKUP) &&
		reply.total_amount != row.charge)
	{
		outcome = OUTCOME_UNKNOWN;
		if (reply.total_amount < 0)
			res.error = psprintf("the gateway's approval has no valid totalAmount (expected %lld)",
								 (long long) row.charge);
		else
			res.error = psprintf("the gateway approved %lld, not %lld",
								 (long long) reply.total_amount, (long long) row.charge);
	}
	/* nor one in another currency than the merchant's, or in none */
	else if (outcome == OUTCOME_OK && (sc->step == STEP_CONFIRM || sc->step == STEP_LOOKUP) &&
			 (reply.currency == NULL || strcmp(reply.currency, row.currency) != 0))
	{
		outcome = OUTCOME_UNKNOWN;
		res.error = psprintf("the gateway approved in %s, not %s",
							 reply.currency ? gateway_text(reply.currency) : "no currency",
							 row.currency);
	}

	/*
	 * The breaker counts what says whether payments go through: no answer
	 * or a 5xx fails, an answered confirm, void or refund succeeds; an
	 * answered lookup says nothing about confirms, so it does not count.
	 */
	transport_failure = (call->http_status == 0 || call->http_status >= 500);
	now = GetCurrentTimestamp();
	b = breaker_lock(runner);
	if (transport_failure || sc->step != STEP_LOOKUP || b->state == BREAKER_HALF_OPEN)
		edge = breaker_record(b, !transport_failure, now,
							  coupon_circuit_failures, (int64) coupon_circuit_cooldown_ms * 1000);
	seen = *b;
	breaker_unlock();
	log_breaker_edge(edge, &seen, now);
	if (outcome == OUTCOME_UNKNOWN)
		runner->errors++;

	if (row.state != sc->claimed || row.attempts != sc->attempt)
	{
		/* our lease lapsed and someone else took the step over */
		log_event(runner, row.id, sc->step, row.state, row.state, sc->attempt, &res);
		return;
	}
	advance(runner, &row, sc->claimed, sc->step, outcome, sc->attempt, &res);
}

/*
 * Record finished calls, each in a subtransaction: a payment whose record
 * fails (a bug, a broken row) goes to needs_attention with the error, and
 * the others are recorded all the same.  At most SAGA_RECORD_BATCH (64,
 * PGPROC_MAX_CACHED_SUBXIDS) per transaction, so its subtransaction ids
 * stay within the cache every backend keeps, which keeps other sessions'
 * snapshots cheap; the caller commits and comes back for the rest.
 */
int
saga_record(SagaRunner *runner)
{
	GatewayCall *call;
	volatile int n = 0;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	while (n < SAGA_RECORD_BATCH && (call = gateway_next_done(runner->gw)) != NULL)
	{
		SagaCall   *sc = (SagaCall *) call->arg;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			call_begin_subxact();
			record_one(runner, sc);
			call_end_subxact();
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			Datum		v[3];

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			elog(WARNING, "coupon: recording payment %lld failed: %s",
				 (long long) sc->payment_id, edata->message);
			v[0] = Int64GetDatum(sc->payment_id);
			v[1] = CStringGetTextDatum(pay_state_name(sc->claimed));
			v[2] = CStringGetTextDatum(edata->message);
			spi_run(&attention_plan, v, NULL, false, 0);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		pfree(sc);
		n++;
	}
	return n;
}

/* at commit, set the workers' latches */
static void
saga_xact_callback(XactEvent event, void *arg)
{
	CouponShared *sh;

	if (!wake_pending)
		return;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		wake_pending = false;
		return;
	}
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT)
		return;
	wake_pending = false;
	sh = coupon_shared();
	if (sh == NULL)
		return;
	for (int i = 0; i < SAGA_MAX_WORKERS; i++)
	{
		Latch	   *latch;

		SpinLockAcquire(&sh->saga_mutex);
		latch = sh->workers[i].latch;
		SpinLockRelease(&sh->saga_mutex);
		if (latch)
			SetLatch(latch);
	}
}

/* ask for the workers to be woken when this transaction commits */
void
saga_wake_at_commit(void)
{
	wake_pending = true;
}

/* register the commit-time wakeup */
void
coupon_saga_init(void)
{
	RegisterXactCallback(saga_xact_callback, NULL);
}

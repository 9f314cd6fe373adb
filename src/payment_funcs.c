/*
 * payment_funcs.c
 *		coupon.pay, cancel_payment, payment_status, retry_payment and
 *		process_payments: the SQL-callable functions of payments, the SQL
 *		face of the saga.  The saga's pure state machine is payment.c.
 *
 * These functions only write state and ask for the workers to be woken at
 * commit; gateway calls happen in saga.c, between transactions (or, for
 * process_payments, in the calling backend).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "callctx.h"
#include "coupon.h"
#include "error.h"
#include "fetch.h"
#include "hold.h"
#include "idempotency.h"
#include "payment_hold.h"
#include "saga.h"
#include "spi_util.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(coupon_pay);
PG_FUNCTION_INFO_V1(coupon_cancel_payment);
PG_FUNCTION_INFO_V1(coupon_payment_status);
PG_FUNCTION_INFO_V1(coupon_retry_payment);
PG_FUNCTION_INFO_V1(coupon_process_payments);

#define MAX_PAYMENT_COUPONS 10

/* the keys pay() makes start with this; callers may not pass such a key */
#define GENERATED_KEY_PREFIX "pk-"

static SavedPlan order_taken_plan = {
	.sql = "SELECT id FROM coupon.payment WHERE merchant_id = $1 AND order_id = $2",
	.nargs = 2,
	.argtypes = {INT8OID, TEXTOID}
};

static SavedPlan key_taken_plan = {
	.sql = "SELECT id FROM coupon.payment WHERE payment_key = $1",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

static SavedPlan next_id_plan = {
	.sql = "SELECT nextval('coupon.payment_id_seq')",
	.nargs = 0
};

static SavedPlan insert_plan = {
	.sql = "INSERT INTO coupon.payment (id, merchant_id, user_id, order_id, amount, discount,"
	"       coupon_ids, payment_key, state, trace_id)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
	" RETURNING *",
	.nargs = 10,
	.argtypes = {INT8OID, INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8ARRAYOID,
	TEXTOID, TEXTOID, TEXTOID}
};

static SavedPlan created_event_plan = {
	.sql = "INSERT INTO coupon.payment_event (payment_id, step, to_state, actor)"
	" VALUES ($1, $2, $3, 'backend')",
	.nargs = 3,
	.argtypes = {INT8OID, TEXTOID, TEXTOID}
};

static SavedPlan get_plan = {
	.sql = "SELECT * FROM coupon.payment WHERE id = $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan lock_plan = {
	.sql = "SELECT merchant_id, state, amount - discount, approved_amount,"
	"       refunded_amount, refund_amount"
	"  FROM coupon.payment WHERE id = $1 FOR NO KEY UPDATE",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan owner_plan = {
	.sql = "SELECT merchant_id, user_id FROM coupon.payment WHERE id = $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

/* a refund: now (completed payments) or once the authorization is done */
static SavedPlan request_refund_plan = {
	.sql = "UPDATE coupon.payment SET state = $2, refund_amount = $3, refund_reason = $4,"
	"       refunds = refunds + 1, attempts = CASE WHEN $2 = 'refunding' THEN 0 ELSE attempts END,"
	"       next_attempt_at = CASE WHEN $2 = 'refunding' THEN now() ELSE next_attempt_at END,"
	"       updated_at = now()"
	" WHERE id = $1 RETURNING *",
	.nargs = 4,
	.argtypes = {INT8OID, TEXTOID, INT8OID, TEXTOID}
};

/* a payment whose confirm was never sent: fail it here and now */
static SavedPlan fail_now_plan = {
	.sql = "UPDATE coupon.payment SET state = 'failed', failed_at = now(),"
	"       refund_reason = $2, updated_at = now()"
	" WHERE id = $1 RETURNING *",
	.nargs = 2,
	.argtypes = {INT8OID, TEXTOID}
};

/* a completed payment that charged nothing (coupons paid it all): undone here */
static SavedPlan refund_now_plan = {
	.sql = "UPDATE coupon.payment SET state = 'refunded', refunded_at = now(),"
	"       refund_reason = $2, refunds = refunds + 1, updated_at = now()"
	" WHERE id = $1 RETURNING *",
	.nargs = 2,
	.argtypes = {INT8OID, TEXTOID}
};

static SavedPlan retry_plan = {
	.sql = "UPDATE coupon.payment SET state = resume_state, resume_state = NULL, attempts = 0,"
	"       next_attempt_at = now(), lease_until = NULL, updated_at = now()"
	" WHERE id = $1 RETURNING *",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan state_event_plan = {
	.sql = "INSERT INTO coupon.payment_event (payment_id, step, from_state, to_state, error, actor)"
	" VALUES ($1, $2, $3, $4, $5, 'backend')",
	.nargs = 5,
	.argtypes = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
};

/*
 * The payment and its last $2 events; $3 (a web role asks: a customer or a
 * merchant's session) leaves out what the gateway said and how it was
 * asked, and last_error: those are for the operators and trusted backends.
 */
static SavedPlan status_plan = {
	.sql = "SELECT (to_jsonb(p) - CASE WHEN $3 THEN '{last_error}'::text[] ELSE '{}' END)"
	"       || jsonb_build_object('events', coalesce(("
	"         SELECT jsonb_agg(to_jsonb(e) - 'payment_id'"
	"                          - CASE WHEN $3 THEN '{error,gateway_code,http_status,idempotency_key,latency_ms}'::text[]"
	"                                 ELSE '{}' END ORDER BY e.id DESC)"
	"           FROM (SELECT * FROM coupon.payment_event"
	"                  WHERE payment_id = p.id ORDER BY id DESC LIMIT $2) e), '[]'))"
	"  FROM coupon.payment p WHERE p.id = $1",
	.nargs = 3,
	.argtypes = {INT8OID, INT4OID, BOOLOID}
};

static SavedPlan replay_plan = {
	.sql = "SELECT * FROM coupon.payment WHERE id = ($1::jsonb ->> 'id')::bigint",
	.nargs = 1,
	.argtypes = {JSONBOID}
};

/* PT404 for a payment id that does not exist */
static void
payment_not_found(int64 payment_id)
{
	coupon_error(REASON_PAYMENT_NOT_FOUND, json_id("payment_id", payment_id),
				 "payment %lld does not exist", (long long) payment_id);
}

/* the coupon ids argument: distinct, no NULLs, at most 10, sorted ascending */
static int
coupon_ids_arg(FunctionCallInfo fcinfo, int argno, int64 **ids)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	*ids = NULL;
	if (PG_ARGISNULL(argno))
		return 0;
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		coupon_error(REASON_INVALID_COUPONS, NULL, "coupon_ids must be a one-dimensional array");
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &n);
	if (n > MAX_PAYMENT_COUPONS)
		coupon_error(REASON_TOO_MANY_COUPONS, NULL,
					 "a payment carries at most %d coupons, not %d", MAX_PAYMENT_COUPONS, n);
	*ids = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		int			j = i;

		if (nulls[i])
			coupon_error(REASON_INVALID_COUPONS, NULL, "coupon_ids must not contain NULL");
		/* insertion sort: at most 10 ids */
		while (j > 0 && (*ids)[j - 1] > DatumGetInt64(elems[i]))
		{
			(*ids)[j] = (*ids)[j - 1];
			j--;
		}
		if (j > 0 && (*ids)[j - 1] == DatumGetInt64(elems[i]))
			coupon_error(REASON_INVALID_COUPONS, json_id("coupon_id", DatumGetInt64(elems[i])),
						 "coupon %lld is listed twice", (long long) DatumGetInt64(elems[i]));
		(*ids)[j] = DatumGetInt64(elems[i]);
	}
	return n;
}

/*
 * A payment key for a payment whose caller passed none: the reserved
 * prefix and 128 random bits, so no caller can guess or claim it, and no
 * key repeats, not even after the extension is dropped and made again
 * (which restarts the payment ids).
 */
static char *
generated_payment_key(void)
{
	return coupon_random_hex(GENERATED_KEY_PREFIX, 16);
}

/*
 * Refuse a caller's payment key that another payment has: one key, one
 * payment at the gateway.  Decided under an advisory lock on the key, so
 * two concurrent pay() calls with one key cannot both pass (the unique
 * index payment_key_idx is the backstop).  Inside SPI.
 */
static void
refuse_taken_key(const char *payment_key)
{
	Datum		arg = CStringGetTextDatum(payment_key);

	call_advisory_lock(COUPON_LOCK_PAYMENT_KEY,
					   (int32) hash_bytes((const unsigned char *) payment_key, strlen(payment_key)));
	if (spi_run(&key_taken_plan, &arg, NULL, false, 1) > 0)
		coupon_error(REASON_DUPLICATE_PAYMENT_KEY, json_id("payment_id", spi_int64(0, 1, NULL)),
					 "payment_key \"%s\" belongs to another payment", payment_key);
}

/* the payment_key argument: NULL, or what the gateway accepts in a URL path */
static char *
payment_key_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *key;
	size_t		len;

	if (PG_ARGISNULL(argno))
		return NULL;
	key = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	len = strlen(key);
	if (len < 1 || len > 200)
		coupon_error(REASON_INVALID_PAYMENT_KEY, NULL, "payment_key must be 1 to 200 characters");
	if (strncmp(key, GENERATED_KEY_PREFIX, strlen(GENERATED_KEY_PREFIX)) == 0)
		coupon_error(REASON_INVALID_PAYMENT_KEY, NULL,
					 "payment_key must not start with \"" GENERATED_KEY_PREFIX "\", which is kept for the keys pay() makes");
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) key[i];

		if (c <= 0x20 || c >= 0x7f || strchr("/?#%\\\"", c) != NULL)
			coupon_error(REASON_INVALID_PAYMENT_KEY, NULL,
						 "payment_key may hold only visible ASCII characters other than / ? # %% \\ and \"");
	}
	return key;
}

/* coupon.pay(merchant_id, user_id, order_id, amount, coupon_ids, payment_key, idempotency_key) */
Datum
coupon_pay(PG_FUNCTION_ARGS)
{
	int64		merchant_id = arg_int64(fcinfo, 0, "merchant_id");
	char	   *user_id = arg_id_text(fcinfo, 1, "user_id", REASON_INVALID_USER_ID);
	char	   *order_id = arg_id_text(fcinfo, 2, "order_id", REASON_INVALID_ORDER_ID);
	int64		amount = arg_amount(fcinfo, 3, "amount");
	int64	   *coupon_ids;
	int			ncoupons = coupon_ids_arg(fcinfo, 4, &coupon_ids);
	char	   *payment_key = payment_key_arg(fcinfo, 5);
	text	   *key = idem_key_arg(fcinfo, 6);
	IdemRequest idem;
	bool		exists;
	int64		payment_id;
	int64		discount;
	Datum		args[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum	   *elems;
	Datum		result;
	const char *state;

	/* only the merchant's side creates its payments: no one else claims its orders */
	tenant_check(merchant_id);
	call_begin(CALL_VOLATILE);
	if (!fetch_merchant_active(merchant_id, FETCH_READ, &exists))
	{
		if (!exists)
			coupon_error(REASON_MERCHANT_NOT_FOUND, json_id("merchant_id", merchant_id),
						 "merchant %lld does not exist", (long long) merchant_id);
		coupon_error(REASON_MERCHANT_INACTIVE, json_id("merchant_id", merchant_id),
					 "merchant %lld is suspended", (long long) merchant_id);
	}
	if (key != NULL)
	{
		StringInfoData sig;
		Datum		replay;

		initStringInfo(&sig);
		appendStringInfo(&sig, "pay|%lld|%s|%s|%lld|%s|", (long long) merchant_id, user_id,
						 order_id, (long long) amount, payment_key ? payment_key : "");
		for (int i = 0; i < ncoupons; i++)
			appendStringInfo(&sig, "%lld,", (long long) coupon_ids[i]);
		replay = idem_begin(&idem, merchant_id, key, sig.data);
		if (replay != (Datum) 0)
		{
			/* the same request again: the same payment, as it is now */
			spi_run(&replay_plan, &replay, NULL, true, 1);
			result = spi_result_row(fcinfo);
			call_end(CALL_VOLATILE);
			PG_RETURN_DATUM(tenant_payment_shown(result));
		}
	}

	hold_lock_order(merchant_id, order_id);
	args[0] = Int64GetDatum(merchant_id);
	args[1] = CStringGetTextDatum(order_id);
	if (spi_run(&order_taken_plan, args, NULL, false, 1) > 0)
		coupon_error(REASON_DUPLICATE_ORDER,
					 json_join(json_id("merchant_id", merchant_id),
							  json_id("payment_id", spi_int64(0, 1, NULL))),
					 "order \"%s\" of merchant %lld is already paid or being paid",
					 order_id, (long long) merchant_id);

	if (payment_key)
		refuse_taken_key(payment_key);

	spi_run(&next_id_plan, NULL, NULL, false, 1);
	payment_id = spi_int64(0, 1, NULL);
	discount = reserve_for_payment(payment_id, merchant_id, user_id, order_id, amount,
								   ncoupons, coupon_ids);

	/* nothing left to charge: no gateway call, the saga just spends the coupons */
	state = (amount - discount == 0) ? "approved" : "pending";
	elems = palloc(sizeof(Datum) * Max(ncoupons, 1));
	for (int i = 0; i < ncoupons; i++)
		elems[i] = Int64GetDatum(coupon_ids[i]);
	args[0] = Int64GetDatum(payment_id);
	args[1] = Int64GetDatum(merchant_id);
	args[2] = CStringGetTextDatum(user_id);
	args[3] = CStringGetTextDatum(order_id);
	args[4] = Int64GetDatum(amount);
	args[5] = Int64GetDatum(discount);
	args[6] = PointerGetDatum(construct_array(elems, ncoupons, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[7] = CStringGetTextDatum(payment_key ? payment_key : generated_payment_key());
	args[8] = CStringGetTextDatum(state);
	args[9] = CStringGetTextDatum(coupon_trace_id[0] != '\0' ? coupon_trace_id : coupon_random_hex("", 16));
	spi_run(&insert_plan, args, nulls, false, 1);
	result = spi_result_row(fcinfo);
	if (key != NULL)
		idem_finish(&idem, result);

	args[1] = CStringGetTextDatum("created");
	args[2] = CStringGetTextDatum(state);
	spi_run(&created_event_plan, args, NULL, false, 0);
	call_end(CALL_VOLATILE);

	saga_wake_at_commit();
	PG_RETURN_DATUM(tenant_payment_shown(result));
}

/* lock a payment for a state change and check the caller may touch it */
static void
lock_payment(int64 payment_id)
{
	Datum		arg = Int64GetDatum(payment_id);

	/* tenancy first, without a lock, so a stranger cannot even wait on it */
	if (spi_run(&owner_plan, &arg, NULL, true, 1) == 0)
		payment_not_found(payment_id);
	tenant_check(spi_int64(0, 1, NULL));
	if (spi_run(&lock_plan, &arg, NULL, false, 1) == 0)
		payment_not_found(payment_id);
}

/* coupon.cancel_payment(payment_id, reason, amount, idempotency_key) */
Datum
coupon_cancel_payment(PG_FUNCTION_ARGS)
{
	int64		payment_id = arg_int64(fcinfo, 0, "payment_id");
	char	   *reason = "customer request";
	bool		full = PG_ARGISNULL(2);
	int64		amount = full ? 0 : arg_amount(fcinfo, 2, "amount");
	text	   *key = idem_key_arg(fcinfo, 3);
	IdemRequest idem;
	PayState	state;
	int64		charge,
				approved,
				refunded,
				refundable;
	bool		pending_refund;
	Datum		args[4];
	Datum		result;
	const char *next;

	if (!PG_ARGISNULL(1))
	{
		reason = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (strlen(reason) < 1 || pg_mbstrlen(reason) > 200)
			coupon_error(REASON_INVALID_REASON, NULL, "reason must be 1 to 200 characters");
	}
	if (!full && amount == 0)
		coupon_error(REASON_INVALID_AMOUNT, NULL, "a refund amount must be positive");

	call_begin(CALL_VOLATILE);
	lock_payment(payment_id);
	if (key != NULL)
	{
		Datum		replay;

		replay = idem_begin(&idem, spi_int64(0, 1, NULL), key,
							psprintf("cancel_payment|%lld|%s|%lld", (long long) payment_id,
									 reason, (long long) (full ? -1 : amount)));
		if (replay != (Datum) 0)
		{
			spi_run(&replay_plan, &replay, NULL, true, 1);
			result = spi_result_row(fcinfo);
			call_end(CALL_VOLATILE);
			PG_RETURN_DATUM(tenant_payment_shown(result));
		}
		lock_payment(payment_id);	/* idem_begin ran its own statements */
	}

	if (!pay_state_from_name(spi_text(0, 2), &state))
		elog(ERROR, "payment %lld has an unknown state", (long long) payment_id);
	charge = spi_int64(0, 3, NULL);
	approved = spi_int64(0, 4, NULL);
	refunded = spi_int64(0, 5, NULL);
	pending_refund = !spi_isnull(0, 6);

	args[0] = Int64GetDatum(payment_id);
	args[1] = CStringGetTextDatum(reason);
	if (state == PAY_APPROVED && charge == 0)
	{
		/* nothing to charge, so nothing was sent: give the coupons back */
		spi_run(&fail_now_plan, args, NULL, false, 1);
		result = spi_result_row(fcinfo);
		reserve_release_holds(payment_id);
		next = "failed";
	}
	else if (state == PAY_COMPLETED && approved == 0)
	{
		/* the coupons paid it all: nothing to refund at the gateway */
		if (!full)
			coupon_error(REASON_INVALID_AMOUNT, json_id("payment_id", payment_id),
						 "payment %lld charged nothing, so only a full cancel applies",
						 (long long) payment_id);
		spi_run(&refund_now_plan, args, NULL, false, 1);
		result = spi_result_row(fcinfo);
		reserve_restore_holds(payment_id);
		next = "refunded";
	}
	else if (state == PAY_COMPLETED || state == PAY_PARTIALLY_REFUNDED ||
			 (!pending_refund && (state == PAY_PENDING || state == PAY_AUTHORIZING ||
								  state == PAY_APPROVED)))
	{
		bool		now = (state == PAY_COMPLETED || state == PAY_PARTIALLY_REFUNDED);

		/* before approval, what can be refunded later is the whole charge */
		refundable = now ? approved - refunded : charge;
		if (refundable <= 0)
			coupon_error(REASON_PAYMENT_NOT_CANCELABLE, json_id("payment_id", payment_id),
						 "payment %lld has nothing left to refund", (long long) payment_id);
		if (!full && amount > refundable)
			coupon_error(REASON_INVALID_AMOUNT, json_id("payment_id", payment_id),
						 "the refund of %lld exceeds the %lld left on payment %lld",
						 (long long) amount, (long long) refundable, (long long) payment_id);
		next = now ? "refunding" : pay_state_name(state);
		args[1] = CStringGetTextDatum(next);
		args[2] = Int64GetDatum(full ? refundable : amount);
		args[3] = CStringGetTextDatum(reason);
		spi_run(&request_refund_plan, args, NULL, false, 1);
		result = spi_result_row(fcinfo);
	}
	else
		coupon_error(REASON_PAYMENT_NOT_CANCELABLE, json_id("payment_id", payment_id),
					 "payment %lld is %s and cannot be cancelled now",
					 (long long) payment_id, pay_state_name(state));

	if (key != NULL)
		idem_finish(&idem, result);
	args[1] = CStringGetTextDatum(strcmp(next, pay_state_name(state)) == 0
								  ? "cancel_requested" : "cancel");
	args[2] = CStringGetTextDatum(pay_state_name(state));
	args[3] = CStringGetTextDatum(next);
	{
		Datum		ev[5] = {args[0], args[1], args[2], args[3], CStringGetTextDatum(reason)};

		spi_run(&state_event_plan, ev, NULL, false, 0);
	}
	call_end(CALL_VOLATILE);
	saga_wake_at_commit();
	PG_RETURN_DATUM(tenant_payment_shown(result));
}

/* coupon.payment_status(payment_id, events) */
Datum
coupon_payment_status(PG_FUNCTION_ARGS)
{
	int64		payment_id = arg_int64(fcinfo, 0, "payment_id");
	int32		events = arg_int32_range(fcinfo, 1, "events", 0, 1000, REASON_INVALID_MAX_ROWS);
	Datum		args[3];
	Datum		result;
	bool		isnull;

	/* STABLE: the statement's snapshot; its SQL runs read-only */
	call_begin(CALL_STABLE);
	SPI_connect();
	args[0] = Int64GetDatum(payment_id);
	if (spi_run(&owner_plan, args, NULL, true, 1) == 0)
		payment_not_found(payment_id);
	tenant_check_for(spi_int64(0, 1, NULL), spi_text(0, 2));
	args[1] = Int32GetDatum(events);
	args[2] = BoolGetDatum(caller_kind() != CALLER_TRUSTED);	/* a web role */
	spi_run(&status_plan, args, NULL, true, 1);
	result = SPI_datumTransfer(spi_datum(0, 1, &isnull), false, -1);
	SPI_finish();
	call_end(CALL_STABLE);
	PG_RETURN_DATUM(result);
}

/* coupon.retry_payment(payment_id) */
Datum
coupon_retry_payment(PG_FUNCTION_ARGS)
{
	int64		payment_id = arg_int64(fcinfo, 0, "payment_id");
	Datum		args[5];
	Datum		result;
	PayState	state;

	call_begin(CALL_VOLATILE);
	lock_payment(payment_id);
	if (!pay_state_from_name(spi_text(0, 2), &state))
		elog(ERROR, "payment %lld has an unknown state", (long long) payment_id);
	if (state != PAY_NEEDS_ATTENTION)
	{
		if (!pay_state_live(state))
			coupon_error(REASON_PAYMENT_NOT_RETRYABLE, json_id("payment_id", payment_id),
						 "payment %lld is %s, not waiting for a retry",
						 (long long) payment_id, pay_state_name(state));
		/* still moving: returned unchanged */
		args[0] = Int64GetDatum(payment_id);
		spi_run(&get_plan, args, NULL, true, 1);
		result = spi_result_row(fcinfo);
		call_end(CALL_VOLATILE);
		PG_RETURN_DATUM(tenant_payment_shown(result));
	}
	args[0] = Int64GetDatum(payment_id);
	spi_run(&retry_plan, args, NULL, false, 1);
	result = spi_result_row(fcinfo);
	args[1] = CStringGetTextDatum("retry");
	args[2] = CStringGetTextDatum("needs_attention");
	args[3] = CStringGetTextDatum(spi_text(0, SPI_fnumber(SPI_tuptable->tupdesc, "state")));
	args[4] = CStringGetTextDatum(psprintf("retried by %s", GetUserNameFromId(GetOuterUserId(), false)));
	spi_run(&state_event_plan, args, NULL, false, 0);
	call_end(CALL_VOLATILE);
	saga_wake_at_commit();
	PG_RETURN_DATUM(tenant_payment_shown(result));
}

/*
 * coupon.process_payments(max_rows): the worker's steps in this backend.
 * Claims, calls and records inside the caller's transaction; every call is
 * idempotent, so a rollback only means the next run repeats it.
 */
Datum
coupon_process_payments(PG_FUNCTION_ARGS)
{
	int32		max_rows = arg_int32_range(fcinfo, 0, "max_rows", 1, 100000,
										   REASON_INVALID_MAX_ROWS);
	SagaRunner	runner;
	volatile int steps = 0;
	long		next_due;

	memset(&runner, 0, sizeof(runner));
	runner.actor = "backend";
	runner.call_cxt = CurrentMemoryContext;
	/* without coupon.gateway_url only the local steps run */
	if (coupon_gateway_url[0] != '\0')
		runner.gw = gateway_open(coupon_gateway_url, coupon_gateway_secret,
								 coupon_gateway_timeout_ms);
	PG_TRY();
	{
		call_begin(CALL_VOLATILE);
		while (steps < max_rows)
		{
			int			batch = Min(max_rows - steps, coupon_max_inflight);
			int			claimed = saga_claim(&runner, batch, &next_due);

			saga_start_queued(&runner);

			while (runner.gw != NULL && gateway_in_flight(runner.gw) > 0)
			{
				CHECK_FOR_INTERRUPTS();
				if (gateway_wait(runner.gw, 1000, PG_WAIT_EXTENSION))
					ResetLatch(MyLatch);
				while (gateway_has_done(runner.gw))
					saga_record(&runner);
			}
			steps += claimed;
			if (claimed < batch)
				break;
		}
		call_end(CALL_VOLATILE);
	}
	PG_FINALLY();
	{
		if (runner.gw != NULL)
			gateway_close(runner.gw);
	}
	PG_END_TRY();
	PG_RETURN_INT32(steps);
}

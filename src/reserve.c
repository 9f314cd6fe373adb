/*
 * reserve.c
 *		coupon.validate, reserve, confirm, release, expire_reservations and
 *		expire_coupons: the checkout's use of a coupon, one hold at a time.
 *		The hold itself (reading, locking, making, spending, undoing) is
 *		hold.c's; holds owned by a payment are payment_hold.c's.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "callctx.h"
#include "coupon.h"
#include "error.h"
#include "fetch.h"
#include "hold.h"
#include "spi_util.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(coupon_validate);
PG_FUNCTION_INFO_V1(coupon_reserve);
PG_FUNCTION_INFO_V1(coupon_confirm);
PG_FUNCTION_INFO_V1(coupon_release);
PG_FUNCTION_INFO_V1(coupon_expire_reservations);
PG_FUNCTION_INFO_V1(coupon_expire_coupons);

#define MAX_TTL_SECONDS (7 * 24 * 3600)

/* what reserve() compares of a coupon's live hold with a new request */
static const char *const held_cols[] = {
	"id", "status", "merchant_id", "order_id", "order_amount", "user_id"
};

/* the other coupons already held or spent for the same order, and how many for another amount */
static SavedPlan order_plan = {
	.sql = "SELECT coalesce(sum(discount), 0)::bigint, array_agg(coupon_id),"
	"       count(*) FILTER (WHERE order_amount <> $4)"
	"  FROM coupon.reservation"
	" WHERE merchant_id = $1 AND order_id = $2 AND coupon_id <> $3"
	"   AND status IN ('held', 'confirmed')",
	.nargs = 4,
	.argtypes = {INT8OID, TEXTOID, INT8OID, INT8OID}
};

/* how many of these coupons are not stackable */
static SavedPlan non_stackable_plan = {
	.sql = "SELECT count(*) FROM coupon.coupon c JOIN coupon.policy p ON p.id = c.policy_id"
	" WHERE c.id = ANY ($1) AND NOT p.stackable",
	.nargs = 1,
	.argtypes = {INT8ARRAYOID}
};

static SavedPlan get_reservation_plan = {
	.sql = "SELECT * FROM coupon.reservation WHERE id = $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan due_reservations_plan = {
	.sql = "SELECT id FROM coupon.reservation"
	" WHERE status = 'held' AND expires_at <= now() AND payment_id IS NULL"
	" ORDER BY expires_at LIMIT $1",
	.nargs = 1,
	.argtypes = {INT4OID}
};

static SavedPlan expire_coupons_plan = {
	.sql = "WITH due AS (SELECT id FROM coupon.coupon"
	"              WHERE status = 'issued' AND expires_at <= now()"
	"                AND expires_at > now() - $2 * interval '1 day'"
	"              ORDER BY expires_at LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED)"
	" UPDATE coupon.coupon c SET status = 'expired', updated_at = now()"
	"   FROM due WHERE c.id = due.id",
	.nargs = 2,
	.argtypes = {INT4OID, INT4OID}
};

/*
 * validate()'s result row type, looked up once per backend (and again if
 * validate() is made anew, as by the 0.6 update, which gave it a named type
 * instead of OUT parameters).
 */
static TupleDesc
validate_result_desc(FunctionCallInfo fcinfo)
{
	static TupleDesc desc = NULL;
	static Oid	desc_fn = InvalidOid;
	TupleDesc	d;
	MemoryContext old;

	if (desc != NULL && desc_fn == fcinfo->flinfo->fn_oid)
		return desc;
	if (get_call_result_type(fcinfo, NULL, &d) != TYPEFUNC_COMPOSITE || d->natts != 3)
		elog(ERROR, "validate must return a row of three columns");
	old = MemoryContextSwitchTo(TopMemoryContext);
	d = BlessTupleDesc(CreateTupleDescCopy(d));
	MemoryContextSwitchTo(old);
	if (desc != NULL)
		FreeTupleDesc(desc);
	desc = d;
	desc_fn = fcinfo->flinfo->fn_oid;
	return desc;
}

/* coupon.validate(coupon_id, user_id, merchant_id, order_amount) */
Datum
coupon_validate(PG_FUNCTION_ARGS)
{
	int64		coupon_id = arg_int64(fcinfo, 0, "coupon_id");
	char	   *user_id = arg_id_text(fcinfo, 1, "user_id", REASON_INVALID_USER_ID);
	int64		merchant_id = arg_int64(fcinfo, 2, "merchant_id");
	int64		order_amount = arg_amount(fcinfo, 3, "order_amount");
	CouponRow	row;
	CouponReason reason;
	int64		discount = 0;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	tenant_check_for(merchant_id, user_id);
	call_begin(CALL_STABLE);
	if (hold_load_coupon(coupon_id, merchant_id, &row, true))
		reason = hold_evaluate(&row, user_id, merchant_id, order_amount, &discount);
	else
		reason = REASON_COUPON_NOT_FOUND;
	call_end(CALL_STABLE);

	values[0] = BoolGetDatum(reason == REASON_NONE);
	values[1] = Int64GetDatum(discount);
	values[2] = CStringGetTextDatum(reason_name(reason));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(validate_result_desc(fcinfo),
													  values, nulls)));
}

/* a hold's lifetime in seconds: the ttl argument or coupon.reservation_ttl */
static int32
ttl_seconds(FunctionCallInfo fcinfo, int argno)
{
	Interval   *ttl;
	int64		usecs;

	if (PG_ARGISNULL(argno))
		return coupon_reservation_ttl;
	ttl = PG_GETARG_INTERVAL_P(argno);
	if (ttl->month != 0 || ttl->day < 0 || ttl->day > 7)
		coupon_error(REASON_INVALID_TTL, NULL, "ttl must be between 1 second and 7 days");
	usecs = ttl->time + (int64) ttl->day * USECS_PER_DAY;
	if (usecs < USECS_PER_SEC || usecs > (int64) MAX_TTL_SECONDS * USECS_PER_SEC)
		coupon_error(REASON_INVALID_TTL, NULL, "ttl must be between 1 second and 7 days");
	return (int32) (usecs / USECS_PER_SEC);
}

/*
 * Several coupons on one order follow the stacking rules: at most one of
 * them non-stackable, and their discounts together never above the order
 * amount.  Returns the discount this coupon may still give.  The caller
 * holds the order's advisory lock, so concurrent holds for one order queue.
 */
static int64
order_stacking(int64 merchant_id, const char *order_id, int64 coupon_id,
			   const CouponRow *row, int64 order_amount, int64 discount)
{
	Datum		args[4];
	int64		others_discount;
	bool		isnull;

	args[0] = Int64GetDatum(merchant_id);
	args[1] = CStringGetTextDatum(order_id);
	args[2] = Int64GetDatum(coupon_id);
	args[3] = Int64GetDatum(order_amount);
	spi_run(&order_plan, args, NULL, false, 1);
	if (spi_isnull(0, 2))
		return discount;		/* the only coupon of the order */
	if (spi_int64(0, 3, NULL) > 0)
		coupon_error(REASON_ORDER_AMOUNT_MISMATCH, json_id("coupon_id", coupon_id),
					 "order \"%s\" already holds coupons for another order amount than %lld",
					 order_id, (long long) order_amount);
	others_discount = spi_int64(0, 1, NULL);
	args[0] = spi_datum(0, 2, &isnull);
	spi_run(&non_stackable_plan, args, NULL, false, 1);
	if (spi_int64(0, 1, NULL) + (row->facts.stackable ? 0 : 1) > 1)
		coupon_error(REASON_NOT_STACKABLE, json_id("coupon_id", coupon_id),
					 "coupon %lld cannot be combined with the coupons already on order \"%s\"",
					 (long long) coupon_id, order_id);
	return Max(0, Min(discount, order_amount - others_discount));
}

/* the reservation row as the function's result */
static Datum
reservation_result(FunctionCallInfo fcinfo, int64 reservation_id)
{
	Datum		arg = Int64GetDatum(reservation_id);

	spi_run(&get_reservation_plan, &arg, NULL, false, 1);
	return spi_result_row(fcinfo);
}

/* coupon.reserve(coupon_id, user_id, merchant_id, order_id, order_amount, ttl) */
Datum
coupon_reserve(PG_FUNCTION_ARGS)
{
	int64		coupon_id = arg_int64(fcinfo, 0, "coupon_id");
	char	   *user_id = arg_id_text(fcinfo, 1, "user_id", REASON_INVALID_USER_ID);
	int64		merchant_id = arg_int64(fcinfo, 2, "merchant_id");
	char	   *order_id = arg_id_text(fcinfo, 3, "order_id", REASON_INVALID_ORDER_ID);
	int64		order_amount = arg_amount(fcinfo, 4, "order_amount");
	int32		ttl = ttl_seconds(fcinfo, 5);
	CouponRow	row;
	CouponReason reason;
	int64		discount;
	Datum		held[lengthof(held_cols)];
	bool		held_null[lengthof(held_cols)];
	Datum		result;

	tenant_check(merchant_id);
	call_begin(CALL_VOLATILE);
	if (!hold_load_coupon(coupon_id, merchant_id, &row, false))
		hold_raise_unusable(REASON_COUPON_NOT_FOUND, coupon_id, merchant_id);

	hold_lock_order(merchant_id, order_id);

	hold_lock_and_refresh(&row, coupon_id);

	/*
	 * The same order asking again (a retried request) gets the same hold.
	 * The hold is found in C through reservation_one_hold_idx: as SQL, the
	 * generic plan preferred a full scan of reservation_expiry_idx, whose
	 * statistics say it is empty while its dead entries pile up.
	 */
	if (row.facts.status == COUPON_RESERVED &&
		fetch_columns_how(FETCH_HELD_RESERVATION, coupon_id, FETCH_READ, lengthof(held_cols),
						  held_cols, held, held_null) == FETCH_FOUND &&
		strcmp(TextDatumGetCString(held[1]), "held") == 0 &&
		DatumGetInt64(held[2]) == merchant_id &&
		strcmp(TextDatumGetCString(held[3]), order_id) == 0 &&
		DatumGetInt64(held[4]) == order_amount &&
		strcmp(TextDatumGetCString(held[5]), user_id) == 0)
	{
		result = reservation_result(fcinfo, DatumGetInt64(held[0]));
		call_end(CALL_VOLATILE);
		PG_RETURN_DATUM(result);
	}

	reason = hold_evaluate(&row, user_id, merchant_id, order_amount, &discount);
	if (reason != REASON_NONE)
		hold_raise_unusable(reason, coupon_id, merchant_id);

	/* the order has other coupons: the stacking rules decide the discount */
	if (fetch_order_has_other(merchant_id, order_id, coupon_id))
		discount = order_stacking(merchant_id, order_id, coupon_id, &row, order_amount,
								  discount);
	result = hold_make(&row, coupon_id, merchant_id, user_id, order_id, order_amount,
					   discount, ttl, 0);
	result = SPI_datumTransfer(result, false, -1);
	call_end(CALL_VOLATILE);
	PG_RETURN_DATUM(result);
}

/*
 * A hold a payment owns is the saga's alone: confirming or releasing it by
 * hand would leave the payment and its coupons disagreeing.  The owner is
 * written with the hold and never changes, so no lock is needed to read it.
 */
static void
refuse_payment_hold(int64 reservation_id, bool payment_null, Datum payment_id)
{
	if (payment_null)
		return;
	coupon_error(REASON_HOLD_OWNED_BY_PAYMENT,
				 json_join(json_id("reservation_id", reservation_id),
						   json_id("payment_id", DatumGetInt64(payment_id))),
				 "reservation %lld belongs to payment %lld and can only be settled by it",
				 (long long) reservation_id, (long long) DatumGetInt64(payment_id));
}

/* coupon.confirm(reservation_id) */
Datum
coupon_confirm(PG_FUNCTION_ARGS)
{
	static const char *const owner_cols[] = {"coupon_id", "merchant_id", "payment_id"};
	int64		reservation_id = arg_int64(fcinfo, 0, "reservation_id");
	char	   *ids = json_id("reservation_id", reservation_id);
	Datum		owner[lengthof(owner_cols)];
	bool		owner_null[lengthof(owner_cols)];
	Datum		result;
	char	   *status;

	call_begin(CALL_VOLATILE);
	if (fetch_columns_how(FETCH_RESERVATION, reservation_id, FETCH_READ, lengthof(owner_cols),
						  owner_cols, owner, owner_null) != FETCH_FOUND)
		hold_not_found(reservation_id);
	tenant_check(DatumGetInt64(owner[1]));
	refuse_payment_hold(reservation_id, owner_null[2], owner[2]);

	result = hold_spend(reservation_id, DatumGetInt64(owner[0]), &status);
	if (result != (Datum) 0)
	{
		result = SPI_datumTransfer(result, false, -1);
		call_end(CALL_VOLATILE);
		PG_RETURN_DATUM(result);
	}

	/* not a live hold: say why, or repeat a confirmation */
	if (strcmp(status, "released") == 0)
		coupon_error(REASON_RESERVATION_RELEASED, ids,
					 "reservation %lld was released", (long long) reservation_id);
	if (strcmp(status, "confirmed") != 0)
		coupon_error(REASON_RESERVATION_EXPIRED, ids,
					 "reservation %lld has expired", (long long) reservation_id);
	result = reservation_result(fcinfo, reservation_id);
	call_end(CALL_VOLATILE);
	PG_RETURN_DATUM(result);
}

/* coupon.release(reservation_id) */
Datum
coupon_release(PG_FUNCTION_ARGS)
{
	static const char *const owner_cols[] = {"merchant_id", "payment_id"};
	int64		reservation_id = arg_int64(fcinfo, 0, "reservation_id");
	Datum		owner[lengthof(owner_cols)];
	bool		owner_null[lengthof(owner_cols)];
	Datum		result;

	call_begin(CALL_VOLATILE);
	if (fetch_columns_how(FETCH_RESERVATION, reservation_id, FETCH_READ, lengthof(owner_cols),
						  owner_cols, owner, owner_null) != FETCH_FOUND)
		hold_not_found(reservation_id);
	tenant_check(DatumGetInt64(owner[0]));
	refuse_payment_hold(reservation_id, owner_null[1], owner[1]);
	if (hold_undo(reservation_id, false))
		result = spi_result_row(fcinfo);
	else
		result = reservation_result(fcinfo, reservation_id);
	call_end(CALL_VOLATILE);
	PG_RETURN_DATUM(result);
}

/* coupon.expire_reservations(max_rows): release lapsed holds */
Datum
coupon_expire_reservations(PG_FUNCTION_ARGS)
{
	int32		max_rows = arg_int32_range(fcinfo, 0, "max_rows", 1, 1000000,
										   REASON_INVALID_MAX_ROWS);
	Datum		arg = Int32GetDatum(max_rows);
	uint64		n;
	int64	   *ids;
	int32		expired = 0;

	call_begin(CALL_VOLATILE);
	n = spi_run(&due_reservations_plan, &arg, NULL, false, max_rows);
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
		ids[i] = spi_int64(i, 1, NULL);
	for (uint64 i = 0; i < n; i++)
		if (hold_undo(ids[i], true))
			expired++;
	call_end(CALL_VOLATILE);
	PG_RETURN_INT32(expired);
}

/*
 * coupon.expire_coupons(max_rows): mark issued coupons past expires_at.
 * Only the last coupon.expire_lookback days are looked at, so a sweep never
 * rescans the coupons that expired or were used long ago (the expiry index
 * leaves status out, to keep status changes HOT).  Whether a coupon may be
 * used is always decided from expires_at itself, never from this mark.
 */
Datum
coupon_expire_coupons(PG_FUNCTION_ARGS)
{
	int32		max_rows = arg_int32_range(fcinfo, 0, "max_rows", 1, 10000000,
										   REASON_INVALID_MAX_ROWS);
	Datum		args[2];
	uint64		n;

	args[0] = Int32GetDatum(max_rows);
	args[1] = Int32GetDatum(coupon_expire_lookback);
	call_begin(CALL_VOLATILE);
	n = spi_run(&expire_coupons_plan, args, NULL, false, 0);
	call_end(CALL_VOLATILE);
	PG_RETURN_INT32((int32) n);
}

/*
 * reserve.c
 *		coupon.validate, reserve, confirm, release, expire_reservations and
 *		expire_coupons: using a coupon.
 *
 * Lock order everywhere: policy (only when it has a budget) -> coupon ->
 * reservation.  A coupon's use is decided under its row lock, and every
 * undo path takes the same locks in the same order.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

#include "callctx.h"
#include "coupon.h"
#include "discount.h"
#include "error.h"
#include "factcache.h"
#include "fetch.h"
#include "reserve.h"
#include "rowwrite.h"
#include "spi_util.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(coupon_validate);
PG_FUNCTION_INFO_V1(coupon_reserve);
PG_FUNCTION_INFO_V1(coupon_confirm);
PG_FUNCTION_INFO_V1(coupon_release);
PG_FUNCTION_INFO_V1(coupon_expire_reservations);
PG_FUNCTION_INFO_V1(coupon_expire_coupons);

#define MAX_TTL_SECONDS (7 * 24 * 3600)

/*
 * Row locks of the global order are taken in C (fetch.c), FOR NO KEY
 * UPDATE: we never change keys, so inserts whose foreign keys point at
 * these rows are not held up.  What each lock reads of the locked version:
 */
static const char *const policy_lock_cols[] = {"budget_used", "status"};
static const char *const coupon_lock_cols[] = {"status", "balance", "expires_at"};
static const char *const reservation_lock_cols[] = {"status", "expires_at", "payment_id"};

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

/* the columns a hold sets; the id comes from its identity sequence */
static const char *const hold_cols[] = {
	"coupon_id", "merchant_id", "user_id", "order_id", "payment_id", "order_amount",
	"discount", "status", "expires_at", "created_at", "updated_at"
};
static const char *const coupon_reserve_cols[] = {"status", "updated_at"};
static const char *const policy_budget_cols[] = {"budget_used"};

/* what confirming a hold reads under its locks, and what it writes */
static const char *const spend_coupon_lock_cols[] = {"balance"};
static const char *const spend_hold_lock_cols[] = {"status", "expires_at", "payment_id", "discount"};
static const char *const spend_hold_cols[] = {"status", "updated_at"};
static const char *const spend_coupon_cols[] = {"balance", "status", "used_at", "updated_at"};

/* a reservation with what its undo needs, read without locks */
static SavedPlan reservation_plan = {
	.sql = "SELECT r.coupon_id, r.merchant_id, c.policy_id, p.budget IS NOT NULL"
	"  FROM coupon.reservation r"
	"  JOIN coupon.coupon c ON c.id = r.coupon_id"
	"  JOIN coupon.policy p ON p.id = c.policy_id"
	" WHERE r.id = $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan get_reservation_plan = {
	.sql = "SELECT * FROM coupon.reservation WHERE id = $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan undo_plan = {
	.sql = "WITH r AS (UPDATE coupon.reservation SET status = $2, updated_at = now()"
	"            WHERE id = $1 RETURNING *),"
	"     c AS (UPDATE coupon.coupon c SET updated_at = now(),"
	"                  status = CASE WHEN c.expires_at <= now()"
	"                                THEN 'expired' ELSE 'issued' END"
	"             FROM r WHERE c.id = r.coupon_id AND c.status = 'reserved'),"
	"     p AS (UPDATE coupon.policy p SET budget_used = p.budget_used - r.discount"
	"             FROM r WHERE p.id = $3)"
	" SELECT * FROM r",
	.nargs = 3,
	.argtypes = {INT8OID, TEXTOID, INT8OID}
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

/* what reserve and validate learn of a coupon */
typedef struct CouponRow
{
	int64		policy_id;
	char	   *user_id;
	CouponFacts facts;
	ItemPointerData coupon_tid; /* the version lock_and_refresh() locked */
} CouponRow;

/* the status column of a fetched row, parsed; an unknown name is corruption */
static CouponStatus
coupon_status_datum(Datum d)
{
	CouponStatus s;
	char	   *name = TextDatumGetCString(d);

	if (!coupon_status_from_name(name, &s))
		elog(ERROR, "unknown coupon status \"%s\"", name);
	return s;
}

/* *f as read from the policy under `how`, the rest zero; false if there is none */
static bool
read_policy(int64 policy_id, FetchHow how, CouponFacts *f)
{
	static const char *const cols[] = {
		"merchant_id", "status", "discount_type", "discount_value", "max_discount",
		"min_order_amount", "valid_from", "allowed_merchants", "budget",
		"budget_used", "stackable"
	};
	Datum		p[lengthof(cols)];
	bool		pn[lengthof(cols)];
	char	   *s;

	if (fetch_columns_how(FETCH_POLICY, policy_id, how, lengthof(cols), cols, p, pn) != FETCH_FOUND)
		return false;
	memset(f, 0, sizeof(*f));
	f->issuer_id = DatumGetInt64(p[0]);
	s = TextDatumGetCString(p[1]);
	if (!policy_status_from_name(s, &f->policy_status))
		elog(ERROR, "unknown policy status \"%s\"", s);
	s = TextDatumGetCString(p[2]);
	if (!discount_type_from_name(s, &f->type))
		elog(ERROR, "unknown discount type \"%s\"", s);
	f->value = DatumGetInt64(p[3]);
	f->has_max_discount = !pn[4];
	f->max_discount = pn[4] ? 0 : DatumGetInt64(p[4]);
	f->min_order_amount = DatumGetInt64(p[5]);
	f->has_valid_from = !pn[6];
	f->valid_from = pn[6] ? 0 : DatumGetTimestampTz(p[6]);
	if (!pn[7])
	{
		Datum	   *elems;
		bool	   *enulls;
		int64	   *ids;

		deconstruct_array(DatumGetArrayTypeP(p[7]), INT8OID, 8, FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &elems, &enulls, &f->n_allowed);
		ids = palloc(sizeof(int64) * Max(f->n_allowed, 1));
		for (int i = 0; i < f->n_allowed; i++)
			ids[i] = DatumGetInt64(elems[i]);
		f->allowed = (const int64_t *) ids;
	}
	f->has_budget = !pn[8];
	f->budget = pn[8] ? 0 : DatumGetInt64(p[8]);
	f->budget_used = DatumGetInt64(p[9]);
	f->stackable = DatumGetBool(p[10]);
	return true;
}

/* *f as read from the policy (the rest zero); from the copies when `cached` */
static void
load_policy(int64 policy_id, int64 coupon_id, bool cached, CouponFacts *f)
{
	if (cached && factcache_get_policy(policy_id, f))
		return;
	if (!read_policy(policy_id, cached ? FETCH_NEWEST : FETCH_READ, f))
		elog(ERROR, "policy %lld of coupon %lld is missing",
			 (long long) policy_id, (long long) coupon_id);
	if (cached)
		factcache_put_policy(policy_id, f);
}

/* is the merchant active (and does it exist)? from the copies when `cached` */
static bool
load_merchant(int64 merchant_id, bool cached, bool *exists)
{
	bool		active;

	*exists = true;
	if (cached && factcache_get_merchant(merchant_id, &active))
		return active;
	active = fetch_merchant_active(merchant_id, cached ? FETCH_NEWEST : FETCH_READ, exists);
	if (cached && *exists)
		factcache_put_merchant(merchant_id, active);
	return active;
}

/*
 * Read the coupon, its policy and both merchants, by primary key and
 * without locks, into a CouponRow for use at merchant_id; false if the
 * coupon does not exist.  validate() passes may_cache: the policy and the
 * merchants may then come from its copies (factcache.c); a checkout reads
 * them under its snapshot.
 */
static bool
load_coupon(int64 coupon_id, int64 merchant_id, CouponRow *row, bool may_cache)
{
	static const char *const ccols[] = {
		"policy_id", "user_id", "status", "balance", "expires_at"
	};
	Datum		c[lengthof(ccols)];
	bool		cn[lengthof(ccols)];
	CouponFacts *f = &row->facts;
	bool		cached;
	bool		exists;

	if (!fetch_columns(FETCH_COUPON, coupon_id, lengthof(ccols), ccols, c, cn))
		return false;
	/* after the coupon's table was opened, which applied invalidations */
	cached = may_cache && factcache_open();

	row->policy_id = DatumGetInt64(c[0]);
	load_policy(row->policy_id, coupon_id, cached, f);
	row->user_id = cn[1] ? NULL : TextDatumGetCString(c[1]);
	f->status = coupon_status_datum(c[2]);
	f->balance = cn[3] ? 0 : DatumGetInt64(c[3]);
	f->has_expires_at = !cn[4];
	f->expires_at = cn[4] ? 0 : DatumGetTimestampTz(c[4]);
	f->merchant_active = load_merchant(merchant_id, cached, &f->merchant_exists);
	if (f->issuer_id == merchant_id)
		f->issuer_active = f->merchant_active;	/* the common case: one read */
	else
		f->issuer_active = load_merchant(f->issuer_id, cached, &exists);
	return true;
}

/* the one sentence for a coupon that cannot be used */
static void
raise_unusable(CouponReason reason, int64 coupon_id, int64 merchant_id)
{
	char	   *ids = json_id("coupon_id", coupon_id);
	long long	c = (long long) coupon_id;

	switch (reason)
	{
		case REASON_COUPON_NOT_FOUND:
			coupon_error(reason, ids, "coupon %lld does not exist", c);
			break;
		case REASON_NOT_OWNER:
			coupon_error(reason, ids, "coupon %lld belongs to another user", c);
			break;
		case REASON_POLICY_INACTIVE:
			coupon_error(reason, ids, "the policy of coupon %lld is not active", c);
			break;
		case REASON_COUPON_RESERVED:
			coupon_error(reason, ids, "coupon %lld is held for another order", c);
			break;
		case REASON_COUPON_USED:
			coupon_error(reason, ids, "coupon %lld was already used", c);
			break;
		case REASON_COUPON_CANCELLED:
			coupon_error(reason, ids, "coupon %lld was cancelled", c);
			break;
		case REASON_EXPIRED:
			coupon_error(reason, ids, "coupon %lld has expired", c);
			break;
		case REASON_NOT_YET_VALID:
			coupon_error(reason, ids, "coupon %lld is not valid yet", c);
			break;
		case REASON_MERCHANT_NOT_ALLOWED:
			coupon_error(reason, json_join(ids, json_id("merchant_id", merchant_id)),
						 "coupon %lld cannot be used at merchant %lld", c,
						 (long long) merchant_id);
			break;
		case REASON_MERCHANT_NOT_FOUND:
			coupon_error(reason, json_id("merchant_id", merchant_id),
						 "merchant %lld does not exist", (long long) merchant_id);
			break;
		case REASON_MERCHANT_INACTIVE:
			coupon_error(reason, json_join(ids, json_id("merchant_id", merchant_id)),
						 "coupon %lld cannot be used while its merchant or merchant %lld is suspended",
						 c, (long long) merchant_id);
			break;
		case REASON_MIN_ORDER_AMOUNT:
			coupon_error(reason, ids, "the order amount is below the minimum for coupon %lld", c);
			break;
		case REASON_BUDGET_EXHAUSTED:
			coupon_error(reason, ids, "the discount budget behind coupon %lld is used up", c);
			break;
		default:
			coupon_error(reason, ids, "coupon %lld cannot be used", c);
	}
}

/*
 * Visibility, then ownership, then the engine: a coupon that cannot be
 * spent at merchant_id is answered as one that does not exist, before its
 * owner or state could show.
 */
static CouponReason
evaluate(const CouponRow *row, const char *user_id, int64 merchant_id,
		 int64 order_amount, int64 *discount)
{
	*discount = 0;
	if (row->user_id == NULL || !discount_merchant_allowed(&row->facts, merchant_id))
		return REASON_COUPON_NOT_FOUND; /* an unclaimed code is nobody's coupon */
	if (strcmp(row->user_id, user_id) != 0)
		return REASON_NOT_OWNER;
	return discount_evaluate(&row->facts, merchant_id, order_amount,
							 GetCurrentTransactionStartTimestamp(), discount);
}

/*
 * Lock a policy or coupon row, waiting for it, and read `cols` of the
 * locked version (and where it is, if tid is not NULL); those rows are
 * never deleted, so a missing one is corruption.
 */
static void
lock_existing(FetchTable table, int64 id, int ncols, const char *const *cols,
			  Datum *values, bool *nulls, ItemPointer tid)
{
	if (fetch_row(table, id, FETCH_LOCK, ncols, cols, values, nulls, tid) != FETCH_FOUND)
		elog(ERROR, "row %lld of coupon.%s to lock is missing", (long long) id,
			 table == FETCH_POLICY ? "policy" : "coupon");
}

/* lock a policy row in the global order */
static void
lock_policy(int64 policy_id)
{
	lock_existing(FETCH_POLICY, policy_id, 0, NULL, NULL, NULL, NULL);
}

/* lock a coupon row in the global order */
static void
lock_coupon(int64 coupon_id)
{
	lock_existing(FETCH_COUPON, coupon_id, 0, NULL, NULL, NULL, NULL);
}

/*
 * Lock a coupon (and its policy, when budgeted) in the global order and
 * refresh what may have changed since load_coupon read it without locks.
 */
static void
lock_and_refresh(CouponRow *row, int64 coupon_id)
{
	CouponFacts *f = &row->facts;
	Datum		v[3];
	bool		n[3];

	if (f->has_budget)
	{
		lock_existing(FETCH_POLICY, row->policy_id, lengthof(policy_lock_cols),
					  policy_lock_cols, v, n, NULL);
		f->budget_used = DatumGetInt64(v[0]);
		policy_status_from_name(TextDatumGetCString(v[1]), &f->policy_status);
	}
	lock_existing(FETCH_COUPON, coupon_id, lengthof(coupon_lock_cols), coupon_lock_cols, v, n,
				  &row->coupon_tid);
	f->status = coupon_status_datum(v[0]);
	f->balance = n[1] ? 0 : DatumGetInt64(v[1]);
	f->has_expires_at = !n[2];
	f->expires_at = n[2] ? 0 : DatumGetTimestampTz(v[2]);
}

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
	if (load_coupon(coupon_id, merchant_id, &row, true))
		reason = evaluate(&row, user_id, merchant_id, order_amount, &discount);
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

/*
 * Charge a policy's budget with a hold's discount.  The policy is locked
 * again to find its latest version: the holds of one payment may charge
 * the same policy twice.
 */
static void
charge_budget(int64 policy_id, int64 discount)
{
	ItemPointerData tid;
	Datum		v;
	bool		n;
	int64		used;

	lock_existing(FETCH_POLICY, policy_id, 1, policy_budget_cols, &v, &n, &tid);
	if (pg_add_s64_overflow(DatumGetInt64(v), discount, &used))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the budget used by policy %lld is out of range",
						(long long) policy_id)));
	v = Int64GetDatum(used);
	row_update(FETCH_POLICY, &tid, 1, policy_budget_cols, &v, &n, false);
}

/*
 * Make the hold: the reservation, the coupon reserved and, for a budgeted
 * policy, the discount charged to its budget.  The caller holds the coupon
 * (and policy) locked through lock_and_refresh().  payment_id 0 is a hold
 * without a payment.  Returns the reservation row.
 */
static Datum
make_hold(const CouponRow *row, int64 coupon_id, int64 merchant_id, const char *user_id,
		  const char *order_id, int64 order_amount, int64 discount, int32 ttl,
		  int64 payment_id)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Datum		v[lengthof(hold_cols)];
	bool		n[lengthof(hold_cols)] = {false};
	Datum		hold;

	v[0] = Int64GetDatum(coupon_id);
	v[1] = Int64GetDatum(merchant_id);
	v[2] = CStringGetTextDatum(user_id);
	v[3] = CStringGetTextDatum(order_id);
	v[4] = Int64GetDatum(payment_id);
	n[4] = (payment_id == 0);
	v[5] = Int64GetDatum(order_amount);
	v[6] = Int64GetDatum(discount);
	v[7] = CStringGetTextDatum("held");
	v[8] = TimestampTzGetDatum(now + (int64) ttl * USECS_PER_SEC);
	v[9] = TimestampTzGetDatum(now);
	v[10] = TimestampTzGetDatum(now);
	hold = row_insert(FETCH_RESERVATION, lengthof(hold_cols), hold_cols, v, n);

	v[0] = CStringGetTextDatum("reserved");
	v[1] = TimestampTzGetDatum(now);
	row_update(FETCH_COUPON, (ItemPointer) &row->coupon_tid, lengthof(coupon_reserve_cols),
			   coupon_reserve_cols, v, n, false);
	if (row->facts.has_budget)
		charge_budget(row->policy_id, discount);
	return hold;
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
	if (!load_coupon(coupon_id, merchant_id, &row, false))
		raise_unusable(REASON_COUPON_NOT_FOUND, coupon_id, merchant_id);

	reserve_lock_order(merchant_id, order_id);

	lock_and_refresh(&row, coupon_id);

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

	reason = evaluate(&row, user_id, merchant_id, order_amount, &discount);
	if (reason != REASON_NONE)
		raise_unusable(reason, coupon_id, merchant_id);

	/* the order has other coupons: the stacking rules decide the discount */
	if (fetch_order_has_other(merchant_id, order_id, coupon_id))
		discount = order_stacking(merchant_id, order_id, coupon_id, &row, order_amount,
								  discount);
	result = make_hold(&row, coupon_id, merchant_id, user_id, order_id, order_amount,
					   discount, ttl, 0);
	result = SPI_datumTransfer(result, false, -1);
	call_end(CALL_VOLATILE);
	PG_RETURN_DATUM(result);
}

/* a reservation's coupon and policy, read without locks; false if missing */
static bool
load_reservation(int64 reservation_id, int64 *coupon_id, int64 *merchant_id,
				 int64 *policy_id, bool *budgeted)
{
	Datum		arg = Int64GetDatum(reservation_id);

	if (spi_run(&reservation_plan, &arg, NULL, false, 1) == 0)
		return false;
	*coupon_id = spi_int64(0, 1, NULL);
	*merchant_id = spi_int64(0, 2, NULL);
	*policy_id = spi_int64(0, 3, NULL);
	*budgeted = spi_bool(0, 4);
	return true;
}

/*
 * Take the locks of an existing reservation in the global order; returns
 * its status and whether a hold has lapsed (past expires_at, no payment).
 * With skip_locked, returns NULL as soon as a row is held by another
 * transaction instead of waiting: a sweeper that never waits can never be
 * part of a deadlock, whatever order it meets the rows in.
 */
static char *
lock_reservation(int64 reservation_id, int64 coupon_id, int64 policy_id,
				 bool budgeted, bool skip_locked, bool *lapsed)
{
	FetchHow	how = skip_locked ? FETCH_LOCK_SKIP : FETCH_LOCK;
	Datum		v[lengthof(reservation_lock_cols)];
	bool		n[lengthof(reservation_lock_cols)];

	if (budgeted &&
		fetch_columns_how(FETCH_POLICY, policy_id, how, 0, NULL, NULL, NULL) != FETCH_FOUND)
		return NULL;
	if (fetch_columns_how(FETCH_COUPON, coupon_id, how, 0, NULL, NULL, NULL) != FETCH_FOUND)
		return NULL;
	if (fetch_columns_how(FETCH_RESERVATION, reservation_id, how,
						  lengthof(reservation_lock_cols), reservation_lock_cols,
						  v, n) != FETCH_FOUND)
		return NULL;
	/* now(): the transaction's start, as in SQL */
	*lapsed = DatumGetTimestampTz(v[1]) <= GetCurrentTransactionStartTimestamp() && n[2];
	return TextDatumGetCString(v[0]);
}

/* raise PT404 for a missing reservation */
static void
reservation_not_found(int64 reservation_id)
{
	coupon_error(REASON_RESERVATION_NOT_FOUND, json_id("reservation_id", reservation_id),
				 "reservation %lld does not exist", (long long) reservation_id);
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

/*
 * Spend a live hold: the reservation confirmed, its discount taken off the
 * coupon.  Locks the coupon, then the reservation (the global order), and
 * decides under the locks.  Returns the confirmed row, or 0 with *status
 * set when the hold is not live (not held, or lapsed without a payment).
 */
static Datum
spend_hold(int64 reservation_id, int64 coupon_id, char **status)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	ItemPointerData coupon_tid;
	ItemPointerData hold_tid;
	Datum		cv[1];
	bool		cn[1];
	Datum		hv[lengthof(spend_hold_lock_cols)];
	bool		hn[lengthof(spend_hold_lock_cols)];
	Datum		v[lengthof(spend_coupon_cols)];
	bool		n[lengthof(spend_coupon_cols)] = {false};
	int64		balance;
	Datum		row;

	lock_existing(FETCH_COUPON, coupon_id, 1, spend_coupon_lock_cols, cv, cn, &coupon_tid);
	if (fetch_row(FETCH_RESERVATION, reservation_id, FETCH_LOCK, lengthof(spend_hold_lock_cols),
				  spend_hold_lock_cols, hv, hn, &hold_tid) != FETCH_FOUND)
		reservation_not_found(reservation_id);
	*status = TextDatumGetCString(hv[0]);
	if (strcmp(*status, "held") != 0 || (DatumGetTimestampTz(hv[1]) <= now && hn[2]))
		return (Datum) 0;

	v[0] = CStringGetTextDatum("confirmed");
	v[1] = TimestampTzGetDatum(now);
	row = row_update(FETCH_RESERVATION, &hold_tid, lengthof(spend_hold_cols), spend_hold_cols,
					 v, n, true);

	/* a coupon without a balance is used up by one use */
	n[0] = cn[0];
	balance = 0;
	if (!cn[0] && pg_sub_s64_overflow(DatumGetInt64(cv[0]), DatumGetInt64(hv[3]), &balance))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the balance of coupon %lld is out of range", (long long) coupon_id)));
	v[0] = Int64GetDatum(balance);
	v[1] = CStringGetTextDatum(balance > 0 ? "issued" : "used");
	v[2] = TimestampTzGetDatum(now);
	v[3] = TimestampTzGetDatum(now);
	row_update(FETCH_COUPON, &coupon_tid, lengthof(spend_coupon_cols), spend_coupon_cols,
			   v, n, false);
	return row;
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
		reservation_not_found(reservation_id);
	tenant_check(DatumGetInt64(owner[1]));
	refuse_payment_hold(reservation_id, owner_null[2], owner[2]);

	result = spend_hold(reservation_id, DatumGetInt64(owner[0]), &status);
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

/*
 * Undo a hold: the coupon goes back to its holder and the discount back to
 * the budget.  With `expiring`, only a lapsed hold is touched and it ends as
 * 'expired', and a hold whose rows are busy is skipped.  Returns true if
 * this call changed it.  Inside SPI.
 */
static bool
undo_hold(int64 reservation_id, bool expiring)
{
	int64		coupon_id,
				merchant_id,
				policy_id;
	bool		budgeted,
				lapsed;
	char	   *status;
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};

	if (!load_reservation(reservation_id, &coupon_id, &merchant_id, &policy_id, &budgeted))
		reservation_not_found(reservation_id);
	if (!expiring)
		tenant_check(merchant_id);
	status = lock_reservation(reservation_id, coupon_id, policy_id, budgeted, expiring,
							  &lapsed);
	if (status == NULL)
		return false;			/* busy: the next sweep gets it */
	if (strcmp(status, "confirmed") == 0)
	{
		if (expiring)
			return false;
		coupon_error(REASON_RESERVATION_CONFIRMED, json_id("reservation_id", reservation_id),
					 "reservation %lld was confirmed and cannot be released",
					 (long long) reservation_id);
	}
	if (strcmp(status, "held") != 0 || (expiring && !lapsed))
		return false;

	args[0] = Int64GetDatum(reservation_id);
	args[1] = CStringGetTextDatum(expiring ? "expired" : "released");
	args[2] = Int64GetDatum(policy_id);
	if (!budgeted)
		nulls[2] = 'n';
	spi_run(&undo_plan, args, nulls, false, 1);
	return true;
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
		reservation_not_found(reservation_id);
	tenant_check(DatumGetInt64(owner[0]));
	refuse_payment_hold(reservation_id, owner_null[1], owner[1]);
	if (undo_hold(reservation_id, false))
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
		if (undo_hold(ids[i], true))
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

/* ------------------------------------------------------------------ */
/* holds owned by a payment (payment_funcs.c and the saga)              */
/* ------------------------------------------------------------------ */

/* the payment's holds in a given status, in coupon id order (the lock order) */
static SavedPlan payment_holds_plan = {
	.sql = "SELECT r.id, r.coupon_id, c.policy_id, p.budget IS NOT NULL"
	"  FROM coupon.reservation r"
	"  JOIN coupon.coupon c ON c.id = r.coupon_id"
	"  JOIN coupon.policy p ON p.id = c.policy_id"
	" WHERE r.payment_id = $1 AND r.status = $2"
	" ORDER BY r.coupon_id",
	.nargs = 2,
	.argtypes = {INT8OID, TEXTOID}
};

static SavedPlan payment_holds_idx_plan = {
	.sql = "SELECT 1 FROM coupon.reservation WHERE payment_id = $1 LIMIT 1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

/* give a spent coupon back: its value, its status if still valid, its budget */
static SavedPlan restore_plan = {
	.sql = "WITH r AS (SELECT coupon_id, discount FROM coupon.reservation WHERE id = $1),"
	"     c AS (UPDATE coupon.coupon c"
	"              SET balance = c.balance + r.discount,"
	"                  status = CASE WHEN c.status IN ('used', 'issued')"
	"                                THEN CASE WHEN c.expires_at <= now()"
	"                                          THEN 'expired' ELSE 'issued' END"
	"                                ELSE c.status END,"
	"                  used_at = NULL, updated_at = now()"
	"             FROM r WHERE c.id = r.coupon_id)"
	" UPDATE coupon.policy p SET budget_used = p.budget_used - r.discount"
	"   FROM r WHERE p.id = $2",
	.nargs = 2,
	.argtypes = {INT8OID, INT8OID}
};

/* one hold of a payment, as the payment_holds_plan rows give it */
typedef struct PaymentHold
{
	int64		reservation_id;
	int64		coupon_id;
	int64		policy_id;
	bool		budgeted;
} PaymentHold;

/* serialize everything done for one order, before any row lock */
void
reserve_lock_order(int64 merchant_id, const char *order_id)
{
	call_advisory_lock(COUPON_LOCK_ORDER,
					   (int32) hash_bytes_extended((const unsigned char *) order_id,
												   strlen(order_id), (uint64) merchant_id));
}

/* read the payment's holds in one status into a palloc'd array */
static int
payment_holds(int64 payment_id, const char *status, PaymentHold **holds)
{
	Datum		args[2];
	uint64		n;

	args[0] = Int64GetDatum(payment_id);
	args[1] = CStringGetTextDatum(status);
	n = spi_run(&payment_holds_plan, args, NULL, false, 0);
	*holds = palloc(sizeof(PaymentHold) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		(*holds)[i].reservation_id = spi_int64(i, 1, NULL);
		(*holds)[i].coupon_id = spi_int64(i, 2, NULL);
		(*holds)[i].policy_id = spi_int64(i, 3, NULL);
		(*holds)[i].budgeted = spi_bool(i, 4);
	}
	return (int) n;
}

/* lock each distinct budgeted policy of these holds, ascending (the global order) */
static void
lock_hold_policies(PaymentHold *holds, int n)
{
	int64		last = -1;

	for (;;)
	{
		int64		next = -1;

		for (int i = 0; i < n; i++)
			if (holds[i].budgeted && holds[i].policy_id > last &&
				(next < 0 || holds[i].policy_id < next))
				next = holds[i].policy_id;
		if (next < 0)
			return;
		lock_policy(next);
		last = next;
	}
}

/*
 * Hold every coupon of a new payment (coupon_ids sorted, distinct) and
 * return the order's total discount.  All-or-nothing: any coupon that
 * cannot be used raises its reason.  Inside SPI; the caller holds the
 * order lock.
 */
int64
reserve_for_payment(int64 payment_id, int64 merchant_id, const char *user_id,
					const char *order_id, int64 amount, int n, const int64 *coupon_ids)
{
	CouponRow  *rows;
	StackItem  *items;
	PaymentHold *locks;
	int64		total = 0;
	CouponReason reason;

	if (n == 0)
		return 0;
	rows = palloc(sizeof(CouponRow) * n);
	items = palloc0(sizeof(StackItem) * n);
	locks = palloc0(sizeof(PaymentHold) * n);

	/* a cheap look without locks first: most refusals end here */
	for (int i = 0; i < n; i++)
	{
		int64		discount;

		if (!load_coupon(coupon_ids[i], merchant_id, &rows[i], false))
			raise_unusable(REASON_COUPON_NOT_FOUND, coupon_ids[i], merchant_id);
		reason = evaluate(&rows[i], user_id, merchant_id, amount, &discount);
		if (reason != REASON_NONE)
			raise_unusable(reason, coupon_ids[i], merchant_id);
		locks[i].coupon_id = coupon_ids[i];
		locks[i].policy_id = rows[i].policy_id;
		locks[i].budgeted = rows[i].facts.has_budget;
	}

	/* policies, then coupons, in ascending id order; refresh what may move */
	lock_hold_policies(locks, n);
	for (int i = 0; i < n; i++)
	{
		CouponFacts *f = &rows[i].facts;
		int64		discount;

		lock_and_refresh(&rows[i], coupon_ids[i]);
		reason = evaluate(&rows[i], user_id, merchant_id, amount, &discount);
		if (reason != REASON_NONE)
			raise_unusable(reason, coupon_ids[i], merchant_id);
		items[i].type = f->type;
		items[i].value = f->value;
		items[i].has_max_discount = f->has_max_discount;
		items[i].max_discount = f->max_discount;
		items[i].balance = f->balance;
		items[i].stackable = f->stackable;
	}

	if (discount_stack(items, n, amount, &total) != REASON_NONE)
		coupon_error(REASON_NOT_STACKABLE, json_id("coupon_id", coupon_ids[n - 1]),
					 "at most one coupon of a payment may be non-stackable");

	/* coupons of one budgeted policy share its budget */
	for (int i = 0; i < n; i++)
	{
		int64		sum = 0;

		if (!rows[i].facts.has_budget)
			continue;
		for (int j = 0; j < n; j++)
			if (rows[j].policy_id == rows[i].policy_id)
				sum += items[j].discount;
		if (rows[i].facts.budget_used + sum > rows[i].facts.budget)
			raise_unusable(REASON_BUDGET_EXHAUSTED, coupon_ids[i], merchant_id);
	}

	for (int i = 0; i < n; i++)
		make_hold(&rows[i], coupon_ids[i], merchant_id, user_id, order_id, amount,
				  items[i].discount, coupon_reservation_ttl, payment_id);
	return total;
}

/*
 * Spend every hold of an approved payment, or none: true when all were
 * still held (they are confirmed now), false when one was released behind
 * the payment's back.  Inside SPI.
 */
bool
reserve_spend_holds(int64 payment_id)
{
	PaymentHold *holds;
	int			n;
	Datum		arg = Int64GetDatum(payment_id);
	int			held;

	if (spi_run(&payment_holds_idx_plan, &arg, NULL, false, 1) == 0)
		return true;			/* a payment without coupons */
	n = payment_holds(payment_id, "held", &holds);
	held = n;
	for (int i = 0; i < n; i++)
		lock_coupon(holds[i].coupon_id);
	/* a hold that is no longer held (released by hand) fails the lot */
	n = payment_holds(payment_id, "held", &holds);
	if (n != held || n == 0)
		return false;
	for (int i = 0; i < n; i++)
	{
		char	   *status;

		if (spend_hold(holds[i].reservation_id, holds[i].coupon_id, &status) == (Datum) 0)
			elog(ERROR, "hold %lld of payment %lld vanished under its lock",
				 (long long) holds[i].reservation_id, (long long) payment_id);
	}
	return true;
}

/* give back the coupons of a payment that charged nothing.  Inside SPI. */
void
reserve_release_holds(int64 payment_id)
{
	PaymentHold *holds;
	int			n = payment_holds(payment_id, "held", &holds);

	/* every policy first, ascending, as pay() took them */
	lock_hold_policies(holds, n);
	for (int i = 0; i < n; i++)
		undo_hold(holds[i].reservation_id, false);
}

/*
 * A fully refunded payment gives its coupons back: balance restored, status
 * issued again unless expired (or revoked), budget returned.  Inside SPI;
 * runs once, on the payment's move to refunded.
 */
void
reserve_restore_holds(int64 payment_id)
{
	PaymentHold *holds;
	int			n = payment_holds(payment_id, "confirmed", &holds);

	lock_hold_policies(holds, n);
	for (int i = 0; i < n; i++)
	{
		Datum		args[2];
		char		nulls[2] = {' ', ' '};

		lock_coupon(holds[i].coupon_id);
		args[0] = Int64GetDatum(holds[i].reservation_id);
		args[1] = Int64GetDatum(holds[i].policy_id);
		if (!holds[i].budgeted)
			nulls[1] = 'n';
		spi_run(&restore_plan, args, nulls, false, 0);
	}
}

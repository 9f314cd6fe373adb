/*
 * hold.c
 *		One coupon's hold, as the checkout (reserve.c) and the payments
 *		(payment_hold.c) share it: a coupon read and judged for use at a
 *		merchant, its rows locked in the global order, and a hold made,
 *		spent or undone.
 *
 * Lock order everywhere: policy (only when it has a budget) -> coupon ->
 * reservation.  A coupon's use is decided under its row lock, and every
 * undo path takes the same locks in the same order.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "callctx.h"
#include "coupon.h"
#include "discount.h"
#include "error.h"
#include "factcache.h"
#include "fetch.h"
#include "hold.h"
#include "rowwrite.h"
#include "spi_util.h"
#include "tenant.h"


/*
 * Row locks of the global order are taken in C (fetch.c), FOR NO KEY
 * UPDATE: we never change keys, so inserts whose foreign keys point at
 * these rows are not held up.  What each lock reads of the locked version:
 */
static const char *const policy_lock_cols[] = {"budget_used", "status"};
static const char *const coupon_lock_cols[] = {"status", "balance", "expires_at"};
static const char *const reservation_lock_cols[] = {"status", "expires_at", "payment_id"};

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

/*
 * Read the coupon, its policy and both merchants, by primary key and
 * without locks, into a CouponRow for use at merchant_id; false if the
 * coupon does not exist.  validate() passes may_cache: the policy and the
 * merchants may then come from its copies (factcache.c); a checkout reads
 * them under its snapshot.
 */
bool
hold_load_coupon(int64 coupon_id, int64 merchant_id, CouponRow *row, bool may_cache)
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
	f->merchant_active = factcache_load_merchant(merchant_id, cached, &f->merchant_exists);
	if (f->issuer_id == merchant_id)
		f->issuer_active = f->merchant_active;	/* the common case: one read */
	else
		f->issuer_active = factcache_load_merchant(f->issuer_id, cached, &exists);
	return true;
}

/* the one sentence for a coupon that cannot be used */
void
hold_raise_unusable(CouponReason reason, int64 coupon_id, int64 merchant_id)
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
CouponReason
hold_evaluate(const CouponRow *row, const char *user_id, int64 merchant_id,
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
void
hold_lock_policy(int64 policy_id)
{
	lock_existing(FETCH_POLICY, policy_id, 0, NULL, NULL, NULL, NULL);
}

/* lock a coupon row in the global order */
void
hold_lock_coupon(int64 coupon_id)
{
	lock_existing(FETCH_COUPON, coupon_id, 0, NULL, NULL, NULL, NULL);
}

/*
 * Lock a coupon (and its policy, when budgeted) in the global order and
 * refresh what may have changed since hold_load_coupon read it without locks.
 */
void
hold_lock_and_refresh(CouponRow *row, int64 coupon_id)
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
 * (and policy) locked through hold_lock_and_refresh().  payment_id 0 is a hold
 * without a payment.  Returns the reservation row.
 */
Datum
hold_make(const CouponRow *row, int64 coupon_id, int64 merchant_id, const char *user_id,
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
void
hold_not_found(int64 reservation_id)
{
	coupon_error(REASON_RESERVATION_NOT_FOUND, json_id("reservation_id", reservation_id),
				 "reservation %lld does not exist", (long long) reservation_id);
}

/*
 * Spend a live hold: the reservation confirmed, its discount taken off the
 * coupon.  Locks the coupon, then the reservation (the global order), and
 * decides under the locks.  Returns the confirmed row, or 0 with *status
 * set when the hold is not live (not held, or lapsed without a payment).
 */
Datum
hold_spend(int64 reservation_id, int64 coupon_id, char **status)
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
		hold_not_found(reservation_id);
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

/*
 * Undo a hold: the coupon goes back to its holder and the discount back to
 * the budget.  With `expiring`, only a lapsed hold is touched and it ends as
 * 'expired', and a hold whose rows are busy is skipped.  Returns true if
 * this call changed it.  Inside SPI.
 */
bool
hold_undo(int64 reservation_id, bool expiring)
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
		hold_not_found(reservation_id);
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

/* serialize everything done for one order, before any row lock */
void
hold_lock_order(int64 merchant_id, const char *order_id)
{
	call_advisory_lock(COUPON_LOCK_ORDER,
					   (int32) hash_bytes_extended((const unsigned char *) order_id,
												   strlen(order_id), (uint64) merchant_id));
}

/*
 * payment_hold.c
 *		Holds on coupons owned by a payment: taken all at once by pay()
 *		(payment_funcs.c), then spent, released or restored by the saga.
 *		Each hold is made, spent and undone as hold.c does it for the
 *		checkout, in the same lock order.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "coupon.h"
#include "discount.h"
#include "error.h"
#include "hold.h"
#include "payment_hold.h"
#include "spi_util.h"

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
		hold_lock_policy(next);
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

		if (!hold_load_coupon(coupon_ids[i], merchant_id, &rows[i], false))
			hold_raise_unusable(REASON_COUPON_NOT_FOUND, coupon_ids[i], merchant_id);
		reason = hold_evaluate(&rows[i], user_id, merchant_id, amount, &discount);
		if (reason != REASON_NONE)
			hold_raise_unusable(reason, coupon_ids[i], merchant_id);
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

		hold_lock_and_refresh(&rows[i], coupon_ids[i]);
		reason = hold_evaluate(&rows[i], user_id, merchant_id, amount, &discount);
		if (reason != REASON_NONE)
			hold_raise_unusable(reason, coupon_ids[i], merchant_id);
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
			hold_raise_unusable(REASON_BUDGET_EXHAUSTED, coupon_ids[i], merchant_id);
	}

	for (int i = 0; i < n; i++)
		hold_make(&rows[i], coupon_ids[i], merchant_id, user_id, order_id, amount,
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
		hold_lock_coupon(holds[i].coupon_id);
	/* a hold that is no longer held (released by hand) fails the lot */
	n = payment_holds(payment_id, "held", &holds);
	if (n != held || n == 0)
		return false;
	for (int i = 0; i < n; i++)
	{
		char	   *status;

		if (hold_spend(holds[i].reservation_id, holds[i].coupon_id, &status) == (Datum) 0)
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
		hold_undo(holds[i].reservation_id, false);
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

		hold_lock_coupon(holds[i].coupon_id);
		args[0] = Int64GetDatum(holds[i].reservation_id);
		args[1] = Int64GetDatum(holds[i].policy_id);
		if (!holds[i].budgeted)
			nulls[1] = 'n';
		spi_run(&restore_plan, args, nulls, false, 0);
	}
}

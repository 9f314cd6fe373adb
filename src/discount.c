/*
 * discount.c
 *		The discount engine: whether a coupon applies to an order and what it
 *		takes off.  Pure C, no PostgreSQL headers, unit-tested on its own.
 */
#include <string.h>

#include "discount.h"

static const char *const discount_type_names[] = {"fixed", "percent", "balance"};
static const char *const coupon_status_names[] = {
	"unclaimed", "issued", "reserved", "used", "expired", "cancelled"
};
static const char *const policy_status_names[] = {"draft", "active", "paused", "retired"};

/* index of `name` in `names`, or -1 */
static int
name_index(const char *const *names, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* parse a discount_type */
bool
discount_type_from_name(const char *name, DiscountType *out)
{
	int			i = name_index(discount_type_names, 3, name);

	if (i < 0)
		return false;
	*out = (DiscountType) i;
	return true;
}

/* parse a coupon status */
bool
coupon_status_from_name(const char *name, CouponStatus *out)
{
	int			i = name_index(coupon_status_names, 6, name);

	if (i < 0)
		return false;
	*out = (CouponStatus) i;
	return true;
}

/* parse a policy status */
bool
policy_status_from_name(const char *name, PolicyStatus *out)
{
	int			i = name_index(policy_status_names, 4, name);

	if (i < 0)
		return false;
	*out = (PolicyStatus) i;
	return true;
}

/* the SQL name of a policy status */
const char *
policy_status_name(PolicyStatus status)
{
	return policy_status_names[status];
}

/*
 * floor(amount * bp / 10000), split so that no intermediate exceeds
 * 10^15 * 10^4 / 10^4 + 10^8: exact and overflow-free for the accepted
 * ranges (amount <= 10^15, bp <= 10000).
 */
int64_t
discount_percent_of(int64_t amount, int64_t bp)
{
	return (amount / 10000) * bp + ((amount % 10000) * bp) / 10000;
}

/* discount of one coupon on `base`, before budget and order checks */
int64_t
discount_amount(DiscountType type, int64_t value, bool has_max,
				int64_t max_discount, int64_t balance, int64_t base)
{
	int64_t		d;

	switch (type)
	{
		case DISCOUNT_FIXED:
			d = value;
			break;
		case DISCOUNT_PERCENT:
			d = discount_percent_of(base, value);
			if (has_max && d > max_discount)
				d = max_discount;
			break;
		case DISCOUNT_BALANCE:
			d = balance;
			break;
		default:
			d = 0;
	}
	if (d > base)
		d = base;
	if (d < 0)
		d = 0;
	return d;
}

/*
 * Is merchant_id one the coupon may be spent at?  Elsewhere the coupon is
 * answered as if it did not exist, so that a merchant learns nothing of
 * another merchant's coupons (their owner, their state) by probing ids.
 */
bool
discount_merchant_allowed(const CouponFacts *f, int64_t merchant_id)
{
	if (f->allowed == NULL)
		return merchant_id == f->issuer_id;
	for (int i = 0; i < f->n_allowed; i++)
		if (f->allowed[i] == merchant_id)
			return true;
	return false;
}

/*
 * May the coupon be used at `merchant_id` for `order_amount` at `now`?
 * Checks run from the most to the least fundamental, so the reason given is
 * the one the caller can least work around.
 */
CouponReason
discount_evaluate(const CouponFacts *f, int64_t merchant_id,
				  int64_t order_amount, int64_t now, int64_t *discount)
{
	int64_t		d;

	*discount = 0;
	if (!discount_merchant_allowed(f, merchant_id))
		return REASON_COUPON_NOT_FOUND;
	if (f->policy_status == POLICY_DRAFT || f->policy_status == POLICY_PAUSED)
		return REASON_POLICY_INACTIVE;
	if (!f->issuer_active)
		return REASON_MERCHANT_INACTIVE;
	switch (f->status)
	{
		case COUPON_UNCLAIMED:
			return REASON_COUPON_NOT_FOUND;
		case COUPON_RESERVED:
			return REASON_COUPON_RESERVED;
		case COUPON_USED:
			return REASON_COUPON_USED;
		case COUPON_EXPIRED:
			return REASON_EXPIRED;
		case COUPON_CANCELLED:
			return REASON_COUPON_CANCELLED;
		case COUPON_ISSUED:
			break;
	}
	if (!f->merchant_exists)
		return REASON_MERCHANT_NOT_FOUND;
	if (!f->merchant_active)
		return REASON_MERCHANT_INACTIVE;
	if (f->has_expires_at && now >= f->expires_at)
		return REASON_EXPIRED;
	if (f->has_valid_from && now < f->valid_from)
		return REASON_NOT_YET_VALID;
	if (order_amount < f->min_order_amount)
		return REASON_MIN_ORDER_AMOUNT;
	if (f->type == DISCOUNT_BALANCE && f->balance <= 0)
		return REASON_COUPON_USED;

	d = discount_amount(f->type, f->value, f->has_max_discount,
						f->max_discount, f->balance, order_amount);
	if (f->has_budget && d > f->budget - f->budget_used)
		return REASON_BUDGET_EXHAUSTED;
	*discount = d;
	return REASON_NONE;
}

/* apply order of stacked coupons: fixed, then percent, then balance */
static int
stack_rank(DiscountType type)
{
	switch (type)
	{
		case DISCOUNT_FIXED:
			return 0;
		case DISCOUNT_PERCENT:
			return 1;
		case DISCOUNT_BALANCE:
			return 2;
	}
	return 3;
}

/*
 * Split an order's discount over several coupons: at most one coupon may be
 * non-stackable; fixed discounts apply first, percent ones to what is left,
 * balance coupons last; the total never exceeds the order amount.
 */
CouponReason
discount_stack(StackItem *items, int n, int64_t order_amount, int64_t *total)
{
	int			non_stackable = 0;
	int64_t		left = order_amount;

	*total = 0;
	for (int i = 0; i < n; i++)
	{
		items[i].discount = 0;
		if (!items[i].stackable)
			non_stackable++;
	}
	if (n > 1 && non_stackable > 1)
		return REASON_NOT_STACKABLE;

	for (int rank = 0; rank < 3; rank++)
	{
		for (int i = 0; i < n; i++)
		{
			if (stack_rank(items[i].type) != rank)
				continue;
			items[i].discount = discount_amount(items[i].type, items[i].value,
												items[i].has_max_discount,
												items[i].max_discount,
												items[i].balance, left);
			left -= items[i].discount;
		}
	}
	*total = order_amount - left;
	return REASON_NONE;
}

/*
 * Policies go draft -> active, active <-> paused, and any -> retired, which
 * is final.  Staying in the same status is always allowed.
 */
bool
policy_status_transition_ok(PolicyStatus from, PolicyStatus to)
{
	if (from == to)
		return true;
	switch (from)
	{
		case POLICY_DRAFT:
			return to == POLICY_ACTIVE || to == POLICY_RETIRED;
		case POLICY_ACTIVE:
			return to == POLICY_PAUSED || to == POLICY_RETIRED;
		case POLICY_PAUSED:
			return to == POLICY_ACTIVE || to == POLICY_RETIRED;
		case POLICY_RETIRED:
			return false;
	}
	return false;
}

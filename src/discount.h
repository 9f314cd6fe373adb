/*
 * discount.h
 *		The discount engine: whether a coupon applies to an order and what it
 *		takes off.  Pure C, no PostgreSQL headers, unit-tested on its own.
 *
 * Times are microseconds (PostgreSQL's TimestampTz); amounts are minor units.
 */
#ifndef COUPON_DISCOUNT_H
#define COUPON_DISCOUNT_H

#include <stdbool.h>
#include <stdint.h>

#include "reason.h"

#define DISCOUNT_MAX_AMOUNT INT64_C(1000000000000000)

typedef enum DiscountType
{
	DISCOUNT_FIXED,
	DISCOUNT_PERCENT,
	DISCOUNT_BALANCE
} DiscountType;

typedef enum CouponStatus
{
	COUPON_UNCLAIMED,
	COUPON_ISSUED,
	COUPON_RESERVED,
	COUPON_USED,
	COUPON_EXPIRED,
	COUPON_CANCELLED
} CouponStatus;

typedef enum PolicyStatus
{
	POLICY_DRAFT,
	POLICY_ACTIVE,
	POLICY_PAUSED,
	POLICY_RETIRED
} PolicyStatus;

/* what the engine needs to know of one coupon and its policy */
typedef struct CouponFacts
{
	/* merchants */
	int64_t		issuer_id;
	bool		issuer_active;
	bool		merchant_exists;	/* the merchant where the coupon is spent */
	bool		merchant_active;
	/* policy */
	PolicyStatus policy_status;
	DiscountType type;
	int64_t		value;			/* amount, basis points, or starting balance */
	bool		has_max_discount;
	int64_t		max_discount;
	int64_t		min_order_amount;
	bool		has_valid_from;
	int64_t		valid_from;
	const int64_t *allowed;		/* NULL: only the issuer */
	int			n_allowed;
	bool		has_budget;
	int64_t		budget;
	int64_t		budget_used;
	bool		stackable;
	/* coupon */
	CouponStatus status;
	int64_t		balance;		/* balance coupons */
	bool		has_expires_at;
	int64_t		expires_at;
} CouponFacts;

/* one coupon of a multi-coupon order, for discount_stack */
typedef struct StackItem
{
	DiscountType type;
	int64_t		value;
	bool		has_max_discount;
	int64_t		max_discount;
	int64_t		balance;
	bool		stackable;
	int64_t		discount;		/* out */
} StackItem;

/* parse the SQL names of the enums; false if unknown */
extern bool discount_type_from_name(const char *name, DiscountType *out);
extern bool coupon_status_from_name(const char *name, CouponStatus *out);
extern bool policy_status_from_name(const char *name, PolicyStatus *out);
extern const char *policy_status_name(PolicyStatus status);

/* floor(amount * bp / 10000) without overflow for amount <= 10^15 */
extern int64_t discount_percent_of(int64_t amount, int64_t bp);

/* discount of one coupon on `base`, before budget and order checks */
extern int64_t discount_amount(DiscountType type, int64_t value,
							   bool has_max, int64_t max_discount,
							   int64_t balance, int64_t base);

/* may the coupon be used at `merchant_id` for `order_amount` at `now`? */
extern bool discount_merchant_allowed(const CouponFacts *f, int64_t merchant_id);
extern CouponReason discount_evaluate(const CouponFacts *facts,
									  int64_t merchant_id, int64_t order_amount,
									  int64_t now, int64_t *discount);

/* split an order's discount over several coupons (docs/concepts.md, "Several coupons on one order") */
extern CouponReason discount_stack(StackItem *items, int n,
								   int64_t order_amount, int64_t *total);

/* may a policy move from one status to another? */
extern bool policy_status_transition_ok(PolicyStatus from, PolicyStatus to);

#endif							/* COUPON_DISCOUNT_H */

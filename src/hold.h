/*
 * hold.h
 *		One coupon's hold (hold.c): a coupon read and judged for use, its
 *		rows locked in the global order (policy -> coupon -> reservation),
 *		and a hold made, spent or undone.  Shared by the checkout
 *		(reserve.c) and the holds of payments (payment_hold.c); everything
 *		runs inside SPI.
 */
#ifndef COUPON_HOLD_H
#define COUPON_HOLD_H

#include "storage/itemptr.h"

#include "discount.h"
#include "reason.h"

/* what reserve and validate learn of a coupon */
typedef struct CouponRow
{
	int64		policy_id;
	char	   *user_id;
	CouponFacts facts;
	ItemPointerData coupon_tid; /* the version hold_lock_and_refresh() locked */
} CouponRow;

/*
 * Read the coupon, its policy and both merchants without locks; false if
 * the coupon does not exist.  may_cache: the policy and merchants may come
 * from validate()'s copies (factcache.c).
 */
extern bool hold_load_coupon(int64 coupon_id, int64 merchant_id, CouponRow *row,
							 bool may_cache);

/* may user_id use the coupon at merchant_id for order_amount?  (and its discount) */
extern CouponReason hold_evaluate(const CouponRow *row, const char *user_id,
								  int64 merchant_id, int64 order_amount, int64 *discount);

/* raise the one error for a coupon that cannot be used */
extern void hold_raise_unusable(CouponReason reason, int64 coupon_id,
								int64 merchant_id) pg_attribute_noreturn();

/* lock a policy or a coupon row in the global order */
extern void hold_lock_policy(int64 policy_id);
extern void hold_lock_coupon(int64 coupon_id);

/* lock the coupon (and its budgeted policy) and refresh what may have moved */
extern void hold_lock_and_refresh(CouponRow *row, int64 coupon_id);

/* serialize everything done for one order (transaction advisory lock) */
extern void hold_lock_order(int64 merchant_id, const char *order_id);

/* make a hold (payment_id 0: none) under hold_lock_and_refresh's locks; its row */
extern Datum hold_make(const CouponRow *row, int64 coupon_id, int64 merchant_id,
					   const char *user_id, const char *order_id, int64 order_amount,
					   int64 discount, int32 ttl, int64 payment_id);

/* spend a live hold: its confirmed row, or 0 with *status when not live */
extern Datum hold_spend(int64 reservation_id, int64 coupon_id, char **status);

/* undo a hold (released, or expired when `expiring`); true if this call did */
extern bool hold_undo(int64 reservation_id, bool expiring);

/* raise PT404 for a missing reservation */
extern void hold_not_found(int64 reservation_id) pg_attribute_noreturn();

#endif							/* COUPON_HOLD_H */

/*
 * payment_hold.h
 *		Holds on coupons made for a payment (payment_hold.c): taken by
 *		pay(), spent, released or restored by the saga.  All run inside SPI;
 *		the caller of reserve_for_payment holds the order lock
 *		(hold_lock_order).
 */
#ifndef COUPON_PAYMENT_HOLD_H
#define COUPON_PAYMENT_HOLD_H

/* hold every coupon (sorted, distinct) for the payment; returns the total discount */
extern int64 reserve_for_payment(int64 payment_id, int64 merchant_id,
								 const char *user_id, const char *order_id,
								 int64 amount, int n, const int64 *coupon_ids);

/* spend all of the payment's holds, or none (false) */
extern bool reserve_spend_holds(int64 payment_id);

/* release the payment's holds: nothing was charged */
extern void reserve_release_holds(int64 payment_id);

/* give a fully refunded payment's coupons back */
extern void reserve_restore_holds(int64 payment_id);

#endif							/* COUPON_PAYMENT_HOLD_H */

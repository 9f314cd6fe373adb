/*
 * reserve.h
 *		Holds on coupons made for a payment: taken by pay(), spent, released
 *		or restored by the saga.  All run inside SPI.
 */
#ifndef COUPON_RESERVE_H
#define COUPON_RESERVE_H

/* serialize everything done for one order (transaction advisory lock) */
extern void reserve_lock_order(int64 merchant_id, const char *order_id);

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

#endif							/* COUPON_RESERVE_H */

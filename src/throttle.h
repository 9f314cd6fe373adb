/*
 * throttle.h
 *		Counting failed code attempts per user in shared memory, where a
 *		rolled-back transaction cannot erase them.
 */
#ifndef COUPON_THROTTLE_H
#define COUPON_THROTTLE_H

/* check the user's failures and count this attempt as one, in one step */
extern bool throttle_begin_attempt(const char *user_id);

/* take back the count of an attempt that succeeded */
extern void throttle_forgive(const char *user_id);

#endif							/* COUPON_THROTTLE_H */

/*
 * throttle.h
 *		Counting failed code attempts per user in shared memory, where a
 *		rolled-back transaction cannot erase them.
 */
#ifndef COUPON_THROTTLE_H
#define COUPON_THROTTLE_H

/* who is throttled: a user entering codes, or a client id signing in */
typedef enum ThrottleKind
{
	THROTTLE_CODE,
	THROTTLE_CLIENT
} ThrottleKind;

#define THROTTLE_KINDS		2

/* check the user's failures and count this attempt as one, in one step */
extern bool throttle_begin_attempt(const char *user_id, ThrottleKind kind);

/* take back the count of an attempt that succeeded */
extern void throttle_forgive(const char *user_id);

#endif							/* COUPON_THROTTLE_H */

/*
 * throttle.h
 *		Counting failed code attempts per user in shared memory, where a
 *		rolled-back transaction cannot erase them.
 */
#ifndef COUPON_THROTTLE_H
#define COUPON_THROTTLE_H

/* true if the user has too many recent failures */
extern bool throttle_blocked(const char *user_id);

/* record one failure of the user */
extern void throttle_record_failure(const char *user_id);

#endif							/* COUPON_THROTTLE_H */
